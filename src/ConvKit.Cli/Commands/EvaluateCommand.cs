using System.CommandLine;
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
        var folder = new Argument<string>("model") { Description = "A model folder written by 'convkit train' (<out>/model) or a model file saved with Model.Save." };
        var dataset = new Option<string?>("--dataset") { Description = "Dataset whose test split to use (default: the one it was trained on)." };
        var data = new Option<string?>("--data") { Description = "Folder or file holding the dataset." };
        var batchSize = new Option<int>("--batch-size") { Description = "Samples per batch.", DefaultValueFactory = _ => 256 };
        var command = new Command("evaluate", "Evaluate a trained model on a dataset's test split.");
        command.Arguments.Add(folder);
        foreach (var o in new Option[] { dataset, data, batchSize }) command.Options.Add(o);
        command.SetAction(parse => console.Guard(() =>
        {
            var (model, info) = TrainedModelFolder.Load(parse.GetValue(folder)!);
            using (model)
            {
                // Keras evaluates compiled models; the optimizer plays no part here.
                model.Compile(optimizer: "sgd", loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
                var datasetName = parse.GetValue(dataset) ?? info?.Dataset
                    ?? throw new ArgumentException("--dataset is required for a model file without training.json beside it.");
                var datasetInfo = Datasets.Get(datasetName);
                using var splits = TrainCommand.LoadDataset(console, datasetInfo, parse.GetValue(data));
                using var maxPixel = 255f.ToScalar(); // alive until div_ returns, unlike an implicit Scalar
                using var x = splits.Test.Images.to(torch.float32).div_(maxPixel);
                var result = model.Evaluate(x, splits.Test.Labels, batchSize: parse.GetValue(batchSize), verbose: 0);
                var table = new Table().AddColumns("metric", "value");
                foreach (var (k, v) in result) table.AddRow(k, k.Contains("accuracy", StringComparison.Ordinal) ? $"{v:P2}" : $"{v:F4}");
                console.Output.WriteLine($"{model.Name} on the {datasetInfo.Name} test split ({splits.Test.Count} images):");
                console.Ansi.Write(table);
            }
            return 0;
        }));
        return command;
    }
}
