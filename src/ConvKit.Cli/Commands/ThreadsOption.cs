using System.CommandLine;

namespace ConvKit.Cli.Commands;

/// <summary>
/// <c>--threads N</c>, on every command that computes: libtorch's intra-op threads for this run (<see cref="Backend.Threads"/>).
/// </summary>
public static class ThreadsOption
{
    /// <summary>The option; <paramref name="defaultText"/> says what happens without it.</summary>
    public static Option<int?> Create(string defaultText = "libtorch's default, the number of physical cores (or OMP_NUM_THREADS)") =>
        new("--threads") { Description = $"CPU threads per operation, 1 to {Backend.MaxThreads}. Default: {defaultText}." };

    /// <summary>Applies the parsed value (or <paramref name="fallback"/>) to <see cref="Backend.Threads"/>.</summary>
    /// <exception cref="ConvKitException">The value is outside 1..<see cref="Backend.MaxThreads"/>; the message names --threads.</exception>
    public static void Apply(ParseResult parse, Option<int?> option, int? fallback = null)
    {
        if ((parse.GetValue(option) ?? fallback) is not { } n) return;
        if (n < 1 || n > Backend.MaxThreads)
            throw new InvalidOptionException("--threads", $"--threads must be between 1 and {Backend.MaxThreads}; received {n}.");
        Backend.Threads = n;
    }
}
