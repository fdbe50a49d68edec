using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Training;

/// <summary>
/// A streaming metric, Keras' <c>Metric</c>: <see cref="UpdateState"/> accumulates on tensors (no host
/// synchronisation per batch), <see cref="Result"/> reads the value once. Converts from Keras' names
/// (<c>"accuracy"</c>, <c>"top_k_categorical_accuracy"</c>...).
/// </summary>
public abstract class Metric
{
    /// <summary>Creates a metric reported under <paramref name="name"/>.</summary>
    protected Metric(string name) => Name = name;

    /// <summary>The key in training logs.</summary>
    public string Name { get; }

    /// <summary>Accumulates one batch of targets and predictions (internal layout), optionally weighted per sample.</summary>
    public abstract void UpdateState(Tensor yTrue, Tensor yPred, Tensor? sampleWeight = null);

    /// <summary>The value over everything accumulated since the last reset (NaN before any update).</summary>
    public abstract double Result();

    /// <summary>Forgets the accumulated state.</summary>
    public abstract void ResetState();

    /// <summary>
    /// True when the metric gives the same result on pre-softmax logits as on probabilities (argmax-based metrics), so
    /// that the fused training path need not compute the probabilities for it.
    /// </summary>
    public virtual bool InvariantToSoftmax => false;

    /// <summary>
    /// Whether a larger value is better (true), a smaller one (false), or unknown (null), Keras 3's metric
    /// <c>_direction</c>: callbacks monitoring this metric in mode Auto (EarlyStopping, ReduceLROnPlateau,
    /// ModelCheckpoint) follow it, and fall back to the name only when it is null. Accuracies say true, errors false;
    /// override it in your own metrics.
    /// </summary>
    public virtual bool? GreaterIsBetter => null;

    /// <summary>A metric by Keras' name. "accuracy" is resolved by Fit from the loss and the data, as Keras does.</summary>
    /// <exception cref="UnknownNameException">Unknown name.</exception>
    public static implicit operator Metric(string name) => Metrics.Get(name);

    /// <summary>A copy with empty state, for an Evaluate that runs beside others on the same model; null when the metric
    /// cannot be copied (then concurrent Evaluate calls take turns on it).</summary>
    internal virtual Metric? FreshCopy() => null;

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>The weighted mean of a per-sample value, accumulated on the device (Keras' <c>MeanMetricWrapper</c>).</summary>
public abstract class MeanMetric : Metric
{
    Tensor? total;
    Tensor? weightTotal;
    double count;

    /// <summary>Creates the metric.</summary>
    protected MeanMetric(string name) : base(name) { }

    /// <summary>The per-element values to average for a batch (float, or boolean for hit/miss metrics).</summary>
    protected abstract Tensor Values(Tensor yTrue, Tensor yPred);

    /// <inheritdoc/>
    public override void UpdateState(Tensor yTrue, Tensor yPred, Tensor? sampleWeight = null)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        // Under no_grad nothing is recorded for backward: no detach needed.
        var v = Values(yTrue, yPred);
        Accumulate(v, sampleWeight);
    }

    /// <summary>Adds values (and weights broadcast over their non-batch axes) to the running totals.</summary>
    protected void Accumulate(Tensor values, Tensor? sampleWeight)
    {
        total ??= zeros(1, dtype: float64, device: values.device).DetachFromDisposeScope();
        if (sampleWeight is null)
        {
            // add_ promotes the float32 (or, for boolean values, int64) sum into the float64 total: no cast op.
            using var sum = values.sum();
            total.add_(sum, Scalars.One);
            count += values.numel();
            return;
        }
        weightTotal ??= zeros(1, dtype: float64, device: values.device).DetachFromDisposeScope();
        var w = sampleWeight.to_type(float64);
        if (values.dim() > 1) w = w.reshape([w.shape[0], .. Enumerable.Repeat(1L, (int)values.dim() - 1)]).expand(values.shape);
        total.add_(values.to_type(float64).mul(w).sum(), Scalars.One);
        weightTotal.add_(w.sum(), Scalars.One);
    }

    /// <inheritdoc/>
    public override double Result()
    {
        if (total is null) return double.NaN;
        double t = total.item<double>();
        double n = count + (weightTotal?.item<double>() ?? 0);
        return n == 0 ? 0 : t / n;
    }

    /// <inheritdoc/>
    public override void ResetState()
    {
        total?.zero_();
        weightTotal?.zero_();
        count = 0;
    }

    /// <inheritdoc/>
    internal override Metric? FreshCopy()
    {
        var copy = (MeanMetric)MemberwiseClone();
        copy.total = copy.weightTotal = null;
        copy.count = 0;
        return copy;
    }
}

/// <summary>Running mean of scalar values weighted by a count (Keras' loss tracker: each batch weighs its size).</summary>
public sealed class Mean : Metric
{
    Tensor? total;
    double count;

    /// <summary>Creates the tracker.</summary>
    public Mean(string name = "mean") : base(name) { }

    /// <summary>Adds a scalar value with a weight, without synchronising.</summary>
    public void Update(Tensor value, double weight)
    {
        using var _ = no_grad();
        total ??= zeros(1, dtype: float64, device: value.device).DetachFromDisposeScope();
        using var alpha = weight.ToScalar();
        total.add_(value, alpha);
        count += weight;
    }

    /// <summary>Adds the mean of <paramref name="yPred"/> (the values) weighted by the batch size; targets are ignored.</summary>
    public override void UpdateState(Tensor yTrue, Tensor yPred, Tensor? sampleWeight = null)
    {
        using var scope = NewDisposeScope();
        Update(yPred.mean(), yPred.shape.Length > 0 ? yPred.shape[0] : 1);
    }

    /// <inheritdoc/>
    public override double Result() => total is null || count == 0 ? double.NaN : total.item<double>() / count;

    /// <inheritdoc/>
    public override void ResetState()
    {
        total?.zero_();
        count = 0;
    }
}

/// <summary>Fraction of samples whose predicted class (argmax) equals the integer label.</summary>
public sealed class SparseCategoricalAccuracy(string name = "sparse_categorical_accuracy") : MeanMetric(name)
{
    /// <inheritdoc/>
    public override bool? GreaterIsBetter => true;

    /// <inheritdoc/>
    public override bool InvariantToSoftmax => true;

    /// <inheritdoc/>
    protected override Tensor Values(Tensor yTrue, Tensor yPred)
    {
        long rank = yPred.dim();
        var axis = rank == 4 ? 1 : -1;
        var y = yTrue.dim() == rank && rank != 4 ? yTrue.squeeze(-1) : yTrue;
        // Booleans: the mean counts them directly (Accumulate casts only for sample weights).
        return yPred.argmax(axis).eq(y.dtype == int64 ? y : y.to_type(int64));
    }
}

/// <summary>Fraction of samples whose predicted class equals the argmax of the one-hot target.</summary>
public sealed class CategoricalAccuracy(string name = "categorical_accuracy") : MeanMetric(name)
{
    /// <inheritdoc/>
    public override bool? GreaterIsBetter => true;

    /// <inheritdoc/>
    public override bool InvariantToSoftmax => true;

    /// <inheritdoc/>
    protected override Tensor Values(Tensor yTrue, Tensor yPred)
    {
        var axis = yPred.dim() == 4 ? 1 : -1;
        return yPred.argmax(axis).eq(yTrue.argmax(axis)).to_type(float32);
    }
}

/// <summary>Fraction of predictions on the right side of a threshold (default 0.5), averaged over the last axis.</summary>
public sealed class BinaryAccuracy(string name = "binary_accuracy", double threshold = 0.5) : MeanMetric(name)
{
    /// <inheritdoc/>
    public override bool? GreaterIsBetter => true;

    /// <summary>The decision threshold.</summary>
    public double Threshold { get; } = threshold;

    /// <inheritdoc/>
    protected override Tensor Values(Tensor yTrue, Tensor yPred)
    {
        var y = yTrue.dim() == yPred.dim() - 1 ? yTrue.unsqueeze(-1) : yTrue;
        using var threshold = Threshold.ToScalar();
        using var half = 0.5.ToScalar();
        return yPred.gt(threshold).eq(y.gt(half)).to_type(float32).mean([yPred.dim() == 4 ? 1L : -1L]);
    }
}

/// <summary>Fraction of samples whose integer label is among the <c>k</c> highest predictions (Keras default k = 5).</summary>
public sealed class SparseTopKCategoricalAccuracy(int k = 5, string name = "sparse_top_k_categorical_accuracy") : MeanMetric(name)
{
    /// <inheritdoc/>
    public override bool? GreaterIsBetter => true;

    /// <summary>How many top predictions count.</summary>
    public int K { get; } = k > 0 ? k : throw new InvalidOptionException(nameof(k), $"k must be positive; received {k}.");

    /// <inheritdoc/>
    public override bool InvariantToSoftmax => true;

    /// <inheritdoc/>
    protected override Tensor Values(Tensor yTrue, Tensor yPred)
    {
        var y = yTrue.dim() == yPred.dim() ? yTrue.squeeze(-1) : yTrue;
        return TopK.Hit(yPred, y.to_type(int64), K);
    }
}

/// <summary>Fraction of samples whose one-hot target's class is among the <c>k</c> highest predictions (default 5).</summary>
public sealed class TopKCategoricalAccuracy(int k = 5, string name = "top_k_categorical_accuracy") : MeanMetric(name)
{
    /// <inheritdoc/>
    public override bool? GreaterIsBetter => true;

    /// <summary>How many top predictions count.</summary>
    public int K { get; } = k > 0 ? k : throw new InvalidOptionException(nameof(k), $"k must be positive; received {k}.");

    /// <inheritdoc/>
    public override bool InvariantToSoftmax => true;

    /// <inheritdoc/>
    protected override Tensor Values(Tensor yTrue, Tensor yPred) => TopK.Hit(yPred, yTrue.argmax(-1), K);
}

static class TopK
{
    public static Tensor Hit(Tensor yPred, Tensor labels, int k)
    {
        int kk = (int)Math.Min(k, yPred.shape[^1]);
        // Keras' in_top_k counts ties at the k-th value as hits: compare the true class's score with the k-th largest.
        var kth = yPred.topk(kk, dim: -1).values.narrow(-1, kk - 1, 1);
        var trueScore = yPred.gather(-1, labels.unsqueeze(-1));
        return trueScore.ge(kth).squeeze(-1).to_type(float32);
    }
}

/// <summary>Metrics by Keras' name.</summary>
public static class Metrics
{
    /// <summary>
    /// A metric by Keras' name. <c>accuracy</c>/<c>acc</c> returns a placeholder that Fit resolves to sparse,
    /// categorical or binary accuracy from the loss and the targets, as Keras does.
    /// </summary>
    /// <exception cref="UnknownNameException">Unknown name.</exception>
    public static Metric Get(string name) => name?.ToLowerInvariant() switch
    {
        "accuracy" or "acc" => new AutoAccuracy(name!),
        "sparse_categorical_accuracy" => new SparseCategoricalAccuracy(),
        "categorical_accuracy" => new CategoricalAccuracy(),
        "binary_accuracy" => new BinaryAccuracy(),
        "top_k_categorical_accuracy" => new TopKCategoricalAccuracy(),
        "sparse_top_k_categorical_accuracy" => new SparseTopKCategoricalAccuracy(),
        "mse" or "mean_squared_error" => new MeanSquaredErrorMetric(name!),
        _ => throw new UnknownNameException("metric", name ?? "", $"unknown metric '{name}'; known: accuracy (acc), sparse_categorical_accuracy, categorical_accuracy, binary_accuracy, top_k_categorical_accuracy, sparse_top_k_categorical_accuracy, mse"),
    };

    /// <summary>Keras' choice for "accuracy": binary when the output has one unit, sparse when the targets are labels.</summary>
    internal static Metric ResolveAccuracy(string name, Loss loss, Tensor yTrue, long[] predShape)
    {
        if (loss is BinaryCrossentropy || predShape[^1] == 1 && predShape.Length == 2) return new BinaryAccuracy(name);
        bool sparse = loss is SparseCategoricalCrossentropy || yTrue.dim() < predShape.Length
            || yTrue.dtype is ScalarType.Int64 or ScalarType.Int32 or ScalarType.Int16 or ScalarType.Byte;
        return sparse ? new SparseCategoricalAccuracy(name) : new CategoricalAccuracy(name);
    }
}

/// <summary>The unresolved "accuracy" of <c>Compile(metrics: ["accuracy"])</c>; Fit replaces it.</summary>
internal sealed class AutoAccuracy(string name) : Metric(name)
{
    /// <inheritdoc/>
    public override bool? GreaterIsBetter => true;

    public override void UpdateState(Tensor yTrue, Tensor yPred, Tensor? sampleWeight = null) =>
        throw new UnsupportedException("'accuracy' is resolved by Fit/Evaluate from the loss and targets; use a concrete accuracy metric directly.");

    public override double Result() => double.NaN;

    public override void ResetState() { }
}

/// <summary>Mean squared error as a metric.</summary>
public sealed class MeanSquaredErrorMetric(string name = "mean_squared_error") : MeanMetric(name)
{
    /// <inheritdoc/>
    public override bool? GreaterIsBetter => false;

    /// <inheritdoc/>
    protected override Tensor Values(Tensor yTrue, Tensor yPred) => new MeanSquaredError().Call(yTrue, yPred);
}
