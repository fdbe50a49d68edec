using ConvKit.Saving;

namespace ConvKit.Tests.Cli;

/// <summary>
/// Issue 12: a full disk, a read-only file system or an --out that is a file gave stack traces and left 0-byte
/// summary.txt, truncated loss.png and a model without training.json. Now: one line naming the path and the cause,
/// a non-zero exit code, and every file left is complete. The full and read-only file systems are small tmpfs mounts
/// (this needs root with the right to mount); where mounting is not possible the failure is injected into the atomic
/// writer instead.
/// </summary>
[Collection(nameof(ConvKit.Tests.Training.GlobalRandomCollection))]
public class DiskFailureTests(TrainedRun run) : IClassFixture<TrainedRun>
{
    // Where no tmpfs can be mounted (not root, or a container without CAP_SYS_ADMIN), the same failure is injected
    // into the atomic writer, so the test still checks the message and that nothing is left.
    void InjectedFailure(int errno, string cause)
    {
        var target = Path.Combine(run.Dir, "injected", "summary.txt");
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        var e = Assert.Throws<ConvKitException>(() => AtomicFile.WriteOrExplain(target, s =>
        {
            s.Write(new byte[10]);
            throw new IOException("injected", errno);
        }));
        Assert.Equal($"cannot write '{target}': {cause}", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(Path.GetDirectoryName(target)!));
    }

    static void AssertOneLineError(int code, string error, params string[] expected)
    {
        Assert.NotEqual(0, code);
        Assert.StartsWith("error: ", error);
        Assert.Single(error.TrimEnd().Split('\n'));
        Assert.DoesNotContain("   at ", error);
        Assert.DoesNotContain(AtomicFile.TempPrefix, error); // the target is named, not the temp file
        foreach (var e in expected) Assert.Contains(e, error);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData(4 * 1024)]   // room for summary.txt only: TensorBoard's first event file fails
    [InlineData(8 * 1024)]   // TensorBoard fails part-way
    [InlineData(16 * 1024)]  // room for summary.txt and the TensorBoard events only
    [InlineData(200 * 1024)] // not for the 247 KB model
    public void TrainOnAFullDiskSaysSoAndLeavesOnlyCompleteFiles(int bytes)
    {
        using var fs = Tmpfs.TryMount(bytes);
        if (fs is null)
        {
            InjectedFailure(28, "no space left on device");
            return;
        }
        var outDir = Path.Combine(fs.Path_, "run");
        var (code, _, error) = CliRunner.Run("train", "lenet5", "--data", run.Data, "--epochs", "1", "--batch-size", "16", "--verbose", "0", "--out", outDir);
        AssertOneLineError(code, error, "no space left on device", outDir);
        Tmpfs.AssertNoStrayFiles(fs.Path_);
        Assert.False(File.Exists(Path.Combine(outDir, "model", "model.safetensors")) && !File.Exists(Path.Combine(outDir, "model", "training.json")),
            "a model without its training.json");
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void ExportOnAFullDiskSaysSoAndLeavesNoFile()
    {
        using var fs = Tmpfs.TryMount(16 * 1024);
        if (fs is null)
        {
            InjectedFailure(28, "no space left on device");
            return;
        }
        var onnx = Path.Combine(fs.Path_, "lenet5.onnx");
        var (code, _, error) = CliRunner.Run("export", "lenet5", "--onnx", onnx);
        AssertOneLineError(code, error, $"cannot write '{onnx}': no space left on device");
        Assert.Empty(Directory.GetFileSystemEntries(fs.Path_));
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("train")]
    [InlineData("train-nested")]
    [InlineData("export")]
    public void AReadOnlyFileSystemSaysSo(string what)
    {
        using var fs = Tmpfs.TryMount(1 << 20, readOnly: true);
        if (fs is null)
        {
            InjectedFailure(30, "read-only file system");
            return;
        }
        var target = Path.Combine(fs.Path_, what == "train-nested" ? "a/b/run" : "run");
        var (code, _, error) = what == "export"
            ? CliRunner.Run("export", "lenet5", "--onnx", target + ".onnx")
            : CliRunner.Run("train", "lenet5", "--data", run.Data, "--epochs", "1", "--verbose", "0", "--out", target);
        AssertOneLineError(code, error, "read-only file system", what == "export" ? target + ".onnx" : $"--out '{target}'");
        Assert.Empty(Directory.GetFileSystemEntries(fs.Path_));
    }

    [Fact]
    public void AMissingOutParentIsCreated()
    {
        var outDir = Path.Combine(run.Dir, "new", "parents", "run");
        var (code, _, error) = CliRunner.Run("train", "lenet5", "--data", run.Data, "--epochs", "1", "--batch-size", "32", "--verbose", "0", "--out", outDir);
        Assert.True(code == 0, error);
        Assert.True(File.Exists(Path.Combine(outDir, "model", "training.json")));
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void AnOutInsideAFileSaysSo()
    {
        var file = run.File("plain.txt", [1]);
        var outDir = Path.Combine(file, "run");
        var (code, _, error) = CliRunner.Run("train", "lenet5", "--data", run.Data, "--epochs", "1", "--verbose", "0", "--out", outDir);
        AssertOneLineError(code, error, $"--out '{outDir}'");
        Assert.Equal([1], File.ReadAllBytes(file));
    }
}
