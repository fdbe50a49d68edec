using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Layers;

/// <summary>
/// Fully connected layer, Keras' <c>Dense</c>: <c>activation(x · kernel + bias)</c> on the last axis. Weights:
/// <c>kernel</c> (stored as libtorch's (units, in)) and <c>bias</c> (units). Defaults as Keras: glorot_uniform, zeros.
/// Image feature maps must be flattened or pooled first.
/// </summary>
public class Dense : KernelLayer
{
    /// <summary>Creates the layer with Keras' arguments.</summary>
    /// <exception cref="LayerArgumentException">units is not positive.</exception>
    public Dense(int units, ActivationFunction? activation = null, bool useBias = true,
        Initializer? kernelInitializer = null, Initializer? biasInitializer = null, L2? kernelRegularizer = null,
        Shape? inputShape = null, string? name = null)
        : base(activation, useBias, kernelInitializer, biasInitializer, kernelRegularizer, inputShape, name)
    {
        if (units <= 0) throw ArgumentError("units", $"must be a positive integer; received units={units}.");
        Units = units;
    }

    /// <summary>Output features.</summary>
    public int Units { get; }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        if (inputShape.Rank == 3)
            throw new ShapeException($"{Describe} received a feature map {inputShape.ToBatchString()}; it expects (batch, features). Add Flatten() or GlobalAveragePooling2D() before it.");
        if (inputShape.Rank < 1 || inputShape[-1] == Shape.Unknown)
            throw new ShapeException($"{Describe}: the last dimension of the input must be known; received {inputShape.ToBatchString()}.");
        return inputShape.With(-1, Units);
    }

    /// <inheritdoc/>
    protected override void Build(Shape inputShape)
    {
        int inFeatures = inputShape[-1];
        AddKernelAndBias([Units, inFeatures], inFeatures, Units);
    }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => Activate(F.linear(inputs, kernel!, bias));

    /// <inheritdoc/>
    public override long CountMacs(IReadOnlyList<Shape> inputShapes, Shape outputShape) =>
        inputShapes[0].Size / inputShapes[0][-1] * inputShapes[0][-1] * (long)Units;

    /// <inheritdoc/>
    public override WindowInfo? Window(IReadOnlyList<Shape> inputShapes) => null;
}
