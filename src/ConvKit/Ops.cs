using System.Globalization;
using System.Runtime.InteropServices;
using ConvKit.Layers;
using Padding = ConvKit.Padding;
using DeviceType = TorchSharp.DeviceType;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using ConvKit.Native;

namespace ConvKit;

/// <summary>The axis order of an image batch given to <see cref="Ops"/>.</summary>
public enum DataFormat
{
    /// <summary>(batch, channels, height, width): ConvKit's internal layout, what a layer's <c>Call</c> receives.</summary>
    ChannelsFirst,

    /// <summary>(batch, height, width, channels): TensorFlow's NHWC, with filters in TF's (kh, kw, in, out) order.</summary>
    ChannelsLast,
}

/// <summary>
/// Low-level functional operations, the counterparts of <c>tf.nn.conv2d</c>, <c>tf.nn.max_pool</c> and
/// <c>tf.nn.avg_pool</c>, for layers written by hand (Build with <c>AddWeight</c>, Call with <c>Ops.Conv2D</c>).
/// 'SAME' and 'VALID' follow Keras/TF arithmetic (<see cref="ConvArithmetic"/>): the odd padding pixel goes
/// bottom/right. The layers <see cref="Layers.Conv2D"/>, <see cref="MaxPooling2D"/> and <see cref="AveragePooling2D"/>
/// compute through these functions, so there is one implementation of the padding rules.
/// </summary>
/// <remarks>
/// Strides, window sizes and dilations are accepted as TF accepts them: one int, [h, w], or four values with 1 on the
/// batch and channel axes ([1, s, s, 1] for ChannelsLast, [1, 1, s, s] for ChannelsFirst).
/// </remarks>
public static class Ops
{
    /// <summary>2-D convolution, <c>tf.nn.conv2d</c>.</summary>
    /// <param name="input">NCHW (ChannelsFirst) or NHWC (ChannelsLast) batch.</param>
    /// <param name="filters">(out, in / groups, kh, kw) for ChannelsFirst; TF's (kh, kw, in / groups, out) for ChannelsLast.</param>
    /// <param name="strides">One int, [h, w] or four values (see the class remarks).</param>
    /// <param name="padding">"VALID" or "SAME" (any case).</param>
    /// <param name="dataFormat">Layout of <paramref name="input"/>, <paramref name="filters"/> and the result.</param>
    /// <param name="dilations">Tap spacing, given like <paramref name="strides"/>; null = 1.</param>
    /// <param name="groups">Channel groups (input channels = filter input channels × groups).</param>
    /// <param name="bias">Optional (out) bias.</param>
    /// <returns>The convolution in <paramref name="dataFormat"/>.</returns>
    /// <exception cref="LayerArgumentException">Bad strides, dilations, groups or padding string.</exception>
    /// <exception cref="ShapeException">Ranks or channels do not match, or a 'VALID' window does not fit.</exception>
    public static Tensor Conv2D(Tensor input, Tensor filters, int[] strides, string padding,
        DataFormat dataFormat = DataFormat.ChannelsFirst, int[]? dilations = null, int groups = 1, Tensor? bias = null) =>
        Conv2D(input, filters, strides, ParsePadding(padding, "Ops.Conv2D"), dataFormat, dilations, groups, bias);

    /// <summary>2-D convolution with a <see cref="Padding"/> mode; see the string overload.</summary>
    /// <exception cref="LayerArgumentException">Bad strides, dilations or groups.</exception>
    /// <exception cref="ShapeException">Ranks or channels do not match, or a 'valid' window does not fit.</exception>
    public static Tensor Conv2D(Tensor input, Tensor filters, int[] strides, Padding padding,
        DataFormat dataFormat = DataFormat.ChannelsFirst, int[]? dilations = null, int groups = 1, Tensor? bias = null)
    {
        const string op = "Ops.Conv2D";
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(filters);
        var s = Window(strides, dataFormat, op, "strides");
        var d = dilations is null ? new Size2(1, 1) : Window(dilations, dataFormat, op, "dilations");
        if (groups <= 0) throw new LayerArgumentException(op, "groups", $"must be positive; received groups={groups}.");
        if (input.dim() != 4) throw new ShapeException($"{op}: input must be a 4-D {Describe(dataFormat)} batch; received shape {Fmt(input.shape)}.");
        if (filters.dim() != 4) throw new ShapeException($"{op}: filters must be 4-D {(dataFormat == DataFormat.ChannelsLast ? "(kh, kw, in, out)" : "(out, in, kh, kw)")}; received shape {Fmt(filters.shape)}.");
        bool last = dataFormat == DataFormat.ChannelsLast;
        using var x = last ? input.permute(0, 3, 1, 2) : input.alias();
        using var w = last ? filters.permute(3, 2, 0, 1) : filters.alias();
        long inC = x.shape[1], outC = w.shape[0];
        if (w.shape[1] * groups != inC)
            throw new ShapeException($"{op}: the input has {inC} channels but the filters {Fmt(filters.shape)} take {w.shape[1]} per group × groups={groups} = {w.shape[1] * groups}.");
        if (outC % groups != 0)
            throw new LayerArgumentException(op, "groups", $"the {outC} output channels are not divisible by groups={groups}.");
        if (bias is not null && (bias.dim() != 1 || bias.shape[0] != outC))
            throw new ShapeException($"{op}: bias must have shape ({outC},); received {Fmt(bias.shape)}.");
        var y = Conv2DChannelsFirst(x, w, bias, new Size2((int)w.shape[2], (int)w.shape[3]), s, padding, d, groups, op);
        if (!last) return y;
        using (y) return y.permute(0, 2, 3, 1).contiguous();
    }

    /// <summary>Max pooling, <c>tf.nn.max_pool</c>. 'SAME' padding is -inf, so it never wins.</summary>
    /// <param name="input">NCHW or NHWC batch.</param>
    /// <param name="ksize">Window: one int, [h, w] or four values.</param>
    /// <param name="strides">Step: one int, [h, w] or four values.</param>
    /// <param name="padding">"VALID" or "SAME".</param>
    /// <param name="dataFormat">Layout of input and result.</param>
    /// <exception cref="LayerArgumentException">Bad window, strides or padding string.</exception>
    /// <exception cref="ShapeException">Wrong rank, or a 'VALID' window larger than the input.</exception>
    public static Tensor MaxPool2D(Tensor input, int[] ksize, int[] strides, string padding, DataFormat dataFormat = DataFormat.ChannelsFirst) =>
        Pool(input, ksize, strides, ParsePadding(padding, "Ops.MaxPool2D"), dataFormat, "Ops.MaxPool2D", max: true);

    /// <summary>Max pooling with a <see cref="Padding"/> mode; see the string overload.</summary>
    /// <exception cref="LayerArgumentException">Bad window or strides.</exception>
    /// <exception cref="ShapeException">Wrong rank, or a 'valid' window larger than the input.</exception>
    public static Tensor MaxPool2D(Tensor input, int[] ksize, int[] strides, Padding padding, DataFormat dataFormat = DataFormat.ChannelsFirst) =>
        Pool(input, ksize, strides, padding, dataFormat, "Ops.MaxPool2D", max: true);

    /// <summary>
    /// Average pooling, <c>tf.nn.avg_pool</c>. With 'SAME' padding each output is the mean of the real (non-padding)
    /// cells of its window.
    /// </summary>
    /// <exception cref="LayerArgumentException">Bad window, strides or padding string.</exception>
    /// <exception cref="ShapeException">Wrong rank, or a 'VALID' window larger than the input.</exception>
    public static Tensor AvgPool2D(Tensor input, int[] ksize, int[] strides, string padding, DataFormat dataFormat = DataFormat.ChannelsFirst) =>
        Pool(input, ksize, strides, ParsePadding(padding, "Ops.AvgPool2D"), dataFormat, "Ops.AvgPool2D", max: false);

    /// <summary>Average pooling with a <see cref="Padding"/> mode; see the string overload.</summary>
    /// <exception cref="LayerArgumentException">Bad window or strides.</exception>
    /// <exception cref="ShapeException">Wrong rank, or a 'valid' window larger than the input.</exception>
    public static Tensor AvgPool2D(Tensor input, int[] ksize, int[] strides, Padding padding, DataFormat dataFormat = DataFormat.ChannelsFirst) =>
        Pool(input, ksize, strides, padding, dataFormat, "Ops.AvgPool2D", max: false);

    /// <summary>Parses TF's padding strings "VALID" and "SAME" (any case).</summary>
    /// <exception cref="LayerArgumentException">Any other string.</exception>
    public static Padding ParsePadding(string padding, string op = "padding")
    {
        return padding?.ToUpperInvariant() switch
        {
            "VALID" => Padding.Valid,
            "SAME" => Padding.Same,
            _ => throw new LayerArgumentException(op, "padding", $"must be \"VALID\" or \"SAME\"; received padding={(padding is null ? "null" : $"\"{padding}\"")}."),
        };
    }

    static Tensor Pool(Tensor input, int[] ksize, int[] strides, Padding padding, DataFormat dataFormat, string op, bool max)
    {
        ArgumentNullException.ThrowIfNull(input);
        var k = Window(ksize, dataFormat, op, "ksize");
        var s = Window(strides, dataFormat, op, "strides");
        if (input.dim() != 4) throw new ShapeException($"{op}: input must be a 4-D {Describe(dataFormat)} batch; received shape {Fmt(input.shape)}.");
        bool last = dataFormat == DataFormat.ChannelsLast;
        using var x = last ? input.permute(0, 3, 1, 2) : input.alias();
        var y = max ? MaxPoolChannelsFirst(x, k, s, padding, op) : AvgPoolChannelsFirst(x, k, s, padding, null, op);
        if (!last) return y;
        using (y) return y.permute(0, 2, 3, 1).contiguous();
    }

    // ------------------------------------------------------------------ shared cores (NCHW, validated arguments)

    /// <summary>The convolution every ConvKit path runs: NCHW input, (out, in/groups, kh, kw) weight.</summary>
    internal static Tensor Conv2DChannelsFirst(Tensor x, Tensor w, Tensor? bias, Size2 kernel, Size2 strides, Padding padding, Size2 dilation, int groups, string who) =>
        Conv2DPadded(x, w, bias, kernel, strides, Pads(x, kernel, strides, padding, dilation, who), dilation, groups, who);

    /// <summary>The convolution with explicit zero padding (top, bottom, left, right) of the NCHW input. When given,
    /// <paramref name="run"/> computes the convolution of the (padded or subsampled) input with the returned strides and
    /// symmetric pads, or returns null to leave it to <see cref="VerifiedConvolution"/>.</summary>
    internal static Tensor Conv2DPadded(Tensor x, Tensor w, Tensor? bias, Size2 kernel, Size2 strides,
        (int Top, int Bottom, int Left, int Right) pads, Size2 dilation, int groups, string who, Func<Tensor, long[], long[], Tensor?>? run = null)
    {
        var (top, bottom, left, right) = pads;
        long[] stride = [strides.Height, strides.Width], dil = [dilation.Height, dilation.Width];
        Tensor Convolve(Tensor input, long[] s, long[] p) => run?.Invoke(input, s, p) ?? VerifiedConvolution.Conv2D(input, w, bias, s, p, dil, groups);
        return Guard(who, x, () =>
        {
            // Through VerifiedConvolution: libtorch 2.10's oneDNN kernels are wrong for some shapes (see there).
            if (kernel is { Height: 1, Width: 1 } && (strides.Height > 1 || strides.Width > 1) && top + bottom + left + right == 0
                && (w.shape[0] > VerifiedConvolution.PointwiseOneDnnLimit || w.shape[1] > VerifiedConvolution.PointwiseOneDnnLimit))
            {
                // A strided 1x1 convolution reads every s-th pixel only: subsample first. Same result, and the stride-1
                // convolution runs as a GEMM (VerifiedConvolution.Pointwise); it also avoids a libtorch 2.10 CPU crash
                // (SIGFPE, a division by zero in oneDNN's brgemm backward heuristics) for strided 1x1 convolutions with
                // 512->1024 or 1024->2048 channels, as in ResNet-50's shortcuts. Small ones stay strided convolutions:
                // subsampling costs a scatter in backward (ResNet-20 training, Fit/raw TorchSharp 0.973 -> 0.996).
                using var sub = x[TensorIndex.Colon, TensorIndex.Colon, TensorIndex.Slice(step: strides.Height), TensorIndex.Slice(step: strides.Width)];
                return Convolve(sub, [1, 1], [0, 0]);
            }
            if (top == bottom && left == right) return Convolve(x, stride, [top, left]);
            using var padded = F.pad(x, [left, right, top, bottom]);
            return Convolve(padded, stride, [0, 0]);
        });
    }

    /// <summary>
    /// <paramref name="x"/> (N, C, H, W) with channels-last strides (NHWC memory behind the NCHW shape): the same
    /// tensor (a new handle) when it already is, else a copy. ConvKit's convolutions run in this format: oneDNN's
    /// channels-last kernels skip the reorders to and from blocked layouts around every convolution, and are right for
    /// shapes where the plain-NCHW ones are not (see VerifiedConvolution); the output comes back channels-last, so a
    /// chain of layers stays in that format.
    /// </summary>
    internal static Tensor ToChannelsLast(Tensor x)
    {
        using var nhwc = x.permute(0, 2, 3, 1);
        using var dense = nhwc.contiguous();
        return dense.permute(0, 3, 1, 2);
    }

    /// <summary>Max pooling on NCHW; asymmetric 'same' padding is -inf.</summary>
    internal static Tensor MaxPoolChannelsFirst(Tensor x, Size2 pool, Size2 strides, Padding padding, string who)
    {
        var (t, b, l, r) = Pads(x, pool, strides, padding, 1, who);
        long[] k = [pool.Height, pool.Width], s = [strides.Height, strides.Width];
        return Guard(who, x, () =>
        {
            // libtorch's implicit padding is -inf but limited to half the window; Keras' symmetric pads always are.
            if (t == b && l == r) return F.max_pool2d(x, k, s, [t, l]);
            using var padded = F.pad(x, [l, r, t, b], value: double.NegativeInfinity);
            return F.max_pool2d(padded, k, s);
        });
    }

    /// <summary>
    /// Average pooling on NCHW, dividing by the number of real cells. <paramref name="cache"/> keeps the divisor of the
    /// last input size (it depends on nothing else).
    /// </summary>
    internal static Tensor AvgPoolChannelsFirst(Tensor x, Size2 pool, Size2 strides, Padding padding, PoolDivisorCache? cache, string who)
    {
        var (t, b, l, r) = Pads(x, pool, strides, padding, 1, who);
        long[] k = [pool.Height, pool.Width], s = [strides.Height, strides.Width];
        return Guard(who, x, () =>
        {
            if (t == b && l == r) return F.avg_pool2d(x, k, s, [t, l], count_include_pad: false);
            using var padded = F.pad(x, [l, r, t, b]);
            using var sums = F.avg_pool2d(padded, k, s);
            if (cache is not null) return sums.div(cache.Get(x.shape[2], x.shape[3], x.device, (t, b, l, r), k, s));
            using var divisor = PoolDivisorCache.Compute(x.shape[2], x.shape[3], x.device, (t, b, l, r), k, s);
            return sums.div(divisor);
        });
    }

    internal static (int Top, int Bottom, int Left, int Right) Pads(Tensor x, Size2 kernel, Size2 strides, Padding padding, Size2 dilation, string who)
    {
        int h = checked((int)x.shape[2]), w = checked((int)x.shape[3]);
        int oh = ConvArithmetic.OutputLength(h, kernel.Height, strides.Height, padding, dilation.Height);
        int ow = ConvArithmetic.OutputLength(w, kernel.Width, strides.Width, padding, dilation.Width);
        if (oh < 1 || ow < 1)
            throw new ShapeException($"{who}: a window of {kernel} (dilation {dilation}) does not fit the input of height {h} and width {w} with padding='valid'; the output would be ({oh}, {ow}).");
        var (top, bottom) = ConvArithmetic.Pads(h, kernel.Height, strides.Height, padding, dilation.Height);
        var (left, right) = ConvArithmetic.Pads(w, kernel.Width, strides.Width, padding, dilation.Width);
        return (top, bottom, left, right);
    }

    // Shape checks above cover the known failure modes; anything libtorch still rejects becomes a ConvKit error.
    static Tensor Guard(string who, Tensor x, Func<Tensor> f)
    {
        try
        {
            return f();
        }
        catch (ExternalException e)
        {
            throw new ShapeException($"{who} failed on input of shape {Fmt(x.shape)}: {e.Message}");
        }
    }

    static Size2 Window(int[] values, DataFormat format, string op, string argument)
    {
        ArgumentNullException.ThrowIfNull(values, argument);
        string Received() => $"received {argument}=[{string.Join(", ", values)}].";
        Size2 result = values.Length switch
        {
            1 => new Size2(values[0], values[0]),
            2 => new Size2(values[0], values[1]),
            4 when format == DataFormat.ChannelsLast && values[0] == 1 && values[3] == 1 => new Size2(values[1], values[2]),
            4 when format == DataFormat.ChannelsFirst && values[0] == 1 && values[1] == 1 => new Size2(values[2], values[3]),
            4 => throw new LayerArgumentException(op, argument, $"with four values the batch and channel entries must be 1 ({(format == DataFormat.ChannelsLast ? "[1, h, w, 1] for ChannelsLast" : "[1, 1, h, w] for ChannelsFirst")}); {Received()}"),
            _ => throw new LayerArgumentException(op, argument, $"must have 1, 2 or 4 values; {Received()}"),
        };
        if (result.Height <= 0 || result.Width <= 0)
            throw new LayerArgumentException(op, argument, $"must be positive; {Received()}");
        return result;
    }

    static string Describe(DataFormat f) => f == DataFormat.ChannelsLast ? "(batch, height, width, channels)" : "(batch, channels, height, width)";

    static string Fmt(ReadOnlySpan<long> shape) =>
        "(" + string.Join(", ", shape.ToArray().Select(d => d.ToString(CultureInfo.InvariantCulture))) + ")";
}

/// <summary>
/// The per-window count of real cells for 'same' average pooling, cached for the last input size and device; owned
/// and disposed by a layer. Safe for concurrent calls (Predict from several threads): an entry is immutable and
/// replaced whole; a replaced divisor another call may still be reading is left to the garbage collector.
/// </summary>
internal sealed class PoolDivisorCache : IDisposable
{
    sealed record Entry(long H, long W, DeviceType Device, Tensor Divisor);

    Entry? entry;

    public Tensor Get(long h, long w, Device device, (int T, int B, int L, int R) pads, long[] k, long[] s)
    {
        var e = Volatile.Read(ref entry);
        if (e is not null && e.H == h && e.W == w && e.Device == device.type) return e.Divisor;
        var fresh = new Entry(h, w, device.type, Compute(h, w, device, pads, k, s).DetachFromDisposeScope());
        Volatile.Write(ref entry, fresh);
        return fresh.Divisor;
    }

    /// <summary>Average of a zero-padded map of ones: the fraction of real cells in each window.</summary>
    public static Tensor Compute(long h, long w, Device device, (int T, int B, int L, int R) pads, long[] k, long[] s)
    {
        // Cached across calls: an ordinary tensor even when first computed under inference mode (training divides by it).
        using var normal = inference_mode(false);
        using var _ = no_grad();
        using var all = ones(1, 1, h, w, device: device);
        using var padded = F.pad(all, [pads.L, pads.R, pads.T, pads.B]);
        return F.avg_pool2d(padded, k, s);
    }

    public void Dispose() => Interlocked.Exchange(ref entry, null)?.Divisor.Dispose();
}
