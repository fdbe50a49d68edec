using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using ConvKit.Cli.Commands;
using Xunit.Abstractions;

namespace ConvKit.Tests.Cli;

/// <summary><c>convkit train --resume RUN</c> of a run trained with <c>--nproc 2</c>: the launcher and its ranks killed
/// (SIGKILL), the launcher stopped (SIGTERM) or the launcher alone killed inside epoch 2, then resumed on two ranks,
/// against an uninterrupted two-rank run; and the world-size check of a rank that resumes.</summary>
public class DistributedResumeTests(ITestOutputHelper output) : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-distresume-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(dir, recursive: true); } catch (IOException) { }
    }

    static string Cli => Path.Combine(AppContext.BaseDirectory, "ConvKit.Cli");

    static Process Start(IEnumerable<string> args, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(Cli) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("train");
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var v in ConvKit.Distributed.DistributedEnvironment.Variables) psi.Environment.Remove(v);
        if (env is not null)
            foreach (var (k, v) in env) psi.Environment[k] = v;
        return Process.Start(psi)!;
    }

    static (int Code, string Out, string Err) Finish(Process p)
    {
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(5)), "convkit train did not finish within 5 minutes");
        return (p.ExitCode, o.Result, e.Result);
    }

    const int Epochs = 3;

    string[] NewRun(string data, string run) => ["lenet5", "--data", data, "--epochs", Epochs.ToString(CultureInfo.InvariantCulture),
        "--batch-size", "8", "--threads", "1", "--nproc", "2", "--verbose", "2", "--seed", "11", "--out", run];

    static bool Running(int pid)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException) { return false; }
    }

    /// <summary>Starts a two-rank run, waits for the second epoch line plus <paramref name="delay"/>, then SIGKILLs the
    /// launcher and both ranks ("killed"), SIGTERMs the launcher ("terminated") or SIGKILLs the launcher alone
    /// ("orphaned"); returns the exit code, stderr and the ranks' pids.</summary>
    async Task<(int Code, string Err, int[] Ranks)> RunAndStop(string[] args, TimeSpan delay, string how)
    {
        using var p = Start(args);
        var err = p.StandardError.ReadToEndAsync();
        int seen = 0;
        int[] ranks = [];
        string? line;
        while (seen < 2 && (line = await p.StandardOutput.ReadLineAsync()) is not null)
        {
            if (line.StartsWith("Epoch ", StringComparison.Ordinal)) seen++;
            var m = Regex.Match(line, @"Launched 2 ranks \(pids (\d+), (\d+)\)");
            if (m.Success) ranks = [int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)];
        }
        Assert.Equal(2, ranks.Length);
        await Task.Delay(delay);
        if (how == "orphaned") p.Kill();
        else if (how == "killed")
        {
            // The whole run at once, as a scheduler killing the job's process group would (the launcher shares the
            // test host's group here, so the three processes are killed by pid).
            using var kill = Process.Start("kill", ["-KILL", p.Id.ToString(CultureInfo.InvariantCulture), .. ranks.Select(r => r.ToString(CultureInfo.InvariantCulture))])!;
            kill.WaitForExit();
        }
        else
        {
            using var kill = Process.Start("kill", ["-TERM", p.Id.ToString(CultureInfo.InvariantCulture)])!;
            kill.WaitForExit();
        }
        _ = p.StandardOutput.ReadToEndAsync();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(2)), "the launcher did not stop");
        return (p.ExitCode, await err, ranks);
    }

    [Fact, Trait("Category", "Slow"), Trait("Catalogue", "Hostile")]
    public async Task TwoRankRunsKilledTerminatedOrOrphanedInEpochTwoResumeOnTwoRanksBitIdentically()
    {
        var data = DistributedTrainTests.FashionMnistSubset(6000, 50); // ~340 steps an epoch: the stop lands inside epoch 2 even when steps are fast
        try
        {
            var reference = Path.Combine(dir, "reference");
            using (var p = Start(NewRun(data, reference)))
            {
                var (code, _, err) = Finish(p);
                Assert.True(code == 0, err);
            }
            var expected = TrainResumeTests.WeightsSha256(Path.Combine(reference, "model", "model.safetensors"));
            output.WriteLine($"uninterrupted 2-rank run: weights SHA-256 {expected}");
            using (var settings = JsonDocument.Parse(File.ReadAllText(Path.Combine(reference, TrainResume.SettingsFile))))
                Assert.Equal(2, settings.RootElement.GetProperty("Nproc").GetInt32());

            foreach (var how in new[] { "killed", "terminated", "orphaned" })
            {
                var run = Path.Combine(dir, how);
                var (code, err, ranks) = await RunAndStop(NewRun(data, run), TimeSpan.FromMilliseconds(how == "terminated" ? 20 : 100), how);
                output.WriteLine($"{how}: exit {code}\n{err}");
                if (how != "terminated") Assert.Equal(137, code);
                else
                {
                    Assert.True(code == TrainResume.TerminatedExitCode, err);
                    Assert.Contains("stopped: SIGTERM passed on to the 2 ranks", err);
                    Assert.Contains("SIGTERM received; training stopped after batch", err); // rank 0 stopped cleanly
                    Assert.DoesNotContain("   at ", err);
                    // A rank that stopped names the run to resume, never its own scratch folder.
                    Assert.DoesNotContain("--resume " + Path.Combine(Path.GetTempPath(), "convkit-rank"), err);
                }
                // Orphaned ranks notice within a second that their launcher is gone and stop after their batch.
                Assert.True(SpinWait.SpinUntil(() => !ranks.Any(Running), TimeSpan.FromSeconds(30)), "a rank outlived the launcher by 30 s");
                // Stopped inside epoch 2 (orphaned: epoch 2 or 3): rank 0 checkpointed the epochs before.
                int done = EpochHistoryFile.ReadCsv(Path.Combine(run, "history.csv")).Count;
                if (how == "orphaned") Assert.InRange(done, 1, Epochs - 1);
                else Assert.Equal(1, done);
                Assert.False(File.Exists(Path.Combine(run, "model", "model.safetensors")));

                using (var p = Start(["--resume", run, "--verbose", "0"]))
                {
                    var (c, o, e) = Finish(p);
                    Assert.True(c == 0, e + o);
                    Assert.Contains("Launched 2 ranks", o);
                    Assert.Contains($"Resumed from the checkpoint of epoch {done}.", o);
                }
                var resumed = TrainResumeTests.WeightsSha256(Path.Combine(run, "model", "model.safetensors"));
                output.WriteLine($"resumed ({how}, from epoch {done}): weights SHA-256 {resumed}");
                Assert.Equal(expected, resumed);
                Assert.Equal(Enumerable.Range(0, Epochs), EpochHistoryFile.ReadCsv(Path.Combine(run, "history.csv")).Select(r => r.Epoch));
                Tmpfs.AssertNoStrayFiles(run);
            }
        }
        finally
        {
            Directory.Delete(data, recursive: true);
        }
    }

    /// <summary>A run folder whose settings say it was trained with <paramref name="nproc"/> ranks (null: one process).</summary>
    string SettingsOnly(int? nproc)
    {
        var run = Path.Combine(dir, $"run{nproc}");
        Directory.CreateDirectory(run);
        TrainResume.Save(run, new TrainCommand.TrainSettings("lenet5", null, null, 3, 8, "adam", null, false, 0, 7, run, 0) { Nproc = nproc }, 1);
        return run;
    }

    static Dictionary<string, string> World(int size) => new()
    {
        ["MASTER_ADDR"] = "127.0.0.1", ["MASTER_PORT"] = "29999", ["WORLD_SIZE"] = size.ToString(CultureInfo.InvariantCulture),
        ["RANK"] = "0", ["LOCAL_RANK"] = "0",
    };

    [Theory, Trait("Catalogue", "Hostile")]
    [InlineData(2, 3, "was trained with world size 2 (--nproc 2); this rank joins a group of world size 3 (WORLD_SIZE)")]
    [InlineData(null, 2, "was trained with world size 1 (one process); this rank joins a group of world size 2 (WORLD_SIZE)")]
    public void ARankResumingARunOfAnotherWorldSizeIsRefusedNamingBothSizes(int? trained, int world, string expected)
    {
        var run = SettingsOnly(trained);
        var before = Directory.GetFileSystemEntries(run).Order().ToArray();
        using var p = Start(["--resume", run], World(world));
        var (code, _, err) = Finish(p);
        Assert.Equal(1, code);
        Assert.Contains($"--resume '{run}' {expected}", err);
        Assert.Contains("A run resumes with its own world size only", err);
        Assert.DoesNotContain("   at ", err);
        Assert.Equal(before, Directory.GetFileSystemEntries(run).Order().ToArray());
    }
}
