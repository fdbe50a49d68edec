namespace ConvKit.Callbacks;

/// <summary>
/// A callback from delegates, Keras' <c>LambdaCallback</c>:
/// <c>new LambdaCallback { OnEpochEndAction = (epoch, logs) => ... }</c>.
/// </summary>
public sealed class LambdaCallback : Callback
{
    /// <summary>Called at the start of Fit.</summary>
    public Action<Logs>? OnTrainBeginAction { get; init; }

    /// <summary>Called at the end of Fit.</summary>
    public Action<Logs>? OnTrainEndAction { get; init; }

    /// <summary>Called at the start of each epoch.</summary>
    public Action<int, Logs>? OnEpochBeginAction { get; init; }

    /// <summary>Called at the end of each epoch.</summary>
    public Action<int, Logs>? OnEpochEndAction { get; init; }

    /// <summary>Called before each training batch.</summary>
    public Action<int, Logs>? OnTrainBatchBeginAction { get; init; }

    /// <summary>Called after each training batch.</summary>
    public Action<int, Logs>? OnTrainBatchEndAction { get; init; }

    /// <inheritdoc/>
    public override void OnTrainBegin(Logs logs) => OnTrainBeginAction?.Invoke(logs);

    /// <inheritdoc/>
    public override void OnTrainEnd(Logs logs) => OnTrainEndAction?.Invoke(logs);

    /// <inheritdoc/>
    public override void OnEpochBegin(int epoch, Logs logs) => OnEpochBeginAction?.Invoke(epoch, logs);

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, Logs logs) => OnEpochEndAction?.Invoke(epoch, logs);

    /// <inheritdoc/>
    public override void OnTrainBatchBegin(int batch, Logs logs) => OnTrainBatchBeginAction?.Invoke(batch, logs);

    /// <inheritdoc/>
    public override void OnTrainBatchEnd(int batch, Logs logs) => OnTrainBatchEndAction?.Invoke(batch, logs);
}
