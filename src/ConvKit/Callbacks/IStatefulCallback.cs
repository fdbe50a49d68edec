using ConvKit.Saving;
using static TorchSharp.torch;

namespace ConvKit.Callbacks;

/// <summary>
/// A callback whose counters decide what later epochs do (EarlyStopping's wait and best value, ReduceLROnPlateau's
/// cooldown), so a run resumed from a backup must continue from them. <see cref="BackupAndRestore"/> saves the state
/// of every such callback of the Fit with each backup, after all callbacks' <see cref="Callback.OnEpochEnd"/>, and
/// restores it on resume after all callbacks' <see cref="Callback.OnTrainBegin"/> (where they reset it), whatever the
/// callbacks' order.
/// </summary>
public interface IStatefulCallback
{
    /// <summary>Identifies the state in a checkpoint, e.g. <c>EarlyStopping(val_loss)</c>; when two callbacks of a
    /// Fit share a key, the later ones are told apart by their order (<c>#2</c>, <c>#3</c>).</summary>
    string StateKey { get; }

    /// <summary>Writes the current state into <paramref name="state"/>.</summary>
    /// <param name="state">An empty state; tensors put in it stay the callback's (they are written, not kept).</param>
    void SaveState(CallbackState state);

    /// <summary>Replaces the current state with what <see cref="SaveState"/> wrote.</summary>
    /// <param name="state">The saved state; its tensors are disposed after the call, so copy those to keep.</param>
    /// <exception cref="CheckpointException">A value is missing or invalid.</exception>
    void LoadState(CallbackState state);
}

/// <summary>The saved state of one <see cref="IStatefulCallback"/>: named numbers and named tensor lists.</summary>
public sealed class CallbackState
{
    /// <summary>Creates an empty state.</summary>
    /// <param name="key">The callback's <see cref="IStatefulCallback.StateKey"/>, used in error messages.</param>
    public CallbackState(string key) => Key = key;

    /// <summary>The callback's key.</summary>
    public string Key { get; }

    /// <summary>Named numbers (counters, best values). Saved exactly, infinities and NaN included; counters up to
    /// 2^53 are exact.</summary>
    public IDictionary<string, double> Values { get; } = new Dictionary<string, double>(StringComparer.Ordinal);

    /// <summary>Named lists of tensors (EarlyStopping's best weights).</summary>
    public IDictionary<string, IReadOnlyList<Tensor>> Tensors { get; } = new Dictionary<string, IReadOnlyList<Tensor>>(StringComparer.Ordinal);

    /// <summary>A saved number.</summary>
    /// <exception cref="CheckpointException">The state has no such number.</exception>
    public double Get(string name) => Values.TryGetValue(name, out var v) ? v
        : throw new CheckpointException($"the checkpointed state of callback {Key} has no '{name}'.");

    /// <summary>A saved counter.</summary>
    /// <exception cref="CheckpointException">The state has no such number, or it is not an integer in [0, int.MaxValue].</exception>
    public int GetCount(string name)
    {
        double v = Get(name);
        return v >= 0 && v <= int.MaxValue && Math.Floor(v) == v ? (int)v
            : throw new CheckpointException($"the checkpointed state of callback {Key} has {name} = {v}; expected a count.");
    }
}
