using System.Buffers.Binary;
using System.IO.Compression;
using static TorchSharp.torch;

namespace ConvKit.Data;

/// <summary>
/// Reader of the IDX format of MNIST, Fashion-MNIST and KMNIST: a big-endian magic number (two zero bytes, a type
/// code, the number of dimensions), one big-endian u32 per dimension, then the data. Files may be gzip-compressed
/// (detected by the bytes 1f 8b) or raw.
/// </summary>
public static class Idx
{
    const byte TypeUInt8 = 0x08;

    // Deflate cannot compress better than about 1032:1, so a gzip file of n bytes cannot expand beyond this factor:
    // a header that declares more is corrupt, and we refuse it before allocating.
    const long MaxDeflateRatio = 1032;

    /// <summary>Reads an IDX image file (magic 0x00000803) into a uint8 tensor (N, rows, cols, 1).</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DatasetFormatException">Wrong magic, bad gzip data, truncated file or trailing data.</exception>
    public static Tensor ReadImages(string path)
    {
        var (dims, data) = Read(path, expectedDims: 3);
        return FromBytes(data, [dims[0], dims[1], dims[2], 1]);
    }

    /// <summary>Reads an IDX label file (magic 0x00000801) into an int64 tensor (N).</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="DatasetFormatException">Wrong magic, bad gzip data, truncated file or trailing data.</exception>
    public static Tensor ReadLabels(string path)
    {
        var (dims, data) = Read(path, expectedDims: 1);
        using var bytes = FromBytes(data, [dims[0]]);
        return bytes.to_type(ScalarType.Int64);
    }

    /// <summary>
    /// Reads an image file and its label file into a dataset, checking that the counts agree and that every label is
    /// below <c>classNames.Count</c>.
    /// </summary>
    /// <exception cref="FileNotFoundException">A file does not exist.</exception>
    /// <exception cref="DatasetFormatException">A file is malformed, the counts differ, or a label is out of range.</exception>
    public static ImageDataset Load(string imagesPath, string labelsPath, IReadOnlyList<string> classNames)
    {
        ArgumentNullException.ThrowIfNull(classNames);
        var (imageDims, images) = Read(imagesPath, expectedDims: 3);
        var (labelDims, labels) = Read(labelsPath, expectedDims: 1);
        if (imageDims[0] != labelDims[0])
            throw new DatasetFormatException(
                $"{imagesPath} holds {imageDims[0]} images but {labelsPath} holds {labelDims[0]} labels; expected equal counts.");
        int bad = classNames.Count == 0 ? -1 : labels.AsSpan().IndexOfAnyExceptInRange((byte)0, (byte)Math.Min(255, classNames.Count - 1));
        if (bad >= 0)
            throw new DatasetFormatException(
                $"{labelsPath}: label {labels[bad]} at byte offset {8 + bad} (sample {bad}) is out of range; expected 0..{classNames.Count - 1}.");
        var x = FromBytes(images, [imageDims[0], imageDims[1], imageDims[2], 1]);
        using var yBytes = FromBytes(labels, [labelDims[0]]);
        return new ImageDataset(x, yBytes.to_type(ScalarType.Int64), classNames);
    }

    static Tensor FromBytes(byte[] data, long[] shape) => tensor(data, shape, ScalarType.Byte);

    /// <summary>Reads header and payload, validating everything before and while reading.</summary>
    internal static (long[] Dims, byte[] Data) Read(string path, int expectedDims)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        long fileLength = file.Length;
        Span<byte> sig = stackalloc byte[2];
        int got = file.ReadAtLeast(sig, 2, throwOnEndOfStream: false);
        file.Position = 0;
        bool gzip = got == 2 && sig[0] == 0x1f && sig[1] == 0x8b;
        using Stream stream = gzip ? new GZipStream(file, CompressionMode.Decompress) : file;
        string what = gzip ? "decompressed byte offset" : "byte offset";
        try
        {
            var header = new byte[4 + 4 * expectedDims];
            ReadFully(stream, header.AsSpan(0, 4), path, what, 0, "the 4-byte magic number");
            uint magic = BinaryPrimitives.ReadUInt32BigEndian(header);
            uint expectedMagic = (uint)(TypeUInt8 << 8 | expectedDims);
            if (magic != expectedMagic)
                throw new DatasetFormatException(
                    $"{path}: wrong magic number at byte offset 0: expected 0x{expectedMagic:X8} ({Kind(expectedDims)}), found 0x{magic:X8}{Describe(magic)}.");
            ReadFully(stream, header.AsSpan(4), path, what, 4, $"{expectedDims} dimension(s)");
            var dims = new long[expectedDims];
            long count = 1;
            for (int i = 0; i < expectedDims; i++)
            {
                dims[i] = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4 + 4 * i));
                count = dims[i] == 0 ? 0 : count <= Array.MaxLength / dims[i] ? count * dims[i] : long.MaxValue;
            }
            string shape = string.Join(" x ", dims);
            if (count > Array.MaxLength)
                throw new DatasetFormatException($"{path}: header declares {shape} = more than {Array.MaxLength} bytes of data; the file is corrupt.");
            long headerLength = header.Length;
            if (!gzip && fileLength != headerLength + count)
                throw new DatasetFormatException(fileLength < headerLength + count
                    ? $"{path} is truncated: header declares {shape}, expected {headerLength + count} bytes, found {fileLength}."
                    : $"{path}: header declares {shape}, expected {headerLength + count} bytes, found {fileLength} (trailing data).");
            if (gzip && headerLength + count > fileLength * MaxDeflateRatio)
                throw new DatasetFormatException(
                    $"{path}: header declares {shape} ({headerLength + count} bytes) but a {fileLength}-byte gzip file cannot expand to that; the file is corrupt.");
            var data = new byte[count];
            ReadFully(stream, data, path, what, headerLength, $"{shape} bytes of data");
            if (stream.ReadByte() >= 0)
                throw new DatasetFormatException(
                    $"{path}: trailing data at {what} {headerLength + count}: expected end of data after {shape} values.");
            return (dims, data);
        }
        catch (InvalidDataException e)
        {
            // .NET reports most gzip faults (a wrong CRC-32 included) as "unsupported compression method": say what it is.
            throw new DatasetFormatException($"{path}: bad gzip data (compressed size {fileLength} bytes): {GzipDiagnosis.Explain(path)}", e);
        }
    }

    static void ReadFully(Stream s, Span<byte> buffer, string path, string what, long offset, string expected)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = s.Read(buffer[total..]);
            if (n == 0)
                throw new DatasetFormatException(
                    $"{path} is truncated at {what} {offset + total}: expected {expected} ({buffer.Length} bytes from offset {offset}), found {total}.");
            total += n;
        }
    }

    static string Kind(int dims) => dims == 3 ? "uint8 images, 3 dimensions" : dims == 1 ? "uint8 labels, 1 dimension" : $"uint8, {dims} dimensions";

    static string Describe(uint magic) =>
        magic >> 16 != 0 ? " (not an IDX file)" : $" (type 0x{magic >> 8 & 0xff:X2}, {magic & 0xff} dimension(s))";
}

/// <summary>Why a gzip file failed to decompress, found by parsing it by hand (RFC 1952).</summary>
internal static class GzipDiagnosis
{
    /// <summary>A short cause: unsupported method, corrupt deflate data at an offset, CRC-32 or length mismatch.</summary>
    public static string Explain(string path)
    {
        byte[] b;
        try { b = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return e.Message; }
        if (b.Length < 18) return $"the file is truncated ({b.Length} bytes; a gzip member has at least 18)";
        if (b[2] != 8) return $"unsupported compression method {b[2]} at byte 2 (gzip uses 8, deflate)";
        byte flags = b[3];
        int pos = 10;
        try
        {
            if ((flags & 4) != 0) pos += 2 + (b[pos] | b[pos + 1] << 8);     // FEXTRA
            if ((flags & 8) != 0) while (b[pos++] != 0) { }                  // FNAME
            if ((flags & 16) != 0) while (b[pos++] != 0) { }                 // FCOMMENT
            if ((flags & 2) != 0) pos += 2;                                  // FHCRC
        }
        catch (IndexOutOfRangeException) { return "the gzip header is truncated"; }
        if (pos >= b.Length) return "the gzip header is truncated";
        var output = new MemoryStream();
        var input = new MemoryStream(b, pos, b.Length - pos);
        try
        {
            using var deflate = new DeflateStream(input, CompressionMode.Decompress, leaveOpen: true);
            deflate.CopyTo(output);
        }
        catch (InvalidDataException)
        {
            return $"the compressed data is corrupt (deflate stream starting at byte {pos}, decoded {output.Length} bytes before the fault)";
        }
        if (b.Length - 8 < pos) return "the file is truncated: the gzip trailer (CRC-32 and length) is missing";
        uint storedCrc = BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(b.Length - 8));
        uint storedSize = BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(b.Length - 4));
        uint crc = Crc32(output.GetBuffer().AsSpan(0, (int)output.Length));
        if (crc != storedCrc)
            return $"CRC-32 mismatch: the trailer at byte {b.Length - 8} says 0x{storedCrc:X8}, the data gives 0x{crc:X8} (the file is corrupt)";
        if ((uint)output.Length != storedSize)
            return $"length mismatch: the trailer at byte {b.Length - 4} says {storedSize} bytes, the data has {output.Length}";
        return "the data after the first gzip member is not valid gzip";
    }

    static readonly uint[] Table = Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    }).ToArray();

    static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFFu;
        foreach (var x in data) c = Table[(c ^ x) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }
}
