using ConvKit.Cli;
using ConvKit.Cli.Commands;

namespace ConvKit.Tests.Cli;

// Issue 13: one thread setting in the library, --threads on every command that computes.
public class ThreadsOptionTests
{
    [Fact]
    public void EveryComputingCommandHasThreadsAndOnlyTheListingDoesNot()
    {
        var root = Program.BuildRootCommand(new CliConsole(TextWriter.Null, TextWriter.Null));
        var with = root.Subcommands.Where(c => c.Options.Any(o => o.Name == "--threads")).Select(c => c.Name).Order();
        Assert.Equal(["evaluate", "explain", "export", "import", "predict", "quantize", "serve", "summary", "train"], with);
        Assert.Equal(["models"], root.Subcommands.Select(c => c.Name).Except(with));
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("0", "summary", "lenet5")]
    [InlineData("-3", "train", "lenet5")]
    [InlineData("5000", "evaluate", "/nonexistent/run")]
    [InlineData("0", "export", "lenet5", "--onnx", "/nonexistent/x.onnx")]
    [InlineData("0", "predict", "lenet5", "/nonexistent/a.png")]
    [InlineData("0", "import", "/nonexistent/m.onnx", "--out", "/nonexistent/out")]
    [InlineData("0", "quantize", "/nonexistent/run", "--calibration-data", "fashion_mnist")]
    public void AnOutOfRangeThreadCountIsNamedByItsOption(string threads, params string[] command)
    {
        var (code, _, error) = CliRunner.Run([.. command, "--threads", threads]);
        Assert.NotEqual(0, code);
        Assert.Contains($"--threads must be between 1 and {Backend.MaxThreads}; received {threads}.", error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void ThreadsSetsTheLibrarySettingWhichValidatesItself()
    {
        int before = Backend.Threads;
        try
        {
            var (code, output, _) = CliRunner.Run("summary", "lenet5", "--threads", "1");
            Assert.Equal(0, code);
            Assert.Contains("Total params", output);
            Assert.Equal(1, Backend.Threads);
            var e = Assert.Throws<LayerArgumentException>(() => Backend.Threads = 0);
            Assert.Equal("Threads", e.Argument);
            Assert.Equal(1, Backend.Threads);
        }
        finally { Backend.Threads = before; }
    }
}
