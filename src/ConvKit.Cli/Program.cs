using System.CommandLine;
using ConvKit.Cli.Commands;

namespace ConvKit.Cli;

/// <summary>The <c>convkit</c> command.</summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>Runs the command line with the given writers (tests pass StringWriters). Returns the exit code.</summary>
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        Native.TorchNative.Initialize();
        var root = BuildRootCommand(new CliConsole(output, error));
        return root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
    }

    /// <summary>The root command with every subcommand.</summary>
    public static RootCommand BuildRootCommand(CliConsole console)
    {
        var root = new RootCommand("ConvKit: Keras-style convolutional networks for .NET.");
        root.Subcommands.Add(ModelsCommand.Create(console));
        root.Subcommands.Add(SummaryCommand.Create(console));
        root.Subcommands.Add(TrainCommand.Create(console));
        root.Subcommands.Add(EvaluateCommand.Create(console));
        root.Subcommands.Add(ExportCommand.Create(console));
        root.Subcommands.Add(PredictCommand.Create(console));
        root.Subcommands.Add(ServeCommand.Create(console));
        root.Subcommands.Add(ImportCommand.Create(console));
        root.Subcommands.Add(ExplainCommand.Create(console));
        root.Subcommands.Add(QuantizeCommand.Create(console));
        return root;
    }
}
