using System.Diagnostics;
using ConvKit.Saving;
using TorchSharp;
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
    [Trait("Catalogue", "Hostile")] // existing before issue 12
    public async Task SigkillAtRandomMomentsAlwaysLeavesALoadableCompleteCheckpoint()
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
            using (var helper = KillHelperProcess.Start(store.LatestPath))
            {
                // Wait until at least one save of this run has completed, then kill at a random moment of the loop.
                Assert.StartsWith("saved ", await helper.ReadLineAsync(TimeSpan.FromSeconds(60)));
                await Task.Delay(rng.Next(0, 60));
                await helper.KillAndReadRestAsync(TimeSpan.FromSeconds(30));
            }

            var loaded = store.LoadLatestValid();
            long step = loaded.Tensors["step"].item<long>();
            using (var value = ((float)step).ToScalar())
                Assert.True(loaded.Tensors["w"].eq(value).all().item<bool>(), $"kill {i}: checkpoint {step} is torn");
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
}
