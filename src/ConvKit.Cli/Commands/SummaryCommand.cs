using System.CommandLine;
using System.Globalization;
using ConvKit.Applications;
using ConvKit.Models;

namespace ConvKit.Cli.Commands;

/// <summary><c>convkit summary &lt;name&gt;</c>: a zoo model's Keras-style summary for the given options.</summary>
public static class SummaryCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliConsole console)
    {
        var name = new Argument<string>("name") { Description = "Registry name of the model (see 'convkit models')." };
        var inputShape = new Option<string?>("--input-shape") { Description = "Input shape as height,width,channels, e.g. 32,32,3." };
        var classes = new Option<int?>("--classes") { Description = "Number of classes of the classifier." };
        var noTop = new Option<bool>("--no-top") { Description = "Leave out the classifier (include_top=false)." };
        var pooling = new Option<string?>("--pooling") { Description = "Global pooling without the top: avg or max." };
        pooling.AcceptOnlyFromAmong("avg", "max");
        var macs = new Option<bool>("--macs") { Description = "Add a column with multiply-accumulates per sample." };
        var command = new Command("summary", "Print the summary of a zoo model, as Keras' model.summary().");
        command.Arguments.Add(name);
        foreach (var o in new Option[] { inputShape, classes, noTop, pooling, macs }) command.Options.Add(o);
        var threads = ThreadsOption.Create();
        command.Options.Add(threads);
        command.SetAction(parse => console.Guard(() =>
        {
            ThreadsOption.Apply(parse, threads);
            if (parse.GetValue(classes) is { } c && c < 1) throw new InvalidOptionException("--classes", $"--classes must be positive; received {c}.");
            var options = new ModelOptions
            {
                IncludeTop = !parse.GetValue(noTop),
                InputShape = parse.GetValue(inputShape) is { } s ? ParseShape(s) : null,
                Classes = parse.GetValue(classes),
                Pooling = parse.GetValue(pooling) switch { "avg" => PoolingMode.Avg, "max" => PoolingMode.Max, _ => PoolingMode.None },
            };
            using var model = ModelRegistry.Create(parse.GetValue(name)!, options);
            console.Output.Write(model.Summary(new SummaryOptions { ShowMacs = parse.GetValue(macs) }));
            return 0;
        }));
        return command;
    }

    /// <summary>Parses <c>32,32,3</c> (or <c>32x32x3</c>) into a shape.</summary>
    /// <exception cref="InvalidOptionException">Not three positive integers.</exception>
    public static Shape ParseShape(string text)
    {
        var parts = text.Split([',', 'x', 'X'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var dims = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out dims[i]) || dims[i] <= 0)
                throw new InvalidOptionException("--input-shape", $"--input-shape must be height,width,channels of positive integers, e.g. 32,32,3; received '{text}'.");
        if (dims.Length != 3)
            throw new InvalidOptionException("--input-shape", $"--input-shape must have three values (height,width,channels); received '{text}'.");
        return new Shape(dims);
    }
}
