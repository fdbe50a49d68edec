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

    public Conv2D Conv => conv;

    public BatchNormalization BatchNorm => bn;

    /// <summary>Whether the pair can run folded now: batch normalization on its moving statistics, 4-D channel axis.</summary>
    public bool Applies => !(bn.training && bn.Trainable) && bn.Axis is -1 or 3;

    /// <summary>The folded (kernel, bias), the kernel channels-last or, with <paramref name="channelsFirst"/>, contiguous
    /// NCHW; null when the sources' versions cannot be read (nothing is cached then).</summary>
    public (Tensor Kernel, Tensor Bias)? Get(bool channelsFirst = false)
    {
        Span<long> now = stackalloc long[6];
        Tensor?[] current = [conv.Kernel, conv.Bias, bn.Gamma, bn.Beta, bn.MovingMean, bn.MovingVariance];
        bool same = kernel is not null && channelsFirst == kernelChannelsFirst;
        for (int i = 0; i < current.Length; i++)
        {
            if (current[i] is not { } t)
            {
                same &= sources[i] is null;
                continue;
            }
            if (TensorVersion.Of(t) is not { } v) return null;
            now[i] = v;
            same &= ReferenceEquals(t, sources[i]) && v == versions[i];
        }
        if (same) return (kernel!, bias!);

        Dispose();
        (kernel, bias) = Fold(conv, bn, channelsFirst);
        kernelChannelsFirst = channelsFirst;
        Folds++;
        current.CopyTo(sources, 0);
        now.CopyTo(versions);
        return (kernel, bias);
    }

    /// <summary>Folds in float64 (one rounding per weight); the results keep the kernel's dtype and device, in the
    /// layout ConvKit's CPU convolutions will read: channels-last, or contiguous NCHW with <paramref name="channelsFirst"/>
    /// (see VerifiedConvolution.ChannelsFirst).</summary>
    internal static (Tensor Kernel, Tensor Bias) Fold(Conv2D conv, BatchNormalization bn, bool channelsFirst = false)
    {
        // Cached across calls: never inference tensors, never recorded by autograd, outside any dispose scope.
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
/// applies at run time) and the ZeroPadding2D in front of it taken as its own padding.
/// </summary>
internal sealed class FusedConvolution(Conv2D conv, FoldedConvolution? fold, (int Top, int Bottom, int Left, int Right)? zeroPadding)
{
    public (int Top, int Bottom, int Left, int Right)? ZeroPadding => zeroPadding;

    public Tensor Run(Tensor x)
    {
        if (fold is { Applies: true } && fold.Get(VerifiedConvolution.RunsChannelsFirst(conv.Kernel!)) is { } folded)
            return conv.CallWith(x, folded.Kernel, folded.Bias, zeroPadding);
        var y = conv.CallWith(x, conv.Kernel!, conv.Bias, zeroPadding);
        if (fold is null) return y;
        using (y) return fold.BatchNorm.Call(y);
    }
}

/// <summary>One <see cref="FoldedConvolution"/> per Conv2D+BatchNormalization pair, shared by the graphs of a model.</summary>
internal sealed class FoldCache : IDisposable
{
    readonly Dictionary<(Conv2D, BatchNormalization), FoldedConvolution> folds = [];

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
            foreach (var f in folds.Values) f.Dispose();
    }
}
