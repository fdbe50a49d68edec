// MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) as timm's Mixup applies them: per batch, one λ ~ Beta(α, α),
// each sample mixed with the sample at the same position of a shuffled copy of the batch; with both enabled, each batch
// takes one of the two with probability 1/2. The draws are keyed by (seed, epoch, batch) only, so a run mixes the same
// way whatever the number of loader workers, and a resumed run mixes its epochs as the uninterrupted run did.
using ConvKit.Data.Streaming;
using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Data;

/// <summary>
/// MixUp and CutMix of training batches, an option of <c>Model.Fit</c> (over tensors or a <see cref="DataLoader"/>).
/// Targets become soft: <c>λ·onehot(y) + (1 − λ)·onehot(y[perm])</c>, λ being, for CutMix, the share of the image
/// left unpasted; Fit then computes the compiled loss in its soft-target form (a sparse categorical cross-entropy becomes
/// the categorical one with the same label smoothing). The training accuracy counts each mixed sample's own label.
/// </summary>
public sealed class BatchMixing
{
    /// <summary>Creates the option.</summary>
    /// <param name="mixUpAlpha">α of MixUp's Beta(α, α); 0 leaves MixUp out (timm and the MixUp paper use 0.2 to 1).</param>
    /// <param name="cutMixAlpha">α of CutMix's Beta(α, α); 0 leaves CutMix out (the CutMix paper uses 1).</param>
    /// <exception cref="InvalidOptionException">An α is negative, NaN or infinite, or both are 0.</exception>
    public BatchMixing(double mixUpAlpha = 0, double cutMixAlpha = 0)
    {
        if (!double.IsFinite(mixUpAlpha) || mixUpAlpha < 0)
            throw new InvalidOptionException(nameof(mixUpAlpha), $"mixup alpha must be a finite number >= 0; received {mixUpAlpha}.");
        if (!double.IsFinite(cutMixAlpha) || cutMixAlpha < 0)
            throw new InvalidOptionException(nameof(cutMixAlpha), $"cutmix alpha must be a finite number >= 0; received {cutMixAlpha}.");
        if (mixUpAlpha == 0 && cutMixAlpha == 0)
            throw new InvalidOptionException(nameof(mixUpAlpha), "BatchMixing needs mixUpAlpha > 0 or cutMixAlpha > 0; received 0 for both.");
        MixUpAlpha = mixUpAlpha;
        CutMixAlpha = cutMixAlpha;
    }

    /// <summary>α of MixUp (0: off).</summary>
    public double MixUpAlpha { get; }

    /// <summary>α of CutMix (0: off).</summary>
    public double CutMixAlpha { get; }

    /// <summary>What one batch's draw decided: the method, λ (the share of each sample's own label) and the partner of each sample.</summary>
    /// <param name="CutMix">True for CutMix, false for MixUp.</param>
    /// <param name="Lambda">The weight of each sample's own label (for CutMix, after the box was clipped to the image).</param>
    /// <param name="Partner">The index, in the batch, of the sample mixed into each sample.</param>
    /// <param name="Box">CutMix's pasted box (top, left, height, width); empty for MixUp.</param>
    public sealed record Draw(bool CutMix, double Lambda, int[] Partner, (int Top, int Left, int Height, int Width) Box);

    /// <summary>The draw of batch <paramref name="batch"/> of epoch <paramref name="epoch"/> for <paramref name="seed"/>: a function of these numbers only.</summary>
    /// <exception cref="InvalidOptionException"><paramref name="size"/> is not positive, or CutMix is drawn for images without a height and width.</exception>
    public Draw DrawFor(long seed, int epoch, int batch, int size, int height = 0, int width = 0)
    {
        if (size < 1) throw new InvalidOptionException(nameof(size), $"batch size must be positive; received {size}.");
        // A key of its own (index −2 − batch), apart from the loader's order (−1) and samples (≥ 0).
        var r = new SampleRandom(seed, epoch, -2L - batch);
        bool cut = CutMixAlpha > 0 && (MixUpAlpha == 0 || r.NextDouble() < 0.5);
        double lambda = Beta(ref r, cut ? CutMixAlpha : MixUpAlpha);
        var partner = new int[size];
        for (int i = 0; i < size; i++) partner[i] = i;
        for (int i = size - 1; i > 0; i--)
        {
            int j = r.NextInt(i + 1);
            (partner[i], partner[j]) = (partner[j], partner[i]);
        }
        if (!cut) return new Draw(false, lambda, partner, default);
        if (height < 1 || width < 1)
            throw new InvalidOptionException("cutMixAlpha", $"CutMix needs images (N, C, H, W); received a batch without a height and width ({height}x{width}).");
        // The CutMix paper: a box of sqrt(1 − λ) of each side centred uniformly, clipped to the image; λ from the clipped area.
        double cutRatio = Math.Sqrt(1 - lambda);
        int cutH = (int)(height * cutRatio), cutW = (int)(width * cutRatio);
        int cy = r.NextInt(height), cx = r.NextInt(width);
        int top = Math.Clamp(cy - cutH / 2, 0, height), bottom = Math.Clamp(cy + cutH / 2, 0, height);
        int left = Math.Clamp(cx - cutW / 2, 0, width), right = Math.Clamp(cx + cutW / 2, 0, width);
        var box = (top, left, bottom - top, right - left);
        lambda = 1 - (double)box.Item3 * box.Item4 / (height * width);
        return new Draw(true, lambda, partner, box);
    }

    /// <summary>
    /// Mixes one batch: <paramref name="x"/> in ConvKit's internal layout (images (N, C, H, W)), <paramref name="labels"/>
    /// int64 class indices (N) or one-hot/soft targets (N, classes). Returns new tensors: the mixed inputs and the soft
    /// targets (N, classes) in <paramref name="x"/>'s floating type.
    /// </summary>
    /// <exception cref="ShapeException">The labels do not match the batch or the classes.</exception>
    public (Tensor X, Tensor Targets) Mix(Tensor x, Tensor labels, int classes, long seed, int epoch, int batch)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(labels);
        int n = (int)x.shape[0];
        bool image = x.dim() == 4;
        var draw = DrawFor(seed, epoch, batch, n, image ? (int)x.shape[2] : 0, image ? (int)x.shape[3] : 0);
        using var scope = NewDisposeScope();
        var onehot = labels.dtype == int64 || labels.dim() == 1
            ? F.one_hot(labels.reshape(-1).to_type(int64), classes).to_type(x.dtype)
            : labels.to_type(x.dtype);
        if (onehot.dim() != 2 || onehot.shape[0] != n || onehot.shape[1] != classes)
            throw new ShapeException($"BatchMixing: targets {string.Join("x", labels.shape)} do not match a batch of {n} samples with {classes} classes.");
        using var partner = tensor(draw.Partner.Select(i => (long)i).ToArray(), device: x.device);
        var other = x.index_select(0, partner);
        Tensor mixed;
        if (draw.CutMix)
        {
            mixed = x.clone();
            var (top, left, h, w) = draw.Box;
            if (h > 0 && w > 0)
                mixed.narrow(2, top, h).narrow(3, left, w).copy_(other.narrow(2, top, h).narrow(3, left, w));
        }
        else
        {
            using var keep = draw.Lambda.ToScalar();
            using var rest = (1 - draw.Lambda).ToScalar();
            mixed = x.mul(keep).add(other, rest);
        }
        using var own = draw.Lambda.ToScalar();
        using var share = (1 - draw.Lambda).ToScalar();
        var targets = onehot.mul(own).add(onehot.index_select(0, partner), share);
        return (mixed.MoveToOuterDisposeScope(), targets.MoveToOuterDisposeScope());
    }

    // Beta(a, a) as G1 / (G1 + G2) of two Gamma(a, 1) draws.
    static double Beta(ref SampleRandom r, double a)
    {
        double g1 = Gamma(ref r, a), g2 = Gamma(ref r, a);
        return g1 + g2 > 0 ? g1 / (g1 + g2) : 0.5;
    }

    // Marsaglia and Tsang (2000); for a < 1, Gamma(a + 1)·U^(1/a).
    static double Gamma(ref SampleRandom r, double a)
    {
        if (a < 1) return Gamma(ref r, a + 1) * Math.Pow(1 - r.NextDouble(), 1 / a);
        double d = a - 1.0 / 3, c = 1 / Math.Sqrt(9 * d);
        while (true)
        {
            double z, v;
            do
            {
                // Box-Muller: a standard normal from two uniforms.
                z = Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());
                v = 1 + c * z;
            } while (v <= 0);
            v = v * v * v;
            double u = 1 - r.NextDouble();
            if (Math.Log(u) < 0.5 * z * z + d - d * v + d * Math.Log(v)) return d * v;
        }
    }
}
