namespace ConvKit.Callbacks;

/// <summary>
/// A per-step learning-rate schedule, Keras 3's <c>optimizers.schedules.CosineDecay</c> with warm-up as a callback: for
/// the first <see cref="WarmupSteps"/> steps the rate rises linearly from <see cref="InitialLearningRate"/> to
/// <see cref="PeakLearningRate"/>, then follows a cosine from the peak down to <c>alpha · peak</c> over
/// <see cref="DecaySteps"/> steps (and stays there). The step is counted from the start of training as
/// <c>epoch · steps per epoch + batch</c>, so a resumed run continues the schedule where it stopped. Every parameter
/// group moves together (each at its multiplier, see <see cref="Training.Optimizer.SetLearningRateMultiplier"/>); the
/// rate at the end of each epoch is logged as <c>lr</c>.
/// </summary>
public sealed class CosineDecay : Callback
{
    /// <summary>Creates the schedule.</summary>
    /// <exception cref="InvalidOptionException">A rate is negative or not finite, a step count negative, decaySteps zero, or alpha outside [0, 1].</exception>
    public CosineDecay(double peakLearningRate, int decaySteps, int warmupSteps = 0, double alpha = 0, double initialLearningRate = 0)
    {
        if (!double.IsFinite(peakLearningRate) || peakLearningRate < 0)
            throw new InvalidOptionException(nameof(peakLearningRate), $"CosineDecay: the peak learning rate must be a finite number >= 0; received {peakLearningRate}.");
        if (!double.IsFinite(initialLearningRate) || initialLearningRate < 0)
            throw new InvalidOptionException(nameof(initialLearningRate), $"CosineDecay: the initial learning rate must be a finite number >= 0; received {initialLearningRate}.");
        if (decaySteps < 1) throw new InvalidOptionException(nameof(decaySteps), $"CosineDecay: decay_steps must be positive; received {decaySteps}.");
        if (warmupSteps < 0) throw new InvalidOptionException(nameof(warmupSteps), $"CosineDecay: warmup_steps must be >= 0; received {warmupSteps}.");
        if (!(alpha is >= 0 and <= 1)) throw new InvalidOptionException(nameof(alpha), $"CosineDecay: alpha must be in [0, 1]; received {alpha}.");
        PeakLearningRate = peakLearningRate;
        DecaySteps = decaySteps;
        WarmupSteps = warmupSteps;
        Alpha = alpha;
        InitialLearningRate = initialLearningRate;
    }

    /// <summary>The rate reached at the end of the warm-up.</summary>
    public double PeakLearningRate { get; }

    /// <summary>Steps of the cosine after the warm-up (for <see cref="OverEpochs"/>, known once training begins).</summary>
    public int DecaySteps { get; private set; }

    /// <summary>Steps of the linear warm-up (for <see cref="OverEpochs"/>, known once training begins).</summary>
    public int WarmupSteps { get; private set; }

    (int Decay, int Warmup)? epochs; // OverEpochs: the counts in epochs, turned into steps by OnTrainBegin

    /// <summary>
    /// The schedule counted in epochs: <paramref name="warmupEpochs"/> of warm-up from 0, then the cosine over
    /// <paramref name="decayEpochs"/>, in steps of the Fit it is given to (its steps per epoch, which a distributed rank
    /// or a validation split changes, are known when training begins).
    /// </summary>
    /// <exception cref="InvalidOptionException">A rate is negative or not finite, decayEpochs is not positive, warmupEpochs negative, or alpha outside [0, 1].</exception>
    public static CosineDecay OverEpochs(double peakLearningRate, int decayEpochs, int warmupEpochs = 0, double alpha = 0)
    {
        if (decayEpochs < 1) throw new InvalidOptionException(nameof(decayEpochs), $"CosineDecay: decay epochs must be positive; received {decayEpochs}.");
        if (warmupEpochs < 0) throw new InvalidOptionException(nameof(warmupEpochs), $"CosineDecay: warm-up epochs must be >= 0; received {warmupEpochs}.");
        return new CosineDecay(peakLearningRate, decayEpochs, warmupEpochs, alpha) { epochs = (decayEpochs, warmupEpochs) };
    }

    /// <inheritdoc/>
    public override void OnTrainBegin(Logs logs)
    {
        if (epochs is { } e && Params is { } p)
        {
            DecaySteps = Math.Max(1, e.Decay * p.Steps);
            WarmupSteps = e.Warmup * p.Steps;
        }
    }

    /// <summary>The final rate as a fraction of the peak.</summary>
    public double Alpha { get; }

    /// <summary>The rate at step 0 of the warm-up.</summary>
    public double InitialLearningRate { get; }

    /// <summary>The rate at <paramref name="step"/> (0-based).</summary>
    public double RateAt(long step)
    {
        if (step < WarmupSteps) return InitialLearningRate + (PeakLearningRate - InitialLearningRate) * step / WarmupSteps;
        double t = Math.Min(step - WarmupSteps, DecaySteps) / (double)DecaySteps;
        double cosine = 0.5 * (1 + Math.Cos(Math.PI * t));
        return PeakLearningRate * ((1 - Alpha) * cosine + Alpha);
    }

    int epoch;

    /// <inheritdoc/>
    public override void OnEpochBegin(int epoch, Logs logs) => this.epoch = epoch;

    /// <inheritdoc/>
    public override void OnTrainBatchBegin(int batch, Logs logs)
    {
        int steps = Params?.Steps ?? throw new ConvKitException("CosineDecay is used outside Fit.");
        RequireModel().Optimizer!.LearningRate = RateAt((long)epoch * steps + batch);
    }

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, Logs logs) => logs["lr"] = RequireModel().Optimizer!.LearningRate;
}
