using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Training;

/// <summary>
/// Checks targets against the loss, the metrics and the model's output before Fit takes a step or Evaluate runs a
/// batch, so that a mismatch is a <see cref="TargetException"/> naming what is wrong and how to fix it, not a libtorch
/// error after an optimizer step (Keras checks the same in its losses and metrics). Losses and metrics ConvKit does
/// not know (your own subclasses) are not checked.
/// </summary>
internal static class TargetValidation
{
    enum Kind { Sparse, Categorical, Binary, Regression }

    /// <param name="model">The model (its output shape).</param>
    /// <param name="loss">The compiled loss.</param>
    /// <param name="metrics">The resolved metrics.</param>
    /// <param name="ys">Targets, prepared (on the model's device, internal layout, int64 or float32).</param>
    /// <param name="what">The calling API, for messages.</param>
    public static void Check(Model model, Loss loss, IReadOnlyList<Metric> metrics, Tensor ys, string what)
    {
        var output = model.ModelOutputShape; // sample shape, Keras layout
        var target = Layout.ToKeras(ys.shape); // sample shape, Keras layout
        string yDesc = $"targets of dtype {Describe(ys.dtype)} and shape {Shape(ys)}";
        string outDesc = $"the model's output {output.ToBatchString()}";
        long classes = output.Rank > 0 ? output[output.Rank - 1] : -1;

        if (ys.is_floating_point())
        {
            using var finite = isfinite(ys);
            using var all = finite.all();
            if (!all.item<bool>())
            {
                using var bad = finite.logical_not().nonzero();
                long sample = bad[0][0].item<long>();
                throw new TargetException($"model '{model.Name}': {what} received {yDesc} that contain NaN or infinite values (first at sample {sample}). Remove or fix those samples.");
            }
        }

        var checks = new List<(string Name, string Role, Kind Kind)>();
        if (KindOf(loss) is { } lk) checks.Add((loss.Name, "loss", lk));
        foreach (var m in metrics)
            if (KindOf(m) is { } mk) checks.Add((m.Name, "metric", mk));

        foreach (var (name, role, kind) in checks)
        {
            string who = $"model '{model.Name}': {what}: {role} '{name}'";
            switch (kind)
            {
                case Kind.Sparse:
                    CheckSparse(who, ys, target, output, classes, yDesc, outDesc, role, name);
                    break;
                case Kind.Categorical:
                    CheckCategorical(who, ys, target, output, classes, yDesc, outDesc, role, name);
                    break;
                case Kind.Binary:
                    CheckBinary(who, ys, target, output, yDesc, outDesc);
                    break;
                case Kind.Regression:
                    if (!SameOrSqueezed(target, output))
                        throw new TargetException($"{who} expects targets shaped like {outDesc}; received {yDesc}.");
                    break;
            }
        }
    }

    static Kind? KindOf(Loss loss) => loss switch
    {
        SparseCategoricalCrossentropy => Kind.Sparse,
        CategoricalCrossentropy => Kind.Categorical,
        BinaryCrossentropy => Kind.Binary,
        MeanSquaredError => Kind.Regression,
        _ => null,
    };

    static Kind? KindOf(Metric metric) => metric switch
    {
        SparseCategoricalAccuracy or SparseTopKCategoricalAccuracy => Kind.Sparse,
        CategoricalAccuracy or TopKCategoricalAccuracy => Kind.Categorical,
        BinaryAccuracy => Kind.Binary,
        MeanSquaredErrorMetric => Kind.Regression,
        _ => null,
    };

    static void CheckSparse(string who, Tensor ys, ConvKit.Shape target, ConvKit.Shape output, long classes, string yDesc, string outDesc, string role, string name)
    {
        string dense = role == "loss" ? "categorical_crossentropy" : name.Contains("top_k", StringComparison.Ordinal) ? "top_k_categorical_accuracy" : "categorical_accuracy";
        if (ys.is_floating_point())
        {
            bool oneHot = target.Rank == output.Rank && target.Rank > 0 && target[target.Rank - 1] == classes && classes > 1;
            throw new TargetException(oneHot
                ? $"{who} expects integer class labels of shape (N{LabelTail(output)}); received {yDesc}, which look one-hot. Use '{dense}' for one-hot targets, or pass y.argmax(-1) as int64 labels."
                : $"{who} expects integer class labels of shape (N{LabelTail(output)}); received {yDesc}. Convert them with y.to_type(int64).");
        }
        bool labelShape = target.Rank == output.Rank - 1 && Prefix(target, output, output.Rank - 1)
            || target.Rank == output.Rank && target[target.Rank - 1] == 1 && Prefix(target, output, output.Rank - 1);
        if (!labelShape)
            throw new TargetException($"{who} expects one integer label per sample, shape (N{LabelTail(output)}), for {outDesc}; received {yDesc}.");
        if (classes <= 0 || ys.numel() == 0) return;
        long min = ys.min().item<long>(), max = ys.max().item<long>();
        if (min < 0 || max >= classes)
            throw new TargetException($"{who}: labels must be class indices in [0, {classes - 1}] for {outDesc} ({classes} classes); received labels from {min} to {max}. Check the labels, or give the model {Math.Max(max + 1, classes)} output units.");
    }

    static void CheckCategorical(string who, Tensor ys, ConvKit.Shape target, ConvKit.Shape output, long classes, string yDesc, string outDesc, string role, string name)
    {
        string sparse = role == "loss" ? "sparse_categorical_crossentropy" : name.Contains("top_k", StringComparison.Ordinal) ? "sparse_top_k_categorical_accuracy" : "sparse_categorical_accuracy";
        if (!ys.is_floating_point())
            throw new TargetException($"{who} expects one-hot float targets shaped like {outDesc}; received {yDesc}. Use '{sparse}' with integer labels, or DataUtils.ToCategorical(y, {classes}).");
        if (!Same(target, output))
            throw new TargetException($"{who} expects one-hot targets shaped like {outDesc}; received {yDesc}."
                + (target.Rank == output.Rank - 1 ? $" For integer labels use '{sparse}', or DataUtils.ToCategorical(y, {classes})." : ""));
    }

    static void CheckBinary(string who, Tensor ys, ConvKit.Shape target, ConvKit.Shape output, string yDesc, string outDesc)
    {
        if (!SameOrSqueezed(target, output))
            throw new TargetException($"{who} expects targets shaped like {outDesc} (or without its last axis of 1); received {yDesc}.");
        if (ys.numel() == 0) return;
        using var lo = ys.min();
        using var hi = ys.max();
        double min = lo.to_type(float64).item<double>(), max = hi.to_type(float64).item<double>();
        if (min < 0 || max > 1)
            throw new TargetException($"{who} expects targets in [0, 1]; received values from {min.ToString(System.Globalization.CultureInfo.InvariantCulture)} to {max.ToString(System.Globalization.CultureInfo.InvariantCulture)} ({yDesc}). For more than two classes use 'sparse_categorical_crossentropy' with a softmax output.");
    }

    static bool Same(ConvKit.Shape a, ConvKit.Shape b)
    {
        if (a.Rank != b.Rank) return false;
        for (int i = 0; i < a.Rank; i++)
            if (b[i] != ConvKit.Shape.Unknown && a[i] != b[i]) return false;
        return true;
    }

    /// <summary>Same shape, or the output's shape without its last axis of 1.</summary>
    static bool SameOrSqueezed(ConvKit.Shape target, ConvKit.Shape output) =>
        Same(target, output) || output.Rank > 0 && output[output.Rank - 1] == 1 && target.Rank == output.Rank - 1 && Prefix(target, output, output.Rank - 1);

    static bool Prefix(ConvKit.Shape target, ConvKit.Shape output, int n)
    {
        for (int i = 0; i < n; i++)
            if (output[i] != ConvKit.Shape.Unknown && target[i] != output[i]) return false;
        return true;
    }

    static string LabelTail(ConvKit.Shape output) =>
        string.Concat(Enumerable.Range(0, Math.Max(0, output.Rank - 1)).Select(i => ", " + (output[i] == ConvKit.Shape.Unknown ? "?" : output[i].ToString(System.Globalization.CultureInfo.InvariantCulture))));

    static string Shape(Tensor t)
    {
        var k = Layout.ToKeras(t.shape);
        return "[" + t.shape[0].ToString(System.Globalization.CultureInfo.InvariantCulture)
            + string.Concat(Enumerable.Range(0, k.Rank).Select(i => ", " + k[i].ToString(System.Globalization.CultureInfo.InvariantCulture))) + "]";
    }

    static string Describe(ScalarType t) => t.ToString().ToLowerInvariant();
}
