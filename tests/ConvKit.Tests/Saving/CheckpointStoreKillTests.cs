using System.Diagnostics;
using ConvKit.Saving;
using Xunit.Abstractions;

namespace ConvKit.Tests.Saving;

public class CheckpointStoreKillTests(ITestOutputHelper output) : IDisposable
{
    // Each round starts a process that loads libtorch (~0.5-1 s on a busy 2-core box): 15 rounds keep this near 20 s.
    const int Kills = 15;
    readonly string dir = Directory.CreateTempSubdirectory("convkit-kill-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    [Trait("Category", "Slow")]
    public void SigkillAtRandomMomentsAlwaysLeavesALoadableCompleteCheckpoint()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}, {Kills} kills");
        var rng = new Random(seed);
        var store = new CheckpointStore(Path.Combine(dir, "ckpt.safetensors"));
        long lastStep = -1;
        int fallbacks = 0;
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < Kills; i++)
        {
            using var p = Process.Start(HelperStartInfo(store.LatestPath))!;
            // Wait until at least one save of this run has completed, then kill at a random moment of the loop.
            var first = p.StandardOutput.ReadLine();
            if (first is null || !first.StartsWith("saved ", StringComparison.Ordinal))
                Assert.Fail($"helper failed to start: {first} {p.StandardError.ReadToEnd()}");
            Thread.Sleep(rng.Next(0, 60));
            p.Kill();
            p.WaitForExit();

            var loaded = store.LoadLatestValid();
            long step = loaded.Tensors["step"].item<long>();
            Assert.True(loaded.Tensors["w"].eq((float)step).all().item<bool>(), $"kill {i}: checkpoint {step} is torn");
            Assert.Equal(step.ToString(System.Globalization.CultureInfo.InvariantCulture), loaded.Metadata["step"]);
            Assert.True(step >= lastStep, $"kill {i}: step went back from {lastStep} to {step}");
            if (loaded.IsFallback) fallbacks++;
            lastStep = step;
            foreach (var t in loaded.Tensors.Values) t.Dispose();
            // Each run deletes what killed runs left behind: at most the temp of the last kill remains.
            Assert.InRange(Directory.GetFiles(dir, AtomicFile.TempPrefix + "*").Length, 0, 1);
        }
        output.WriteLine($"reached step {lastStep}, {fallbacks} fallbacks to the previous file, {sw.Elapsed.TotalSeconds:F1} s");
    }

    internal static ProcessStartInfo HelperStartInfo(params string[] args)
    {
        // tests/ConvKit.Tests/bin/<Config>/<tfm>/ -> tests/ConvKit.Tests.KillHelper/bin/<Config>/<tfm>/
        var baseDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var tfm = baseDir.Name;
        var config = baseDir.Parent!.Name;
        var testsDir = baseDir.Parent.Parent!.Parent!.Parent!.FullName;
        var dll = Path.Combine(testsDir, "ConvKit.Tests.KillHelper", "bin", config, tfm, "ConvKit.Tests.KillHelper.dll");
        Assert.True(File.Exists(dll), $"kill helper not built: {dll}");
        var host = Environment.ProcessPath is { } pp && Path.GetFileNameWithoutExtension(pp) == "dotnet" ? pp : "dotnet";
        var psi = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return psi;
    }
}
