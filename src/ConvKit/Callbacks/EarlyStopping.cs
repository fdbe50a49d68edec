using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Callbacks;

/// <summary>
/// Stops training when a monitored metric has stopped improving, with Keras 3's semantics: an epoch improves when
/// it beats the best so far by more than <see cref="MinDelta"/>; after <see cref="Patience"/> epochs without
/// improvement (and not in the first epoch) training stops. With <see cref="RestoreBestWeights"/> the weights of the
/// best epoch are restored when training ends. Its counters (and the best weights) are saved in
/// <see cref="BackupAndRestore"/>'s backups, so a resumed run stops at the same epoch as an uninterrupted one.
/// </summary>
public sealed class EarlyStopping : Callback, IStatefulCallback
{
    bool maximize;
    double? best;
    int wait;
    Tensor[]? bestWeights;

    /// <summary>Creates the callback with Keras' arguments.</summary>
    /// <exception cref="InvalidOptionException">patience negative.</exception>
    public EarlyStopping(string monitor = "val_loss", double minDelta = 0, int patience = 0, int verbose = 0,
        MonitorMode mode = MonitorMode.Auto, double? baseline = null, bool restoreBestWeights = false, int startFromEpoch = 0)
    {
        if (patience < 0) throw new InvalidOptionException(nameof(patience), $"patience must be >= 0; received {patience}.");
        Monitor = monitor;
        MinDelta = Math.Abs(minDelta);
        Patience = patience;
        Verbose = verbose;
        Mode = mode;
        Baseline = baseline;
        RestoreBestWeights = restoreBestWeights;
        StartFromEpoch = startFromEpoch;
        maximize = Callbacks.Monitor.IsMax(monitor, mode);
    }

    /// <summary>The metric watched.</summary>
    public string Monitor { get; }

    /// <summary>Minimum change that counts as an improvement.</summary>
    public double MinDelta { get; }

    /// <summary>Epochs without improvement before stopping.</summary>
    public int Patience { get; }

    /// <summary>1 prints when it stops and restores.</summary>
    public int Verbose { get; }

    /// <summary>Direction of improvement.</summary>
    public MonitorMode Mode { get; }

    /// <summary>Training stops if the metric does not beat this (when set) within the patience.</summary>
    public double? Baseline { get; }

    /// <summary>Restore the weights of the best epoch at the end of training.</summary>
    public bool RestoreBestWeights { get; }

    /// <summary>Epochs to wait before starting to monitor (warm-up).</summary>
    public int StartFromEpoch { get; }

    /// <summary>The epoch (0-based) at which training was stopped; 0 when it was not.</summary>
    public int StoppedEpoch { get; private set; }

    /// <summary>The epoch (0-based) of the best value.</summary>
    public int BestEpoch { get; private set; }

    /// <summary>The best value seen.</summary>
    public double? Best => best;

    /// <inheritdoc/>
    public string StateKey => $"EarlyStopping({Monitor})";

    /// <inheritdoc/>
    public override void OnTrainBegin(Logs logs)
    {
        // Auto mode follows the monitored metric's direction, known once the callback has its model (Keras 3).
        maximize = Callbacks.Monitor.IsMax(Monitor, Mode, Model);
        wait = 0;
        StoppedEpoch = 0;
        best = null;
        BestEpoch = 0;
        ReplaceBestWeights(null);
    }

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, Logs logs)
    {
        if (!Callbacks.Monitor.TryGet(nameof(EarlyStopping), Monitor, logs, out var current, Output)) return;
        if (epoch < StartFromEpoch) return;
        var model = RequireModel();
        if (RestoreBestWeights && bestWeights is null) ReplaceBestWeights(model.GetWeights());
        wait++;
        if (IsImprovement(current, best))
        {
            best = current;
            BestEpoch = epoch;
            if (RestoreBestWeights) ReplaceBestWeights(model.GetWeights());
            // Only restart the wait if we beat both the baseline and our previous best.
            if (Baseline is null || IsImprovement(current, Baseline)) wait = 0;
            return;
        }
        if (wait >= Patience && epoch > 0)
        {
            StoppedEpoch = epoch;
            model.StopTraining = true;
        }
    }

    /// <inheritdoc/>
    public override void OnTrainEnd(Logs logs)
    {
        if (StoppedEpoch > 0 && Verbose > 0) Out.WriteLine($"Epoch {StoppedEpoch + 1}: early stopping");
        if (RestoreBestWeights && bestWeights is not null)
        {
            if (Verbose > 0) Out.WriteLine($"Restoring model weights from the end of the best epoch: {BestEpoch + 1}.");
            RequireModel().SetWeights(bestWeights);
        }
    }

    /// <inheritdoc/>
    public void SaveState(CallbackState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        state.Values["wait"] = wait;
        state.Values["stopped_epoch"] = StoppedEpoch;
        state.Values["best_epoch"] = BestEpoch;
        if (best is { } b) state.Values["best"] = b;
        if (bestWeights is not null) state.Tensors["best_weights"] = bestWeights;
    }

    /// <inheritdoc/>
    public void LoadState(CallbackState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        wait = state.GetCount("wait");
        StoppedEpoch = state.GetCount("stopped_epoch");
        BestEpoch = state.GetCount("best_epoch");
        best = state.Values.TryGetValue("best", out var b) ? b : null;
        using var _ = no_grad();
        ReplaceBestWeights(state.Tensors.TryGetValue("best_weights", out var w)
            ? w.Select(t => t.detach().clone().DetachFromDisposeScope()).ToArray()
            : null);
    }

    // Best weights are copies held across epochs, outside any dispose scope: release the old ones when replaced.
    void ReplaceBestWeights(Tensor[]? weights)
    {
        if (bestWeights is not null)
            foreach (var t in bestWeights) t.Dispose();
        bestWeights = weights;
    }

    bool IsImprovement(double value, double? reference) =>
        reference is not { } r || (maximize ? value - MinDelta > r : value + MinDelta < r);
}
