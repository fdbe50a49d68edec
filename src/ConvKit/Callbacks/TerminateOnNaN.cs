namespace ConvKit.Callbacks;

/// <summary>Stops training as soon as the loss becomes NaN or infinite, Keras' <c>TerminateOnNaN</c>.</summary>
/// <remarks>It reads the loss after every batch, which costs a device synchronisation per batch.</remarks>
public sealed class TerminateOnNaN : Callback
{
    /// <summary>The batch (0-based) at which training was terminated, or null.</summary>
    public int? TerminatedAtBatch { get; private set; }

    /// <inheritdoc/>
    public override void OnTrainBegin(Logs logs) => TerminatedAtBatch = null;

    /// <inheritdoc/>
    public override void OnTrainBatchEnd(int batch, Logs logs)
    {
        if (logs.Get("loss") is { } loss && !double.IsFinite(loss))
        {
            Out.WriteLine($"Batch {batch}: Invalid loss, terminating training");
            TerminatedAtBatch = batch;
            RequireModel().StopTraining = true;
        }
    }
}
