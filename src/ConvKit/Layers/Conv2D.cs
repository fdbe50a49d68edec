using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Layers;

/// <summary>
/// 2-D convolution, Keras' <c>Conv2D</c>: <c>filters</c> kernels of <c>kernelSize</c> slide with <c>strides</c> and
/// <c>dilationRate</c> over a (H, W, C) input; 'same' padding follows Keras' arithmetic (the odd pixel bottom/right) and
/// costs no extra op when symmetric. Weights: <c>kernel</c> (stored as libtorch's (filters, C / groups, kh, kw)) and
/// <c>bias</c> (filters). Defaults as Keras: glorot_uniform kernel, zero bias.
/// </summary>
public class Conv2D : KernelLayer
{
    int inChannels;

    /// <summary>Creates the layer; arguments are Keras' (<c>filters</c>, <c>kernel_size</c>, <c>strides</c>, ...).</summary>
    /// <exception cref="LayerArgumentException">A value is out of range (the message names it).</exception>
    public Conv2D(int filters, Size2 kernelSize, Size2? strides = null, Padding padding = default,
        Size2? dilationRate = null, int groups = 1, ActivationFunction? activation = null, bool useBias = true,
        Initializer? kernelInitializer = null, Initializer? biasInitializer = null, L2? kernelRegularizer = null,
        Shape? inputShape = null, string? name = null)
        : base(activation, useBias, kernelInitializer, biasInitializer, kernelRegularizer, inputShape, name)
    {
        Filters = filters;
        KernelSize = kernelSize;
        Strides = strides ?? 1;
        Padding = padding;
        DilationRate = dilationRate ?? 1;
        Groups = groups;
        CheckWindowArguments(this, filters, KernelSize, Strides, DilationRate);
        if (groups <= 0) throw ArgumentError("groups", $"must be a positive integer; received groups={groups}.");
        if (filters % groups != 0) throw ArgumentError("groups", $"filters must be divisible by groups; received filters={filters}, groups={groups}.");
    }

    /// <summary>The checks Conv2D and <see cref="Conv2DTranspose"/> share (Keras' messages): positive filters, kernel
    /// size, strides and dilation, and no strides > 1 together with dilation > 1.</summary>
    internal static void CheckWindowArguments(Layer layer, int filters, Size2 kernelSize, Size2 strides, Size2 dilationRate)
    {
        if (filters <= 0) throw layer.ArgumentError("filters", $"must be a positive integer; received filters={filters}.");
        if (kernelSize.Height <= 0 || kernelSize.Width <= 0) throw layer.ArgumentError("kernel_size", $"must be positive; received kernel_size={kernelSize}.");
        if (strides.Height <= 0 || strides.Width <= 0) throw layer.ArgumentError("strides", $"must be positive; received strides={strides}.");
        if (dilationRate.Height <= 0 || dilationRate.Width <= 0) throw layer.ArgumentError("dilation_rate", $"must be positive; received dilation_rate={dilationRate}.");
        if ((strides.Height > 1 || strides.Width > 1) && (dilationRate.Height > 1 || dilationRate.Width > 1))
            throw layer.ArgumentError("strides", $"strides > 1 are not supported together with dilation_rate > 1 (as in Keras); received strides={strides}, dilation_rate={dilationRate}.");
    }

    /// <summary>Number of output channels.</summary>
    public int Filters { get; }

    /// <summary>Kernel height and width.</summary>
    public Size2 KernelSize { get; }

    /// <summary>Step between windows.</summary>
    public Size2 Strides { get; }

    /// <summary>'valid' or 'same'.</summary>
    public Padding Padding { get; }

    /// <summary>Spacing between kernel taps.</summary>
    public Size2 DilationRate { get; }

    /// <summary>Channel groups (1 = dense convolution; = channels for depthwise).</summary>
    public int Groups { get; }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        if (inputShape.Rank != 3)
            throw new ShapeException($"{Describe} expects inputs of shape (height, width, channels); received {inputShape.ToBatchString()}.");
        int c = inputShape[2];
        if (c == Shape.Unknown) throw new ShapeException($"{Describe}: the channel dimension of the input must be known; received {inputShape.ToBatchString()}.");
        if (c % Groups != 0)
            throw ArgumentError("groups", $"input channels must be divisible by groups; received input {inputShape.ToBatchString()} with {c} channels, groups={Groups}.");
        int h = ConvArithmetic.OutputLength(inputShape[0], KernelSize.Height, Strides.Height, Padding, DilationRate.Height);
        int w = ConvArithmetic.OutputLength(inputShape[1], KernelSize.Width, Strides.Width, Padding, DilationRate.Width);
        if ((h < 1 && h != Shape.Unknown) || (w < 1 && w != Shape.Unknown))
            throw new ShapeException($"{Describe}: kernel_size={KernelSize} (dilation_rate={DilationRate}) is larger than the input {inputShape.ToBatchString()} with padding='valid'; the output would be ({h}, {w}). Use padding='same' or a smaller kernel.");
        return new Shape(h, w, Filters);
    }

    /// <inheritdoc/>
    protected override void Build(Shape inputShape)
    {
        inChannels = inputShape[2];
        long receptive = (long)KernelSize.Height * KernelSize.Width;
        long fanIn = receptive * inChannels / Groups, fanOut = receptive * Filters;
        AddKernelAndBias([Filters, inChannels / Groups, KernelSize.Height, KernelSize.Width], fanIn, fanOut);
    }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs)
    {
        var y = Ops.Conv2DChannelsFirst(inputs, kernel!, bias, KernelSize, Strides, Padding, DilationRate, Groups, Describe);
        // y is ours alone and convolution does not keep its output for backward: activate in place. (The inference
        // plan runs Conv2D through FusedConvolution, with folded weights, packed kernels and fused padding.)
        return Activate(y);
    }

    /// <inheritdoc/>
    public override long CountMacs(IReadOnlyList<Shape> inputShapes, Shape outputShape) =>
        outputShape.Size * KernelSize.Height * KernelSize.Width * (inputShapes[0][2] / Groups);

    /// <inheritdoc/>
    public override WindowInfo? Window(IReadOnlyList<Shape> inputShapes)
    {
        var s = inputShapes[0];
        return new WindowInfo(KernelSize, Strides, DilationRate, new Size2(
            ConvArithmetic.Pads(s[0], KernelSize.Height, Strides.Height, Padding, DilationRate.Height).Before,
            ConvArithmetic.Pads(s[1], KernelSize.Width, Strides.Width, Padding, DilationRate.Width).Before));
    }
}
