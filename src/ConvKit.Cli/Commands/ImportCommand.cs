using System.CommandLine;
using System.Globalization;
using ConvKit.Applications;
using ConvKit.Formats.Onnx;

namespace ConvKit.Cli.Commands;

/// <summary>
/// <c>convkit import model.onnx --out DIR</c>: imports an ONNX CNN into a trainable ConvKit model and writes a model
/// folder as <c>convkit train</c> does (model.safetensors and training.json with the preprocessing and class names),
/// which summary, predict, evaluate, export and train --weights take.
/// </summary>
public static class ImportCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliConsole console)
    {
        var file = new Argument<string>("model") { Description = "The ONNX file (opsets 7 to 17)." };
        var outDir = new Option<string>("--out") { Description = "The model folder to write (created; must not hold a model yet).", Required = true };
        var preprocess = new Option<string>("--preprocess") { Description = "The pixel preprocessing the network expects: torch (ImageNet mean/std), caffe (BGR, mean subtracted), tf ([-1, 1]) or none ([0, 1]).", DefaultValueFactory = _ => "none" };
        preprocess.AcceptOnlyFromAmong("torch", "caffe", "tf", "none");
        var labels = new Option<string?>("--labels") { Description = "A text file with one class name per line, in output order. Default: class_0, class_1, ..." };
        var inputShape = new Option<string?>("--input-shape") { Description = "Build for another input size, height,width,channels (where the graph allows it; the batch is always free)." };
        var globalPooling = new Option<bool>("--global-pooling") { Description = "Turn a pooling whose window covers its whole input into global pooling, so other input sizes work." };
        var command = new Command("import", "Import an ONNX model into a ConvKit model folder (trainable weights, NCHW semantics kept; predict takes images as usual).");
        command.Arguments.Add(file);
        foreach (var o in new Option[] { outDir, preprocess, labels, inputShape, globalPooling }) command.Options.Add(o);
        var threads = ThreadsOption.Create();
        command.Options.Add(threads);
        command.SetAction(parse => console.Guard(() =>
        {
            ThreadsOption.Apply(parse, threads);
            var source = parse.GetValue(file)!;
            var folder = parse.GetValue(outDir)!;
            if (File.Exists(Path.Combine(folder, TrainedModelFolder.ModelFile)))
                throw new ConvKitException($"--out '{folder}' already holds a model ({TrainedModelFolder.ModelFile}); choose another folder.");
            if (File.Exists(folder)) throw new ConvKitException($"--out '{folder}' is a file; give a folder.");
            var preprocessing = parse.GetValue(preprocess) switch { "torch" => Preprocessing.Torch, "caffe" => Preprocessing.Caffe, "tf" => Preprocessing.TF, _ => Preprocessing.None };
            var options = new OnnxImportOptions
            {
                InputShape = parse.GetValue(inputShape) is { } s ? SummaryCommand.ParseShape(s) : null,
                GlobalPoolingForFullWindow = parse.GetValue(globalPooling),
            };
            string[]? names = null;
            if (parse.GetValue(labels) is { } labelFile)
            {
                if (!File.Exists(labelFile)) throw new ConvKitException($"--labels '{labelFile}' does not exist.");
                names = File.ReadAllLines(labelFile).Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();
                if (names.Length == 0) throw new ConvKitException($"--labels '{labelFile}' names no class.");
            }
            var result = OnnxImport.Import(source, options);
            using var model = result.Model;
            var output = model.ModelOutputShape;
            int classes = output.Rank == 1 ? output[0] : (int)Math.Max(1, output.Size);
            if (names is not null && names.Length != classes)
                throw new ConvKitException($"--labels names {names.Length} classes, but the model outputs {classes} values.");
            names ??= Enumerable.Range(0, classes).Select(i => "class_" + i.ToString(CultureInfo.InvariantCulture)).ToArray();
            var input = model.ModelInputShape;
            var info = new TrainedModelInfo("onnx:" + Path.GetFileName(source), "imported", names)
            {
                InputShape = input.Rank == 3 ? input.ToArray() : null,
                ColorMode = input.Rank == 3 ? input[2] switch { 1 => "grayscale", 3 => "rgb", _ => null } : null,
                Preprocessing = preprocessing.ToString(),
            };
            Directory.CreateDirectory(folder);
            TrainedModelFolder.Save(folder, model, info);
            foreach (var w in result.Warnings) console.Error.WriteLine("warning: " + w);
            console.Output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"Imported {Path.GetFileName(source)} ({result.Producer}, opset {result.Opset}): {model.Layers.Count} layers, {model.CountParams():N0} parameters, input {input.ToBatchString()}, output {output.ToBatchString()}."));
            console.Output.WriteLine($"Wrote {Path.Combine(folder, TrainedModelFolder.ModelFile)} and {TrainedModelFolder.InfoFile}.");
            return 0;
        }));
        return command;
    }
}
