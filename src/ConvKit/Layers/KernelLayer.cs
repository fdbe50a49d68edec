using static TorchSharp.torch;

namespace ConvKit.Layers;

/// <summary>
/// What <see cref="Conv2D"/> and <see cref="Dense"/> share as Keras' kernel layers: <c>activation(op(x, kernel) + bias)</c>
/// with an optional bias, the kernel and bias initializers (defaults as Keras: glorot_uniform kernel, zero bias) and
/// an optional L2 penalty on the kernel. The weights are <c>kernel</c>, in libtorch's layout with the outputs first
/// (see each layer), and <c>bias</c>, one value per output. Only ConvKit's own layers derive from it.
/// </summary>
public abstract class KernelLayer : Layer
{
    // Not private: Module.to() moves and converts the tensors it finds in the fields of the layer's runtime type, which
    // leave out a base class's private fields; visible, they are handled as when Conv2D and Dense declared them.
    private protected Tensor? kernel;
    private protected Tensor? bias;

    private protected KernelLayer(ActivationFunction? activation, bool useBias, Initializer? kernelInitializer,
        Initializer? biasInitializer, L2? kernelRegularizer, Shape? inputShape, string? name) : base(name)
    {
        Activation = activation ?? Activations.Linear;
        UseBias = useBias;
        KernelInitializer = kernelInitializer ?? Initializers.GlorotUniform;
        BiasInitializer = biasInitializer ?? Initializers.Zeros;
        KernelRegularizer = kernelRegularizer;
        InputShape = inputShape;
    }

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

    /// <summary>
    /// The kernel in libtorch's layout: (filters, C / groups, kh, kw) for Conv2D, (units, in) for Dense. Null before the
    /// layer is built.
    /// </summary>
    public Tensor? Kernel => kernel;

    /// <summary>The bias, (filters) or (units). Null before building or without bias.</summary>
    public Tensor? Bias => bias;

    /// <summary>
    /// Creates <c>kernel</c> of <paramref name="kernelShape"/> and, with <see cref="UseBias"/>, <c>bias</c> with one
    /// value per output (the kernel's first dimension), from the layer's initializers.
    /// </summary>
    private protected void AddKernelAndBias(long[] kernelShape, long fanIn, long fanOut)
    {
        kernel = AddWeight("kernel", kernelShape, KernelInitializer, fanIn, fanOut);
        if (UseBias) bias = AddWeight("bias", [kernelShape[0]], BiasInitializer, fanIn, fanOut);
    }

    /// <summary>
    /// Applies <see cref="Activation"/> to <paramref name="y"/> in place: the layer's own fresh output, which its op
    /// (convolution, linear) does not keep for backward.
    /// </summary>
    private protected Tensor Activate(Tensor y) => Activation.IsLinear ? y : Activation.ApplyInPlace(y);

    /// <inheritdoc/>
    protected override void OnWeightsRebound()
    {
        kernel = GetWeight("kernel");
        bias = GetWeight("bias");
    }

    /// <inheritdoc/>
    public override IEnumerable<Tensor> RegularizationLosses() =>
        KernelRegularizer is { } r && kernel is not null && Trainable ? [r.Penalty(kernel)] : [];
}
