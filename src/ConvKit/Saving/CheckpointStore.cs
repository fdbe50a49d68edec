using System.Security.Cryptography;
using static TorchSharp.torch;

namespace ConvKit.Saving;

/// <summary>Result of <see cref="CheckpointStore.LoadLatestValid"/>.</summary>
/// <param name="Path">File the checkpoint was loaded from.</param>
/// <param name="IsFallback">True when the latest file was missing or corrupt and the previous one was used.</param>
/// <param name="Tensors">The tensors; the caller owns them.</param>
/// <param name="Metadata">The file's metadata.</param>
public sealed record LoadedCheckpoint(string Path, bool IsFallback, Dictionary<string, Tensor> Tensors,
    IReadOnlyDictionary<string, string> Metadata);

/// <summary>
/// Keeps a safetensors checkpoint and its predecessor (<c>ckpt.safetensors</c>, <c>ckpt.prev.safetensors</c>) so that
/// a crash at any moment leaves at least one complete checkpoint. Each file records the SHA-256 of its data, so
/// torn or bit-rotted files are detected, not only truncated ones.
/// </summary>
public sealed class CheckpointStore
{
    /// <summary>Creates a store around <paramref name="latestPath"/>; nothing is touched on disk.</summary>
    /// <param name="latestPath">The newest checkpoint, e.g. <c>runs/ckpt.safetensors</c>; the previous one is kept as
    /// <c>runs/ckpt.prev.safetensors</c>.</param>
    public CheckpointStore(string latestPath)
    {
        LatestPath = System.IO.Path.GetFullPath(latestPath);
        var dir = System.IO.Path.GetDirectoryName(LatestPath)!;
        PreviousPath = System.IO.Path.Combine(dir,
            System.IO.Path.GetFileNameWithoutExtension(LatestPath) + ".prev" + System.IO.Path.GetExtension(LatestPath));
    }

    /// <summary>The newest checkpoint file.</summary>
    public string LatestPath { get; }

    /// <summary>The checkpoint before the newest.</summary>
    public string PreviousPath { get; }

    /// <summary>
    /// Saves a new checkpoint: writes and syncs a temp file, then moves the current latest to the previous slot and
    /// renames the temp into the latest slot. A crash between those renames leaves only the previous slot, which
    /// <see cref="LoadLatestValid"/> then uses.
    /// </summary>
    /// <param name="tensors">Tensors to save.</param>
    /// <param name="metadata">Optional metadata (e.g. epoch).</param>
    /// <exception cref="InvalidOptionException">A tensor cannot be stored (see <see cref="SafeTensors"/>).</exception>
    /// <exception cref="IOException">Writing or renaming failed; the existing checkpoints are intact.</exception>
    /// <remarks>A store assumes a single writer: it deletes temp files a killed earlier writer left for this
    /// checkpoint.</remarks>
    public void Save(IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var dir = System.IO.Path.GetDirectoryName(LatestPath)!;
        foreach (var stale in Directory.EnumerateFiles(dir, AtomicFile.TempPrefix + System.IO.Path.GetFileName(LatestPath) + ".*"))
            AtomicFile.TryDelete(stale);
        var temp = AtomicFile.WriteTemp(LatestPath, s => SafeTensors.WriteCore(s, tensors, metadata, embedSha256: true));
        try
        {
            if (File.Exists(LatestPath)) File.Move(LatestPath, PreviousPath, overwrite: true);
            File.Move(temp, LatestPath, overwrite: true);
        }
        catch
        {
            AtomicFile.TryDelete(temp);
            throw;
        }
        AtomicFile.SyncDirectory(dir);
    }

    /// <summary>Loads the latest checkpoint, or the previous one if the latest is missing or fails validation.</summary>
    /// <returns>The loaded checkpoint.</returns>
    /// <exception cref="CheckpointException">Neither file holds a valid checkpoint; the message says why for each.</exception>
    public LoadedCheckpoint LoadLatestValid()
    {
        string latestProblem, previousProblem;
        if (TryLoad(LatestPath, out var latest, out latestProblem)) return latest with { IsFallback = false };
        if (TryLoad(PreviousPath, out var previous, out previousProblem)) return previous with { IsFallback = true };
        throw new CheckpointException(
            $"No valid checkpoint: '{LatestPath}': {latestProblem}; '{PreviousPath}': {previousProblem}");
    }

    static bool TryLoad(string path, out LoadedCheckpoint result, out string problem)
    {
        result = null!;
        if (!File.Exists(path))
        {
            problem = "missing";
            return false;
        }
        try
        {
            using var file = SafeTensors.Read(path);
            if (!file.Metadata.TryGetValue(SafeTensors.DataSha256Key, out var expected))
            {
                problem = $"no {SafeTensors.DataSha256Key} metadata (not written by CheckpointStore)";
                return false;
            }
            var actual = Convert.ToHexStringLower(file.ComputeDataSha256());
            if (!string.Equals(actual, expected, StringComparison.Ordinal))
            {
                problem = $"data checksum {actual} does not match the recorded {expected}";
                return false;
            }
            result = new LoadedCheckpoint(path, false, file.LoadAll(), file.Metadata);
            problem = "";
            return true;
        }
        catch (Exception e) when (e is ConvKitException or IOException or UnauthorizedAccessException)
        {
            problem = e.Message;
            return false;
        }
    }
}

/// <summary>No valid checkpoint could be loaded.</summary>
public sealed class CheckpointException : InvalidFileException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">Why each candidate file was rejected.</param>
    public CheckpointException(string message) : base(message) { }
}
