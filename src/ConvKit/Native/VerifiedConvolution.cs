using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Native;

/// <summary>
/// Runs ConvKit's CPU convolutions on libtorch's fast kernels (oneDNN, channels-last memory) only for the problem
/// configurations where those kernels were checked to be right on this machine, and on an im2col + GEMM formulation
/// elsewhere.
/// </summary>
/// <remarks>
/// <para>libtorch 2.10 (TorchSharp 0.107) hands float32 CPU convolutions to oneDNN 3.7.1, which returns wrong outputs
/// or gradients for some ordinary shapes. Measured on this project's machine (AMD EPYC, AVX-512), a sweep of 150 random
/// shapes: plain NCHW memory gives wrong results whenever the channel count is not a multiple of oneDNN's block (e.g.
/// 31 channels under AVX2, 24 under AVX-512; errors of 15-30% of the output range, varying run to run with the memory
/// reused); channels-last memory fixes those but 12 of 150 shapes were still wrong under AVX-512 (1x1 convolutions with
/// 37, 40, 41 or 45 filters, a grouped 2->14 convolution: 40-90%) and 5 under AVX2 (16->48 3x3 on 5x5 maps at batch 2
/// or more). The errors are large and depend on the shape, the batch size and the CPU's instruction set, so they cannot
/// be listed in advance for a user's machine. libtorch without oneDNN is exact but 6-8x slower.</para>
/// <para>So the first time a configuration (input shape including the batch size, filters, strides, padding,
/// dilation, groups, and whether gradients are needed; batches above 8 are checked on 2-8 of their images) is seen, ConvKit runs it once through oneDNN on random data and
/// compares the output (and, when training, whichever of the input and filter gradients autograd will ask for) with the
/// im2col reference; the verdict is
/// cached for the process. The check costs about three convolutions of that shape, once. Kernels that fail are
/// replaced by the reference formulation (F.unfold + matmul, differentiable, exact, slower), and
/// <see cref="Rejected"/> lists them. Set CONVKIT_VERIFY_CONVOLUTIONS=0 to trust oneDNN everywhere.</para>
/// </remarks>
public static class VerifiedConvolution
{
    /// <summary>
    /// One convolution problem as oneDNN sees it (after ConvKit's explicit padding and subsampling); N is the batch size
    /// the check ran at (see VerificationBatch).
    /// </summary>
    public readonly record struct Configuration(long N, long C, long H, long W, long Filters, long KernelHeight, long KernelWidth,
        long StrideHeight, long StrideWidth, long PadHeight, long PadWidth, long DilationHeight, long DilationWidth, long Groups,
        bool InputGradient, bool FilterGradient, bool ChannelsFirst = false, string? PackedPostOps = null)
    {
        /// <inheritdoc/>
        public override string ToString() =>
            $"{N}x{C}x{H}x{W} -> {Filters} filters {KernelHeight}x{KernelWidth}, strides {StrideHeight}x{StrideWidth}, pads {PadHeight}x{PadWidth}, " +
            $"dilation {DilationHeight}x{DilationWidth}, groups {Groups}{(InputGradient ? ", input gradient" : "")}{(FilterGradient ? ", filter gradient" : "")}" +
            (ChannelsFirst ? ", NCHW memory" : "") + (PackedPostOps is { } post ? $", packed kernel, post-ops {post}" : "");
    }

    [ThreadStatic] static bool channelsFirst;

    /// <summary>
    /// Until disposed, convolutions on this thread run on plain NCHW memory (activations and kernels contiguous) instead
    /// of channels-last, 1x1 ones included: oneDNN then reorders each operand to its blocked layout and runs its
    /// jit_1x1 kernel, which is right and does not crash there (its channels-last 1x1 kernels do, see
    /// <see cref="Pointwise"/>), and beats the GEMM formulation on bottleneck networks: Keras' ResNet-50 inference
    /// 17.8 -> 21.5 images/s at batch 1, 24.3 -> 28.5 at batch 16. The inference plan uses it for graphs with such
    /// 1x1 convolutions (FunctionalGraph.InferenceChannelsFirst); no gradient may be recorded inside.
    /// </summary>
    internal static ChannelsFirstScope ChannelsFirst(bool on = true)
    {
        var scope = new ChannelsFirstScope(channelsFirst);
        channelsFirst = on;
        return scope;
    }

    internal readonly struct ChannelsFirstScope(bool previous) : IDisposable
    {
        public void Dispose() => channelsFirst = previous;
    }

    /// <summary>Whether ConvKit's convolutions on this thread run on NCHW memory now (see <see cref="ChannelsFirst"/>).</summary>
    internal static bool ChannelsFirstActive => channelsFirst;

    /// <summary>oneDNN's channel block under AVX-512 (a multiple of AVX2's 8).</summary>
    const long OneDnnBlock = 16;

    /// <summary>
    /// Whether a convolution with kernel <paramref name="w"/> runs on NCHW memory now: inside <see cref="ChannelsFirst"/>
    /// and with input and output channel counts that are multiples of oneDNN's block. Other counts are padded to the
    /// block in oneDNN's blocked layout, and those kernels read memory libtorch leaves uninitialized (seen: torchvision
    /// GoogLeNet's 24-channel convolutions gave different outputs run to run on reused memory, and NaN on poisoned
    /// memory); they run channels-last.
    /// </summary>
    internal static bool RunsChannelsFirst(Tensor w) => channelsFirst && w.shape[0] % OneDnnBlock == 0 && w.shape[1] % OneDnnBlock == 0;

    /// <summary><paramref name="x"/> in the memory format convolutions read on this thread: channels-last, or contiguous
    /// NCHW inside <see cref="ChannelsFirst"/>. The same tensor (a new handle) when it already is.</summary>
    internal static Tensor ToConvolutionLayout(Tensor x) => channelsFirst ? x.contiguous() : Ops.ToChannelsLast(x);

    static readonly ConcurrentDictionary<Configuration, bool> Verdicts = new();
    static readonly bool Disabled = Environment.GetEnvironmentVariable("CONVKIT_VERIFY_CONVOLUTIONS") is "0" or "false" or "off";

    /// <summary>Configurations whose oneDNN kernels failed the check in this process (they run on the reference).</summary>
    public static IReadOnlyCollection<Configuration> Rejected => Verdicts.Where(kv => !kv.Value).Select(kv => kv.Key).ToArray();

    /// <summary>Configurations checked so far in this process.</summary>
    public static int Checked => Verdicts.Count;

    /// <summary>Largest relative error (of the output's or gradient's range) a fast kernel may show and still pass.</summary>
    public const double Tolerance = 1e-3;

    /// <summary>
    /// The convolution of <paramref name="x"/> (NCHW shape) with symmetric zero padding, like F.conv2d, on a kernel that
    /// is right for this configuration.
    /// </summary>
    internal static Tensor Conv2D(Tensor x, Tensor w, Tensor? bias, long[] stride, long[] padding, long[] dilation, long groups)
    {
        if (x.device_type != DeviceType.CPU)
            return F.conv2d(x, w, bias, stride, padding, dilation, groups);
        // Inside ChannelsFirst, only kernels whose channel counts fill oneDNN's blocks run on NCHW memory.
        using var layout = ChannelsFirst(RunsChannelsFirst(w));
        if (!channelsFirst && padding[0] == 0 && padding[1] == 0 && IsLargePointwise(w, stride, groups))
            return Pointwise(x, w, bias);
        if (Disabled || x.dtype != ScalarType.Float32)
            return Fast(x, w, bias, stride, padding, dilation, groups);
        bool grad = is_grad_enabled();
        var key = new Configuration(VerificationBatch(x, w), x.shape[1], x.shape[2], x.shape[3], w.shape[0], w.shape[2], w.shape[3],
            stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups, grad && x.requires_grad, grad && w.requires_grad,
            channelsFirst);
        if (!Verdicts.TryGetValue(key, out bool fastIsRight))
        {
            fastIsRight = Verify(key);
            Verdicts[key] = fastIsRight;
        }
        return fastIsRight ? Fast(x, w, bias, stride, padding, dilation, groups) : Reference(x, w, bias, stride, padding, dilation, groups);
    }

    /// <summary>
    /// Whether oneDNN's convolution on a packed kernel (<see cref="PackedConvolution"/>) with these post-ops is right for
    /// the convolution of <paramref name="x"/> (channels-last float32, already padded or subsampled) by a kernel shaped
    /// like <paramref name="w"/>: checked once per configuration against the im2col reference, as <see cref="Conv2D"/>
    /// checks the ordinary kernels.
    /// </summary>
    internal static bool PackedIsRight(Tensor x, Tensor w, long[] stride, long[] padding, long[] dilation, long groups, bool relu)
    {
        if (Disabled) return true;
        string post = relu ? "relu" : "none";
        var key = new Configuration(VerificationBatch(x, w), x.shape[1], x.shape[2], x.shape[3], w.shape[0], w.shape[2], w.shape[3],
            stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1], groups, false, false, false, post);
        if (!Verdicts.TryGetValue(key, out bool right))
        {
            right = VerifyPacked(key, relu);
            Verdicts[key] = right;
        }
        return right;
    }

    static bool VerifyPacked(Configuration c, bool relu)
    {
        using var transient = CpuMemoryPool.Transient();
        using var scope = NewDisposeScope();
        using var inferenceOff = inference_mode(false);
        using var noGrad = no_grad();
        using var gen = new Generator(0x5eed);
        long[] stride = [c.StrideHeight, c.StrideWidth], padding = [c.PadHeight, c.PadWidth], dilation = [c.DilationHeight, c.DilationWidth];
        var x = Ops.ToChannelsLast(randn([c.N, c.C, c.H, c.W], generator: gen));
        var w = randn([c.Filters, c.C / c.Groups, c.KernelHeight, c.KernelWidth], generator: gen);
        var bias = randn([c.Filters], generator: gen);
        var expected = Reference(x, w, bias, stride, padding, dilation, c.Groups);
        if (relu) expected = expected.relu();
        try
        {
            using var packed = PackedConvolution.Pack(w, padding, stride, dilation, c.Groups, [c.N, c.C, c.H, c.W]);
            var actual = PackedConvolution.Run(x, packed, bias, padding, stride, dilation, c.Groups, relu);
            return Close(actual, expected);
        }
        catch (ExternalException)
        {
            // oneDNN refused the problem: not for this configuration, which runs the ordinary way.
            return false;
        }
    }

    /// <summary>
    /// The batch size the check runs at: the real one up to 8 (the measured failures appear from batch 2 on, and some
    /// only there, so 1 and 2+ are told apart), else 2-8 images, as many as keep the im2col matrix near 256 MiB.
    /// </summary>
    static long VerificationBatch(Tensor x, Tensor w)
    {
        long n = x.shape[0];
        if (n <= 2) return n;
        long perImage = Math.Max(1, x.shape[1] * w.shape[2] * w.shape[3] * x.shape[2] * x.shape[3] * 4);
        return Math.Clamp((256L << 20) / perImage, 2, Math.Min(n, 8));
    }

    /// <summary>libtorch's convolution (oneDNN on x86 CPUs) on channels-last memory, or NCHW inside <see cref="ChannelsFirst"/>.</summary>
    static Tensor Fast(Tensor x, Tensor w, Tensor? bias, long[] stride, long[] padding, long[] dilation, long groups)
    {
        using var input = ToConvolutionLayout(x);
        if (!channelsFirst) return F.conv2d(input, w, bias, stride, padding, dilation, groups);
        // A channels-last kernel would send libtorch back to the channels-last kernels.
        using var kernel = w.contiguous();
        return F.conv2d(input, kernel, bias, stride, padding, dilation, groups);
    }

    /// <summary>
    /// 1x1 convolutions with more channels than this (in or out) run as a GEMM (<see cref="Pointwise"/>); smaller ones go
    /// through oneDNN, checked like the others: oneDNN's backward is 10-15% faster there (ResNet-20's projection
    /// shortcuts), and no crash was seen at those sizes.
    /// </summary>
    internal const long PointwiseOneDnnLimit = 64;

    /// <summary>A stride-1, one-group 1x1 kernel with more than <see cref="PointwiseOneDnnLimit"/> channels in or out.</summary>
    internal static bool IsLargePointwise(Tensor w, long[] stride, long groups) =>
        w.shape[2] == 1 && w.shape[3] == 1 && stride[0] == 1 && stride[1] == 1 && groups == 1
        && (w.shape[0] > PointwiseOneDnnLimit || w.shape[1] > PointwiseOneDnnLimit);

    /// <summary>
    /// A 1x1 convolution (stride 1, no padding, one group) is a matrix product over the pixels: (N·H·W, C) × (C, O),
    /// which on channels-last memory needs no copy. ConvKit runs the larger ones as that GEMM (F.linear) rather than
    /// through oneDNN, whose 1x1 kernels on this libtorch crash the process (SIGFPE in brgemm's blocking heuristics at
    /// primitive creation, e.g. 512->1024 on 14x14 maps with 2 threads: ResNet-50's conv4 shortcut; a crash cannot be
    /// checked for and survived) and compute wrong outputs under AVX-512 for some filter counts (37, 40, 41, 45).
    /// </summary>
    static Tensor Pointwise(Tensor x, Tensor w, Tensor? bias)
    {
        using var cl = Ops.ToChannelsLast(x);
        using var nhwc = cl.permute(0, 2, 3, 1); // (N, H, W, C), contiguous
        using var matrix = w.reshape(w.shape[0], w.shape[1]);
        using var y = F.linear(nhwc, matrix, bias); // (N, H, W, O)
        return y.permute(0, 3, 1, 2);
    }

    /// <summary>
    /// The same convolution as im2col (F.unfold) and one batched matrix product per group: libtorch's own reference
    /// kernels, differentiable, no oneDNN. Returns the memory format <see cref="Fast"/> returns.
    /// </summary>
    internal static Tensor Reference(Tensor x, Tensor w, Tensor? bias, long[] stride, long[] padding, long[] dilation, long groups)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[0], o = w.shape[0], kh = w.shape[2], kw = w.shape[3];
        long oh = (x.shape[2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
        long ow = (x.shape[3] + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
        var cols = F.unfold(x, (kh, kw), (dilation[0], dilation[1]), (padding[0], padding[1]), (stride[0], stride[1])); // N, C*kh*kw, L
        long k = cols.shape[1] / groups;
        // (g, O/g, K) @ (N, g, K, L) -> (N, g, O/g, L)
        var y = w.reshape(groups, o / groups, k).matmul(cols.reshape(n, groups, k, oh * ow)).reshape(n, o, oh, ow);
        if (bias is not null) y = y.add(bias.reshape(1, o, 1, 1), Scalars.One);
        return ToConvolutionLayout(y).MoveToOuterDisposeScope();
    }

    static bool Verify(Configuration c)
    {
        // The check's tensors (an im2col matrix up to ~256 MiB) are never seen again: not kept by the CPU pool.
        using var transient = CpuMemoryPool.Transient();
        using var scope = NewDisposeScope();
        using var inferenceOff = inference_mode(false);
        bool backward = c.InputGradient || c.FilterGradient;
        using var gradMode = backward ? enable_grad() : no_grad();
        using var gen = new Generator(0x5eed);
        long[] stride = [c.StrideHeight, c.StrideWidth], padding = [c.PadHeight, c.PadWidth], dilation = [c.DilationHeight, c.DilationWidth];
        var x = randn([c.N, c.C, c.H, c.W], generator: gen);
        var w = randn([c.Filters, c.C / c.Groups, c.KernelHeight, c.KernelWidth], generator: gen);
        var xf = x.detach().requires_grad_(c.InputGradient);
        var wf = w.detach().requires_grad_(c.FilterGradient);
        var xr = x.detach().requires_grad_(c.InputGradient);
        var wr = w.detach().requires_grad_(c.FilterGradient);
        var yf = Fast(xf, wf, null, stride, padding, dilation, c.Groups);
        var yr = Reference(xr, wr, null, stride, padding, dilation, c.Groups);
        if (!Close(yf, yr)) return false;
        if (!backward) return true;
        var probe = randn(yr.shape, generator: gen);
        yf.mul(probe).sum().backward();
        yr.mul(probe).sum().backward();
        return (!c.InputGradient || Close(xf.grad!, xr.grad!)) && (!c.FilterGradient || Close(wf.grad!, wr.grad!));
    }

    static bool Close(Tensor actual, Tensor expected)
    {
        double scale = expected.abs().max().item<float>();
        double err = actual.sub(expected).abs().max().item<float>();
        return !double.IsNaN(err) && err <= Tolerance * Math.Max(scale, 1e-12);
    }
}
