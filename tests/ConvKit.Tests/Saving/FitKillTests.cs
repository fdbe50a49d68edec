using System.Diagnostics;
using System.Globalization;
using ConvKit.Models;
using ConvKit.Saving;
using Xunit.Abstractions;

namespace ConvKit.Tests.Saving;

public class FitKillTests(ITestOutputHelper output) : IDisposable
{
    // Each trial starts a process that loads libtorch (~1 s on a busy 2-core box), lets it save WarmupSaves epochs,
    // then kills it at a random moment of the next epoch's save: 12 trials keep this near 20-30 s.
    const int Trials = 12, WarmupSaves = 2;
    static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60), LineTimeout = TimeSpan.FromSeconds(30);
    readonly string dir = Directory.CreateTempSubdirectory("convkit-fitkill-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    [Trait("Category", "Slow")]
    [Trait("Catalogue", "Hostile")] // existing before issue 12
    public async Task SigkillDuringFitLeavesALoadableCheckpointAndLosesAtMostTheEpochInProgress()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}, {Trials} trials");
        var rng = new Random(seed);
        var store = new CheckpointStore(Path.Combine(dir, "backup", "checkpoint.safetensors"));
        int lastCheckpoint = 0, fallbacks = 0, killedInSave = 0;
        var trialSeconds = new List<double>();
        var total = Stopwatch.StartNew();
        for (int i = 0; i < Trials; i++)
        {
            var trial = Stopwatch.StartNew();
            List<string> lines = [];
            using (var helper = KillHelperProcess.Start("fit", dir))
            {
                var first = await helper.ReadLineAsync(StartTimeout);
                Assert.StartsWith("resumed ", first);
                // Resuming starts exactly where the last valid checkpoint ends: nothing completed is lost.
                Assert.Equal(lastCheckpoint, int.Parse(first["resumed ".Length..], CultureInfo.InvariantCulture));
                // Time the warm-up saves ("saving" to "saved"; both lines cross the same pipe), then kill at a random
                // moment within that duration of the next "saving".
                var save = Stopwatch.StartNew();
                double saveMs = 0;
                for (int saves = 0; ;)
                {
                    var line = await helper.ReadLineAsync(LineTimeout);
                    lines.Add(line);
                    if (line.EndsWith(" saved", StringComparison.Ordinal))
                    {
                        saveMs = save.Elapsed.TotalMilliseconds;
                        saves++;
                    }
                    else if (saves >= WarmupSaves)
                    {
                        await Task.Delay(TimeSpan.FromMilliseconds(rng.NextDouble() * saveMs));
                        break;
                    }
                    else save.Restart();
                }
                lines.AddRange(await helper.KillAndReadRestAsync(LineTimeout));
            }
            trialSeconds.Add(trial.Elapsed.TotalSeconds);
            Assert.All(lines, l => Assert.Matches(@"^epoch \d+ (saving|saved)$", l));
            int reported = lines.Where(l => l.EndsWith(" saved", StringComparison.Ordinal))
                .Max(l => int.Parse(l.Split(' ')[1], CultureInfo.InvariantCulture));
            // The output ends on "saving" when the kill fell between the first and the last write of the epoch's end.
            if (lines[^1].EndsWith(" saving", StringComparison.Ordinal)) killedInSave++;

            var loaded = store.LoadLatestValid();
            int epoch = int.Parse(loaded.Metadata[TrainingCheckpoint.EpochKey], CultureInfo.InvariantCulture);
            foreach (var t in loaded.Tensors.Values) t.Dispose();
            if (loaded.IsFallback) fallbacks++;
            // Every epoch reported as saved is in the checkpoint, so at most the epoch in progress is lost; the
            // checkpoint is one ahead of the report when the kill fell after BackupAndRestore's save.
            Assert.True(epoch >= reported, $"trial {i}: checkpoint holds epoch {epoch}, but epoch {reported} was reported saved");
            Assert.True(epoch <= reported + 1, $"trial {i}: checkpoint holds epoch {epoch}, but only epoch {reported} was reported saved");
            lastCheckpoint = epoch;
            // The whole-model file of ModelCheckpoint is always loadable too.
            using var model = Model.Load(Path.Combine(dir, "model.safetensors"));
            Assert.Equal(4, model.Layers.Count);
        }
        output.WriteLine($"reached epoch {lastCheckpoint}; {killedInSave} of {Trials} kills inside an epoch's saves, " +
            $"{fallbacks} fallbacks to the previous backup; trials {trialSeconds.Min():F2}-{trialSeconds.Max():F2} s, " +
            $"total {total.Elapsed.TotalSeconds:F1} s");
    }
}
