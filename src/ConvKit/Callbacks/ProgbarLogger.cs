using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace ConvKit.Callbacks;

/// <summary>
/// Keras' progress bar. Verbose 1: <c>Epoch 1/10</c>, then
/// <c>1875/1875 [==============================] - 5s 3ms/step - loss: 0.5123 - accuracy: 0.8123</c>, redrawn in place
/// with an ETA while the epoch runs when the output is a terminal, written once per epoch otherwise. Verbose 2: one
/// line per epoch, <c>1875/1875 - 5s - loss: ... - 5s/epoch - 3ms/step</c>. Added automatically by Fit, Evaluate and
/// Predict for verbose 1 or 2; pass one explicitly to choose the writer.
/// </summary>
public sealed class ProgbarLogger : Callback
{
    const int BarWidth = 30;
    static readonly double RedrawInterval = 0.05; // seconds, as Keras
    readonly TextWriter output;
    readonly bool interactive;
    readonly Stopwatch clock = new();
    readonly StringBuilder line = new();
    double lastRedraw;
    int lastLength;
    bool inFit;
    int target;

    /// <summary>Creates the logger.</summary>
    /// <param name="output">Where to write; standard output by default.</param>
    /// <param name="interactive">Redraw in place; by default when the writer is the console and it is not redirected.</param>
    public ProgbarLogger(TextWriter? output = null, bool? interactive = null)
    {
        this.output = output ?? DefaultOutput.Out;
        this.interactive = interactive ?? (output is null && !DefaultOutput.IsOutputRedirected);
    }

    int Verbose => Params?.Verbose ?? 1;

    /// <inheritdoc/>
    public override void OnTrainBegin(Logs logs) => inFit = true;

    /// <inheritdoc/>
    public override void OnTrainEnd(Logs logs) => inFit = false;

    /// <inheritdoc/>
    public override void OnEpochBegin(int epoch, Logs logs)
    {
        if (Verbose == 0) return;
        if (Params!.Epochs > 1) output.WriteLine($"Epoch {epoch + 1}/{Params.Epochs}");
        Start();
    }

    /// <inheritdoc/>
    public override void OnTrainBatchEnd(int batch, Logs logs) => Progress(batch + 1, logs);

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, Logs logs) => Finish(logs);

    /// <inheritdoc/>
    public override void OnTestBegin(Logs logs)
    {
        if (!inFit && Verbose > 0) Start();
    }

    /// <inheritdoc/>
    public override void OnTestBatchEnd(int batch, Logs logs)
    {
        if (!inFit) Progress(batch + 1, logs);
    }

    /// <inheritdoc/>
    public override void OnTestEnd(Logs logs)
    {
        if (!inFit) Finish(logs);
    }

    /// <inheritdoc/>
    public override void OnPredictBegin(Logs logs)
    {
        if (Verbose > 0) Start();
    }

    /// <inheritdoc/>
    public override void OnPredictBatchEnd(int batch, Logs logs) => Progress(batch + 1, logs);

    /// <inheritdoc/>
    public override void OnPredictEnd(Logs logs) => Finish(logs);

    void Start()
    {
        target = Params!.Steps;
        clock.Restart();
        lastRedraw = -1;
        lastLength = 0;
    }

    void Progress(int current, Logs logs)
    {
        if (Verbose != 1 || !interactive || current >= target) return;
        double now = clock.Elapsed.TotalSeconds;
        if (lastRedraw >= 0 && now - lastRedraw < RedrawInterval) return;
        lastRedraw = now;
        line.Clear();
        Counter(current);
        line.Append(" [").Append(Bar(current)).Append(']');
        double eta = now / current * (target - current);
        line.Append(" - ETA: ").Append(FormatEta(eta));
        Values(logs);
        Write();
    }

    void Finish(Logs logs)
    {
        if (Verbose == 0) return;
        double elapsed = clock.Elapsed.TotalSeconds;
        double perStep = target > 0 ? elapsed / target : 0;
        line.Clear();
        Counter(target);
        if (Verbose == 1)
        {
            line.Append(" [").Append(Bar(target)).Append(']');
            line.Append(" - ").Append(Seconds(elapsed)).Append(' ').Append(PerStep(perStep));
            Values(logs);
        }
        else
        {
            line.Append(" - ").Append(Seconds(elapsed));
            Values(logs);
            line.Append(" - ").Append(Seconds(elapsed)).Append("/epoch - ").Append(PerStep(perStep));
        }
        Write();
        output.WriteLine();
        output.Flush();
        lastLength = 0;
    }

    void Write()
    {
        if (interactive && Verbose == 1)
        {
            output.Write('\r');
            int pad = lastLength - line.Length;
            lastLength = line.Length;
            if (pad > 0) line.Append(' ', pad);
        }
        output.Write(line);
        if (interactive && Verbose == 1) output.Flush();
    }

    void Counter(int current)
    {
        int width = target.ToString(CultureInfo.InvariantCulture).Length;
        line.Append(current.ToString(CultureInfo.InvariantCulture).PadLeft(width)).Append('/').Append(target);
    }

    void Values(Logs logs)
    {
        foreach (var (k, v) in logs) line.Append(" - ").Append(k).Append(": ").Append(FormatValue(v));
    }

    internal static string Bar(int current, int target, int width = BarWidth)
    {
        double prog = target == 0 ? 1 : (double)current / target;
        int filled = (int)(width * prog);
        var sb = new StringBuilder(width);
        if (filled > 0)
        {
            sb.Append('=', filled - 1);
            sb.Append(current < target ? '>' : '=');
        }
        sb.Append('.', width - filled);
        return sb.ToString();
    }

    string Bar(int current) => Bar(current, target);

    /// <summary>Keras' rendering of a metric: 4 decimals, or scientific when tiny.</summary>
    internal static string FormatValue(double v) =>
        Math.Abs(v) > 1e-3 ? KerasFormat.Fixed(v, 4) : KerasFormat.Scientific(v, 4);

    static string Seconds(double s) => $"{Math.Round(s).ToString(CultureInfo.InvariantCulture)}s";

    static string PerStep(double s) => s >= 1 ? $"{Math.Round(s).ToString(CultureInfo.InvariantCulture)}s/step"
        : s >= 1e-3 ? $"{Math.Round(s * 1e3).ToString(CultureInfo.InvariantCulture)}ms/step"
        : $"{Math.Round(s * 1e6).ToString(CultureInfo.InvariantCulture)}us/step";

    static string FormatEta(double eta)
    {
        var i = (long)eta;
        return eta > 3600 ? $"{i / 3600}:{i % 3600 / 60:00}:{i % 60:00}" : eta > 60 ? $"{i / 60}:{i % 60:00}" : $"{i}s";
    }
}
