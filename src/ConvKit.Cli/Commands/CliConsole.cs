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
    /// Runs a command body; a ConvKit error, a bad argument value or a filesystem error (no space, read-only, permission
    /// denied: .NET's message names the path) becomes a one-line message on standard error and exit code 1, without a
    /// stack trace.
    /// </summary>
    public int Guard(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is ConvKitException or ArgumentException or FormatException or IOException or UnauthorizedAccessException)
        {
            Error.WriteLine("error: " + OneLine(e.Message));
            return 1;
        }
    }

    /// <summary>A message on one line: line breaks become spaces, control characters (NUL, escapes) are dropped.</summary>
    public static string OneLine(string message) =>
        new(message.ReplaceLineEndings(" ").Where(c => !char.IsControl(c)).ToArray());
}
