namespace ConvKit.Callbacks;

/// <summary>
/// Multiplies the learning rate by <see cref="Factor"/> when a metric has not improved (by more than
/// <see cref="MinDelta"/>) for <see cref="Patience"/> epochs, then waits <see cref="Cooldown"/> epochs; never below
/// <see cref="MinLr"/>. Keras' <c>ReduceLROnPlateau</c>; reports <c>lr</c> in the epoch logs. Its counters are saved
/// in <see cref="BackupAndRestore"/>'s backups, so a resumed run reduces the rate at the same epochs.
/// </summary>
public sealed class ReduceLROnPlateau : Callback, IStatefulCallback
{
    bool maximize;
    readonly MonitorMode mode;
    double best;
    int wait;
    int cooldownCounter;

    /// <summary>Creates the callback with Keras' arguments and defaults.</summary>
    /// <exception cref="InvalidOptionException">factor not in (0, 1), or a count is negative.</exception>
    public ReduceLROnPlateau(string monitor = "val_loss", double factor = 0.1, int patience = 10, int verbose = 0,
        MonitorMode mode = MonitorMode.Auto, double minDelta = 1e-4, int cooldown = 0, double minLr = 0)
    {
        if (!(factor < 1.0) || !(factor > 0))
            throw new InvalidOptionException(nameof(factor), $"ReduceLROnPlateau does not support a factor >= 1.0 or <= 0; received factor={factor}.");
        if (patience < 0) throw new InvalidOptionException(nameof(patience), $"patience must be >= 0; received {patience}.");
        if (cooldown < 0) throw new InvalidOptionException(nameof(cooldown), $"cooldown must be >= 0; received {cooldown}.");
        Monitor = monitor;
        Factor = factor;
        Patience = patience;
        Verbose = verbose;
        MinDelta = minDelta;
        Cooldown = cooldown;
        MinLr = minLr;
        // Keras' auto mode here looks only for "acc".
        this.mode = mode;
        maximize = mode == MonitorMode.Max || mode == MonitorMode.Auto && monitor.Contains("acc", StringComparison.Ordinal);
        Reset();
    }

    /// <summary>The metric watched.</summary>
    public string Monitor { get; }

    /// <summary>New rate = rate × factor.</summary>
    public double Factor { get; }

    /// <summary>Epochs without improvement before reducing.</summary>
    public int Patience { get; }

    /// <summary>1 prints each reduction.</summary>
    public int Verbose { get; }

    /// <summary>Threshold for a new optimum.</summary>
    public double MinDelta { get; }

    /// <summary>Epochs to wait after a reduction before counting again.</summary>
    public int Cooldown { get; }

    /// <summary>Lower bound of the rate.</summary>
    public double MinLr { get; }

    void Reset()
    {
        best = maximize ? double.NegativeInfinity : double.PositiveInfinity;
        wait = 0;
        cooldownCounter = 0;
    }

    /// <inheritdoc/>
    public string StateKey => $"ReduceLROnPlateau({Monitor})";

    /// <inheritdoc/>
    public override void OnTrainBegin(Logs logs)
    {
        // Auto mode follows the monitored metric's direction (Keras 3); names of no known metric keep Keras' rule.
        if (mode == MonitorMode.Auto) maximize = Callbacks.Monitor.FromMetric(Monitor, Model) ?? Monitor.Contains("acc", StringComparison.Ordinal);
        Reset();
    }

    /// <inheritdoc/>
    public void SaveState(CallbackState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        state.Values["best"] = best;
        state.Values["wait"] = wait;
        state.Values["cooldown_counter"] = cooldownCounter;
    }

    /// <inheritdoc/>
    public void LoadState(CallbackState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        best = state.Get("best");
        wait = state.GetCount("wait");
        cooldownCounter = state.GetCount("cooldown_counter");
    }

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, Logs logs)
    {
        var opt = RequireModel().Optimizer!;
        logs["lr"] = opt.LearningRate;
        if (!Callbacks.Monitor.TryGet(nameof(ReduceLROnPlateau), Monitor, logs, out var current, Output)) return;
        if (cooldownCounter > 0)
        {
            cooldownCounter--;
            wait = 0;
        }
        if (maximize ? current > best + MinDelta : current < best - MinDelta)
        {
            best = current;
            wait = 0;
        }
        else if (cooldownCounter <= 0)
        {
            wait++;
            if (wait >= Patience)
            {
                double old = opt.LearningRate;
                // Keras compares in float32, so a rate already at min_lr up to rounding is not reduced again.
                if ((float)old > (float)MinLr)
                {
                    double lr = Math.Max(old * Factor, MinLr);
                    opt.LearningRate = lr;
                    if (Verbose > 0) Out.WriteLine($"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {KerasFormat.Repr(lr)}.");
                    cooldownCounter = Cooldown;
                    wait = 0;
                }
            }
        }
    }
}
