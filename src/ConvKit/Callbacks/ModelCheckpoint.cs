using System.Globalization;
using System.Text.RegularExpressions;
using ConvKit.Models;

namespace ConvKit.Callbacks;

/// <summary>
/// Saves the model at the end of every epoch, or only when the monitored metric improves (<see cref="SaveBestOnly"/>),
/// Keras' <c>ModelCheckpoint</c>. The path may hold Python-style placeholders filled from the epoch (1-based) and the
/// logs: <c>"ckpt-{epoch:02d}-{val_loss:.4f}.bin"</c>. A save goes to a temporary file renamed over the target, so a
/// failed save never destroys the last good checkpoint. Files use ConvKit's native safetensors format: weights only
/// (<see cref="Models.Model.SaveWeights"/>, reload with <see cref="Models.Model.LoadWeights(string, Saving.WeightsFormat, Saving.LoadWeightsOptions?)"/>) or the whole model
/// (<see cref="Models.Model.Save"/>, reload with <see cref="Models.Model.Load"/>). To resume training use
/// <see cref="BackupAndRestore"/>, which also saves the optimizer and RNG states, and this callback's best value.
/// </summary>
public sealed partial class ModelCheckpoint : Callback, IStatefulCallback
{
    bool maximize;
    double best;

    /// <summary>Creates the callback with Keras' arguments.</summary>
    /// <exception cref="ConvKitException"><paramref name="filepath"/> ends in .h5/.hdf5/.keras: ConvKit writes safetensors.</exception>
    public ModelCheckpoint(string filepath, string monitor = "val_loss", int verbose = 0, bool saveBestOnly = false,
        bool saveWeightsOnly = false, MonitorMode mode = MonitorMode.Auto, double? initialValueThreshold = null)
    {
        Filepath = filepath ?? throw new ArgumentNullException(nameof(filepath));
        Saving.ModelFormat.RefuseForeignExtension(filepath, "ModelCheckpoint");
        Monitor = monitor;
        Verbose = verbose;
        SaveBestOnly = saveBestOnly;
        SaveWeightsOnly = saveWeightsOnly;
        Mode = mode;
        maximize = Callbacks.Monitor.IsMax(monitor, mode);
        best = initialValueThreshold ?? (maximize ? double.NegativeInfinity : double.PositiveInfinity);
    }

    /// <summary>The path template.</summary>
    public string Filepath { get; }

    /// <summary>The metric compared when <see cref="SaveBestOnly"/>.</summary>
    public string Monitor { get; }

    /// <summary>1 prints each save.</summary>
    public int Verbose { get; }

    /// <summary>Save only when the monitored metric improves on the best so far.</summary>
    public bool SaveBestOnly { get; }

    /// <summary>Save the weights only; otherwise the architecture and weights (<see cref="Models.Model.Save"/>).</summary>
    public bool SaveWeightsOnly { get; }

    /// <summary>Direction of improvement.</summary>
    public MonitorMode Mode { get; }

    /// <summary>The best monitored value saved so far.</summary>
    public double Best => best;

    /// <summary>Paths written, in order.</summary>
    public IReadOnlyList<string> Saved => saved;

    readonly List<string> saved = [];

    /// <summary>How checkpoints are written; replaceable by the saving layer.</summary>
    internal ICheckpointWriter Writer { get; set; } = SafeTensorsCheckpointWriter.Instance;

    /// <inheritdoc/>
    public string StateKey => $"ModelCheckpoint({Monitor})";

    /// <inheritdoc/>
    public override void OnTrainBegin(Logs logs)
    {
        // Auto mode follows the monitored metric's direction (Keras 3). A best value already set (a threshold, a save,
        // a restored backup) keeps its meaning; an untouched start value flips with the direction.
        bool wasMaximize = maximize;
        maximize = Callbacks.Monitor.IsMax(Monitor, Mode, Model);
        if (maximize != wasMaximize && double.IsInfinity(best)) best = maximize ? double.NegativeInfinity : double.PositiveInfinity;
    }

    /// <inheritdoc/>
    public void SaveState(CallbackState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        state.Values["best"] = best;
    }

    /// <inheritdoc/>
    public void LoadState(CallbackState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        best = state.Get("best");
    }

    /// <inheritdoc/>
    /// <exception cref="ConvKitException">The path template names a missing log entry, or the file cannot be written.</exception>
    public override void OnEpochEnd(int epoch, Logs logs)
    {
        var model = RequireModel();
        var path = FormatPath(Filepath, epoch + 1, logs);
        if (SaveBestOnly)
        {
            if (!Callbacks.Monitor.TryGet(nameof(ModelCheckpoint), Monitor, logs, out var current, Output)) return;
            if (!(maximize ? current > best : current < best))
            {
                if (Verbose > 0) Out.WriteLine($"\nEpoch {epoch + 1}: {Monitor} did not improve from {KerasFormat.Fixed(best)}");
                return;
            }
            if (Verbose > 0) Out.WriteLine($"\nEpoch {epoch + 1}: {Monitor} improved from {KerasFormat.Fixed(best)} to {KerasFormat.Fixed(current)}, saving model to {path}");
            best = current;
        }
        else if (Verbose > 0)
        {
            Out.WriteLine($"\nEpoch {epoch + 1}: saving model to {path}");
        }
        Save(model, path);
    }

    void Save(Model model, string path)
    {
        try
        {
            if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } dir) Directory.CreateDirectory(dir);
            Writer.Write(model, path, SaveWeightsOnly);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConvKitException($"ModelCheckpoint could not save to '{path}': {e.Message}", e);
        }
        saved.Add(path);
    }

    [GeneratedRegex(@"\{(\w+)(?::([^}]*))?\}")]
    private static partial Regex Placeholder();

    /// <summary>Fills <c>{name}</c> and <c>{name:spec}</c> (specs <c>02d</c>, <c>.4f</c>, <c>.2e</c>) from the epoch and logs.</summary>
    /// <exception cref="ConvKitException">A placeholder names neither <c>epoch</c> nor a log entry, or its spec is unknown.</exception>
    internal static string FormatPath(string template, int epoch, Logs logs) => Placeholder().Replace(template, m =>
    {
        var name = m.Groups[1].Value;
        var spec = m.Groups[2].Success ? m.Groups[2].Value : "";
        double value = name == "epoch" ? epoch
            : logs.Get(name) ?? throw new InvalidOptionException("filepath", $"ModelCheckpoint: the file path '{template}' uses '{{{name}}}', which is not in the logs ({string.Join(", ", logs.Keys)}).");
        return FormatSpec(value, spec, name == "epoch", template);
    });

    static string FormatSpec(double value, string spec, bool integer, string template)
    {
        var ci = CultureInfo.InvariantCulture;
        if (spec.Length == 0) return integer ? ((long)value).ToString(ci) : value.ToString("R", ci);
        var m = Regex.Match(spec, @"^(0?)(\d*)(?:\.(\d+))?([dfeg%]?)$");
        if (!m.Success) throw new InvalidOptionException("filepath", $"ModelCheckpoint: unsupported format '{spec}' in '{template}'; use forms like 02d, .4f, .2e.");
        bool zeroPad = m.Groups[1].Value == "0";
        int width = m.Groups[2].Value.Length > 0 ? int.Parse(m.Groups[2].Value, ci) : 0;
        int? precision = m.Groups[3].Success ? int.Parse(m.Groups[3].Value, ci) : null;
        string s = m.Groups[4].Value switch
        {
            "d" => ((long)Math.Round(value)).ToString(ci),
            "f" => value.ToString("F" + (precision ?? 6), ci),
            "e" => value.ToString((precision is { } p ? "0." + new string('0', p) : "0.000000") + "e+00", ci),
            "%" => (value * 100).ToString("F" + (precision ?? 6), ci) + "%",
            _ => precision is { } g ? value.ToString("G" + g, ci) : integer ? ((long)value).ToString(ci) : value.ToString("R", ci),
        };
        return s.PadLeft(width, zeroPad ? '0' : ' ');
    }
}

/// <summary>Writes a checkpoint. The saving layer will provide a safetensors/Keras implementation; this seam keeps it one swap.</summary>
internal interface ICheckpointWriter
{
    /// <summary>Writes the model (or its weights) to <paramref name="path"/> atomically.</summary>
    void Write(Model model, string path, bool weightsOnly);
}

/// <summary>TorchSharp's own state-dict format (<c>Module.save</c>), written to a temporary file and renamed.</summary>
// The native format: one atomic safetensors file (weights only, or architecture + weights).
internal sealed class SafeTensorsCheckpointWriter : ICheckpointWriter
{
    public static SafeTensorsCheckpointWriter Instance { get; } = new();

    public void Write(Model model, string path, bool weightsOnly)
    {
        if (weightsOnly) model.SaveWeights(path);
        else model.Save(path);
    }
}
