// Keras' transfer-learning moves as one-line calls: freeze a backbone under a new head, then unfreeze its top for a
// second phase at a lower learning rate. Trainable itself (and a frozen BatchNormalization running in inference mode)
// lives on Layer; Fit builds its optimizer over the trainable weights only.
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Training;

/// <summary>Freezing and unfreezing parts of a model for transfer learning, the Keras way.</summary>
public static class FineTuning
{
    /// <summary>
    /// The layers that hold their own weights, in the model's order, descending into nested models (a backbone used as
    /// a layer): the units <see cref="UnfreezeTop"/> counts.
    /// </summary>
    /// <param name="model">The model.</param>
    public static IReadOnlyList<Layer> WeightedLayers(Model model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var result = new List<Layer>();
        Collect(model, result);
        return result;
    }

    static void Collect(Model model, List<Layer> into)
    {
        foreach (var layer in model.Layers)
        {
            if (layer is Model inner) Collect(inner, into);
            else if (layer.OwnWeights.Count > 0) into.Add(layer);
        }
    }

    /// <summary>
    /// Freezes every layer of <paramref name="model"/> except <paramref name="head"/> (by name): Keras'
    /// <c>base_model.trainable = False</c> under a new classifier. Frozen BatchNormalization layers run in inference
    /// mode, and their moving statistics stay as loaded.
    /// </summary>
    /// <param name="model">The model (built).</param>
    /// <param name="head">Names of the layers that stay trainable.</param>
    /// <returns>The names of the layers frozen.</returns>
    /// <exception cref="ConvKitException">A name in <paramref name="head"/> is not a layer with weights of the model, or
    /// nothing would stay trainable.</exception>
    public static IReadOnlyList<string> FreezeAllBut(Model model, IEnumerable<string> head)
    {
        var layers = WeightedLayers(model);
        var keep = new HashSet<string>(head ?? throw new ArgumentNullException(nameof(head)), StringComparer.Ordinal);
        var unknown = keep.Where(n => layers.All(l => l.Name != n)).ToList();
        if (unknown.Count > 0)
            throw new ConvKitException($"model '{model.Name}' has no layer with weights named {string.Join(", ", unknown.Select(n => $"'{n}'"))}; "
                + $"its layers with weights are {string.Join(", ", layers.Select(l => l.Name))}.");
        if (keep.Count == 0) throw new ConvKitException($"FreezeAllBut on model '{model.Name}': name at least one layer to keep trainable (its new head).");
        // Nested models first: setting a container's Trainable cascades to its children.
        foreach (var inner in model.Layers.OfType<Model>()) inner.Trainable = true;
        var frozen = new List<string>();
        foreach (var l in layers)
        {
            bool train = keep.Contains(l.Name);
            l.Trainable = train;
            if (!train) frozen.Add(l.Name);
        }
        return frozen;
    }

    /// <summary>
    /// Makes the top <paramref name="layers"/> layers with weights trainable and freezes all the others: the second
    /// phase of Keras' fine-tuning recipe (then set the optimizer's LearningRate about ten times lower and Fit again;
    /// Fit rebuilds its optimizer over the new set of trainable weights). BatchNormalization layers are not counted and
    /// stay frozen by default, so that they keep running in inference mode with the statistics they were trained with,
    /// as the Keras guide advises.
    /// </summary>
    /// <param name="model">The model (built).</param>
    /// <param name="layers">How many layers with weights, counted from the output, to unfreeze (at least 1).</param>
    /// <param name="keepBatchNormFrozen">True (the default): BatchNormalization layers stay frozen everywhere.</param>
    /// <returns>The names of the layers now trainable, in model order.</returns>
    /// <exception cref="ConvKitException"><paramref name="layers"/> is less than 1 or more than the model has.</exception>
    public static IReadOnlyList<string> UnfreezeTop(Model model, int layers, bool keepBatchNormFrozen = true)
    {
        var all = WeightedLayers(model);
        var countable = all.Where(l => !(keepBatchNormFrozen && l is BatchNormalization)).ToList();
        if (layers < 1 || layers > countable.Count)
            throw new ConvKitException($"UnfreezeTop on model '{model.Name}': layers must be between 1 and {countable.Count} (its layers with weights"
                + (keepBatchNormFrozen ? ", BatchNormalization not counted" : "") + $"); received {layers}.");
        var top = countable.Skip(countable.Count - layers).ToHashSet();
        foreach (var inner in model.Layers.OfType<Model>()) inner.Trainable = true;
        foreach (var l in all) l.Trainable = top.Contains(l);
        return all.Where(top.Contains).Select(l => l.Name).ToArray();
    }
}
