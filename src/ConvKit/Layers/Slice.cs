using static TorchSharp.torch;

namespace ConvKit.Layers;

/// <summary>
/// Keeps <see cref="Length"/> consecutive entries of one axis of each sample, from <see cref="Start"/> (ONNX's Slice
/// and Split, PyTorch's <c>narrow</c>/<c>chunk</c>: ShuffleNet's channel split, a preprocessing graph's colour planes).
/// <see cref="Axis"/> counts the batch as 0 in ConvKit's internal layout, channels-first for images: axis 1 of an
/// image is its channels, 2 its rows, 3 its columns.
/// </summary>
public class Slice : Layer
{
    /// <summary>Creates the layer.</summary>
    /// <param name="axis">The sliced axis, 1 or more (internal, channels-first order).</param>
    /// <param name="start">First kept entry (0-based).</param>
    /// <param name="length">Number of kept entries.</param>
    /// <param name="name">Layer name; null for an automatic one.</param>
    /// <exception cref="LayerArgumentException">axis below 1, start negative, length not positive.</exception>
    public Slice(int axis, int start, int length, string? name = null) : base(name)
    {
        if (axis < 1) throw ArgumentError("axis", $"must be 1 or more (the batch axis cannot be sliced); received axis={axis}.");
        if (start < 0) throw ArgumentError("start", $"must be non-negative; received start={start}.");
        if (length < 1) throw ArgumentError("length", $"must be positive; received length={length}.");
        Axis = axis;
        Start = start;
        Length = length;
    }

    /// <summary>The sliced axis (batch = 0; internal channels-first order).</summary>
    public int Axis { get; }

    /// <summary>First kept entry.</summary>
    public int Start { get; }

    /// <summary>Number of kept entries.</summary>
    public int Length { get; }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        if (Axis > inputShape.Rank)
            throw new ShapeException($"{Describe}: axis={Axis} is out of range for input {inputShape.ToBatchString()}.");
        // Internal axis -> Keras sample axis: images are (H, W, C) in Keras, (C, H, W) inside.
        int k = inputShape.Rank == 3 ? Axis switch { 1 => 2, 2 => 0, _ => 1 } : Axis - 1;
        int n = inputShape[k];
        if (n != Shape.Unknown && Start + Length > n)
            throw new ShapeException($"{Describe}: entries [{Start}, {Start + Length}) of axis {Axis} do not fit input {inputShape.ToBatchString()}.");
        return inputShape.With(k, Length);
    }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => inputs.narrow(Axis, Start, Length);

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => true;
}
