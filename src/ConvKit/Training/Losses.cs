using ConvKit.Layers;
using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Training;

/// <summary>
/// A loss, as Keras defines it: a per-element value (the class axis reduced), averaged over the batch with Keras'
/// <c>sum_over_batch_size</c> reduction: <c>Σ loss·sample_weight / number of elements</c>. Tensors are in ConvKit's
/// internal layout (the class axis of images is axis 1). Converts from Keras' names:
/// <c>loss: "sparse_categorical_crossentropy"</c>.
/// </summary>
public abstract class Loss
{
    /// <summary>Creates a loss with Keras' name.</summary>
    protected Loss(string name) => Name = name;

    /// <summary>Keras' name of the loss.</summary>
    public string Name { get; }

    /// <summary>Clamping bound for probabilities, Keras' <c>epsilon()</c>.</summary>
    public const double Epsilon = 1e-7;

    // Keras clips probabilities to [eps, 1 - eps]; the bounds as Scalars rooted for good (ConvKit.Native.Scalars says why).
    private protected static readonly Scalar ClipLow = Epsilon.ToScalar();
    private protected static readonly Scalar ClipHigh = (1 - Epsilon).ToScalar();

    /// <summary>The per-element loss of predictions <paramref name="yPred"/> (probabilities unless the loss says otherwise).</summary>
    public abstract Tensor Call(Tensor yTrue, Tensor yPred);

    /// <summary>
    /// Whether the loss can be computed from the pre-activation values of a model whose output applies
    /// <paramref name="activation"/>: softmax for categorical cross-entropies, sigmoid for binary cross-entropy.
    /// Fit then computes it as a fused, numerically stable log-softmax (log-sigmoid) instead of taking the log of a
    /// rounded probability.
    /// </summary>
    public virtual bool CanFuse(ActivationFunction activation) => false;

    /// <summary>The per-element loss from the logits of an output activation that <see cref="CanFuse"/> accepted.</summary>
    /// <exception cref="UnsupportedException">The loss has no fused form.</exception>
    public virtual Tensor CallFromLogits(Tensor yTrue, Tensor logits) =>
        throw new UnsupportedException($"loss '{Name}' has no fused form for logits.");

    /// <summary>The reduced loss: Σ per-element loss × sample weight / number of elements.</summary>
    public Tensor Compute(Tensor yTrue, Tensor yPred, Tensor? sampleWeight = null) => Reduce(Call(yTrue, yPred), sampleWeight);

    /// <summary>
    /// The unweighted mean loss of a batch, <c>Reduce(Call(yTrue, yPred), null)</c>. A loss may override it with a
    /// fused kernel (one op and one backward node instead of two per batch).
    /// </summary>
    internal virtual Tensor CallMean(Tensor yTrue, Tensor yPred) => Call(yTrue, yPred).mean();

    /// <summary>The unweighted mean loss from logits, <c>Reduce(CallFromLogits(yTrue, logits), null)</c>.</summary>
    internal virtual Tensor CallFromLogitsMean(Tensor yTrue, Tensor logits) => CallFromLogits(yTrue, logits).mean();

    /// <summary>Keras' <c>sum_over_batch_size</c> reduction, weights broadcast over the non-batch axes.</summary>
    internal static Tensor Reduce(Tensor perElement, Tensor? sampleWeight)
    {
        if (sampleWeight is null) return perElement.mean();
        var w = sampleWeight;
        if (perElement.dim() > 1) w = w.reshape([w.shape[0], .. Enumerable.Repeat(1L, (int)perElement.dim() - 1)]);
        using var count = perElement.numel().ToScalar();
        return perElement.mul(w).sum().div(count);
    }

    /// <summary>The class axis of a prediction in internal layout: 1 for images (NCHW), otherwise the last.</summary>
    protected static long ClassAxis(Tensor t) => t.dim() == 4 ? 1 : -1;

    /// <summary>A loss by Keras' name.</summary>
    /// <exception cref="UnknownNameException">Unknown name.</exception>
    public static implicit operator Loss(string name) => Losses.Get(name);

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>
/// Cross-entropy of integer class labels against class probabilities (or logits with <c>fromLogits</c>), with optional
/// label smoothing as <see cref="CategoricalCrossentropy"/> has it: the one-hot target of class <c>k</c> becomes
/// <c>onehot(k)·(1 − s) + s / classes</c>, i.e. the loss is <c>−(1 − s)·log p_k − (s / classes)·Σ_c log p_c</c>
/// (PyTorch's <c>cross_entropy(label_smoothing=s)</c>; Keras has it for one-hot labels only).
/// </summary>
public sealed class SparseCategoricalCrossentropy : Loss
{
    /// <summary>Creates the loss.</summary>
    /// <exception cref="InvalidOptionException">labelSmoothing outside [0, 1].</exception>
    public SparseCategoricalCrossentropy(bool fromLogits = false, double labelSmoothing = 0) : base("sparse_categorical_crossentropy")
    {
        if (!(labelSmoothing is >= 0 and <= 1))
            throw new InvalidOptionException(nameof(labelSmoothing), $"label_smoothing must be in [0, 1]; received {labelSmoothing}.");
        FromLogits = fromLogits;
        LabelSmoothing = labelSmoothing;
    }

    /// <summary>Whether predictions are logits rather than probabilities.</summary>
    public bool FromLogits { get; }

    /// <summary>Label smoothing s: targets move towards the uniform distribution by s.</summary>
    public double LabelSmoothing { get; }

    /// <inheritdoc/>
    public override Tensor Call(Tensor yTrue, Tensor yPred)
    {
        var labels = Labels(yTrue, yPred);
        if (FromLogits) return CallFromLogits(labels, yPred);
        // Keras: renormalise, clip to [eps, 1 - eps], then the negative log of the true class.
        var axis = ClassAxis(yPred);
        var p = yPred.div(yPred.sum(axis, keepdim: true)).clamp(ClipLow, ClipHigh).log();
        var nll = F.nll_loss(axis == 1 ? p : MoveClassAxis(p), labels, reduction: nn.Reduction.None);
        return LabelSmoothing == 0 ? nll : Smooth(nll, p, axis);
    }

    // −(1 − s)·log p_k − (s / C)·Σ_c log p_c, from nll = −log p_k and the log-probabilities.
    Tensor Smooth(Tensor nll, Tensor logP, long axis)
    {
        long classes = logP.shape[axis < 0 ? logP.dim() + axis : axis];
        using var keep = (1 - LabelSmoothing).ToScalar();
        using var share = (LabelSmoothing / classes).ToScalar();
        return nll.mul(keep).sub(logP.sum(axis).mul(share));
    }

    /// <summary>
    /// The same loss for soft targets (one row of class probabilities per sample, as MixUp and CutMix make them):
    /// a <see cref="CategoricalCrossentropy"/> with the same <see cref="FromLogits"/> and <see cref="LabelSmoothing"/>.
    /// </summary>
    public CategoricalCrossentropy ForSoftTargets() => new(FromLogits, LabelSmoothing);

    /// <inheritdoc/>
    public override bool CanFuse(ActivationFunction activation) => !FromLogits && activation == Activations.Softmax;

    /// <inheritdoc/>
    public override Tensor CallFromLogits(Tensor yTrue, Tensor logits) => CrossEntropy(yTrue, logits, nn.Reduction.None);

    internal override Tensor CallMean(Tensor yTrue, Tensor yPred) => FromLogits ? CrossEntropy(yTrue, yPred, nn.Reduction.Mean) : base.CallMean(yTrue, yPred);

    // The mean over every element (batch and, for dense predictions, positions), as the per-element loss then mean.
    internal override Tensor CallFromLogitsMean(Tensor yTrue, Tensor logits) => CrossEntropy(yTrue, logits, nn.Reduction.Mean);

    Tensor CrossEntropy(Tensor yTrue, Tensor logits, nn.Reduction reduction)
    {
        var labels = Labels(yTrue, logits);
        return F.cross_entropy(ClassAxis(logits) == 1 || logits.dim() == 2 ? logits : MoveClassAxis(logits), labels, reduction: reduction,
            label_smoothing: LabelSmoothing);
    }

    // Keras accepts labels shaped (N) or (N, 1) for predictions (N, C).
    static Tensor Labels(Tensor yTrue, Tensor yPred)
    {
        var y = yTrue.dim() == yPred.dim() && yTrue.shape[^1] == 1 && yPred.dim() != 4 ? yTrue.squeeze(-1) : yTrue;
        return y.dtype == int64 ? y : y.to_type(int64);
    }

    // nll_loss wants classes on axis 1; sequences (N, T, C) keep them last.
    static Tensor MoveClassAxis(Tensor t) => t.dim() <= 2 ? t : t.movedim([-1L], [1L]);
}

/// <summary>Base of the cross-entropies that take one-hot or soft targets: from-logits and label-smoothing options.</summary>
public abstract class SmoothedCrossentropy : Loss
{
    /// <summary>Validates and stores the options.</summary>
    /// <exception cref="InvalidOptionException">labelSmoothing outside [0, 1].</exception>
    protected SmoothedCrossentropy(string name, bool fromLogits, double labelSmoothing) : base(name)
    {
        if (labelSmoothing is < 0 or > 1)
            throw new InvalidOptionException(nameof(labelSmoothing), $"label_smoothing must be in [0, 1]; received {labelSmoothing}.");
        FromLogits = fromLogits;
        LabelSmoothing = labelSmoothing;
    }

    /// <summary>Whether predictions are logits rather than probabilities.</summary>
    public bool FromLogits { get; }

    /// <summary>Label smoothing s: targets move towards the uniform distribution by s.</summary>
    public double LabelSmoothing { get; }
}

/// <summary>
/// Cross-entropy of one-hot (or soft) targets against class probabilities, with optional label smoothing (targets become
/// <c>y·(1 − s) + s / classes</c>).
/// </summary>
public sealed class CategoricalCrossentropy : SmoothedCrossentropy
{
    /// <summary>Creates the loss.</summary>
    /// <exception cref="InvalidOptionException">labelSmoothing outside [0, 1].</exception>
    public CategoricalCrossentropy(bool fromLogits = false, double labelSmoothing = 0)
        : base("categorical_crossentropy", fromLogits, labelSmoothing) { }

    /// <inheritdoc/>
    public override Tensor Call(Tensor yTrue, Tensor yPred)
    {
        if (FromLogits) return CallFromLogits(yTrue, yPred);
        var axis = ClassAxis(yPred);
        var p = yPred.div(yPred.sum(axis, keepdim: true)).clamp(ClipLow, ClipHigh).log();
        return Smooth(yTrue, yPred, axis).mul(p).sum(axis).neg();
    }

    /// <inheritdoc/>
    public override bool CanFuse(ActivationFunction activation) => !FromLogits && activation == Activations.Softmax;

    /// <inheritdoc/>
    public override Tensor CallFromLogits(Tensor yTrue, Tensor logits)
    {
        var axis = ClassAxis(logits);
        return Smooth(yTrue, logits, axis).mul(logits.log_softmax(axis)).sum(axis).neg();
    }

    Tensor Smooth(Tensor yTrue, Tensor yPred, long axis)
    {
        var y = yTrue.dtype == yPred.dtype ? yTrue : yTrue.to_type(yPred.dtype);
        if (LabelSmoothing == 0) return y;
        long classes = yPred.shape[axis < 0 ? yPred.dim() + axis : axis];
        using var keep = (1 - LabelSmoothing).ToScalar();
        using var share = (LabelSmoothing / classes).ToScalar();
        return y.mul(keep).add(share, Scalars.One);
    }
}

/// <summary>
/// Binary cross-entropy, averaged over the last axis, with optional label smoothing towards 0.5 (targets become
/// <c>y·(1 − s) + s / 2</c>).
/// </summary>
public sealed class BinaryCrossentropy : SmoothedCrossentropy
{
    /// <summary>Creates the loss.</summary>
    /// <exception cref="InvalidOptionException">labelSmoothing outside [0, 1].</exception>
    public BinaryCrossentropy(bool fromLogits = false, double labelSmoothing = 0)
        : base("binary_crossentropy", fromLogits, labelSmoothing) { }

    /// <inheritdoc/>
    public override Tensor Call(Tensor yTrue, Tensor yPred)
    {
        if (FromLogits) return CallFromLogits(yTrue, yPred);
        var y = Smooth(yTrue, yPred);
        var p = yPred.clamp(ClipLow, ClipHigh);
        // -(y log p + (1 - y) log(1 - p))
        var ll = y.mul(p.log()).add(OneMinus(y).mul(OneMinus(p).log()), Scalars.One);
        return ll.neg().mean([ClassAxis(yPred)]);
    }

    /// <inheritdoc/>
    public override bool CanFuse(ActivationFunction activation) => !FromLogits && activation == Activations.Sigmoid;

    /// <inheritdoc/>
    public override Tensor CallFromLogits(Tensor yTrue, Tensor logits) =>
        F.binary_cross_entropy_with_logits(logits, Smooth(yTrue, logits), reduction: nn.Reduction.None).mean([ClassAxis(logits)]);

    Tensor Smooth(Tensor yTrue, Tensor yPred)
    {
        var y = yTrue.dtype == yPred.dtype ? yTrue : yTrue.to_type(yPred.dtype);
        if (y.dim() == yPred.dim() - 1) y = y.unsqueeze(-1);
        if (LabelSmoothing == 0) return y;
        using var keep = (1 - LabelSmoothing).ToScalar();
        using var share = (0.5 * LabelSmoothing).ToScalar();
        return y.mul(keep).add(share, Scalars.One);
    }

    static Tensor OneMinus(Tensor t) => t.neg().add(Scalars.One, Scalars.One);
}

/// <summary>Mean of squared differences over the last axis.</summary>
public sealed class MeanSquaredError() : Loss("mean_squared_error")
{
    /// <inheritdoc/>
    public override Tensor Call(Tensor yTrue, Tensor yPred)
    {
        var y = yTrue.dtype == yPred.dtype ? yTrue : yTrue.to_type(yPred.dtype);
        return yPred.sub(y).pow(Scalars.Two).mean([ClassAxis(yPred)]); // square(), whose 2 TorchSharp would make itself
    }
}

/// <summary>Keras' losses by name.</summary>
public static class Losses
{
    /// <summary>A loss by Keras' name (or alias: <c>mse</c>, <c>bce</c>...).</summary>
    /// <exception cref="UnknownNameException">Unknown name.</exception>
    public static Loss Get(string name) => name?.ToLowerInvariant() switch
    {
        "sparse_categorical_crossentropy" => new SparseCategoricalCrossentropy(),
        "categorical_crossentropy" => new CategoricalCrossentropy(),
        "binary_crossentropy" or "bce" => new BinaryCrossentropy(),
        "mean_squared_error" or "mse" => new MeanSquaredError(),
        _ => throw new UnknownNameException("loss", name ?? "", $"unknown loss '{name}'; known: sparse_categorical_crossentropy, categorical_crossentropy, binary_crossentropy, mean_squared_error (mse)"),
    };
}
