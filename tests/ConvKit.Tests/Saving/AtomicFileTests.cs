using ConvKit.Saving;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

public class AtomicFileTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-atomic-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    public void ReplacesTheFileAndLeavesNoTemp()
    {
        var path = Path.Combine(dir, "f.bin");
        AtomicFile.Write(path, s => s.Write("old"u8));
        AtomicFile.Write(path, s => s.Write("new!"u8));
        Assert.Equal("new!"u8.ToArray(), File.ReadAllBytes(path));
        Assert.Equal(new[] { path }, Directory.GetFiles(dir));
    }

    [Fact]
    public void AWriteThatThrowsMidwayKeepsTheOldFileAndDeletesTheTemp()
    {
        var path = Path.Combine(dir, "f.bin");
        AtomicFile.Write(path, s => s.Write("old"u8));
        var e = Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, s =>
        {
            s.Write(new byte[100_000]);
            s.Flush();
            throw new InvalidOperationException("disk on fire");
        }));
        Assert.Equal("disk on fire", e.Message);
        Assert.Equal("old"u8.ToArray(), File.ReadAllBytes(path));
        Assert.Equal(new[] { path }, Directory.GetFiles(dir));
    }

    [Fact]
    public void CheckpointStoreRotatesAndFallsBackToThePreviousWhenTheLatestIsCorrupt()
    {
        var store = new CheckpointStore(Path.Combine(dir, "ckpt.safetensors"));
        Assert.EndsWith("ckpt.prev.safetensors", store.PreviousPath);
        Assert.Throws<CheckpointException>(() => store.LoadLatestValid());

        Save(store, 1);
        Save(store, 2);
        Assert.Equal(2, Step(store.LoadLatestValid(), expectFallback: false));

        // Flip one data byte: the structure is still valid, only the recorded SHA-256 catches it.
        var bytes = File.ReadAllBytes(store.LatestPath);
        bytes[^1] ^= 0x40;
        File.WriteAllBytes(store.LatestPath, bytes);
        Assert.Equal(1, Step(store.LoadLatestValid(), expectFallback: true));

        File.WriteAllBytes(store.LatestPath, bytes[..^10]); // truncated
        Assert.Equal(1, Step(store.LoadLatestValid(), expectFallback: true));

        File.Delete(store.LatestPath); // crash between the two renames
        Assert.Equal(1, Step(store.LoadLatestValid(), expectFallback: true));

        File.WriteAllBytes(store.PreviousPath, bytes);
        var e = Assert.Throws<CheckpointException>(() => store.LoadLatestValid());
        Assert.Contains("missing", e.Message);
        Assert.Contains("checksum", e.Message);
    }

    [Fact]
    public void AFailedCheckpointSaveKeepsBothExistingCheckpoints()
    {
        var store = new CheckpointStore(Path.Combine(dir, "ckpt.safetensors"));
        Save(store, 1);
        Save(store, 2);
        Assert.Throws<InvalidOptionException>(() => store.Save(new Dictionary<string, Tensor> { ["c"] = zeros(new long[] { 1 }, ScalarType.ComplexFloat32) }));
        Assert.Equal(2, Step(store.LoadLatestValid(), expectFallback: false));
        Assert.Equal(2, Directory.GetFiles(dir).Length);
    }

    static void Save(CheckpointStore store, long step)
    {
        using var value = ((float)step).ToScalar();
        store.Save(new Dictionary<string, Tensor> { ["step"] = tensor(new[] { step }), ["w"] = full(new long[] { 100 }, value) });
    }

    static long Step(LoadedCheckpoint c, bool expectFallback)
    {
        Assert.Equal(expectFallback, c.IsFallback);
        long step = c.Tensors["step"].item<long>();
        using var value = ((float)step).ToScalar();
        Assert.True(c.Tensors["w"].eq(value).all().item<bool>());
        return step;
    }
}
