using System.Formats.Tar;
using System.IO.Compression;
using static TorchSharp.torch;

namespace ConvKit.Data;

/// <summary>Which CIFAR-100 label to use.</summary>
public enum CifarLabelMode
{
    /// <summary>The 100 fine classes.</summary>
    Fine,
    /// <summary>The 20 coarse superclasses.</summary>
    Coarse,
}

/// <summary>
/// Reader of the CIFAR-10 and CIFAR-100 binary versions. Records hold label byte(s) then 3072 image bytes
/// (1024 red, 1024 green, 1024 blue, each 32x32 row-major).
/// </summary>
public static class Cifar
{
    const int Side = 32, ImageBytes = 3 * Side * Side;

    /// <summary>CIFAR-10 class names, used when <c>batches.meta.txt</c> is absent.</summary>
    public static IReadOnlyList<string> Cifar10ClassNames { get; } =
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

    /// <summary>
    /// Loads CIFAR-10 from <c>cifar-10-binary.tar.gz</c>, from the extracted <c>cifar-10-batches-bin</c> folder, or
    /// from a folder that contains either. Train = data_batch_1..5.bin (50000), test = test_batch.bin (10000).
    /// </summary>
    /// <exception cref="DatasetNotFoundException">A required file is missing.</exception>
    /// <exception cref="DatasetFormatException">A file or the archive is malformed, or a label is out of range.</exception>
    public static DatasetSplits Load10(string path)
    {
        string[] train = ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
        var files = Collect(path, "cifar-10-batches-bin", "cifar-10-binary.tar.gz", [.. train, "test_batch.bin"], ["batches.meta.txt"]);
        var names = files.TryGetValue("batches.meta.txt", out var meta) ? ReadNames(meta) : Cifar10ClassNames;
        var trainSet = Parse(train.Select(f => files[f]).ToList(), labelBytes: 1, labelIndex: 0, names);
        try
        {
            return new DatasetSplits(trainSet, Parse([files["test_batch.bin"]], 1, 0, names));
        }
        catch
        {
            trainSet.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads CIFAR-100 from <c>cifar-100-binary.tar.gz</c>, from the extracted <c>cifar-100-binary</c> folder, or
    /// from a folder that contains either. Train = train.bin (50000), test = test.bin (10000).
    /// </summary>
    /// <exception cref="DatasetNotFoundException">A required file is missing.</exception>
    /// <exception cref="DatasetFormatException">A file or the archive is malformed, or a label is out of range.</exception>
    public static DatasetSplits Load100(string path, CifarLabelMode labelMode = CifarLabelMode.Fine)
    {
        string namesFile = labelMode == CifarLabelMode.Fine ? "fine_label_names.txt" : "coarse_label_names.txt";
        var files = Collect(path, "cifar-100-binary", "cifar-100-binary.tar.gz", ["train.bin", "test.bin", namesFile], []);
        var names = ReadNames(files[namesFile]);
        int expected = labelMode == CifarLabelMode.Fine ? 100 : 20;
        if (names.Count != expected)
            throw new DatasetFormatException($"{files[namesFile].Name}: expected {expected} class names, found {names.Count}.");
        int index = labelMode == CifarLabelMode.Fine ? 1 : 0; // record = coarse byte, fine byte, image
        var trainSet = Parse([files["train.bin"]], labelBytes: 2, index, names);
        try
        {
            return new DatasetSplits(trainSet, Parse([files["test.bin"]], 2, index, names));
        }
        catch
        {
            trainSet.Dispose();
            throw;
        }
    }

    internal sealed record NamedBytes(string Name, byte[] Bytes);

    static ImageDataset Parse(IReadOnlyList<NamedBytes> parts, int labelBytes, int labelIndex, IReadOnlyList<string> names)
    {
        int record = labelBytes + ImageBytes;
        long n = 0;
        foreach (var p in parts)
        {
            if (p.Bytes.Length % record != 0)
                throw new DatasetFormatException(
                    $"{p.Name}: size {p.Bytes.Length} bytes is not a multiple of the {record}-byte record ({labelBytes} label byte(s) + {ImageBytes} image bytes); " +
                    $"the last record, at byte offset {p.Bytes.Length / record * record}, has {p.Bytes.Length % record} bytes.");
            n += p.Bytes.Length / record;
        }
        if (n * ImageBytes > Array.MaxLength)
            throw new DatasetFormatException($"{parts[0].Name}: {n} records exceed the size of one in-memory array.");
        var chw = new byte[n * ImageBytes];
        var labels = new long[n];
        long i = 0;
        foreach (var p in parts)
        {
            var src = p.Bytes.AsSpan();
            for (int off = 0; off < src.Length; off += record, i++)
            {
                byte label = src[off + labelIndex];
                if (label >= names.Count)
                    throw new DatasetFormatException(
                        $"{p.Name}: label {label} at byte offset {off + labelIndex} (record {off / record}) is out of range; expected 0..{names.Count - 1}.");
                labels[i] = label;
                src.Slice(off + labelBytes, ImageBytes).CopyTo(chw.AsSpan((int)(i * ImageBytes), ImageBytes));
            }
        }
        // One bulk copy in the file's planar layout, then a single permute to Keras' (N, H, W, C).
        using var planar = tensor(chw, [n, 3, Side, Side], ScalarType.Byte);
        using var nhwc = planar.permute(0, 2, 3, 1);
        return new ImageDataset(nhwc.contiguous(), tensor(labels, [n], ScalarType.Int64), names);
    }

    static List<string> ReadNames(NamedBytes file) =>
        System.Text.Encoding.UTF8.GetString(file.Bytes)
            .Split('\n')
            .Select(l => l.Trim())
            .Where(l => l.Length > 0)
            .ToList();

    /// <summary>Gathers the named files from a folder, the extracted subfolder, or a .tar.gz archive.</summary>
    static Dictionary<string, NamedBytes> Collect(string path, string subfolder, string archiveName, string[] required, string[] optional)
    {
        string? archive = File.Exists(path) ? path
            : Directory.Exists(path) && File.Exists(Path.Combine(path, archiveName)) ? Path.Combine(path, archiveName)
            : null;
        string? folder = Directory.Exists(path)
            ? required.All(f => File.Exists(Path.Combine(path, f))) ? path
            : required.All(f => File.Exists(Path.Combine(path, subfolder, f))) ? Path.Combine(path, subfolder)
            : null
            : null;
        var result = new Dictionary<string, NamedBytes>(StringComparer.Ordinal);
        if (folder is not null)
        {
            foreach (var f in required.Concat(optional))
            {
                var p = Path.Combine(folder, f);
                if (File.Exists(p)) result[f] = new NamedBytes(p, File.ReadAllBytes(p));
            }
            return result;
        }
        if (archive is null)
            throw new DatasetNotFoundException(
                $"No CIFAR files at {path}: expected {archiveName}, a {subfolder} folder, or a folder holding {string.Join(", ", required)}.");
        ReadArchive(archive, required.Concat(optional).ToHashSet(StringComparer.Ordinal), result);
        var missing = required.Where(f => !result.ContainsKey(f)).ToList();
        if (missing.Count > 0)
            throw new DatasetFormatException($"{archive}: the archive lacks {string.Join(", ", missing)}.");
        return result;
    }

    static void ReadArchive(string archive, HashSet<string> wanted, Dictionary<string, NamedBytes> result)
    {
        using var file = File.OpenRead(archive);
        // The archive's entries declare their own sizes; bound each by what the compressed file could expand to.
        long bound = Math.Min(Array.MaxLength, file.Length * 1032);
        try
        {
            using var gz = new GZipStream(file, CompressionMode.Decompress);
            using var tar = new TarReader(gz);
            while (tar.GetNextEntry() is { } entry)
            {
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile)) continue;
                string name = entry.Name.Replace('\\', '/');
                string leaf = name[(name.LastIndexOf('/') + 1)..];
                if (!wanted.Contains(leaf) || entry.DataStream is null) continue;
                string where = $"{archive}:{name}";
                if (entry.Length > bound)
                    throw new DatasetFormatException($"{where}: entry declares {entry.Length} bytes, more than the archive can hold.");
                var bytes = new byte[entry.Length];
                int total = 0;
                while (total < bytes.Length)
                {
                    int n = entry.DataStream.Read(bytes, total, bytes.Length - total);
                    if (n == 0)
                        throw new DatasetFormatException($"{where} is truncated at byte offset {total}: expected {entry.Length} bytes.");
                    total += n;
                }
                result[leaf] = new NamedBytes(where, bytes);
            }
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or FormatException)
        {
            throw new DatasetFormatException($"{archive}: corrupt or truncated .tar.gz archive: {e.Message}", e);
        }
    }
}
