using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ConvKit.Callbacks;

/// <summary>
/// Writes TensorBoard event files, Keras' <c>TensorBoard</c> callback, through TorchSharp's <c>SummaryWriter</c>:
/// epoch scalars <c>epoch_loss</c>, <c>epoch_accuracy</c>... under <c>logDir/train</c> and, without the <c>val_</c>
/// prefix, under <c>logDir/validation</c>; with <see cref="UpdateFreq"/> &gt; 0, batch scalars <c>batch_loss</c>...
/// every that many batches (step = batches seen); with <see cref="HistogramFreq"/> &gt; 0, weight histograms
/// (<c>layer/weight_0</c>) every that many epochs.
/// </summary>
public sealed class TensorBoard : Callback
{
    SummaryWriter? train;
    SummaryWriter? validation;
    int step;

    /// <summary>Creates the callback.</summary>
    /// <param name="logDir">Directory of the run (created if needed).</param>
    /// <param name="histogramFreq">Epochs between weight histograms (0 = none).</param>
    /// <param name="updateFreq">0 for per-epoch scalars only (Keras' "epoch"), or N to also log batch scalars every N batches.</param>
    /// <exception cref="InvalidOptionException">A frequency is negative.</exception>
    public TensorBoard(string logDir = "logs", int histogramFreq = 0, int updateFreq = 0)
    {
        if (histogramFreq < 0) throw new InvalidOptionException(nameof(histogramFreq), $"histogram_freq must be >= 0; received {histogramFreq}.");
        if (updateFreq < 0) throw new InvalidOptionException(nameof(updateFreq), $"update_freq must be >= 0; received {updateFreq}.");
        LogDir = logDir ?? throw new ArgumentNullException(nameof(logDir));
        HistogramFreq = histogramFreq;
        UpdateFreq = updateFreq;
    }

    /// <summary>The run directory.</summary>
    public string LogDir { get; }

    /// <summary>Epochs between weight histograms.</summary>
    public int HistogramFreq { get; }

    /// <summary>Batches between batch-level scalars (0 = per epoch only).</summary>
    public int UpdateFreq { get; }

    /// <inheritdoc/>
    public override void OnTrainBegin(Logs logs)
    {
        train = utils.tensorboard.SummaryWriter(Path.Combine(LogDir, "train"));
        validation = null;
        step = 0;
    }

    /// <inheritdoc/>
    public override void OnTrainBatchEnd(int batch, Logs logs)
    {
        step++;
        if (UpdateFreq == 0 || step % UpdateFreq != 0 || train is null) return;
        foreach (var (k, v) in logs) train.add_scalar("batch_" + k, (float)v, step);
    }

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, Logs logs)
    {
        if (train is null) return;
        foreach (var (k, v) in logs)
        {
            if (k.StartsWith("val_", StringComparison.Ordinal))
            {
                validation ??= utils.tensorboard.SummaryWriter(Path.Combine(LogDir, "validation"));
                validation.add_scalar("epoch_" + k[4..], (float)v, epoch);
            }
            else
            {
                train.add_scalar("epoch_" + k, (float)v, epoch);
            }
        }
        if (HistogramFreq > 0 && epoch % HistogramFreq == 0)
        {
            using var _ = no_grad();
            foreach (var w in RequireModel().Weights)
            {
                using var values = w.Value.detach().cpu();
                train.add_histogram($"{w.Owner.Name}/{w.Name}_0", values, epoch);
            }
        }
    }

    /// <inheritdoc/>
    public override void OnTrainEnd(Logs logs)
    {
        train = null;
        validation = null;
    }
}
