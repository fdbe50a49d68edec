using System.Runtime.InteropServices;

namespace ConvKit.Saving;

/// <summary>
/// Crash-safe file replacement: content goes to a temporary file in the target's folder, is flushed to disk, then
/// renamed over the target, so readers see either the complete old file or the complete new one.
/// </summary>
public static partial class AtomicFile
{
    /// <summary>Prefix of the temporary files; they live beside the target and are removed on failure.</summary>
    public const string TempPrefix = ".convkit-tmp-";

    /// <summary>
    /// Writes <paramref name="path"/> atomically: temp file, flush + fsync, rename over the target, fsync the folder
    /// (Linux). If <paramref name="write"/> throws, the previous file is untouched and the temp file deleted.
    /// </summary>
    /// <param name="path">Target file.</param>
    /// <param name="write">Writes the full content to the given stream.</param>
    /// <exception cref="IOException">The file cannot be created, synced or renamed.</exception>
    /// <exception cref="UnauthorizedAccessException">The folder is not writable.</exception>
    /// <remarks>Any exception thrown by <paramref name="write"/> propagates unchanged.</remarks>
    public static void Write(string path, Action<Stream> write)
    {
        var temp = WriteTemp(path, write);
        try
        {
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>Writes and fsyncs a temp file beside <paramref name="path"/>; returns its path.</summary>
    internal static string WriteTemp(string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(write);
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        var temp = Path.Combine(dir, $"{TempPrefix}{Path.GetFileName(full)}.{Guid.NewGuid():N}");
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            return temp;
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    internal static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { } // best effort: the original error is the one worth reporting
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>Makes a rename durable: on Linux a rename is only persistent once its folder is fsynced.</summary>
    /// <exception cref="IOException">The folder cannot be opened or synced.</exception>
    internal static void SyncDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux()) return; // Windows has no directory fsync; NTFS journals renames itself
        int fd = Open(dir, ORdOnly | ODirectory | OCloexec);
        if (fd < 0) throw new IOException($"Cannot open folder '{dir}' to sync it (errno {Marshal.GetLastPInvokeError()}).");
        try
        {
            if (Fsync(fd) != 0) throw new IOException($"Cannot fsync folder '{dir}' (errno {Marshal.GetLastPInvokeError()}).");
        }
        finally
        {
            _ = Close(fd);
        }
    }

    // Linux x86-64 / arm64 values from <fcntl.h>.
    const int ORdOnly = 0;
    static readonly int ODirectory = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 0x4000 : 0x10000;
    const int OCloexec = 0x80000;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
