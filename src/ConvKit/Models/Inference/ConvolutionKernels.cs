// A Conv2D followed by an inference-mode BatchNormalization is one affine map per output channel:
// bn(conv(x, W) + b) = conv(x, W·s) + (b - mean)·s + beta with s = gamma / sqrt(var + eps). The inference model runs
// that single convolution, which saves a pass over every activation. The kernels an inference model convolves with
// (folded, packed for oneDNN) are made from the layer's weights at one version of them and never change afterwards;
// a write to any source (training, loading, SetWeights, in-place edits, to(device/dtype)) makes new ones.
using ConvKit.Layers;
using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Models.Inference;

/// <summary>
/// The kernel and bias one convolution step of an inference model runs with: the Conv2D's own, or folded with the
/// BatchNormalization it feeds, made from one version of the sources; plus the kernel packed for oneDNN on first use.
/// Shared by the inference models (and their sub-graphs) made while the sources stay unchanged, hence reference
/// counted. Safe for concurrent use: the derived tensors are published once (compare-and-swap; a thread that loses the
/// race frees its own copy), and a kernel that the packed one replaces is freed only when no call reads it.
/// </summary>
internal sealed class ConvolutionKernels
{
    readonly Conv2D conv;
    readonly BatchNormalization? bn;
    readonly Tensor?[] sources;
    readonly long[]? versions;
    readonly KernelCache counters;
    readonly bool ownsKernel;
    readonly Tensor? bias;
    Tensor? kernel;        // channels-last (the layer's own kernel when nothing is folded)
    Tensor? kernelNchw;    // contiguous NCHW copy, made on first use (VerifiedConvolution.ChannelsFirst)
    Tensor? packed;        // oneDNN's blocked layout, made on first use
    Tensor? retired;       // a folded kernel replaced by the packed one while a call still read it
    int readers;
    int references = 1;

    ConvolutionKernels(Conv2D conv, BatchNormalization? bn, KernelCache counters)
    {
        this.conv = conv;
        this.bn = bn;
        this.counters = counters;
        sources = Sources(conv, bn);
        versions = ReadVersions(sources);
        if (bn is null)
        {
            kernel = conv.Kernel!;
            bias = conv.Bias;
        }
        else
        {
            (kernel, bias) = Fold(conv, bn);
            ownsKernel = true;
            Interlocked.Increment(ref counters.folds);
        }
    }

    /// <summary>Fresh kernels for <paramref name="conv"/> (folded with <paramref name="bn"/> when given).</summary>
    public static ConvolutionKernels Create(Conv2D conv, BatchNormalization? bn, KernelCache counters) => new(conv, bn, counters);

    public Conv2D Conv => conv;

    public BatchNormalization? BatchNorm => bn;

    /// <summary>The bias to add (folded, or the layer's).</summary>
    public Tensor? Bias => bias;

    /// <summary>Whether the sources' versions could be read (otherwise these kernels can never be shown current).</summary>
    public bool Versioned => versions is not null;

    static Tensor?[] Sources(Conv2D conv, BatchNormalization? bn) => bn is null
        ? [conv.Kernel, conv.Bias]
        : [conv.Kernel, conv.Bias, bn.Gamma, bn.Beta, bn.MovingMean, bn.MovingVariance];

    static long[]? ReadVersions(Tensor?[] tensors)
    {
        var v = new long[tensors.Length];
        for (int i = 0; i < tensors.Length; i++)
        {
            if (tensors[i] is not { } t) continue;
            if (TensorVersion.Of(t) is not { } version) return null;
            v[i] = version;
        }
        return v;
    }

    /// <summary>Whether the sources are the same tensors, unwritten since these kernels were made.</summary>
    public bool IsCurrent()
    {
        if (versions is null) return false;
        var now = Sources(conv, bn);
        for (int i = 0; i < now.Length; i++)
        {
            if (!ReferenceEquals(now[i], sources[i])) return false;
            if (now[i] is { } t && TensorVersion.Of(t) != versions[i]) return false;
        }
        return true;
    }

    /// <summary>The kernel in the layout the convolution reads (see <see cref="KernelLease"/>).</summary>
    public KernelLease LeaseKernel(bool channelsFirst)
    {
        Interlocked.Increment(ref readers);
        try
        {
            var k = Volatile.Read(ref kernel);
            if (k is null)
            {
                // The packed kernel replaced the folded one: fold again for this call (a configuration the packed
                // kernel is not right for, which is rare).
                var (again, b) = Fold(conv, bn!);
                b.Dispose();
                Interlocked.Increment(ref counters.folds);
                if (channelsFirst)
                {
                    var nchw = again.contiguous();
                    again.Dispose();
                    again = nchw;
                }
                return new KernelLease(this, again, transient: true);
            }
            if (channelsFirst && ownsKernel) k = Publish(ref kernelNchw, () => k.contiguous());
            return new KernelLease(this, k, transient: false);
        }
        catch
        {
            Interlocked.Decrement(ref readers);
            throw;
        }
    }

    /// <summary>A kernel borrowed for one convolution.</summary>
    public readonly struct KernelLease(ConvolutionKernels owner, Tensor kernel, bool transient) : IDisposable
    {
        /// <summary>The kernel.</summary>
        public Tensor Kernel => kernel;

        /// <inheritdoc/>
        public void Dispose()
        {
            if (transient) kernel.Dispose();
            Interlocked.Decrement(ref owner.readers);
        }
    }

    /// <summary>
    /// The packed kernel, laid out for the input shape of the first call that asks (other shapes use it too: oneDNN
    /// reorders it for them if its kernel for that shape wants another layout).
    /// </summary>
    public Tensor Packed(long[] padding, long[] stride, long[] dilation, long[] inputShape)
    {
        if (Volatile.Read(ref packed) is { } p) return p;
        Tensor made;
        using (var lease = LeaseKernel(channelsFirst: false))
            made = PackedConvolution.Pack(lease.Kernel, padding, stride, dilation, conv.Groups, inputShape);
        var winner = Publish(ref packed, () => made);
        if (!ReferenceEquals(winner, made))
        {
            made.Dispose();
            return winner;
        }
        Interlocked.Increment(ref counters.packs);
        if (ownsKernel)
        {
            // The folded kernel is not needed any more; a call that is reading it keeps it until this object goes.
            var old = Interlocked.Exchange(ref kernel, null);
            if (old is not null)
            {
                if (Volatile.Read(ref readers) == 0) old.Dispose();
                else Volatile.Write(ref retired, old);
            }
        }
        return made;
    }

    /// <summary>Sets <paramref name="field"/> once: the first value published wins; a losing new value is disposed.</summary>
    static Tensor Publish(ref Tensor? field, Func<Tensor> make)
    {
        if (Volatile.Read(ref field) is { } existing) return existing;
        var created = make();
        var previous = Interlocked.CompareExchange(ref field, created, null);
        if (previous is null) return created;
        if (!ReferenceEquals(previous, created)) created.Dispose();
        return previous;
    }

    /// <summary>Takes one more reference (an inference model that uses these kernels).</summary>
    public bool TryAddReference()
    {
        while (true)
        {
            int n = Volatile.Read(ref references);
            if (n == 0) return false;
            if (Interlocked.CompareExchange(ref references, n + 1, n) == n) return true;
        }
    }

    /// <summary>Drops a reference; the last one frees the derived tensors.</summary>
    public void Release()
    {
        if (Interlocked.Decrement(ref references) != 0) return;
        if (ownsKernel)
        {
            kernel?.Dispose();
            bias?.Dispose();
        }
        kernelNchw?.Dispose();
        packed?.Dispose();
        retired?.Dispose();
        kernel = kernelNchw = packed = retired = null;
    }

    /// <summary>Folds in float64 (one rounding per weight); the results keep the kernel's dtype and device, the kernel
    /// channels-last.</summary>
    internal static (Tensor Kernel, Tensor Bias) Fold(Conv2D conv, BatchNormalization bn)
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
        return (Ops.ToChannelsLast(folded).DetachFromDisposeScope(), shift.to_type(dtype).DetachFromDisposeScope());
    }
}

/// <summary>
/// The current <see cref="ConvolutionKernels"/> of each convolution of a model, shared by the inference models made
/// from it (so that a write to one layer's weights refolds and repacks that convolution alone), with counters for tests.
/// </summary>
internal sealed class KernelCache : IDisposable
{
    readonly Dictionary<(Conv2D, BatchNormalization?), ConvolutionKernels> entries = [];
    internal int folds, packs;

    /// <summary>Folds computed so far (tests: unchanged weights must not refold).</summary>
    internal int Folds => Volatile.Read(ref folds);

    /// <summary>Kernels packed so far (tests: unchanged weights must not repack).</summary>
    internal int Packs => Volatile.Read(ref packs);

    /// <summary>Current kernels for the pair, with a reference taken for the caller (who releases it).</summary>
    public ConvolutionKernels Acquire(Conv2D conv, BatchNormalization? bn)
    {
        lock (entries)
        {
            if (entries.TryGetValue((conv, bn), out var e) && e.IsCurrent() && e.TryAddReference()) return e;
            var fresh = ConvolutionKernels.Create(conv, bn, this);
            if (fresh.Versioned)
            {
                if (e is not null) e.Release();
                entries[(conv, bn)] = fresh;
                fresh.TryAddReference();
            }
            return fresh;
        }
    }

    /// <summary>Drops the cache's references (inference models still using kernels keep them).</summary>
    public void Dispose()
    {
        lock (entries)
        {
            foreach (var e in entries.Values) e.Release();
            entries.Clear();
        }
    }
}
