// Keras legacy HDF5 weights onto ConvKit models: layout conversion (HWIO kernels, (in, out) dense kernels, the
// HWC flatten order) and Keras' two matching modes (by name, or topologically over the layers that have weights).
using ConvKit.Layers;
using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Saving;

/// <summary>A weights file does not fit the model: a missing, unexpected or mis-shaped weight.</summary>
public sealed class WeightsMismatchException : WeightsFileException
{
    /// <summary>Creates the exception; the message names the file, the layer and the weight.</summary>
    /// <param name="file">The weights file.</param>
    /// <param name="layer">The layer, if known.</param>
    /// <param name="weight">The weight, if known.</param>
    /// <param name="problem">What does not fit.</param>
    public WeightsMismatchException(string file, string? layer, string? weight, string problem)
        : base("Cannot load weights from", file, layer, weight, problem, null) { }
}

/// <summary>What a weight import did (obsolete: <c>Model.LoadWeights</c> returns a <see cref="WeightsLoadReport"/>).</summary>
/// <param name="LayersLoaded">Layers whose weights were all set.</param>
/// <param name="WeightsLoaded">Weight tensors set.</param>
/// <param name="Skipped">Layers left untouched because their shapes did not match (only with skipMismatch), with the reason.</param>
[Obsolete("Use Model.LoadWeights(path, format, options), which returns a WeightsLoadReport.")]
public sealed record WeightsLoadResult(int LayersLoaded, int WeightsLoaded, IReadOnlyList<string> Skipped);

/// <summary>Loads Keras HDF5 weights (<c>keras.applications</c> downloads, <c>save_weights('x.h5')</c>) into models.</summary>
public static class KerasWeightsLoader
{
    /// <summary>
    /// Loads Keras legacy HDF5 weights into the model, converting Keras' layouts to ConvKit's: Conv2D kernels from
    /// (kh, kw, in, out) to (out, in, kh, kw), Dense kernels from (in, out) to (out, in), and for a Dense layer that
    /// reads a Flatten of a feature map, its input rows from Keras' (H, W, C) order to ConvKit's (C, H, W) order.
    /// </summary>
    /// <param name="model">The model (built).</param>
    /// <param name="path">The .h5 file.</param>
    /// <param name="byName">True: match layers by name (file layers the model lacks are ignored, as in Keras).
    /// False: Keras' default, match the layers that have weights in order.</param>
    /// <param name="skipMismatch">Skip layers whose weight count or shapes differ instead of throwing (byName only, as Keras).</param>
    /// <returns>What was loaded and skipped.</returns>
    /// <exception cref="WeightsMismatchException">A model layer has no weights in the file, the layer counts differ
    /// (topological), or a weight is missing, unexpected or mis-shaped; the message names the file, layer and weight.</exception>
    /// <exception cref="KerasH5FormatException">The file is not a valid Keras HDF5 weights file.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    [Obsolete("Use model.LoadWeights(path, WeightsFormat.KerasH5, new LoadWeightsOptions { ByName = ..., SkipMismatched = ... }).")]
    public static WeightsLoadResult LoadKerasWeights(this Model model, string path, bool byName = true, bool skipMismatch = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (!File.Exists(path)) throw new FileNotFoundException($"Keras weights file '{path}' does not exist.", path);
        return Load(model, KerasH5.Read(path), byName, skipMismatch);
    }

    /// <summary>Loads already-read Keras weights into the model; see <see cref="LoadKerasWeights"/>.</summary>
    /// <exception cref="WeightsMismatchException">The weights do not fit the model.</exception>
    [Obsolete("Use model.LoadWeights(path, WeightsFormat.KerasH5, options).")]
    public static WeightsLoadResult Load(Model model, KerasWeightsFile file, bool byName = true, bool skipMismatch = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(file);
        var report = Load(model, file, new LoadWeightsOptions { ByName = byName, SkipMismatched = skipMismatch });
        var skippedLayers = report.SkippedFor(SkipReason.ShapeMismatch).GroupBy(w => LayerOf(w.Name)).Select(g => g.First().Detail).ToArray();
        int layers = report.Loaded.Select(LayerOf).Distinct().Count();
        return new WeightsLoadResult(layers, report.Loaded.Count, skippedLayers);
    }

    /// <summary>The Keras reader behind <c>Model.LoadWeights</c>: matches by name (file layers the model lacks are
    /// reported as unexpected and never an error, as Keras ignores them) or in order; a model layer the file lacks is an
    /// error when strict, reported as missing otherwise; a layer whose weights do not fit is skipped whole with
    /// SkipMismatched (by name only, as Keras). Nothing is copied unless every planned tensor fits and is finite.</summary>
    internal static WeightsLoadReport Load(Model model, KerasWeightsFile file, LoadWeightsOptions o)
    {
        var KeyOf = ModelFormat.KeysOf(model);
        var excluded = ModelFormat.ExcludedLayers(model, o);
        var skipped = new List<SkippedWeight>();
        var modelLayers = new List<Layer>();
        foreach (var l in WeightedLayers(model))
        {
            if (excluded.Contains(l.Name)) skipped.AddRange(l.OwnWeights.Select(w => new SkippedWeight(KeyOf(w), SkipReason.Excluded, "skipped layer")));
            else modelLayers.Add(l);
        }
        var fileLayers = file.Layers.Where(l => l.Weights.Count > 0 && !excluded.Contains(l.Name)).ToList();
        var pairs = new List<(Layer Layer, KerasLayerWeights Saved)>();
        if (o.ByName)
        {
            var byLayerName = new Dictionary<string, KerasLayerWeights>();
            foreach (var l in fileLayers) byLayerName.TryAdd(l.Name, l);
            var missing = modelLayers.Where(l => !byLayerName.ContainsKey(l.Name)).ToList();
            if (missing.Count > 0 && o.Strict)
                throw new WeightsMismatchException(file.Path, missing[0].Name, null,
                    $"the file has no weights for {missing.Count} layer(s) of model '{model.Name}': {Preview(missing.Select(l => l.Name).ToList())}." +
                    (fileLayers.Count == modelLayers.Count ? " The counts match: load with ByName = false to match layers in order (Keras' default)." : ""));
            foreach (var l in missing)
                skipped.AddRange(l.OwnWeights.Select(w => new SkippedWeight(KeyOf(w), SkipReason.Missing, $"the file has no layer '{l.Name}'")));
            pairs.AddRange(modelLayers.Where(l => byLayerName.ContainsKey(l.Name)).Select(l => (l, byLayerName[l.Name])));
            var names = modelLayers.Select(l => l.Name).ToHashSet(StringComparer.Ordinal);
            foreach (var l in fileLayers.Where(l => !names.Contains(l.Name)))
                skipped.AddRange(l.Weights.Select(w => new SkippedWeight(w.Name, SkipReason.Unexpected, $"file layer '{l.Name}' matches no layer of the model")));
        }
        else
        {
            if (fileLayers.Count != modelLayers.Count)
                throw new WeightsMismatchException(file.Path, null, null,
                    $"the file has {fileLayers.Count} layers with weights but model '{model.Name}' has {modelLayers.Count}; " +
                    $"file: {Preview(fileLayers.Select(l => l.Name).ToList())}; model: {Preview(modelLayers.Select(l => l.Name).ToList())}.");
            for (int i = 0; i < modelLayers.Count; i++) pairs.Add((modelLayers[i], fileLayers[i]));
        }

        var plans = new List<(LayerWeight Target, Tensor Value)>();
        try
        {
            foreach (var (layer, saved) in pairs)
            {
                try
                {
                    plans.AddRange(Plan(file.Path, layer, saved));
                }
                catch (WeightsMismatchException e) when (o.SkipMismatched && o.ByName)
                {
                    skipped.AddRange(layer.OwnWeights.Select(w => new SkippedWeight(KeyOf(w), SkipReason.ShapeMismatch, e.Message)));
                }
            }
            using (no_grad())
            {
                // Nothing is copied if any tensor holds NaN/Inf: such weights would make every prediction NaN.
                foreach (var (target, value) in plans) ModelFormat.ThrowIfNonFinite(file.Path, target, value);
                foreach (var (target, value) in plans) target.Value.copy_(value);
            }
        }
        finally
        {
            foreach (var (_, value) in plans) value.Dispose();
        }
        var order = ModelFormat.NamedWeights(model).Select((p, i) => (p.Key, i)).ToDictionary(p => p.Key, p => p.i);
        var loaded = plans.Select(p => KeyOf(p.Target)).OrderBy(k => order.GetValueOrDefault(k, int.MaxValue)).ToArray();
        return new WeightsLoadReport(file.Path, WeightsFormat.KerasH5, loaded, skipped);
    }

    /// <summary>Layers with their own weights, in the model's order, descending into nested models.</summary>
    internal static List<Layer> WeightedLayers(Model model)
    {
        var result = new List<Layer>();
        foreach (var layer in model.Layers)
        {
            if (layer is Model inner) result.AddRange(WeightedLayers(inner));
            else if (layer.OwnWeights.Count > 0) result.Add(layer);
        }
        return result;
    }

    static string LayerOf(string key) => key[..Math.Max(0, key.LastIndexOf('/'))];

    static string Preview(List<string> names) =>
        string.Join(", ", names.Take(8)) + (names.Count > 8 ? $", ... ({names.Count - 8} more)" : "");

    /// <summary>Converted tensors for each of the layer's weights; nothing is written until every layer fits.</summary>
    static List<(LayerWeight, Tensor)> Plan(string file, Layer layer, KerasLayerWeights saved)
    {
        var own = layer.OwnWeights;
        if (saved.Weights.Count != own.Count)
            throw new WeightsMismatchException(file, layer.Name, null,
                $"{layer.Describe} has {own.Count} weights ({string.Join(", ", own.Select(w => w.Name))}) but the file layer '{saved.Name}' has {saved.Weights.Count} " +
                $"({string.Join(", ", saved.Weights.Select(w => w.Name))})" +
                (layer is BatchNormalization bn ? $"; check center={bn.Center} and scale={bn.Scale}" : "") + ".");
        // Keras names weights '<layer>/<weight>:0'; match on '<weight>' when every name resolves, else by position
        // (both orders are Keras': kernel, bias / gamma, beta, moving_mean, moving_variance).
        var bases = saved.Weights.Select(w => BaseName(w.Name)).ToList();
        bool byWeightName = own.All(w => bases.Count(b => b == w.Name) == 1);
        var result = new List<(LayerWeight, Tensor)>();
        try
        {
            for (int i = 0; i < own.Count; i++)
            {
                var target = own[i];
                var source = byWeightName ? saved.Weights[bases.IndexOf(target.Name)] : saved.Weights[i];
                result.Add((target, Convert(file, layer, target, source)));
            }
        }
        catch
        {
            foreach (var (_, t) in result) t.Dispose();
            throw;
        }
        return result;
    }

    static string BaseName(string weightName)
    {
        var s = weightName;
        int slash = s.LastIndexOf('/');
        if (slash >= 0) s = s[(slash + 1)..];
        int colon = s.IndexOf(':');
        return colon >= 0 ? s[..colon] : s;
    }

    static Tensor Convert(string file, Layer layer, LayerWeight target, KerasWeight source)
    {
        var want = target.Value.shape;
        var have = source.Shape.ToArray();
        long[] expectedKeras = (layer, target.Name) switch
        {
            (Conv2D, "kernel") when want.Length == 4 => [want[2], want[3], want[1], want[0]],
            (Dense, "kernel") when want.Length == 2 => [want[1], want[0]],
            _ => want,
        };
        if (!have.SequenceEqual(expectedKeras))
            throw new WeightsMismatchException(file, layer.Name, source.Name,
                $"{layer.Describe} expects '{target.Name}' of Keras shape ({string.Join(", ", expectedKeras)}); the file holds ({string.Join(", ", have)}).");
        var t = tensor(source.Data, have, dtype: float32);
        switch (layer, target.Name)
        {
            case (Conv2D, "kernel"):
                return Own(t, t.permute(3, 2, 0, 1));
            case (Dense, "kernel"):
                if (FlattenedFeatureMap(layer) is { } fm)
                {
                    // Keras rows are indexed (h, w, c); ConvKit's Flatten of NCHW gives (c, h, w).
                    using var hwc = t.reshape(fm[0], fm[1], fm[2], want[0]);
                    return Own(t, hwc.permute(3, 2, 0, 1).reshape(want[0], want[1]));
                }
                return Own(t, t.t());
            default:
                return t;
        }
    }

    // The view keeps the storage alive; copy_ into the weight accepts any strides.
    static Tensor Own(Tensor source, Tensor view)
    {
        source.Dispose();
        return view;
    }

    /// <summary>The (H, W, C) feature map a Dense layer reads through a Flatten, or null.</summary>
    internal static Shape? FlattenedFeatureMap(Layer dense)
    {
        if (dense.InboundNodes.Count == 0) return null;
        var inputs = dense.InboundNodes[0].Inputs;
        if (inputs.Count != 1 || inputs[0].Layer is not Flatten flatten) return null;
        var flattenInputs = inputs[0].Node.Inputs;
        if (flattenInputs.Count != 1) return null;
        var s = flattenInputs[0].Shape;
        return s.Rank == 3 && s.IsFullyDefined && (s[0] > 1 || s[1] > 1) ? s : null;
    }
}
