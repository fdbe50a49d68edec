namespace ConvKit.Saving;

/// <summary>A safetensors file is malformed or inconsistent.</summary>
public sealed class SafeTensorsFormatException : InvalidFileException
{
    /// <summary>Creates the exception; the message names the file, the tensor (when known) and the byte offset.</summary>
    /// <param name="file">Path or display name of the file.</param>
    /// <param name="tensor">Name of the tensor at fault, or null for file-level errors.</param>
    /// <param name="offset">Absolute byte offset in the file where the problem lies.</param>
    /// <param name="problem">What is wrong.</param>
    /// <param name="inner">Underlying cause, if any.</param>
    public SafeTensorsFormatException(string file, string? tensor, long offset, string problem, Exception? inner = null)
        : base(Format(file, tensor, offset, problem), inner!)
    {
        FilePath = file;
        TensorName = tensor;
        Offset = offset;
    }

    /// <summary>Path or display name of the offending file.</summary>
    public string FilePath { get; }

    /// <summary>Name of the offending tensor, or null for file-level errors.</summary>
    public string? TensorName { get; }

    /// <summary>Absolute byte offset in the file where the problem lies.</summary>
    public long Offset { get; }

    static string Format(string file, string? tensor, long offset, string problem) =>
        tensor is null
            ? $"Invalid safetensors file '{file}' at byte {offset}: {problem}"
            : $"Invalid safetensors file '{file}', tensor '{tensor}' at byte {offset}: {problem}";
}
