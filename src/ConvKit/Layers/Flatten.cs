using static TorchSharp.torch;

namespace ConvKit.Layers;

/// <summary>
/// Flattens each sample to a vector, Keras' <c>Flatten</c>. Feature maps are flattened in ConvKit's internal order
/// (channels, height, width); importers of Keras weights permute the following Dense kernel from Keras' (height,
/// width, channels) order, so no per-call transpose is paid.
/// </summary>
public class Flatten : Layer
{
    /// <summary>Creates the layer.</summary>
    public Flatten(Shape? inputShape = null, string? name = null) : base(name) => InputShape = inputShape;

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape) => new(checked((int)inputShape.Size) is var n && n > 0 ? n : Shape.Unknown);

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => inputs.flatten(1);

    /// <inheritdoc/>
    public override WindowInfo? Window(IReadOnlyList<Shape> inputShapes) => inputShapes[0].Rank == 3 ? WindowInfo.Global : null;

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => true;
}
