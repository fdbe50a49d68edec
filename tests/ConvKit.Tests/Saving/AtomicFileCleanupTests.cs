using System.Diagnostics;
using ConvKit.Saving;

namespace ConvKit.Tests.Saving;

/// <summary>Issue 12: a kill during a save left <c>.convkit-tmp-*</c> files forever; the next save of the same target
/// removes those of dead writers and keeps a live writer's.</summary>
public class AtomicFileCleanupTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-atomic-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    string Temp(string target, string suffix)
    {
        var p = Path.Combine(dir, AtomicFile.TempPrefix + target + "." + suffix);
        File.WriteAllBytes(p, [1, 2, 3]);
        return p;
    }

    static int DeadPid()
    {
        using var p = Process.Start(new ProcessStartInfo("/bin/true"))!;
        p.WaitForExit();
        return p.Id;
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void ASaveRemovesTheTempFilesOfDeadWritersOfTheSameTargetOnly()
    {
        var target = Path.Combine(dir, "model.safetensors");
        var dead = Temp("model.safetensors", $"{DeadPid()}.0123456789abcdef0123456789abcdef");
        var live = Temp("model.safetensors", "1.0123456789abcdef0123456789abcdef"); // pid 1 is always alive
        var mine = Temp("model.safetensors", $"{Environment.ProcessId}.0123456789abcdef0123456789abcdef"); // another thread's save
        var oldNoPid = Temp("model.safetensors", "0123456789abcdef0123456789abcdef"); // written before pids were in names
        File.SetLastWriteTimeUtc(oldNoPid, DateTime.UtcNow - AtomicFile.StaleAfter - TimeSpan.FromMinutes(1));
        var youngNoPid = Temp("model.safetensors", "fedcba9876543210fedcba9876543210");
        var otherTarget = Temp("history.csv", $"{DeadPid()}.0123456789abcdef0123456789abcdef");

        AtomicFile.Write(target, s => s.Write([42]));

        Assert.Equal([42], File.ReadAllBytes(target));
        Assert.False(File.Exists(dead), "a dead writer's temp file was kept");
        Assert.False(File.Exists(oldNoPid), "an old temp file without a pid was kept");
        Assert.True(File.Exists(live), "a live writer's temp file was deleted");
        Assert.True(File.Exists(mine), "this process's other save was disturbed");
        Assert.True(File.Exists(youngNoPid), "a recent temp file without a pid was deleted");
        Assert.True(File.Exists(otherTarget), "another target's temp file was deleted");
    }

    [Fact]
    [Trait("Category", "Slow")]
    [Trait("Catalogue", "Hostile")]
    public async Task AKillDuringASaveLeavesATempFileThatTheNextSaveRemoves()
    {
        var target = Path.Combine(dir, "model.safetensors");
        File.WriteAllBytes(target, [7, 7, 7]);
        using (var helper = KillHelperProcess.Start("stall", target))
        {
            Assert.Equal("writing", await helper.ReadLineAsync(TimeSpan.FromSeconds(60)));
            await helper.KillAndReadRestAsync(TimeSpan.FromSeconds(30));
        }
        var leftover = Assert.Single(Directory.GetFiles(dir, AtomicFile.TempPrefix + "*"));
        Assert.Equal(100_000, new FileInfo(leftover).Length);
        Assert.Equal([7, 7, 7], File.ReadAllBytes(target)); // the kill never touched the target

        AtomicFile.Write(target, s => s.Write([8]));
        Assert.Empty(Directory.GetFiles(dir, AtomicFile.TempPrefix + "*"));
        Assert.Equal([8], File.ReadAllBytes(target));
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData(28, "no space left on device")]  // ENOSPC
    [InlineData(122, "no space left on device")] // EDQUOT
    [InlineData(30, "read-only file system")]    // EROFS
    [InlineData(5, "disk on fire")]              // EIO: .NET's own message
    public void AFailingWriteLeavesNoTempAndTheOldFileAndSaysWhy(int errno, string cause)
    {
        var target = Path.Combine(dir, "summary.txt");
        File.WriteAllText(target, "old");
        var e = Assert.Throws<ConvKitException>(() => AtomicFile.WriteOrExplain(target, s =>
        {
            s.Write(new byte[10]);
            throw new IOException("disk on fire", errno);
        }));
        Assert.Equal($"cannot write '{target}': {cause}", e.Message);
        Assert.Equal("old", File.ReadAllText(target));
        Assert.Empty(Directory.GetFiles(dir, AtomicFile.TempPrefix + "*"));
    }
}

/// <summary>Saves of one target from many threads at once: each completes whole, none deletes another's temp file.</summary>
public class AtomicFileConcurrencyTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-atomic-mt-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    public void ConcurrentSavesOfOneTargetEachLandWholeAndLeaveNoTempFiles()
    {
        var target = Path.Combine(dir, "model.safetensors");
        const int Threads = 8, Saves = 40, Size = 50_000;
        var errors = new System.Collections.Concurrent.ConcurrentBag<Exception>();
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            try
            {
                for (int i = 0; i < Saves; i++)
                {
                    byte value = (byte)(t * Saves + i);
                    AtomicFile.Write(target, s =>
                    {
                        var chunk = new byte[Size / 10];
                        Array.Fill(chunk, value);
                        for (int k = 0; k < 10; k++) s.Write(chunk); // several writes: other threads interleave
                    });
                    // Whatever save landed last, the file is one save's content, whole.
                    var now = File.ReadAllBytes(target);
                    Assert.Equal(Size, now.Length);
                    Assert.All(now, b => Assert.Equal(now[0], b));
                }
            }
            catch (Exception e)
            {
                errors.Add(e);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Empty(errors);
        Assert.Empty(Directory.GetFiles(dir, AtomicFile.TempPrefix + "*"));
    }
}
