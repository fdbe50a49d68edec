namespace ConvKit.Callbacks;

/// <summary>
/// Sets the optimizer's learning rate at the start of every epoch from <c>schedule(epoch, currentLr)</c>, Keras'
/// <c>LearningRateScheduler</c>, and reports it as <c>lr</c> in the epoch logs.
/// </summary>
public sealed class LearningRateScheduler : Callback
{
    readonly Func<int, double, double> schedule;

    /// <summary>Creates the scheduler from a function of the epoch (0-based) and the current rate.</summary>
    public LearningRateScheduler(Func<int, double, double> schedule, int verbose = 0)
    {
        this.schedule = schedule ?? throw new ArgumentNullException(nameof(schedule));
        Verbose = verbose;
    }

    /// <summary>Creates the scheduler from a function of the epoch only, like the seeds' <c>lr_schedule(epoch)</c>.</summary>
    public LearningRateScheduler(Func<int, double> schedule, int verbose = 0)
        : this((epoch, _) => schedule(epoch), verbose) { }

    /// <summary>1 prints each change.</summary>
    public int Verbose { get; }

    /// <inheritdoc/>
    /// <exception cref="ConvKitException">The schedule returned NaN, infinity or a negative rate.</exception>
    public override void OnEpochBegin(int epoch, Logs logs)
    {
        var opt = RequireModel().Optimizer!;
        double lr = schedule(epoch, opt.LearningRate);
        if (!double.IsFinite(lr) || lr < 0)
            throw new InvalidOptionException("schedule", $"LearningRateScheduler: the schedule returned {lr} for epoch {epoch}; a learning rate must be a finite number >= 0.");
        opt.LearningRate = lr;
        if (Verbose > 0) Out.WriteLine($"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {KerasFormat.Repr(lr)}.");
    }

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, Logs logs) => logs["lr"] = RequireModel().Optimizer!.LearningRate;
}
