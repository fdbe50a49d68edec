using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Saving;

/// <summary>
/// Reads and writes the safetensors format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON describing
/// each tensor (dtype, shape, data_offsets) plus an optional <c>__metadata__</c> string map, then the raw
/// little-endian, C-contiguous tensor data.
/// </summary>
public static class SafeTensors
{
    /// <summary>Largest header the reader accepts (100,000,000 bytes, as the reference implementation).</summary>
    public const long MaxHeaderLength = 100_000_000;

    /// <summary>Key of the reserved metadata entry.</summary>
    public const string MetadataKey = "__metadata__";

    /// <summary>Metadata key under which <see cref="CheckpointStore"/> records the SHA-256 of the data buffer.</summary>
    public const string DataSha256Key = "convkit.data_sha256";

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="stream"/>. Names are sorted ordinally and the data is laid
    /// out in that order, so equal inputs give byte-identical files.
    /// </summary>
    /// <param name="stream">Destination, written from its current position.</param>
    /// <param name="tensors">Tensors by name; any device, any layout (copied to contiguous CPU memory).</param>
    /// <param name="metadata">Optional free-form string map stored as <c>__metadata__</c>.</param>
    /// <exception cref="InvalidOptionException">A name is <c>__metadata__</c>, a dtype is unsupported, or a tensor
    /// exceeds 2 GiB.</exception>
    public static void Write(Stream stream, IReadOnlyDictionary<string, Tensor> tensors,
        IReadOnlyDictionary<string, string>? metadata = null) =>
        WriteCore(stream, tensors, metadata, embedSha256: false);

    /// <summary>Writes a safetensors file atomically (see <see cref="AtomicFile.Write"/>).</summary>
    /// <param name="path">Destination file; replaced only once the new content is complete and synced.</param>
    /// <param name="tensors">Tensors by name.</param>
    /// <param name="metadata">Optional free-form string map stored as <c>__metadata__</c>.</param>
    /// <exception cref="InvalidOptionException">See <see cref="Write(Stream, IReadOnlyDictionary{string, Tensor}, IReadOnlyDictionary{string, string}?)"/>.</exception>
    /// <exception cref="IOException">The file cannot be written or renamed.</exception>
    public static void Write(string path, IReadOnlyDictionary<string, Tensor> tensors,
        IReadOnlyDictionary<string, string>? metadata = null) =>
        AtomicFile.Write(path, s => WriteCore(s, tensors, metadata, embedSha256: false));

    internal static void WriteCore(Stream stream, IReadOnlyDictionary<string, Tensor> tensors,
        IReadOnlyDictionary<string, string>? metadata, bool embedSha256)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(tensors);
        using var scope = NewDisposeScope(); // frees the contiguous CPU copies, never the caller's tensors
        var names = tensors.Keys.OrderBy(n => n, StringComparer.Ordinal).ToArray();
        var prepared = new (string Name, Tensor T, SafeTensorsDType DType)[names.Length];
        for (int i = 0; i < names.Length; i++)
        {
            var name = names[i];
            if (name == MetadataKey) throw new InvalidOptionException(nameof(tensors), $"'{MetadataKey}' is reserved and cannot name a tensor.");
            var t = tensors[name] ?? throw new InvalidOptionException(nameof(tensors), $"Tensor '{name}' is null.");
            if (!SafeTensorsDTypes.TryFromScalarType(t.dtype, out var dt))
                throw new InvalidOptionException(nameof(tensors), $"Tensor '{name}' has dtype {t.dtype}, which safetensors cannot store here.");
            var c = t.detach().cpu().contiguous();
            if (c.NumberOfElements * c.element_size() > int.MaxValue)
                throw new InvalidOptionException(nameof(tensors), $"Tensor '{name}' exceeds 2 GiB, the largest single tensor ConvKit writes.");
            prepared[i] = (name, c, dt);
        }

        var meta = metadata is null ? new SortedDictionary<string, string>(StringComparer.Ordinal)
            : new SortedDictionary<string, string>(metadata.ToDictionary(), StringComparer.Ordinal);
        if (embedSha256)
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            foreach (var p in prepared) sha.AppendData(Bytes(p.T));
            meta[DataSha256Key] = Convert.ToHexStringLower(sha.GetHashAndReset());
        }

        var json = new MemoryStream();
        using (var w = new Utf8JsonWriter(json))
        {
            w.WriteStartObject();
            if (meta.Count > 0)
            {
                w.WriteStartObject(MetadataKey);
                foreach (var (k, v) in meta) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, t, dt) in prepared)
            {
                w.WriteStartObject(name);
                w.WriteString("dtype", dt.ToString());
                w.WriteStartArray("shape");
                foreach (var d in t.shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                long end = offset + t.NumberOfElements * t.element_size();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(end);
                w.WriteEndArray();
                w.WriteEndObject();
                offset = end;
            }
            w.WriteEndObject();
        }
        // Pad with spaces to a multiple of 8 so the data buffer is 8-byte aligned, as the reference writer does.
        while (json.Length % 8 != 0) json.WriteByte((byte)' ');

        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)json.Length);
        stream.Write(len);
        json.Position = 0;
        json.CopyTo(stream);
        foreach (var p in prepared) stream.Write(Bytes(p.T));
        stream.Flush();
    }

    static ReadOnlySpan<byte> Bytes(Tensor contiguousCpu) =>
        contiguousCpu.NumberOfElements == 0 ? ReadOnlySpan<byte>.Empty : contiguousCpu.bytes;

    /// <summary>Opens and fully validates the header of a safetensors file; tensor data is read on demand.</summary>
    /// <param name="path">The file.</param>
    /// <returns>An open file; dispose it to release the handle.</returns>
    /// <exception cref="SafeTensorsFormatException">The file is malformed (the message names file, tensor and byte offset).</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="WrongFileFormatException">The file is of another recognized kind (HDF5, zip, image, ONNX, ...).</exception>
    public static SafeTensorsFile Read(string path)
    {
        WrongFileFormatException.ThrowIfOther(path, FileKind.SafeTensors, "a safetensors file");
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            return Read(fs, path, leaveOpen: false);
        }
        catch
        {
            fs.Dispose();
            throw;
        }
    }

    /// <summary>Validates the header of a safetensors image held in a seekable stream.</summary>
    /// <param name="stream">Seekable stream positioned anywhere; the image spans the whole stream.</param>
    /// <param name="displayName">Name used in error messages.</param>
    /// <param name="leaveOpen">Whether disposing the result leaves <paramref name="stream"/> open.</param>
    /// <returns>The parsed file.</returns>
    /// <exception cref="InvalidOptionException">The stream is not seekable or not readable.</exception>
    /// <exception cref="SafeTensorsFormatException">The image is malformed.</exception>
    public static SafeTensorsFile Read(Stream stream, string displayName, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanSeek || !stream.CanRead) throw new InvalidOptionException(nameof(stream), "The stream must be readable and seekable.");
        long fileLength = stream.Length;
        if (fileLength < 8)
            throw new SafeTensorsFormatException(displayName, null, 0, $"the file has {fileLength} bytes, fewer than the 8-byte header length");
        stream.Position = 0;
        Span<byte> lenBytes = stackalloc byte[8];
        stream.ReadExactly(lenBytes);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(lenBytes);
        if (n > MaxHeaderLength)
            throw new SafeTensorsFormatException(displayName, null, 0, $"header length {n} exceeds the limit of {MaxHeaderLength} bytes");
        if ((long)n > fileLength - 8)
            throw new SafeTensorsFormatException(displayName, null, 0, $"header length {n} runs past the end of the {fileLength}-byte file");
        // Allocation bounded by the file size, checked just above.
        var header = new byte[(int)n];
        stream.ReadExactly(header);
        long dataStart = 8 + (long)n;
        var (entries, metadata) = SafeTensorsHeader.Parse(header, displayName);
        SafeTensorsHeader.CheckLayout(entries, fileLength - dataStart, dataStart, displayName);
        return new SafeTensorsFile(stream, displayName, leaveOpen, dataStart, entries, metadata);
    }
}
