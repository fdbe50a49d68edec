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
        CleanStaleTemps(full);
        // The writer's process id is part of the name, so that a later save can tell a killed writer's leftovers
        // from a concurrent writer's file in progress.
        var temp = Path.Combine(dir, $"{TempPrefix}{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}");
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

    /// <summary>How old a temp file without a readable writer process id must be before a save deletes it.</summary>
    public static readonly TimeSpan StaleAfter = TimeSpan.FromMinutes(5);

    /// <summary>
    /// Deletes the temp files an interrupted (killed) earlier save of <paramref name="path"/> left behind: those whose
    /// writer process is gone, and those without a process id in their name that are older than <see cref="StaleAfter"/>.
    /// A live writer's temp file (another thread or process saving the same target now) is kept. Best effort: errors
    /// are ignored, the save itself reports what matters.
    /// </summary>
    /// <returns>The number of files deleted.</returns>
    public static int CleanStaleTemps(string path)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        var prefix = TempPrefix + Path.GetFileName(full) + ".";
        int deleted = 0;
        IEnumerable<string> candidates;
        try
        {
            if (!Directory.Exists(dir)) return 0;
            candidates = Directory.EnumerateFiles(dir, prefix + "*").ToArray();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
        foreach (var temp in candidates)
        {
            var rest = Path.GetFileName(temp)[prefix.Length..].Split('.');
            bool stale = rest.Length == 2 && int.TryParse(rest[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid)
                ? pid != Environment.ProcessId && !ProcessAlive(pid)
                : IsOld(temp);
            if (!stale) continue;
            TryDelete(temp);
            if (!File.Exists(temp)) deleted++;
        }
        return deleted;
    }

    static bool IsOld(string file)
    {
        try { return DateTime.UtcNow - File.GetLastWriteTimeUtc(file) > StaleAfter; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    static bool ProcessAlive(int pid)
    {
        if (OperatingSystem.IsLinux()) return Directory.Exists($"/proc/{pid}");
        try
        {
            using var p = System.Diagnostics.Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException) { return false; } // no such process
        catch (InvalidOperationException) { return false; }
    }

    /// <summary>
    /// <see cref="Write"/>, with filesystem failures turned into one <see cref="ConvKitException"/> that names the target
    /// and the cause (<c>cannot write 'out/loss.png': no space left on device</c>).
    /// </summary>
    /// <exception cref="ConvKitException">The file cannot be written; the previous file, if any, is untouched.</exception>
    public static void WriteOrExplain(string path, Action<Stream> write)
    {
        try
        {
            Write(path, write);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConvKitException($"cannot write '{path}': {Explain(e, path)}", e);
        }
    }

    /// <summary>The cause of a filesystem error in a few words, without the temp file's name or a stack trace.</summary>
    public static string Explain(Exception e, string path)
    {
        ArgumentNullException.ThrowIfNull(e);
        const int ENOSPC = 28, EDQUOT = 122, EROFS = 30, EACCES = 13, EPERM = 1, ENOTDIR = 20, EISDIR = 21;
        var dir = string.IsNullOrEmpty(path) ? "" : Path.GetDirectoryName(Path.GetFullPath(path)) ?? "";
        int errno = e.HResult & 0xFFFF; // .NET on Unix: HResult carries the errno for IOExceptions it raises
        if (e is DirectoryNotFoundException) return $"the folder '{dir}' does not exist";
        if (e is UnauthorizedAccessException || errno is EACCES or EPERM) return $"permission denied (is '{dir}' writable?)";
        if (e is IOException && errno == EROFS) return "read-only file system";
        if (e is IOException && errno is ENOSPC or EDQUOT) return "no space left on device";
        if (e is IOException && errno == ENOTDIR) return $"'{dir}' (or a folder above it) is a file, not a folder";
        if (e is IOException && errno == EISDIR || !string.IsNullOrEmpty(path) && Directory.Exists(path)) return $"'{path}' is a folder";
        var m = e.Message.ReplaceLineEndings(" ");
        return m.Contains("No space left", StringComparison.OrdinalIgnoreCase) ? "no space left on device"
            : m.Contains("Read-only file system", StringComparison.OrdinalIgnoreCase) ? "read-only file system" : m;
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
