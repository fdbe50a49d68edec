using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using ConvKit.Layers;
using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Saving;

/// <summary>What the obsolete <c>LoadWeights(path, skipMismatch, ...)</c> did: the tensors copied and the ones it skipped (with why).</summary>
[Obsolete("Use WeightsLoadReport, which Model.LoadWeights(path, format, options) returns.")]
public sealed record WeightLoadReport(IReadOnlyList<string> Loaded, IReadOnlyList<string> Skipped);

/// <summary>
/// ConvKit's native model format: one safetensors file. Its <c>__metadata__</c> holds
/// <c>convkit.format</c> ("model", "weights" or "checkpoint"), <c>convkit.format_version</c> ("1") and, for whole models,
/// <c>convkit.model_config</c>: the architecture as Keras-like JSON (class_name/config per layer, inbound_nodes by
/// [layer name, node index]). Tensors are keyed <c>layer/weight</c> (nested models: <c>outer/inner/weight</c>) and stored
/// float32 in ConvKit's internal layout (conv kernels (out, in/groups, kh, kw), dense kernels (units, in)).
/// Safetensors holds only data, so loading a file can never run code.
/// </summary>
public static class ModelFormat
{
    // Keras' own file names: writing safetensors under them made files that neither Keras nor ConvKit's .h5 reader opens.
    static readonly string[] ForeignExtensions = [".h5", ".hdf5", ".keras"];

    /// <summary>Refuses a path whose extension names Keras' HDF5 or .keras format, which ConvKit does not write.</summary>
    internal static void RefuseForeignExtension(string path, string who)
    {
        var ext = Path.GetExtension(path);
        if (!ForeignExtensions.Contains(ext, StringComparer.OrdinalIgnoreCase)) return;
        throw new UnsupportedException($"{who}: '{path}' names a Keras {(ext.Equals(".keras", StringComparison.OrdinalIgnoreCase) ? ".keras archive" : "HDF5 file")}, "
            + "but ConvKit writes its native format, safetensors: use a .safetensors path (e.g. '"
            + Path.ChangeExtension(Path.GetFileName(path), ".safetensors") + "'). ConvKit reads Keras .h5 weights "
            + "(model.LoadKerasWeights) but does not write them; to run the model outside ConvKit, export ONNX (OnnxExport.Save, 'convkit export').");
    }

    /// <summary>Metadata key of the format kind.</summary>
    public const string FormatKey = "convkit.format";

    /// <summary>Metadata key of the format version.</summary>
    public const string VersionKey = "convkit.format_version";

    /// <summary>Metadata key of the architecture JSON.</summary>
    public const string ConfigKey = "convkit.model_config";

    /// <summary>The current format version.</summary>
    public const string Version = "1";

    // ------------------------------------------------------------------ weights

    /// <summary>The model's weights keyed <c>layer/weight</c>, in model order.</summary>
    public static IReadOnlyList<(string Key, LayerWeight Weight)> NamedWeights(Model model)
    {
        var list = new List<(string, LayerWeight)>();
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        Collect(model, "", list, seen);
        return list;
    }

    static void Collect(Model model, string prefix, List<(string, LayerWeight)> into, HashSet<Tensor> seen)
    {
        foreach (var layer in model.Layers)
        {
            if (layer is InputLayer) continue;
            if (layer is Model inner)
            {
                Collect(inner, prefix + inner.Name + "/", into, seen);
                continue;
            }
            foreach (var w in layer.Weights)
            {
                if (!seen.Add(w.Value)) continue; // a weight shared by two layers is stored once
                var owner = ReferenceEquals(w.Owner, layer) ? "" : w.Owner.Name + "/";
                into.Add((prefix + layer.Name + "/" + owner + w.Name, w));
            }
        }
    }

    /// <summary>Maps each weight of the model to its native key (<c>layer/weight</c>).</summary>
    internal static Func<LayerWeight, string> KeysOf(Model model)
    {
        var keys = new Dictionary<Tensor, string>(ReferenceEqualityComparer.Instance);
        foreach (var (key, w) in NamedWeights(model)) keys.TryAdd(w.Value, key);
        return w => keys.TryGetValue(w.Value, out var k) ? k : w.Owner.Name + "/" + w.Name;
    }

    internal static Dictionary<string, Tensor> WeightTensors(Model model) =>
        NamedWeights(model).ToDictionary(p => p.Key, p => p.Weight.Value);

    internal static Dictionary<string, string> Metadata(string kind, string? config = null)
    {
        var m = new Dictionary<string, string> { [FormatKey] = kind, [VersionKey] = Version };
        if (config is not null) m[ConfigKey] = config;
        return m;
    }

    /// <summary>The layers <paramref name="o"/> excludes (SkipLayers, and the last Dense layer with SkipClassifier).</summary>
    internal static HashSet<string> ExcludedLayers(Model model, LoadWeightsOptions o)
    {
        var skip = new HashSet<string>(o.SkipLayers, StringComparer.Ordinal);
        if (o.SkipClassifier)
        {
            var head = model.Layers.LastOrDefault(l => l is Dense)
                ?? throw new ConvKitException($"model '{model.Name}' has no Dense layer to skip as its classifier; name the layers with SkipLayers.");
            skip.Add(head.Name);
        }
        return skip;
    }

    internal static WeightsLoadReport LoadWeights(Model model, IReadOnlyDictionary<string, Tensor> source, string file, LoadWeightsOptions o,
        WeightsFormat format = WeightsFormat.Native)
    {
        if (!o.ByName)
            throw new ConvKitException($"'{file}': ByName = false (topological loading) applies only to Keras .h5 files; ConvKit's own files are matched by name.");
        var skip = ExcludedLayers(model, o);
        bool Excluded(string key) => skip.Contains(key.Split('/')[0]);

        var expected = NamedWeights(model);
        if (expected.Count == 0 && model.Layers.Any(l => l is not InputLayer))
            throw new ConvKitException($"model '{model.Name}' has no weights yet: build it (Build(inputShape) or call it on data) before loading weights from '{file}'.");
        var problems = new List<string>();
        var copies = new List<(LayerWeight W, Tensor T, string Key)>();
        var skipped = new List<SkippedWeight>();
        var expectedKeys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, w) in expected)
        {
            expectedKeys.Add(key);
            if (Excluded(key))
            {
                skipped.Add(new SkippedWeight(key, SkipReason.Excluded, "skipped layer"));
                continue;
            }
            if (!source.TryGetValue(key, out var t))
            {
                if (!o.Strict)
                    skipped.Add(new SkippedWeight(key, SkipReason.Missing, $"not in the file; model {Dims(w.Value.shape)}"));
                else
                    problems.Add($"missing: layer '{w.Owner.Name}' weight '{w.Name}' ({key}, shape {Dims(w.Value.shape)}) is not in the file");
                continue;
            }
            if (!t.shape.SequenceEqual(w.Value.shape))
            {
                if (o.SkipMismatched)
                {
                    skipped.Add(new SkippedWeight(key, SkipReason.ShapeMismatch, $"file {Dims(t.shape)}, model {Dims(w.Value.shape)}"));
                    continue;
                }
                problems.Add($"shape mismatch: layer '{w.Owner.Name}' weight '{w.Name}' expects {Dims(w.Value.shape)}, the file has {Dims(t.shape)}");
                continue;
            }
            if (t.dtype != w.Value.dtype)
            {
                problems.Add($"dtype mismatch: layer '{w.Owner.Name}' weight '{w.Name}' is {w.Value.dtype}, the file has {t.dtype}");
                continue;
            }
            if (t.is_floating_point() && NonFiniteCount(t) is > 0 and var bad)
            {
                problems.Add($"non-finite: layer '{w.Owner.Name}' weight '{w.Name}' holds {bad} NaN/Inf value{(bad == 1 ? "" : "s")}");
                continue;
            }
            copies.Add((w, t, key));
        }
        foreach (var key in source.Keys.Where(k => !expectedKeys.Contains(k) && !Excluded(k)).OrderBy(k => k, StringComparer.Ordinal))
        {
            if (!o.Strict) skipped.Add(new SkippedWeight(key, SkipReason.Unexpected, $"file {Dims(source[key].shape)} matches no weight of the model"));
            else problems.Add($"unexpected: '{key}' {Dims(source[key].shape)} matches no weight of the model");
        }
        if (problems.Count > 0)
            throw new WeightsMismatchException(file, null, null, $"the weights do not fit model '{model.Name}' ({problems.Count} problem{(problems.Count == 1 ? "" : "s")}):\n  "
                + string.Join("\n  ", problems));
        using (no_grad())
            foreach (var (w, t, _) in copies) w.Value.copy_(t);
        return new WeightsLoadReport(file, format, copies.Select(c => c.Key).ToArray(), skipped);
    }

    /// <summary>Refuses an integer tensor, or a floating-point one with NaN/Inf values, naming the file, layer and weight.</summary>
    /// <exception cref="WeightsMismatchException">The tensor is not floating point or holds NaN or infinite values.</exception>
    internal static void ThrowIfNonFinite(string file, LayerWeight target, Tensor value)
    {
        // An integer tensor would be converted silently by copy_: weights are never integers.
        if (!value.is_floating_point())
            throw new WeightsMismatchException(file, target.Owner.Name, target.Name, $"the file holds {value.dtype} values; weights must be floating point.");
        if (NonFiniteCount(value) is > 0 and var bad)
            throw new WeightsMismatchException(file, target.Owner.Name, target.Name, $"{bad} NaN/Inf value{(bad == 1 ? "" : "s")}; the weights are unusable.");
    }

    /// <summary>How many elements of a floating-point tensor are NaN or infinite.</summary>
    internal static long NonFiniteCount(Tensor t)
    {
        using var finite = t.isfinite();
        using var count = finite.logical_not().sum();
        return count.item<long>();
    }

    static string Dims(ReadOnlySpan<long> s) => "[" + string.Join(", ", s.ToArray()) + "]";

    static string Dims(long[] s) => "[" + string.Join(", ", s) + "]";

    // ------------------------------------------------------------------ architecture

    /// <summary>The model's architecture as JSON (Keras-like <c>{"class_name", "config"}</c>).</summary>
    /// <exception cref="ConvKitException">A layer's class is not registered with <see cref="LayerRegistry"/>.</exception>
    public static string ToJson(Model model) => ModelJson(model).ToJsonString(new JsonSerializerOptions { WriteIndented = false });

    static JsonObject ModelJson(Model model)
    {
        if (model.GetType() != typeof(Model) && model.GetType() != typeof(Sequential))
        {
            if (LayerRegistry.TryGetClassName(model, out var cls))
                return LayerEntry(model, cls, LayerRegistry.GetConfig(model));
            // Keras cannot rebuild subclassed models from JSON either: record what it was so Load can say so.
            return new JsonObject
            {
                ["class_name"] = "Subclassed", ["name"] = model.Name,
                ["config"] = new JsonObject { ["type"] = model.GetType().FullName, ["name"] = model.Name },
            };
        }
        if (model is Sequential seq)
        {
            JsonObject? input = null;
            if (seq.IsGraphNetwork)
            {
                var il = seq.Inputs[0].Layer;
                input = il is InputLayer declared ? LayerRegistry.InputLayerConfig(declared) : new JsonObject { ["shape"] = ShapeJson(seq.Inputs[0].Shape) };
                input["name"] = il.Name;
            }
            return new JsonObject
            {
                ["class_name"] = "Sequential", ["name"] = seq.Name, ["trainable"] = seq.Trainable,
                ["config"] = new JsonObject
                {
                    ["name"] = seq.Name, ["input"] = input,
                    ["layers"] = new JsonArray(seq.Layers.Select(l => (JsonNode)LayerJson(l)).ToArray()),
                },
            };
        }
        if (!model.IsGraphNetwork) throw new GraphException($"model '{model.Name}' has no graph to save.");
        var inputs = model.Inputs;
        var outputs = model.Outputs;
        var graph = GraphOf(model);
        // Node index = the order of a layer's calls inside this model, so shared layers rebuild their calls in order.
        var nodeIndex = new Dictionary<Node, int>();
        var perLayer = new Dictionary<Layer, List<Node>>(ReferenceEqualityComparer.Instance);
        void Number(Node n)
        {
            if (nodeIndex.ContainsKey(n)) return;
            if (!perLayer.TryGetValue(n.Layer, out var l)) perLayer[n.Layer] = l = [];
            nodeIndex[n] = l.Count;
            l.Add(n);
        }
        foreach (var i in inputs) Number(i.Node);
        foreach (var n in graph.Schedule) Number(n);
        JsonArray Ref(SymbolicTensor t) => [t.Layer.Name, nodeIndex[t.Node]];
        var layers = new JsonArray();
        foreach (var layer in graph.Layers)
        {
            var entry = LayerJson(layer);
            var nodes = new JsonArray();
            if (layer is not InputLayer && perLayer.TryGetValue(layer, out var calls))
                foreach (var n in calls) nodes.Add(new JsonArray(n.Inputs.Select(x => (JsonNode)Ref(x)).ToArray()));
            entry["inbound_nodes"] = nodes;
            layers.Add(entry);
        }
        return new JsonObject
        {
            ["class_name"] = "Functional", ["name"] = model.Name, ["trainable"] = model.Trainable,
            ["config"] = new JsonObject
            {
                ["name"] = model.Name, ["layers"] = layers,
                ["input_layers"] = new JsonArray(inputs.Select(x => (JsonNode)Ref(x)).ToArray()),
                ["output_layers"] = new JsonArray(outputs.Select(x => (JsonNode)Ref(x)).ToArray()),
            },
        };
    }

    static FunctionalGraph GraphOf(Model model) => model.GraphForSummary ?? throw new GraphException($"model '{model.Name}' has no graph to save.");

    static JsonObject LayerJson(Layer layer)
    {
        if (layer is Model m) return ModelJson(m);
        if (!LayerRegistry.TryGetClassName(layer, out var cls)) _ = LayerRegistry.GetConfig(layer); // throws the explanatory error
        return LayerEntry(layer, cls, LayerRegistry.GetConfig(layer));
    }

    static JsonObject LayerEntry(Layer layer, string cls, JsonObject config) => new()
    {
        ["class_name"] = cls, ["name"] = layer.Name, ["trainable"] = layer.Trainable, ["config"] = config,
    };

    static JsonArray ShapeJson(Shape s) => new(s.ToArray().Select(d => (JsonNode?)JsonValue.Create(d)).ToArray());

    /// <summary>Rebuilds a model (fresh weights) from <see cref="ToJson"/>'s output.</summary>
    /// <exception cref="ConvKitException">The JSON is malformed, names an unregistered class, or describes a subclassed model.</exception>
    public static Model FromJson(string json, string file = "<json>")
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new InvalidFileException($"'{file}': the model config is not a JSON object.");
        }
        catch (JsonException e)
        {
            throw new InvalidFileException($"'{file}': the model config is not valid JSON: {e.Message}", e);
        }
        try
        {
            using var _ = Backend.NameScope(); // rebuilt layers carry saved names; keep auto-name counters untouched
            return ModelFromJson(root, file);
        }
        catch (Exception e) when (e is InvalidOperationException or NullReferenceException or FormatException or KeyNotFoundException or InvalidCastException)
        {
            throw new InvalidFileException($"'{file}': malformed model config: {e.Message}", e);
        }
    }

    static Model ModelFromJson(JsonObject o, string file)
    {
        var cls = (string)o["class_name"]!;
        var config = (JsonObject)o["config"]!;
        Model model;
        switch (cls)
        {
            case "Subclassed":
                throw new UnsupportedException($"'{file}' was saved from the subclassed model '{(string?)config["name"]}' ({(string?)config["type"]}). " +
                    "As in Keras, a subclassed model cannot be rebuilt from its config: construct it in code and call LoadWeights, " +
                    "or register a factory with LayerRegistry.Register<T>(className, getConfig, fromConfig) before saving.");
            case "Sequential":
            {
                var seq = new Sequential(name: (string)config["name"]!);
                if (config["input"] is JsonObject inp)
                    seq.Add(new InputLayer(LayerRegistry.ShapeOf(inp["shape"])!.Value, (string)inp["name"]!, LayerRegistry.InputDataFormat(inp)));
                foreach (var l in (JsonArray)config["layers"]!) seq.Add(LayerFromJson((JsonObject)l!, file));
                model = seq;
                break;
            }
            case "Functional":
                model = FunctionalFromJson(config, file);
                break;
            default:
                model = LayerRegistry.FromConfig(cls, config, (string)o["name"]!, file) as Model
                    ?? throw new InvalidFileException($"'{file}': class '{cls}' is registered as a layer, not a model.");
                break;
        }
        if (o["trainable"] is JsonNode t && !(bool)t) model.Trainable = false;
        return model;
    }

    static Layer LayerFromJson(JsonObject o, string file)
    {
        var cls = (string)o["class_name"]!;
        Layer layer = cls is "Functional" or "Sequential" or "Subclassed"
            ? ModelFromJson(o, file)
            : LayerRegistry.FromConfig(cls, (JsonObject)o["config"]!, (string)o["name"]!, file);
        if (o["trainable"] is JsonNode t && !(bool)t) layer.Trainable = false;
        return layer;
    }

    static Model FunctionalFromJson(JsonObject config, string file)
    {
        var name = (string)config["name"]!;
        var entries = ((JsonArray)config["layers"]!).Select(n => (JsonObject)n!).ToArray();
        var layers = new Dictionary<string, Layer>(StringComparer.Ordinal);
        var outputs = new Dictionary<(string, int), SymbolicTensor>();
        var pending = new List<(Layer Layer, JsonArray[] Calls)>();
        foreach (var e in entries)
        {
            var layerName = (string)e["name"]!;
            if (layers.ContainsKey(layerName)) throw new InvalidFileException($"'{file}': model '{name}' lists layer '{layerName}' twice.");
            if ((string)e["class_name"]! == "InputLayer")
            {
                var inputConfig = (JsonObject)e["config"]!;
                var input = new Input(LayerRegistry.ShapeOf(inputConfig["shape"])!.Value, layerName, LayerRegistry.InputDataFormat(inputConfig));
                layers[layerName] = input.InputLayer;
                outputs[(layerName, 0)] = input;
                continue;
            }
            var layer = LayerFromJson(e, file);
            layers[layerName] = layer;
            pending.Add((layer, ((JsonArray)e["inbound_nodes"]!).Select(n => (JsonArray)n!).ToArray()));
        }
        var done = new int[pending.Count];
        for (bool progress = true; progress;)
        {
            progress = false;
            for (int i = 0; i < pending.Count; i++)
            {
                var (layer, calls) = pending[i];
                while (done[i] < calls.Length)
                {
                    var refs = calls[done[i]].Select(r => ((string)r![0]!, (int)r[1]!)).ToArray();
                    if (!refs.All(outputs.ContainsKey)) break;
                    var result = layer.Apply(refs.Select(r => outputs[r]).ToArray());
                    outputs[(layer.Name, done[i])] = result;
                    done[i]++;
                    progress = true;
                }
            }
        }
        for (int i = 0; i < pending.Count; i++)
            if (done[i] < pending[i].Calls.Length)
                throw new InvalidFileException($"'{file}': model '{name}': layer '{pending[i].Layer.Name}' call {done[i]} refers to tensors that no layer produces.");
        SymbolicTensor Resolve(JsonNode? r)
        {
            var key = ((string)r![0]!, (int)r[1]!);
            return outputs.TryGetValue(key, out var t) ? t
                : throw new InvalidFileException($"'{file}': model '{name}' refers to '{key.Item1}' call {key.Item2}, which does not exist.");
        }
        var ins = ((JsonArray)config["input_layers"]!).Select(Resolve).ToArray();
        var outs = ((JsonArray)config["output_layers"]!).Select(Resolve).ToArray();
        return new Model(ins, outs, name);
    }

    // ------------------------------------------------------------------ files

    internal static (Dictionary<string, Tensor> Tensors, IReadOnlyDictionary<string, string> Metadata) ReadFile(string path)
    {
        if (Directory.Exists(path)) throw new ConvKitException($"'{path}' is a directory, not a ConvKit model or weights file.");
        if (!File.Exists(path)) throw new ConvKitException($"'{path}' does not exist.");
        WrongFileFormatException.ThrowIfOther(path, FileKind.SafeTensors, "a ConvKit model or weights file (.safetensors)");
        try
        {
            using var file = SafeTensors.Read(path);
            return (file.LoadAll(), file.Metadata);
        }
        catch (IOException e)
        {
            throw new ConvKitException($"'{path}' cannot be read: {e.Message}", e);
        }
    }

    internal static string Kind(IReadOnlyDictionary<string, string> meta, string path)
    {
        if (!meta.TryGetValue(FormatKey, out var kind))
            throw new InvalidFileException($"'{path}' is a safetensors file but not a ConvKit model file (no '{FormatKey}' metadata).");
        if (meta.TryGetValue(VersionKey, out var v) && v != Version)
            throw new InvalidFileException($"'{path}' uses ConvKit format version {v}; this ConvKit reads version {Version}.");
        return kind;
    }

    internal static string Str(long v) => v.ToString(CultureInfo.InvariantCulture);
}
