using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Layers;

/// <summary>The reduction of a <see cref="PaddedPooling2D"/>.</summary>
public enum PoolingKind
{
    /// <summary>Maximum (padding is -infinity: it never wins).</summary>
    Max,
    /// <summary>Average.</summary>
    Average,
}

/// <summary>
/// Max or average pooling with explicit, possibly asymmetric padding and PyTorch's/ONNX's ceil mode, the pooling of
/// PyTorch and ONNX graphs that Keras' 'valid'/'same' cannot express (GoogLeNet's ceil-mode max pooling, ResNet's
/// padded 3x3/2 max pooling, Inception's average pooling that counts or skips the padding).
/// </summary>
public class PaddedPooling2D : Layer
{
    /// <summary>Creates the layer.</summary>
    /// <param name="kind">Max or average.</param>
    /// <param name="poolSize">Window.</param>
    /// <param name="strides">Step (default: the window).</param>
    /// <param name="pads">(top, left, bottom, right), ONNX's order.</param>
    /// <param name="ceilMode">Round the output size up, as PyTorch's ceil_mode (the last window starts inside the input).</param>
    /// <param name="countIncludePad">Average pooling divides by the whole window (true) or by its cells inside the input.</param>
    /// <param name="name">Layer name; null for an automatic one.</param>
    /// <exception cref="LayerArgumentException">A size is not positive, a pad is negative or not smaller than the window.</exception>
    public PaddedPooling2D(PoolingKind kind, Size2 poolSize, Size2? strides = null, (int Top, int Left, int Bottom, int Right) pads = default,
        bool ceilMode = false, bool countIncludePad = false, string? name = null) : base(name)
    {
        Kind = kind;
        PoolSize = poolSize;
        Strides = strides ?? poolSize;
        Pads = pads;
        CeilMode = ceilMode;
        CountIncludePad = countIncludePad;
        if (poolSize.Height <= 0 || poolSize.Width <= 0) throw ArgumentError("pool_size", $"must be positive; received pool_size={poolSize}.");
        if (Strides.Height <= 0 || Strides.Width <= 0) throw ArgumentError("strides", $"must be positive; received strides={Strides}.");
        if (pads.Top < 0 || pads.Left < 0 || pads.Bottom < 0 || pads.Right < 0 || pads.Top >= poolSize.Height || pads.Bottom >= poolSize.Height
            || pads.Left >= poolSize.Width || pads.Right >= poolSize.Width)
            throw ArgumentError("pads", $"must be non-negative and smaller than the window {poolSize}; received {pads}.");
    }

    /// <summary>Max or average.</summary>
    public PoolingKind Kind { get; }

    /// <summary>Window.</summary>
    public Size2 PoolSize { get; }

    /// <summary>Step.</summary>
    public Size2 Strides { get; }

    /// <summary>(top, left, bottom, right).</summary>
    public (int Top, int Left, int Bottom, int Right) Pads { get; }

    /// <summary>Whether the output size is rounded up.</summary>
    public bool CeilMode { get; }

    /// <summary>Whether average pooling counts padding cells.</summary>
    public bool CountIncludePad { get; }

    int OutputLength(int n, int k, int s, int before, int after)
    {
        if (n == Shape.Unknown) return n;
        long span = (long)n + before + after - k;
        if (span < 0) return 0;
        long o = CeilMode ? (span + s - 1) / s + 1 : span / s + 1;
        if (CeilMode && (o - 1) * s >= n + before) o--; // the last window must start inside the input (or its leading pad)
        return (int)o;
    }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        if (inputShape.Rank != 3)
            throw new ShapeException($"{Describe} expects inputs of shape (height, width, channels); received {inputShape.ToBatchString()}.");
        int h = OutputLength(inputShape[0], PoolSize.Height, Strides.Height, Pads.Top, Pads.Bottom);
        int w = OutputLength(inputShape[1], PoolSize.Width, Strides.Width, Pads.Left, Pads.Right);
        if (h == 0 || w == 0)
            throw new ShapeException($"{Describe}: pool_size={PoolSize} with pads {Pads} is larger than the input {inputShape.ToBatchString()}.");
        return new Shape(h, w, inputShape[2]);
    }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs)
    {
        bool symmetric = Pads.Top == Pads.Bottom && Pads.Left == Pads.Right;
        long[] k = [PoolSize.Height, PoolSize.Width], s = [Strides.Height, Strides.Width];
        if (symmetric)
        {
            long[] p = [Pads.Top, Pads.Left];
            return Kind == PoolingKind.Max
                ? F.max_pool2d(inputs, k, s, p, ceil_mode: CeilMode)
                : F.avg_pool2d(inputs, k, s, p, ceil_mode: CeilMode, count_include_pad: CountIncludePad);
        }
        // Asymmetric: pad explicitly (-inf for max; for average, divide by the counted cells).
        if (Kind == PoolingKind.Max)
        {
            using var padded = F.pad(inputs, [Pads.Left, Pads.Right, Pads.Top, Pads.Bottom], PaddingModes.Constant, double.NegativeInfinity);
            return F.max_pool2d(padded, k, s, ceil_mode: CeilMode);
        }
        using var zero = F.pad(inputs, [Pads.Left, Pads.Right, Pads.Top, Pads.Bottom]);
        using var sum = F.avg_pool2d(zero, k, s, ceil_mode: CeilMode, count_include_pad: true, divisor_override: 1);
        using var one = ones(1, 1, inputs.shape[2], inputs.shape[3], dtype: inputs.dtype, device: inputs.device);
        using var counted = F.pad(one, [Pads.Left, Pads.Right, Pads.Top, Pads.Bottom], PaddingModes.Constant, CountIncludePad ? 1.0 : 0.0);
        using var count = F.avg_pool2d(counted, k, s, ceil_mode: CeilMode, count_include_pad: true, divisor_override: 1);
        return sum.div(count);
    }

    /// <inheritdoc/>
    public override WindowInfo? Window(IReadOnlyList<Shape> inputShapes) => new WindowInfo(PoolSize, Strides, 1, new Size2(Pads.Top, Pads.Left));

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => false;
}
