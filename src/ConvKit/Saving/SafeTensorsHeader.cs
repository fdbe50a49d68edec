using System.Text;
using System.Text.Json;

namespace ConvKit.Saving;

/// <summary>Strict parser of the safetensors JSON header; every error carries the absolute file offset.</summary>
static class SafeTensorsHeader
{
    const int HeaderStart = 8;
    const int MaxRank = 64;

    public static (List<SafeTensorInfo> Entries, Dictionary<string, string> Metadata) Parse(byte[] header, string file)
    {
        var entries = new List<SafeTensorInfo>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(header, new JsonReaderOptions { MaxDepth = 8, CommentHandling = JsonCommentHandling.Disallow });
        try
        {
            Next(ref reader, file, null);
            Expect(ref reader, JsonTokenType.StartObject, file, null, "the header must be a JSON object");
            while (true)
            {
                Next(ref reader, file, null);
                if (reader.TokenType == JsonTokenType.EndObject) break;
                string name = reader.GetString()!;
                long nameOffset = HeaderStart + reader.TokenStartIndex;
                if (!seen.Add(name)) throw Error(file, name, nameOffset, "duplicate name");
                Next(ref reader, file, name);
                if (name == SafeTensors.MetadataKey) ReadMetadata(ref reader, metadata, file);
                else entries.Add(ReadEntry(ref reader, name, nameOffset, file));
            }
            // Only whitespace may follow the root object (the reference writer pads with spaces).
            if (reader.Read())
                throw Error(file, null, HeaderStart + reader.TokenStartIndex, "unexpected content after the header object");
        }
        catch (JsonException e)
        {
            throw new SafeTensorsFormatException(file, null, HeaderStart + reader.BytesConsumed,
                $"the header is not valid JSON ({e.Message})", e);
        }
        catch (InvalidOperationException e) // GetString on invalid UTF-8
        {
            throw new SafeTensorsFormatException(file, null, HeaderStart + reader.TokenStartIndex,
                $"the header is not valid UTF-8 JSON ({e.Message})", e);
        }
        return (entries, metadata);
    }

    static void ReadMetadata(ref Utf8JsonReader r, Dictionary<string, string> metadata, string file)
    {
        Expect(ref r, JsonTokenType.StartObject, file, SafeTensors.MetadataKey, "__metadata__ must be an object of strings");
        while (true)
        {
            Next(ref r, file, SafeTensors.MetadataKey);
            if (r.TokenType == JsonTokenType.EndObject) return;
            string key = r.GetString()!;
            long at = HeaderStart + r.TokenStartIndex;
            Next(ref r, file, SafeTensors.MetadataKey);
            Expect(ref r, JsonTokenType.String, file, SafeTensors.MetadataKey, $"metadata value '{key}' must be a string");
            if (!metadata.TryAdd(key, r.GetString()!)) throw Error(file, SafeTensors.MetadataKey, at, $"duplicate metadata key '{key}'");
        }
    }

    static SafeTensorInfo ReadEntry(ref Utf8JsonReader r, string name, long nameOffset, string file)
    {
        Expect(ref r, JsonTokenType.StartObject, file, name, "a tensor entry must be an object");
        string? dtypeText = null;
        List<long>? shape = null, offsets = null;
        long dtypeAt = nameOffset;
        while (true)
        {
            Next(ref r, file, name);
            if (r.TokenType == JsonTokenType.EndObject) break;
            string key = r.GetString()!;
            long keyAt = HeaderStart + r.TokenStartIndex;
            Next(ref r, file, name);
            switch (key)
            {
                case "dtype" when dtypeText is null:
                    Expect(ref r, JsonTokenType.String, file, name, "dtype must be a string");
                    dtypeText = r.GetString()!;
                    dtypeAt = HeaderStart + r.TokenStartIndex;
                    break;
                case "shape" when shape is null:
                    shape = ReadIntArray(ref r, file, name, "shape", MaxRank);
                    break;
                case "data_offsets" when offsets is null:
                    offsets = ReadIntArray(ref r, file, name, "data_offsets", 2);
                    break;
                default:
                    throw Error(file, name, keyAt, $"unexpected or repeated key '{key}' in tensor entry");
            }
        }
        if (dtypeText is null || shape is null || offsets is null)
            throw Error(file, name, nameOffset, "a tensor entry needs dtype, shape and data_offsets");
        if (!SafeTensorsDTypes.TryParse(dtypeText, out var dtype))
            throw Error(file, name, dtypeAt, $"unknown dtype '{dtypeText}'");
        if (offsets.Count != 2) throw Error(file, name, nameOffset, "data_offsets must have two elements [begin, end)");
        long begin = offsets[0], end = offsets[1];
        if (end < begin) throw Error(file, name, nameOffset, $"data_offsets [{begin}, {end}) end before they begin");
        long count = 1;
        foreach (var d in shape)
        {
            // Overflow-checked: a shape like [2^40, 2^40] must not wrap around to a small element count.
            try { count = checked(count * d); }
            catch (OverflowException) { throw Error(file, name, nameOffset, $"shape [{string.Join(", ", shape)}] has more elements than fit in 64 bits"); }
        }
        long bytes;
        try { bytes = checked(count * SafeTensorsDTypes.Size(dtype)); }
        catch (OverflowException) { throw Error(file, name, nameOffset, "the byte size of the shape overflows 64 bits"); }
        if (bytes != end - begin)
            throw Error(file, name, nameOffset,
                $"shape [{string.Join(", ", shape)}] of {dtype} needs {bytes} bytes but data_offsets [{begin}, {end}) span {end - begin}");
        return new SafeTensorInfo(name, dtype, shape.ToArray(), begin, end);
    }

    static List<long> ReadIntArray(ref Utf8JsonReader r, string file, string name, string what, int maxLength)
    {
        Expect(ref r, JsonTokenType.StartArray, file, name, $"{what} must be an array of integers");
        var list = new List<long>();
        while (true)
        {
            Next(ref r, file, name);
            if (r.TokenType == JsonTokenType.EndArray) return list;
            long at = HeaderStart + r.TokenStartIndex;
            if (r.TokenType != JsonTokenType.Number || !r.TryGetInt64(out long v))
                throw Error(file, name, at, $"{what} must hold integers");
            if (v < 0) throw Error(file, name, at, $"{what} holds the negative value {v}");
            if (list.Count == maxLength) throw Error(file, name, at, $"{what} has more than {maxLength} elements");
            list.Add(v);
        }
    }

    /// <summary>Data must be tiled exactly: sorted by offset, no overlap, no hole, ending at the end of the file.</summary>
    public static void CheckLayout(List<SafeTensorInfo> entries, long bufferLength, long dataStart, string file)
    {
        var sorted = entries.OrderBy(e => e.DataBegin).ThenBy(e => e.DataEnd).ThenBy(e => e.Name, StringComparer.Ordinal).ToList();
        long expected = 0;
        foreach (var e in sorted)
        {
            if (e.DataBegin < expected)
                throw Error(file, e.Name, dataStart + e.DataBegin, $"data [{e.DataBegin}, {e.DataEnd}) overlaps the previous tensor, which ends at {expected}");
            if (e.DataBegin > expected)
                throw Error(file, e.Name, dataStart + expected, $"data [{e.DataBegin}, {e.DataEnd}) leaves a hole after offset {expected}");
            if (e.DataEnd > bufferLength)
                throw Error(file, e.Name, dataStart + e.DataBegin, $"data [{e.DataBegin}, {e.DataEnd}) runs past the {bufferLength}-byte data buffer");
            expected = e.DataEnd;
        }
        if (expected != bufferLength)
            throw Error(file, null, dataStart + expected, $"{bufferLength - expected} trailing bytes after the last tensor");
    }

    static void Next(ref Utf8JsonReader r, string file, string? tensor)
    {
        if (!r.Read()) throw Error(file, tensor, HeaderStart + r.BytesConsumed, "the header JSON ends prematurely");
    }

    static void Expect(ref Utf8JsonReader r, JsonTokenType type, string file, string? tensor, string problem)
    {
        if (r.TokenType != type) throw Error(file, tensor, HeaderStart + r.TokenStartIndex, problem);
    }

    static SafeTensorsFormatException Error(string file, string? tensor, long offset, string problem) =>
        new(file, tensor, offset, problem);
}
