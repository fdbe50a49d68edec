using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using ConvKit.Applications;
using ConvKit.Callbacks;
using ConvKit.Data;
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
public static class TrainCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliConsole console)
    {
        var model = new Argument<string>("model") { Description = "Registry name of the model (see 'convkit models').", DefaultValueFactory = _ => "lenet5" };
        var dataset = new Option<string?>("--dataset") { Description = "mnist, fashion-mnist, kmnist, cifar10 or cifar100 (default: fashion-mnist for 1-channel models, cifar10/cifar100 for 3-channel ones)." };
        var data = new Option<string?>("--data") { Description = "Folder or file holding the dataset (default: CONVKIT_DATA, ~/.convkit/datasets, /usr/share/datasets, then download)." };
        var epochs = new Option<int>("--epochs") { Description = "Epochs to train.", DefaultValueFactory = _ => 10 };
        var batchSize = new Option<int>("--batch-size") { Description = "Samples per gradient step.", DefaultValueFactory = _ => 64 };
        var optimizer = new Option<string>("--optimizer") { Description = "sgd, adam, adamw or rmsprop.", DefaultValueFactory = _ => "adam" };
        optimizer.AcceptOnlyFromAmong("sgd", "adam", "adamw", "rmsprop");
        var lr = new Option<double?>("--lr") { Description = "Learning rate (default: the optimizer's Keras default; 0.01 with momentum 0.9 for sgd)." };
        var augment = new Option<bool>("--augment") { Description = "Random horizontal flips and shifts of up to 10% during training." };
        var validationSplit = new Option<double>("--validation-split") { Description = "Fraction of the training data, from its end, held out for validation.", DefaultValueFactory = _ => 0.1 };
        var seed = new Option<long>("--seed") { Description = "Seed of weights, shuffling and augmentation: the same seed repeats a CPU run bit for bit.", DefaultValueFactory = _ => 42 };
        var output = new Option<string?>("--out") { Description = "Output folder (default: runs/<model>-<time>)." };
        var verbose = new Option<int>("--verbose") { Description = "0 silent, 1 progress bar, 2 one line per epoch.", DefaultValueFactory = _ => 1 };
        var command = new Command("train", "Train a zoo model on a dataset, evaluate it on the test split and save it.");
        command.Arguments.Add(model);
        foreach (var o in new Option[] { dataset, data, epochs, batchSize, optimizer, lr, augment, validationSplit, seed, output, verbose })
            command.Options.Add(o);
        command.SetAction(parse => console.Guard(() => Run(console, new TrainSettings(
            parse.GetValue(model)!, parse.GetValue(dataset), parse.GetValue(data), parse.GetValue(epochs), parse.GetValue(batchSize),
            parse.GetValue(optimizer)!, parse.GetValue(lr), parse.GetValue(augment), parse.GetValue(validationSplit),
            parse.GetValue(seed), parse.GetValue(output), parse.GetValue(verbose)))));
        return command;
    }

    /// <summary>The command's arguments.</summary>
    public sealed record TrainSettings(string Model, string? Dataset, string? DataPath, int Epochs, int BatchSize, string Optimizer,
        double? LearningRate, bool Augment, double ValidationSplit, long Seed, string? OutputFolder, int Verbose);

    /// <summary>Runs a training job; returns the exit code.</summary>
    public static int Run(CliConsole console, TrainSettings s)
    {
        if (s.Epochs < 1) throw new ArgumentException($"--epochs must be at least 1; received {s.Epochs}.");
        var info = ModelRegistry.Get(s.Model);
        var datasetInfo = Datasets.Get(s.Dataset ?? DefaultDataset(info));
        var outDir = s.OutputFolder ?? Path.Combine("runs", $"{info.Name}-{DateTime.Now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}");
        Directory.CreateDirectory(outDir);
        set_num_threads(Math.Max(1, Environment.ProcessorCount));
        Backend.SetSeed(s.Seed);

        using var splits = LoadDataset(console, datasetInfo, s.DataPath);
        var train = splits.Train;
        var inputShape = new Shape(train.Height, train.Width, train.Channels);
        int classes = train.ClassNames.Count;
        using var scope = Backend.NameScope();
        var net = ModelRegistry.Create(info.Name, new ModelOptions { InputShape = inputShape, Classes = classes });
        Model trainee = net;
        if (s.Augment)
            trainee = new Sequential([new Input(inputShape), new RandomFlip("horizontal", seed: s.Seed), new RandomTranslation(0.1, 0.1, seed: s.Seed + 1), net], name: info.Name + "_augmented");
        var summary = trainee.Summary();
        console.Output.Write(summary);
        File.WriteAllText(Path.Combine(outDir, "summary.txt"), summary);

        trainee.Compile(optimizer: MakeOptimizer(s.Optimizer, s.LearningRate), loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
        console.Output.WriteLine($"Training {info.Name} on {datasetInfo.Name}: {train.Count} images {inputShape.ToBatchString()}, {classes} classes, " +
            $"{s.Epochs} epochs, batch {s.BatchSize}, {s.Optimizer}{(s.Augment ? ", augmented" : "")}, validation split {s.ValidationSplit}, seed {s.Seed}.");
        // A Scalar kept alive until the divisions return: TorchSharp's implicit ones can be freed mid-call by a GC.
        using var maxPixel = 255f.ToScalar();
        using var x = train.Images.to(float32).div_(maxPixel);
        var callbacks = new List<Callback>
        {
            new ProgbarLogger(console.Output, interactive: ReferenceEquals(console.Output, Console.Out) && !Console.IsOutputRedirected),
            new CSVLogger(Path.Combine(outDir, "history.csv")),
            new TensorBoard(Path.Combine(outDir, "tensorboard")),
        };
        var clock = Stopwatch.StartNew();
        var history = trainee.Fit(x, train.Labels, batchSize: s.BatchSize, epochs: s.Epochs, verbose: s.Verbose,
            callbacks: callbacks, validationSplit: s.ValidationSplit, seed: s.Seed);
        var trainTime = clock.Elapsed;

        using var xTest = splits.Test.Images.to(float32).div_(maxPixel);
        // The compiled model; augmentation layers are the identity in inference.
        var test = trainee.Evaluate(xTest, splits.Test.Labels, batchSize: 256, verbose: 0);
        TrainedModelFolder.Save(Path.Combine(outDir, "model"), net,
            new TrainedModelInfo(info.Name, datasetInfo.Name, train.ClassNames.ToArray()));
        File.WriteAllText(Path.Combine(outDir, "history.json"), JsonSerializer.Serialize(
            new { history = history.Values, test, train_seconds = trainTime.TotalSeconds }, new JsonSerializerOptions { WriteIndented = true }));
        HistoryPlot.Save(outDir, history, $"{info.Name} on {datasetInfo.Name}");

        var table = new Table().AddColumns("", "value");
        table.AddRow("model", info.Name);
        table.AddRow("dataset", datasetInfo.Name);
        table.AddRow("epochs", history.Epoch.Count.ToString(CultureInfo.InvariantCulture));
        table.AddRow("training time", $"{trainTime.TotalSeconds:F1} s ({train.Count * (1 - s.ValidationSplit) * history.Epoch.Count / trainTime.TotalSeconds:F0} images/s)");
        if (history.Values.TryGetValue("val_accuracy", out var va)) table.AddRow("validation accuracy", $"{va[^1]:P2}");
        table.AddRow("[bold]test accuracy[/]", $"[bold]{test["accuracy"]:P2}[/]");
        table.AddRow("test loss", $"{test["loss"]:F4}");
        table.AddRow("saved to", Markup.Escape(Path.GetFullPath(outDir)));
        console.Ansi.Write(table);
        return 0;
    }

    /// <summary>The dataset a model trains on by default: Fashion-MNIST for 1-channel models, CIFAR otherwise.</summary>
    public static string DefaultDataset(ModelInfo info) => info.DefaultInputShape[2] == 1 ? "fashion-mnist"
        : info.DefaultClasses == 100 ? "cifar100" : "cifar10";

    static Optimizer MakeOptimizer(string name, double? lr) => name switch
    {
        "sgd" => new SGD(learningRate: lr ?? 0.01, momentum: 0.9),
        "adam" => new Adam(learningRate: lr ?? 0.001),
        "adamw" => new AdamW(learningRate: lr ?? 0.001),
        "rmsprop" => new RMSprop(learningRate: lr ?? 0.001),
        _ => throw new ArgumentException($"unknown optimizer '{name}'"),
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
