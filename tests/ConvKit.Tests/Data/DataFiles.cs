using System.Buffers.Binary;
using System.Formats.Tar;
using System.IO.Compression;

namespace ConvKit.Tests.Data;

/// <summary>A temporary folder, deleted on dispose.</summary>
sealed class TempFolder : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("convkit-data-").FullName;
    public string this[string relative] => System.IO.Path.Combine(Path, relative);
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Writers of the published formats, for tests.</summary>
static class DataFiles
{
    /// <summary>IDX bytes: magic 0x0000 08 ndims, big-endian dims, data.</summary>
    public static byte[] Idx(int[] dims, byte[] data)
    {
        var bytes = new byte[4 + 4 * dims.Length + data.Length];
        bytes[2] = 0x08;
        bytes[3] = (byte)dims.Length;
        for (int i = 0; i < dims.Length; i++) BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4 + 4 * i), (uint)dims[i]);
        data.CopyTo(bytes, 4 + 4 * dims.Length);
        return bytes;
    }

    public static byte[] Gzip(byte[] raw)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest)) gz.Write(raw);
        return ms.ToArray();
    }

    /// <summary>Images whose pixel (i, r, c) = (i * 7 + r * 3 + c) mod 256, so every value says where it came from.</summary>
    public static byte[] Pixels(int n, int h, int w)
    {
        var data = new byte[n * h * w];
        for (int i = 0; i < n; i++)
            for (int r = 0; r < h; r++)
                for (int c = 0; c < w; c++)
                    data[(i * h + r) * w + c] = (byte)(i * 7 + r * 3 + c);
        return data;
    }

    /// <summary>Writes an IDX image/label pair (labels i mod 10) and returns their paths.</summary>
    public static (string Images, string Labels) WriteIdxPair(string folder, string prefix, int n, int h, int w, bool gzip)
    {
        var labels = Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray();
        string ext = gzip ? ".gz" : "";
        string images = Path.Combine(folder, $"{prefix}-images-idx3-ubyte{ext}");
        string labelPath = Path.Combine(folder, $"{prefix}-labels-idx1-ubyte{ext}");
        var img = Idx([n, h, w], Pixels(n, h, w));
        var lab = Idx([n], labels);
        File.WriteAllBytes(images, gzip ? Gzip(img) : img);
        File.WriteAllBytes(labelPath, gzip ? Gzip(lab) : lab);
        return (images, labelPath);
    }

    /// <summary>Writes the four IDX files of an MNIST-like dataset (small).</summary>
    public static void WriteIdxDataset(string folder, int trainCount = 12, int testCount = 5, bool gzip = true)
    {
        Directory.CreateDirectory(folder);
        WriteIdxPair(folder, "train", trainCount, 28, 28, gzip);
        WriteIdxPair(folder, "t10k", testCount, 28, 28, gzip);
    }

    /// <summary>CIFAR records: label byte(s) then planar R, G, B with value (record + channel * 50 + pixel) mod 256.</summary>
    public static byte[] CifarRecords(int n, byte[][] labelsPerRecord)
    {
        int lb = labelsPerRecord[0].Length, rec = lb + 3072;
        var bytes = new byte[n * rec];
        for (int i = 0; i < n; i++)
        {
            labelsPerRecord[i].CopyTo(bytes, i * rec);
            for (int ch = 0; ch < 3; ch++)
                for (int p = 0; p < 1024; p++)
                    bytes[i * rec + lb + ch * 1024 + p] = CifarValue(i, ch, p);
        }
        return bytes;
    }

    public static byte CifarValue(int record, int channel, int pixel) => (byte)(record + channel * 50 + pixel);

    public static void WriteTarGz(string archive, IEnumerable<(string Name, byte[] Data)> entries)
    {
        using var file = File.Create(archive);
        using var gz = new GZipStream(file, CompressionLevel.Fastest);
        using var tar = new TarWriter(gz, TarEntryFormat.Ustar);
        foreach (var (name, data) in entries)
        {
            var e = new UstarTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(data) };
            tar.WriteEntry(e);
        }
    }

    /// <summary>CIFAR-10 files: 5 train batches of 2 records each, a test batch of 3, and the meta file.</summary>
    public static List<(string Name, byte[] Data)> Cifar10Files()
    {
        var files = new List<(string, byte[])>();
        for (int b = 1; b <= 5; b++)
            files.Add(($"cifar-10-batches-bin/data_batch_{b}.bin", CifarRecords(2, [[(byte)(b - 1)], [(byte)(b + 4)]])));
        files.Add(("cifar-10-batches-bin/test_batch.bin", CifarRecords(3, [[9], [0], [3]])));
        files.Add(("cifar-10-batches-bin/batches.meta.txt",
            "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n"u8.ToArray()));
        return files;
    }

    public static List<(string Name, byte[] Data)> Cifar100Files()
    {
        string fine = string.Join("\n", Enumerable.Range(0, 100).Select(i => $"fine{i}")) + "\n";
        string coarse = string.Join("\n", Enumerable.Range(0, 20).Select(i => $"coarse{i}")) + "\n";
        return
        [
            ("cifar-100-binary/train.bin", CifarRecords(3, [[19, 99], [0, 42], [7, 1]])),
            ("cifar-100-binary/test.bin", CifarRecords(2, [[5, 77], [6, 0]])),
            ("cifar-100-binary/fine_label_names.txt", System.Text.Encoding.UTF8.GetBytes(fine)),
            ("cifar-100-binary/coarse_label_names.txt", System.Text.Encoding.UTF8.GetBytes(coarse)),
        ];
    }

    public static void WriteFiles(string root, IEnumerable<(string Name, byte[] Data)> files)
    {
        foreach (var (name, data) in files)
        {
            var p = Path.Combine(root, name);
            Directory.CreateDirectory(Path.GetDirectoryName(p)!);
            File.WriteAllBytes(p, data);
        }
    }
}
