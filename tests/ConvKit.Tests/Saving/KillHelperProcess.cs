using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Threading.Channels;

namespace ConvKit.Tests.Saving;

/// <summary>
/// The ConvKit.Tests.KillHelper program running as a child process, for the SIGKILL tests. Both pipes are drained
/// asynchronously from the start, so the child never blocks on a full pipe and a failure message can quote its stderr
/// without waiting for it to exit (a blocking <c>StandardError.ReadToEnd()</c> in an eagerly built assertion message
/// once hung FitKillTests: it waits for an exit that only the kill after it would cause). Every wait has a timeout,
/// so a stuck child fails the test with a message instead of hanging the suite; Dispose kills a child still running.
/// </summary>
sealed class KillHelperProcess : IDisposable
{
    readonly Process process;
    readonly Channel<string?> stdout = Channel.CreateUnbounded<string?>(); // null marks the end of the stream
    readonly StringBuilder stderr = new();

    KillHelperProcess(ProcessStartInfo startInfo)
    {
        process = new Process { StartInfo = startInfo };
        process.OutputDataReceived += (_, e) => stdout.Writer.TryWrite(e.Data);
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { } line) lock (stderr) stderr.AppendLine(line);
        };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    /// <summary>Starts the helper with <paramref name="args"/>.</summary>
    public static KillHelperProcess Start(params string[] args) => new(StartInfo(args));

    /// <summary>What the child wrote to stderr so far.</summary>
    public string Stderr
    {
        get { lock (stderr) return stderr.ToString(); }
    }

    /// <summary>The next line of stdout; fails the test if none arrives within <paramref name="timeout"/> or the child exits.</summary>
    public async Task<string> ReadLineAsync(TimeSpan timeout)
    {
        string? line;
        using (var cts = new CancellationTokenSource(timeout))
        {
            try
            {
                line = await stdout.Reader.ReadAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"kill helper wrote no line within {timeout.TotalSeconds:F0} s; stderr: {Stderr}");
                throw;
            }
        }
        if (line is null)
        {
            stdout.Writer.TryWrite(null); // keep the end marker for later readers
            process.WaitForExit(5_000);
            string code = process.HasExited ? process.ExitCode.ToString(CultureInfo.InvariantCulture) : "?";
            Assert.Fail($"kill helper closed stdout (exit code {code}); stderr: {Stderr}");
        }
        return line;
    }

    /// <summary>SIGKILLs the child and returns the stdout lines it wrote that were not read yet.</summary>
    public async Task<List<string>> KillAndReadRestAsync(TimeSpan timeout)
    {
        process.Kill(); // SIGKILL on Unix
        if (!process.WaitForExit(timeout)) Assert.Fail($"kill helper {process.Id} did not exit within {timeout.TotalSeconds:F0} s of SIGKILL");
        var rest = new List<string>();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (await stdout.Reader.ReadAsync(cts.Token) is { } line) rest.Add(line);
        }
        catch (OperationCanceledException)
        {
            Assert.Fail($"kill helper's stdout was not closed within {timeout.TotalSeconds:F0} s of its exit");
        }
        return rest;
    }

    public void Dispose()
    {
        try
        {
            if (!process.HasExited) process.Kill();
            process.WaitForExit(10_000);
        }
        catch (InvalidOperationException) { } // not started, or already reaped
        process.Dispose();
    }

    internal static ProcessStartInfo StartInfo(string[] args)
    {
        // tests/ConvKit.Tests/bin/<Config>/<tfm>/ -> tests/ConvKit.Tests.KillHelper/bin/<Config>/<tfm>/
        var baseDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var tfm = baseDir.Name;
        var config = baseDir.Parent!.Name;
        var testsDir = baseDir.Parent.Parent!.Parent!.Parent!.FullName;
        var dll = Path.Combine(testsDir, "ConvKit.Tests.KillHelper", "bin", config, tfm, "ConvKit.Tests.KillHelper.dll");
        Assert.True(File.Exists(dll), $"kill helper not built: {dll}");
        var host = Environment.ProcessPath is { } pp && Path.GetFileNameWithoutExtension(pp) == "dotnet" ? pp : "dotnet";
        var psi = new ProcessStartInfo(host)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return psi;
    }
}
