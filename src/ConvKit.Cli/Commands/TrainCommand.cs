using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ConvKit.Applications;
using ConvKit.Callbacks;
using ConvKit.Data;
using ConvKit.Evaluation;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Training;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Cli.Commands;

/// <summary>
/// <c>convkit train &lt;model&gt;</c>: trains a zoo model on a dataset with a progress bar, evaluates it on the test
/// split, and writes the model, its history (CSV, JSON, plot) and TensorBoard logs.
/// </summary>
public static partial class TrainCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliConsole console)
    {
        var model = new Argument<string>("model") { Description = "Registry name of the model (see 'convkit models').", DefaultValueFactory = _ => "lenet5" };
        var dataset = new Option<string?>("--dataset") { Description = "mnist, fashion-mnist, kmnist, cifar10 or cifar100 (default: fashion-mnist for 1-channel models, cifar10/cifar100 for 3-channel ones)." };
        var data = new Option<string?>("--data") { Description = "A folder with one subfolder of images per class (your own images), or the folder or file of a built-in dataset (default: CONVKIT_DATA, ~/.convkit/datasets, /usr/share/datasets, then download)." };
        var epochs = new Option<int>("--epochs") { Description = "Epochs to train.", DefaultValueFactory = _ => 10 };
        var batchSize = new Option<int>("--batch-size") { Description = "Samples per gradient step.", DefaultValueFactory = _ => 64 };
        var optimizer = new Option<string>("--optimizer") { Description = "sgd, adam, adamw or rmsprop.", DefaultValueFactory = _ => "adam" };
        optimizer.AcceptOnlyFromAmong("sgd", "adam", "adamw", "rmsprop");
        var lr = new Option<double?>("--lr") { Description = "Learning rate (default: the optimizer's Keras default; 0.01 with momentum 0.9 for sgd)." };
        var augment = new Option<bool>("--augment") { Description = "Random horizontal flips and shifts of up to 10% during training." };
        var validationSplit = new Option<double>("--validation-split") { Description = "Fraction of the training data, from its end, held out for validation.", DefaultValueFactory = _ => 0.1 };
        var seed = new Option<long>("--seed") { Description = "Seed of weights, shuffling and augmentation: the same seed repeats a CPU run bit for bit.", DefaultValueFactory = _ => 42 };
        var output = new Option<string?>("--out") { Description = "Output folder (default: runs/<model>-<time>). It must not exist or be empty, unless --overwrite." };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace the run in a non-empty --out folder (only what 'convkit train' writes there; other files make it refuse)." };
        var verbose = new Option<int>("--verbose") { Description = "0 silent, 1 progress bar, 2 one line per epoch.", DefaultValueFactory = _ => 1 };
        var command = new Command("train", "Train a zoo model on a dataset, evaluate it on the test split and save it.");
        command.Arguments.Add(model);
        var threads = ThreadsOption.Create("every logical processor that other processes do not keep busy (measured at start)");
        var nproc = DistributedTraining.CreateNprocOption();
        var transfer = new TrainTransferOptions.Set();
        var folder = new TrainDataOptions.Set();
        var recipe = new TrainRecipeOptions.Set();
        var resume = TrainResume.CreateOption();
        foreach (var o in new Option[] { dataset, data, epochs, batchSize, optimizer, lr, augment, validationSplit, seed, output, overwrite, verbose, threads, nproc, resume }.Concat(transfer.All).Concat(folder.All).Concat(recipe.All))
            command.Options.Add(o);
        command.SetAction(parse => console.Guard(() => Run(console, parse.GetValue(resume) is { } run ? TrainResume.Load(parse, run, verbose) : new TrainSettings(
            parse.GetValue(model)!, parse.GetValue(dataset), parse.GetValue(data), parse.GetValue(epochs), parse.GetValue(batchSize),
            parse.GetValue(optimizer)!, parse.GetValue(lr), parse.GetValue(augment), parse.GetValue(validationSplit),
            parse.GetValue(seed), parse.GetValue(output), parse.GetValue(verbose)) { Overwrite = parse.GetValue(overwrite), Threads = parse.GetValue(threads), Nproc = parse.GetValue(nproc), Tokens = parse.Tokens.Select(t => t.Value).ToArray(), Transfer = transfer.Read(parse), Folder = folder.Read(parse), Recipe = recipe.Read(parse) })));
        return command;
    }

    /// <summary>The command's arguments.</summary>
    public sealed record TrainSettings(string Model, string? Dataset, string? DataPath, int Epochs, int BatchSize, string Optimizer,
        double? LearningRate, bool Augment, double ValidationSplit, long Seed, string? OutputFolder, int Verbose)
    {
        /// <summary>Replace an earlier run in <see cref="OutputFolder"/>.</summary>
        public bool Overwrite { get; init; }

        /// <summary>CPU threads per operation (<c>--threads</c>); null for every logical processor other processes leave free.</summary>
        public int? Threads { get; init; }

        /// <summary>Local ranks to launch (<c>--nproc</c>); null to train in this process.</summary>
        public int? Nproc { get; init; }

        /// <summary>The command-line tokens, which <c>--nproc</c> passes on to the ranks.</summary>
        public IReadOnlyList<string> Tokens { get; init; } = [];

        /// <summary>Transfer learning: <c>--weights</c>, <c>--freeze-backbone</c>, <c>--fine-tune-epochs</c>, <c>--fine-tune-lr</c>.</summary>
        public TrainTransferSettings Transfer { get; init; } = TrainTransferSettings.None;

        /// <summary>The options for <c>--data DIR</c> of class folders (<c>--val-data</c>, <c>--image-size</c>, <c>--cache</c>, <c>--workers</c>).</summary>
        public TrainDataSettings Folder { get; init; } = new();

        /// <summary>The training recipe: <c>--label-smoothing</c>, <c>--mixup</c>, <c>--cutmix</c>, <c>--schedule</c>, <c>--warmup-epochs</c>.</summary>
        public TrainRecipeSettings Recipe { get; init; } = TrainRecipeSettings.None;

        /// <summary>The run folder to continue (<c>--resume</c>; see <see cref="TrainResume"/>); null for a new run.</summary>
        public string? Resume { get; init; }
    }

    /// <summary>What a run writes in its folder; <c>--overwrite</c> removes these and nothing else.</summary>
    static readonly string[] RunFiles = ["summary.txt", "history.csv", "history.json", "loss.png", "accuracy.png", DistributedTraining.CheckpointFile, TrainResume.SettingsFile];
    const string TensorBoardFolder = "tensorboard";

    /// <summary>
    /// Checks every argument, by its CLI name, before anything is loaded or created.
    /// </summary>
    /// <exception cref="ConvKitException">An argument is invalid; the message names the option and the value received.</exception>
    public static void Validate(TrainSettings s)
    {
        static string V(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        if (s.Epochs < 1) throw new InvalidOptionException("--epochs", $"--epochs must be at least 1; received {s.Epochs}.");
        if (s.Threads is { } t && (t < 1 || t > Backend.MaxThreads))
            throw new InvalidOptionException("--threads", $"--threads must be between 1 and {Backend.MaxThreads}; received {t}.");
        if (s.BatchSize < 1) throw new InvalidOptionException("--batch-size", $"--batch-size must be positive; received {s.BatchSize}.");
        if (s.LearningRate is { } lr && (!double.IsFinite(lr) || lr <= 0))
            throw new InvalidOptionException("--lr", $"--lr must be a positive finite number; received {V(lr)}.");
        if (!double.IsFinite(s.ValidationSplit) || s.ValidationSplit < 0 || s.ValidationSplit >= 1)
            throw new InvalidOptionException("--validation-split", $"--validation-split must be at least 0 and less than 1; received {V(s.ValidationSplit)}.");
        if (s.Verbose is < 0 or > 2) throw new InvalidOptionException("--verbose", $"--verbose must be 0, 1 or 2; received {s.Verbose}.");
        if (s.Optimizer is not ("sgd" or "adam" or "adamw" or "rmsprop"))
            throw new InvalidOptionException("--optimizer", $"--optimizer must be sgd, adam, adamw or rmsprop; received '{s.Optimizer}'.");
        TrainTransferOptions.Validate(s.Transfer);
        TrainRecipeOptions.Validate(s.Recipe, s.Epochs);
        ModelRegistry.Get(s.Model);
        if (s.Dataset is not null)
        {
            try { Datasets.Get(s.Dataset); }
            catch (UnknownNameException e) { throw new InvalidOptionException("--dataset", "--dataset: " + e.Message, e); }
        }
        if (s.DataPath is { } d && !File.Exists(d) && !Directory.Exists(d))
            throw new InvalidOptionException("--data", $"--data '{d}' does not exist.");
        var layout = TrainDataOptions.Detect(s.DataPath);
        if (layout == TrainDataOptions.Layout.ClassFolders && s.Dataset is not null)
            throw new InvalidOptionException("--dataset", $"--dataset {s.Dataset} names a built-in dataset, but --data '{s.DataPath}' is a folder of class folders; give one or the other.");
        TrainDataOptions.Validate(s.Folder, layout);
        if (s.OutputFolder is { } o && s.Resume is null)
        {
            if (string.IsNullOrWhiteSpace(o)) throw new InvalidOptionException("--out", "--out must name a folder; received an empty value.");
            if (File.Exists(o)) throw new InvalidOptionException("--out", $"--out '{o}' is a file; name a folder (new or empty, or add --overwrite to replace an earlier run).");
            if (Directory.Exists(o) && Directory.EnumerateFileSystemEntries(o).Any())
            {
                if (!s.Overwrite)
                    throw new InvalidOptionException("--out", $"--out '{o}' is not empty (it holds {Describe(o)}); choose a new folder, or add --overwrite to replace the run in it.");
                var foreign = ForeignEntries(o);
                if (foreign.Count > 0)
                    throw new InvalidOptionException("--overwrite", $"--overwrite replaces only a run folder, and '{o}' holds other files: {string.Join(", ", foreign.Take(5))}" +
                        (foreign.Count > 5 ? $" and {foreign.Count - 5} more" : "") + ". Choose another --out.");
            }
        }
    }

    static string Describe(string folder)
    {
        var names = Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray();
        return string.Join(", ", names.Take(4)) + (names.Length > 4 ? $" and {names.Length - 4} more" : "");
    }

    // Entries of an existing --out that 'convkit train' did not write there.
    static List<string> ForeignEntries(string folder)
    {
        var foreign = new List<string>();
        foreach (var e in Directory.EnumerateFileSystemEntries(folder))
        {
            var name = Path.GetFileName(e);
            if (name.StartsWith(Saving.AtomicFile.TempPrefix, StringComparison.Ordinal)) continue;
            if (File.Exists(e) && RunFiles.Contains(name)) continue;
            if (Directory.Exists(e) && name is TensorBoardFolder or TrainResume.CheckpointFolder or EvaluationReportFiles.Folder) continue;
            if (Directory.Exists(e) && name == TrainedModelFolder.RunModelFolder)
            {
                foreach (var m in Directory.EnumerateFileSystemEntries(e))
                {
                    var mn = Path.GetFileName(m);
                    if (!(File.Exists(m) && (mn is TrainedModelFolder.ModelFile or TrainedModelFolder.InfoFile or NonFiniteModelFile
                          || mn.StartsWith(Saving.AtomicFile.TempPrefix, StringComparison.Ordinal))))
                        foreign.Add(Path.Combine(name, mn));
                }
                continue;
            }
            foreign.Add(name);
        }
        return foreign;
    }

    /// <summary>Where a model whose weights became NaN/Inf is kept for inspection (never as model.safetensors).</summary>
    public const string NonFiniteModelFile = "model-nonfinite.safetensors";

    // Creates --out (and its parents), or empties the previous run out of it (validated by Validate).
    static void PrepareOutput(string outDir, bool overwrite)
    {
        try
        {
            if (overwrite && Directory.Exists(outDir))
            {
                // Checked again right before deleting: only a run's own files are ever removed.
                if (ForeignEntries(outDir) is { Count: > 0 } foreign)
                    throw new InvalidOptionException("--overwrite", $"--overwrite replaces only a run folder, and '{outDir}' holds other files: {string.Join(", ", foreign.Take(5))}.");
                foreach (var e in Directory.EnumerateFileSystemEntries(outDir))
                {
                    if (Directory.Exists(e)) Directory.Delete(e, recursive: true);
                    else File.Delete(e);
                }
            }
            // Checked again: another process may have written there while the data loaded.
            else if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any())
                throw new InvalidOptionException("--out", $"--out '{outDir}' is not empty (it holds {Describe(outDir)}); choose a new folder, or add --overwrite to replace the run in it.");
            Directory.CreateDirectory(outDir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConvKitException($"cannot create --out '{outDir}': {Saving.AtomicFile.Explain(e, Path.Combine(outDir, "x"))}", e);
        }
    }

    static void WriteText(string path, string text) =>
        Saving.AtomicFile.WriteOrExplain(path, st => st.Write(System.Text.Encoding.UTF8.GetBytes(text)));

    /// <summary>Runs a training job; returns the exit code.</summary>
    public static int Run(CliConsole console, TrainSettings s)
    {
        s = DistributedTraining.CheckResume(s);
        Validate(s);
        DistributedTraining.Validate(s.Nproc);
        if (TrainDataOptions.Detect(s.DataPath) == TrainDataOptions.Layout.ClassFolders)
        {
            if (s.Nproc is not null)
                throw new InvalidOptionException("--nproc", "--nproc trains the built-in datasets only; --data names a folder of class folders, which trains in one process (leave out --nproc).");
            return RunFolder(console, s);
        }
        if (s.Nproc is { } ranks)
            return DistributedTraining.Launch(console, ranks, s.Resume is { } run ? DistributedTraining.ResumeArguments(run, s.Verbose)
                : DistributedTraining.RankArguments(s.Tokens, s.Threads is null ? Math.Max(1, Environment.ProcessorCount / ranks) : null));
        using var rank = DistributedTraining.Join(); // WORLD_SIZE set: this process is one rank of a group
        if (rank is not null) s = rank.Prepare(s);
        var info = ModelRegistry.Get(s.Model);
        var datasetInfo = Datasets.Get(s.Dataset ?? DefaultDataset(info));
        var outDir = s.OutputFolder ?? Path.Combine("runs", $"{info.Name}-{DateTime.Now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}");
        var runDir = outDir; // named in a rank's stop message: the run folder, not its scratch folder
        if (rank is not null) outDir = rank.OutputFolder(outDir);
        Backend.Threads = ChooseThreads(console, s.Threads);
        Backend.SetSeed(s.Seed);

        using var splits = LoadDataset(console, datasetInfo, s.DataPath);
        var train = splits.Train;
        var test = splits.Test;
        if (test.Height != train.Height || test.Width != train.Width || test.Channels != train.Channels)
            throw new ShapeException($"{datasetInfo.Name}: the test images are {test.Height}x{test.Width}x{test.Channels}, the training images " +
                $"{train.Height}x{train.Width}x{train.Channels}; both splits must have one image size.");
        if (train.Count * (1 - s.ValidationSplit) < 1)
            throw new InvalidOptionException("--validation-split", $"--validation-split {s.ValidationSplit.ToString(CultureInfo.InvariantCulture)} leaves no training images of {train.Count}.");
        var inputShape = new Shape(train.Height, train.Width, train.Channels);
        int classes = train.ClassNames.Count;
        using var scope = Backend.NameScope();
        var net = ModelRegistry.Create(info.Name, new ModelOptions { InputShape = inputShape, Classes = classes });
        TrainTransferOptions.Apply(console, net, s.Transfer);
        Model trainee = net;
        if (s.Augment)
            trainee = new Sequential([new Input(inputShape), new RandomFlip("horizontal", seed: s.Seed), new RandomTranslation(0.1, 0.1, seed: s.Seed + 1), net], name: info.Name + "_augmented");
        var summary = trainee.Summary();
        if (s.Resume is null) PrepareOutput(outDir, s.Overwrite);
        TrainResume.Save(outDir, s, Backend.Threads);
        console.Output.Write(summary);
        WriteText(Path.Combine(outDir, "summary.txt"), summary);

        var optimizer = MakeOptimizer(s.Optimizer, s.LearningRate, s.Recipe.WeightDecay);
        trainee.Compile(optimizer: optimizer, loss: TrainRecipeOptions.Loss(s.Recipe), metrics: ["accuracy"]);
        console.Output.WriteLine($"Training {info.Name} on {datasetInfo.Name}: {train.Count} images {inputShape.ToBatchString()}, {classes} classes, " +
            $"{s.Epochs} epochs, batch {s.BatchSize}, {s.Optimizer}{(s.Augment ? ", augmented" : "")}{TrainRecipeOptions.Describe(s.Recipe)}, validation split {s.ValidationSplit}, seed {s.Seed}.");
        // A Scalar kept alive until the divisions return: TorchSharp's implicit ones can be freed mid-call by a GC.
        using var maxPixel = 255f.ToScalar();
        using var x = train.Images.to(float32).div_(maxPixel);
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
        var callbacks = new List<Callback>
        {
            new ProgbarLogger(console.Output, interactive: ReferenceEquals(console.Output, Console.Out) && !Console.IsOutputRedirected),
            nanGuard, // Keras leaves it out by default; a CLI run that diverged is stopped, not continued for hours
            tensorBoard,
            new ElapsedTime(), // history.csv's elapsed_seconds: the accuracy-versus-time curve
        };
        var schedule = TrainRecipeOptions.Schedule(s.Recipe, optimizer.LearningRate, s.Epochs);
        if (schedule is not null) callbacks.Insert(0, schedule); // before the loggers, which read the rate it sets
        var mixing = TrainRecipeOptions.Mixing(s.Recipe);
        rank?.Attach(trainee, callbacks, outDir);
        var (backup, epochHistory, stop) = TrainResume.Callbacks(outDir, runDir);
        using var stopOnSignal = stop;
        callbacks.AddRange([backup, epochHistory, stop]);
        var clock = Stopwatch.StartNew();
        History history;
        try
        {
            history = trainee.Fit(x, train.Labels, batchSize: s.BatchSize, epochs: s.Epochs, verbose: s.Verbose,
                callbacks: callbacks, validationSplit: s.ValidationSplit, seed: s.Seed, mixing: mixing);
            // The schedule covers the first phase; the fine-tuning phase runs at --fine-tune-lr.
            if (schedule is not null) callbacks.Remove(schedule);
            if (nanGuard.TerminatedAtBatch is null)
                history = TrainTransferOptions.FineTune(console, net, trainee, s.Transfer, history, (first, last) => trainee.Fit(x, train.Labels,
                    batchSize: s.BatchSize, epochs: last, verbose: s.Verbose, callbacks: callbacks, validationSplit: s.ValidationSplit, initialEpoch: first, seed: s.Seed, mixing: mixing));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // TensorBoard's event files are the only ones written during training.
            throw TensorBoardFailed(outDir, e);
        }
        catch (TrainingStoppedException e)
        {
            return TrainResume.ReportStopped(console, e);
        }
        if (backup.ResumedFromEpoch is { } resumedFrom) console.Output.WriteLine($"Resumed from the checkpoint of epoch {resumedFrom}.");
        int epochsRun = history.Epoch.Count;
        history = epochHistory.Full;
        var trainTime = clock.Elapsed;

        bool finite = ModelIsFinite(net);
        IReadOnlyDictionary<string, double> testResult;
        if (finite)
        {
            using var xTest = test.Images.to(float32).div_(maxPixel);
            // The compiled model; augmentation layers are the identity in inference.
            var plain = trainee.Evaluate(xTest, test.Labels, batchSize: 256, verbose: 0);
            testResult = s.Recipe.Tta == "flip"
                ? new Dictionary<string, double>(plain) { ["accuracy_flip_tta"] = TestTimeAugmentation.AccuracyWithFlip(trainee, xTest, test.Labels, batchSize: 256) }
                : plain;
        }
        else testResult = new Dictionary<string, double> { ["loss"] = double.NaN, ["accuracy"] = double.NaN };

        var modelDir = Path.Combine(outDir, TrainedModelFolder.RunModelFolder);
        var trainedInfo = new TrainedModelInfo(info.Name, datasetInfo.Name, train.ClassNames.ToArray())
        {
            InputShape = [train.Height, train.Width, train.Channels],
            ColorMode = train.Channels == 1 ? "grayscale" : "rgb",
            Preprocessing = nameof(Preprocessing.None),
            Rescale = 1.0 / 255,
        };
        if (finite) TrainedModelFolder.Save(modelDir, net, trainedInfo);
        else net.Save(Path.Combine(modelDir, NonFiniteModelFile));
        WriteText(Path.Combine(outDir, "history.json"), HistoryJson(history, testResult, trainTime.TotalSeconds));
        HistoryPlot.Save(outDir, history, $"{info.Name} on {datasetInfo.Name}");

        if (!finite || nanGuard.TerminatedAtBatch is not null)
        {
            int epoch = history.Epoch.Count;
            string where = nanGuard.TerminatedAtBatch is { } b ? $"stopped in epoch {epoch} at batch {b} (counted from 0): the loss became NaN or infinite" : "the weights became NaN or infinite";
            string model = finite ? $"the model was saved to '{modelDir}' but its last updates came from a non-finite loss"
                : $"the weights are not finite, so no model.safetensors was written (kept for inspection as '{Path.Combine(modelDir, NonFiniteModelFile)}')";
            console.Error.WriteLine($"error: training {where}; {model}. History: '{Path.Combine(outDir, "history.csv")}'. " +
                $"Try a lower --lr (received {(s.LearningRate?.ToString("R", CultureInfo.InvariantCulture) ?? "the default")}).");
            return 2;
        }

        var table = new Table().AddColumns("", "value");
        table.AddRow("model", info.Name);
        table.AddRow("dataset", datasetInfo.Name);
        table.AddRow("epochs", history.Epoch.Count.ToString(CultureInfo.InvariantCulture));
        table.AddRow("training time", $"{trainTime.TotalSeconds:F1} s ({train.Count * (1 - s.ValidationSplit) * epochsRun / trainTime.TotalSeconds:F0} images/s)");
        if (history.Values.TryGetValue("val_accuracy", out var va)) table.AddRow("validation accuracy", $"{va[^1]:P2}");
        table.AddRow("[bold]test accuracy[/]", $"[bold]{testResult["accuracy"]:P2}[/]");
        if (testResult.TryGetValue("accuracy_flip_tta", out var tta)) table.AddRow("[bold]test accuracy, flip TTA[/]", $"[bold]{tta:P2}[/]");
        table.AddRow("since process start", $"{ElapsedTime.Seconds():F1} s");
        table.AddRow("test loss", $"{testResult["loss"]:F4}");
        table.AddRow("saved to", Markup.Escape(Path.GetFullPath(outDir)));
        console.Ansi.Write(table);
        return 0;
    }

    // TorchSharp's SummaryWriter appends to its event files as it goes (no atomic writer fits a log): when a write
    // fails, the files it created empty are removed, so that what remains are readable logs up to the failure.
    static ConvKitException TensorBoardFailed(string outDir, Exception e)
    {
        var folder = Path.Combine(outDir, TensorBoardFolder);
        try
        {
            if (Directory.Exists(folder))
            {
                foreach (var f in Directory.GetFiles(folder, "*", SearchOption.AllDirectories))
                    if (new FileInfo(f).Length == 0) File.Delete(f);
                foreach (var d in Directory.GetDirectories(folder, "*", SearchOption.AllDirectories).OrderByDescending(d => d.Length))
                    if (!Directory.EnumerateFileSystemEntries(d).Any()) Directory.Delete(d);
                if (!Directory.EnumerateFileSystemEntries(folder).Any()) Directory.Delete(folder);
            }
        }
        catch (Exception cleanup) when (cleanup is IOException or UnauthorizedAccessException) { } // the write error is the one to report
        return new ConvKitException($"cannot write TensorBoard logs in '{folder}': {Saving.AtomicFile.Explain(e, Path.Combine(folder, "x"))}", e);
    }

    static bool ModelIsFinite(Model model)
    {
        foreach (var w in model.Weights)
        {
            if (!w.Value.is_floating_point()) continue;
            using var ok = w.Value.isfinite().all();
            if (!ok.item<bool>()) return false;
        }
        return true;
    }

    /// <summary>Keras' CSVLogger layout (epoch, then the keys sorted), with non-finite values as Python writes them
    /// (<c>nan</c>, <c>inf</c>, <c>-inf</c>).</summary>
    public static string HistoryCsv(History history)
    {
        var keys = history.Values.Keys.Order(StringComparer.Ordinal).ToArray();
        var sb = new System.Text.StringBuilder();
        sb.Append(string.Join(',', new[] { "epoch" }.Concat(keys))).Append('\n');
        for (int i = 0; i < history.Epoch.Count; i++)
        {
            sb.Append(history.Epoch[i].ToString(CultureInfo.InvariantCulture));
            foreach (var k in keys) sb.Append(',').Append(i < history.Values[k].Count ? PythonFloat(history.Values[k][i]) : "NA");
            sb.Append('\n');
        }
        return sb.ToString();
    }

    static string PythonFloat(double v)
    {
        if (double.IsNaN(v)) return "nan";
        if (double.IsInfinity(v)) return v > 0 ? "inf" : "-inf";
        var t = v.ToString("R", CultureInfo.InvariantCulture).ToLowerInvariant(); // 1e+30, 1e-05 as Python writes them
        return t.Contains('.') || t.Contains('e') ? t : t + ".0";
    }

    /// <summary>history.json: <c>{"history": {metric: [per epoch]}, "test": {...}, "train_seconds": s}</c>. Non-finite
    /// numbers are written as the strings <c>"NaN"</c>, <c>"Infinity"</c> and <c>"-Infinity"</c> (JSON has no
    /// literal for them; .NET and Python's <c>float()</c> read these strings back).</summary>
    public static string HistoryJson(History history, IReadOnlyDictionary<string, double> test, double trainSeconds) =>
        JsonSerializer.Serialize(new { history = history.Values, test, train_seconds = trainSeconds },
            new JsonSerializerOptions { WriteIndented = true, NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals });

    /// <summary>The dataset a model trains on by default: Fashion-MNIST for 1-channel models, CIFAR otherwise.</summary>
    public static string DefaultDataset(ModelInfo info) => info.DefaultInputShape[2] == 1 ? "fashion-mnist"
        : info.DefaultClasses == 100 ? "cifar100" : "cifar10";

    /// <summary>
    /// The run's intra-op threads: <c>--threads</c>, else every logical processor that other processes do not keep busy
    /// (<see cref="CpuContention.DefaultThreads"/>, measured once over 0.2 s; saved with the run, so a resume uses the
    /// same count). Two threads with one of them sharing a core with another busy process ran LeNet-5's small steps at a
    /// third of their quiet speed; one thread on the free core runs them at more than half.
    /// </summary>
    static int ChooseThreads(CliConsole console, int? requested)
    {
        if (requested is { } t) return t;
        int threads = CpuContention.DefaultThreads(out double busy);
        if (threads < Environment.ProcessorCount)
            console.Output.WriteLine($"Threads: {threads} of {Environment.ProcessorCount} logical processors (other processes keep " +
                $"{busy.ToString("0.0", CultureInfo.InvariantCulture)} busy); --threads N chooses.");
        return threads;
    }

    static Optimizer MakeOptimizer(string name, double? lr, double weightDecay) => name switch
    {
        "sgd" => new SGD(learningRate: lr ?? 0.01, momentum: 0.9, weightDecay: weightDecay),
        "adam" => new Adam(learningRate: lr ?? 0.001, weightDecay: weightDecay),
        "adamw" => weightDecay > 0 ? new AdamW(learningRate: lr ?? 0.001, weightDecay: weightDecay) : new AdamW(learningRate: lr ?? 0.001),
        "rmsprop" => new RMSprop(learningRate: lr ?? 0.001, weightDecay: weightDecay),
        _ => throw new InvalidOptionException("--optimizer", $"--optimizer must be sgd, adam, adamw or rmsprop; received '{name}'."),
    };

    /// <summary>Loads a dataset, showing a progress bar while a download runs.</summary>
    public static DatasetSplits LoadDataset(CliConsole console, DatasetInfo info, string? path)
    {
        console.Output.WriteLine($"Loading {info.Name}...");
        var progress = new Progress<DownloadProgress>(p =>
        {
            var total = p.TotalBytes is { } t ? $"/{t / 1048576.0:F1} MB" : "";
            console.Error.Write($"\rdownloading {p.FileName}: {p.BytesDone / 1048576.0:F1}{total} MB   ");
        });
        return info.Load(path, progress);
    }
}
