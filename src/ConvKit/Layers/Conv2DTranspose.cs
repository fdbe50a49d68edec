using ConvKit.Native;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Layers;

/// <summary>
/// Transposed 2-D convolution, Keras' <c>Conv2DTranspose</c> (the gradient of <see cref="Conv2D"/> with respect to its
/// input; upsampling in decoders and segmentation heads): each input pixel scatters a <c>kernelSize</c> window of
/// <c>filters</c> channels, <c>strides</c> apart. Output size as Keras (<see cref="ConvArithmetic.TransposedOutputLength"/>):
/// 'same' multiplies by the stride, 'valid' adds max(k - s, 0), <c>outputPadding</c> sets the size exactly; what is
/// cropped follows TensorFlow (<see cref="ConvArithmetic.TransposedCrop"/>). Weights: <c>kernel</c> in libtorch's and
/// ONNX's layout (C, filters / groups, kh, kw) and <c>bias</c> (filters). Defaults as Keras: glorot_uniform kernel,
/// zero bias.
/// </summary>
public class Conv2DTranspose : KernelLayer
{
    int inChannels;

    /// <summary>Creates the layer; arguments are Keras' (<c>filters</c>, <c>kernel_size</c>, <c>strides</c>, <c>padding</c>,
    /// <c>output_padding</c>, <c>dilation_rate</c>), plus <c>groups</c> as PyTorch's ConvTranspose2d.</summary>
    /// <exception cref="LayerArgumentException">A value is out of range (the message names it).</exception>
    public Conv2DTranspose(int filters, Size2 kernelSize, Size2? strides = null, Padding padding = default,
        Size2? outputPadding = null, Size2? dilationRate = null, int groups = 1, ActivationFunction? activation = null,
        bool useBias = true, Initializer? kernelInitializer = null, Initializer? biasInitializer = null,
        L2? kernelRegularizer = null, Shape? inputShape = null, string? name = null)
        : base(activation, useBias, kernelInitializer, biasInitializer, kernelRegularizer, inputShape, name)
    {
        Filters = filters;
        KernelSize = kernelSize;
        Strides = strides ?? 1;
        Padding = padding;
        OutputPadding = outputPadding;
        DilationRate = dilationRate ?? 1;
        Groups = groups;
        Conv2D.CheckWindowArguments(this, filters, KernelSize, Strides, DilationRate);
        if (outputPadding is { } op)
        {
            if (op.Height < 0 || op.Width < 0) throw ArgumentError("output_padding", $"must be non-negative; received output_padding={op}.");
            // Keras: each output_padding must be smaller than its stride (or the dilation: PyTorch's rule), else the
            // added cells would see no input.
            if (op.Height >= Math.Max(Strides.Height, DilationRate.Height) || op.Width >= Math.Max(Strides.Width, DilationRate.Width))
                throw ArgumentError("output_padding", $"must be smaller than the stride or the dilation; received output_padding={op}, strides={Strides}, dilation_rate={DilationRate}.");
        }
        if (groups <= 0) throw ArgumentError("groups", $"must be a positive integer; received groups={groups}.");
        if (filters % groups != 0) throw ArgumentError("groups", $"filters must be divisible by groups; received filters={filters}, groups={groups}.");
    }

    /// <summary>Number of output channels.</summary>
    public int Filters { get; }

    /// <summary>Kernel height and width.</summary>
    public Size2 KernelSize { get; }

    /// <summary>Upsampling factor: the step, in output pixels, between the windows of neighbouring input pixels.</summary>
    public Size2 Strides { get; }

    /// <summary>'valid' or 'same' (see the class remarks).</summary>
    public Padding Padding { get; }

    /// <summary>Keras' <c>output_padding</c>: null for the default size, else the cells added after (smaller than the stride).</summary>
    public Size2? OutputPadding { get; }

    /// <summary>Spacing between kernel taps.</summary>
    public Size2 DilationRate { get; }

    /// <summary>Channel groups (1 = dense).</summary>
    public int Groups { get; }

    /// <summary>What is removed from the full result before (top, left) and after (bottom, right); negative: zero cells added.</summary>
    public (int Top, int Bottom, int Left, int Right) Crop
    {
        get
        {
            var (top, bottom) = ConvArithmetic.TransposedCrop(KernelSize.Height, Strides.Height, Padding, OutputPadding?.Height, DilationRate.Height);
            var (left, right) = ConvArithmetic.TransposedCrop(KernelSize.Width, Strides.Width, Padding, OutputPadding?.Width, DilationRate.Width);
            return (top, bottom, left, right);
        }
    }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        if (inputShape.Rank != 3)
            throw new ShapeException($"{Describe} expects inputs of shape (height, width, channels); received {inputShape.ToBatchString()}.");
        int c = inputShape[2];
        if (c == Shape.Unknown) throw new ShapeException($"{Describe}: the channel dimension of the input must be known; received {inputShape.ToBatchString()}.");
        if (c % Groups != 0)
            throw ArgumentError("groups", $"input channels must be divisible by groups; received input {inputShape.ToBatchString()} with {c} channels, groups={Groups}.");
        int h = ConvArithmetic.TransposedOutputLength(inputShape[0], KernelSize.Height, Strides.Height, Padding, OutputPadding?.Height, DilationRate.Height);
        int w = ConvArithmetic.TransposedOutputLength(inputShape[1], KernelSize.Width, Strides.Width, Padding, OutputPadding?.Width, DilationRate.Width);
        if ((h < 1 && h != Shape.Unknown) || (w < 1 && w != Shape.Unknown))
            throw new ShapeException($"{Describe}: input {inputShape.ToBatchString()} gives an empty output ({h}, {w}) with kernel_size={KernelSize}, strides={Strides}, padding='{Padding}'.");
        return new Shape(h, w, Filters);
    }

    /// <inheritdoc/>
    protected override void Build(Shape inputShape)
    {
        inChannels = inputShape[2];
        // Keras' fans for its kernel (kh, kw, filters, C): in = kh·kw·filters, out = kh·kw·C.
        long receptive = (long)KernelSize.Height * KernelSize.Width;
        long fanIn = receptive * Filters / Groups, fanOut = receptive * inChannels / Groups;
        kernel = AddWeight("kernel", [inChannels, Filters / Groups, KernelSize.Height, KernelSize.Width], KernelInitializer, fanIn, fanOut);
        if (UseBias) bias = AddWeight("bias", [Filters], BiasInitializer, fanIn, fanOut);
    }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs)
    {
        var (top, bottom, left, right) = Crop;
        using var full = F.conv_transpose2d(inputs, kernel!, null, [Strides.Height, Strides.Width], [0, 0], [0, 0],
            [DilationRate.Height, DilationRate.Width], Groups);
        // Negative pads crop (constant_pad_nd); positive ones add the zero cells a short kernel leaves.
        var y = top == 0 && bottom == 0 && left == 0 && right == 0 ? full.alias() : F.pad(full, [-left, -right, -top, -bottom]);
        if (bias is not null)
        {
            using var b = bias.view(1, -1, 1, 1);
            y.add_(b, Scalars.One);
        }
        return Activate(y);
    }

    /// <inheritdoc/>
    public override long CountMacs(IReadOnlyList<Shape> inputShapes, Shape outputShape) =>
        (long)inputShapes[0][0] * inputShapes[0][1] * inputShapes[0][2] * KernelSize.Height * KernelSize.Width * (Filters / Groups);
}
