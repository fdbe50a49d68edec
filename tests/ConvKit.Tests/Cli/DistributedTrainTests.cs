using System.Diagnostics;
using System.IO.Compression;
using System.Text.Json;
using System.Text.RegularExpressions;
using ConvKit.Cli.Commands;
using ConvKit.Models;

namespace ConvKit.Tests.Cli;

/// <summary>`convkit train --nproc N`: ranks launched as child processes of the CLI, on a Fashion-MNIST subset.</summary>
public class DistributedTrainTests
{
    [Fact]
    public void RankArgumentsDropNprocAndShareTheThreads()
    {
        Assert.Equal(["train", "lenet5", "--epochs", "2", "--threads", "1"],
            DistributedTraining.RankArguments(["train", "lenet5", "--nproc", "2", "--epochs", "2"], 1));
        Assert.Equal(["train", "--threads", "3"], DistributedTraining.RankArguments(["train", "--nproc=2", "--threads", "3"], 1));
        Assert.Equal(["train"], DistributedTraining.RankArguments(["train", "--nproc", "4"], null));
    }

    [Theory, Trait("Catalogue", "Hostile")]
    [InlineData("0")]
    [InlineData("65")]
    public void AnOutOfRangeNprocIsRefusedByName(string n)
    {
        var (code, _, err) = CliRunner.Run("train", "lenet5", "--nproc", n, "--epochs", "1");
        Assert.Equal(1, code);
        Assert.Contains($"--nproc must be between 1 and 64; received {n}.", err);
        Assert.DoesNotContain("   at ", err);
    }

    /// <summary>Writes the first <paramref name="train"/> / <paramref name="test"/> Fashion-MNIST images as raw IDX files.</summary>
    internal static string FashionMnistSubset(int train, int test)
    {
        const string source = "/usr/share/datasets/fashion-mnist";
        if (!File.Exists(Path.Combine(source, "train-images-idx3-ubyte.gz")))
            Assert.Fail("Fashion-MNIST is not installed; ./test installs Debian's dataset-fashion-mnist.");
        var dir = Directory.CreateTempSubdirectory("convkit-fmnist-subset-").FullName;
        void Cut(string name, int n)
        {
            using var gz = new GZipStream(File.OpenRead(Path.Combine(source, name + ".gz")), CompressionMode.Decompress);
            using var ms = new MemoryStream();
            gz.CopyTo(ms);
            var d = ms.ToArray();
            bool images = d[3] == 3;
            int header = images ? 16 : 8, record = images ? 28 * 28 : 1;
            var outBytes = new byte[header + n * record];
            Array.Copy(d, outBytes, header);
            outBytes[4] = (byte)(n >> 24); outBytes[5] = (byte)(n >> 16); outBytes[6] = (byte)(n >> 8); outBytes[7] = (byte)n;
            Array.Copy(d, header, outBytes, header, n * record);
            File.WriteAllBytes(Path.Combine(dir, name), outBytes);
        }
        Cut("train-images-idx3-ubyte", train);
        Cut("train-labels-idx1-ubyte", train);
        Cut("t10k-images-idx3-ubyte", test);
        Cut("t10k-labels-idx1-ubyte", test);
        return dir;
    }

    static string Cli => Path.Combine(AppContext.BaseDirectory, "ConvKit.Cli");

    static Process Start(params string[] args)
    {
        var psi = new ProcessStartInfo(Cli) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("WORLD_SIZE");
        return Process.Start(psi)!;
    }

    static double TestAccuracy(string runDir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(runDir, "history.json")));
        return doc.RootElement.GetProperty("test").GetProperty("accuracy").GetDouble();
    }

    [Fact, Trait("Category", "Slow")]
    public void LeNetOnTwoRanksReachesTheAccuracyOfOneProcess()
    {
        var data = FashionMnistSubset(3000, 1000);
        var root = Directory.CreateTempSubdirectory("convkit-dist-").FullName;
        try
        {
            string one = Path.Combine(root, "one"), two = Path.Combine(root, "two");
            // Same global batch (64): one process x 64, two ranks x 32.
            using (var p = Start("train", "lenet5", "--data", data, "--epochs", "3", "--batch-size", "64", "--out", one, "--verbose", "0", "--threads", "2"))
            {
                string err = p.StandardError.ReadToEnd();
                p.StandardOutput.ReadToEnd();
                Assert.True(p.WaitForExit(TimeSpan.FromMinutes(5)));
                Assert.True(p.ExitCode == 0, err);
            }
            using (var p = Start("train", "lenet5", "--data", data, "--epochs", "3", "--batch-size", "32", "--out", two, "--verbose", "0", "--nproc", "2"))
            {
                string err = p.StandardError.ReadToEnd();
                string output = p.StandardOutput.ReadToEnd();
                Assert.True(p.WaitForExit(TimeSpan.FromMinutes(5)));
                Assert.True(p.ExitCode == 0, err + output);
                Assert.Contains("Launched 2 ranks", output);
            }
            double a1 = TestAccuracy(one), a2 = TestAccuracy(two);
            Assert.True(a1 > 0.70, $"one process: {a1:P1}");
            Assert.True(Math.Abs(a1 - a2) <= 0.03, $"one process {a1:P2}, two ranks {a2:P2}");
            // Rank 0 wrote the run and its per-epoch checkpoint; the other rank wrote nothing there.
            using var checkpoint = Model.Load(Path.Combine(two, DistributedTraining.CheckpointFile));
            Assert.True(File.Exists(Path.Combine(two, "model", "model.safetensors")));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
            Directory.Delete(data, recursive: true);
        }
    }

    [Fact, Trait("Category", "Slow"), Trait("Catalogue", "Hostile")]
    public async Task KillingOneRankEndsTheRunWithANamedErrorAndALoadableCheckpoint()
    {
        var data = FashionMnistSubset(2000, 200);
        var root = Directory.CreateTempSubdirectory("convkit-dist-kill-").FullName;
        string run = Path.Combine(root, "run");
        try
        {
            using var p = Start("train", "lenet5", "--data", data, "--epochs", "200", "--batch-size", "32", "--out", run, "--verbose", "2", "--nproc", "2");
            var stderr = p.StandardError.ReadToEndAsync();
            var lines = new List<string>();
            int? rank1 = null;
            string checkpoint = Path.Combine(run, DistributedTraining.CheckpointFile);
            var until = DateTime.UtcNow + TimeSpan.FromMinutes(4);
            while (DateTime.UtcNow < until && !(rank1 is not null && File.Exists(checkpoint) && lines.Count(l => l.StartsWith("Epoch ")) >= 3))
            {
                var line = p.StandardOutput.ReadLine();
                if (line is null) break;
                lines.Add(line);
                var m = Regex.Match(line, @"Launched 2 ranks \(pids (\d+), (\d+)\)");
                if (m.Success) rank1 = int.Parse(m.Groups[2].Value);
            }
            Assert.True(rank1 is not null && File.Exists(checkpoint), "no checkpoint before the kill: " + string.Join("\n", lines));
            var clock = Stopwatch.StartNew();
            Process.GetProcessById(rank1!.Value).Kill();
            var rest = p.StandardOutput.ReadToEndAsync();
            Assert.True(p.WaitForExit(TimeSpan.FromSeconds(60)), "the launcher did not end within 60 s of the kill");
            var took = clock.Elapsed;
            string err = await stderr;
            await rest;
            Assert.NotEqual(0, p.ExitCode);
            Assert.True(took < TimeSpan.FromSeconds(60), $"took {took}");
            Assert.Contains("rank 1 of 2 was killed by signal 9 (SIGKILL)", err);
            Assert.Contains("a peer rank left the group", err); // rank 0's own named error
            Assert.DoesNotContain("   at ", err);
            using var model = Model.Load(checkpoint);
            Assert.Equal(61706, model.CountParams());
            Assert.Empty(Directory.GetFiles(run, ConvKit.Saving.AtomicFile.TempPrefix + "*"));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
            Directory.Delete(data, recursive: true);
        }
    }
}
