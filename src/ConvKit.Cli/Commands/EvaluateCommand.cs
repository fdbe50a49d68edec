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
        var folder = new Argument<string>("model") { Description = "What 'convkit train' wrote (the run folder, its model folder or model.safetensors), a model file saved with Model.Save, a zoo name with --weights, or the .onnx file 'convkit quantize' wrote (with --dataset, or --data with class subfolders)." };
        var weights = new Option<string?>("--weights") { Description = "Weights to load: for a zoo name a .safetensors/.h5 file or a run/model folder; for a trained model a weights file of the same architecture." };
        var dataset = new Option<string?>("--dataset") { Description = "Dataset whose test split to use (default: the one it was trained on)." };
        var data = new Option<string?>("--data") { Description = "Folder or file holding the dataset." };
        var batchSize = new Option<int>("--batch-size") { Description = "Samples per batch.", DefaultValueFactory = _ => 256 };
        var report = new Option<string?>("--report") { Description = "Folder for the evaluation report (confusion matrix, per-class metrics, mistakes, Grad-CAM; default: <run>/evaluation when the model is a run or model folder)." };
        var topK = new Option<int>("--top-k") { Description = "k of the top-k accuracy in the report.", DefaultValueFactory = _ => 5 };
        var mistakes = new Option<int>("--mistakes") { Description = "Most confident mistakes shown in the report's mistakes.png.", DefaultValueFactory = _ => 24 };
        var gradCam = new Option<int>("--grad-cam") { Description = "Test images shown with Grad-CAM heatmaps in the report's gradcam.png (0: none; FP32 models only).", DefaultValueFactory = _ => 12 };
        var command = new Command("evaluate", "Evaluate a trained model on a dataset's test split or a folder of class subfolders, and write an evaluation report.");
        command.Arguments.Add(folder);
        foreach (var o in new Option[] { dataset, data, batchSize, weights, report, topK, mistakes, gradCam }) command.Options.Add(o);
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
            var reportOptions = new EvaluateReport.Options(parse.GetValue(report), parse.GetValue(topK), parse.GetValue(mistakes), parse.GetValue(gradCam));
            reportOptions.Validate();
            DatasetInfo? named = null;
            if (parse.GetValue(dataset) is { } dn)
            {
                try { named = Datasets.Get(dn); }
                catch (UnknownNameException e) { throw new InvalidOptionException("--dataset", "--dataset: " + e.Message, e); }
            }
            if (parse.GetValue(folder) is { } onnx && QuantizeCommand.IsInt8File(onnx))
                return QuantizeCommand.Evaluate(console, onnx, named, dataPath, batch, reportOptions, parse.GetResult(gradCam) is { Implicit: false });
            using var resolved = ModelResolver.Resolve(parse.GetValue(folder)!, parse.GetValue(weights));
            var model = resolved.Model;
            var reportFolder = EvaluateReport.Folder(parse.GetValue(folder)!, reportOptions);
            if (dataPath is not null && FolderReportImages.IsClassFolderLayout(dataPath))
                return EvaluateReport.OnFolder(console, resolved, dataPath, batch, reportFolder, reportOptions);
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
                if (reportFolder is not null)
                {
                    var names = resolved.ClassNames ?? t.ClassNames;
                    EvaluateReport.Write(console, model, new TensorReportImages(t.Images, t.Labels), names, batch, reportFolder, reportOptions);
                }
            }
            return 0;
        }));
        return command;
    }
}
