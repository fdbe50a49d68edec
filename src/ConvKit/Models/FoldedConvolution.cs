// A Conv2D followed by an inference-mode BatchNormalization is one affine map per output channel:
// bn(conv(x, W) + b) = conv(x, W·s) + (b - mean)·s + beta with s = gamma / sqrt(var + eps). Predict and Evaluate run
// that single convolution, which saves a pass over every activation. The folded weights are cached and rebuilt when
// libtorch's version counter shows any of the six source tensors written (training, loading, SetWeights, in-place
// edits) or when a layer's weights were replaced (to(device), to(dtype)).
using ConvKit.Layers;
using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Models;

/// <summary>The folded kernel and bias of a Conv2D + BatchNormalization pair, cached by the sources' versions.</summary>
internal sealed class FoldedConvolution(Conv2D conv, BatchNormalization bn) : IDisposable
{
    readonly Tensor?[] sources = new Tensor?[6];
    readonly long[] versions = new long[6];
    Tensor? kernel, bias;
    bool kernelChannelsFirst;

    /// <summary>How many times this pair was folded (tests: the cache must not refold unchanged weights).</summary>
    internal int Folds { get; private set; }

    /// <summary>Changes whenever the folded weights do (a source replaced or written): what derived copies compare.</summary>
    public int Generation { get; private set; }

    public Conv2D Conv => conv;

    public BatchNormalization BatchNorm => bn;

    /// <summary>Whether the pair can run folded now: batch normalization on its moving statistics, 4-D channel axis.</summary>
    public bool Applies => !(bn.training && bn.Trainable) && bn.Axis is -1 or 3;

    /// <summary>The folded (kernel, bias), the kernel channels-last or, with <paramref name="channelsFirst"/>, contiguous
    /// NCHW; null when the sources' versions cannot be read (nothing is cached then).</summary>
    public (Tensor Kernel, Tensor Bias)? Get(bool channelsFirst = false)
    {
        Span<long> now = stackalloc long[6];
        Tensor?[] current = Current;
        bool unchanged = bias is not null && SourcesUnchanged(current, now);
        if (unchanged && kernel is not null && channelsFirst == kernelChannelsFirst) return (kernel, bias!);
        if (!TryReadVersions(current, now)) return null;

        // A refold of unchanged sources (kernel dropped, or wanted in the other layout) keeps the generation.
        // The bias then stays the same tensor: a caller may hold it (FusedConvolution.Run).
        var (k, b) = Fold(conv, bn, channelsFirst);
        kernel?.Dispose();
        kernel = k;
        if (unchanged) b.Dispose();
        else
        {
            Generation++;
            bias?.Dispose();
            bias = b;
        }
        kernelChannelsFirst = channelsFirst;
        Folds++;
        current.CopyTo(sources, 0);
        now.CopyTo(versions);
        return (kernel, bias!);
    }

    Tensor?[] Current => [conv.Kernel, conv.Bias, bn.Gamma, bn.Beta, bn.MovingMean, bn.MovingVariance];

    /// <summary>Whether none of the six sources was replaced or written since the last fold (false when their versions
    /// cannot be read).</summary>
    public bool IsCurrent()
    {
        Span<long> now = stackalloc long[6];
        return bias is not null && SourcesUnchanged(Current, now);
    }

    /// <summary>The folded bias of the last fold (valid while <see cref="IsCurrent"/>).</summary>
    public Tensor? FoldedBias => bias;

    /// <summary>
    /// Frees the folded kernel but remembers what it was folded from: for a caller that keeps its own derived copy
    /// (a packed kernel) and checks <see cref="IsCurrent"/>. <see cref="Get"/> folds again when asked.
    /// </summary>
    public void DropKernel()
    {
        kernel?.Dispose();
        kernel = null;
    }

    bool SourcesUnchanged(Tensor?[] current, Span<long> now)
    {
        if (!TryReadVersions(current, now)) return false;
        for (int i = 0; i < current.Length; i++)
            if (!ReferenceEquals(current[i], sources[i]) || (current[i] is not null && now[i] != versions[i])) return false;
        return true;
    }

    static bool TryReadVersions(Tensor?[] current, Span<long> now)
    {
        for (int i = 0; i < current.Length; i++)
        {
            if (current[i] is not { } t) continue;
            if (TensorVersion.Of(t) is not { } v) return false;
            now[i] = v;
        }
        return true;
    }

    /// <summary>Folds in float64 (one rounding per weight); the results keep the kernel's dtype and device, in the
    /// layout ConvKit's CPU convolutions will read: channels-last, or contiguous NCHW with <paramref name="channelsFirst"/>
    /// (see VerifiedConvolution.ChannelsFirst).</summary>
    internal static (Tensor Kernel, Tensor Bias) Fold(Conv2D conv, BatchNormalization bn, bool channelsFirst = false)
    {
        // Cached across calls: never inference tensors, never recorded by autograd, outside any dispose scope; its
        // float64 temporaries are not worth keeping in the CPU pool.
        using var transient = CpuMemoryPool.Transient();
        using var normal = inference_mode(false);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var w = conv.Kernel!;
        var dtype = w.dtype;
        const ScalarType precise = ScalarType.Float64;
        var mean = bn.MovingMean!.to_type(precise);
        using var epsilon = bn.Epsilon.ToScalar();
        var s = bn.MovingVariance!.to_type(precise).add(epsilon, Scalars.One).rsqrt();
        if (bn.Gamma is { } gamma) s = s * gamma.to_type(precise);
        var b = conv.Bias is { } cb ? cb.to_type(precise) : zeros_like(mean);
        var shift = (b - mean) * s;
        if (bn.Beta is { } beta) shift = shift.add(beta.to_type(precise), Scalars.One);
        var folded = (w.to_type(precise) * s.view(-1, 1, 1, 1)).to_type(dtype);
        var kernel = channelsFirst ? folded.contiguous() : Ops.ToChannelsLast(folded);
        return (kernel.DetachFromDisposeScope(), shift.to_type(dtype).DetachFromDisposeScope());
    }

    public void Dispose()
    {
        kernel?.Dispose();
        bias?.Dispose();
        kernel = bias = null;
        Array.Clear(sources);
    }
}

/// <summary>
/// A convolution step of the inference plan: the Conv2D, with the BatchNormalization it feeds folded in (when that
/// applies at run time), the ZeroPadding2D in front of it taken as its own padding, and the ReLU after it
/// (<see cref="Relu"/>) done by the convolution's kernel when it runs on packed weights.
/// </summary>
internal sealed class FusedConvolution(Conv2D conv, FoldedConvolution? fold, (int Top, int Bottom, int Left, int Right)? zeroPadding,
    PackedKernel? pack = null)
{
    public Conv2D Conv => conv;

    public FoldedConvolution? Fold => fold;

    public (int Top, int Bottom, int Left, int Right)? ZeroPadding => zeroPadding;

    /// <summary>Where the packed kernel is kept (null: this step never runs on one).</summary>
    public PackedKernel? Pack => pack;

    /// <summary>A ReLU layer applied to the result.</summary>
    public bool Relu { get; init; }

    // Set by RunPacked when the convolution ran on the packed kernel (with the ReLU fused), read by RunLocked.
    bool ranPacked;

    /// <summary>The step's result for input <paramref name="x"/>.</summary>
    public Tensor Run(Tensor x)
    {
        // The cached kernels are shared by a model's graphs and replaced or dropped here: two threads predicting with
        // one model (not supported: Predict switches the model's mode) serialize on them instead of freeing a kernel
        // the other is reading.
        lock (pack ?? (object?)fold ?? this) return RunLocked(x);
    }

    Tensor RunLocked(Tensor x)
    {
        ranPacked = false;
        bool foldApplies = fold is { Applies: true };
        bool packable = pack is not null && (fold is null || foldApplies) && (conv.Activation.IsLinear || ReferenceEquals(conv.Activation, Activations.ReLU))
            && PackedApplies(x, conv.Kernel!);
        bool packValid = packable && PackValid();
        Tensor? kernel;
        Tensor? bias;
        bool normalizeAfter = false;
        if (fold is null) (kernel, bias) = (conv.Kernel!, conv.Bias);
        else if (foldApplies && packValid) (kernel, bias) = (null, fold.FoldedBias); // the packed kernel stands for it
        else if (foldApplies && fold.Get(VerifiedConvolution.RunsChannelsFirst(conv.Kernel!)) is { } f) (kernel, bias) = (f.Kernel, f.Bias);
        else
        {
            (kernel, bias) = (conv.Kernel!, conv.Bias);
            normalizeAfter = true;
            packable = false;
        }
        Tensor KernelNow() => kernel ??= fold!.Get(VerifiedConvolution.RunsChannelsFirst(conv.Kernel!))?.Kernel
            ?? throw new InvalidOperationException($"{conv.Describe}: the folded kernel cannot be rebuilt (its sources' versions cannot be read).");
        var pads = zeroPadding ?? Ops.Pads(x, conv.KernelSize, conv.Strides, conv.Padding, conv.DilationRate, conv.Describe);
        bool relu = Relu || ReferenceEquals(conv.Activation, Activations.ReLU);
        Func<Tensor, long[], long[], Tensor?>? packedRun = packable
            ? (input, stride, padding) => RunPacked(input, KernelNow, bias, stride, padding, relu, packValid)
            : null;
        // With a packed kernel standing for the folded one, RunPacked never hands the convolution back: the layer's
        // kernel passed here is a placeholder that is never read.
        var y = Ops.Conv2DPadded(x, kernel ?? conv.Kernel!, bias, conv.KernelSize, conv.Strides, pads, conv.DilationRate, conv.Groups, conv.Describe, packedRun);
        if (ranPacked) return y;
        // The ordinary path: layer by layer, in place on the convolution's fresh output where possible.
        if (normalizeAfter)
        {
            var convolved = y;
            using (convolved) y = fold!.BatchNorm.Call(convolved);
        }
        else if (!conv.Activation.IsLinear) y = conv.Activation.ApplyInPlace(y);
        return Relu ? Activations.ReLU.ApplyInPlace(y) : y;
    }

    static bool PackedApplies(Tensor x, Tensor kernel) =>
        PackedConvolution.Available && x.device_type == DeviceType.CPU && x.dtype == ScalarType.Float32
        && kernel.dtype == ScalarType.Float32 && kernel.device_type == DeviceType.CPU && !is_grad_enabled();

    /// <summary>Whether the packed kernel was made from the current weights. It was laid out for the input shape it was
    /// first packed for; other shapes (the last, smaller batch of an epoch) use it too, and oneDNN reorders it for them
    /// if its kernel for that shape wants another layout.</summary>
    bool PackValid()
    {
        if (pack?.Tensor is null) return false;
        if (fold is not null) return fold.IsCurrent() && fold.Generation == pack.Generation;
        return ReferenceEquals(pack.From, conv.Kernel) && TensorVersion.Of(conv.Kernel!) == pack.Version;
    }

    /// <summary>The convolution of the (padded or subsampled) <paramref name="input"/> on the packed kernel, packing it
    /// first when <paramref name="packValid"/> is false; the ordinary convolution when this configuration failed its
    /// check (then ranPacked stays false and the caller applies what the kernel would have).</summary>
    Tensor RunPacked(Tensor input, Func<Tensor> kernelNow, Tensor? bias, long[] stride, long[] padding, bool relu, bool packValid)
    {
        var w = conv.Kernel!; // shape only: the folded kernel has the layer's
        long[] dilation = [conv.DilationRate.Height, conv.DilationRate.Width];
        bool versioned = fold is not null || TensorVersion.Of(w) is not null;
        if (!versioned || !VerifiedConvolution.PackedIsRight(input, w, stride, padding, dilation, conv.Groups, relu))
            return VerifiedConvolution.Conv2D(input, kernelNow(), bias, stride, padding, dilation, conv.Groups);
        if (!packValid)
        {
            var kernel = kernelNow();
            pack!.Dispose();
            pack.Tensor = PackedConvolution.Pack(kernel, padding, stride, dilation, conv.Groups, input.shape);
            if (fold is not null)
            {
                pack.Generation = fold.Generation;
                fold.DropKernel();
            }
            else (pack.From, pack.Version) = (kernel, TensorVersion.Of(kernel)!.Value);
            pack.Packs++;
        }
        using var cl = Ops.ToChannelsLast(input);
        var y = PackedConvolution.Run(cl, pack!.Tensor!, bias, padding, stride, dilation, conv.Groups, relu);
        ranPacked = true;
        return y;
    }
}

/// <summary>A convolution's kernel packed for oneDNN (<see cref="PackedConvolution"/>), shared by the graphs of a model,
/// with what it was packed from.</summary>
internal sealed class PackedKernel : IDisposable
{
    public Tensor? Tensor;

    /// <summary>The layer's kernel it was packed from and that kernel's version then (convolutions without a fold).</summary>
    public Tensor? From;
    public long Version;

    /// <summary>The fold's generation it was packed from (convolutions with a folded BatchNormalization).</summary>
    public int Generation;

    /// <summary>Times a kernel was packed (tests: unchanged weights must not repack).</summary>
    public int Packs;

    public void Dispose()
    {
        Tensor?.Dispose();
        Tensor = null;
        From = null;
    }
}

/// <summary>One <see cref="FoldedConvolution"/> per Conv2D+BatchNormalization pair, shared by the graphs of a model.</summary>
internal sealed class FoldCache : IDisposable
{
    readonly Dictionary<(Conv2D, BatchNormalization), FoldedConvolution> folds = [];
    readonly Dictionary<Conv2D, PackedKernel> packs = [];

    /// <summary>The packed kernel slot of <paramref name="conv"/>.</summary>
    public PackedKernel PackFor(Conv2D conv)
    {
        lock (folds)
        {
            if (!packs.TryGetValue(conv, out var p)) packs[conv] = p = new PackedKernel();
            return p;
        }
    }

    /// <summary>Kernels packed so far over all convolutions.</summary>
    internal int Packs
    {
        get { lock (folds) return packs.Values.Sum(p => p.Packs); }
    }

    public FoldedConvolution For(Conv2D conv, BatchNormalization bn)
    {
        lock (folds)
        {
            if (!folds.TryGetValue((conv, bn), out var f)) folds[(conv, bn)] = f = new FoldedConvolution(conv, bn);
            return f;
        }
    }

    /// <summary>Folds computed so far over all pairs.</summary>
    internal int Folds
    {
        get { lock (folds) return folds.Values.Sum(f => f.Folds); }
    }

    /// <summary>Frees the folded weights; they are folded again on next use.</summary>
    public void Dispose()
    {
        lock (folds)
        {
            foreach (var f in folds.Values) f.Dispose();
            foreach (var p in packs.Values) p.Dispose();
        }
    }
}
