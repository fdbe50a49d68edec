using System.CommandLine;
using System.Globalization;
using ConvKit.Applications;

namespace ConvKit.Cli.Commands;

/// <summary><c>convkit predict &lt;model&gt; [--weights file|imagenet] &lt;images...&gt;</c>: the top classes of each image.</summary>
public static class PredictCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliConsole console)
    {
        var model = new Argument<string>("model") { Description = "A zoo name (see 'convkit models'), or what 'convkit train' wrote: the run folder, its model folder or model.safetensors." };
        var images = new Argument<string[]>("images") { Description = "JPEG/PNG image files.", Arity = ArgumentArity.OneOrMore };
        var weights = new Option<string?>("--weights") { Description = "Weights for a zoo model: 'imagenet' (Keras' published file, cached in ~/.convkit/weights or $CONVKIT_WEIGHTS), a .h5 / .safetensors file, or a run/model folder written by 'convkit train'. Default: random weights." };
        var top = new Option<int>("--top") { Description = "Number of classes to print per image.", DefaultValueFactory = _ => 5 };
        var command = new Command("predict", "Classify images: decode, resize and center-crop to the model input, apply its preprocessing, print the top classes.");
        command.Arguments.Add(model);
        command.Arguments.Add(images);
        command.Options.Add(weights);
        command.Options.Add(top);
        command.SetAction(parse => console.Guard(() =>
        {
            int k = parse.GetValue(top);
            if (k <= 0) throw new FormatException($"--top must be a positive integer; received {k}.");
            var name = parse.GetValue(model)!;
            var w = parse.GetValue(weights);
            using var resolved = ModelResolver.Resolve(name, w);
            bool random = resolved.Kind == ModelSourceKind.Zoo && w is null;
            using var classifier = new ImageClassifier(resolved.Model, resolved.Preprocessing, resolved.ClassNames, ownsModel: true);
            resolved.Release();
            var output = console.Output;
            if (random) output.WriteLine($"note: {name} has random weights; pass --weights imagenet or a weights file for meaningful classes.");
            foreach (var p in classifier.Predict(parse.GetValue(images)!, k))
            {
                output.WriteLine(p.Path);
                for (int i = 0; i < p.Top.Count; i++)
                {
                    var s = p.Top[i];
                    output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {i + 1}. {s.Probability * 100,7:0.00}%  {s.Name} ({s.Index})"));
                }
            }
            return 0;
        }));
        return command;
    }
}
