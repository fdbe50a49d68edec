using System.Reflection;
using System.Text;
using static TorchSharp.torch;

namespace ConvKit.Saving;

/// <summary>ONNX tensor element types the builder writes (values of <c>TensorProto.DataType</c>).</summary>
public enum OnnxDataType
{
    /// <summary>float32.</summary>
    Float = 1,
    /// <summary>uint8 (quantized activations).</summary>
    UInt8 = 2,
    /// <summary>int8 (quantized weights).</summary>
    Int8 = 3,
    /// <summary>int32 (quantized biases).</summary>
    Int32 = 6,
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
    /// <exception cref="InvalidOptionException"><paramref name="value"/> is negative.</exception>
    public static implicit operator OnnxDim(long value) =>
        new(value >= 0 ? value : throw new InvalidOptionException(nameof(value), "A dimension cannot be negative."), null);

    /// <summary>A symbolic dimension, e.g. the batch size <c>"N"</c>.</summary>
    /// <param name="param">Non-empty name.</param>
    /// <exception cref="InvalidOptionException"><paramref name="param"/> is empty.</exception>
    public static implicit operator OnnxDim(string param) =>
        new(null, string.IsNullOrEmpty(param) ? throw new InvalidOptionException(nameof(param), "A symbolic dimension needs a name.") : param);
}

/// <summary>A node attribute (<c>AttributeProto</c>); create with the static factories.</summary>
public sealed class OnnxAttribute
{
    internal string Name { get; }
    internal int Type { get; }
    internal object Value { get; }

    OnnxAttribute(string name, int type, object value)
    {
        Require.NotBlank(name);
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
    /// <exception cref="InvalidOptionException">The tensor is neither float32 nor int64.</exception>
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
/// <remarks>
/// <see cref="Save"/> streams the model to the file: each message's length is computed first, and initializer data is
/// copied from tensor memory straight to the file, so writing needs no second copy of the weights. Dispose the builder
/// to release the tensors it holds (otherwise the garbage collector does).
/// </remarks>
public sealed class OnnxGraphBuilder : IDisposable
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

    /// <summary>The graph inputs as declared (name, element type, dims with the batch first).</summary>
    internal IReadOnlyList<(string Name, OnnxDataType Type, OnnxDim[] Dims)> GraphInputs => inputs;

    /// <summary>The graph outputs as declared.</summary>
    internal IReadOnlyList<(string Name, OnnxDataType Type, OnnxDim[] Dims)> GraphOutputs => outputs;

    /// <summary>Whether a value of this name is already defined (an input, initializer or node output).</summary>
    /// <param name="name">Value name.</param>
    /// <returns>True when defined.</returns>
    public bool IsDefined(string name) => defined.Contains(name);

    /// <summary>Declares a graph input.</summary>
    /// <param name="name">Value name.</param>
    /// <param name="dims">Dimensions; strings are symbolic (e.g. <c>"N"</c> for the batch).</param>
    /// <returns>This builder.</returns>
    /// <exception cref="InvalidOptionException">The name is empty or already defined.</exception>
    public OnnxGraphBuilder AddInput(string name, params OnnxDim[] dims) => AddInput(name, OnnxDataType.Float, dims);

    /// <summary>Declares a graph input of the given element type.</summary>
    /// <param name="name">Value name.</param>
    /// <param name="type">Element type.</param>
    /// <param name="dims">Dimensions.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="InvalidOptionException">The name is empty or already defined.</exception>
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
    /// <exception cref="InvalidOptionException">The name is taken or the dtype is neither float32 nor int64.</exception>
    public OnnxGraphBuilder AddInitializer(string name, Tensor value)
    {
        var data = TensorData.FromTensor(name, value, copy: true);
        Define(name);
        initializers.Add(data);
        return this;
    }

    /// <summary>Adds an initializer that reads <paramref name="value"/>'s memory when the model is written (no copy
    /// when it is a contiguous CPU tensor): the exporter's model weights, which nothing changes during an export.</summary>
    internal OnnxGraphBuilder AddInitializerView(string name, Tensor value)
    {
        var data = TensorData.FromTensor(name, value, copy: false);
        try
        {
            Define(name);
        }
        catch
        {
            data.Dispose();
            throw;
        }
        initializers.Add(data);
        return this;
    }

    /// <summary>Adds a float32 constant.</summary>
    /// <param name="name">Value name.</param>
    /// <param name="values">Values in C order.</param>
    /// <param name="dims">Shape; its product must equal the number of values.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="InvalidOptionException">The name is taken or the shape does not match.</exception>
    public OnnxGraphBuilder AddInitializer(string name, float[] values, params long[] dims)
    {
        var data = TensorData.FromBytes(name, OnnxDataType.Float, dims.ToArray(), System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
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
    /// <exception cref="InvalidOptionException">The name is taken or the shape does not match.</exception>
    public OnnxGraphBuilder AddInitializer(string name, long[] values, params long[] dims)
    {
        var data = TensorData.FromBytes(name, OnnxDataType.Int64, dims.ToArray(), System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
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
    /// <exception cref="InvalidOptionException">An input is undefined, an output is already defined, or an attribute
    /// name repeats.</exception>
    public OnnxGraphBuilder AddNode(string opType, IEnumerable<string> inputs, IEnumerable<string> outputs,
        IEnumerable<OnnxAttribute>? attributes = null, string name = "", string domain = "")
    {
        Require.NotBlank(opType);
        var ins = inputs.ToArray();
        var outs = outputs.ToArray();
        var attrs = (attributes ?? []).ToArray();
        foreach (var i in ins)
            if (i.Length > 0 && !defined.Contains(i)) throw new InvalidOptionException(nameof(inputs), $"{opType} node input '{i}' is not defined by an input, initializer or earlier node.");
        if (attrs.Select(a => a.Name).Distinct().Count() != attrs.Length) throw new InvalidOptionException(nameof(attributes), $"{opType} node has a repeated attribute.");
        if (outs.Length == 0) throw new InvalidOptionException(nameof(outputs), $"{opType} node needs an output.");
        if (outs.Distinct().Count() != outs.Length) throw new InvalidOptionException(nameof(outputs), $"{opType} node repeats an output name.");
        foreach (var o in outs) if (o.Length == 0 || defined.Contains(o)) throw new InvalidOptionException(nameof(outputs), $"{opType} node output '{o}' is empty or already defined.");
        foreach (var o in outs) defined.Add(o);
        nodes.Add((opType, ins, outs, attrs, name, domain));
        return this;
    }

    /// <summary>Declares a graph output, which must already be defined.</summary>
    /// <param name="name">Value name.</param>
    /// <param name="dims">Dimensions; strings are symbolic.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="InvalidOptionException">The value is not defined or already an output.</exception>
    public OnnxGraphBuilder AddOutput(string name, params OnnxDim[] dims) => AddOutput(name, OnnxDataType.Float, dims);

    /// <summary>Declares a graph output of the given element type.</summary>
    /// <param name="name">Value name.</param>
    /// <param name="type">Element type.</param>
    /// <param name="dims">Dimensions.</param>
    /// <returns>This builder.</returns>
    /// <exception cref="InvalidOptionException">The value is not defined or already an output.</exception>
    public OnnxGraphBuilder AddOutput(string name, OnnxDataType type, params OnnxDim[] dims)
    {
        if (!defined.Contains(name)) throw new InvalidOptionException(nameof(name), $"Output '{name}' is not defined.");
        if (outputs.Any(o => o.Name == name)) throw new InvalidOptionException(nameof(name), $"'{name}' is already an output.");
        outputs.Add((name, type, dims.ToArray()));
        return this;
    }

    /// <summary>Raw little-endian data of any element type (the quantizer's int8 weights, int32 biases, uint8 zero
    /// points); the caller checks that <paramref name="raw"/> holds the dims' element count.</summary>
    internal OnnxGraphBuilder AddInitializerBytes(string name, OnnxDataType type, long[] dims, byte[] raw)
    {
        Define(name);
        initializers.Add(TensorData.FromBytes(name, type, dims, raw));
        return this;
    }

    /// <summary>A graph output declared with its element type only (no shape): the calibration graph's extra outputs,
    /// whose shapes the exporter does not carry.</summary>
    internal OnnxGraphBuilder AddOutputWithoutShape(string name)
    {
        AddOutput(name);
        unshaped.Add(name);
        return this;
    }

    readonly HashSet<string> unshaped = new(StringComparer.Ordinal);

    /// <summary>ModelProto.metadata_props: key/value strings that travel inside the file (ORT reads them back as
    /// <c>ModelMetadata.CustomMetadataMap</c>).</summary>
    internal SortedDictionary<string, string> MetadataProps { get; } = new(StringComparer.Ordinal);

    /// <summary>Writes the model atomically (see <see cref="AtomicFile.Write"/>), streaming initializer data from
    /// tensor memory: memory use does not grow with the model.</summary>
    /// <param name="path">Destination .onnx file.</param>
    /// <exception cref="GraphException">The graph has no output.</exception>
    /// <exception cref="IOException">The file cannot be written.</exception>
    public void Save(string path)
    {
        if (outputs.Count == 0) throw new GraphException("The ONNX graph has no output; add one with AddOutput.");
        AtomicFile.Write(path, WriteTo);
    }

    /// <summary>Writes the <c>ModelProto</c> to a stream (the bytes of <see cref="ToBytes"/>).</summary>
    /// <param name="stream">Destination.</param>
    /// <exception cref="GraphException">The graph has no output.</exception>
    public void WriteTo(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (outputs.Count == 0) throw new GraphException("The ONNX graph has no output; add one with AddOutput.");
        var buffered = new BufferedStream(stream, 1 << 16); // not disposed: that would close the caller's stream
        WriteModel(new ProtoWriter(buffered));
        buffered.Flush();
    }

    /// <summary>The size in bytes of the serialized <c>ModelProto</c>.</summary>
    /// <returns>The byte count <see cref="ToBytes"/> returns and <see cref="Save"/> writes.</returns>
    public long SerializedSize => ProtoWriter.Measure(WriteModel);

    /// <summary>Serializes the <c>ModelProto</c>; equal graphs give identical bytes.</summary>
    /// <returns>The model bytes.</returns>
    /// <exception cref="GraphException">The graph has no output.</exception>
    /// <exception cref="UnsupportedException">The model exceeds 2 GB (protobuf's
    /// limit for one message in memory; <see cref="Save"/> streams).</exception>
    public byte[] ToBytes()
    {
        if (outputs.Count == 0) throw new GraphException("The ONNX graph has no output; add one with AddOutput.");
        long size = SerializedSize;
        if (size > Array.MaxLength) throw new UnsupportedException($"The ONNX model is {size:N0} bytes, more than one array holds; write it to a file with Save.");
        var bytes = new byte[size];
        using var ms = new MemoryStream(bytes, writable: true);
        WriteModel(new ProtoWriter(ms));
        return bytes;
    }

    /// <summary>Releases the tensors held for initializers.</summary>
    public void Dispose()
    {
        foreach (var t in initializers) t.Dispose();
    }

    void WriteModel(ProtoWriter m)
    {
        m.Int64(1, IrVersion);                                                                      // ir_version
        m.String(2, "ConvKit");                                                                     // producer_name
        m.String(3, ProducerVersion);                                                               // producer_version
        m.Message(7, WriteGraph);                                                                   // graph
        m.Message(8, o => { o.String(1, ""); o.Int64(2, OpsetVersion); });                          // opset_import
        foreach (var (k, v) in MetadataProps) m.Message(14, e => { e.String(1, k); e.String(2, v); }); // metadata_props
    }

    static readonly string ProducerVersion =
        typeof(OnnxGraphBuilder).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0";

    void WriteGraph(ProtoWriter g)
    {
        foreach (var n in nodes)                                                                   // node = 1
            g.Message(1, m =>
            {
                foreach (var i in n.Inputs) m.String(1, i);
                foreach (var o in n.Outputs) m.String(2, o);
                if (n.Name.Length > 0) m.String(3, n.Name);
                m.String(4, n.OpType);
                foreach (var a in n.Attributes) m.Message(5, x => WriteAttribute(x, a));
                if (n.Domain.Length > 0) m.String(7, n.Domain);
            });
        g.String(2, graphName);                                                                     // name = 2
        foreach (var t in initializers) g.Message(5, m => WriteTensor(m, t));                       // initializer = 5
        foreach (var v in inputs) g.Message(11, m => WriteValueInfo(m, v));                         // input = 11
        foreach (var v in outputs) g.Message(12, m => WriteValueInfo(m, v, unshaped.Contains(v.Name))); // output = 12
    }

    static void WriteAttribute(ProtoWriter m, OnnxAttribute a)
    {
        m.String(1, a.Name);
        switch (a.Value)
        {
            case float f: m.Float(2, f); break;
            case long i: m.Int64(3, i); break;
            case string s: m.String(4, s); break;
            case TensorData t: m.Message(5, x => WriteTensor(x, t)); break;
            // proto2 "repeated" without [packed=true]: one tag per element, as onnx.proto declares them.
            case float[] fs: foreach (var f in fs) m.Float(7, f); break;
            case long[] ls: foreach (var l in ls) m.Int64(8, l); break;
        }
        m.Int32(20, a.Type);                                                                        // type = 20
    }

    static void WriteTensor(ProtoWriter m, TensorData t)
    {
        foreach (var d in t.Dims) m.Int64(1, d);                                                    // dims = 1
        m.Int32(2, (int)t.Type);                                                                    // data_type = 2
        m.String(8, t.Name);                                                                        // name = 8
        m.Bytes(9, t.ByteLength, t.WriteData);                                                      // raw_data = 9
    }

    static void WriteValueInfo(ProtoWriter m, (string Name, OnnxDataType Type, OnnxDim[] Dims) v, bool withoutShape = false)
    {
        m.String(1, v.Name);
        m.Message(2, type =>                                                                        // TypeProto
            type.Message(1, tensor =>                                                               // tensor_type
            {
                tensor.Int32(1, (int)v.Type);                                                       // elem_type
                if (withoutShape) return;
                tensor.Message(2, shape =>                                                          // shape
                {
                    foreach (var d in v.Dims)
                        shape.Message(1, dim =>                                                     // dim
                        {
                            if (d.Param is { } p) dim.String(2, p);                                 // dim_param
                            else dim.Int64(1, d.Value ?? 0);                                        // dim_value
                        });
                });
            }));
    }

    void Define(string name)
    {
        Require.NotBlank(name);
        if (!defined.Add(name)) throw new InvalidOptionException(nameof(name), $"'{name}' is already defined in the graph.");
    }

    static void CheckCount(string name, long[] dims, int count)
    {
        long product = 1;
        foreach (var d in dims) product = d < 0 ? -1 : checked(product * d);
        if (product != count) throw new ShapeException($"Initializer '{name}' has {count} values but shape [{string.Join(", ", dims)}].");
    }

    /// <summary>An initializer's metadata and data: managed bytes, or a tensor whose memory is read when writing.</summary>
    internal sealed class TensorData : IDisposable
    {
        readonly byte[]? bytes;
        readonly Tensor? tensor;

        TensorData(string name, OnnxDataType type, long[] dims, byte[]? bytes, Tensor? tensor, long byteLength)
        {
            (Name, Type, Dims, this.bytes, this.tensor, ByteLength) = (name, type, dims, bytes, tensor, byteLength);
        }

        public string Name { get; }
        public OnnxDataType Type { get; }
        public long[] Dims { get; }
        public long ByteLength { get; }

        public static TensorData FromBytes(string name, OnnxDataType type, long[] dims, byte[] raw) =>
            new(name, type, dims, raw, null, raw.Length);

        /// <summary>Managed bytes (attributes: small, and not disposed).</summary>
        public static TensorData From(string name, Tensor t)
        {
            using var view = FromTensor(name, t, copy: false);
            var raw = new byte[view.ByteLength];
            using (var ms = new MemoryStream(raw)) view.WriteData(ms);
            return FromBytes(name, view.Type, view.Dims, raw);
        }

        /// <summary>A contiguous CPU tensor holding the data: its own copy, or (copy false) a view of the same memory
        /// when <paramref name="t"/> already is contiguous on the CPU.</summary>
        public static TensorData FromTensor(string name, Tensor t, bool copy)
        {
            var type = t.dtype switch
            {
                ScalarType.Float32 => OnnxDataType.Float,
                ScalarType.Int64 => OnnxDataType.Int64,
                _ => throw new InvalidOptionException(nameof(t), $"'{name}' has dtype {t.dtype}; the ONNX writer takes float32 or int64."),
            };
            // TorchSharp may return the same wrapper from cpu()/contiguous(): dispose only the intermediates that are not c.
            var detached = t.detach();
            var cpu = detached.cpu();
            var c = cpu.contiguous();
            if (!ReferenceEquals(cpu, c)) cpu.Dispose();
            if (!ReferenceEquals(detached, cpu) && !ReferenceEquals(detached, c)) detached.Dispose();
            if (copy)
            {
                var own = c.clone();
                c.Dispose();
                c = own;
            }
            return new TensorData(name, type, t.shape, null, c, c.NumberOfElements * c.ElementSize);
        }

        /// <summary>Writes the raw little-endian data (this machine's order: x64 and arm64 are little-endian).</summary>
        public void WriteData(Stream stream)
        {
            if (bytes is not null)
            {
                stream.Write(bytes);
                return;
            }
            if (ByteLength == 0) return;
            // Slices of at most 64 MiB, so that no span exceeds int.MaxValue bytes.
            long n = tensor!.NumberOfElements, step = (64 << 20) / tensor.ElementSize;
            using var flat = tensor.view(-1);
            for (long start = 0; start < n; start += step)
            {
                using var slice = flat.narrow(0, start, Math.Min(step, n - start));
                stream.Write(slice.bytes);
            }
        }

        public void Dispose() => tensor?.Dispose();
    }
}

/// <summary>
/// The protobuf wire format, written straight to a stream. A nested message's length is computed by running its
/// writer in counting mode first (no bytes produced), so nothing is buffered; initializer data is streamed.
/// </summary>
internal sealed class ProtoWriter
{
    readonly Stream? stream;
    readonly byte[] scratch = new byte[10];

    public ProtoWriter(Stream? stream) => this.stream = stream;

    /// <summary>Bytes written (or counted) so far.</summary>
    public long Length { get; private set; }

    /// <summary>The size of what <paramref name="body"/> writes.</summary>
    public static long Measure(Action<ProtoWriter> body)
    {
        var counter = new ProtoWriter(null);
        body(counter);
        return counter.Length;
    }

    void Raw(ReadOnlySpan<byte> b)
    {
        stream?.Write(b);
        Length += b.Length;
    }

    void Varint(ulong v)
    {
        int n = 0;
        while (v >= 0x80)
        {
            scratch[n++] = (byte)(v | 0x80);
            v >>= 7;
        }
        scratch[n++] = (byte)v;
        Raw(scratch.AsSpan(0, n));
    }

    void Tag(int field, int wireType) => Varint((ulong)((field << 3) | wireType));

    public void Int64(int field, long value)
    {
        Tag(field, 0);
        Varint((ulong)value);
    }

    /// <summary>int32 and enums: negative values are sign-extended to ten bytes, as protobuf does.</summary>
    public void Int32(int field, int value) => Int64(field, value);

    public void Float(int field, float value)
    {
        Tag(field, 5);
        System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(scratch, value);
        Raw(scratch.AsSpan(0, 4));
    }

    public void String(int field, string value)
    {
        Tag(field, 2);
        var utf8 = Encoding.UTF8.GetBytes(value);
        Varint((ulong)utf8.Length);
        Raw(utf8);
    }

    public void Message(int field, Action<ProtoWriter> body)
    {
        Tag(field, 2);
        Varint((ulong)Measure(body));
        body(this);
    }

    /// <summary>A bytes field of known length whose content <paramref name="write"/> streams.</summary>
    public void Bytes(int field, long length, Action<Stream> write)
    {
        Tag(field, 2);
        Varint((ulong)length);
        if (stream is not null)
        {
            long start = stream.CanSeek ? stream.Position : -1;
            write(stream);
            if (start >= 0 && stream.Position - start != length)
                throw new ConvKitException($"ONNX writer: a bytes field wrote {stream.Position - start} bytes, {length} were declared.");
        }
        Length += length;
    }
}
