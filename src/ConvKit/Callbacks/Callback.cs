using System.Collections;
using ConvKit.Models;

namespace ConvKit.Callbacks;

/// <summary>
/// Values reported to callbacks: metric name to value (<c>loss</c>, <c>accuracy</c>, <c>val_loss</c>...). Batch logs
/// are filled lazily, so that the metrics are read from the device (a synchronisation) only when a callback looks.
/// Callbacks may add entries at epoch end (schedulers add <c>lr</c>); callbacks later in the list see them.
/// </summary>
public sealed class Logs : IReadOnlyDictionary<string, double>
{
    readonly Dictionary<string, double> values = new();
    Action<Dictionary<string, double>>? pending;

    /// <summary>Empty logs.</summary>
    public Logs() { }

    /// <summary>Logs holding a copy of <paramref name="entries"/>.</summary>
    public Logs(IEnumerable<KeyValuePair<string, double>> entries)
    {
        foreach (var (k, v) in entries) values[k] = v;
    }

    /// <summary>Replaces the content with what <paramref name="fill"/> writes, run on first access.</summary>
    internal void SetLazy(Action<Dictionary<string, double>> fill)
    {
        values.Clear();
        pending = fill;
    }

    internal void Clear()
    {
        values.Clear();
        pending = null;
    }

    Dictionary<string, double> Values
    {
        get
        {
            if (pending is { } p)
            {
                pending = null;
                p(values);
            }
            return values;
        }
    }

    /// <summary>A value; setting adds or replaces it.</summary>
    /// <exception cref="UnknownNameException">No such entry (getter).</exception>
    public double this[string key]
    {
        get => Values.TryGetValue(key, out var v) ? v
            : throw new UnknownNameException("log key", key, $"logs have no '{key}'; they have: {string.Join(", ", values.Keys)}");
        set => Values[key] = value;
    }

    /// <summary>The value, or null when absent (Keras' <c>logs.get(key)</c>).</summary>
    public double? Get(string key) => Values.TryGetValue(key, out var v) ? v : null;

    /// <inheritdoc/>
    public IEnumerable<string> Keys => Values.Keys;

    IEnumerable<double> IReadOnlyDictionary<string, double>.Values => Values.Values;

    /// <inheritdoc/>
    public int Count => Values.Count;

    /// <inheritdoc/>
    public bool ContainsKey(string key) => Values.ContainsKey(key);

    /// <inheritdoc/>
    public bool TryGetValue(string key, out double value) => Values.TryGetValue(key, out value);

    /// <inheritdoc/>
    public IEnumerator<KeyValuePair<string, double>> GetEnumerator() => Values.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <inheritdoc/>
    public override string ToString() => string.Join(" - ", Values.Select(kv => $"{kv.Key}: {kv.Value:G6}"));
}

/// <summary>What a Fit, Evaluate or Predict call tells its callbacks (Keras' <c>callback.params</c>).</summary>
/// <param name="Epochs">Number of epochs of the Fit (1 for Evaluate and Predict).</param>
/// <param name="Steps">Batches per epoch.</param>
/// <param name="Verbose">The verbosity requested.</param>
/// <param name="Samples">Samples per epoch.</param>
/// <param name="BatchSize">Samples per batch.</param>
public sealed record TrainingParams(int Epochs, int Steps, int Verbose, long Samples, int BatchSize);

/// <summary>
/// Base class of callbacks: hooks called by <see cref="Model.Fit"/>, <see cref="Model.Evaluate"/> and
/// <see cref="Model.Predict"/>, each a no-op unless overridden. Epochs and batches are counted from 0, as in Keras.
/// </summary>
public abstract class Callback
{
    /// <summary>The model being trained; set by Fit/Evaluate/Predict before the first hook.</summary>
    public Model? Model { get; internal set; }

    /// <summary>The run's parameters; set with <see cref="Model"/>.</summary>
    public TrainingParams? Params { get; internal set; }

    /// <summary>
    /// Where the callback prints its messages, Keras' <c>print_fn</c>; null (the default) means the console's standard
    /// output at the time of writing.
    /// </summary>
    public TextWriter? Output { get; set; }

    /// <summary>The writer messages go to: <see cref="Output"/>, or standard output.</summary>
    protected TextWriter Out => Output ?? DefaultOutput.Out;

    /// <summary>The model, which Fit has set before any hook runs.</summary>
    /// <exception cref="ConvKitException">The callback is used outside Fit/Evaluate/Predict.</exception>
    protected Model RequireModel() => Model ?? throw new ConvKitException($"{GetType().Name} is used outside Fit/Evaluate/Predict.");

    /// <summary>Start of Fit.</summary>
    public virtual void OnTrainBegin(Logs logs) { }

    /// <summary>End of Fit (also after an early stop).</summary>
    public virtual void OnTrainEnd(Logs logs) { }

    /// <summary>Start of an epoch.</summary>
    public virtual void OnEpochBegin(int epoch, Logs logs) { }

    /// <summary>End of an epoch; logs hold the epoch's metrics and the validation metrics (<c>val_</c>).</summary>
    public virtual void OnEpochEnd(int epoch, Logs logs) { }

    /// <summary>Before a training batch.</summary>
    public virtual void OnTrainBatchBegin(int batch, Logs logs) { }

    /// <summary>After a training batch; logs hold the running averages of the epoch so far.</summary>
    public virtual void OnTrainBatchEnd(int batch, Logs logs) { }

    /// <summary>Start of an evaluation (Evaluate, or validation inside Fit).</summary>
    public virtual void OnTestBegin(Logs logs) { }

    /// <summary>End of an evaluation, with its metrics.</summary>
    public virtual void OnTestEnd(Logs logs) { }

    /// <summary>Before an evaluation batch.</summary>
    public virtual void OnTestBatchBegin(int batch, Logs logs) { }

    /// <summary>After an evaluation batch.</summary>
    public virtual void OnTestBatchEnd(int batch, Logs logs) { }

    /// <summary>Start of Predict.</summary>
    public virtual void OnPredictBegin(Logs logs) { }

    /// <summary>End of Predict.</summary>
    public virtual void OnPredictEnd(Logs logs) { }

    /// <summary>Before a prediction batch.</summary>
    public virtual void OnPredictBatchBegin(int batch, Logs logs) { }

    /// <summary>After a prediction batch.</summary>
    public virtual void OnPredictBatchEnd(int batch, Logs logs) { }

    // Run once every callback's OnTrainBegin / OnEpochEnd has run, for BackupAndRestore: callbacks reset their state
    // in OnTrainBegin and update it (and the learning rate) in OnEpochEnd, wherever they are in the list.
    internal virtual void AfterTrainBegin() { }

    internal virtual void AfterEpochEnd(int epoch) { }
}

/// <summary>
/// Records the epoch logs of a Fit, Keras' <c>History</c> (added to every Fit and returned by it):
/// <c>history["loss"]</c>, <c>history["val_accuracy"]</c>, <c>history["lr"]</c>.
/// </summary>
public sealed class History : Callback
{
    readonly Dictionary<string, List<double>> values = new();
    readonly List<int> epochs = [];

    /// <summary>Per-metric lists, one value per epoch run.</summary>
    public IReadOnlyDictionary<string, List<double>> Values => values;

    /// <summary>The epochs run (0-based, as Keras' <c>history.epoch</c>).</summary>
    public IReadOnlyList<int> Epoch => epochs;

    /// <summary>The metric names recorded.</summary>
    public IEnumerable<string> Keys => values.Keys;

    /// <summary>One metric's values per epoch.</summary>
    /// <exception cref="UnknownNameException">The metric was not recorded.</exception>
    public IReadOnlyList<double> this[string key] => values.TryGetValue(key, out var l) ? l
        : throw new UnknownNameException("history key", key, $"history has no '{key}'; it has: {string.Join(", ", values.Keys)}");

    /// <inheritdoc/>
    public override void OnTrainBegin(Logs logs) => epochs.Clear();

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, Logs logs)
    {
        epochs.Add(epoch);
        foreach (var (k, v) in logs) Add(k, v);
        if (!logs.ContainsKey("lr") && Model?.Optimizer is { } opt) Add("lr", opt.LearningRate);
    }

    void Add(string key, double value)
    {
        if (!values.TryGetValue(key, out var list)) values[key] = list = [];
        list.Add(value);
    }
}
