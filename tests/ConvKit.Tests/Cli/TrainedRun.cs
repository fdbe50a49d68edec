using System.Diagnostics;
using ConvKit.Saving;
using ConvKit.Tests.Data;
using StbImageWriteSharp;

namespace ConvKit.Tests.Cli;

/// <summary>
/// One small run of <c>convkit train lenet5</c> on a 96-image IDX dataset, shared by the CLI tests that need what
/// train writes (the run folder, its model folder and file), plus hostile files to hand to the commands.
/// </summary>
public sealed class TrainedRun : IDisposable
{
    public TrainedRun()
    {
        Dir = Directory.CreateTempSubdirectory("convkit-run-").FullName;
        Data = Path.Combine(Dir, "data");
        DataFiles.WriteIdxDataset(Data, trainCount: 96, testCount: 20);
        Run = Path.Combine(Dir, "run");
        var (code, _, error) = CliRunner.Run("train", "lenet5", "--data", Data, "--epochs", "1", "--batch-size", "16",
            "--verbose", "0", "--out", Run);
        Assert.True(code == 0, error);
        Image = Path.Combine(Dir, "shirt.png");
        WritePng(Image, 40, 30);
    }

    public string Dir { get; }

    /// <summary>An IDX Fashion-MNIST-format dataset folder (28x28, 96 + 20 images).</summary>
    public string Data { get; }

    /// <summary>The run folder written by train.</summary>
    public string Run { get; }

    public string ModelFolder => Path.Combine(Run, "model");

    public string ModelFile => Path.Combine(Run, "model", "model.safetensors");

    /// <summary>A 40x30 RGB PNG.</summary>
    public string Image { get; }

    /// <summary>A file in <see cref="Dir"/> with the given bytes.</summary>
    public string File(string name, byte[] bytes)
    {
        var p = Path.Combine(Dir, "files", name);
        Directory.CreateDirectory(Path.GetDirectoryName(p)!);
        System.IO.File.WriteAllBytes(p, bytes);
        return p;
    }

    /// <summary>A copy of the model folder (model.safetensors and training.json), for tests that alter it.</summary>
    public string CopyModelFolder(string name)
    {
        var to = Path.Combine(Dir, "copies", name);
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(ModelFolder)) System.IO.File.Copy(f, Path.Combine(to, Path.GetFileName(f)), overwrite: true);
        return to;
    }

    public static void WritePng(string path, int w, int h)
    {
        var rgb = new byte[w * h * 3];
        for (int i = 0; i < rgb.Length; i++) rgb[i] = (byte)(i * 7 % 251);
        using var s = System.IO.File.Create(path);
        new ImageWriter().WritePng(rgb, w, h, ColorComponents.RedGreenBlue, s);
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>A small tmpfs mounted for a test (full disk, read-only file system); null when mounting is not possible
/// (not root). Unmounted on dispose.</summary>
public sealed class Tmpfs : IDisposable
{
    Tmpfs(string path) => Path_ = path;

    public string Path_ { get; }

    public static Tmpfs? TryMount(long bytes, bool readOnly = false)
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName != "root") return null;
        var dir = Directory.CreateTempSubdirectory("convkit-tmpfs-").FullName;
        if (Exec("mount", "-t", "tmpfs", "-o", $"size={bytes}{(readOnly ? ",ro" : "")}", "tmpfs", dir) != 0)
        {
            Directory.Delete(dir);
            return null;
        }
        return new Tmpfs(dir);
    }

    static int Exec(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(psi)!;
            p.WaitForExit();
            return p.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return -1;
        }
    }

    /// <summary>Files left in the mount: none may be a temp file or empty.</summary>
    public static void AssertNoStrayFiles(string root)
    {
        if (!Directory.Exists(root)) return;
        foreach (var f in Directory.GetFiles(root, "*", SearchOption.AllDirectories))
        {
            Assert.False(Path.GetFileName(f).StartsWith(AtomicFile.TempPrefix, StringComparison.Ordinal), $"stray temp file {f}");
            Assert.True(new FileInfo(f).Length > 0, $"0-byte file {f}");
        }
    }

    public void Dispose()
    {
        Exec("umount", Path_);
        try { Directory.Delete(Path_, recursive: true); } catch (IOException) { }
    }
}
