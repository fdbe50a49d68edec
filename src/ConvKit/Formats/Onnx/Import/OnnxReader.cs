namespace ConvKit.Formats.Onnx;

/// <summary>
/// Reads an ONNX ModelProto with bounded memory: every declared length is checked against its enclosing message and
/// the file before anything is allocated; tensor data is not read (only located), so that a graph is checked (cycles,
/// dangling values, unsupported operators) before any weight is loaded; external data must lie inside the model's
/// folder. Field numbers are onnx.proto's.
/// </summary>
public static class OnnxReader
{
    /// <summary>Reads and checks the model at <paramref name="path"/> (structure only; tensor data stays in the file).</summary>
    /// <exception cref="OnnxFormatException">The file is truncated, corrupt or hostile.</exception>
    /// <exception cref="OnnxGraphException">The graph is cyclic, or uses a value nothing produces.</exception>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    public static OnnxModel Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new OnnxImportException(path, "no such file.");
        using var stream = new BufferedStream(File.OpenRead(path), 1 << 16);
        var reader = new ProtoReader(stream, path);
        var folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        var ctx = new Context(path, folder, stream.Length);
        long ir = 0;
        string producer = "", producerVersion = "";
        var opsets = new Dictionary<string, long>();
        OnnxGraph? graph = null;
        try
        {
            while (reader.ReadTag(out int field, out int wire))
            {
                switch (field)
                {
                    case 1 when wire == 0: ir = reader.ReadInt64(); break;
                    case 2 when wire == 2: producer = reader.ReadString("producer_name"); break;
                    case 3 when wire == 2: producerVersion = reader.ReadString("producer_version"); break;
                    case 7 when wire == 2:
                        if (graph is not null) throw new OnnxFormatException(path, "the model holds two graphs.");
                        graph = ReadGraph(reader, ctx);
                        break;
                    case 8 when wire == 2:
                    {
                        long outer = reader.Enter("opset_import");
                        string domain = "";
                        long version = 0;
                        while (reader.ReadTag(out int f, out int w))
                        {
                            if (f == 1 && w == 2) domain = reader.ReadString("opset domain");
                            else if (f == 2 && w == 0) version = reader.ReadInt64();
                            else reader.Skip(w);
                        }
                        reader.Leave(outer);
                        opsets[domain] = version;
                        break;
                    }
                    default: reader.Skip(wire); break;
                }
            }
        }
        catch (EndOfStreamException e)
        {
            throw new OnnxFormatException(path, "truncated file.", e);
        }
        if (graph is null) throw new OnnxFormatException(path, "the file holds no graph (is it an ONNX model?).");
        if (opsets.Count == 0) opsets[""] = ir <= 3 ? 1 : 7;
        CheckTopology(path, graph);
        return new OnnxModel(path, ir, (producer + " " + producerVersion).Trim(), opsets, graph);
    }

    /// <summary>The model's <c>metadata_props</c> (key to value), read without reading its graph (skipped by length).</summary>
    /// <exception cref="OnnxFormatException">The file is truncated or corrupt.</exception>
    /// <exception cref="OnnxImportException">No such file.</exception>
    public static IReadOnlyDictionary<string, string> ReadMetadata(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new OnnxImportException(path, "no such file.");
        using var stream = new BufferedStream(File.OpenRead(path), 1 << 12);
        var reader = new ProtoReader(stream, path);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            while (reader.ReadTag(out int field, out int wire))
            {
                if (field != 14 || wire != 2)
                {
                    reader.Skip(wire);
                    continue;
                }
                long outer = reader.Enter("metadata_props");
                string key = "", value = "";
                while (reader.ReadTag(out int f, out int w))
                {
                    if (f == 1 && w == 2) key = reader.ReadString("metadata key");
                    else if (f == 2 && w == 2) value = reader.ReadString("metadata value");
                    else reader.Skip(w);
                }
                reader.Leave(outer);
                metadata[key] = value;
            }
        }
        catch (EndOfStreamException e)
        {
            throw new OnnxFormatException(path, "truncated file.", e);
        }
        return metadata;
    }

    sealed record Context(string File, string Folder, long FileLength);

    static OnnxGraph ReadGraph(ProtoReader r, Context ctx)
    {
        long outer = r.Enter("graph");
        var nodes = new List<OnnxNode>();
        var initializers = new Dictionary<string, OnnxTensor>();
        var inputs = new List<OnnxValueInfo>();
        var outputs = new List<OnnxValueInfo>();
        string name = "";
        while (r.ReadTag(out int field, out int wire))
        {
            switch (field)
            {
                case 1 when wire == 2: nodes.Add(ReadNode(r, ctx, nodes.Count)); break;
                case 2 when wire == 2: name = r.ReadString("graph name"); break;
                case 5 when wire == 2:
                {
                    var t = ReadTensor(r, ctx, "initializer");
                    if (!initializers.TryAdd(t.Name, t)) throw new OnnxFormatException(ctx.File, $"initializer '{t.Name}' is defined twice.");
                    break;
                }
                case 11 when wire == 2: inputs.Add(ReadValueInfo(r, ctx)); break;
                case 12 when wire == 2: outputs.Add(ReadValueInfo(r, ctx)); break;
                case 15: throw new OnnxFormatException(ctx.File, "sparse initializers are not supported.");
                default: r.Skip(wire); break;
            }
        }
        r.Leave(outer);
        return new OnnxGraph(name, nodes, initializers, inputs.Where(i => !initializers.ContainsKey(i.Name)).ToArray(), outputs);
    }

    static OnnxNode ReadNode(ProtoReader r, Context ctx, int index)
    {
        long outer = r.Enter("node");
        var inputs = new List<string>();
        var outputs = new List<string>();
        string name = "", op = "", domain = "";
        var attributes = new Dictionary<string, OnnxAttributeValue>();
        while (r.ReadTag(out int field, out int wire))
        {
            switch (field)
            {
                case 1 when wire == 2: inputs.Add(r.ReadString("node input")); break;
                case 2 when wire == 2: outputs.Add(r.ReadString("node output")); break;
                case 3 when wire == 2: name = r.ReadString("node name"); break;
                case 4 when wire == 2: op = r.ReadString("op_type"); break;
                case 5 when wire == 2:
                {
                    var a = ReadAttribute(r, ctx);
                    attributes[a.Name] = a;
                    break;
                }
                case 7 when wire == 2: domain = r.ReadString("node domain"); break;
                default: r.Skip(wire); break;
            }
        }
        r.Leave(outer);
        if (op.Length == 0) throw new OnnxFormatException(ctx.File, $"node {index} ('{name}') has no op_type.");
        if (outputs.Count == 0) throw new OnnxFormatException(ctx.File, $"node {index} ('{name}', {op}) has no output.");
        if (name.Length == 0) name = outputs[0];
        return new OnnxNode(name, op, domain == "ai.onnx" ? "" : domain, inputs.ToArray(), outputs.ToArray(), attributes);
    }

    static OnnxAttributeValue ReadAttribute(ProtoReader r, Context ctx)
    {
        long outer = r.Enter("attribute");
        string name = "";
        int type = 0;
        float f = 0;
        long i = 0;
        string? s = null;
        OnnxTensor? t = null;
        var floats = new List<float>();
        var ints = new List<long>();
        bool graph = false;
        while (r.ReadTag(out int field, out int wire))
        {
            switch (field)
            {
                case 1 when wire == 2: name = r.ReadString("attribute name"); break;
                case 2 when wire == 5: f = r.ReadFloat(); break;
                case 3 when wire == 0: i = r.ReadInt64(); break;
                case 4 when wire == 2: s = System.Text.Encoding.UTF8.GetString(r.ReadBytes("string attribute", 1 << 20)); break;
                case 5 when wire == 2: t = ReadTensor(r, ctx, $"attribute '{name}'"); break;
                case 6 or 11: graph = true; r.Skip(wire); break;
                case 7: r.ReadFloats(wire, floats, $"attribute '{name}' floats"); break;
                case 8: r.ReadInt64s(wire, ints, $"attribute '{name}' ints"); break;
                case 20 when wire == 0: type = (int)r.ReadInt64(); break;
                default: r.Skip(wire); break;
            }
            if (floats.Count + ints.Count > 1 << 20) throw new OnnxFormatException(ctx.File, $"attribute '{name}' holds more than {1 << 20} values.");
        }
        r.Leave(outer);
        return new OnnxAttributeValue(name, type, f, i, s, t, floats.ToArray(), ints.ToArray(), graph);
    }

    static OnnxValueInfo ReadValueInfo(ProtoReader r, Context ctx)
    {
        long outer = r.Enter("value_info");
        string name = "";
        var elem = OnnxElementType.Undefined;
        long[]? dims = null;
        while (r.ReadTag(out int field, out int wire))
        {
            if (field == 1 && wire == 2) name = r.ReadString("value name");
            else if (field == 2 && wire == 2)
            {
                long typeOuter = r.Enter("type");
                while (r.ReadTag(out int tf, out int tw))
                {
                    if (tf != 1 || tw != 2) { r.Skip(tw); continue; }
                    long tensorOuter = r.Enter("tensor_type");
                    while (r.ReadTag(out int ef, out int ew))
                    {
                        if (ef == 1 && ew == 0) elem = (OnnxElementType)(int)r.ReadInt64();
                        else if (ef == 2 && ew == 2)
                        {
                            long shapeOuter = r.Enter("shape");
                            var list = new List<long>();
                            while (r.ReadTag(out int sf, out int sw))
                            {
                                if (sf != 1 || sw != 2) { r.Skip(sw); continue; }
                                long dimOuter = r.Enter("dim");
                                long value = -1;
                                while (r.ReadTag(out int df, out int dw))
                                {
                                    if (df == 1 && dw == 0) value = r.ReadInt64();
                                    else r.Skip(dw);
                                }
                                r.Leave(dimOuter);
                                list.Add(value > 0 ? value : -1);
                                if (list.Count > 64) throw new OnnxFormatException(ctx.File, $"value '{name}' declares more than 64 dimensions.");
                            }
                            r.Leave(shapeOuter);
                            dims = list.ToArray();
                        }
                        else r.Skip(ew);
                    }
                    r.Leave(tensorOuter);
                }
                r.Leave(typeOuter);
            }
            else r.Skip(wire);
        }
        r.Leave(outer);
        return new OnnxValueInfo(name, elem, dims);
    }

    static OnnxTensor ReadTensor(ProtoReader r, Context ctx, string what)
    {
        long outer = r.Enter(what);
        var dims = new List<long>();
        int type = 0;
        string name = "";
        (long Offset, long Length)? raw = null;
        (long Offset, long Length, int Field)? packed = null;
        var floats = new List<float>();
        var longs = new List<long>();
        var doubles = new List<double>();
        string? location = null;
        long extOffset = 0, extLength = -1;
        bool external = false;
        while (r.ReadTag(out int field, out int wire))
        {
            switch (field)
            {
                case 1: r.ReadInt64s(wire, dims, $"{what} dims"); break;
                case 2 when wire == 0: type = (int)r.ReadInt64(); break;
                case 8 when wire == 2: name = r.ReadString("tensor name"); break;
                case 9 when wire == 2: raw = r.SkipBytes("raw_data"); break;
                case 4 or 5 or 7 or 10 or 11 when wire == 2:
                {
                    var (o, l) = r.SkipBytes("tensor data");
                    packed = (o, l, field);
                    break;
                }
                case 4 when wire == 5: floats.Add(r.ReadFloat()); break;
                case 5 or 7 or 11 when wire == 0: longs.Add(field == 5 ? (int)r.ReadVarint() : r.ReadInt64()); break;
                case 10 when wire == 1: doubles.Add(BitConverter.Int64BitsToDouble((long)r.ReadFixed64())); break;
                case 6: throw new OnnxFormatException(ctx.File, $"{what} '{name}' holds strings, which a CNN graph does not use.");
                case 13 when wire == 2:
                {
                    long entryOuter = r.Enter("external_data");
                    string key = "", value = "";
                    while (r.ReadTag(out int ef, out int ew))
                    {
                        if (ef == 1 && ew == 2) key = r.ReadString("external_data key");
                        else if (ef == 2 && ew == 2) value = r.ReadString("external_data value");
                        else r.Skip(ew);
                    }
                    r.Leave(entryOuter);
                    switch (key)
                    {
                        case "location": location = value; break;
                        case "offset": extOffset = ParseLong(ctx, name, key, value); break;
                        case "length": extLength = ParseLong(ctx, name, key, value); break;
                    }
                    break;
                }
                case 14 when wire == 0: external = r.ReadInt64() == 1; break;
                default: r.Skip(wire); break;
            }
            if (dims.Count > 64) throw new OnnxFormatException(ctx.File, $"{what} '{name}' declares more than 64 dimensions.");
        }
        r.Leave(outer);
        var dtype = (OnnxElementType)type;
        OnnxTensor t;
        if (external || location is not null)
        {
            var dataFile = ResolveExternal(ctx, name, location);
            long fileLength = new FileInfo(dataFile).Length;
            if (extOffset > fileLength) throw new OnnxFormatException(ctx.File, $"tensor '{name}': external data offset {extOffset} is past the end of '{location}' ({fileLength} bytes).");
            long length = extLength >= 0 ? extLength : fileLength - extOffset;
            if (length > fileLength - extOffset) throw new OnnxFormatException(ctx.File, $"tensor '{name}': external data of {length} bytes at offset {extOffset} runs past the end of '{location}' ({fileLength} bytes).");
            t = new OnnxTensor(ctx.File, name, dtype, dims.ToArray(), dataFile, extOffset, length, 0, null);
        }
        else if (raw is { } rr) t = new OnnxTensor(ctx.File, name, dtype, dims.ToArray(), null, rr.Offset, rr.Length, 0, null);
        else if (packed is { } p) t = new OnnxTensor(ctx.File, name, dtype, dims.ToArray(), null, p.Offset, p.Length, p.Field, null);
        else if (floats.Count > 0) t = new OnnxTensor(ctx.File, name, dtype, dims.ToArray(), null, 0, 0, 0, floats.ToArray());
        else if (doubles.Count > 0) t = new OnnxTensor(ctx.File, name, dtype, dims.ToArray(), null, 0, 0, 0, doubles.ToArray());
        else t = new OnnxTensor(ctx.File, name, dtype, dims.ToArray(), null, 0, 0, 0, longs.ToArray());
        t.Validate(ctx.FileLength);
        return t;
    }

    static long ParseLong(Context ctx, string tensor, string key, string value) =>
        long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var v) ? v
            : throw new OnnxFormatException(ctx.File, $"tensor '{tensor}': external_data {key} '{value}' is not a non-negative integer.");

    /// <summary>The external data file of a tensor: a relative path that stays inside the model's folder (links resolved).</summary>
    static string ResolveExternal(Context ctx, string tensor, string? location)
    {
        if (string.IsNullOrEmpty(location)) throw new OnnxFormatException(ctx.File, $"tensor '{tensor}' says its data is external but gives no location.");
        if (System.IO.Path.IsPathRooted(location) || location.Contains('\0'))
            throw new OnnxFormatException(ctx.File, $"tensor '{tensor}': external data location '{location}' must be a relative path inside the model's folder.");
        string folder = ctx.Folder.EndsWith(System.IO.Path.DirectorySeparatorChar) ? ctx.Folder : ctx.Folder + System.IO.Path.DirectorySeparatorChar;
        var full = System.IO.Path.GetFullPath(System.IO.Path.Combine(ctx.Folder, location));
        if (!full.StartsWith(folder, StringComparison.Ordinal))
            throw new OnnxFormatException(ctx.File, $"tensor '{tensor}': external data location '{location}' points outside the model's folder.");
        var info = new FileInfo(full);
        if (!info.Exists) throw new OnnxFormatException(ctx.File, $"tensor '{tensor}': external data file '{location}' does not exist next to the model.");
        // A link inside the folder may still lead outside it.
        if (info.ResolveLinkTarget(returnFinalTarget: true) is { } target && !System.IO.Path.GetFullPath(target.FullName).StartsWith(folder, StringComparison.Ordinal))
            throw new OnnxFormatException(ctx.File, $"tensor '{tensor}': external data location '{location}' is a link that points outside the model's folder.");
        return full;
    }

    /// <summary>Every node input must be a graph input, an initializer or an earlier node's output; a value is produced once.</summary>
    static void CheckTopology(string path, OnnxGraph graph)
    {
        var known = new HashSet<string>(graph.Inputs.Select(i => i.Name).Concat(graph.Initializers.Keys)) { "" };
        var producer = new Dictionary<string, OnnxNode>();
        foreach (var n in graph.Nodes)
            foreach (var o in n.Outputs)
                if (o.Length > 0 && !producer.TryAdd(o, n))
                    throw new OnnxGraphException(path, $"value '{o}' is produced by two nodes ('{producer[o].Name}' and '{n.Name}').");
        // Nodes may come in any order in a file; ONNX requires topological order, but check for cycles properly.
        var state = new Dictionary<OnnxNode, int>(ReferenceEqualityComparer.Instance);
        var ordered = new List<OnnxNode>();
        foreach (var start in graph.Nodes)
        {
            if (state.ContainsKey(start)) continue;
            var stack = new Stack<(OnnxNode Node, int Next)>();
            stack.Push((start, 0));
            state[start] = 1;
            while (stack.Count > 0)
            {
                var (node, next) = stack.Pop();
                if (next < node.Inputs.Count)
                {
                    stack.Push((node, next + 1));
                    var input = node.Inputs[next];
                    if (known.Contains(input)) continue;
                    if (!producer.TryGetValue(input, out var p))
                        throw new OnnxGraphException(path, $"node '{node.Name}' ({node.OpType}) reads value '{input}', which no node, input or initializer provides.");
                    if (state.TryGetValue(p, out int s))
                    {
                        if (s == 1) throw new OnnxGraphException(path, $"the graph has a cycle through node '{p.Name}' ({p.OpType}) and value '{input}'.");
                        continue;
                    }
                    state[p] = 1;
                    stack.Push((p, 0));
                }
                else
                {
                    state[node] = 2;
                    ordered.Add(node);
                }
            }
        }
        foreach (var o in graph.Outputs)
            if (!known.Contains(o.Name) && !producer.ContainsKey(o.Name))
                throw new OnnxGraphException(path, $"graph output '{o.Name}' is produced by no node.");
        // Keep the (now verified) topological order.
        ((List<OnnxNode>)graph.Nodes).Clear();
        ((List<OnnxNode>)graph.Nodes).AddRange(ordered);
    }
}
