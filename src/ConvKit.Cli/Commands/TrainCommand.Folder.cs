using System.Diagnostics;
using System.Globalization;
using ConvKit.Applications;
using ConvKit.Callbacks;
using ConvKit.Data;
using ConvKit.Data.Streaming;
using ConvKit.Models;
using Spectre.Console;

namespace ConvKit.Cli.Commands;

// `convkit train MODEL --data DIR` where DIR holds one subfolder of images per class: the images stream from disk
// through a DataLoader (decoded on --workers threads, optionally cached), so the folder may be larger than memory.
public static partial class TrainCommand
{
    static int RunFolder(CliConsole console, TrainSettings s)
    {
        var d = s.Folder;
        if (s.Recipe.Tta != "none")
            throw new InvalidOptionException("--tta", "--tta evaluates a built-in dataset's test set at the end; a run on a folder of class folders has no test set (leave out --tta).");
        var info = ModelRegistry.Get(s.Model);
        var dataDir = s.DataPath!;
        var outDir = s.OutputFolder ?? Path.Combine("runs", $"{info.Name}-{DateTime.Now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}");
        Backend.Threads = ChooseThreads(console, s.Threads);
        Backend.SetSeed(s.Seed);

        var (h, w) = d.ImageSize is { } text ? TrainDataOptions.ParseImageSize(text) : (info.DefaultInputShape[0], info.DefaultInputShape[1]);
        int channels = info.DefaultInputShape[2];
        var colorMode = channels == 1 ? ColorMode.Grayscale : ColorMode.Rgb;
        var cache = TrainDataOptions.ParseCache(d.Cache);
        var augmentation = s.Augment ? ImageAugmentation.Default : null;

        DataLoader train;
        DataLoader? val = null;
        string option = "--data";
        try
        {
            if (d.ValData is { } valDir)
            {
                train = ImageDatasets.ImageDatasetFromDirectory(dataDir, s.BatchSize, (h, w), colorMode, seed: s.Seed, workers: d.Workers,
                    augmentation: augmentation, cache: cache);
                option = "--val-data";
                CheckSameClasses(valDir, train.ClassNames);
                val = ImageDatasets.ImageDatasetFromDirectory(valDir, 256, (h, w), colorMode, shuffle: false, classNames: train.ClassNames.ToArray(),
                    workers: d.Workers, cache: cache);
            }
            else if (s.ValidationSplit > 0)
            {
                train = ImageDatasets.ImageDatasetFromDirectory(dataDir, s.BatchSize, (h, w), colorMode, seed: s.Seed, validationSplit: s.ValidationSplit,
                    subset: DatasetSubset.Training, workers: d.Workers, augmentation: augmentation, cache: cache);
                val = ImageDatasets.ImageDatasetFromDirectory(dataDir, 256, (h, w), colorMode, seed: s.Seed, validationSplit: s.ValidationSplit,
                    subset: DatasetSubset.Validation, workers: d.Workers, cache: cache);
            }
            else
                train = ImageDatasets.ImageDatasetFromDirectory(dataDir, s.BatchSize, (h, w), colorMode, seed: s.Seed, workers: d.Workers,
                    augmentation: augmentation, cache: cache);
        }
        catch (Exception e) when (e is DatasetFormatException or DatasetNotFoundException)
        {
            throw new ConvKitException($"{option}: {e.Message}", e);
        }
        using var trainLoader = train;
        using var valLoader = val;
        train.Warnings = console.Error;
        if (val is not null) val.Warnings = console.Error;

        var inputShape = new Shape(h, w, channels);
        int classes = train.ClassNames.Count;
        using var scope = Backend.NameScope();
        var net = ModelRegistry.Create(info.Name, new ModelOptions { InputShape = inputShape, Classes = classes });
        TrainTransferOptions.Apply(console, net, s.Transfer);
        var summary = net.Summary();
        if (s.Resume is null) PrepareOutput(outDir, s.Overwrite);
        TrainResume.Save(outDir, s, Backend.Threads);
        console.Output.Write(summary);
        WriteText(Path.Combine(outDir, "summary.txt"), summary);
        var optimizer = MakeOptimizer(s.Optimizer, s.LearningRate, s.Recipe.WeightDecay);
        net.Compile(optimizer: optimizer, loss: TrainRecipeOptions.Loss(s.Recipe), metrics: ["accuracy"]);
        string classList = string.Join(", ", train.ClassNames.Take(10)) + (classes > 10 ? $" and {classes - 10} more" : "");
        console.Output.WriteLine($"Training {info.Name} on '{dataDir}': {train.Count} images resized to {inputShape.ToBatchString()}, {classes} classes ({classList}), " +
            $"{s.Epochs} epochs, batch {s.BatchSize}, {s.Optimizer}{(s.Augment ? ", augmented" : "")}{TrainRecipeOptions.Describe(s.Recipe)}, " +
            (val is null ? "no validation" : d.ValData is not null ? $"validation '{d.ValData}' ({val.Count} images)" : $"validation split {s.ValidationSplit.ToString(CultureInfo.InvariantCulture)} ({val.Count} images)") +
            $", {train.Workers} workers{(cache == DatasetCache.None ? "" : $", cache {cache.ToString().ToLowerInvariant()}")}, seed {s.Seed}.");

        var nanGuard = new TerminateOnNaN { Output = console.Output };
        TensorBoard tensorBoard;
        try
        {
            tensorBoard = new TensorBoard(Path.Combine(outDir, TensorBoardFolder));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw TensorBoardFailed(outDir, e);
        }
        var throughput = new DataThroughputLogger(train) { Output = console.Output };
        var callbacks = new List<Callback>
        {
            new ProgbarLogger(console.Output, interactive: ReferenceEquals(console.Output, Console.Out) && !Console.IsOutputRedirected),
            throughput,
            nanGuard,
            tensorBoard,
            new ElapsedTime(),
        };
        var schedule = TrainRecipeOptions.Schedule(s.Recipe, optimizer.LearningRate, s.Epochs);
        if (schedule is not null) callbacks.Insert(0, schedule);
        var mixing = TrainRecipeOptions.Mixing(s.Recipe);
        var (backup, epochHistory, stop) = TrainResume.Callbacks(outDir);
        using var stopOnSignal = stop;
        callbacks.AddRange([backup, epochHistory, stop]);
        var clock = Stopwatch.StartNew();
        History history;
        try
        {
            history = net.Fit(train, epochs: s.Epochs, verbose: s.Verbose, callbacks: callbacks, validationData: val, mixing: mixing);
            if (schedule is not null) callbacks.Remove(schedule);
            if (nanGuard.TerminatedAtBatch is null)
                history = TrainTransferOptions.FineTune(console, net, net, s.Transfer, history, (first, last) => net.Fit(train,
                    epochs: last, verbose: s.Verbose, callbacks: callbacks, validationData: val, initialEpoch: first, mixing: mixing));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw TensorBoardFailed(outDir, e);
        }
        catch (TrainingStoppedException e)
        {
            return TrainResume.ReportStopped(console, e);
        }
        if (backup.ResumedFromEpoch is { } resumedFrom) console.Output.WriteLine($"Resumed from the checkpoint of epoch {resumedFrom}.");
        history = epochHistory.Full;
        var trainTime = clock.Elapsed;

        bool finite = ModelIsFinite(net);
        var valResult = new Dictionary<string, double>();
        if (history.Values.TryGetValue("val_loss", out var vl)) valResult["loss"] = vl[^1];
        if (history.Values.TryGetValue("val_accuracy", out var va)) valResult["accuracy"] = va[^1];

        var modelDir = Path.Combine(outDir, TrainedModelFolder.RunModelFolder);
        var trainedInfo = new TrainedModelInfo(info.Name, Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dataDir))), train.ClassNames.ToArray())
        {
            InputShape = [h, w, channels],
            ColorMode = channels == 1 ? "grayscale" : "rgb",
            Preprocessing = nameof(Preprocessing.None),
            Rescale = 1.0 / 255,
        };
        if (finite) TrainedModelFolder.Save(modelDir, net, trainedInfo);
        else net.Save(Path.Combine(modelDir, NonFiniteModelFile));
        WriteText(Path.Combine(outDir, "history.csv"), HistoryCsv(history));
        WriteText(Path.Combine(outDir, "history.json"), HistoryJson(history, valResult, trainTime.TotalSeconds));
        HistoryPlot.Save(outDir, history, $"{info.Name} on {trainedInfo.Dataset}");

        if (!finite || nanGuard.TerminatedAtBatch is not null)
        {
            console.Error.WriteLine($"error: training stopped: the loss or the weights became NaN or infinite. History: '{Path.Combine(outDir, "history.csv")}'. " +
                $"Try a lower --lr (received {(s.LearningRate?.ToString("R", CultureInfo.InvariantCulture) ?? "the default")}).");
            return 2;
        }

        var table = new Table().AddColumns("", "value");
        table.AddRow("model", info.Name);
        table.AddRow("data", Markup.Escape($"{dataDir} ({train.Count} images, {classes} classes)"));
        table.AddRow("epochs", history.Epoch.Count.ToString(CultureInfo.InvariantCulture));
        table.AddRow("training time", $"{trainTime.TotalSeconds:F1} s");
        if (throughput.ImagesPerSecond.Count > 0)
            table.AddRow("throughput", $"{throughput.ImagesPerSecond[^1]:F0} images/s, {throughput.DataWaitFraction[^1]:P0} waiting for data (last epoch)");
        if (train.Skipped.Count > 0) table.AddRow("skipped files", $"{train.Skipped.Count} (undecodable; named above)");
        if (valResult.TryGetValue("accuracy", out var acc)) table.AddRow("[bold]validation accuracy[/]", $"[bold]{acc:P2}[/]");
        if (valResult.TryGetValue("loss", out var loss)) table.AddRow("validation loss", $"{loss:F4}");
        table.AddRow("saved to", Markup.Escape(Path.GetFullPath(outDir)));
        console.Ansi.Write(table);
        return 0;
    }

    // --val-data must have the training folder's classes: a class missing or extra would mislabel every image.
    static void CheckSameClasses(string valDir, IReadOnlyList<string> trainClasses)
    {
        var valClasses = Directory.GetDirectories(valDir).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();
        var missing = trainClasses.Except(valClasses).ToList();
        var extra = valClasses.Except(trainClasses).ToList();
        if (missing.Count > 0 || extra.Count > 0)
            throw new DatasetFormatException($"'{valDir}' has other classes than --data: " +
                string.Join("; ", new[] { missing.Count > 0 ? "missing " + string.Join(", ", missing) : null, extra.Count > 0 ? "extra " + string.Join(", ", extra) : null }.OfType<string>()) + ".");
    }
}

/// <summary>
/// Prints, after each training epoch, the images per second and the fraction of the training time the step waited for
/// the <see cref="DataLoader"/> (near 0: decoding keeps up; near 1: the data pipeline is the bottleneck: add
/// --workers or --cache).
/// </summary>
public sealed class DataThroughputLogger(DataLoader loader) : Callback
{
    readonly Stopwatch clock = new();
    TimeSpan lastBatchEnd;

    /// <summary>Images per second of each epoch's training part.</summary>
    public List<double> ImagesPerSecond { get; } = [];

    /// <summary>Fraction of each epoch's training time spent waiting for data.</summary>
    public List<double> DataWaitFraction { get; } = [];

    /// <inheritdoc/>
    public override void OnEpochBegin(int epoch, Logs logs) => clock.Restart();

    /// <inheritdoc/>
    public override void OnTrainBatchEnd(int batch, Logs logs) => lastBatchEnd = clock.Elapsed;

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, Logs logs)
    {
        double seconds = Math.Max(lastBatchEnd.TotalSeconds, 1e-9);
        ImagesPerSecond.Add(loader.SamplesDelivered / seconds);
        DataWaitFraction.Add(Math.Clamp(loader.DataWait.TotalSeconds / seconds, 0, 1));
        if (Params?.Verbose is 0) return;
        Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"epoch {epoch + 1}: {ImagesPerSecond[^1]:F0} images/s, {DataWaitFraction[^1]:P0} of the time waiting for data"));
    }
}
