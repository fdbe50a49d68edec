using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Layers;

/// <summary>
/// Fully connected layer, Keras' <c>Dense</c>: <c>activation(x · kernel + bias)</c> on the last axis. Weights:
/// <c>kernel</c> (stored as libtorch's (units, in)) and <c>bias</c> (units). Defaults as Keras: glorot_uniform, zeros.
/// Image feature maps must be flattened or pooled first.
/// </summary>
public class Dense : Layer
{
    Tensor? kernel;
    Tensor? bias;

    /// <summary>Creates the layer with Keras' arguments.</summary>
    /// <exception cref="LayerArgumentException">units is not positive.</exception>
    public Dense(int units, ActivationFunction? activation = null, bool useBias = true,
        Initializer? kernelInitializer = null, Initializer? biasInitializer = null, L2? kernelRegularizer = null,
        Shape? inputShape = null, string? name = null) : base(name)
    {
        if (units <= 0) throw ArgumentError("units", $"must be a positive integer; received units={units}.");
        Units = units;
        Activation = activation ?? Activations.Linear;
        UseBias = useBias;
        KernelInitializer = kernelInitializer ?? Initializers.GlorotUniform;
        BiasInitializer = biasInitializer ?? Initializers.Zeros;
        KernelRegularizer = kernelRegularizer;
        InputShape = inputShape;
    }

    /// <summary>Output features.</summary>
    public int Units { get; }

    /// <summary>Applied to the output.</summary>
    public ActivationFunction Activation { get; }

    /// <summary>Whether a bias is added.</summary>
    public bool UseBias { get; }

    /// <summary>Kernel initializer.</summary>
    public Initializer KernelInitializer { get; }

    /// <summary>Bias initializer.</summary>
    public Initializer BiasInitializer { get; }

    /// <summary>Optional L2 penalty on the kernel.</summary>
    public L2? KernelRegularizer { get; }

    /// <summary>The kernel, (units, in). Null before building.</summary>
    public Tensor? Kernel => kernel;

    /// <summary>The bias, (units). Null before building or without bias.</summary>
    public Tensor? Bias => bias;

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
        kernel = AddWeight("kernel", [Units, inFeatures], KernelInitializer, inFeatures, Units);
        if (UseBias) bias = AddWeight("bias", [Units], BiasInitializer, inFeatures, Units);
    }

    /// <inheritdoc/>
    protected override void OnWeightsRebound()
    {
        kernel = GetWeight("kernel");
        bias = GetWeight("bias");
    }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs)
    {
        var y = F.linear(inputs, kernel!, bias);
        return Activation.IsLinear ? y : Activation.ApplyInPlace(y);
    }

    /// <inheritdoc/>
    public override IEnumerable<Tensor> RegularizationLosses() =>
        KernelRegularizer is { } r && kernel is not null && Trainable ? [r.Penalty(kernel)] : [];

    /// <inheritdoc/>
    public override long CountMacs(IReadOnlyList<Shape> inputShapes, Shape outputShape) =>
        inputShapes[0].Size / inputShapes[0][-1] * inputShapes[0][-1] * (long)Units;

    /// <inheritdoc/>
    public override WindowInfo? Window(IReadOnlyList<Shape> inputShapes) => null;
}
