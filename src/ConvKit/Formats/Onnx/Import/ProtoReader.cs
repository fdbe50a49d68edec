using System.Text;

namespace ConvKit.Formats.Onnx;

/// <summary>
/// A protobuf wire-format reader over a seekable stream with nested limits, so that every declared length is checked
/// against what the enclosing message (and the file) holds before anything is allocated, and large byte fields
/// (tensor data) can be skipped and read later by offset.
/// </summary>
internal sealed class ProtoReader
{
    readonly Stream stream;
    readonly string file;
    long position;
    long limit;
    int depth;

    public ProtoReader(Stream stream, string file)
    {
        this.stream = stream;
        this.file = file;
        position = stream.Position;
        limit = stream.Length;
    }

    public long Position => position;

    public bool AtEnd => position >= limit;

    OnnxFormatException Truncated(string what) => new(file, $"truncated or corrupt protobuf: {what} at byte {position} runs past the end of its message (file length {stream.Length}).");

    int ReadByte()
    {
        if (position >= limit) throw Truncated("a field");
        int b = stream.ReadByte();
        if (b < 0) throw Truncated("a field");
        position++;
        return b;
    }

    public ulong ReadVarint()
    {
        ulong result = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            int b = ReadByte();
            result |= (ulong)(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return result;
        }
        throw new OnnxFormatException(file, $"corrupt protobuf: a varint at byte {position} is longer than 10 bytes.");
    }

    public bool ReadTag(out int field, out int wireType)
    {
        field = 0;
        wireType = 0;
        if (position >= limit) return false;
        ulong tag = ReadVarint();
        field = (int)(tag >> 3);
        wireType = (int)(tag & 7);
        if (field <= 0 || tag >> 3 > int.MaxValue) throw new OnnxFormatException(file, $"corrupt protobuf: field number {tag >> 3} at byte {position}.");
        return true;
    }

    public long ReadInt64() => (long)ReadVarint();

    public uint ReadFixed32()
    {
        uint v = 0;
        for (int i = 0; i < 4; i++) v |= (uint)ReadByte() << (8 * i);
        return v;
    }

    public ulong ReadFixed64()
    {
        ulong v = 0;
        for (int i = 0; i < 8; i++) v |= (ulong)ReadByte() << (8 * i);
        return v;
    }

    public float ReadFloat() => BitConverter.Int32BitsToSingle((int)ReadFixed32());

    /// <summary>Reads a length prefix and checks it against the enclosing limit.</summary>
    public long ReadLength(string what)
    {
        ulong n = ReadVarint();
        if (n > (ulong)(limit - position))
            throw new OnnxFormatException(file, $"truncated or corrupt protobuf: {what} at byte {position} declares {n} bytes, but its message has {limit - position} left (file length {stream.Length}).");
        return (long)n;
    }

    public byte[] ReadBytes(string what, long maxLength)
    {
        long n = ReadLength(what);
        if (n > maxLength) throw new OnnxFormatException(file, $"{what} at byte {position} is {n} bytes; at most {maxLength} are accepted.");
        var buffer = new byte[n];
        stream.ReadExactly(buffer);
        position += n;
        return buffer;
    }

    public string ReadString(string what) => Encoding.UTF8.GetString(ReadBytes(what, 1 << 20));

    /// <summary>Skips a length-delimited field, returning where its bytes start and how many there are.</summary>
    public (long Offset, long Length) SkipBytes(string what)
    {
        long n = ReadLength(what);
        long start = position;
        Seek(position + n);
        return (start, n);
    }

    void Seek(long to)
    {
        stream.Seek(to, SeekOrigin.Begin);
        position = to;
    }

    /// <summary>Enters an embedded message; returns the outer limit to give to <see cref="Leave"/>.</summary>
    public long Enter(string what)
    {
        long n = ReadLength(what);
        if (++depth > 64) throw new OnnxFormatException(file, $"corrupt protobuf: messages nested more than 64 deep at byte {position}.");
        long outer = limit;
        limit = position + n;
        return outer;
    }

    public void Leave(long outer)
    {
        if (position != limit) Seek(limit);
        limit = outer;
        depth--;
    }

    public void Skip(int wireType)
    {
        switch (wireType)
        {
            case 0: ReadVarint(); break;
            case 1: if (limit - position < 8) throw Truncated("a fixed64 field"); Seek(position + 8); break;
            case 2: SkipBytes("a field"); break;
            case 5: if (limit - position < 4) throw Truncated("a fixed32 field"); Seek(position + 4); break;
            default: throw new OnnxFormatException(file, $"corrupt protobuf: wire type {wireType} at byte {position} (this is not an ONNX file, or it is damaged).");
        }
    }

    /// <summary>Reads a repeated varint field in packed or unpacked form into <paramref name="into"/>.</summary>
    public void ReadInt64s(int wireType, List<long> into, string what)
    {
        if (wireType == 0) { into.Add(ReadInt64()); return; }
        if (wireType != 2) throw new OnnxFormatException(file, $"corrupt protobuf: {what} has wire type {wireType}.");
        long outer = Enter(what);
        while (!AtEnd) into.Add(ReadInt64());
        Leave(outer);
    }

    /// <summary>Reads a repeated float field in packed or unpacked form.</summary>
    public void ReadFloats(int wireType, List<float> into, string what)
    {
        if (wireType == 5) { into.Add(ReadFloat()); return; }
        if (wireType != 2) throw new OnnxFormatException(file, $"corrupt protobuf: {what} has wire type {wireType}.");
        long outer = Enter(what);
        while (!AtEnd) into.Add(ReadFloat());
        Leave(outer);
    }

    /// <summary>Reads a repeated double field in packed or unpacked form.</summary>
    public void ReadDoubles(int wireType, List<double> into, string what)
    {
        if (wireType == 1) { into.Add(BitConverter.Int64BitsToDouble((long)ReadFixed64())); return; }
        if (wireType != 2) throw new OnnxFormatException(file, $"corrupt protobuf: {what} has wire type {wireType}.");
        long outer = Enter(what);
        while (!AtEnd) into.Add(BitConverter.Int64BitsToDouble((long)ReadFixed64()));
        Leave(outer);
    }

    public void Expect(int wireType, int expected, string what)
    {
        if (wireType != expected) throw new OnnxFormatException(file, $"corrupt protobuf: {what} has wire type {wireType}, expected {expected}.");
    }
}
