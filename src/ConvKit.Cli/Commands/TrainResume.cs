using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using ConvKit.Callbacks;
using ConvKit.Saving;

namespace ConvKit.Cli.Commands;

/// <summary>
/// Resumable <c>convkit train</c> runs: every epoch is checkpointed into the run folder (<c>checkpoint/</c>, through
/// <see cref="BackupAndRestore"/>: weights, optimizer state, epoch, RNG and shuffle state, stateful callbacks),
/// <c>history.csv</c> is rewritten atomically after every epoch, and the settings of the run are kept in
/// <c>train-settings.json</c>. <c>convkit train --resume RUN</c> reads them back and continues from the last
/// completed epoch, ending with the same weights, bit for bit, as a run that was never interrupted (CPU, same seed and
/// thread count, which the settings file fixes). SIGINT (Ctrl-C) and SIGTERM finish the current batch and stop; a
/// second signal ends the process at once.
/// </summary>
public static class TrainResume
{
    /// <summary>The checkpoint folder inside a run folder.</summary>
    public const string CheckpointFolder = "checkpoint";

    /// <summary>The settings of the run, inside the run folder.</summary>
    public const string SettingsFile = "train-settings.json";

    /// <summary>Exit code of a run stopped by SIGINT (128 + 2, as shells report it).</summary>
    public const int InterruptedExitCode = 130;

    /// <summary>Exit code of a run stopped by SIGTERM (128 + 15).</summary>
    public const int TerminatedExitCode = 143;

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    /// <summary>The <c>--resume</c> option.</summary>
    public static Option<string?> CreateOption() => new("--resume")
    {
        Description = "Continue the interrupted run in this folder from its last completed epoch, with the settings it was started with " +
            "(only --verbose may be given with it); the result is bit-identical to an uninterrupted run on CPU.",
    };

    /// <summary>Path of the newest checkpoint of a run.</summary>
    public static string CheckpointPath(string runFolder) => Path.Combine(runFolder, CheckpointFolder, "checkpoint.safetensors");

    /// <summary>
    /// The settings to resume <paramref name="runFolder"/> with: those it was started with, <c>--verbose</c> excepted.
    /// </summary>
    /// <param name="parse">The parsed command line; any option given besides --resume and --verbose is refused.</param>
    /// <param name="runFolder">The value of --resume.</param>
    /// <param name="verbose">The --verbose option.</param>
    /// <exception cref="ConvKitException">The folder is not a resumable run, or other options were given.</exception>
    public static TrainCommand.TrainSettings Load(ParseResult parse, string runFolder, Option<int> verbose)
    {
        var extra = parse.CommandResult.Children.OfType<OptionResult>()
            .Where(o => !o.Implicit && o.Option.Name is not ("--resume" or "--verbose"))
            .Select(o => o.Option.Name).ToList();
        if (parse.CommandResult.Children.OfType<ArgumentResult>().Any(a => a.Tokens.Count > 0)) extra.Insert(0, "the model argument");
        if (extra.Count > 0)
            throw new ConvKitException($"--resume continues a run with the settings it was started with; remove {string.Join(", ", extra)} " +
                "(only --verbose may be given with --resume).");
        var settings = Read(runFolder);
        return settings with { Verbose = parse.GetResult(verbose) is { Implicit: false } ? parse.GetValue(verbose) : settings.Verbose };
    }

    /// <summary>Reads the settings a run was started with, checking the folder can be resumed.</summary>
    /// <exception cref="ConvKitException">The folder does not exist, has no settings file, or it is invalid.</exception>
    public static TrainCommand.TrainSettings Read(string runFolder)
    {
        if (string.IsNullOrWhiteSpace(runFolder)) throw new ConvKitException("--resume must name a run folder; received an empty value.");
        if (!Directory.Exists(runFolder))
            throw new ConvKitException($"--resume '{runFolder}' does not exist or is not a folder; name the --out folder of a 'convkit train' run.");
        var path = Path.Combine(runFolder, SettingsFile);
        if (!File.Exists(path))
            throw new ConvKitException($"--resume '{runFolder}' has no {SettingsFile}: it was not written by a 'convkit train' that checkpoints its epochs.");
        TrainCommand.TrainSettings? s;
        try
        {
            s = JsonSerializer.Deserialize<TrainCommand.TrainSettings>(File.ReadAllText(path), Json);
        }
        catch (JsonException e)
        {
            throw new ConvKitException($"--resume: '{path}' is not valid: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConvKitException($"--resume: cannot read '{path}': {e.Message}", e);
        }
        if (s is null || s.Model is null || s.Optimizer is null)
            throw new ConvKitException($"--resume: '{path}' is not valid: it needs \"Model\" and \"Optimizer\".");
        if (s.Transfer is { FineTuneEpochs: > 0 } && File.Exists(CheckpointPath(runFolder)))
        {
            // A two-phase run resumes inside its first phase (the frozen backbone); a checkpoint from the fine-tuning
            // phase holds the optimizer state of the unfrozen weights, which the first phase cannot take.
            var loaded = new CheckpointStore(CheckpointPath(runFolder)).LoadLatestValid();
            foreach (var t in loaded.Tensors.Values) t.Dispose();
            if (loaded.Metadata.TryGetValue(TrainingCheckpoint.EpochKey, out var e) && int.TryParse(e, System.Globalization.CultureInfo.InvariantCulture, out int done) && done > s.Epochs)
                throw new InvalidOptionException("--resume", $"--resume '{runFolder}' stopped in its fine-tuning phase (epoch {done} of {s.Epochs + s.Transfer.FineTuneEpochs}); " +
                    $"resuming inside the fine-tuning phase is not supported yet. Its last checkpoint loads with --weights '{CheckpointPath(runFolder)}'.");
        }
        return s with { OutputFolder = runFolder, Resume = runFolder, Overwrite = false };
    }

    /// <summary>Writes the settings of a run (with the thread count it runs with) into its folder, atomically.</summary>
    public static void Save(string runFolder, TrainCommand.TrainSettings s, int threads)
    {
        var json = JsonSerializer.Serialize(s with { DataPath = s.DataPath is { } d ? Path.GetFullPath(d) : null, Threads = threads, Resume = null, OutputFolder = null, Overwrite = false }, Json);
        AtomicFile.WriteOrExplain(Path.Combine(runFolder, SettingsFile), st => st.Write(System.Text.Encoding.UTF8.GetBytes(json)));
    }

    /// <summary>
    /// The callbacks that make a run resumable, in order: the checkpointer, then the per-epoch history writer, then the
    /// signal handler (dispose it after Fit).
    /// </summary>
    /// <param name="runFolder">The folder this process writes to.</param>
    /// <param name="reportedRunFolder">The run folder a stop message names, when it differs from
    /// <paramref name="runFolder"/> (a distributed rank other than 0 writes to a scratch folder; the run is rank 0's).</param>
    public static (BackupAndRestore Backup, EpochHistoryFile History, StopOnSignal Stop) Callbacks(string runFolder, string? reportedRunFolder = null)
    {
        var backup = new BackupAndRestore(Path.Combine(runFolder, CheckpointFolder), deleteCheckpoint: false);
        return (backup, new EpochHistoryFile(Path.Combine(runFolder, "history.csv"), backup), new StopOnSignal(reportedRunFolder ?? runFolder));
    }

    /// <summary>Prints what a stop did and what a resume will redo; returns the exit code.</summary>
    public static int ReportStopped(CliConsole console, TrainingStoppedException e)
    {
        console.Error.WriteLine("stopped: " + e.Message);
        return e.Signal == "SIGTERM" ? TerminatedExitCode : InterruptedExitCode;
    }
}

/// <summary>
/// Rewrites <c>history.csv</c> (Keras' CSVLogger layout, <see cref="TrainCommand.HistoryCsv"/>) atomically at the end of
/// every epoch. On a resumed run it keeps the rows of the epochs the checkpoint holds and drops those of an epoch that
/// ran after it (its row was written, its checkpoint was not), so the file always matches the weights.
/// Place it after the <see cref="BackupAndRestore"/> it follows.
/// </summary>
public sealed class EpochHistoryFile : Callback
{
    readonly BackupAndRestore? backup;
    History full = new();

    /// <summary>Creates the writer.</summary>
    /// <param name="path">The CSV file.</param>
    /// <param name="backup">The run's checkpointer, placed before this callback: its resumed epoch says which rows to keep.</param>
    public EpochHistoryFile(string path, BackupAndRestore? backup)
    {
        Path_ = path;
        this.backup = backup;
    }

    /// <summary>The CSV file.</summary>
    public string Path_ { get; }

    /// <summary>Every epoch of the run so far, those before a resume included.</summary>
    public History Full => full;

    /// <inheritdoc/>
    public override void OnTrainBegin(Logs logs)
    {
        var earlier = full;
        full = new History();
        full.OnTrainBegin(new Logs());
        int done = backup?.ResumedFromEpoch ?? 0;
        if (done > 0 && File.Exists(Path_))
        {
            foreach (var (epoch, row) in ReadCsv(Path_))
                if (epoch < done) full.OnEpochEnd(epoch, row);
        }
        else
        {
            // A second Fit of the same run in this process (the fine-tuning phase) continues the first one's history.
            for (int i = 0; i < earlier.Epoch.Count; i++)
            {
                var row = new Logs();
                foreach (var (key, values) in earlier.Values)
                    if (i < values.Count) row[key] = values[i];
                full.OnEpochEnd(earlier.Epoch[i], row);
            }
        }
    }

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, Logs logs)
    {
        var row = new Logs(logs);
        if (!row.ContainsKey("lr") && Model?.Optimizer is { } opt) row["lr"] = opt.LearningRate;
        full.OnEpochEnd(epoch, row);
        AtomicFile.WriteOrExplain(Path_, s => s.Write(System.Text.Encoding.UTF8.GetBytes(TrainCommand.HistoryCsv(full))));
    }

    /// <summary>Reads a CSV written by <see cref="TrainCommand.HistoryCsv"/>: per row the epoch and its values
    /// (<c>NA</c> cells left out).</summary>
    /// <exception cref="ConvKitException">The file cannot be read or is malformed (the message names it and the line).</exception>
    public static List<(int Epoch, Logs Values)> ReadCsv(string path)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConvKitException($"cannot read '{path}': {e.Message}", e);
        }
        var rows = new List<(int, Logs)>();
        if (lines.Length == 0) return rows;
        var header = lines[0].Split(',');
        if (header[0] != "epoch") throw new ConvKitException($"'{path}' line 1: expected a header starting with 'epoch'.");
        for (int i = 1; i < lines.Length; i++)
        {
            if (lines[i].Length == 0) continue;
            var cells = lines[i].Split(',');
            if (cells.Length != header.Length || !int.TryParse(cells[0], NumberStyles.None, CultureInfo.InvariantCulture, out int epoch))
                throw new ConvKitException($"'{path}' line {i + 1}: expected {header.Length} comma-separated cells starting with the epoch.");
            var values = new Logs();
            for (int c = 1; c < cells.Length; c++)
            {
                if (cells[c] == "NA") continue;
                values[header[c]] = cells[c] switch
                {
                    "nan" => double.NaN,
                    "inf" => double.PositiveInfinity,
                    "-inf" => double.NegativeInfinity,
                    var v when double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
                    var v => throw new ConvKitException($"'{path}' line {i + 1}: '{v}' in column {header[c]} is not a number."),
                };
            }
            rows.Add((epoch, values));
        }
        return rows;
    }
}

/// <summary>
/// Turns SIGINT (Ctrl-C) and SIGTERM into a clean stop: the batch in progress finishes, then Fit ends with a
/// <see cref="TrainingStoppedException"/> before the epoch's end, so the checkpoint keeps the last completed epoch and a
/// resume redoes the interrupted one from its first batch (which keeps it bit-identical). A second signal is not
/// intercepted: it ends the process as usual. Dispose it to restore the default handling.
/// </summary>
public sealed class StopOnSignal : Callback, IDisposable
{
    readonly string runFolder;
    readonly List<PosixSignalRegistration> registrations = [];
    volatile string? signal;
    int epoch, steps;

    /// <summary>Registers the handlers.</summary>
    /// <param name="runFolder">The run folder, named in the message.</param>
    public StopOnSignal(string runFolder)
    {
        this.runFolder = runFolder;
        foreach (var (s, name) in new[] { (PosixSignal.SIGINT, "SIGINT"), (PosixSignal.SIGTERM, "SIGTERM") })
        {
            registrations.Add(PosixSignalRegistration.Create(s, ctx =>
            {
                if (signal is not null) return; // the second one terminates
                signal = name;
                ctx.Cancel = true;
            }));
        }
    }

    /// <summary>The signal received, if any (<c>SIGINT</c> or <c>SIGTERM</c>).</summary>
    public string? Signal => signal;

    /// <summary>Asks for a stop as the given signal would (for tests and hosts that stop a run themselves).</summary>
    public void Request(string name) => signal ??= name;

    /// <inheritdoc/>
    public override void OnTrainBegin(Logs logs) => steps = Params?.Steps ?? 0;

    /// <inheritdoc/>
    public override void OnEpochBegin(int epoch, Logs logs) => this.epoch = epoch;

    /// <inheritdoc/>
    /// <exception cref="TrainingStoppedException">A signal arrived: training stops after this batch.</exception>
    public override void OnTrainBatchEnd(int batch, Logs logs)
    {
        if (signal is not { } name) return;
        string saved = epoch == 0 ? "no epoch was completed, so nothing is checkpointed yet"
            : $"epochs 1-{epoch} are checkpointed in '{Path.Combine(runFolder, TrainResume.CheckpointFolder)}'";
        throw new TrainingStoppedException(name,
            $"{name} received; training stopped after batch {batch + 1} of {steps} in epoch {epoch + 1}. {char.ToUpperInvariant(saved[0])}{saved[1..]}; " +
            $"'convkit train --resume {runFolder}' redoes epoch {epoch + 1} from its first batch and continues.");
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var r in registrations) r.Dispose();
        registrations.Clear();
    }
}

/// <summary>Training was stopped by a signal (<see cref="StopOnSignal"/>); the message says what a resume redoes.</summary>
public sealed class TrainingStoppedException : ConvKitException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="signal">The signal's name.</param>
    /// <param name="message">What was stopped and what a resume will redo.</param>
    public TrainingStoppedException(string signal, string message) : base(message) => Signal = signal;

    /// <summary>The signal's name (<c>SIGINT</c> or <c>SIGTERM</c>).</summary>
    public string Signal { get; }
}
