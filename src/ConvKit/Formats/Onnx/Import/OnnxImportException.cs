namespace ConvKit.Formats.Onnx;

/// <summary>An ONNX file cannot be imported: it is corrupt or hostile (truncated, sizes it does not hold, external data
/// outside its folder, a cyclic or disconnected graph), or it uses what ConvKit does not import. The message names the
/// file and, when known, the node, tensor or attribute.</summary>
public class OnnxImportException : ConvKitException
{
    /// <summary>Creates the exception; the message is "ONNX file 'path': problem".</summary>
    public OnnxImportException(string file, string problem, Exception? inner = null)
        : base($"ONNX file '{file}': {problem}", inner!) => FilePath = file;

    /// <summary>The ONNX file.</summary>
    public string FilePath { get; }
}

/// <summary>The file is not a well-formed ONNX model (truncated protobuf, a size larger than the file, bad wire type,
/// a tensor whose data does not match its dimensions, external data outside the model's folder).</summary>
public sealed class OnnxFormatException : OnnxImportException
{
    /// <summary>Creates the exception.</summary>
    public OnnxFormatException(string file, string problem, Exception? inner = null) : base(file, problem, inner) { }
}

/// <summary>The graph is not a DAG that can be run: a cycle, a value nobody produces, a value produced twice.</summary>
public sealed class OnnxGraphException : OnnxImportException
{
    /// <summary>Creates the exception.</summary>
    public OnnxGraphException(string file, string problem) : base(file, problem) { }
}

/// <summary>
/// The graph uses operators (or attribute values) ConvKit does not import. Raised before any weight is read; lists
/// every unsupported op type with the names of the nodes that use it.
/// </summary>
public sealed class OnnxUnsupportedOperatorException : OnnxImportException
{
    /// <summary>Creates the exception from the op types and their node names.</summary>
    public OnnxUnsupportedOperatorException(string file, IReadOnlyDictionary<string, IReadOnlyList<string>> unsupported)
        : base(file, "unsupported ONNX operators: " + string.Join("; ", unsupported.Select(kv =>
            $"{kv.Key} (nodes {string.Join(", ", kv.Value.Take(10).Select(n => $"'{n}'"))}{(kv.Value.Count > 10 ? $", and {kv.Value.Count - 10} more" : "")})"))
            + ". Supported: " + string.Join(", ", OnnxOpSupport.SupportedOps) + ".")
        => Unsupported = unsupported;

    /// <summary>Each unsupported op type and the nodes that use it.</summary>
    public IReadOnlyDictionary<string, IReadOnlyList<string>> Unsupported { get; }
}

/// <summary>A supported operator is used in a way ConvKit cannot represent (an attribute value, a dynamic shape, an
/// input layout); the message names the node, its op type and the attribute or input.</summary>
public sealed class OnnxNodeException : OnnxImportException
{
    /// <summary>Creates the exception.</summary>
    public OnnxNodeException(string file, string opType, string node, string problem)
        : base(file, $"node '{node}' ({opType}): {problem}")
    {
        OpType = opType;
        NodeName = node;
    }

    /// <summary>The node's op type.</summary>
    public string OpType { get; }

    /// <summary>The node's name (or its first output when unnamed).</summary>
    public string NodeName { get; }
}
