using System.CommandLine;
using System.Globalization;
using ConvKit.Applications;
using ConvKit.Data.Imaging;
using ConvKit.Evaluation;
using ConvKit.Saving;

namespace ConvKit.Cli.Commands;

/// <summary>
/// <c>convkit explain RUN image...</c>: Grad-CAM heatmaps over images, one PNG per image
/// (<c>&lt;name&gt;.gradcam.png</c> next to the image, or in <c>--out</c>), with the class explained.
/// </summary>
public static class ExplainCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliConsole console)
    {
        var model = new Argument<string>("model") { Description = "What 'convkit train' wrote (the run folder, its model folder or model.safetensors), a model file, or a zoo name with --weights." };
        var images = new Argument<string[]>("images") { Description = "Image files (PNG, JPEG, BMP, GIF, WebP).", Arity = ArgumentArity.OneOrMore };
        var weights = new Option<string?>("--weights") { Description = "Weights to load (as for 'convkit predict')." };
        var output = new Option<string?>("--out") { Description = "Folder for the PNGs (created if missing; default: next to each image)." };
        var layer = new Option<string?>("--layer") { Description = "Layer whose feature map is explained (default: the last one with height and width)." };
        var cls = new Option<string?>("--class") { Description = "Class to explain, by name or index (default: the predicted class of each image)." };
        var command = new Command("explain", "Grad-CAM: where in each image the model looked for its class, as a heatmap over the image.");
        command.Arguments.Add(model);
        command.Arguments.Add(images);
        foreach (var o in new Option[] { weights, output, layer, cls }) command.Options.Add(o);
        var threads = ThreadsOption.Create();
        command.Options.Add(threads);
        command.SetAction(parse => console.Guard(() =>
        {
            ThreadsOption.Apply(parse, threads);
            var files = parse.GetValue(images)!;
            var outDir = parse.GetValue(output);
            if (outDir is not null && File.Exists(outDir)) throw new ConvKitException($"--out '{outDir}' is a file; name a folder.");
            using var resolved = ModelResolver.Resolve(parse.GetValue(model)!, parse.GetValue(weights));
            var m = resolved.Model;
            var names = resolved.ClassNames;
            long? target = parse.GetValue(cls) is { } c ? ClassIndex(c, names, m.ModelOutputShape[0]) : null;
            var cam = GradCam.For(m, parse.GetValue(layer));
            if (outDir is not null)
            {
                try { Directory.CreateDirectory(outDir); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new ConvKitException($"cannot create --out '{outDir}': {e.Message}", e);
                }
            }
            var shape = m.ModelInputShape;
            int failed = 0;
            foreach (var file in files)
            {
                float[] pixels;
                TorchSharp.torch.Tensor x;
                try
                {
                    pixels = new float[shape[0] * shape[1] * shape[2]];
                    ImageResizer.ResizeCenterCrop(ImageDecoder.Decode(file, shape[2]), shape[0], shape[1], pixels);
                    x = ImageClassifier.LoadImages([file], shape, resolved.Preprocessing);
                }
                catch (ImageDecodeException e)
                {
                    console.Error.WriteLine("error: " + CliConsole.OneLine(e.Message));
                    failed++;
                    continue;
                }
                using (x)
                {
                    var (maps, classes) = cam.Compute(x, target is { } t ? [t] : null);
                    float[] heat;
                    using (maps) heat = maps.data<float>().ToArray();
                    var png = GradCam.OverlayPng(pixels, shape[0], shape[1], shape[2], heat);
                    var dest = Path.Combine(outDir ?? Path.GetDirectoryName(Path.GetFullPath(file))!, Path.GetFileNameWithoutExtension(file) + ".gradcam.png");
                    AtomicFile.WriteOrExplain(dest, s => s.Write(png));
                    var name = names is not null && classes[0] < names.Count ? names[(int)classes[0]] : $"class {classes[0]}";
                    console.Output.WriteLine($"{ImageDecodeException.Sanitize(file)}: {name} (layer {cam.LayerName}) -> {ImageDecodeException.Sanitize(dest)}");
                }
            }
            return failed == 0 ? 0 : 1;
        }));
        return command;
    }

    static long ClassIndex(string value, IReadOnlyList<string>? names, int outputs)
    {
        if (names is not null)
            for (int i = 0; i < names.Count; i++)
                if (string.Equals(names[i], value, StringComparison.OrdinalIgnoreCase)) return i;
        if (int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int index) && index < outputs) return index;
        throw new ConvKitException($"--class '{value}' is neither a class name of the model{(names is null ? "" : $" ({string.Join(", ", names.Take(10))}{(names.Count > 10 ? ", ..." : "")})")} nor an index below {outputs}.");
    }
}
