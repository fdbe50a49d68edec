using System.CommandLine;
using System.Globalization;
using ConvKit.Applications;
using Spectre.Console;

namespace ConvKit.Cli.Commands;

/// <summary><c>convkit models [pattern]</c>: the model zoo as a table.</summary>
public static class ModelsCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliConsole console)
    {
        var pattern = new Argument<string?>("pattern")
        {
            Description = "Wildcard filter on model names, e.g. 'resnet*'.",
            Arity = ArgumentArity.ZeroOrOne,
            DefaultValueFactory = _ => null,
        };
        var command = new Command("models", "List the models of the zoo: parameters, MACs, input, reference accuracy, source.");
        command.Arguments.Add(pattern);
        command.SetAction(parse => console.Guard(() => Run(console, parse.GetValue(pattern))));
        return command;
    }

    static int Run(CliConsole console, string? pattern)
    {
        var models = ModelRegistry.List(pattern);
        if (models.Count == 0) throw new UnknownNameException("model", pattern ?? "", $"no model matches '{pattern}'.");
        var table = new Table().AddColumns("Name", "Params", "MACs", "Input", "Reference accuracy", "Source");
        table.Columns[1].RightAligned();
        table.Columns[2].RightAligned();
        foreach (var m in models)
        {
            table.AddRow(
                Markup.Escape(m.Name),
                m.ParamCount.ToString("N0", CultureInfo.InvariantCulture),
                FormatMacs(m.Macs),
                Markup.Escape(m.DefaultInputShape.ToString()),
                Markup.Escape(m.Accuracy?.ToString() ?? "-"),
                Markup.Escape(m.Source));
        }
        console.Ansi.Write(table);
        return 0;
    }

    /// <summary>MACs with a metric suffix: <c>15.47 G</c>, <c>429.1 K</c>.</summary>
    public static string FormatMacs(long macs) => macs switch
    {
        >= 1_000_000_000 => (macs / 1e9).ToString("0.00", CultureInfo.InvariantCulture) + " G",
        >= 1_000_000 => (macs / 1e6).ToString("0.00", CultureInfo.InvariantCulture) + " M",
        >= 1_000 => (macs / 1e3).ToString("0.0", CultureInfo.InvariantCulture) + " K",
        _ => macs.ToString(CultureInfo.InvariantCulture),
    };
}
