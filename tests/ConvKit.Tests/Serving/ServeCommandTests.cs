using System.Diagnostics;
using System.Text;
using ConvKit.Tests.Training;
using static ConvKit.Tests.Serving.ServingHarness;

namespace ConvKit.Tests.Serving;

/// <summary><c>convkit serve</c>: options refused by their CLI names before anything starts, and a real process that
/// answers, then drains in-flight requests on SIGTERM and exits 0.</summary>
[Collection(nameof(GlobalRandomCollection))]
public class ServeCommandTests
{
    [Theory]
    [InlineData("--max-batch", "0", "--max-batch must be between 1 and 4096; received 0.")]
    [InlineData("--queue", "-1", "--queue must be between 1 and 1000000; received -1.")]
    [InlineData("--max-delay-ms", "-5", "--max-delay-ms must be between 0 and 10000; received -5.")]
    [InlineData("--timeout-s", "0", "--timeout-s must be between 0 and 3600 seconds; received 0.")]
    [InlineData("--api-key-file", "/nonexistent/key", "--api-key-file '/nonexistent/key' does not exist.")]
    [InlineData("--host", "example.com", "--host 'example.com' is not an IP address")]
    public void BadOptionsAreRefusedByName(string option, string value, string expected)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = ConvKit.Cli.Program.Run(["serve", "lenet5", option, value, "--port", "0"], output, error);
        Assert.Equal(1, code);
        Assert.Contains("error: " + expected, error.ToString());
        Assert.DoesNotContain("   at ", error.ToString());
    }

    [Fact]
    public void NoBatchInvarianceIsAnOptionOfServe()
    {
        // Parsed with the others: the refusal is about --max-batch, not an unrecognized --no-batch-invariance.
        var error = new StringWriter();
        Assert.Equal(1, ConvKit.Cli.Program.Run(["serve", "lenet5", "--no-batch-invariance", "--max-batch", "0", "--port", "0"], new StringWriter(), error));
        Assert.Contains("error: --max-batch must be between 1 and 4096; received 0.", error.ToString());
        Assert.DoesNotContain("no-batch-invariance", error.ToString());
    }

    [Fact]
    public void AnUnknownModelIsRefusedByName()
    {
        var error = new StringWriter();
        Assert.Equal(1, ConvKit.Cli.Program.Run(["serve", "lenet6", "--port", "0"], new StringWriter(), error));
        Assert.Contains("unknown model 'lenet6'", error.ToString());
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task SigtermDrainsInFlightRequestsAndExitsZero()
    {
        var cli = Path.Combine(AppContext.BaseDirectory, "ConvKit.Cli.dll");
        var host = Environment.ProcessPath is { } pp && Path.GetFileNameWithoutExtension(pp) == "dotnet" ? pp : "dotnet";
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { cli, "serve", "lenet5", "--port", "0", "--max-batch", "64", "--max-delay-ms", "400", "--threads", "1" }) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var stderr = new StringBuilder();
        process.ErrorDataReceived += (_, e) => { lock (stderr) stderr.AppendLine(e.Data); };
        process.BeginErrorReadLine();
        try
        {
            string? url = null;
            using (var startup = new CancellationTokenSource(TimeSpan.FromSeconds(60)))
            {
                while (true)
                {
                    var line = await process.StandardOutput.ReadLineAsync(startup.Token) ?? throw new Xunit.Sdk.XunitException($"serve exited early: {stderr}");
                    if (line.StartsWith("listening on ", StringComparison.Ordinal)) url ??= line["listening on ".Length..].Trim();
                    if (line == "ready") break;
                }
            }
            using var client = new HttpClient { BaseAddress = new Uri(url!) };
            var model = CreateModel("lenet5", 1); // only its shape is used
            var input = RandomInput(model, 1, 9);
            // Requests wait up to 400 ms for a batch: SIGTERM arrives while they are queued.
            var inFlight = Enumerable.Range(0, 8).Select(_ => client.PostAsync("/v2/models/lenet5/infer", BinaryRequest(model, input, 1))).ToArray();
            await Task.Delay(150);
            using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) kill.WaitForExit();
            var answers = await Task.WhenAll(inFlight);
            var first = await ReadOutput(answers[0]);
            foreach (var a in answers) AssertBitIdentical(first, await ReadOutput(a), "drained answer");
            Assert.True(process.WaitForExit(30_000), "serve did not exit after SIGTERM");
            Assert.Equal(0, process.ExitCode);
            var rest = await process.StandardOutput.ReadToEndAsync();
            Assert.Contains("stopped: in-flight requests answered", rest);
            await Assert.ThrowsAsync<HttpRequestException>(() => client.GetAsync("/v2/health/live"));
            lock (stderr)
            {
                // Structured logs: one JSON object per line.
                var lines = stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.Trim().Length > 0).ToArray();
                Assert.NotEmpty(lines);
                Assert.All(lines, l => System.Text.Json.JsonDocument.Parse(l).Dispose());
                // The warm-up checked the served model and found it batch-invariant (the default).
                Assert.Contains(lines, l => l.Contains("batch-invariant True", StringComparison.Ordinal));
            }
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }
}
