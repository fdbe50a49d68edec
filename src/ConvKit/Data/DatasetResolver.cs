using System.Security.Cryptography;

namespace ConvKit.Data;

/// <summary>A file of a dataset as published at its canonical source.</summary>
/// <param name="FileName">File name, as stored locally.</param>
/// <param name="Url">Canonical download address.</param>
/// <param name="Size">Size in bytes of the published file.</param>
/// <param name="Sha256">Lower-case hex SHA-256 of the published file.</param>
public sealed record DatasetFile(string FileName, string Url, long Size, string Sha256);

/// <summary>Progress of a dataset download, reported after each chunk.</summary>
/// <param name="FileName">File being downloaded.</param>
/// <param name="BytesDone">Bytes received so far.</param>
/// <param name="TotalBytes">Expected size, when known.</param>
public readonly record struct DownloadProgress(string FileName, long BytesDone, long? TotalBytes);

/// <summary>
/// Finds the files of a named dataset, in this order: an explicit path; <c>$CONVKIT_DATA/&lt;name&gt;</c>; the user's
/// folder <c>~/.convkit/datasets/&lt;name&gt;</c>; system folders (<c>/usr/share/datasets/&lt;name&gt;</c>); else
/// downloads the canonical files into the user's folder, verifying each SHA-256. Every location is a property so
/// that tests and applications can redirect it.
/// </summary>
public sealed class DatasetResolver
{
    /// <summary>Name of the environment variable naming a folder that holds one subfolder per dataset.</summary>
    public const string EnvironmentVariable = "CONVKIT_DATA";

    /// <summary>The user's ConvKit dataset folder, <c>~/.convkit/datasets</c>.</summary>
    public static string DefaultUserFolder =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".convkit", "datasets");

    /// <summary>Folder from <see cref="EnvironmentVariable"/>; null when unset. Defaults to the variable's current value.</summary>
    public string? DataFolder { get; init; } = NullIfEmpty(Environment.GetEnvironmentVariable(EnvironmentVariable));

    /// <summary>Folder of per-user datasets, also where downloads go. Defaults to <see cref="DefaultUserFolder"/>.</summary>
    public string UserFolder { get; init; } = DefaultUserFolder;

    /// <summary>System-wide folders holding one subfolder per dataset, searched in order.</summary>
    public IReadOnlyList<string> SystemFolders { get; init; } = ["/usr/share/datasets"];

    /// <summary>Whether missing datasets may be downloaded. Default true.</summary>
    public bool AllowDownload { get; init; } = true;

    /// <summary>HTTP handler for downloads; null uses a default <see cref="HttpClientHandler"/>. Not disposed by the resolver.</summary>
    public HttpMessageHandler? Handler { get; init; }

    /// <summary>Timeout of one HTTP request. Default 10 minutes (CIFAR archives are 170 MB).</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>A resolver with the default locations, reading <see cref="EnvironmentVariable"/> now.</summary>
    public static DatasetResolver Default => new();

    /// <summary>Returns the path to load <paramref name="dataset"/> from, downloading it if needed.</summary>
    /// <exception cref="DatasetNotFoundException">An explicit path does not hold the dataset, or the dataset is found
    /// nowhere and cannot be downloaded (offline, download disabled, or no canonical source).</exception>
    /// <exception cref="DatasetDownloadException">A downloaded file's size or SHA-256 differs from the published one.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public string Resolve(DatasetInfo dataset, string? explicitPath = null, IProgress<DownloadProgress>? progress = null,
        CancellationToken cancellationToken = default) =>
        // No synchronization context is captured: safe to block on from any thread.
        Task.Run(() => ResolveAsync(dataset, explicitPath, progress, cancellationToken), cancellationToken).GetAwaiter().GetResult();

    /// <inheritdoc cref="Resolve"/>
    public async Task<string> ResolveAsync(DatasetInfo dataset, string? explicitPath = null,
        IProgress<DownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        if (explicitPath is not null)
            return dataset.Locate(explicitPath) ?? throw new DatasetNotFoundException(
                $"{explicitPath} does not hold the {dataset.Name} dataset: expected {dataset.Expectation}.");
        string target = Path.Combine(UserFolder, dataset.Name);
        bool canDownload = AllowDownload && dataset.Files.Count > 0;
        foreach (var candidate in Candidates(dataset))
        {
            if (dataset.Locate(candidate) is { } found) return found;
            // A folder that holds part of the dataset is a mistake to report, not a reason to look elsewhere: falling
            // back to another copy would train on data the user did not choose. (The download folder is completed
            // by the download instead.)
            bool downloadTarget = canDownload && Path.GetFullPath(candidate) == Path.GetFullPath(target);
            if (!downloadTarget && Incomplete(dataset, candidate) is { } missing)
                throw new DatasetNotFoundException($"{candidate} holds an incomplete {dataset.Name} dataset: {missing} missing " +
                    $"(expected {dataset.Expectation}). Complete the folder or remove it.");
        }
        if (!AllowDownload || dataset.Files.Count == 0)
            throw NotFound(dataset, AllowDownload ? "no canonical download source is known" : "downloading is disabled", null);
        bool created = !Directory.Exists(target);
        try
        {
            foreach (var file in dataset.Files)
                await DownloadAsync(file, target, progress, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // A failed first download leaves no empty folder behind (which later looked like a damaged dataset).
            if (created) RemoveIfEmpty(target);
            if (e is HttpRequestException or IOException or UnauthorizedAccessException
                || e is TaskCanceledException && !cancellationToken.IsCancellationRequested)
                    throw NotFound(dataset, $"the download failed: {e.Message}", e);
            throw;
        }
        return dataset.Locate(target) ?? throw new DatasetNotFoundException(
            $"Downloaded {dataset.Name} into {target}, but the folder does not hold {dataset.Expectation}.");
    }

    /// <summary>The dataset files missing from a folder that holds some of them ("'a.gz' and 'b.gz'"); null when the
    /// folder does not exist, is empty, or is complete.</summary>
    static string? Incomplete(DatasetInfo dataset, string folder)
    {
        if (!Directory.Exists(folder) || dataset.Files.Count == 0) return null;
        bool Has(string name) => File.Exists(Path.Combine(folder, name))
            || name.EndsWith(".gz", StringComparison.Ordinal) && File.Exists(Path.Combine(folder, name[..^3]));
        var missing = dataset.Files.Where(f => !Has(f.FileName)).Select(f => $"'{f.FileName}'").ToArray();
        if (missing.Length == 0) return null;
        if (missing.Length == dataset.Files.Count && !Directory.EnumerateFileSystemEntries(folder).Any()) return null; // an empty folder stands for nothing
        return missing.Length == 1 ? missing[0] + " is" : string.Join(", ", missing[..^1]) + " and " + missing[^1] + " are";
    }

    static void RemoveIfEmpty(string folder)
    {
        try
        {
            if (Directory.Exists(folder) && !Directory.EnumerateFileSystemEntries(folder).Any()) Directory.Delete(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } // the download error is the one to report
    }

    /// <summary>The folders searched, in order, before downloading.</summary>
    public IEnumerable<string> Candidates(DatasetInfo dataset)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        if (DataFolder is not null) yield return Path.Combine(DataFolder, dataset.Name);
        yield return Path.Combine(UserFolder, dataset.Name);
        foreach (var s in SystemFolders) yield return Path.Combine(s, dataset.Name);
    }

    DatasetNotFoundException NotFound(DatasetInfo dataset, string why, Exception? inner)
    {
        var lines = new List<string>
        {
            $"The {dataset.Name} dataset was not found, and {why}.",
            "Looked in:",
        };
        if (DataFolder is null) lines.Add($"  ${EnvironmentVariable}/{dataset.Name} ({EnvironmentVariable} is not set)");
        lines.AddRange(Candidates(dataset).Select(c => "  " + c));
        lines.Add($"Put {dataset.Expectation} in {Path.Combine(UserFolder, dataset.Name)}, " +
                  $"or in <folder>/{dataset.Name} and set {EnvironmentVariable}=<folder>, or pass the path explicitly.");
        if (dataset.Files.Count > 0)
            lines.Add("Canonical source: " + string.Join(", ", dataset.Files.Select(f => f.Url)));
        if (dataset.PackageHint is not null) lines.Add(dataset.PackageHint);
        var message = string.Join(Environment.NewLine, lines);
        return inner is null ? new DatasetNotFoundException(message) : new DatasetNotFoundException(message, inner);
    }

    async Task DownloadAsync(DatasetFile file, string folder, IProgress<DownloadProgress>? progress, CancellationToken ct)
    {
        Directory.CreateDirectory(folder);
        string final = Path.Combine(folder, file.FileName);
        // A file left by an earlier, interrupted run of several files was renamed only after verification, but the
        // user may have put a different file there: keep it only if it is the published one.
        if (File.Exists(final) && await HashFileAsync(final, ct).ConfigureAwait(false) == file.Sha256) return;
        string temp = $"{final}.{Guid.NewGuid():N}.part";
        using var client = Handler is null ? new HttpClient() : new HttpClient(Handler, disposeHandler: false);
        client.Timeout = Timeout;
        try
        {
            using var response = await client.GetAsync(file.Url, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
            response.EnsureSuccessStatusCode();
            long total = response.Content.Headers.ContentLength ?? file.Size;
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long done = 0;
            await using (var source = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false))
            await using (var target = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                var buffer = new byte[1 << 16];
                int n;
                while ((n = await source.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
                {
                    done += n;
                    // Never store more than the published size: a wrong or hostile server cannot fill the disk.
                    if (done > file.Size)
                        throw new DatasetDownloadException(
                            $"{file.Url}: received more than the published {file.Size} bytes; the download was abandoned.");
                    hash.AppendData(buffer, 0, n);
                    await target.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                    progress?.Report(new DownloadProgress(file.FileName, done, total));
                }
            }
            string sha = Convert.ToHexStringLower(hash.GetHashAndReset());
            if (done != file.Size || sha != file.Sha256)
                throw new DatasetDownloadException(
                    $"{file.Url}: downloaded file is not the published one: expected {file.Size} bytes with SHA-256 {file.Sha256}, " +
                    $"found {done} bytes with SHA-256 {sha}. Nothing was kept.");
            File.Move(temp, final, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    static async Task<string> HashFileAsync(string path, CancellationToken ct)
    {
        await using var s = File.OpenRead(path);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(s, ct).ConfigureAwait(false));
    }

    static string? NullIfEmpty(string? s) => string.IsNullOrWhiteSpace(s) ? null : s;
}
