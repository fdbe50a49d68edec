using static TorchSharp.torch;

namespace ConvKit.Saving;

/// <summary>Description of one tensor in a safetensors file.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="DType">Element type.</param>
/// <param name="Shape">Dimensions, outermost first.</param>
/// <param name="DataBegin">Start of the data, relative to the data buffer.</param>
/// <param name="DataEnd">End (exclusive) of the data, relative to the data buffer.</param>
public sealed record SafeTensorInfo(string Name, SafeTensorsDType DType, IReadOnlyList<long> Shape, long DataBegin, long DataEnd)
{
    /// <summary>Number of bytes of data.</summary>
    public long ByteLength => DataEnd - DataBegin;
}

/// <summary>
/// An opened safetensors file whose header has been validated. Tensors are read on demand from the open stream.
/// Not thread-safe.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    readonly Stream stream;
    readonly bool leaveOpen;
    readonly long dataStart;
    readonly Dictionary<string, SafeTensorInfo> byName;

    internal SafeTensorsFile(Stream stream, string path, bool leaveOpen, long dataStart,
        List<SafeTensorInfo> entries, Dictionary<string, string> metadata)
    {
        this.stream = stream;
        this.leaveOpen = leaveOpen;
        this.dataStart = dataStart;
        Path = path;
        Metadata = metadata;
        Tensors = entries.OrderBy(e => e.Name, StringComparer.Ordinal).ToArray();
        byName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
    }

    /// <summary>Path or display name of the file.</summary>
    public string Path { get; }

    /// <summary>The <c>__metadata__</c> map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>All tensors, sorted by name.</summary>
    public IReadOnlyList<SafeTensorInfo> Tensors { get; }

    /// <summary>Tensor names, sorted.</summary>
    public IEnumerable<string> Names => Tensors.Select(t => t.Name);

    /// <summary>Whether a tensor of that name exists.</summary>
    /// <param name="name">Tensor name.</param>
    /// <returns>True when present.</returns>
    public bool Contains(string name) => byName.ContainsKey(name);

    /// <summary>Description of the named tensor.</summary>
    /// <param name="name">Tensor name.</param>
    /// <returns>Its dtype, shape and offsets.</returns>
    /// <exception cref="UnknownNameException">No tensor has that name.</exception>
    public SafeTensorInfo Info(string name) =>
        byName.TryGetValue(name, out var info) ? info : throw new UnknownNameException("tensor", name, $"'{Path}' has no tensor '{name}'.");

    /// <summary>Reads one tensor into a new CPU tensor.</summary>
    /// <param name="name">Tensor name.</param>
    /// <returns>A tensor the caller owns.</returns>
    /// <exception cref="UnknownNameException">No tensor has that name.</exception>
    /// <exception cref="SafeTensorsFormatException">The data is invalid (a BOOL byte other than 0 or 1, or the file
    /// shrank since it was opened).</exception>
    /// <exception cref="ConvKitException">The tensor exceeds 2 GiB, the largest ConvKit reads.</exception>
    public Tensor Get(string name)
    {
        var info = Info(name);
        var shape = info.Shape.ToArray();
        var t = empty(shape, SafeTensorsDTypes.ToScalarType(info.DType));
        if (info.ByteLength == 0) return t;
        try
        {
            if (info.ByteLength > int.MaxValue) throw new UnsupportedException($"Tensor '{name}' in '{Path}' exceeds 2 GiB, the largest ConvKit reads.");
            // Validated against the file length when the header was parsed, so this allocation is bounded by it.
            var data = ReadData(info);
            if (info.DType == SafeTensorsDType.BOOL)
            {
                int bad = Array.FindIndex(data, b => b > 1);
                if (bad >= 0)
                    throw new SafeTensorsFormatException(Path, name, dataStart + info.DataBegin + bad, $"BOOL byte {data[bad]} is neither 0 nor 1");
            }
            t.bytes = data;
            return t;
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    /// <summary>Reads every tensor.</summary>
    /// <returns>Tensors by name; the caller owns them.</returns>
    /// <exception cref="SafeTensorsFormatException">Some data is invalid; nothing is returned and no tensor leaks.</exception>
    /// <exception cref="ConvKitException">A tensor exceeds 2 GiB.</exception>
    public Dictionary<string, Tensor> LoadAll()
    {
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var info in Tensors) result.Add(info.Name, Get(info.Name));
            return result;
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
    }

    byte[] ReadData(SafeTensorInfo info)
    {
        var data = new byte[info.ByteLength];
        stream.Position = dataStart + info.DataBegin;
        try
        {
            stream.ReadExactly(data);
        }
        catch (EndOfStreamException e)
        {
            throw new SafeTensorsFormatException(Path, info.Name, dataStart + info.DataBegin, "the file ended before the tensor data (was it truncated after opening?)", e);
        }
        return data;
    }

    /// <summary>SHA-256 of the whole data buffer, as recorded by <see cref="CheckpointStore"/>.</summary>
    internal byte[] ComputeDataSha256()
    {
        stream.Position = dataStart;
        return System.Security.Cryptography.SHA256.HashData(stream);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (!leaveOpen) stream.Dispose();
    }
}
