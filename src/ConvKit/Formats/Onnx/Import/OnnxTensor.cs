using System.Buffers.Binary;
using static TorchSharp.torch;

namespace ConvKit.Formats.Onnx;

/// <summary>
/// An ONNX tensor (TensorProto): name, element type, dimensions and where its data is (a byte range of the model file,
/// values inlined in the protobuf, or an external file in the model's folder). The data is read by
/// <see cref="ToTensor"/>, after its size has been checked against the dimensions.
/// </summary>
public sealed class OnnxTensor
{
    readonly string modelFile;
    readonly string? dataFile;
    readonly long offset;
    readonly long length;
    readonly int packedField; // 0 raw bytes; 4 float_data, 5 int32_data, 7 int64_data, 10 double_data, 11 uint64_data (packed)
    readonly Array? inline;

    internal OnnxTensor(string modelFile, string name, OnnxElementType type, long[] dims, string? dataFile, long offset, long length, int packedField, Array? inline)
    {
        this.modelFile = modelFile;
        Name = name;
        DataType = type;
        Dims = dims;
        this.dataFile = dataFile;
        this.offset = offset;
        this.length = length;
        this.packedField = packedField;
        this.inline = inline;
    }

    /// <summary>The tensor's name (an initializer's name is its weight's name).</summary>
    public string Name { get; }

    /// <summary>Element type.</summary>
    public OnnxElementType DataType { get; }

    /// <summary>Dimensions (empty for a scalar).</summary>
    public long[] Dims { get; }

    /// <summary>Number of elements.</summary>
    public long ElementCount => Dims.Aggregate(1L, (a, d) => a * d);

    internal static int ElementSize(OnnxElementType t) => t switch
    {
        OnnxElementType.Float or OnnxElementType.Int32 => 4,
        OnnxElementType.Int64 or OnnxElementType.Double => 8,
        OnnxElementType.UInt8 or OnnxElementType.Int8 or OnnxElementType.Bool => 1,
        OnnxElementType.Int16 or OnnxElementType.UInt16 or OnnxElementType.Float16 => 2,
        _ => 0,
    };

    /// <summary>Checks the declared dimensions against the bytes the tensor has; called on reading.</summary>
    internal void Validate(long fileLength)
    {
        string Where() => $"tensor '{Name}' (dims [{string.Join(", ", Dims)}], {DataType})";
        int size = ElementSize(DataType);
        if (size == 0) throw new OnnxFormatException(modelFile, $"{Where()} has an element type ConvKit does not read ({(int)DataType}).");
        long count = 1;
        foreach (var d in Dims)
        {
            if (d < 0) throw new OnnxFormatException(modelFile, $"{Where()} declares a negative dimension.");
            if (d != 0 && count > long.MaxValue / d / size) throw new OnnxFormatException(modelFile, $"{Where()} declares more elements than any file can hold.");
            count *= d;
        }
        if (inline is not null)
        {
            if (inline.LongLength != count) throw new OnnxFormatException(modelFile, $"{Where()} holds {inline.LongLength} values; its dimensions need {count}.");
            return;
        }
        long expected = packedField switch { 0 => count * size, 4 or 5 => count * 4, 7 => -1, 10 or 11 => count * 8, _ => -1 };
        if (packedField == 7)
        {
            // int64_data is varint-packed: each value takes 1 to 10 bytes.
            if (length < count || length > count * 10) throw new OnnxFormatException(modelFile, $"{Where()} holds {length} bytes of int64 varints; its dimensions need {count} values.");
        }
        else if (expected != length)
            throw new OnnxFormatException(dataFile ?? modelFile, $"{Where()} holds {length} bytes of data; its dimensions need {expected}.");
        if (dataFile is null && offset + length > fileLength)
            throw new OnnxFormatException(modelFile, $"{Where()} data runs past the end of the file.");
    }

    /// <summary>Reads the data as a CPU tensor: float32 for floating types, int64 for integer types, bool for bool.</summary>
    /// <exception cref="OnnxFormatException">The data cannot be read as declared.</exception>
    public Tensor ToTensor()
    {
        long count = ElementCount;
        var shape = Dims;
        if (inline is float[] fs) return tensor(fs, shape);
        if (inline is long[] ls) return ToTyped(ls, shape);
        if (inline is double[] ds) { using var d = tensor(ds, shape); return d.to(float32); }
        byte[] bytes;
        try
        {
            using var stream = File.OpenRead(dataFile ?? modelFile);
            if (offset + length > stream.Length) throw new OnnxFormatException(dataFile ?? modelFile, $"tensor '{Name}' data runs past the end of the file.");
            stream.Seek(offset, SeekOrigin.Begin);
            if (length > Array.MaxLength) throw new OnnxFormatException(modelFile, $"tensor '{Name}' is larger than 2 GB.");
            bytes = new byte[length];
            stream.ReadExactly(bytes);
        }
        catch (IOException e)
        {
            throw new OnnxFormatException(dataFile ?? modelFile, $"cannot read tensor '{Name}': {e.Message}", e);
        }
        switch (packedField)
        {
            case 4:
                return FromFloats(bytes, count, shape);
            case 10:
            {
                var v = new double[count];
                for (long i = 0; i < count; i++) v[i] = BinaryPrimitives.ReadDoubleLittleEndian(bytes.AsSpan((int)(i * 8)));
                using var t = tensor(v, shape);
                return t.to(float32);
            }
            case 5 or 7 or 11:
            {
                // int32_data is varint-packed too (it also carries bool, int8/16, uint8/16, float16 bits).
                var v = new long[count];
                int p = 0;
                for (long i = 0; i < count; i++)
                {
                    ulong x = 0;
                    for (int shift = 0; ; shift += 7)
                    {
                        if (p >= bytes.Length || shift > 63) throw new OnnxFormatException(modelFile, $"tensor '{Name}': packed integers are truncated.");
                        byte b = bytes[p++];
                        x |= (ulong)(b & 0x7f) << shift;
                        if ((b & 0x80) == 0) break;
                    }
                    v[i] = packedField == 5 ? (int)x : (long)x;
                }
                if (DataType == OnnxElementType.Float16)
                {
                    var h = v.Select(x => (float)BitConverter.UInt16BitsToHalf((ushort)x)).ToArray();
                    return tensor(h, shape);
                }
                return ToTyped(v, shape);
            }
        }
        // raw_data: little-endian values of the element type.
        switch (DataType)
        {
            case OnnxElementType.Float: return FromFloats(bytes, count, shape);
            case OnnxElementType.Double:
            {
                var v = new double[count];
                Buffer.BlockCopy(bytes, 0, v, 0, bytes.Length);
                using var t = tensor(v, shape);
                return t.to(float32);
            }
            case OnnxElementType.Float16:
            {
                var v = new float[count];
                for (long i = 0; i < count; i++) v[i] = (float)BitConverter.UInt16BitsToHalf(BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan((int)(i * 2))));
                return tensor(v, shape);
            }
            default:
            {
                int size = ElementSize(DataType);
                var v = new long[count];
                for (long i = 0; i < count; i++)
                {
                    var s = bytes.AsSpan((int)(i * size), size);
                    v[i] = DataType switch
                    {
                        OnnxElementType.Int64 => BinaryPrimitives.ReadInt64LittleEndian(s),
                        OnnxElementType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(s),
                        OnnxElementType.Int16 => BinaryPrimitives.ReadInt16LittleEndian(s),
                        OnnxElementType.UInt16 => BinaryPrimitives.ReadUInt16LittleEndian(s),
                        OnnxElementType.Int8 => (sbyte)s[0],
                        _ => s[0],
                    };
                }
                return ToTyped(v, shape);
            }
        }
    }

    static Tensor FromFloats(byte[] bytes, long count, long[] shape)
    {
        var v = new float[count];
        Buffer.BlockCopy(bytes, 0, v, 0, (int)(count * 4));
        return tensor(v, shape);
    }

    Tensor ToTyped(long[] values, long[] shape)
    {
        if (DataType is not (OnnxElementType.Bool or OnnxElementType.Float or OnnxElementType.Double)) return tensor(values, shape);
        using var t = tensor(values, shape);
        return t.to(DataType == OnnxElementType.Bool ? @bool : float32);
    }
}
