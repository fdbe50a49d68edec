using System.CommandLine;
using System.Diagnostics;
using ConvKit.Applications;
using ConvKit.Data;
using ConvKit.Models;
using ConvKit.Models.Inference;
using ConvKit.Quantization;
using ConvKit.Saving;
using Spectre.Console;
using TorchSharp;

namespace ConvKit.Cli.Commands;

/// <summary>
/// <c>convkit quantize RUN --calibration-data DIR|NAME</c>: post-training static int8 quantization of a trained model
/// (<see cref="Quantizer"/>), written as a QDQ .onnx file, with FP32 and int8 accuracy and speed side by side.
/// </summary>
public static class QuantizeCommand
{
    /// <summary>The file name written inside an --out folder (and inside RUN/quantized by default).</summary>
    public const string FileName = "model.int8.onnx";

    /// <summary>Creates the command.</summary>
    public static Command Create(CliConsole console)
    {
        var run = new Argument<string>("model") { Description = "What 'convkit train' wrote (the run folder, its model folder or model.safetensors), or a model file saved with Model.Save." };
        var calibration = new Option<string?>("--calibration-data") { Description = "Calibration images: a folder of class subfolders, or a built-in dataset name (fashion_mnist, mnist, ...: its training split)." };
        var samples = new Option<int>("--samples") { Description = "Calibration samples (the first ones).", DefaultValueFactory = _ => 500 };
        var testData = new Option<string?>("--test-data") { Description = "Where to measure accuracy: a folder of class subfolders or a built-in dataset name (its test split). Default: the test split of the dataset the run was trained on." };
        var output = new Option<string?>("--out") { Description = $"The .onnx file to write, or a folder to write {FileName} into. Default: <run>/quantized/{FileName}." };
        var overwrite = new Option<bool>("--overwrite") { Description = "Replace an existing --out file." };
        var method = new Option<string>("--method") { Description = "Calibration: minmax, or percentile (99.999th).", DefaultValueFactory = _ => "minmax" };
        method.AcceptOnlyFromAmong("minmax", "percentile");
        var batchSize = new Option<int>("--batch-size") { Description = "Samples per batch for calibration, accuracy and speed.", DefaultValueFactory = _ => 128 };
        var speedSeconds = new Option<double>("--speed-seconds") { Description = "Seconds per engine for the images/s comparison (0: skip it).", DefaultValueFactory = _ => 2 };
        var command = new Command("quantize", "Quantize a trained model to int8 (post-training static quantization, QDQ ONNX run by ONNX Runtime) and compare accuracy and speed with FP32.");
        command.Arguments.Add(run);
        foreach (var o in new Option[] { calibration, samples, testData, output, overwrite, method, batchSize, speedSeconds }) command.Options.Add(o);
        var threads = ThreadsOption.Create();
        command.Options.Add(threads);
        command.SetAction(parse => console.Guard(() =>
        {
            ThreadsOption.Apply(parse, threads);
            var source = parse.GetValue(run)!;
            var calibrationData = parse.GetValue(calibration)
                ?? throw new InvalidOptionException("--calibration-data", "--calibration-data is required: a folder of class subfolders or a built-in dataset name (fashion_mnist).");
            int n = parse.GetValue(samples);
            if (n < 1) throw new InvalidOptionException("--samples", $"--samples must be positive; received {n}.");
            int batch = parse.GetValue(batchSize);
            if (batch < 1) throw new InvalidOptionException("--batch-size", $"--batch-size must be positive; received {batch}.");
            double seconds = parse.GetValue(speedSeconds);
            if (!(seconds >= 0 && seconds <= 600)) throw new InvalidOptionException("--speed-seconds", $"--speed-seconds must be between 0 and 600; received {seconds}.");
            var calibrationSource = DataSource.Parse("--calibration-data", calibrationData);
            var testSource = parse.GetValue(testData) is { } td ? DataSource.Parse("--test-data", td) : null;
            if (!File.Exists(source) && !Directory.Exists(source))
                throw new InvalidOptionException("model", $"model '{source}' does not exist: name a run folder, its model folder or a model file.");
            var outPath = OutputPath(source, parse.GetValue(output), parse.GetValue(overwrite));

            using var resolved = ModelResolver.Resolve(source);
            var model = resolved.Model;
            testSource ??= resolved.Dataset is { } trained ? new DataSource(null, Datasets.Get(trained)) : null;

            using var calibrationImages = calibrationSource.Calibration(console, resolved, n, batch);
            console.Output.WriteLine($"Calibrating {model.Name} on {calibrationImages.shape[0]} samples of {calibrationData}...");
            var options = new QuantizationOptions
            {
                Samples = n,
                BatchSize = batch,
                Method = parse.GetValue(method) == "percentile" ? CalibrationMethod.Percentile : CalibrationMethod.MinMax,
                // Stored in the file, so that 'convkit predict|serve' prepare and name images as for the FP32 model.
                Preprocessing = resolved.Preprocessing,
                ClassNames = resolved.ClassNames, // the resolver checked them against the model's classes
            };
            var sw = Stopwatch.StartNew();
            using var quantized = Quantizer.Quantize(model, calibrationImages, options);
            quantized.Save(outPath);
            console.Output.WriteLine($"wrote {outPath} ({new FileInfo(outPath).Length:N0} bytes, {quantized.Calibration}, {sw.Elapsed.TotalSeconds:F1} s)");
            console.Output.WriteLine($"classify images with it: convkit predict {outPath} IMAGE...   serve it: convkit serve {outPath}");

            var table = new Table().AddColumns("", "FP32", "int8");
            if (testSource is not null)
            {
                var (a32, a8, count, label) = testSource.Accuracy(console, resolved, quantized, batch);
                table.AddRow($"accuracy ({label}, {count} images)", $"{a32:P2}", $"{a8:P2} ({(a8 - a32) * 100:+0.00;-0.00;0.00} points)");
            }
            else console.Output.WriteLine("accuracy: no test data (the run names no built-in dataset; give --test-data).");
            if (seconds > 0)
            {
                using var x = calibrationImages.narrow(0, 0, Math.Min(batch, calibrationImages.shape[0]));
                var speed = Speed(model, quantized, x, seconds);
                var best = speed.Fp32.MaxBy(kv => kv.Value);
                table.AddRow($"images/s (batch {x.shape[0]}, {Backend.Threads} threads)",
                    $"{best.Value:F0} ({best.Key}; {string.Join(", ", speed.Fp32.Where(kv => kv.Key != best.Key).Select(kv => $"{kv.Key} {kv.Value:F0}"))})",
                    $"{speed.Int8:F0} ({speed.Int8 / best.Value:F2}x)");
            }
            table.AddRow("file", $"{model.CountParams() * 4L:N0} bytes of weights", $"{quantized.SizeInBytes:N0} bytes");
            console.Ansi.Write(table);
            return 0;
        }));
        return command;
    }

    /// <summary>Whether the model argument of predict, evaluate or serve is an int8 file written by <c>convkit
    /// quantize</c>; an ONNX file whose structure is damaged is reported as such (its error names the byte) rather
    /// than passed on as "an ONNX model".</summary>
    /// <exception cref="Formats.Onnx.OnnxFormatException">The file is an ONNX file, truncated or corrupt.</exception>
    public static bool IsInt8File(string path)
    {
        if (QuantizedModel.IsQuantizedModelFile(path)) return true;
        if (File.Exists(path) && FileSignature.Detect(path) == FileKind.Onnx) Formats.Onnx.OnnxReader.ReadMetadata(path);
        return false;
    }

    /// <summary>
    /// <c>convkit evaluate model.int8.onnx --dataset NAME | --data CLASS-FOLDERS [--report DIR]</c>: the quantized model's
    /// accuracy on a built-in dataset's test split (scaled by 1/255, as <c>train</c> feeds it), or on a folder of class
    /// subfolders read with the preprocessing and class names stored in the file; with the evaluation report (per-class
    /// metrics, confusion matrix, top-k, most confident mistakes; no Grad-CAM, which needs gradients).
    /// </summary>
    /// <exception cref="InvalidOptionException">No --dataset and no class folders, a class folder for a file that records
    /// no preprocessing or class names, or --grad-cam asked for.</exception>
    public static int Evaluate(CliConsole console, string path, DatasetInfo? dataset, string? dataPath, int batch,
        EvaluateReport.Options reportOptions, bool gradCamAsked)
    {
        var reportFolder = reportOptions.Folder; // a file has no run folder to default to
        if (gradCamAsked && reportOptions.GradCam > 0)
            throw new InvalidOptionException("--grad-cam", $"--grad-cam does not apply to the int8 model '{path}': Grad-CAM needs gradients; run it on the FP32 run.");
        using var quantized = QuantizedModel.Load(path);
        var input = quantized.InputShape;
        if (dataPath is not null && FolderReportImages.IsClassFolderLayout(dataPath))
        {
            if (quantized.Preprocessing is not { } preprocessing || quantized.ClassNames is not { } classNames)
                throw new InvalidOptionException("--data", $"--data '{dataPath}' is a folder of class subfolders, but '{path}' records no {(quantized.Preprocessing is null ? "preprocessing" : "class names")} to read it with: quantize the run again with 'convkit quantize', which stores them.");
            var images = new FolderReportImages(dataPath, classNames, input, preprocessing);
            console.Output.WriteLine($"{quantized.ModelName} (int8, {quantized.Calibration}) on '{dataPath}' ({images.Count} images, {classNames.Count} classes):");
            EvaluateReport.Write(console, quantized, images, classNames, batch, reportFolder, reportOptions with { GradCam = 0 });
            return 0;
        }
        if (dataset is null) throw new InvalidOptionException("--dataset", $"--dataset is required to evaluate the quantized model '{path}' (it records no dataset), or --data with a folder of class subfolders.");
        using var splits = TrainCommand.LoadDataset(console, dataset, dataPath);
        var t = splits.Test;
        if (!(input.Rank == 3 && input[0] == t.Height && input[1] == t.Width && input[2] == t.Channels))
            throw new ShapeException($"'{path}' takes {input.ToBatchString()}, but the {dataset.Name} test images are {t.Height}x{t.Width}x{t.Channels}.");
        var test = new TensorReportImages(t.Images, t.Labels);
        var names = quantized.ClassNames is { } stored && stored.Count == t.ClassNames.Count ? stored : t.ClassNames;
        console.Output.WriteLine($"{quantized.ModelName} (int8, {quantized.Calibration}) on the {dataset.Name} test split ({t.Count} images):");
        EvaluateReport.Write(console, quantized, test, names, batch, reportFolder, reportOptions with { GradCam = 0 });
        return 0;
    }

    /// <summary>--out as a file: the default beside the run, a folder's <see cref="FileName"/>, or the file named.</summary>
    static string OutputPath(string source, string? output, bool overwrite)
    {
        string path;
        if (output is null)
        {
            var folder = Directory.Exists(source) ? source : Path.GetDirectoryName(Path.GetFullPath(source))!;
            if (File.Exists(Path.Combine(folder, TrainedModelFolder.InfoFile)) && !Directory.Exists(Path.Combine(folder, TrainedModelFolder.RunModelFolder)))
                folder = Path.GetDirectoryName(Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar))!; // a run's model folder: write beside it
            path = Path.Combine(folder, "quantized", FileName);
        }
        else if (string.IsNullOrWhiteSpace(output)) throw new InvalidOptionException("--out", "--out must name a file or a folder; received an empty value.");
        else if (Directory.Exists(output) || !output.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase)) path = Path.Combine(output, FileName);
        else path = output;
        if (File.Exists(path) && !overwrite) throw new InvalidOptionException("--out", $"--out: '{path}' exists; add --overwrite to replace it.");
        if (Directory.Exists(path)) throw new InvalidOptionException("--out", $"--out: '{path}' is a folder.");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        return path;
    }

    static (Dictionary<string, double> Fp32, double Int8) Speed(Model model, QuantizedModel quantized, torch.Tensor x, double seconds)
    {
        using var ts = model.AsInferenceModel(InferenceEngine.TorchSharp);
        using var ort = model.AsInferenceModel(InferenceEngine.OnnxRuntime);
        var engines = new List<(string Name, Action Once)>
        {
            ("TorchSharp", () => ts.Predict(x, batchSize: (int)x.shape[0]).Dispose()),
            ("int8", () => quantized.Predict(x, batchSize: (int)x.shape[0]).Dispose()),
        };
        if (ort.Engine == InferenceEngine.OnnxRuntime) engines.Insert(1, ("ONNX Runtime", () => ort.Predict(x, batchSize: (int)x.shape[0]).Dispose()));
        foreach (var (_, once) in engines) once();
        var best = engines.ToDictionary(e => e.Name, _ => 0.0);
        // Two alternating rounds, best of each: the machine's noise hits every engine alike.
        for (int round = 0; round < 2; round++)
            foreach (var (name, once) in round == 0 ? engines : Enumerable.Reverse(engines))
            {
                int count = 0;
                var sw = Stopwatch.StartNew();
                while (sw.Elapsed.TotalSeconds < seconds / 2 || count < 1) { once(); count++; }
                best[name] = Math.Max(best[name], count * x.shape[0] / sw.Elapsed.TotalSeconds);
            }
        double int8 = best["int8"];
        best.Remove("int8");
        return (best, int8);
    }

    /// <summary>A folder of class subfolders or a built-in dataset.</summary>
    sealed record DataSource(string? Folder, DatasetInfo? Dataset)
    {
        public static DataSource Parse(string option, string value)
        {
            if (string.IsNullOrWhiteSpace(value)) throw new InvalidOptionException(option, $"{option} must name a folder or a dataset; received an empty value.");
            if (Directory.Exists(value))
            {
                if (!FolderReportImages.IsClassFolderLayout(value))
                    throw new InvalidOptionException(option, $"{option} '{value}' holds no class subfolders of images (PNG, JPEG, BMP, GIF, WebP).");
                return new DataSource(value, null);
            }
            try { return new DataSource(null, Datasets.Get(value)); }
            catch (UnknownNameException e) { throw new InvalidOptionException(option, $"{option} '{value}' is neither a folder nor a built-in dataset. {e.Message}", e); }
        }

        IReportImages Images(CliConsole console, ResolvedModel resolved, bool test, out DatasetSplits? owned)
        {
            owned = null;
            if (Folder is not null)
            {
                var names = resolved.ClassNames ?? [.. Directory.GetDirectories(Folder).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal)];
                return new FolderReportImages(Folder, names, resolved.Model.ModelInputShape, resolved.Preprocessing);
            }
            owned = TrainCommand.LoadDataset(console, Dataset!, null);
            var split = test ? owned.Test : owned.Train;
            var input = resolved.Model.ModelInputShape;
            if (!(input.Rank == 3 && input[0] == split.Height && input[1] == split.Width && input[2] == split.Channels))
                throw new ShapeException($"'{resolved.Source}' takes {input.ToBatchString()}, but the {Dataset!.Name} images are {split.Height}x{split.Width}x{split.Channels}.");
            return new TensorReportImages(split.Images, split.Labels);
        }

        public torch.Tensor Calibration(CliConsole console, ResolvedModel resolved, int samples, int batch)
        {
            var images = Images(console, resolved, test: false, out var owned);
            using (owned)
            {
                var parts = new List<torch.Tensor>();
                long have = 0;
                foreach (var (x, _) in images.Batches(batch))
                {
                    parts.Add(x.narrow(0, 0, Math.Min(x.shape[0], samples - have)).clone());
                    have += parts[^1].shape[0];
                    if (have >= samples) break;
                }
                try { return torch.cat(parts, 0); }
                finally { foreach (var p in parts) p.Dispose(); }
            }
        }

        public (double Fp32, double Int8, long Count, string Label) Accuracy(CliConsole console, ResolvedModel resolved, QuantizedModel quantized, int batch)
        {
            var images = Images(console, resolved, test: true, out var owned);
            using (owned)
            {
                long right32 = 0, right8 = 0, count = 0;
                using var inference = resolved.Model.AsInferenceModel(InferenceEngine.Auto);
                foreach (var (x, y) in images.Batches(batch))
                {
                    using var p32 = inference.Predict(x, batchSize: batch);
                    using var p8 = quantized.Predict(x, batchSize: batch);
                    using var c32 = p32.argmax(1).eq(y).sum();
                    using var c8 = p8.argmax(1).eq(y).sum();
                    right32 += c32.item<long>();
                    right8 += c8.item<long>();
                    count += x.shape[0];
                }
                return (right32 / (double)Math.Max(count, 1), right8 / (double)Math.Max(count, 1), count,
                    Folder is not null ? $"'{Folder}'" : $"{Dataset!.Name} test split");
            }
        }
    }
}
