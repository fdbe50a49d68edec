// PyTorch state dicts (safetensors, as the HF hub and timm publish torchvision weights) onto ConvKit models whose layer
// names are the state-dict module paths with '.' replaced by '_' (the *_tv registry models).
using ConvKit.Layers;
using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Saving;

/// <summary>
/// How a model's layers are found in a PyTorch state dict: the state-dict prefix (module path) of each layer, and the
/// modules of the file that the model leaves out on purpose (torchvision's auxiliary classifiers).
/// </summary>
/// <param name="KeyOf">Maps a layer name to its module path, e.g. <c>layer1_0_conv1</c> to <c>layer1.0.conv1</c>.</param>
/// <param name="IgnoredModules">Module paths whose tensors may be in the file without a layer to take them (<c>aux1</c>
/// covers <c>aux1.conv.conv.weight</c>); any other unused tensor is an error.</param>
public sealed record StateDictMapping(Func<string, string> KeyOf, IReadOnlyList<string> IgnoredModules)
{
    /// <summary>Layer names are module paths with '.' replaced by '_' (torchvision's ResNet, AlexNet, VGG, GoogLeNet); nothing ignored.</summary>
    public static StateDictMapping Default { get; } = new(name => name.Replace('_', '.'), []);

    /// <summary>Whether a tensor of the file belongs to an ignored module.</summary>
    public bool Ignores(string key) => IgnoredModules.Any(m => key.Length > m.Length && key[m.Length] == '.' && key.StartsWith(m, StringComparison.Ordinal));
}

/// <summary>Loads PyTorch/torchvision state dicts saved as safetensors.</summary>
public static class TorchvisionWeightsLoader
{
    /// <summary>
    /// Loads a torchvision state dict into a model built with torchvision's layer names (registry <c>*_tv</c> models):
    /// layer <c>layer1_0_conv1</c> takes <c>layer1.0.conv1.weight</c>; BatchNormalization takes weight, bias,
    /// running_mean, running_var. Layouts agree (NCHW, (out, in) linear weights), so values are copied unchanged.
    /// Every tensor of the file must be used (<c>num_batches_tracked</c> counters are ignored), as torch's strict loading.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="path">The .safetensors file.</param>
    /// <param name="keyOf">Maps a layer name to its state-dict prefix; by default '_' becomes '.'.</param>
    /// <returns>What was loaded.</returns>
    /// <exception cref="WeightsMismatchException">A key is missing, unexpected or mis-shaped (the message names file, layer and key).</exception>
    /// <exception cref="SafeTensorsFormatException">The file is not valid safetensors.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    [Obsolete("Use model.LoadWeights(path, WeightsFormat.Torchvision, new LoadWeightsOptions { StateDict = ... }).")]
    public static WeightsLoadResult LoadTorchvisionWeights(this Model model, string path, Func<string, string>? keyOf = null) =>
        model.LoadTorchvisionWeights(path, keyOf is null ? StateDictMapping.Default : StateDictMapping.Default with { KeyOf = keyOf });

    /// <summary>
    /// Loads a PyTorch state dict with an explicit mapping: layer names to module paths, and modules of the file the
    /// model leaves out (the registry's <see cref="Applications.ModelInfo.StateDict"/> for each <c>*_tv</c> model).
    /// Tensors of ignored modules are not read; every other tensor must be used.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="path">The .safetensors file.</param>
    /// <param name="mapping">Where each layer's tensors are, and which modules to ignore.</param>
    /// <returns>What was loaded.</returns>
    /// <exception cref="WeightsMismatchException">A key is missing, unexpected or mis-shaped (the message names file, layer and key).</exception>
    /// <exception cref="SafeTensorsFormatException">The file is not valid safetensors.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    [Obsolete("Use model.LoadWeights(path, WeightsFormat.Torchvision, new LoadWeightsOptions { StateDict = mapping }).")]
    public static WeightsLoadResult LoadTorchvisionWeights(this Model model, string path, StateDictMapping mapping)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(mapping);
        var report = Load(model, path, new LoadWeightsOptions { StateDict = mapping });
        int layers = report.Loaded.Select(k => k[..Math.Max(0, k.LastIndexOf('/'))]).Distinct().Count();
        return new WeightsLoadResult(layers, report.Loaded.Count, []);
    }

    /// <summary>The state-dict reader behind <c>Model.LoadWeights</c>: a missing or unexpected key is an error when
    /// strict, reported otherwise; a mis-shaped tensor is an error unless SkipMismatched. Nothing is copied unless every
    /// planned tensor fits and is finite.</summary>
    internal static WeightsLoadReport Load(Model model, string path, LoadWeightsOptions o)
    {
        var mapping = o.StateDict ?? StateDictMapping.Default;
        if (!o.ByName)
            throw new ConvKitException($"'{path}': ByName = false (topological loading) applies only to Keras .h5 files; state dicts are matched by name.");
        var keyOf = mapping.KeyOf;
        var KeyOf = ModelFormat.KeysOf(model);
        var excluded = ModelFormat.ExcludedLayers(model, o);
        using var file = SafeTensors.Read(path);
        var used = new HashSet<string>();
        var excludedPrefixes = new List<string>();
        var skipped = new List<SkippedWeight>();
        var plans = new List<(LayerWeight Target, Tensor Value)>();
        try
        {
            foreach (var layer in KerasWeightsLoader.WeightedLayers(model))
            {
                string prefix = keyOf(layer.Name);
                if (excluded.Contains(layer.Name))
                {
                    excludedPrefixes.Add(prefix + ".");
                    skipped.AddRange(layer.OwnWeights.Select(w => new SkippedWeight(KeyOf(w), SkipReason.Excluded, "skipped layer")));
                    continue;
                }
                foreach (var w in layer.OwnWeights)
                {
                    string key = prefix + "." + TorchName(layer, w.Name);
                    if (!file.Contains(key))
                    {
                        if (o.Strict)
                            throw new WeightsMismatchException(path, layer.Name, key, $"the file has no tensor '{key}' for {layer.Describe}'s {w.Name}.");
                        skipped.Add(new SkippedWeight(KeyOf(w), SkipReason.Missing, $"the file has no tensor '{key}'"));
                        continue;
                    }
                    used.Add(key);
                    var info = file.Info(key);
                    if (!info.Shape.SequenceEqual(w.Value.shape))
                    {
                        var problem = $"{layer.Describe} expects '{w.Name}' of shape ({string.Join(", ", w.Value.shape)}); the file holds ({string.Join(", ", info.Shape)}).";
                        if (!o.SkipMismatched) throw new WeightsMismatchException(path, layer.Name, key, problem);
                        skipped.Add(new SkippedWeight(KeyOf(w), SkipReason.ShapeMismatch, $"file '{key}' [{string.Join(", ", info.Shape)}], model [{string.Join(", ", w.Value.shape)}]"));
                        continue;
                    }
                    plans.Add((w, file.Get(key)));
                }
            }
            var unexpected = file.Names.Where(n => !used.Contains(n) && !n.EndsWith(".num_batches_tracked", StringComparison.Ordinal) && !mapping.Ignores(n)
                && !excludedPrefixes.Any(p => n.StartsWith(p, StringComparison.Ordinal))).ToList();
            if (unexpected.Count > 0 && o.Strict)
                throw new WeightsMismatchException(path, null, unexpected[0],
                    $"{unexpected.Count} tensor(s) of the file match no layer of model '{model.Name}': {string.Join(", ", unexpected.Take(8))}{(unexpected.Count > 8 ? ", ..." : "")}.");
            skipped.AddRange(unexpected.Select(n => new SkippedWeight(n, SkipReason.Unexpected, $"file [{string.Join(", ", file.Info(n).Shape)}] matches no layer of the model")));
            using (no_grad())
            {
                // Nothing is copied if any tensor holds NaN/Inf: such weights would make every prediction NaN.
                foreach (var (target, value) in plans) ModelFormat.ThrowIfNonFinite(path, target, value);
                foreach (var (target, value) in plans) target.Value.copy_(value);
            }
        }
        finally
        {
            foreach (var (_, value) in plans) value.Dispose();
        }
        return new WeightsLoadReport(path, WeightsFormat.Torchvision, plans.Select(p => KeyOf(p.Target)).ToArray(), skipped);
    }

    static string TorchName(Layer layer, string weight) => (layer, weight) switch
    {
        (_, "kernel" or "gamma") => "weight",
        (_, "beta") => "bias",
        (BatchNormalization, "moving_mean") => "running_mean",
        (BatchNormalization, "moving_variance") => "running_var",
        _ => weight,
    };
}
