using System.Reflection;
using Google.Protobuf;
using static TorchSharp.torch;

namespace ConvKit.Saving;

/// <summary>ONNX tensor element types the builder writes (values of <c>TensorProto.DataType</c>).</summary>
public enum OnnxDataType
{
    /// <summary>float32.</summary>
    Float = 1,
    /// <summary>int64.</summary>
    Int64 = 7,
}

/// <summary>A dimension of a graph input or output: a fixed size or a symbolic name such as <c>"N"</c>.</summary>
public readonly record struct OnnxDim
{
    /// <summary>Fixed size, or null when symbolic.</summary>
    public long? Value { get; }

    /// <summary>Symbolic name, or null when fixed.</summary>
    public string? Param { get; }

    OnnxDim(long? value, string? param) => (Value, Param) = (value, param);

    /// <summary>A fixed dimension.</summary>
    /// <param name="value">Size, at least 0.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="value"/> is negative.</exception>
    public static implicit operator OnnxDim(long value) =>
        new(value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), "A dimension cannot be negative."), null);

    /// <summary>A symbolic dimension, e.g. the batch size <c>"N"</c>.</summary>
    /// <param name="param">Non-empty name.</param>
    /// <exception cref="ArgumentException"><paramref name="param"/> is empty.</exception>
    public static implicit operator OnnxDim(string param) =>
        new(null, string.IsNullOrEmpty(param) ? throw new ArgumentException("A symbolic dimension needs a name.", nameof(param)) : param);
}

/// <summary>A node attribute (<c>AttributeProto</c>); create with the static factories.</summary>
public sealed class OnnxAttribute
{
    internal string Name { get; }
    internal int Type { get; }
    internal object Value { get; }

    OnnxAttribute(string name, int type, object value)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        (Name, Type, Value) = (name, type, value);
    }

    /// <summary>A FLOAT attribute.</summary>
    /// <param name="name">Attribute name.</param><param name="value">Value.</param>
    /// <returns>The attribute.</returns>
    public static OnnxAttribute Float(string name, float value) => new(name, 1, value);

    /// <summary>An INT attribute.</summary>
    /// <param name="name">Attribute name.</param><param name="value">Value.</param>
    /// <returns>The attribute.</returns>
    public static OnnxAttribute Int(string name, long value) => new(name, 2, value);

    /// <summary>A STRING attribute (UTF-8).</summary>
    /// <param name="name">Attribute name.</param><param name="value">Value.</param>
    /// <returns>The attribute.</returns>
    public static OnnxAttribute String(string name, string value) => new(name, 3, value);

    /// <summary>A TENSOR attribute (float32 or int64).</summary>
    /// <param name="name">Attribute name.</param><param name="value">Value; copied immediately.</param>
    /// <returns>The attribute.</returns>
    /// <exception cref="ArgumentException">The tensor is neither float32 nor int64.</exception>
    public static OnnxAttribute Tensor(string name, Tensor value) => new(name, 4, OnnxGraphBuilder.TensorData.From(name, value));

    /// <summary>A FLOATS attribute.</summary>
    /// <param name="name">Attribute name.</param><param name="values">Values.</param>
    /// <returns>The attribute.</returns>
    public static OnnxAttribute Floats(string name, params float[] values) => new(name, 6, values.ToArray());

    /// <summary>An INTS attribute (e.g. <c>pads</c>, <c>kernel_shape</c>, <c>strides</c>).</summary>
    /// <param name="name">Attribute name.</param><param name="values">Values.</param>
    /// <returns>The attribute.</returns>
    public static OnnxAttribute Ints(string name, params long[] values) => new(name, 7, values.ToArray());
}

/// <summary>
/// Builds an ONNX model (a single graph) and serializes it with protobuf's wire format directly, without generated
/// ONNX classes. Defaults: IR version 8, default-domain opset 13. Checks that every node input is defined before use
/// and that names are unique, so mistakes surface here rather than in a runtime.
/// </summary>
public sealed class OnnxGraphBuilder
{
    readonly string graphName;
    readonly List<(string Name, OnnxDataType Type, OnnxDim[] Dims)> inputs = [], outputs = [];
    readonly List<TensorData> initializers = [];
    readonly List<(string OpType, string[] Inputs, string[] Outputs, OnnxAttribute[] Attributes, string Name, string Domain)> nodes = [];
    readonly HashSet<string> defined = new(StringComparer.Ordinal);

    /// <summary>Creates an empty graph.</summary>
    /// <param name="graphName">Graph name.</param>
    /// <param name="opsetVersion">Version of the default ("ai.onnx") operator set.</param>
    /// <param name="irVersion">ONNX IR version.</param>
    public OnnxGraphBuilder(string graphName = "convkit", long opsetVersion = 13, long irVersion = 8)
    {
        this.graphName = graphName;
        OpsetVersion = opsetVersion;
        IrVersion = irVersion;
    }

    /// <summary>Default-domain opset version written to <c>opset_import</c>.</summary>
    public long OpsetVersion { get; }

    /// <summary>IR version written to <c>ir_version</c>.</summary>
    public long IrVersion { get; }

    /// <summary>Whether a value of this name is already defined (an input, initializer or node output).</summary>
    /// <param name="name">Value name.</param>
    /// <returns>True when defined.</returns>
    public bool IsDefined(string name) => defined.Contains(name);

    /// <summary>Declares a graph input.</summary>
    /// <param name="name">Value name.</param>
    /// <param name="dims">Dimensions; strings are symbolic (e.g. <c>"N"</c> for the batch).</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentException">The name is empty or already defined.</exception>
    public OnnxGraphBuilder AddInput(string name, params OnnxDim[] dims) => AddInput(name, OnnxDataType.Float, dims);

    /// <summary>Declares a graph input of the given element type.</summary>
    /// <param name="name">Value name.</param>
    /// <param name="type">Element type.</param>
    /// <param name="dims">Dimensions.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentException">The name is empty or already defined.</exception>
    public OnnxGraphBuilder AddInput(string name, OnnxDataType type, params OnnxDim[] dims)
    {
        Define(name);
        inputs.Add((name, type, dims.ToArray()));
        return this;
    }

    /// <summary>Adds a constant (initializer) from a float32 or int64 tensor; its data is copied now.</summary>
    /// <param name="name">Value name.</param>
    /// <param name="value">The tensor (any device/layout).</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentException">The name is taken or the dtype is neither float32 nor int64.</exception>
    public OnnxGraphBuilder AddInitializer(string name, Tensor value)
    {
        var data = TensorData.From(name, value);
        Define(name);
        initializers.Add(data);
        return this;
    }

    /// <summary>Adds a float32 constant.</summary>
    /// <param name="name">Value name.</param>
    /// <param name="values">Values in C order.</param>
    /// <param name="dims">Shape; its product must equal the number of values.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentException">The name is taken or the shape does not match.</exception>
    public OnnxGraphBuilder AddInitializer(string name, float[] values, params long[] dims)
    {
        var data = new TensorData(name, OnnxDataType.Float, dims.ToArray(), System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        CheckCount(name, dims, values.Length);
        Define(name);
        initializers.Add(data);
        return this;
    }

    /// <summary>Adds an int64 constant (e.g. a Reshape shape).</summary>
    /// <param name="name">Value name.</param>
    /// <param name="values">Values in C order.</param>
    /// <param name="dims">Shape; its product must equal the number of values.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentException">The name is taken or the shape does not match.</exception>
    public OnnxGraphBuilder AddInitializer(string name, long[] values, params long[] dims)
    {
        var data = new TensorData(name, OnnxDataType.Int64, dims.ToArray(), System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        CheckCount(name, dims, values.Length);
        Define(name);
        initializers.Add(data);
        return this;
    }

    /// <summary>Appends a node; nodes must be added in topological order.</summary>
    /// <param name="opType">Operator, e.g. <c>Conv</c>.</param>
    /// <param name="inputs">Input value names; "" marks an omitted optional input.</param>
    /// <param name="outputs">New value names this node defines.</param>
    /// <param name="attributes">Attributes.</param>
    /// <param name="name">Optional node name.</param>
    /// <param name="domain">Operator domain; "" is the default ONNX domain.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentException">An input is undefined, an output is already defined, or an attribute
    /// name repeats.</exception>
    public OnnxGraphBuilder AddNode(string opType, IEnumerable<string> inputs, IEnumerable<string> outputs,
        IEnumerable<OnnxAttribute>? attributes = null, string name = "", string domain = "")
    {
        ArgumentException.ThrowIfNullOrEmpty(opType);
        var ins = inputs.ToArray();
        var outs = outputs.ToArray();
        var attrs = (attributes ?? []).ToArray();
        foreach (var i in ins)
            if (i.Length > 0 && !defined.Contains(i)) throw new ArgumentException($"{opType} node input '{i}' is not defined by an input, initializer or earlier node.", nameof(inputs));
        if (attrs.Select(a => a.Name).Distinct().Count() != attrs.Length) throw new ArgumentException($"{opType} node has a repeated attribute.", nameof(attributes));
        if (outs.Length == 0) throw new ArgumentException($"{opType} node needs an output.", nameof(outputs));
        if (outs.Distinct().Count() != outs.Length) throw new ArgumentException($"{opType} node repeats an output name.", nameof(outputs));
        foreach (var o in outs) if (o.Length == 0 || defined.Contains(o)) throw new ArgumentException($"{opType} node output '{o}' is empty or already defined.", nameof(outputs));
        foreach (var o in outs) defined.Add(o);
        nodes.Add((opType, ins, outs, attrs, name, domain));
        return this;
    }

    /// <summary>Declares a graph output, which must already be defined.</summary>
    /// <param name="name">Value name.</param>
    /// <param name="dims">Dimensions; strings are symbolic.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentException">The value is not defined or already an output.</exception>
    public OnnxGraphBuilder AddOutput(string name, params OnnxDim[] dims) => AddOutput(name, OnnxDataType.Float, dims);

    /// <summary>Declares a graph output of the given element type.</summary>
    /// <param name="name">Value name.</param>
    /// <param name="type">Element type.</param>
    /// <param name="dims">Dimensions.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="ArgumentException">The value is not defined or already an output.</exception>
    public OnnxGraphBuilder AddOutput(string name, OnnxDataType type, params OnnxDim[] dims)
    {
        if (!defined.Contains(name)) throw new ArgumentException($"Output '{name}' is not defined.", nameof(name));
        if (outputs.Any(o => o.Name == name)) throw new ArgumentException($"'{name}' is already an output.", nameof(name));
        outputs.Add((name, type, dims.ToArray()));
        return this;
    }

    /// <summary>Writes the model atomically (see <see cref="AtomicFile.Write"/>).</summary>
    /// <param name="path">Destination .onnx file.</param>
    /// <exception cref="InvalidOperationException">The graph has no output.</exception>
    /// <exception cref="IOException">The file cannot be written.</exception>
    public void Save(string path)
    {
        var bytes = ToBytes();
        AtomicFile.Write(path, s => s.Write(bytes));
    }

    /// <summary>Serializes the <c>ModelProto</c>; equal graphs give identical bytes.</summary>
    /// <returns>The model bytes.</returns>
    /// <exception cref="InvalidOperationException">The graph has no output.</exception>
    public byte[] ToBytes()
    {
        if (outputs.Count == 0) throw new InvalidOperationException("The graph has no output.");
        return Message(m =>
        {
            m.WriteTag(1, WireFormat.WireType.Varint); m.WriteInt64(IrVersion);                    // ir_version
            WriteString(m, 2, "ConvKit");                                                           // producer_name
            WriteString(m, 3, ProducerVersion);                                                     // producer_version
            WriteMessage(m, 7, WriteGraph);                                                         // graph
            WriteMessage(m, 8, o => { WriteString(o, 1, ""); o.WriteTag(2, WireFormat.WireType.Varint); o.WriteInt64(OpsetVersion); }); // opset_import
        });
    }

    static readonly string ProducerVersion =
        typeof(OnnxGraphBuilder).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0";

    void WriteGraph(CodedOutputStream g)
    {
        foreach (var n in nodes)                                                                   // node = 1
            WriteMessage(g, 1, m =>
            {
                foreach (var i in n.Inputs) WriteString(m, 1, i);
                foreach (var o in n.Outputs) WriteString(m, 2, o);
                if (n.Name.Length > 0) WriteString(m, 3, n.Name);
                WriteString(m, 4, n.OpType);
                foreach (var a in n.Attributes) WriteMessage(m, 5, x => WriteAttribute(x, a));
                if (n.Domain.Length > 0) WriteString(m, 7, n.Domain);
            });
        WriteString(g, 2, graphName);                                                               // name = 2
        foreach (var t in initializers) WriteMessage(g, 5, m => WriteTensor(m, t));                 // initializer = 5
        foreach (var v in inputs) WriteMessage(g, 11, m => WriteValueInfo(m, v));                   // input = 11
        foreach (var v in outputs) WriteMessage(g, 12, m => WriteValueInfo(m, v));                  // output = 12
    }

    static void WriteAttribute(CodedOutputStream m, OnnxAttribute a)
    {
        WriteString(m, 1, a.Name);
        switch (a.Value)
        {
            case float f: m.WriteTag(2, WireFormat.WireType.Fixed32); m.WriteFloat(f); break;
            case long i: m.WriteTag(3, WireFormat.WireType.Varint); m.WriteInt64(i); break;
            case string s: WriteString(m, 4, s); break;
            case TensorData t: WriteMessage(m, 5, x => WriteTensor(x, t)); break;
            // proto2 "repeated" without [packed=true]: one tag per element, as onnx.proto declares them.
            case float[] fs: foreach (var f in fs) { m.WriteTag(7, WireFormat.WireType.Fixed32); m.WriteFloat(f); } break;
            case long[] ls: foreach (var l in ls) { m.WriteTag(8, WireFormat.WireType.Varint); m.WriteInt64(l); } break;
        }
        m.WriteTag(20, WireFormat.WireType.Varint); m.WriteEnum(a.Type);                            // type = 20
    }

    static void WriteTensor(CodedOutputStream m, TensorData t)
    {
        foreach (var d in t.Dims) { m.WriteTag(1, WireFormat.WireType.Varint); m.WriteInt64(d); }  // dims = 1
        m.WriteTag(2, WireFormat.WireType.Varint); m.WriteInt32((int)t.Type);                       // data_type = 2
        WriteString(m, 8, t.Name);                                                                  // name = 8
        m.WriteTag(9, WireFormat.WireType.LengthDelimited); m.WriteBytes(ByteString.CopyFrom(t.RawLittleEndian)); // raw_data = 9
    }

    static void WriteValueInfo(CodedOutputStream m, (string Name, OnnxDataType Type, OnnxDim[] Dims) v)
    {
        WriteString(m, 1, v.Name);
        WriteMessage(m, 2, type =>                                                                  // TypeProto
            WriteMessage(type, 1, tensor =>                                                         // tensor_type
            {
                tensor.WriteTag(1, WireFormat.WireType.Varint); tensor.WriteInt32((int)v.Type);     // elem_type
                WriteMessage(tensor, 2, shape =>                                                    // shape
                {
                    foreach (var d in v.Dims)
                        WriteMessage(shape, 1, dim =>                                               // dim
                        {
                            if (d.Param is { } p) WriteString(dim, 2, p);                           // dim_param
                            else { dim.WriteTag(1, WireFormat.WireType.Varint); dim.WriteInt64(d.Value ?? 0); } // dim_value
                        });
                });
            }));
    }

    static void WriteString(CodedOutputStream m, int field, string s)
    {
        m.WriteTag(field, WireFormat.WireType.LengthDelimited);
        m.WriteString(s);
    }

    static void WriteMessage(CodedOutputStream m, int field, Action<CodedOutputStream> body)
    {
        m.WriteTag(field, WireFormat.WireType.LengthDelimited);
        m.WriteBytes(ByteString.CopyFrom(Message(body)));
    }

    static byte[] Message(Action<CodedOutputStream> body)
    {
        using var ms = new MemoryStream();
        using (var c = new CodedOutputStream(ms, leaveOpen: true))
        {
            body(c);
            c.Flush();
        }
        return ms.ToArray();
    }

    void Define(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (!defined.Add(name)) throw new ArgumentException($"'{name}' is already defined in the graph.", nameof(name));
    }

    static void CheckCount(string name, long[] dims, int count)
    {
        long product = 1;
        foreach (var d in dims) product = d < 0 ? -1 : checked(product * d);
        if (product != count) throw new ArgumentException($"Initializer '{name}' has {count} values but shape [{string.Join(", ", dims)}].", nameof(dims));
    }

    internal sealed record TensorData(string Name, OnnxDataType Type, long[] Dims, byte[] RawLittleEndian)
    {
        public static TensorData From(string name, Tensor t)
        {
            var type = t.dtype switch
            {
                ScalarType.Float32 => OnnxDataType.Float,
                ScalarType.Int64 => OnnxDataType.Int64,
                _ => throw new ArgumentException($"'{name}' has dtype {t.dtype}; the ONNX writer takes float32 or int64.", nameof(t)),
            };
            using var c = t.detach().cpu().contiguous();
            return new TensorData(name, type, t.shape, c.NumberOfElements == 0 ? [] : c.bytes.ToArray());
        }
    }
}
