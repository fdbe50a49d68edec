using System.Globalization;
using System.Reflection;
using ConvKit.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Saving;

/// <summary>
/// A training checkpoint: weights (keyed as <see cref="Model.SaveWeights"/>), the optimizer's state tensors, the
/// learning rate, epochs completed, optimizer steps, torch's global RNG state and the Fit shuffle generator's state,
/// in one safetensors file. Non-weight tensors live under <see cref="ReservedPrefix"/> (layer names cannot contain '.').
/// Restoring it and continuing gives the same weights, bit for bit, as a run that was never interrupted (CPU).
/// </summary>
public static class TrainingCheckpoint
{
    /// <summary>Prefix of the tensors that are not weights.</summary>
    public const string ReservedPrefix = ".convkit/";

    const string OptimizerPrefix = ReservedPrefix + "optimizer/";
    const string TorchRng = ReservedPrefix + "rng/torch";
    const string ShuffleRng = ReservedPrefix + "rng/shuffle";
    /// <summary>Metadata key of the number of epochs completed.</summary>
    public const string EpochKey = "convkit.epoch";
    const string StepKey = "convkit.step";
    const string LearningRateKey = "convkit.learning_rate";
    const string OptimizerKey = "convkit.optimizer";
    const string StateCountKey = "convkit.optimizer_states";

    /// <summary>Collects the model's training state after <paramref name="epochsDone"/> epochs (tensors are the model's own or fresh copies).</summary>
    internal static (Dictionary<string, Tensor> Tensors, Dictionary<string, string> Metadata, List<Tensor> Owned) Capture(Model model, int epochsDone)
    {
        var tensors = ModelFormat.WeightTensors(model);
        var owned = new List<Tensor>();
        var meta = ModelFormat.Metadata("checkpoint");
        meta[EpochKey] = epochsDone.ToString(CultureInfo.InvariantCulture);
        meta[StepKey] = model.StepsDone.ToString(CultureInfo.InvariantCulture);
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
        return (tensors, meta, owned);
    }

    /// <summary>Restores what <see cref="Capture"/> saved; returns the epochs completed.</summary>
    internal static int Restore(Model model, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string> meta, string file)
    {
        if (ModelFormat.Kind(meta, file) != "checkpoint") throw new CheckpointException($"'{file}' is not a training checkpoint.");
        if (!meta.TryGetValue(EpochKey, out var e) || !int.TryParse(e, CultureInfo.InvariantCulture, out int epoch) || epoch < 0)
            throw new CheckpointException($"'{file}': missing or invalid '{EpochKey}' metadata.");
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
        ModelFormat.LoadWeights(model, weights, file, skipMismatch: false, skipLayers: null, skipClassifier: false);
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
        if (tensors.TryGetValue(TorchRng, out var rng)) torch.random.set_rng_state(rng);
        if (tensors.TryGetValue(ShuffleRng, out var sh) && model.FitGenerator is { } g) g.set_state(sh);
        return epoch;
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
