using ConvKit.Models;

namespace ConvKit.Callbacks;

/// <summary>Dispatches hooks to callbacks in order, with Keras' defaults: a progress bar first, History last.</summary>
internal sealed class CallbackList
{
    readonly Callback[] callbacks;

    public CallbackList(IEnumerable<Callback>? user, Model model, TrainingParams parameters, bool addHistory, bool addProgbar)
    {
        var list = user?.ToList() ?? [];
        if (addProgbar && !list.OfType<ProgbarLogger>().Any()) list.Insert(0, new ProgbarLogger());
        if (addHistory)
        {
            History = list.OfType<History>().FirstOrDefault();
            if (History is null) list.Add(History = new History());
        }
        callbacks = list.ToArray();
        foreach (var c in callbacks)
        {
            c.Model = model;
            c.Params = parameters;
        }
    }

    public History? History { get; }

    /// <summary>The callbacks in call order, the added ones included.</summary>
    public IReadOnlyList<Callback> Callbacks => callbacks;

    public void TrainBegin(Logs logs)
    {
        foreach (var c in callbacks) c.OnTrainBegin(logs);
        foreach (var c in callbacks) c.AfterTrainBegin();
    }

    public void TrainEnd(Logs logs) { foreach (var c in callbacks) c.OnTrainEnd(logs); }

    public void EpochBegin(int epoch, Logs logs) { foreach (var c in callbacks) c.OnEpochBegin(epoch, logs); }

    public void EpochEnd(int epoch, Logs logs)
    {
        foreach (var c in callbacks) c.OnEpochEnd(epoch, logs);
        foreach (var c in callbacks) c.AfterEpochEnd(epoch);
    }

    public void TrainBatchBegin(int batch, Logs logs) { foreach (var c in callbacks) c.OnTrainBatchBegin(batch, logs); }

    public void TrainBatchEnd(int batch, Logs logs) { foreach (var c in callbacks) c.OnTrainBatchEnd(batch, logs); }

    public void TestBegin(Logs logs) { foreach (var c in callbacks) c.OnTestBegin(logs); }

    public void TestEnd(Logs logs) { foreach (var c in callbacks) c.OnTestEnd(logs); }

    public void TestBatchBegin(int batch, Logs logs) { foreach (var c in callbacks) c.OnTestBatchBegin(batch, logs); }

    public void TestBatchEnd(int batch, Logs logs) { foreach (var c in callbacks) c.OnTestBatchEnd(batch, logs); }

    public void PredictBegin(Logs logs) { foreach (var c in callbacks) c.OnPredictBegin(logs); }

    public void PredictEnd(Logs logs) { foreach (var c in callbacks) c.OnPredictEnd(logs); }

    public void PredictBatchBegin(int batch, Logs logs) { foreach (var c in callbacks) c.OnPredictBatchBegin(batch, logs); }

    public void PredictBatchEnd(int batch, Logs logs) { foreach (var c in callbacks) c.OnPredictBatchEnd(batch, logs); }
}
