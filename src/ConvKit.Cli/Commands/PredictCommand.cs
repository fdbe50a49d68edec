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
        var model = new Argument<string>("model") { Description = "Registry name of the model (see 'convkit models')." };
        var images = new Argument<string[]>("images") { Description = "JPEG/PNG image files.", Arity = ArgumentArity.OneOrMore };
        var weights = new Option<string?>("--weights") { Description = "Weights: 'imagenet' (Keras' published file, cached in ~/.convkit/weights or $CONVKIT_WEIGHTS), or a .h5 / .safetensors file. Default: random weights." };
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
            using var classifier = ImageClassifier.FromRegistry(name, w);
            var output = console.Output;
            if (w is null) output.WriteLine($"note: {name} has random weights; pass --weights imagenet or a weights file for meaningful classes.");
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
