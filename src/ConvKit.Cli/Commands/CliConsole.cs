using Spectre.Console;

namespace ConvKit.Cli.Commands;

/// <summary>Where commands write: plain writers for text, and a Spectre console on the same output for tables.</summary>
public sealed class CliConsole
{
    /// <summary>Wraps the writers; tables are rendered without colours when the output is not a terminal.</summary>
    public CliConsole(TextWriter output, TextWriter error)
    {
        Output = output;
        Error = error;
        bool terminal = ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected;
        Ansi = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        if (!terminal) Ansi.Profile.Width = 200;
    }

    /// <summary>Standard output.</summary>
    public TextWriter Output { get; }

    /// <summary>Standard error.</summary>
    public TextWriter Error { get; }

    /// <summary>Spectre.Console on <see cref="Output"/>.</summary>
    public IAnsiConsole Ansi { get; }

    /// <summary>
    /// Runs a command body; a ConvKit error (or a bad argument value) becomes a one-line message on standard error and
    /// exit code 1, without a stack trace.
    /// </summary>
    public int Guard(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is ConvKitException or ArgumentException or FormatException)
        {
            Error.WriteLine("error: " + e.Message.ReplaceLineEndings(" "));
            return 1;
        }
    }
}
