using ConvKit.Cli;

namespace ConvKit.Tests.Cli;

/// <summary>Runs the convkit command line in-process with captured output.</summary>
static class CliRunner
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Program.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }
}
