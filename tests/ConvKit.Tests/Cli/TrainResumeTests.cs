using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using ConvKit.Cli.Commands;
using ConvKit.Models;
using ConvKit.Tests.Data;
using Xunit.Abstractions;

namespace ConvKit.Tests.Cli;

/// <summary><c>convkit train --resume</c>: in-process checks of the options and files, and (Slow) child processes of
/// the CLI killed with SIGKILL or stopped with SIGTERM, then resumed, against an uninterrupted run.</summary>
public class TrainResumeTests(ITestOutputHelper output) : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-trainresume-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
    }

    /// <summary>SHA-256 of the weights of a saved model, in order.</summary>
    internal static string WeightsSha256(string modelFile)
    {
        using var model = Model.Load(modelFile);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var w in model.GetWeights())
        {
            using (w)
            {
                sha.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(w.data<float>().ToArray().AsSpan()));
            }
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    string Data(int train = 96, int test = 20)
    {
        var data = Path.Combine(dir, "data");
        if (!Directory.Exists(data)) DataFiles.WriteIdxDataset(data, trainCount: train, testCount: test);
        return data;
    }

    [Fact]
    public void ARunFolderHoldsItsSettingsItsCheckpointAndAHistoryRowPerEpoch()
    {
        var run = Path.Combine(dir, "run");
        var (code, _, err) = CliRunner.Run("train", "lenet5", "--data", Data(), "--epochs", "2", "--batch-size", "32", "--verbose", "0",
            "--threads", "1", "--out", run);
        Assert.True(code == 0, err);
        Assert.True(File.Exists(TrainResume.CheckpointPath(run)));
        var settings = TrainResume.Read(run);
        Assert.Equal(("lenet5", 2, 32, 1), (settings.Model, settings.Epochs, settings.BatchSize, settings.Threads));
        Assert.Equal(Path.GetFullPath(Data()), settings.DataPath); // absolute: a resume may run from another folder
        var rows = EpochHistoryFile.ReadCsv(Path.Combine(run, "history.csv"));
        Assert.Equal([0, 1], rows.Select(r => r.Epoch));
        Assert.Contains("val_loss", rows[1].Values.Keys);

        // Resuming a finished run trains no epoch and leaves the weights as they were.
        var before = WeightsSha256(Path.Combine(run, "model", "model.safetensors"));
        (code, var @out, err) = CliRunner.Run("train", "--resume", run, "--verbose", "0");
        Assert.True(code == 0, err);
        Assert.Contains("Resumed from the checkpoint of epoch 2", @out);
        Assert.Equal(before, WeightsSha256(Path.Combine(run, "model", "model.safetensors")));
        Assert.Equal(2, EpochHistoryFile.ReadCsv(Path.Combine(run, "history.csv")).Count);
        // --overwrite accepts the folder it wrote (checkpoint and settings included).
        (code, _, err) = CliRunner.Run("train", "lenet5", "--data", Data(), "--epochs", "1", "--verbose", "0", "--out", run, "--overwrite");
        Assert.True(code == 0, err);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void ResumeRefusesOtherOptionsAndFoldersThatAreNotResumableRuns()
    {
        var empty = Directory.CreateDirectory(Path.Combine(dir, "empty")).FullName;
        var cases = new (string[] Args, string Expected)[]
        {
            (["train", "--resume", Path.Combine(dir, "missing")], "does not exist"),
            (["train", "--resume", empty], "has no train-settings.json"),
            (["train", "--resume", empty, "--epochs", "5"], "remove --epochs"),
            (["train", "lenet5", "--resume", empty], "remove the model argument"),
        };
        foreach (var (args, expected) in cases)
        {
            var (code, _, err) = CliRunner.Run(args);
            Assert.Equal(1, code);
            Assert.Contains("--resume", err);
            Assert.Contains(expected, err);
            Assert.DoesNotContain("   at ", err);
        }
        File.WriteAllText(Path.Combine(empty, TrainResume.SettingsFile), "{ not json");
        var (c, _, e) = CliRunner.Run("train", "--resume", empty);
        Assert.Equal(1, c);
        Assert.Contains("train-settings.json' is not valid", e);
        Assert.Single(Directory.GetFiles(empty)); // nothing written
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void HistoryCsvRoundTripsNonFiniteValuesAndRejectsMalformedRows()
    {
        var path = Path.Combine(dir, "history.csv");
        File.WriteAllText(path, "epoch,loss,val_loss\n0,nan,inf\n1,0.5,NA\n");
        var rows = EpochHistoryFile.ReadCsv(path);
        Assert.True(double.IsNaN(rows[0].Values["loss"]));
        Assert.Equal(double.PositiveInfinity, rows[0].Values["val_loss"]);
        Assert.Equal(0.5, rows[1].Values["loss"]);
        Assert.False(rows[1].Values.ContainsKey("val_loss"));
        File.WriteAllText(path, "epoch,loss\n0,abc\n");
        var e = Assert.Throws<ConvKitException>(() => EpochHistoryFile.ReadCsv(path));
        Assert.Contains("line 2", e.Message);
        Assert.Contains("'abc' in column loss", e.Message);
    }

    // ------------------------------------------------------------------ child processes

    const int Epochs = 3;

    /// <summary>convkit train as a child process (the CLI's dll beside the tests).</summary>
    Process StartTrain(params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "ConvKit.Cli.dll");
        Assert.True(File.Exists(dll), $"CLI not beside the tests: {dll}");
        var host = Environment.ProcessPath is { } pp && Path.GetFileNameWithoutExtension(pp) == "dotnet" ? pp : "dotnet";
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        psi.ArgumentList.Add("train");
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    string[] NewRun(string run) => ["lenet5", "--data", Data(train: 1200, test: 50), "--epochs", Epochs.ToString(CultureInfo.InvariantCulture),
        "--batch-size", "32", "--threads", "1", "--verbose", "2", "--seed", "7", "--out", run];

    static (int Code, string Out, string Err) Finish(Process p)
    {
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(5)), "convkit train did not finish within 5 minutes");
        return (p.ExitCode, o.Result, e.Result);
    }

    string Reference()
    {
        var run = Path.Combine(dir, "reference");
        using var p = StartTrain(NewRun(run));
        var (code, _, err) = Finish(p);
        Assert.True(code == 0, err);
        return WeightsSha256(Path.Combine(run, "model", "model.safetensors"));
    }

    /// <summary>Starts a run (new or resumed) and signals it once it printed <paramref name="epochLines"/> epoch
    /// lines plus a delay; returns the exit code and stderr.</summary>
    async Task<(int Code, string Err)> RunAndSignal(string[] args, int epochLines, TimeSpan delay, bool sigkill)
    {
        using var p = StartTrain(args);
        var err = p.StandardError.ReadToEndAsync();
        int seen = 0;
        string? line;
        while (seen < epochLines && (line = await p.StandardOutput.ReadLineAsync()) is not null)
            if (line.StartsWith("Epoch ", StringComparison.Ordinal)) seen++;
        await Task.Delay(delay);
        if (sigkill) p.Kill();
        else
        {
            using var kill = Process.Start("kill", ["-TERM", p.Id.ToString(CultureInfo.InvariantCulture)])!;
            kill.WaitForExit();
        }
        _ = p.StandardOutput.ReadToEndAsync();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(2)), "convkit train did not stop");
        return (p.ExitCode, await err);
    }

    [Fact]
    [Trait("Category", "Slow")]
    [Trait("Catalogue", "Hostile")]
    public async Task SigkilledRunsResumedEndWithTheWeightsOfAnUninterruptedRun()
    {
        var expected = Reference();
        // Kill points: inside epoch 1 (no checkpoint yet), inside epoch 2, and twice in one run (epochs 2 then 3).
        var plans = new (int EpochLines, int DelayMs)[][] { [(1, 300)], [(2, 200)], [(2, 100), (1, 400)] };
        for (int i = 0; i < plans.Length; i++)
        {
            var run = Path.Combine(dir, $"killed{i}");
            var args = NewRun(run);
            foreach (var (lines, ms) in plans[i])
            {
                var (code, err) = await RunAndSignal(args, lines, TimeSpan.FromMilliseconds(ms), sigkill: true);
                output.WriteLine($"plan {i}: killed after {lines} epoch lines + {ms} ms, exit {code}");
                if (code == 0) break; // finished before the kill: nothing to resume
                Assert.True(code == 137, err);
                args = ["--resume", run, "--verbose", "2"];
            }
            using (var p = StartTrain("--resume", run, "--verbose", "0"))
            {
                var (code, _, err) = Finish(p);
                Assert.True(code == 0, err);
            }
            Assert.Equal(expected, WeightsSha256(Path.Combine(run, "model", "model.safetensors")));
            var rows = EpochHistoryFile.ReadCsv(Path.Combine(run, "history.csv"));
            Assert.Equal(Enumerable.Range(0, Epochs), rows.Select(r => r.Epoch));
            Tmpfs.AssertNoStrayFiles(run);
        }
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task SigtermFinishesTheBatchStopsSayingWhatAResumeRedoesAndTheResumeIsBitIdentical()
    {
        var expected = Reference();
        var run = Path.Combine(dir, "terminated");
        var (code, err) = await RunAndSignal(NewRun(run), 2, TimeSpan.FromMilliseconds(20), sigkill: false); // well inside epoch 2 even on a fast machine
        Assert.Equal(TrainResume.TerminatedExitCode, code);
        Assert.Contains("SIGTERM received; training stopped after batch", err);
        Assert.Contains("Epochs 1-1 are checkpointed", err);
        Assert.Contains($"'convkit train --resume {run}' redoes epoch 2 from its first batch", err);
        Assert.DoesNotContain("   at ", err);
        Assert.Single(EpochHistoryFile.ReadCsv(Path.Combine(run, "history.csv")));
        using (var p = StartTrain("--resume", run, "--verbose", "0"))
        {
            var (c, _, e) = Finish(p);
            Assert.True(c == 0, e);
        }
        Assert.Equal(expected, WeightsSha256(Path.Combine(run, "model", "model.safetensors")));
    }
}
