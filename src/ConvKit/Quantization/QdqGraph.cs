using ConvKit.Models;
using ConvKit.Formats.Onnx;
using ConvKit.Saving;
using static TorchSharp.torch;

namespace ConvKit.Quantization;

/// <summary>
/// ConvKit's FP32 ONNX export of a model, simplified for quantization (batch normalization folded into the
/// convolution before it, zero Pad folded into the convolution after it, Identity removed, two-input Sum as Add), and
/// the quantization plan over it: which float tensors get a QuantizeLinear/DequantizeLinear pair and whose range they
/// use. Writes two graphs: the FP32 graph with every calibrated tensor as an extra output (calibration), and the QDQ
/// graph ONNX Runtime fuses into QLinearConv, QLinearAdd, QGemm and friends.
/// </summary>
internal sealed class QdqGraph
{
    internal sealed class Node(string op, List<string> inputs, List<string> outputs, List<OnnxAttribute> attributes, string name)
    {
        public string Op { get; set; } = op;
        public List<string> Inputs { get; } = inputs;
        public List<string> Outputs { get; } = outputs;
        public List<OnnxAttribute> Attributes { get; } = attributes;
        public string Name { get; } = name;
        public bool Removed { get; set; }
    }

    // Ops whose activation inputs and output are quantized (ORT's QDQ transformer turns them into QLinear*/QGemm kernels).
    static readonly HashSet<string> Computing = ["Conv", "Gemm", "Add", "GlobalAveragePool", "AveragePool", "Concat"];
    // Ops that move or select values without computing new ones: their output keeps their input's scale and zero point,
    // so ORT drops the Q/DQ around them and runs them on uint8 data.
    static readonly HashSet<string> PassThrough = ["MaxPool", "Flatten", "Reshape", "Transpose", "Identity"];

    readonly List<Node> nodes;
    readonly Dictionary<string, (float[] Data, long[] Dims)> floats;
    readonly Dictionary<string, (long[] Data, long[] Dims)> longs;

    QdqGraph(string modelName, List<Node> nodes, Dictionary<string, (float[], long[])> floats, Dictionary<string, (long[], long[])> longs,
        OnnxValueInfo input, OnnxValueInfo output)
    {
        ModelName = modelName;
        this.nodes = nodes;
        this.floats = floats;
        this.longs = longs;
        Input = input;
        Output = output;
    }

    public string ModelName { get; }
    public OnnxValueInfo Input { get; }
    public OnnxValueInfo Output { get; }
    public IReadOnlyList<Node> Nodes => nodes;

    /// <summary>The tensors calibrated on their own range, in graph order.</summary>
    public List<string> Calibrated { get; } = [];

    /// <summary>Quantized tensors whose scale and zero point are another tensor's (the output of MaxPool, Flatten, ...).</summary>
    public Dictionary<string, string> Inherits { get; } = new(StringComparer.Ordinal);

    /// <summary>Exports <paramref name="model"/> (NHWC input, as Predict takes it) and plans its quantization.</summary>
    /// <exception cref="UnsupportedException">The model cannot be exported, has several inputs or outputs, or has no
    /// convolution or dense layer to quantize; the message names the model or the layer.</exception>
    public static QdqGraph FromModel(Model model)
    {
        byte[] bytes;
        try
        {
            bytes = OnnxExport.ToBytes(model, new OnnxExportOptions { ChannelsLast = true });
        }
        catch (ConvKitException e) when (e is not UnsupportedException)
        {
            throw new UnsupportedException($"ConvKit cannot quantize model '{model.Name}': its ONNX export failed: {e.Message}");
        }
        catch (UnsupportedException e)
        {
            throw new UnsupportedException($"ConvKit cannot quantize model '{model.Name}': {e.Message}");
        }
        var folder = Directory.CreateTempSubdirectory("convkit-quantize-");
        try
        {
            var path = Path.Combine(folder.FullName, "fp32.onnx");
            File.WriteAllBytes(path, bytes);
            var onnx = OnnxReader.Read(path);
            var g = onnx.Graph;
            if (g.Inputs.Count != 1 || g.Outputs.Count != 1)
                throw new UnsupportedException($"ConvKit cannot quantize model '{model.Name}': it has {g.Inputs.Count} inputs and {g.Outputs.Count} outputs; the quantizer takes one image input and one output.");
            var floats = new Dictionary<string, (float[], long[])>(StringComparer.Ordinal);
            var longs = new Dictionary<string, (long[], long[])>(StringComparer.Ordinal);
            foreach (var (name, t) in g.Initializers)
            {
                using var v = t.ToTensor();
                if (v.dtype == ScalarType.Float32) floats[name] = (v.data<float>().ToArray(), t.Dims);
                else if (v.dtype == ScalarType.Int64) longs[name] = (v.data<long>().ToArray(), t.Dims);
                else throw new UnsupportedException($"ConvKit cannot quantize model '{model.Name}': initializer '{name}' is {t.DataType}.");
            }
            var list = g.Nodes.Select(n => new Node(n.OpType, [.. n.Inputs], [.. n.Outputs], [.. n.Attributes.Values.Select(a => ToAttribute(model, n, a))], n.Name)).ToList();
            var graph = new QdqGraph(model.Name, list, floats, longs, g.Inputs[0], g.Outputs[0]);
            graph.Simplify();
            graph.SnapshotForCalibration();
            graph.Plan();
            return graph;
        }
        finally
        {
            try { folder.Delete(recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    static OnnxAttribute ToAttribute(Model model, OnnxNode n, OnnxAttributeValue a) => a.Type switch
    {
        1 => OnnxAttribute.Float(a.Name, a.F),
        2 => OnnxAttribute.Int(a.Name, a.I),
        3 => OnnxAttribute.String(a.Name, a.S ?? ""),
        6 => OnnxAttribute.Floats(a.Name, a.Floats),
        7 => OnnxAttribute.Ints(a.Name, a.Ints),
        _ => throw new UnsupportedException($"ConvKit cannot quantize model '{model.Name}': node '{n.Name}' ({n.OpType}) has attribute '{a.Name}' of type {a.Type}."),
    };

    static long[]? IntsOf(Node n, string name) =>
        n.Attributes.FirstOrDefault(a => a.Name == name)?.Value as long[];

    static void SetAttribute(Node n, OnnxAttribute a)
    {
        n.Attributes.RemoveAll(x => x.Name == a.Name);
        n.Attributes.Add(a);
    }

    Dictionary<string, List<Node>> Consumers()
    {
        var c = new Dictionary<string, List<Node>>(StringComparer.Ordinal);
        foreach (var n in nodes.Where(n => !n.Removed))
            foreach (var i in n.Inputs.Where(i => i.Length > 0))
            {
                if (!c.TryGetValue(i, out var l)) c[i] = l = [];
                if (!l.Contains(n)) l.Add(n);
            }
        return c;
    }

    bool IsGraphOutput(string name) => name == Output.Name;

    void Rename(string from, string to)
    {
        foreach (var n in nodes.Where(n => !n.Removed))
            for (int i = 0; i < n.Inputs.Count; i++)
                if (n.Inputs[i] == from) n.Inputs[i] = to;
    }

    void Simplify()
    {
        foreach (var n in nodes.Where(n => n.Op == "Identity" && !IsGraphOutput(n.Outputs[0])))
        {
            n.Removed = true;
            Rename(n.Outputs[0], n.Inputs[0]);
        }
        foreach (var n in nodes.Where(n => n.Op == "Sum" && n.Inputs.Count == 2)) n.Op = "Add";
        var consumers = Consumers();
        foreach (var bn in nodes.Where(n => !n.Removed && n.Op == "BatchNormalization"))
        {
            var conv = nodes.FirstOrDefault(n => !n.Removed && n.Op == "Conv" && n.Outputs[0] == bn.Inputs[0]);
            if (conv is null || consumers[conv.Outputs[0]].Count != 1 || IsGraphOutput(conv.Outputs[0]) || !floats.ContainsKey(conv.Inputs[1])) continue;
            if (bn.Inputs.Skip(1).Any(i => !floats.ContainsKey(i))) continue;
            FoldBatchNorm(conv, bn);
        }
        consumers = Consumers();
        foreach (var pad in nodes.Where(n => !n.Removed && n.Op == "Pad"))
        {
            if (!consumers.TryGetValue(pad.Outputs[0], out var users) || IsGraphOutput(pad.Outputs[0])) continue;
            if (pad.Attributes.FirstOrDefault(a => a.Name == "mode")?.Value is string mode && mode != "constant") continue;
            if (pad.Inputs.Count < 2 || !longs.TryGetValue(pad.Inputs[1], out var p) || p.Data.Length != 8) continue;
            if (pad.Inputs.Count > 2 && pad.Inputs[2].Length > 0 && !(floats.TryGetValue(pad.Inputs[2], out var value) && value.Data.All(v => v == 0))) continue;
            var d = p.Data; // [n, c, h, w] begins, then ends
            if (d[0] != 0 || d[1] != 0 || d[4] != 0 || d[5] != 0 || d.Any(x => x < 0)) continue;
            if (!users.All(u => u.Op == "Conv" && u.Inputs[0] == pad.Outputs[0] && IntsOf(u, "pads") is { Length: 4 })) continue;
            foreach (var u in users)
            {
                var q = IntsOf(u, "pads")!;
                SetAttribute(u, OnnxAttribute.Ints("pads", q[0] + d[2], q[1] + d[3], q[2] + d[6], q[3] + d[7]));
                u.Inputs[0] = pad.Inputs[0];
            }
            pad.Removed = true;
        }
        nodes.RemoveAll(n => n.Removed);
    }

    void FoldBatchNorm(Node conv, Node bn)
    {
        var (w, wDims) = floats[conv.Inputs[1]];
        long outC = wDims[0];
        var gamma = floats[bn.Inputs[1]].Data;
        var beta = floats[bn.Inputs[2]].Data;
        var mean = floats[bn.Inputs[3]].Data;
        var variance = floats[bn.Inputs[4]].Data;
        float eps = bn.Attributes.FirstOrDefault(a => a.Name == "epsilon")?.Value is float e ? e : 1e-5f;
        float[] bias = conv.Inputs.Count > 2 && conv.Inputs[2].Length > 0 ? floats[conv.Inputs[2]].Data : new float[outC];
        var newW = new float[w.Length];
        var newB = new float[outC];
        long per = w.Length / outC;
        for (long c = 0; c < outC; c++)
        {
            double s = gamma[c] / Math.Sqrt(variance[c] + (double)eps);
            for (long k = 0; k < per; k++) newW[c * per + k] = (float)(w[c * per + k] * s);
            newB[c] = (float)((bias[c] - mean[c]) * s + beta[c]);
        }
        string wName = conv.Inputs[1] + "/bn_folded", bName = (conv.Inputs.Count > 2 && conv.Inputs[2].Length > 0 ? conv.Inputs[2] : conv.Outputs[0] + "/bias") + "/bn_folded";
        floats[wName] = (newW, wDims);
        floats[bName] = (newB, [outC]);
        conv.Inputs[1] = wName;
        if (conv.Inputs.Count > 2) conv.Inputs[2] = bName; else conv.Inputs.Add(bName);
        conv.Outputs[0] = bn.Outputs[0];
        bn.Removed = true;
    }

    bool HasWeight(Node n) => n.Inputs.Count > 1 && floats.ContainsKey(n.Inputs[1]) && !floats.ContainsKey(n.Inputs[0])
        && (n.Op != "Gemm" || (n.Attributes.All(a => a.Name != "transA" || a.Value is 0L)));

    void Plan()
    {
        var consumers = Consumers();
        var quantized = new HashSet<string>(StringComparer.Ordinal);
        void Own(string t)
        {
            if (quantized.Add(t)) Calibrated.Add(t);
        }
        // The image input is quantized once; the NHWC->NCHW Transpose then moves uint8 values.
        Own(Input.Name);
        foreach (var n in nodes)
        {
            if (Computing.Contains(n.Op) && (n.Op is not ("Conv" or "Gemm") || HasWeight(n)))
            {
                foreach (var i in n.Op is "Conv" or "Gemm" ? n.Inputs.Take(1) : n.Inputs.Where(i => !floats.ContainsKey(i)))
                    if (i.Length > 0 && !quantized.Contains(i)) Own(i);
                var y = n.Outputs[0];
                var users = consumers.TryGetValue(y, out var u) ? u : [];
                if (users.Count == 1 && users[0].Op == "Relu" && !IsGraphOutput(y))
                {
                    // uint8 with zero point 0 saturates negatives to 0: the quantizer is the ReLU.
                    var relu = users[0];
                    relu.Removed = true;
                    n.Outputs[0] = relu.Outputs[0];
                    Own(relu.Outputs[0]);
                }
                else if (n.Op is "Conv" or "Gemm" && users.All(x => !Computing.Contains(x.Op) && !PassThrough.Contains(x.Op)))
                {
                    // Only float ops (Softmax) or the graph output read it: ORT's QDQ Gemm/Conv may keep a float output.
                }
                else Own(y);
            }
            else if (PassThrough.Contains(n.Op) && quantized.Contains(n.Inputs[0]))
            {
                var y = n.Outputs[0];
                if (quantized.Add(y)) Inherits[y] = Inherits.TryGetValue(n.Inputs[0], out var root) ? root : n.Inputs[0];
            }
        }
        nodes.RemoveAll(n => n.Removed);
        if (!nodes.Any(n => n.Op is "Conv" or "Gemm" && HasWeight(n)))
            throw new UnsupportedException($"ConvKit cannot quantize model '{ModelName}': it has no convolution or dense layer with constant weights to quantize.");
    }

    /// <summary>Whether <paramref name="t"/> gets a Q/DQ pair (its own range or one inherited through pass-through ops).</summary>
    bool IsQuantized(string t) => Calibrated.Contains(t) || Inherits.ContainsKey(t);

    string Root(string t) => Inherits.TryGetValue(t, out var r) ? r : t;

    static OnnxDim[] Dims(OnnxValueInfo v) => v.Dims is null ? [] : [.. v.Dims.Select(d => d < 0 ? (OnnxDim)"N" : d)];

    /// <summary>The FP32 graph with every tensor in <see cref="Calibrated"/> as a graph output (calibration runs it).</summary>
    public byte[] CalibrationGraph(int opset)
    {
        using var b = new OnnxGraphBuilder(ModelName + "_calibration", opset);
        b.AddInput(Input.Name, Dims(Input));
        var used = new HashSet<string>(CalibrationNodes().SelectMany(n => n.Inputs), StringComparer.Ordinal);
        foreach (var (name, (data, dims)) in floats) if (used.Contains(name)) b.AddInitializer(name, data, dims);
        foreach (var (name, (data, dims)) in longs) if (used.Contains(name)) b.AddInitializer(name, data, dims);
        // The calibration graph keeps the ReLUs the plan folds into quantizers: their outputs are what is calibrated.
        foreach (var n in CalibrationNodes()) b.AddNode(n.Op, n.Inputs, n.Outputs, n.Attributes, name: n.Name);
        b.AddOutput(Output.Name, Dims(Output));
        foreach (var t in Calibrated.Where(t => t != Output.Name && t != Input.Name)) b.AddOutputWithoutShape(t);
        return b.ToBytes();
    }

    List<Node>? calibrationNodes;

    IEnumerable<Node> CalibrationNodes() => calibrationNodes!;

    /// <summary>Keeps the simplified FP32 graph (before the plan drops the ReLUs) for <see cref="CalibrationGraph"/>.</summary>
    void SnapshotForCalibration() =>
        calibrationNodes = [.. nodes.Select(n => new Node(n.Op, [.. n.Inputs], [.. n.Outputs], [.. n.Attributes], n.Name))];

    /// <summary>
    /// The QDQ graph: uint8 asymmetric activations from <paramref name="ranges"/>, int8 symmetric per-channel weights,
    /// int32 biases at scale input x weight, opset <paramref name="opset"/> (13 or later: per-axis DequantizeLinear).
    /// </summary>
    public OnnxGraphBuilder QdqBuilder(IReadOnlyDictionary<string, (float Min, float Max)> ranges, int opset)
    {
        var b = new OnnxGraphBuilder(ModelName + "_int8", opset);
        try
        {
            b.AddInput(Input.Name, Dims(Input));
            var qp = new Dictionary<string, (float Scale, byte ZeroPoint)>(StringComparer.Ordinal);
            foreach (var t in Calibrated)
            {
                var (lo, hi) = ranges[t];
                var p = ActivationParameters(lo, hi);
                qp[t] = p;
                b.AddInitializer(t + "/scale", [p.Scale]);
                b.AddInitializerBytes(t + "/zero_point", OnnxDataType.UInt8, [], [p.ZeroPoint]);
            }
            var used = new HashSet<string>(nodes.SelectMany(n => n.Inputs), StringComparer.Ordinal);
            var weightOf = new Dictionary<string, Node>(StringComparer.Ordinal);
            foreach (var n in nodes.Where(n => n.Op is "Conv" or "Gemm" && HasWeight(n))) weightOf[n.Inputs[1]] = n;
            var done = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (name, (data, dims)) in floats)
                if (used.Contains(name) && !weightOf.ContainsKey(name) && !IsBiasOfQuantized(name)) b.AddInitializer(name, data, dims);
            foreach (var (name, (data, dims)) in longs)
                if (used.Contains(name)) b.AddInitializer(name, data, dims);

            void QuantizeAfter(string t)
            {
                if (!IsQuantized(t) || !done.Add(t)) return;
                var root = Root(t);
                b.AddNode("QuantizeLinear", [t, root + "/scale", root + "/zero_point"], [t + "/q"], name: t + "/quantize");
                b.AddNode("DequantizeLinear", [t + "/q", root + "/scale", root + "/zero_point"], [t + "/dq"], name: t + "/dequantize");
            }
            string Read(string t) => IsQuantized(t) ? t + "/dq" : t;

            QuantizeAfter(Input.Name);
            foreach (var n in nodes)
            {
                var inputs = n.Inputs.Select(Read).ToList();
                if (n.Op is "Conv" or "Gemm" && HasWeight(n) && IsQuantized(n.Inputs[0]))
                {
                    var (w, wDims) = floats[n.Inputs[1]];
                    var (wq, wScale) = QuantizeWeights(w, wDims[0]);
                    string wName = n.Inputs[1] + "/int8";
                    b.AddInitializerBytes(wName, OnnxDataType.Int8, wDims, wq);
                    b.AddInitializer(wName + "/scale", wScale, wDims[0]);
                    b.AddInitializerBytes(wName + "/zero_point", OnnxDataType.Int8, [wDims[0]], new byte[wDims[0]]);
                    b.AddNode("DequantizeLinear", [wName, wName + "/scale", wName + "/zero_point"], [wName + "/dq"],
                        [OnnxAttribute.Int("axis", 0)], name: wName + "/dequantize");
                    inputs[1] = wName + "/dq";
                    if (n.Inputs.Count > 2 && n.Inputs[2].Length > 0)
                    {
                        float xScale = qp[Root(n.Inputs[0])].Scale;
                        var bias = floats[n.Inputs[2]].Data;
                        var bScale = wScale.Select(s => s * xScale).ToArray();
                        var bq = new byte[bias.Length * 4];
                        for (int c = 0; c < bias.Length; c++)
                            BitConverter.TryWriteBytes(bq.AsSpan(c * 4), (int)Math.Clamp(Math.Round(bias[c] / (double)bScale[c]), int.MinValue, int.MaxValue));
                        string bName = n.Inputs[2] + "/int32";
                        if (!done.Contains(bName))
                        {
                            b.AddInitializerBytes(bName, OnnxDataType.Int32, [bias.Length], bq);
                            b.AddInitializer(bName + "/scale", bScale, bias.Length);
                            b.AddInitializerBytes(bName + "/zero_point", OnnxDataType.Int32, [bias.Length], new byte[bias.Length * 4]);
                            b.AddNode("DequantizeLinear", [bName, bName + "/scale", bName + "/zero_point"], [bName + "/dq"],
                                [OnnxAttribute.Int("axis", 0)], name: bName + "/dequantize");
                            done.Add(bName);
                        }
                        inputs[2] = bName + "/dq";
                    }
                }
                else if (n.Op is "Conv" or "Gemm" && HasWeight(n))
                {
                    // Input not quantized (never the case in a planned graph): keep float weights.
                    b.AddInitializer(n.Inputs[1], floats[n.Inputs[1]].Data, floats[n.Inputs[1]].Dims);
                    if (n.Inputs.Count > 2 && n.Inputs[2].Length > 0 && !b.IsDefined(n.Inputs[2]))
                        b.AddInitializer(n.Inputs[2], floats[n.Inputs[2]].Data, floats[n.Inputs[2]].Dims);
                }
                b.AddNode(n.Op, inputs, n.Outputs, n.Attributes, name: n.Name);
                foreach (var o in n.Outputs) QuantizeAfter(o);
            }
            b.AddOutput(Output.Name, Dims(Output));
            return b;
        }
        catch
        {
            b.Dispose();
            throw;
        }
    }

    bool IsBiasOfQuantized(string name) =>
        nodes.Any(n => n.Op is "Conv" or "Gemm" && HasWeight(n) && IsQuantized(n.Inputs[0]) && n.Inputs.Count > 2 && n.Inputs[2] == name);

    /// <summary>uint8 asymmetric parameters of the range [lo, hi] widened to hold 0 (zero padding must be exact).</summary>
    internal static (float Scale, byte ZeroPoint) ActivationParameters(float lo, float hi)
    {
        double min = Math.Min(0, lo), max = Math.Max(0, hi);
        if (max - min < 1e-12) return (1f, 0);
        float scale = (float)((max - min) / 255);
        byte zp = (byte)Math.Clamp(Math.Round(-min / scale), 0, 255);
        return (scale, zp);
    }

    /// <summary>int8 symmetric per-output-channel weights: scale = max |w| / 127 per channel (1 for an all-zero one).</summary>
    internal static (byte[] Values, float[] Scales) QuantizeWeights(float[] w, long channels)
    {
        long per = w.Length / channels;
        var q = new byte[w.Length];
        var scales = new float[channels];
        for (long c = 0; c < channels; c++)
        {
            float maxAbs = 0;
            for (long k = 0; k < per; k++) maxAbs = Math.Max(maxAbs, Math.Abs(w[c * per + k]));
            float s = maxAbs > 0 ? maxAbs / 127f : 1f;
            scales[c] = s;
            for (long k = 0; k < per; k++)
                q[c * per + k] = unchecked((byte)(sbyte)Math.Clamp(Math.Round(w[c * per + k] / s), -127, 127));
        }
        return (q, scales);
    }
}
