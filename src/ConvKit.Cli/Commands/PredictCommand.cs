using System.CommandLine;
using System.Globalization;
using ConvKit.Applications;
using ConvKit.Data.Imaging;
using ConvKit.Models.Inference;
using ConvKit.Quantization;

namespace ConvKit.Cli.Commands;

/// <summary><c>convkit predict &lt;model&gt; [--weights file|imagenet] &lt;images...&gt;</c>: the top classes of each image.</summary>
public static class PredictCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliConsole console)
    {
        var model = new Argument<string>("model") { Description = "A zoo name (see 'convkit models'), or what 'convkit train' wrote: the run folder, its model folder or model.safetensors; or an int8 .onnx written by 'convkit quantize'." };
        var images = new Argument<string[]>("images") { Description = "JPEG/PNG/BMP/GIF/WebP image files.", Arity = ArgumentArity.OneOrMore };
        var weights = new Option<string?>("--weights") { Description = "Weights for a zoo model: 'imagenet' (Keras' published file, cached in ~/.convkit/weights or $CONVKIT_WEIGHTS), a .h5 / .safetensors file, or a run/model folder written by 'convkit train'. Default: random weights." };
        var top = new Option<int>("--top") { Description = "Number of classes to print per image.", DefaultValueFactory = _ => 5 };
        var batchSize = new Option<int>("--batch-size") { Description = "Images decoded and classified together (memory grows with it, not with the number of files).", DefaultValueFactory = _ => ImageClassifier.DefaultBatchSize };
        var maxPixels = new Option<long>("--max-pixels") { Description = "Pixel budget: images whose header declares more pixels (width x height) are refused before decoding.", DefaultValueFactory = _ => ImageDecodeOptions.DefaultMaxPixels };
        var command = new Command("predict", "Classify images: decode, resize and center-crop to the model input, apply its preprocessing, print the top classes. An image that cannot be used gets a one-line error and the others go on; the exit code is 1 if any failed.");
        command.Arguments.Add(model);
        command.Arguments.Add(images);
        command.Options.Add(weights);
        command.Options.Add(top);
        command.Options.Add(batchSize);
        command.Options.Add(maxPixels);
        var threads = ThreadsOption.Create();
        command.Options.Add(threads);
        var engine = EngineOption.Create();
        command.Options.Add(engine);
        command.SetAction(parse => console.Guard(() =>
        {
            ThreadsOption.Apply(parse, threads);
            var inferenceEngine = EngineOption.Parse(parse, engine);
            int k = parse.GetValue(top);
            if (k <= 0) throw new InvalidOptionException("--top", $"--top must be a positive integer; received {k}.");
            int batch = parse.GetValue(batchSize);
            if (batch <= 0) throw new InvalidOptionException("--batch-size", $"--batch-size must be a positive integer; received {batch}.");
            long budget = parse.GetValue(maxPixels);
            if (budget <= 0) throw new InvalidOptionException("--max-pixels", $"--max-pixels must be a positive integer; received {budget}.");
            var decodeOptions = new ImageDecodeOptions { MaxPixels = budget };
            var name = parse.GetValue(model)!;
            var w = parse.GetValue(weights);
            if (QuantizeCommand.IsInt8File(name))
                return PredictInt8(console, name, w, inferenceEngine, parse.GetValue(images)!, k, batch, decodeOptions);
            using var resolved = ModelResolver.Resolve(name, w);
            bool random = resolved.Kind == ModelSourceKind.Zoo && w is null;
            resolved.Model.InferenceEngine = inferenceEngine;
            using var classifier = new ImageClassifier(resolved.Model, resolved.Preprocessing, resolved.ClassNames, ownsModel: true);
            resolved.Release();
            var output = console.Output;
            if (random) output.WriteLine($"note: {name} has random weights; pass --weights imagenet or a weights file for meaningful classes.");
            return Print(console, classifier.Classify(parse.GetValue(images)!, k, batch, decodeOptions));
        }));
        return command;
    }

    /// <summary>An int8 model written by 'convkit quantize': ONNX Runtime runs it, with the preprocessing and class names
    /// stored in the file.</summary>
    static int PredictInt8(CliConsole console, string file, string? weights, InferenceEngine engine, string[] images, int top, int batch, ImageDecodeOptions decodeOptions)
    {
        if (weights is not null)
            throw new InvalidOptionException("--weights", $"--weights does not apply to the int8 model '{file}' (written by 'convkit quantize'; its weights are in the file).");
        if (engine is not (InferenceEngine.Auto or InferenceEngine.OnnxRuntime))
            throw new InvalidOptionException("--engine", $"--engine {engine.ToString().ToLowerInvariant()} does not apply to the int8 model '{file}': ONNX Runtime runs it.");
        var quantized = QuantizedModel.Load(file);
        ImageClassifier classifier;
        try { classifier = new ImageClassifier(quantized, quantized.Preprocessing ?? Preprocessing.None, quantized.ClassNames, ownsModel: true); }
        catch
        {
            quantized.Dispose();
            throw;
        }
        using var owned = classifier;
        if (quantized.Preprocessing is null)
            console.Output.WriteLine($"note: '{file}' records no preprocessing; pixels are scaled to [0, 1] (quantize with 'convkit quantize' to store the run's).");
        return Print(console, classifier.Classify(images, top, batch, decodeOptions));
    }

    /// <summary>Prints each prediction (or its one-line error on standard error) as it comes; 1 if any image failed.</summary>
    static int Print(CliConsole console, IEnumerable<ImagePrediction> predictions)
    {
        int total = 0, failed = 0;
        foreach (var p in predictions)
        {
            total++;
            if (p.Error is { } e)
            {
                failed++;
                console.Error.WriteLine("error: " + e.Message.ReplaceLineEndings(" "));
                continue;
            }
            console.Output.WriteLine(ImageDecodeException.Sanitize(p.Path));
            for (int i = 0; i < p.Top.Count; i++)
            {
                var s = p.Top[i];
                console.Output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {i + 1}. {s.Probability * 100,7:0.00}%  {s.Name} ({s.Index})"));
            }
        }
        if (failed == 0) return 0;
        console.Error.WriteLine($"error: {failed} of {total} images could not be classified.");
        return 1;
    }
}
