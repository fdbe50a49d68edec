using System.Globalization;
using System.Reflection;
using System.Text.Json;
using ConvKit.Callbacks;
using ConvKit.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Saving;

/// <summary>
/// A training checkpoint: weights (keyed as <see cref="Model.SaveWeights"/>), the optimizer's state tensors, the
/// learning rate, epochs completed, optimizer steps, whether training was stopped, torch's global RNG state, the generators of the random augmentation layers, the Fit
/// shuffle generator's state and the state of the Fit's <see cref="IStatefulCallback"/>s, in one safetensors file.
/// Non-weight tensors live under <see cref="ReservedPrefix"/> (layer names cannot contain '.').
/// Restoring it and continuing gives the same weights, bit for bit, as a run that was never interrupted (CPU).
/// </summary>
public static class TrainingCheckpoint
{
    /// <summary>Prefix of the tensors that are not weights.</summary>
    public const string ReservedPrefix = ".convkit/";

    const string OptimizerPrefix = ReservedPrefix + "optimizer/";
    const string TorchRng = ReservedPrefix + "rng/torch";
    const string ShuffleRng = ReservedPrefix + "rng/shuffle";
    // One per random augmentation layer, in the order of a depth-first walk of the model's layers.
    const string AugmentationRng = ReservedPrefix + "rng/augmentation/";
    /// <summary>Metadata key of the number of epochs completed.</summary>
    public const string EpochKey = "convkit.epoch";
    const string StepKey = "convkit.step";
    const string LearningRateKey = "convkit.learning_rate";
    const string OptimizerKey = "convkit.optimizer";
    const string StateCountKey = "convkit.optimizer_states";
    const string StopTrainingKey = "convkit.stop_training";
    // Callback state: the keys in a JSON array, numbers as "convkit.callback/<key>/<name>" metadata, tensor lists as
    // ".convkit/callbacks/<key>/<name>/<index>". Names hold no '/', so a key's entries never match another key's.
    const string CallbacksKey = "convkit.callbacks";
    const string CallbackValuePrefix = "convkit.callback/";
    const string CallbackTensorPrefix = ReservedPrefix + "callbacks/";

    /// <summary>Collects the model's training state after <paramref name="epochsDone"/> epochs (tensors are the model's own or fresh copies).</summary>
    internal static (Dictionary<string, Tensor> Tensors, Dictionary<string, string> Metadata, List<Tensor> Owned) Capture(Model model, int epochsDone)
    {
        var tensors = ModelFormat.WeightTensors(model);
        var owned = new List<Tensor>();
        var meta = ModelFormat.Metadata("checkpoint");
        meta[EpochKey] = epochsDone.ToString(CultureInfo.InvariantCulture);
        meta[StepKey] = model.StepsDone.ToString(CultureInfo.InvariantCulture);
        if (model.StopTraining) meta[StopTrainingKey] = "true";
        if (model.Optimizer is { } opt)
        {
            meta[OptimizerKey] = opt.Name;
            meta[LearningRateKey] = opt.LearningRate.ToString("R", CultureInfo.InvariantCulture);
            if (opt.TorchOptimizer is optim.Optimizer torchOpt)
            {
                var states = States(torchOpt);
                meta[StateCountKey] = states.Count.ToString(CultureInfo.InvariantCulture);
                for (int i = 0; i < states.Count; i++)
                {
                    foreach (var f in StateFields(states[i]))
                    {
                        var key = $"{OptimizerPrefix}{i}/{f.Name}";
                        switch (f.GetValue(states[i]))
                        {
                            case Tensor t: tensors[key] = t; break;
                            case long l: owned.Add(tensors[key] = tensor(l)); break;
                            case int n: owned.Add(tensors[key] = tensor((long)n)); break;
                            case double d: owned.Add(tensors[key] = tensor(d)); break;
                        }
                    }
                }
            }
        }
        owned.Add(tensors[TorchRng] = torch.random.get_rng_state());
        if (model.FitGenerator is { } g) owned.Add(tensors[ShuffleRng] = g.get_state());
        var augmentations = Augmentations(model);
        for (int i = 0; i < augmentations.Count; i++)
            owned.Add(tensors[AugmentationRng + i.ToString(CultureInfo.InvariantCulture)] = augmentations[i].CheckpointedGenerator.get_state());
        CaptureCallbacks(model.FitCallbacks, tensors, meta);
        return (tensors, meta, owned);
    }

    static void CaptureCallbacks(IEnumerable<Callback> callbacks, Dictionary<string, Tensor> tensors, Dictionary<string, string> meta)
    {
        var keys = new List<string>();
        foreach (var (key, callback) in Keyed(callbacks))
        {
            var state = new CallbackState(key);
            callback.SaveState(state);
            keys.Add(key);
            foreach (var (name, value) in state.Values)
                meta[CallbackValuePrefix + key + "/" + CheckName(name, key)] = value.ToString("R", CultureInfo.InvariantCulture);
            foreach (var (name, list) in state.Tensors)
                for (int i = 0; i < list.Count; i++)
                    tensors[$"{CallbackTensorPrefix}{key}/{CheckName(name, key)}/{i}"] = list[i];
        }
        if (keys.Count > 0) meta[CallbacksKey] = JsonSerializer.Serialize(keys);
    }

    static string CheckName(string name, string key) => name.Length > 0 && !name.Contains('/') ? name
        : throw new InvalidOptionException("name", $"callback {key} saved a state entry named '{name}'; names must be non-empty and hold no '/'.");

    /// <summary>The stateful callbacks with their keys, duplicates told apart by order.</summary>
    static IEnumerable<(string Key, IStatefulCallback Callback)> Keyed(IEnumerable<Callback> callbacks)
    {
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var callback in callbacks.OfType<IStatefulCallback>())
        {
            var key = callback.StateKey;
            int n = seen[key] = seen.GetValueOrDefault(key) + 1;
            yield return (n == 1 ? key : $"{key}#{n}", callback);
        }
    }

    /// <summary>
    /// The saved states of those of <paramref name="callbacks"/> the checkpoint has a state for (a callback the
    /// interrupted run did not have starts fresh). The states' tensors are <paramref name="tensors"/>' own.
    /// </summary>
    /// <exception cref="CheckpointException">The callback part of the checkpoint is malformed.</exception>
    internal static List<(IStatefulCallback Callback, CallbackState State)> CallbackStates(IEnumerable<Callback> callbacks,
        IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string> meta, string file)
    {
        var result = new List<(IStatefulCallback, CallbackState)>();
        if (!meta.TryGetValue(CallbacksKey, out var json)) return result;
        HashSet<string> saved;
        try
        {
            saved = JsonSerializer.Deserialize<HashSet<string>>(json) ?? [];
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"'{file}': invalid '{CallbacksKey}' metadata: {e.Message}");
        }
        foreach (var (key, callback) in Keyed(callbacks))
        {
            if (!saved.Contains(key)) continue;
            var state = new CallbackState(key);
            var valuePrefix = CallbackValuePrefix + key + "/";
            foreach (var (k, v) in meta)
            {
                if (!k.StartsWith(valuePrefix, StringComparison.Ordinal) || k.IndexOf('/', valuePrefix.Length) >= 0) continue;
                if (!double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
                    throw new CheckpointException($"'{file}': callback {key} has '{k[valuePrefix.Length..]}' = '{v}', not a number.");
                state.Values[k[valuePrefix.Length..]] = value;
            }
            var tensorPrefix = CallbackTensorPrefix + key + "/";
            var lists = new Dictionary<string, SortedDictionary<int, Tensor>>(StringComparer.Ordinal);
            foreach (var (k, t) in tensors)
            {
                if (!k.StartsWith(tensorPrefix, StringComparison.Ordinal)) continue;
                var rest = k[tensorPrefix.Length..].Split('/');
                if (rest.Length != 2) continue; // another key's, which extends this one
                if (!int.TryParse(rest[1], NumberStyles.None, CultureInfo.InvariantCulture, out int index))
                    throw new CheckpointException($"'{file}': tensor '{k}' of callback {key} has no list index.");
                if (!lists.TryGetValue(rest[0], out var list)) lists[rest[0]] = list = [];
                list[index] = t;
            }
            foreach (var (name, list) in lists)
            {
                if (list.Keys.Last() != list.Count - 1)
                    throw new CheckpointException($"'{file}': the tensor list '{name}' of callback {key} has gaps.");
                state.Tensors[name] = list.Values.ToArray();
            }
            result.Add((callback, state));
        }
        return result;
    }

    /// <summary>The epochs completed that a training checkpoint's metadata records.</summary>
    /// <exception cref="CheckpointException">The file is not a training checkpoint or its epoch is missing or invalid.</exception>
    internal static int EpochOf(IReadOnlyDictionary<string, string> meta, string file)
    {
        if (ModelFormat.Kind(meta, file) != "checkpoint") throw new CheckpointException($"'{file}' is not a training checkpoint.");
        if (!meta.TryGetValue(EpochKey, out var e) || !int.TryParse(e, CultureInfo.InvariantCulture, out int epoch) || epoch < 0)
            throw new CheckpointException($"'{file}': missing or invalid '{EpochKey}' metadata.");
        return epoch;
    }

    /// <summary>Restores what <see cref="Capture"/> saved, except the callbacks' states (see <see cref="CallbackStates"/>);
    /// returns the epochs completed.</summary>
    internal static int Restore(Model model, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string> meta, string file)
    {
        int epoch = EpochOf(meta, file);
        var weights = tensors.Where(p => !p.Key.StartsWith(ReservedPrefix, StringComparison.Ordinal)).ToDictionary(p => p.Key, p => p.Value);
        // Validate the optimizer part before touching anything.
        var opt = model.Optimizer;
        List<TorchSharp.Modules.OptimizerState>? states = null;
        if (meta.TryGetValue(OptimizerKey, out var optName))
        {
            if (opt is null || opt.Name != optName)
                throw new CheckpointException($"'{file}' was written with optimizer {optName}; the model is compiled with {opt?.Name ?? "none"}.");
            if (opt.TorchOptimizer is optim.Optimizer torchOpt)
            {
                states = States(torchOpt);
                var saved = meta.TryGetValue(StateCountKey, out var c) ? int.Parse(c, CultureInfo.InvariantCulture) : 0;
                if (saved != states.Count)
                    throw new CheckpointException($"'{file}' holds optimizer state for {saved} parameters; the model trains {states.Count}.");
            }
        }
        ModelFormat.LoadWeights(model, weights, file, LoadWeightsOptions.Default);
        if (states is not null)
        {
            for (int i = 0; i < states.Count; i++)
            {
                foreach (var f in StateFields(states[i]))
                {
                    tensors.TryGetValue($"{OptimizerPrefix}{i}/{f.Name}", out var t);
                    if (f.FieldType == typeof(Tensor))
                    {
                        var old = (Tensor?)f.GetValue(states[i]);
                        Tensor? value = t is null ? null : t.detach().clone().DetachFromDisposeScope();
                        f.SetValue(states[i], value);
                        old?.Dispose();
                    }
                    else if (t is not null)
                    {
                        if (f.FieldType == typeof(long)) f.SetValue(states[i], t.item<long>());
                        else if (f.FieldType == typeof(int)) f.SetValue(states[i], (int)t.item<long>());
                        else f.SetValue(states[i], t.item<double>());
                    }
                }
            }
        }
        if (opt is not null && meta.TryGetValue(LearningRateKey, out var lr))
            opt.LearningRate = double.Parse(lr, CultureInfo.InvariantCulture);
        if (meta.TryGetValue(StepKey, out var s)) model.StepsDone = long.Parse(s, CultureInfo.InvariantCulture);
        if (meta.TryGetValue(StopTrainingKey, out var stop) && stop == "true") model.StopTraining = true;
        if (tensors.TryGetValue(TorchRng, out var rng)) torch.random.set_rng_state(rng);
        if (tensors.TryGetValue(ShuffleRng, out var sh) && model.FitGenerator is { } g) g.set_state(sh);
        var augmentations = Augmentations(model);
        for (int i = 0; i < augmentations.Count; i++)
            if (tensors.TryGetValue(AugmentationRng + i.ToString(CultureInfo.InvariantCulture), out var a))
                augmentations[i].CheckpointedGenerator.set_state(a);
        return epoch;
    }

    static List<Layers.RandomAugmentation> Augmentations(Layers.Layer root)
    {
        var found = new List<Layers.RandomAugmentation>();
        var seen = new HashSet<Layers.Layer>(ReferenceEqualityComparer.Instance);
        void Walk(Layers.Layer layer)
        {
            if (!seen.Add(layer)) return;
            if (layer is Layers.RandomAugmentation r) found.Add(r);
            foreach (var child in layer.SubLayers) Walk(child);
        }
        Walk(root);
        return found;
    }

    static List<TorchSharp.Modules.OptimizerState> States(optim.Optimizer o) => o is TorchSharp.Modules.OptimizerHelper h
        ? h.state_dict().State
        : throw new CheckpointException($"optimizer {o.GetType().Name} does not expose its state; it cannot be checkpointed.");

    // TorchSharp's per-parameter state classes (SGD.State, Adam.State, ...) keep their buffers in public fields.
    static IEnumerable<FieldInfo> StateFields(object state) => state.GetType()
        .GetFields(BindingFlags.Public | BindingFlags.Instance)
        .Where(f => f.FieldType == typeof(Tensor) || f.FieldType == typeof(long) || f.FieldType == typeof(int) || f.FieldType == typeof(double))
        .OrderBy(f => f.Name, StringComparer.Ordinal);
}
