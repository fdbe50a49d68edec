using static TorchSharp.torch;

namespace ConvKit.Saving;

/// <summary>Element types of the safetensors format that ConvKit reads and writes.</summary>
public enum SafeTensorsDType
{
    /// <summary>IEEE 754 binary64 ("F64").</summary>
    F64,
    /// <summary>IEEE 754 binary32 ("F32").</summary>
    F32,
    /// <summary>IEEE 754 binary16 ("F16").</summary>
    F16,
    /// <summary>bfloat16 ("BF16").</summary>
    BF16,
    /// <summary>Signed 64-bit integer ("I64").</summary>
    I64,
    /// <summary>Signed 32-bit integer ("I32").</summary>
    I32,
    /// <summary>Signed 16-bit integer ("I16").</summary>
    I16,
    /// <summary>Signed 8-bit integer ("I8").</summary>
    I8,
    /// <summary>Unsigned 8-bit integer ("U8").</summary>
    U8,
    /// <summary>Boolean stored as one byte, 0 or 1 ("BOOL").</summary>
    BOOL,
}

static class SafeTensorsDTypes
{
    public static int Size(SafeTensorsDType t) => t switch
    {
        SafeTensorsDType.F64 or SafeTensorsDType.I64 => 8,
        SafeTensorsDType.F32 or SafeTensorsDType.I32 => 4,
        SafeTensorsDType.F16 or SafeTensorsDType.BF16 or SafeTensorsDType.I16 => 2,
        _ => 1,
    };

    // Exact, case-sensitive spellings of the format; anything else is an unknown dtype.
    public static bool TryParse(string s, out SafeTensorsDType t)
    {
        switch (s)
        {
            case "F64": t = SafeTensorsDType.F64; return true;
            case "F32": t = SafeTensorsDType.F32; return true;
            case "F16": t = SafeTensorsDType.F16; return true;
            case "BF16": t = SafeTensorsDType.BF16; return true;
            case "I64": t = SafeTensorsDType.I64; return true;
            case "I32": t = SafeTensorsDType.I32; return true;
            case "I16": t = SafeTensorsDType.I16; return true;
            case "I8": t = SafeTensorsDType.I8; return true;
            case "U8": t = SafeTensorsDType.U8; return true;
            case "BOOL": t = SafeTensorsDType.BOOL; return true;
            default: t = default; return false;
        }
    }

    public static ScalarType ToScalarType(SafeTensorsDType t) => t switch
    {
        SafeTensorsDType.F64 => ScalarType.Float64,
        SafeTensorsDType.F32 => ScalarType.Float32,
        SafeTensorsDType.F16 => ScalarType.Float16,
        SafeTensorsDType.BF16 => ScalarType.BFloat16,
        SafeTensorsDType.I64 => ScalarType.Int64,
        SafeTensorsDType.I32 => ScalarType.Int32,
        SafeTensorsDType.I16 => ScalarType.Int16,
        SafeTensorsDType.I8 => ScalarType.Int8,
        SafeTensorsDType.U8 => ScalarType.Byte,
        _ => ScalarType.Bool,
    };

    public static bool TryFromScalarType(ScalarType s, out SafeTensorsDType t)
    {
        switch (s)
        {
            case ScalarType.Float64: t = SafeTensorsDType.F64; return true;
            case ScalarType.Float32: t = SafeTensorsDType.F32; return true;
            case ScalarType.Float16: t = SafeTensorsDType.F16; return true;
            case ScalarType.BFloat16: t = SafeTensorsDType.BF16; return true;
            case ScalarType.Int64: t = SafeTensorsDType.I64; return true;
            case ScalarType.Int32: t = SafeTensorsDType.I32; return true;
            case ScalarType.Int16: t = SafeTensorsDType.I16; return true;
            case ScalarType.Int8: t = SafeTensorsDType.I8; return true;
            case ScalarType.Byte: t = SafeTensorsDType.U8; return true;
            case ScalarType.Bool: t = SafeTensorsDType.BOOL; return true;
            default: t = default; return false;
        }
    }
}
