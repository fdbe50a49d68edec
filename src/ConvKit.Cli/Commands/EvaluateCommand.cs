using System.CommandLine;
using ConvKit.Applications;
using ConvKit.Data;
using Spectre.Console;
using TorchSharp;

namespace ConvKit.Cli.Commands;

/// <summary><c>convkit evaluate &lt;model-folder&gt;</c>: loss and accuracy of a trained model on a dataset's test split.</summary>
public static class EvaluateCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliConsole console)
    {
        var folder = new Argument<string>("model") { Description = "What 'convkit train' wrote (the run folder, its model folder or model.safetensors), a model file saved with Model.Save, or a zoo name with --weights." };
        var weights = new Option<string?>("--weights") { Description = "Weights to load: for a zoo name a .safetensors/.h5 file or a run/model folder; for a trained model a weights file of the same architecture." };
        var dataset = new Option<string?>("--dataset") { Description = "Dataset whose test split to use (default: the one it was trained on)." };
        var data = new Option<string?>("--data") { Description = "Folder or file holding the dataset." };
        var batchSize = new Option<int>("--batch-size") { Description = "Samples per batch.", DefaultValueFactory = _ => 256 };
        var command = new Command("evaluate", "Evaluate a trained model on a dataset's test split.");
        command.Arguments.Add(folder);
        foreach (var o in new Option[] { dataset, data, batchSize, weights }) command.Options.Add(o);
        var threads = ThreadsOption.Create();
        command.Options.Add(threads);
        command.SetAction(parse => console.Guard(() =>
        {
            ThreadsOption.Apply(parse, threads);
            int batch = parse.GetValue(batchSize);
            if (batch < 1) throw new InvalidOptionException("--batch-size", $"--batch-size must be positive; received {batch}.");
            var dataPath = parse.GetValue(data);
            if (dataPath is not null && !File.Exists(dataPath) && !Directory.Exists(dataPath))
                throw new InvalidOptionException("--data", $"--data '{dataPath}' does not exist.");
            DatasetInfo? named = null;
            if (parse.GetValue(dataset) is { } dn)
            {
                try { named = Datasets.Get(dn); }
                catch (UnknownNameException e) { throw new InvalidOptionException("--dataset", "--dataset: " + e.Message, e); }
            }
            using var resolved = ModelResolver.Resolve(parse.GetValue(folder)!, parse.GetValue(weights));
            var model = resolved.Model;
            {
                // Keras evaluates compiled models; the optimizer plays no part here.
                model.Compile(optimizer: "sgd", loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
                var datasetInfo = named ?? (resolved.Dataset is { } d ? Datasets.Get(d)
                    : throw new InvalidOptionException("--dataset", $"--dataset is required: '{resolved.Source}' has no training.json saying what it was trained on."));
                using var splits = TrainCommand.LoadDataset(console, datasetInfo, dataPath);
                var input = model.ModelInputShape;
                var t = splits.Test;
                if (!(input.Rank == 3 && input[0] == t.Height && input[1] == t.Width && input[2] == t.Channels))
                    throw new ShapeException($"'{resolved.Source}' takes {input.ToBatchString()}, but the {datasetInfo.Name} test images are {t.Height}x{t.Width}x{t.Channels}.");
                if (model.ModelOutputShape is { Rank: 1 } o && o[0] < t.ClassNames.Count)
                    throw new ShapeException($"'{resolved.Source}' outputs {o[0]} classes, but {datasetInfo.Name} has {t.ClassNames.Count}.");
                using var maxPixel = 255f.ToScalar(); // alive until div_ returns, unlike an implicit Scalar
                using var x = splits.Test.Images.to(torch.float32).div_(maxPixel);
                var result = model.Evaluate(x, splits.Test.Labels, batchSize: batch, verbose: 0);
                var table = new Table().AddColumns("metric", "value");
                foreach (var (k, v) in result) table.AddRow(k, k.Contains("accuracy", StringComparison.Ordinal) ? $"{v:P2}" : $"{v:F4}");
                console.Output.WriteLine($"{model.Name} on the {datasetInfo.Name} test split ({splits.Test.Count} images):");
                console.Ansi.Write(table);
                if (result.Values.Any(v => !double.IsFinite(v)))
                {
                    console.Error.WriteLine($"error: the evaluation of '{resolved.Source}' gave non-finite values: the model outputs NaN or infinity.");
                    return 1;
                }
            }
            return 0;
        }));
        return command;
    }
}
