// Which kind of file a user handed us, from its first bytes, so that a Keras .h5 given to a safetensors reader is
// reported as "a Keras HDF5 file: use --weights with a zoo name" rather than as a corrupt safetensors header.
namespace ConvKit.Saving;

/// <summary>File kinds ConvKit recognizes by their leading bytes.</summary>
public enum FileKind
{
    /// <summary>Not recognized.</summary>
    Unknown,

    /// <summary>Empty file.</summary>
    Empty,

    /// <summary>A safetensors file (8-byte little-endian header length, then a JSON object).</summary>
    SafeTensors,

    /// <summary>HDF5 (Keras .h5 weights): <c>\x89HDF\r\n\x1a\n</c>.</summary>
    Hdf5,

    /// <summary>A zip archive: PyTorch's <c>torch.save</c> (.pt/.pth), Keras 3 <c>.keras</c>.</summary>
    Zip,

    /// <summary>gzip-compressed data (e.g. an IDX dataset file).</summary>
    Gzip,

    /// <summary>A PNG image.</summary>
    Png,

    /// <summary>A JPEG image.</summary>
    Jpeg,

    /// <summary>An ONNX model (a protobuf ModelProto starting with its ir_version field).</summary>
    Onnx,

    /// <summary>A Python pickle (legacy <c>torch.save</c>).</summary>
    Pickle,
}

/// <summary>Detects a file's kind from its signature, and names it with the command or API that reads it.</summary>
public static class FileSignature
{
    static ReadOnlySpan<byte> Hdf5Magic => [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];
    static ReadOnlySpan<byte> PngMagic => [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

    /// <summary>The kind of the file at <paramref name="path"/>.</summary>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnauthorizedAccessException">The file is not readable.</exception>
    public static FileKind Detect(string path)
    {
        using var s = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.None);
        var head = new byte[16];
        int n = 0, r;
        while (n < head.Length && (r = s.Read(head, n, head.Length - n)) > 0) n += r;
        return Detect(head.AsSpan(0, n), s.Length);
    }

    /// <summary>The kind of a file whose first bytes are <paramref name="head"/> (at least 16 when the file has them).</summary>
    /// <param name="head">The leading bytes.</param>
    /// <param name="length">The file's length.</param>
    public static FileKind Detect(ReadOnlySpan<byte> head, long length)
    {
        if (length == 0 || head.Length == 0) return FileKind.Empty;
        // Byte arrays, not u8 literals: "\x89"u8 would be the UTF-8 encoding of U+0089 (two bytes).
        if (head.StartsWith(Hdf5Magic)) return FileKind.Hdf5;
        if (head.StartsWith(PngMagic)) return FileKind.Png;
        if (head.StartsWith((ReadOnlySpan<byte>)[0xff, 0xd8, 0xff])) return FileKind.Jpeg;
        if (head.StartsWith((ReadOnlySpan<byte>)[0x50, 0x4b, 0x03, 0x04]) || head.StartsWith((ReadOnlySpan<byte>)[0x50, 0x4b, 0x05, 0x06])) return FileKind.Zip;
        if (head.StartsWith((ReadOnlySpan<byte>)[0x1f, 0x8b])) return FileKind.Gzip;
        if (head.Length >= 9)
        {
            ulong headerLength = BitConverter.ToUInt64(head[..8]);
            if (headerLength >= 2 && headerLength <= (ulong)Math.Max(0, length - 8) && head[8] == (byte)'{') return FileKind.SafeTensors;
        }
        // After safetensors: a header length such as 0x0280 also starts with 0x80 0x02. Pickle: PROTO opcode, protocol 2-5.
        if (head.Length >= 2 && head[0] == 0x80 && head[1] is >= 2 and <= 5) return FileKind.Pickle;
        // ModelProto field 1 (ir_version, varint: tag 0x08, small value), then producer_name (0x12) or opset (0x42).
        if (head.Length >= 3 && head[0] == 0x08 && head[1] is > 0 and < 0x20 && head[2] is 0x12 or 0x3a or 0x42) return FileKind.Onnx;
        return FileKind.Unknown;
    }

    /// <summary>What the file is and what reads it: <c>a Keras HDF5 weights file (.h5); load it into a zoo model with ...</c>.</summary>
    public static string Describe(FileKind kind) => Advice(kind) is { } a ? $"{Name(kind)}; {a}" : Name(kind);

    /// <summary>What the file is, e.g. <c>a Keras HDF5 weights file (.h5)</c>.</summary>
    public static string Name(FileKind kind) => kind switch
    {
        FileKind.Empty => "an empty file",
        FileKind.SafeTensors => "a safetensors file",
        FileKind.Hdf5 => "a Keras HDF5 weights file (.h5)",
        FileKind.Zip => "a zip archive (PyTorch torch.save .pt/.pth, or Keras 3 .keras)",
        FileKind.Pickle => "a Python pickle (legacy torch.save)",
        FileKind.Gzip => "a gzip-compressed file",
        FileKind.Png => "a PNG image",
        FileKind.Jpeg => "a JPEG image",
        FileKind.Onnx => "an ONNX model",
        _ => "not a file format ConvKit reads",
    };

    /// <summary>Which command or API reads (or converts) a file of this kind; null when there is nothing to add.</summary>
    public static string? Advice(FileKind kind) => kind switch
    {
        FileKind.SafeTensors => "Model.Load/LoadWeights, LoadTorchvisionWeights and 'convkit predict/evaluate/export' read it",
        FileKind.Hdf5 => "load it into a zoo model with 'convkit predict|evaluate|export <zoo-name> --weights <file>', ModelOptions.Weights or KerasWeightsLoader",
        FileKind.Zip => "ConvKit does not read it: convert it to safetensors (safetensors.torch.save_file) for LoadTorchvisionWeights or --weights",
        FileKind.Pickle => "ConvKit does not read pickles (loading one can run code): convert it to safetensors",
        FileKind.Gzip => "IDX datasets are read gzip-compressed by 'convkit train --data' and Datasets",
        FileKind.Png or FileKind.Jpeg => "classify it with 'convkit predict <model> <image>'",
        FileKind.Onnx => "import an FP32 model with 'convkit import' (or run it with ONNX Runtime); an int8 model written by 'convkit quantize' runs with 'convkit predict|evaluate|serve'",
        FileKind.Unknown => "expected a ConvKit .safetensors model or weights file, or a Keras .h5",
        _ => null,
    };
}

/// <summary>A file is of another kind than the reader it was given to (a Keras .h5 given to a safetensors reader, an
/// image given as weights, ...). The message names the file, what it is and what reads it.</summary>
public sealed class WrongFileFormatException : InvalidFileException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="path">The file.</param>
    /// <param name="kind">What the file is.</param>
    /// <param name="expected">What the reader expected, e.g. "a safetensors file".</param>
    public WrongFileFormatException(string path, FileKind kind, string expected)
        : base($"'{path}' is {FileSignature.Name(kind)}, not {expected}" + (FileSignature.Advice(kind) is { } a ? $"; {a}." : "."))
    {
        FilePath = path;
        Kind = kind;
    }

    /// <summary>The file.</summary>
    public string FilePath { get; }

    /// <summary>What the file is.</summary>
    public FileKind Kind { get; }

    /// <summary>Throws when <paramref name="path"/> is a directory or a recognized file of another kind than
    /// <paramref name="wanted"/> (unrecognized files are left to the reader, which reports the offset at fault).</summary>
    /// <exception cref="ConvKitException">The path is a directory.</exception>
    /// <exception cref="WrongFileFormatException">The file is of another recognized kind.</exception>
    internal static void ThrowIfOther(string path, FileKind wanted, string expected)
    {
        if (Directory.Exists(path)) throw new ConvKitException($"'{path}' is a directory, not {expected}.");
        if (!File.Exists(path)) return; // the reader reports it as missing
        var kind = FileSignature.Detect(path);
        if (kind is not (FileKind.Unknown or FileKind.Empty) && kind != wanted) throw new WrongFileFormatException(path, kind, expected);
    }
}
