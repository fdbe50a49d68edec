namespace ConvKit.Formats.Onnx;

/// <summary>ONNX's tensor element types (TensorProto.DataType) that the importer reads.</summary>
public enum OnnxElementType
{
    /// <summary>Not set.</summary>
    Undefined = 0,
    /// <summary>float32.</summary>
    Float = 1,
    /// <summary>uint8.</summary>
    UInt8 = 2,
    /// <summary>int8.</summary>
    Int8 = 3,
    /// <summary>uint16.</summary>
    UInt16 = 4,
    /// <summary>int16.</summary>
    Int16 = 5,
    /// <summary>int32.</summary>
    Int32 = 6,
    /// <summary>int64.</summary>
    Int64 = 7,
    /// <summary>string.</summary>
    String = 8,
    /// <summary>bool.</summary>
    Bool = 9,
    /// <summary>float16.</summary>
    Float16 = 10,
    /// <summary>float64.</summary>
    Double = 11,
}

/// <summary>A parsed ONNX model: the opsets it imports and its graph. Tensor data stays in the file until asked for.</summary>
public sealed class OnnxModel
{
    internal OnnxModel(string path, long irVersion, string producer, IReadOnlyDictionary<string, long> opsets, OnnxGraph graph)
    {
        Path = path;
        IrVersion = irVersion;
        Producer = producer;
        Opsets = opsets;
        Graph = graph;
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>ModelProto.ir_version.</summary>
    public long IrVersion { get; }

    /// <summary>The producer name and version ("pytorch 1.13.1", "CNTK 2.4").</summary>
    public string Producer { get; }

    /// <summary>Opset version per domain ("" is the default ONNX domain).</summary>
    public IReadOnlyDictionary<string, long> Opsets { get; }

    /// <summary>The default-domain opset version.</summary>
    public long Opset => Opsets.TryGetValue("", out var v) ? v : Opsets.TryGetValue("ai.onnx", out v) ? v : 1;

    /// <summary>The main graph.</summary>
    public OnnxGraph Graph { get; }
}

/// <summary>An ONNX graph: nodes in file order, initializers by name, inputs (without the initializers) and outputs.</summary>
public sealed class OnnxGraph
{
    internal OnnxGraph(string name, IReadOnlyList<OnnxNode> nodes, IReadOnlyDictionary<string, OnnxTensor> initializers,
        IReadOnlyList<OnnxValueInfo> inputs, IReadOnlyList<OnnxValueInfo> outputs)
    {
        Name = name;
        Nodes = nodes;
        Initializers = initializers;
        Inputs = inputs;
        Outputs = outputs;
    }

    /// <summary>GraphProto.name.</summary>
    public string Name { get; }

    /// <summary>The nodes, in topological order (checked on reading).</summary>
    public IReadOnlyList<OnnxNode> Nodes { get; }

    /// <summary>The initializers (weights and constants), by name.</summary>
    public IReadOnlyDictionary<string, OnnxTensor> Initializers { get; }

    /// <summary>The graph's real inputs: the listed inputs that are not initializers.</summary>
    public IReadOnlyList<OnnxValueInfo> Inputs { get; }

    /// <summary>The graph's outputs.</summary>
    public IReadOnlyList<OnnxValueInfo> Outputs { get; }
}

/// <summary>A named value of a graph's signature: element type and dimensions (-1 for a symbolic or missing one).</summary>
/// <param name="Name">The value's name.</param>
/// <param name="ElementType">The element type.</param>
/// <param name="Dims">The dimensions; -1 where symbolic (a batch dimension "N").</param>
public sealed record OnnxValueInfo(string Name, OnnxElementType ElementType, long[]? Dims);

/// <summary>One node: op type, inputs and outputs by value name ("" for an omitted optional input), attributes.</summary>
public sealed class OnnxNode
{
    internal OnnxNode(string name, string opType, string domain, string[] inputs, string[] outputs, IReadOnlyDictionary<string, OnnxAttributeValue> attributes)
    {
        Name = name;
        OpType = opType;
        Domain = domain;
        Inputs = inputs;
        Outputs = outputs;
        Attributes = attributes;
    }

    /// <summary>The node's name, or its first output's when the file leaves it empty.</summary>
    public string Name { get; }

    /// <summary>The operator.</summary>
    public string OpType { get; }

    /// <summary>The operator's domain ("" for ONNX).</summary>
    public string Domain { get; }

    /// <summary>Input value names.</summary>
    public IReadOnlyList<string> Inputs { get; }

    /// <summary>Output value names.</summary>
    public IReadOnlyList<string> Outputs { get; }

    /// <summary>Attributes by name.</summary>
    public IReadOnlyDictionary<string, OnnxAttributeValue> Attributes { get; }

    /// <summary>An int attribute, or <paramref name="fallback"/>.</summary>
    public long Int(string name, long fallback) => Attributes.TryGetValue(name, out var a) ? a.I : fallback;

    /// <summary>A float attribute, or <paramref name="fallback"/>.</summary>
    public float Float(string name, float fallback) => Attributes.TryGetValue(name, out var a) ? a.F : fallback;

    /// <summary>An ints attribute, or null.</summary>
    public long[]? Ints(string name) => Attributes.TryGetValue(name, out var a) ? a.Ints : null;

    /// <summary>A string attribute, or <paramref name="fallback"/>.</summary>
    public string String(string name, string fallback) => Attributes.TryGetValue(name, out var a) && a.S is not null ? a.S : fallback;
}

/// <summary>One attribute (AttributeProto): the fields the importer uses.</summary>
/// <param name="Name">The attribute's name.</param>
/// <param name="Type">AttributeProto.type (1 float, 2 int, 3 string, 4 tensor, 5 graph, 6 floats, 7 ints, 8 strings).</param>
/// <param name="F">Float value.</param>
/// <param name="I">Int value.</param>
/// <param name="S">String value.</param>
/// <param name="T">Tensor value.</param>
/// <param name="Floats">Float list.</param>
/// <param name="Ints">Int list.</param>
/// <param name="HasGraph">Whether it holds a subgraph (control flow, which is not imported).</param>
public sealed record OnnxAttributeValue(string Name, int Type, float F, long I, string? S, OnnxTensor? T, float[] Floats, long[] Ints, bool HasGraph);
