using TorchSharp;
using System.Text;
using ConvKit.Layers;
using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Formats.Onnx;

/// <summary>Options of <see cref="OnnxImport"/>.</summary>
public sealed record OnnxImportOptions
{
    /// <summary>
    /// The sample shape to build the model for, in Keras' order (height, width, channels) for images: overrides the
    /// file's fixed input size where the graph allows it. Null: the file's own (the batch dimension is always free).
    /// </summary>
    public Shape? InputShape { get; init; }

    /// <summary>
    /// Turn an AveragePool/MaxPool whose window covers its whole (unpadded) input into global pooling, so that the model
    /// takes other input sizes (the 7x7 average pooling that ends a ResNet fixed at 224x224).
    /// </summary>
    public bool GlobalPoolingForFullWindow { get; init; }

    /// <summary>The model's name; null: derived from the file name.</summary>
    public string? Name { get; init; }

    /// <summary>Whether initializers that feed arithmetic (a mean image, a scale) become trainable weights. Default: false.</summary>
    public bool TrainableConstants { get; init; }
}

/// <summary>What <see cref="OnnxImport.Import"/> made.</summary>
/// <param name="Model">The functional model (ONNX's NCHW semantics: Predict and Fit take NHWC, Apply takes NCHW).</param>
/// <param name="WeightNames">Each imported initializer's name and the weight it became, "layer/weight".</param>
/// <param name="Warnings">Things the caller should know (a graph whose batch normalization looks folded).</param>
/// <param name="Opset">The default-domain opset of the file.</param>
/// <param name="Producer">The producer named in the file.</param>
public sealed record OnnxImportResult(Model Model, IReadOnlyDictionary<string, string> WeightNames, IReadOnlyList<string> Warnings, long Opset, string Producer)
{
    /// <summary>The layout the imported model computes in: ONNX's, channels-first. Predict and Fit still take
    /// channels-last batches (converted once at the boundary); <c>Apply(x)</c> takes (N, C, H, W).</summary>
    public DataFormat DataFormat => DataFormat.ChannelsFirst;
}

/// <summary>
/// Imports an ONNX CNN (opsets 7 to 17) as a trainable ConvKit functional <see cref="Model"/>: each node becomes a
/// Keras-style layer where one fits (Conv2D, BatchNormalization, Dense, pooling, activations, Add, Concatenate, ...),
/// shape subgraphs (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) are folded to constants, and initializers become
/// the layers' weights. The model keeps ONNX's NCHW semantics exactly (its Flatten and Reshape read channels first);
/// Predict and Fit take NHWC batches as for every ConvKit model.
/// </summary>
public static class OnnxImport
{
    /// <summary>Imports the model at <paramref name="path"/>.</summary>
    /// <exception cref="OnnxImportException">The file is corrupt, hostile, or uses what ConvKit does not import (see the derived types).</exception>
    public static Model Load(string path, OnnxImportOptions? options = null) => Import(path, options).Model;

    /// <summary>Imports the model at <paramref name="path"/>, with the map from initializer names to weights and warnings.</summary>
    /// <exception cref="OnnxImportException">The file is corrupt, hostile, or uses what ConvKit does not import (see the derived types).</exception>
    public static OnnxImportResult Import(string path, OnnxImportOptions? options = null)
    {
        var model = OnnxReader.Read(path);
        var unsupported = OnnxOpSupport.Unsupported(model.Graph);
        if (unsupported.Count > 0) throw new OnnxUnsupportedOperatorException(path, unsupported);
        if (model.Opset is < 7 or > 17)
            throw new OnnxImportException(path, $"opset {model.Opset}: ConvKit imports opsets 7 to 17.");
        return new Builder(model, options ?? new OnnxImportOptions()).Build();
    }

    /// <summary>The value behind an ONNX name: a symbolic tensor of the model, or a constant folded at import.</summary>
    sealed class Value
    {
        public SymbolicTensor? Symbolic;
        public Tensor? Constant;

        /// <summary>ONNX dimensions of a symbolic value (batch first, -1 when free).</summary>
        public long[] Dims => Symbolic is { } s ? OnnxDims(s.Shape) : Constant!.shape;
    }

    static long[] OnnxDims(Shape s) => s.Rank == 3 ? [-1, s[2], s[0], s[1]] : [-1, .. s.ToArray().Select(d => (long)d)];

    sealed class Builder(OnnxModel model, OnnxImportOptions options)
    {
        readonly Dictionary<string, Value> values = new(StringComparer.Ordinal);
        readonly Dictionary<string, string> weightNames = new(StringComparer.Ordinal);
        readonly List<string> warnings = [];
        readonly HashSet<string> layerNames = new(StringComparer.Ordinal);
        readonly List<Tensor> constants = [];
        long batch = 1;
        long[] fileSize = [0, 0], inputSize = [0, 0];
        OnnxNode node = null!;

        string File => model.Path;

        OnnxNodeException Error(string problem) => new(File, node.OpType, node.Name, problem);

        public OnnxImportResult Build()
        {
            var g = model.Graph;
            if (g.Inputs.Count != 1)
                throw new OnnxImportException(File, $"the graph has {g.Inputs.Count} inputs ({string.Join(", ", g.Inputs.Select(i => $"'{i.Name}'"))}); ConvKit imports single-input graphs.");
            var inputInfo = g.Inputs[0];
            if (inputInfo.ElementType is not (OnnxElementType.Float or OnnxElementType.Undefined))
                throw new OnnxImportException(File, $"input '{inputInfo.Name}' is {inputInfo.ElementType}; ConvKit imports float inputs.");
            var dims = inputInfo.Dims ?? throw new OnnxImportException(File, $"input '{inputInfo.Name}' has no declared shape.");
            if (dims.Length < 2) throw new OnnxImportException(File, $"input '{inputInfo.Name}' has shape [{string.Join(", ", dims)}]; a batch axis and sample axes are needed.");
            if (dims[0] > 0) batch = dims[0];
            Shape sample = options.InputShape ?? (dims.Length == 4 ? new Shape((int)dims[2], (int)dims[3], (int)dims[1]) : new Shape(dims[1..]));
            if (options.InputShape is { } forced && forced.Rank != dims.Length - 1)
                throw new OnnxImportException(File, $"InputShape {forced} has rank {forced.Rank}; input '{inputInfo.Name}' has sample rank {dims.Length - 1}.");
            if (dims.Length == 4 && dims[1] > 0 && sample[2] != dims[1])
                throw new OnnxImportException(File, $"InputShape {sample} has {sample[2]} channels; input '{inputInfo.Name}' has {dims[1]}.");
            if (dims.Length == 4)
            {
                fileSize = [dims[2], dims[3]];
                inputSize = [sample[0], sample[1]];
            }
            var input = new Input(sample, Unique(inputInfo.Name));
            values[inputInfo.Name] = new Value { Symbolic = input };

            int convs = 0, norms = 0;
            try
            {
                foreach (var n in g.Nodes)
                {
                    node = n;
                    if (n.OpType == "Conv") convs++;
                    if (n.OpType == "BatchNormalization") norms++;
                    try
                    {
                        Lower();
                    }
                    catch (ConvKitException e) when (e is not OnnxImportException)
                    {
                        throw new OnnxNodeException(File, n.OpType, n.Name, e.Message);
                    }
                }
                var outputs = new List<SymbolicTensor>();
                foreach (var o in g.Outputs)
                {
                    var v = Get(o.Name);
                    if (v.Symbolic is null) throw new OnnxImportException(File, $"graph output '{o.Name}' is a constant; it does not depend on the input.");
                    outputs.Add(v.Symbolic);
                }
                if (convs > 2 && norms == 0 && model.Producer.StartsWith("pytorch", StringComparison.OrdinalIgnoreCase))
                    warnings.Add($"'{Path.GetFileName(File)}' has {convs} convolutions and no BatchNormalization: PyTorch's eval-mode export folds batch normalization into the convolutions, so fine-tuning sees none. Export with torch.onnx.export(..., training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False) to keep them.");
                var name = options.Name ?? Sanitize(Path.GetFileNameWithoutExtension(File));
                var result = new Model(input, outputs.Count == 1 ? outputs[0] : throw new OnnxImportException(File, $"the graph has {outputs.Count} outputs; ConvKit imports single-output graphs."), name);
                result.eval();
                return new OnnxImportResult(result, weightNames, warnings, model.Opset, model.Producer);
            }
            finally
            {
                foreach (var c in constants) c.Dispose();
            }
        }

        // ------------------------------------------------------------------ values

        Value Get(string name)
        {
            if (values.TryGetValue(name, out var v)) return v;
            if (model.Graph.Initializers.TryGetValue(name, out var t))
            {
                v = new Value { Constant = Keep(t.ToTensor()) };
                values[name] = v;
                return v;
            }
            throw new OnnxNodeException(File, node.OpType, node.Name, $"input '{name}' is not available (an optional output ConvKit does not produce, such as a pooling's indices).");
        }

        Tensor Keep(Tensor t)
        {
            constants.Add(t);
            return t;
        }

        Value In(int i) => i < node.Inputs.Count && node.Inputs[i].Length > 0 ? Get(node.Inputs[i]) : throw Error($"input {i} is missing.");

        bool Has(int i) => i < node.Inputs.Count && node.Inputs[i].Length > 0;

        Tensor ConstIn(int i, string what)
        {
            var v = In(i);
            return v.Constant ?? throw Error($"{what} (input {i}, '{node.Inputs[i]}') must be a constant; it depends on the input image.");
        }

        SymbolicTensor SymIn(int i)
        {
            var v = In(i);
            return v.Symbolic ?? throw Error($"input {i} ('{node.Inputs[i]}') is a constant where ConvKit expects the data.");
        }

        long[] LongsOf(Tensor t)
        {
            using var l = t.to(int64).flatten();
            return l.data<long>().ToArray();
        }

        void Set(int output, SymbolicTensor s) => values[node.Outputs[output]] = new Value { Symbolic = s };

        void SetConst(int output, Tensor t) => values[node.Outputs[output]] = new Value { Constant = Keep(t) };

        string Unique(string raw)
        {
            var s = Sanitize(raw);
            var name = s;
            for (int i = 1; !layerNames.Add(name); i++) name = $"{s}_{i}";
            return name;
        }

        static string Sanitize(string raw)
        {
            var sb = new StringBuilder();
            foreach (var c in raw) sb.Append(char.IsAsciiLetterOrDigit(c) || c == '_' || c == '-' ? c : '_');
            var s = sb.ToString().Trim('_');
            return s.Length == 0 ? "node" : s;
        }

        string LayerName() => Unique(node.Name);

        SymbolicTensor Apply(Layer layer, params SymbolicTensor[] inputs) => inputs.Length == 1 ? layer.Apply(inputs[0]) : layer.Apply(inputs);

        void Copy(Layer layer, string weight, Tensor? target, int input, Func<Tensor, Tensor>? transform = null)
        {
            if (target is null || !Has(input)) return;
            var source = ConstIn(input, weight);
            using var t = transform is null ? source.alias() : transform(source);
            if (!t.shape.SequenceEqual(target.shape))
                throw Error($"weight '{node.Inputs[input]}' has shape [{string.Join(", ", t.shape)}]; {layer.Describe} needs [{string.Join(", ", target.shape)}] for '{weight}'.");
            using (no_grad()) target.copy_(t);
            weightNames[node.Inputs[input]] = $"{layer.Name}/{weight}";
        }

        // ------------------------------------------------------------------ lowering

        void Lower()
        {
            var op = node.OpType;
            // Folding: every data input is a constant (or a Shape of a known size).
            if (op != "Constant" && op != "Shape" && node.Inputs.Where(i => i.Length > 0).All(i => Get(i).Constant is not null))
            {
                for (int o = 0; o < node.Outputs.Count; o++) if (o == 0) SetConst(0, Fold());
                return;
            }
            switch (op)
            {
                case "Constant": SetConst(0, ConstantValue()); break;
                case "Shape":
                {
                    var d = In(0).Dims.ToArray();
                    if (In(0).Symbolic is not null) d[0] = batch;
                    if (d.Any(x => x < 0)) throw Error($"the shape [{string.Join(", ", d)}] is not fully known; give InputShape.");
                    SetConst(0, tensor(d));
                    break;
                }
                case "Identity": values[node.Outputs[0]] = In(0); break;
                case "Dropout":
                {
                    double ratio = Has(1) ? ConstIn(1, "ratio").item<float>() : node.Float("ratio", 0.5f);
                    Set(0, Apply(new Dropout(ratio, LayerName()), SymIn(0)));
                    break;
                }
                case "Conv": Conv(); break;
                case "ConvTranspose": ConvTranspose(); break;
                case "BatchNormalization": BatchNorm(); break;
                case "Gemm": Gemm(); break;
                case "MatMul": MatMul(); break;
                case "Relu": Set(0, Apply(new ReLU(LayerName()), SymIn(0))); break;
                case "LeakyRelu": Set(0, Apply(new LeakyReLU(node.Float("alpha", 0.01f), LayerName()), SymIn(0))); break;
                case "Sigmoid": Set(0, Apply(new Activation(Activations.Sigmoid, LayerName()), SymIn(0))); break;
                case "Tanh": Set(0, Apply(new Activation(Activations.Tanh, LayerName()), SymIn(0))); break;
                case "HardSigmoid": HardSigmoid(); break;
                case "HardSwish": Set(0, Apply(new Activation(Activations.HardSwish, LayerName()), SymIn(0))); break;
                case "Clip": Clip(); break;
                case "Softmax": Softmax(); break;
                case "MaxPool" or "AveragePool": Pool(); break;
                case "GlobalAveragePool": Set(0, Apply(new GlobalAveragePooling2D(keepDims: true, name: LayerName()), Image(0))); break;
                case "GlobalMaxPool": Set(0, Apply(new GlobalMaxPooling2D(keepDims: true, name: LayerName()), Image(0))); break;
                case "ReduceMean": ReduceMean(); break;
                case "Add" or "Sub" or "Mul" or "Div": Binary(); break;
                case "Sum": Sum(); break;
                case "Concat": Concat(); break;
                case "Flatten": FlattenOp(); break;
                case "Reshape": ReshapeTo(ShapeForReshape()); break;
                case "Squeeze" or "Unsqueeze": ReshapeTo(SqueezedShape()); break;
                case "Transpose": TransposeOp(); break;
                case "Pad": PadOp(); break;
                case "Slice": SliceOp(); break;
                case "Split": Split(); break;
                case "Cast": values[node.Outputs[0]] = In(0); break; // float stays float; integer casts of data are not CNN graphs
                default: throw Error("cannot be applied to data that depends on the input here (only to constants).");
            }
        }

        /// <summary>
        /// The size <paramref name="n"/> along height (0) or width (1) had at the file's own input size: sizes scale with
        /// the image (a ResNet's 7x7 at 224 is 5x5 at 160).
        /// </summary>
        long AtFileSize(int n, int axis)
        {
            long file = fileSize[axis], now = inputSize[axis];
            return file <= 0 || now <= 0 || file == now ? n : (long)Math.Round((double)n * file / now);
        }

        SymbolicTensor Image(int i)
        {
            var s = SymIn(i);
            if (s.Shape.Rank != 3) throw Error($"expects an image (N, C, H, W); received [{string.Join(", ", OnnxDims(s.Shape))}].");
            return s;
        }

        Tensor ConstantValue()
        {
            if (node.Attributes.TryGetValue("value", out var a) && a.T is { } t) return t.ToTensor();
            if (node.Attributes.TryGetValue("value_float", out a)) return tensor(a.F);
            if (node.Attributes.TryGetValue("value_floats", out a)) return tensor(a.Floats);
            if (node.Attributes.TryGetValue("value_int", out a)) return tensor(a.I);
            if (node.Attributes.TryGetValue("value_ints", out a)) return tensor(a.Ints);
            throw Error("has no value attribute ConvKit reads (value, value_float(s), value_int(s)).");
        }

        void Conv()
        {
            var x = Image(0);
            var w = ConstIn(1, "the kernel W");
            if (w.dim() != 4) throw Error($"only 2-D convolutions are imported; W has shape [{string.Join(", ", w.shape)}].");
            int groups = (int)node.Int("group", 1);
            var k = node.Ints("kernel_shape") ?? [w.shape[2], w.shape[3]];
            var s = node.Ints("strides") ?? [1, 1];
            var d = node.Ints("dilations") ?? [1, 1];
            var (pads, same) = WindowPads(x.Shape, k, s, d, allowSame: true);
            if (pads.Any(p => p != 0))
                x = Apply(new ZeroPadding2D(((int)pads[0], (int)pads[2]), ((int)pads[1], (int)pads[3]), Unique(node.Name + "_pad")), x);
            var conv = new Conv2D((int)w.shape[0], ((int)k[0], (int)k[1]), ((int)s[0], (int)s[1]), same ? Padding.Same : Padding.Valid,
                ((int)d[0], (int)d[1]), groups, useBias: Has(2), name: LayerName());
            var y = Apply(conv, x);
            Copy(conv, "kernel", conv.Kernel, 1);
            Copy(conv, "bias", conv.Bias, 2);
            Set(0, y);
        }

        /// <summary>
        /// ONNX ConvTranspose: the full result (n - 1)·s + k' cropped by pads (begin, end), output_padding cells added
        /// at the end, or sized by output_shape / auto_pad. Keras' 'same'/'valid' with output_padding when that is the
        /// same crop; else a 'valid' Conv2DTranspose with the crop as Slice / ZeroPadding2D layers.
        /// </summary>
        void ConvTranspose()
        {
            var x = Image(0);
            var w = ConstIn(1, "the kernel W");
            if (w.dim() != 4) throw Error($"only 2-D transposed convolutions are imported; W has shape [{string.Join(", ", w.shape)}].");
            int groups = (int)node.Int("group", 1);
            int filters = (int)w.shape[1] * groups;
            var k = node.Ints("kernel_shape") ?? [w.shape[2], w.shape[3]];
            var s = node.Ints("strides") ?? [1, 1];
            var d = node.Ints("dilations") ?? [1, 1];
            var op = node.Ints("output_padding") ?? [0, 0];
            var pads = node.Ints("pads") ?? [0, 0, 0, 0];
            var outShape = node.Ints("output_shape");
            var autoPad = node.String("auto_pad", "NOTSET");
            if (k.Length != 2 || s.Length != 2 || d.Length != 2 || op.Length != 2 || pads.Length != 4 || outShape is { Length: not 2 })
                throw Error("only 2-D transposed convolutions are imported.");
            if (pads.Any(p => p < 0) || op.Any(p => p < 0)) throw Error($"negative pads [{string.Join(", ", pads)}] or output_padding [{string.Join(", ", op)}] are not imported.");
            // Crop (before, after) per axis from the full (n - 1)·s + k'; after < 0 adds zero cells.
            var crop = new (int Before, int After)[2];
            for (int a = 0; a < 2; a++)
            {
                long full = (long)(k[a] - 1) * d[a] + 1;
                if (outShape is not null || autoPad is "SAME_UPPER" or "SAME_LOWER")
                {
                    int n = x.Shape[a];
                    if (n < 0) throw Error($"output_shape / auto_pad={autoPad} needs a known input size.");
                    long length = outShape is not null ? outShape[a] : (long)n * s[a];
                    long total = (long)(n - 1) * s[a] + full + op[a] - length;
                    long half = total / 2;
                    // ONNX: SAME_UPPER puts the odd cell at the end; SAME_LOWER and an output_shape without auto_pad at the beginning.
                    long before = autoPad == "SAME_UPPER" ? half : total - half;
                    crop[a] = ((int)before, (int)(total - before - op[a]));
                    if (total < 0) crop[a] = (0, (int)(total - op[a]));
                }
                else if (autoPad is "NOTSET" or "VALID")
                    crop[a] = autoPad == "VALID" ? (0, (int)-op[a]) : ((int)pads[a], (int)(pads[a + 2] - op[a]));
                else throw Error($"auto_pad='{autoPad}' is not an ONNX value.");
            }
            // Keras' own arithmetic when it is this crop.
            Conv2DTranspose? layer = null;
            foreach (var padding in new[] { Padding.Valid, Padding.Same })
                foreach (var outPad in Enumerable.Range(-1, (int)Math.Max(Math.Max(s[0], s[1]), Math.Max(d[0], d[1])) + 1))
                {
                    if (layer is not null) break;
                    Size2? o = outPad < 0 ? null : new Size2(outPad, outPad);
                    if (o is { } oo && (oo.Height >= Math.Max(s[0], d[0]) || oo.Width >= Math.Max(s[1], d[1]))) continue;
                    var c0 = ConvArithmetic.TransposedCrop((int)k[0], (int)s[0], padding, o?.Height, (int)d[0]);
                    var c1 = ConvArithmetic.TransposedCrop((int)k[1], (int)s[1], padding, o?.Width, (int)d[1]);
                    if (c0 == crop[0] && c1 == crop[1])
                        layer = new Conv2DTranspose(filters, ((int)k[0], (int)k[1]), ((int)s[0], (int)s[1]), padding, o, ((int)d[0], (int)d[1]),
                            groups, useBias: Has(2), name: LayerName());
                }
            SymbolicTensor y;
            if (layer is not null) y = Apply(layer, x);
            else
            {
                // 'valid' with output padding 0 is the full result; crop and pad it explicitly.
                layer = new Conv2DTranspose(filters, ((int)k[0], (int)k[1]), ((int)s[0], (int)s[1]), Padding.Valid, new Size2(0, 0),
                    ((int)d[0], (int)d[1]), groups, useBias: Has(2), name: LayerName());
                if (Has(2) && crop.Any(c => c.After < 0))
                    throw Error($"output_padding [{string.Join(", ", op)}] with pads [{string.Join(", ", pads)}] that Keras' 'same'/'valid' arithmetic cannot express is imported without a bias only (the added cells would miss the bias).");
                y = Apply(layer, x);
                for (int a = 0; a < 2; a++)
                {
                    var (before, after) = crop[a];
                    int length = y.Shape[a];
                    if (before > 0 || after > 0)
                    {
                        if (length < 0) throw Error("cropping a transposed convolution needs a known input size.");
                        y = Apply(new Slice(a + 2, before, length - before - Math.Max(after, 0), Unique(node.Name + (a == 0 ? "_crop_h" : "_crop_w"))), y);
                    }
                    if (after < 0)
                        y = Apply(a == 0 ? new ZeroPadding2D((0, -after), (0, 0), Unique(node.Name + "_pad_h")) : new ZeroPadding2D((0, 0), (0, -after), Unique(node.Name + "_pad_w")), y);
                }
            }
            Copy(layer, "kernel", layer.Kernel, 1);
            Copy(layer, "bias", layer.Bias, 2);
            Set(0, y);
        }

        /// <summary>Padding of a window op as (top, left, bottom, right), or Keras 'same' when it is exactly that.</summary>
        (long[] Pads, bool Same) WindowPads(Shape input, long[] k, long[] s, long[] d, bool allowSame)
        {
            if (k.Length != 2 || s.Length != 2 || d.Length != 2) throw Error("only 2-D windows are imported.");
            var autoPad = node.String("auto_pad", "NOTSET");
            long[] pads = node.Ints("pads") ?? [0, 0, 0, 0];
            if (pads.Length != 4) throw Error($"pads [{string.Join(", ", pads)}] are not 2-D.");
            if (pads.Any(p => p < 0)) throw Error($"negative pads [{string.Join(", ", pads)}] are not imported.");
            if (autoPad is "VALID") return ([0, 0, 0, 0], false);
            if (autoPad is "SAME_UPPER" or "SAME_LOWER")
            {
                if (autoPad == "SAME_UPPER" && allowSame) return ([0, 0, 0, 0], true);
                if (input[0] < 0 || input[1] < 0) throw Error($"auto_pad={autoPad} needs a known input size.");
                var (hb, ha) = ConvArithmetic.SamePadding(input[0], (int)k[0], (int)s[0], (int)d[0]);
                var (wb, wa) = ConvArithmetic.SamePadding(input[1], (int)k[1], (int)s[1], (int)d[1]);
                return autoPad == "SAME_UPPER" ? ([hb, wb, ha, wa], false) : ([ha, wa, hb, wb], false);
            }
            if (autoPad != "NOTSET") throw Error($"auto_pad='{autoPad}' is not an ONNX value.");
            if (pads.All(p => p == 0)) return (pads, false);
            if (allowSame && input[0] > 0 && input[1] > 0)
            {
                var (hb, ha) = ConvArithmetic.SamePadding(input[0], (int)k[0], (int)s[0], (int)d[0]);
                var (wb, wa) = ConvArithmetic.SamePadding(input[1], (int)k[1], (int)s[1], (int)d[1]);
                if (pads[0] == hb && pads[2] == ha && pads[1] == wb && pads[3] == wa) return ([0, 0, 0, 0], true);
            }
            return (pads, false);
        }

        void BatchNorm()
        {
            var x = SymIn(0);
            if (node.Outputs.Count(o => o.Length > 0) > 1 && model.Opset < 14)
            {
                // Training-mode exports list the running statistics as extra outputs; only the first is data.
            }
            float eps = node.Float("epsilon", 1e-5f);
            float momentum = node.Float("momentum", 0.9f);
            var bn = new BatchNormalization(axis: -1, momentum: momentum, epsilon: eps, name: LayerName());
            var y = Apply(bn, x);
            Copy(bn, "gamma", bn.Gamma, 1);
            Copy(bn, "beta", bn.Beta, 2);
            Copy(bn, "moving_mean", bn.MovingMean, 3);
            Copy(bn, "moving_variance", bn.MovingVariance, 4);
            Set(0, y);
        }

        void Gemm()
        {
            var a = SymIn(0);
            if (a.Shape.Rank != 1) throw Error($"A must be a matrix (N, K); received [{string.Join(", ", OnnxDims(a.Shape))}].");
            if (node.Int("transA", 0) != 0) throw Error("transA=1 (the batch along columns) is not imported.");
            var b = ConstIn(1, "B");
            bool transB = node.Int("transB", 0) != 0;
            float alpha = node.Float("alpha", 1f), beta = node.Float("beta", 1f);
            int units = (int)(transB ? b.shape[0] : b.shape[1]);
            var dense = new Dense(units, useBias: Has(2), name: LayerName());
            var y = Apply(dense, a);
            Copy(dense, "kernel", dense.Kernel, 1, t =>
            {
                using var k = transB ? t.alias() : t.t();
                using var sa = ((double)alpha).ToScalar();
                return k.mul(sa);
            });
            Copy(dense, "bias", dense.Bias, 2, t =>
            {
                using var sb = ((double)beta).ToScalar();
                using var flat = t.reshape(-1);
                if (flat.shape[0] == 1 && units > 1) { using var e = flat.expand(units); return e.mul(sb); }
                return flat.mul(sb);
            });
            Set(0, y);
        }

        void MatMul()
        {
            if (In(0).Constant is not null || In(1).Symbolic is { Shape.Rank: 3 }) { AveragingMatMul(); return; }
            var a = SymIn(0);
            var b = ConstIn(1, "B");
            if (a.Shape.Rank == 3 && b.dim() == 2) { AveragingMatMul(); return; }
            if (a.Shape.Rank != 1 || b.dim() != 2) throw Error($"only (N, K) x (K, M) with a constant (K, M) is imported; received A [{string.Join(", ", OnnxDims(a.Shape))}], B [{string.Join(", ", b.shape)}].");
            var dense = new Dense((int)b.shape[1], useBias: false, name: LayerName());
            var y = Apply(dense, a);
            Copy(dense, "kernel", dense.Kernel, 1, t => t.t().contiguous());
            Set(0, y);
        }

        /// <summary>
        /// An image times a constant matrix along one spatial axis: ConvKit's own lowering of adaptive average pooling
        /// (x · A_wᵀ over the width, A_h · x over the height), which becomes an AdaptiveAveragePooling2D of that axis when
        /// the matrix is exactly the averaging one; other products of images are not CNN layers ConvKit has.
        /// </summary>
        void AveragingMatMul()
        {
            bool overWidth = In(0).Symbolic is not null;
            var x = Image(overWidth ? 0 : 1);
            var m = ConstIn(overWidth ? 1 : 0, "the averaging matrix");
            int axis = overWidth ? 1 : 0, n = x.Shape[axis];
            long output = overWidth ? m.shape[^1] : m.shape[0];
            string Refusal() => $"only an image times the averaging matrix of adaptive pooling along its height or width is imported; received [{string.Join(", ", In(0).Dims)}] x [{string.Join(", ", In(1).Dims)}].";
            if (m.dim() != 2 || n < 1 || (overWidth ? m.shape[0] : m.shape[1]) != n) throw Error(Refusal());
            using var expected = zeros(output, n);
            for (int i = 0; i < output; i++)
            {
                var (start, end) = ConvArithmetic.AdaptiveWindow(n, (int)output, i);
                using var row = expected[i];
                using var window = row.narrow(0, start, end - start);
                using var value = (1.0 / (end - start)).ToScalar();
                window.fill_(value);
            }
            using var oriented = overWidth ? expected.t() : expected.alias();
            using var given = m.to(float32);
            if (!oriented.allclose(given, rtol: 1e-5, atol: 1e-7)) throw Error(Refusal());
            var size = overWidth ? new Size2(x.Shape[0], (int)output) : new Size2((int)output, x.Shape[1]);
            Set(0, Apply(new AdaptiveAveragePooling2D(size, LayerName()), x));
        }

        void HardSigmoid()
        {
            float alpha = node.Float("alpha", 0.2f), beta = node.Float("beta", 0.5f);
            var f = Math.Abs(alpha - 1.0 / 6) < 1e-6 && Math.Abs(beta - 0.5) < 1e-6 ? Activations.HardSigmoid : OnnxActivations.HardSigmoid(alpha, beta);
            Set(0, Apply(new Activation(f, LayerName()), SymIn(0)));
        }

        void Clip()
        {
            double min = double.NegativeInfinity, max = double.PositiveInfinity;
            if (model.Opset < 11)
            {
                min = node.Float("min", float.NegativeInfinity);
                max = node.Float("max", float.PositiveInfinity);
            }
            else
            {
                if (Has(1)) min = ConstIn(1, "min").item<float>();
                if (Has(2)) max = ConstIn(2, "max").item<float>();
            }
            var f = min == 0 && max == 6 ? Activations.ReLU6
                : min == 0 && double.IsPositiveInfinity(max) ? Activations.ReLU
                : OnnxActivations.Clip(min, max);
            Set(0, Apply(new Activation(f, LayerName()), SymIn(0)));
        }

        void Softmax()
        {
            var x = SymIn(0);
            int rank = x.Shape.Rank + 1;
            long axis = node.Int("axis", model.Opset < 13 ? 1 : -1);
            if (axis < 0) axis += rank;
            // Activations.Softmax normalizes the channel axis: the last of a matrix, axis 1 of an image.
            if (!(rank == 2 && axis == 1) && !(rank == 4 && axis == 1 && model.Opset >= 13))
                throw Error($"softmax over axis {node.Int("axis", -1)} of a rank-{rank} tensor is not imported (only the class axis of (N, K)).");
            Set(0, Apply(new Activation(Activations.Softmax, LayerName()), x));
        }

        void Pool()
        {
            var x = Image(0);
            bool max = node.OpType == "MaxPool";
            var k = node.Ints("kernel_shape") ?? throw Error("has no kernel_shape.");
            var s = node.Ints("strides") ?? [1, 1];
            var d = node.Ints("dilations") ?? [1, 1];
            if (d.Length == 2 && (d[0] != 1 || d[1] != 1)) throw Error($"dilations [{string.Join(", ", d)}] are not imported.");
            bool ceil = node.Int("ceil_mode", 0) != 0;
            bool countPad = node.Int("count_include_pad", 0) != 0;
            // Keras' 'same' pooling skips the padding: exactly ONNX's max pooling and count_include_pad=0 average pooling.
            var (pads, same) = WindowPads(x.Shape, k, s, [1, 1], allowSame: !ceil && (max || !countPad));
            if (options.GlobalPoolingForFullWindow && !same && pads.All(p => p == 0) && AtFileSize(x.Shape[0], 0) == k[0] && AtFileSize(x.Shape[1], 1) == k[1])
            {
                Layer global = max ? new GlobalMaxPooling2D(keepDims: true, name: LayerName()) : new GlobalAveragePooling2D(keepDims: true, name: LayerName());
                Set(0, Apply(global, x));
                return;
            }
            Size2 pool = ((int)k[0], (int)k[1]), strides = ((int)s[0], (int)s[1]);
            Layer layer = same || (pads.All(p => p == 0) && !ceil)
                ? (max ? new MaxPooling2D(pool, strides, same ? Padding.Same : Padding.Valid, LayerName())
                       : new AveragePooling2D(pool, strides, same ? Padding.Same : Padding.Valid, LayerName()))
                : new PaddedPooling2D(max ? PoolingKind.Max : PoolingKind.Average, pool, strides,
                    ((int)pads[0], (int)pads[1], (int)pads[2], (int)pads[3]), ceil, countPad, LayerName());
            Set(0, Apply(layer, x));
        }

        void ReduceMean()
        {
            var x = SymIn(0);
            var axes = (model.Opset >= 18 && Has(1) ? LongsOf(ConstIn(1, "axes")) : node.Ints("axes")) ?? throw Error("reducing every axis is not imported.");
            int rank = x.Shape.Rank + 1;
            var sorted = axes.Select(a => a < 0 ? a + rank : a).Order().ToArray();
            if (rank != 4 || !sorted.SequenceEqual([2L, 3L]))
                throw Error($"only the mean over height and width (axes 2, 3) of an image is imported; received axes [{string.Join(", ", axes)}] on rank {rank}.");
            Set(0, Apply(new GlobalAveragePooling2D(keepDims: node.Int("keepdims", 1) != 0, name: LayerName()), x));
        }

        void Binary()
        {
            var op = node.OpType switch
            {
                "Add" => ArithmeticOperator.Add,
                "Sub" => ArithmeticOperator.Subtract,
                "Mul" => ArithmeticOperator.Multiply,
                _ => ArithmeticOperator.Divide,
            };
            var (a, b) = (In(0), In(1));
            if (model.Opset < 7 && node.Int("broadcast", 0) != 0) throw Error("legacy broadcast attribute (opset < 7) is not imported.");
            if (a.Symbolic is { } sa && b.Symbolic is { } sb)
            {
                Layer layer = op == ArithmeticOperator.Add && sa.Shape == sb.Shape ? new Layers.Add(LayerName()) : new Arithmetic(op, LayerName());
                Set(0, Apply(layer, sa, sb));
                return;
            }
            bool constantFirst = a.Constant is not null;
            var c = constantFirst ? a.Constant! : b.Constant!;
            var x = constantFirst ? b.Symbolic! : a.Symbolic!;
            int rank = x.Shape.Rank + 1;
            if (c.dim() > rank || (c.dim() == rank && c.shape[0] != 1))
                throw Error($"the constant operand [{string.Join(", ", c.shape)}] would broadcast over the batch of [{string.Join(", ", OnnxDims(x.Shape))}].");
            var shape = c.dim() == 0 ? new long[] { 1 } : c.shape;
            var layer2 = new Arithmetic(op, shape, constantFirst, options.TrainableConstants, LayerName());
            var y = Apply(layer2, x);
            using (no_grad()) layer2.Constant!.copy_(c.reshape(shape));
            var inputName = node.Inputs[constantFirst ? 0 : 1];
            if (model.Graph.Initializers.ContainsKey(inputName)) weightNames[inputName] = $"{layer2.Name}/constant";
            Set(0, y);
        }

        void Sum()
        {
            var xs = Enumerable.Range(0, node.Inputs.Count).Select(SymIn).ToArray();
            if (xs.Length == 1) { Set(0, xs[0]); return; }
            if (xs.Any(x => x.Shape != xs[0].Shape)) throw Error("inputs of different shapes are not imported.");
            Set(0, Apply(new Layers.Add(LayerName()), xs));
        }

        void Concat()
        {
            var xs = Enumerable.Range(0, node.Inputs.Count).Select(SymIn).ToArray();
            int rank = xs[0].Shape.Rank + 1;
            long axis = node.Int("axis", 1);
            if (axis < 0) axis += rank;
            if (axis == 0) throw Error("concatenation along the batch axis is not imported.");
            int keras = rank == 4 ? axis switch { 1 => -1, 2 => 1, _ => 2 } : (int)axis;
            if (xs.Length == 1) { Set(0, xs[0]); return; }
            Set(0, Apply(new Concatenate(keras, LayerName()), xs));
        }

        void FlattenOp()
        {
            var x = SymIn(0);
            long axis = node.Int("axis", 1);
            if (axis < 0) axis += x.Shape.Rank + 1;
            if (axis != 1) throw Error($"flattening from axis {axis} is not imported (only axis 1: one vector per sample).");
            Set(0, x.Shape.Rank == 1 ? x : Apply(new Layers.Flatten(name: LayerName()), x));
        }

        /// <summary>The per-sample target of a Reshape (the batch entry removed).</summary>
        long[] ShapeForReshape()
        {
            var x = SymIn(0);
            long[] target = model.Opset < 5 ? node.Ints("shape")! : LongsOf(ConstIn(1, "the shape"));
            var dims = OnnxDims(x.Shape);
            for (int i = 0; i < target.Length; i++)
                if (target[i] == 0 && node.Int("allowzero", 0) == 0) target[i] = i < dims.Length ? dims[i] : throw Error("a 0 in the shape copies an axis the input lacks.");
            if (target.Length == 0 || !(target[0] == -1 || target[0] == batch || target[0] == 0))
                throw Error($"reshape to [{string.Join(", ", target)}] does not keep the batch axis first.");
            if (target[0] == -1 && target.Skip(1).Any(t => t < 0)) throw Error($"reshape to [{string.Join(", ", target)}] leaves two axes free.");
            return target[1..];
        }

        long[] SqueezedShape()
        {
            var x = SymIn(0);
            var dims = OnnxDims(x.Shape).ToList();
            var axes = (model.Opset >= 13 && Has(1) ? LongsOf(ConstIn(1, "axes")) : node.Ints("axes"))?.ToArray();
            if (node.OpType == "Squeeze")
            {
                int rank = dims.Count;
                var ax = axes?.Select(a => a < 0 ? a + rank : a).ToHashSet() ?? Enumerable.Range(1, rank - 1).Where(i => dims[i] == 1).Select(i => (long)i).ToHashSet();
                if (ax.Contains(0)) throw Error("squeezing the batch axis is not imported.");
                if (ax.Any(a => a >= rank || dims[(int)a] != 1)) throw Error($"axes [{string.Join(", ", ax)}] are not of size 1 in [{string.Join(", ", dims)}].");
                dims = dims.Where((_, i) => !ax.Contains(i)).ToList();
            }
            else
            {
                if (axes is null) throw Error("has no axes.");
                int rank = dims.Count + axes.Length;
                foreach (var a in axes.Select(a => a < 0 ? a + rank : a).Order())
                {
                    if (a == 0 || a > dims.Count) throw Error($"unsqueezing at axis {a} is not imported.");
                    dims.Insert((int)a, 1);
                }
            }
            return dims.Skip(1).ToArray();
        }

        void ReshapeTo(long[] sample)
        {
            var x = SymIn(0);
            var dims = OnnxDims(x.Shape)[1..];
            if (sample.SequenceEqual(dims)) { Set(0, x); return; }
            Layer layer = sample.Length == 1 && (sample[0] == -1 || sample[0] == x.Shape.Size)
                ? new Layers.Flatten(name: LayerName())
                : new Reshape(sample, DataFormat.ChannelsFirst, LayerName());
            Set(0, Apply(layer, x));
        }

        void TransposeOp()
        {
            var x = SymIn(0);
            int rank = x.Shape.Rank + 1;
            var perm = node.Ints("perm") ?? Enumerable.Range(0, rank).Reverse().Select(i => (long)i).ToArray();
            if (perm.Length != rank || perm[0] != 0) throw Error($"perm [{string.Join(", ", perm)}] moves the batch axis.");
            Set(0, Apply(new Permute(perm[1..].Select(p => (int)p).ToArray(), DataFormat.ChannelsFirst, LayerName()), x));
        }

        void PadOp()
        {
            var x = Image(0);
            var mode = node.String("mode", "constant");
            if (mode != "constant") throw Error($"mode='{mode}' is not imported (only constant zero padding).");
            long[] pads = model.Opset < 11 ? node.Ints("pads") ?? [] : LongsOf(ConstIn(1, "pads"));
            double value = model.Opset < 11 ? node.Float("value", 0) : Has(2) ? ConstIn(2, "constant_value").item<float>() : 0;
            if (value != 0) throw Error($"padding with {value} is not imported (only zeros).");
            if (pads.Length != 8 || pads[0] != 0 || pads[1] != 0 || pads[4] != 0 || pads[5] != 0 || pads.Any(p => p < 0))
                throw Error($"pads [{string.Join(", ", pads)}] are not non-negative pads of height and width.");
            Set(0, Apply(new ZeroPadding2D(((int)pads[2], (int)pads[6]), ((int)pads[3], (int)pads[7]), LayerName()), x));
        }

        void SliceOp()
        {
            var x = SymIn(0);
            var dims = OnnxDims(x.Shape);
            long[] starts, ends, axes, steps;
            if (model.Opset < 10)
            {
                starts = node.Ints("starts") ?? throw Error("has no starts.");
                ends = node.Ints("ends") ?? throw Error("has no ends.");
                axes = node.Ints("axes") ?? Enumerable.Range(0, starts.Length).Select(i => (long)i).ToArray();
                steps = Enumerable.Repeat(1L, starts.Length).ToArray();
            }
            else
            {
                starts = LongsOf(ConstIn(1, "starts"));
                ends = LongsOf(ConstIn(2, "ends"));
                axes = Has(3) ? LongsOf(ConstIn(3, "axes")) : Enumerable.Range(0, starts.Length).Select(i => (long)i).ToArray();
                steps = Has(4) ? LongsOf(ConstIn(4, "steps")) : Enumerable.Repeat(1L, starts.Length).ToArray();
            }
            for (int i = 0; i < starts.Length; i++)
            {
                long axis = axes[i] < 0 ? axes[i] + dims.Length : axes[i];
                if (steps[i] != 1) throw Error($"steps [{string.Join(", ", steps)}] are not imported (only 1).");
                if (axis <= 0 || axis >= dims.Length) throw Error($"slicing axis {axes[i]} (the batch axis, or out of range) is not imported.");
                long n = dims[axis];
                if (n < 0) throw Error($"slicing axis {axis} of unknown size is not imported; give InputShape.");
                long st = Math.Clamp(starts[i] < 0 ? starts[i] + n : starts[i], 0, n);
                long en = Math.Clamp(ends[i] < 0 ? ends[i] + n : ends[i], 0, n);
                if (en <= st) throw Error($"the slice [{starts[i]}, {ends[i]}) of axis {axis} (size {n}) is empty.");
                if (st == 0 && en == n) continue;
                x = Apply(new Layers.Slice((int)axis, (int)st, (int)(en - st), Unique(node.Name + (starts.Length > 1 ? $"_{i}" : ""))), x);
                dims = OnnxDims(x.Shape);
            }
            Set(0, x);
        }

        void Split()
        {
            var x = SymIn(0);
            var dims = OnnxDims(x.Shape);
            long axis = node.Int("axis", 0);
            if (axis < 0) axis += dims.Length;
            if (axis <= 0 || axis >= dims.Length) throw Error($"splitting axis {node.Int("axis", 0)} (the batch axis, or out of range) is not imported.");
            long n = dims[axis];
            if (n < 0) throw Error($"splitting axis {axis} of unknown size is not imported; give InputShape.");
            var sizes = (model.Opset >= 13 && Has(1) ? LongsOf(ConstIn(1, "split")) : node.Ints("split"))
                ?? Enumerable.Repeat(n / node.Outputs.Count, node.Outputs.Count).ToArray();
            if (sizes.Length != node.Outputs.Count || sizes.Sum() != n || sizes.Any(v => v <= 0))
                throw Error($"split sizes [{string.Join(", ", sizes)}] do not cut axis {axis} of size {n} into {node.Outputs.Count} parts.");
            long start = 0;
            for (int i = 0; i < sizes.Length; i++)
            {
                Set(i, Apply(new Layers.Slice((int)axis, (int)start, (int)sizes[i], Unique(node.Outputs[i])), x));
                start += sizes[i];
            }
        }

        // ------------------------------------------------------------------ constant folding

        Tensor Fold()
        {
            Tensor C(int i) => In(i).Constant!;
            long Axis(long a, long rank) => a < 0 ? a + rank : a;
            switch (node.OpType)
            {
                case "Identity" or "Dropout": return C(0).alias();
                case "Cast":
                {
                    var to = (OnnxElementType)(int)node.Int("to", 1);
                    return C(0).to(to switch { OnnxElementType.Float or OnnxElementType.Double or OnnxElementType.Float16 => float32, OnnxElementType.Bool => @bool, _ => int64 });
                }
                case "Gather":
                {
                    var data = C(0);
                    long axis = Axis(node.Int("axis", 0), data.dim());
                    using var idx = C(1).to(int64);
                    using var size = data.shape[axis].ToScalar();
                    using var fixedIdx = idx.remainder(size);
                    using var flat = fixedIdx.flatten();
                    using var picked = data.index_select(axis, flat);
                    long[] shape = [.. data.shape[..(int)axis], .. idx.shape, .. data.shape[((int)axis + 1)..]];
                    return picked.reshape(shape);
                }
                case "Unsqueeze" or "Squeeze":
                {
                    var data = C(0);
                    var axes = (model.Opset >= 13 && Has(1) ? LongsOf(C(1)) : node.Ints("axes"));
                    if (node.OpType == "Squeeze")
                    {
                        var ax = axes?.Select(a => Axis(a, data.dim())).ToHashSet() ?? Enumerable.Range(0, (int)data.dim()).Where(i => data.shape[i] == 1).Select(i => (long)i).ToHashSet();
                        return data.reshape(data.shape.Where((_, i) => !ax.Contains(i)).ToArray());
                    }
                    var dims = data.shape.ToList();
                    long rank = dims.Count + (axes?.Length ?? 0);
                    foreach (var a in (axes ?? []).Select(a => Axis(a, rank)).Order()) dims.Insert((int)a, 1);
                    return data.reshape(dims.ToArray());
                }
                case "Concat":
                {
                    var xs = Enumerable.Range(0, node.Inputs.Count).Select(C).ToArray();
                    return cat(xs, Axis(node.Int("axis", 0), xs[0].dim()));
                }
                case "Reshape":
                {
                    var data = C(0);
                    var target = model.Opset < 5 ? node.Ints("shape")! : LongsOf(C(1));
                    for (int i = 0; i < target.Length; i++) if (target[i] == 0) target[i] = data.shape[i];
                    return data.reshape(target);
                }
                case "Flatten":
                {
                    var data = C(0);
                    long axis = Axis(node.Int("axis", 1), data.dim());
                    long outer = data.shape[..(int)axis].Aggregate(1L, (a, b) => a * b);
                    return data.reshape(outer, -1);
                }
                case "Transpose":
                {
                    var data = C(0);
                    var perm = node.Ints("perm") ?? Enumerable.Range(0, (int)data.dim()).Reverse().Select(i => (long)i).ToArray();
                    return data.permute(perm).contiguous();
                }
                case "Add" or "Sub" or "Mul" or "Div":
                {
                    var (a, b) = (C(0), C(1));
                    bool integer = a.dtype == int64 && b.dtype == int64;
                    return node.OpType switch
                    {
                        "Add" => a.add(b, Native.Scalars.One),
                        "Sub" => a.sub(b),
                        "Mul" => a.mul(b),
                        _ => integer ? a.div(b, rounding_mode: RoundingMode.floor) : a.div(b),
                    };
                }
                case "Slice":
                {
                    var data = C(0);
                    long[] starts, ends, axes, steps;
                    if (model.Opset < 10)
                    {
                        starts = node.Ints("starts")!;
                        ends = node.Ints("ends")!;
                        axes = node.Ints("axes") ?? Enumerable.Range(0, starts.Length).Select(i => (long)i).ToArray();
                        steps = Enumerable.Repeat(1L, starts.Length).ToArray();
                    }
                    else
                    {
                        starts = LongsOf(C(1));
                        ends = LongsOf(C(2));
                        axes = Has(3) ? LongsOf(C(3)) : Enumerable.Range(0, starts.Length).Select(i => (long)i).ToArray();
                        steps = Has(4) ? LongsOf(C(4)) : Enumerable.Repeat(1L, starts.Length).ToArray();
                    }
                    var result = data.alias();
                    for (int i = 0; i < starts.Length; i++)
                    {
                        long ax = Axis(axes[i], data.dim()), n = data.shape[ax];
                        if (steps[i] != 1) throw Error("constant slices with steps other than 1 are not folded.");
                        long st = Math.Clamp(starts[i] < 0 ? starts[i] + n : starts[i], 0, n);
                        long en = Math.Clamp(ends[i] < 0 ? ends[i] + n : ends[i], 0, n);
                        using var previous = result;
                        result = previous.narrow(ax, st, Math.Max(0, en - st));
                    }
                    return result;
                }
                case "ConstantOfShape":
                {
                    var shape = LongsOf(C(0));
                    var v = node.Attributes.TryGetValue("value", out var a) && a.T is { } t ? t.ToTensor() : zeros(1);
                    using (v) { using var flat = v.flatten(); return flat.expand(shape).contiguous(); }
                }
                case "Relu": return C(0).relu();
                case "Sigmoid": return C(0).sigmoid();
                case "Tanh": return C(0).tanh();
                default: throw Error("cannot be folded: all its inputs are constants, but ConvKit folds only shape arithmetic (Shape, Gather, Unsqueeze, Concat, Reshape, Cast, Slice, arithmetic).");
            }
        }
    }
}

/// <summary>Activation functions of ONNX graphs that Keras names differently or parameterizes.</summary>
public static class OnnxActivations
{
    /// <summary>clamp(alpha · x + beta, 0, 1), ONNX's HardSigmoid.</summary>
    public static ActivationFunction HardSigmoid(double alpha, double beta) => new($"hard_sigmoid_{alpha:R}_{beta:R}", x =>
    {
        using var a = alpha.ToScalar();
        using var b = beta.ToScalar();
        using var y = x.mul(a);
        using var z = y.add(b, Native.Scalars.One);
        return z.clamp(Native.Scalars.Zero, Native.Scalars.One);
    });

    /// <summary>clamp(x, min, max), ONNX's Clip.</summary>
    public static ActivationFunction Clip(double min, double max) => new($"clip_{min:R}_{max:R}", x =>
    {
        using var lo = min.ToScalar();
        using var hi = max.ToScalar();
        return double.IsNegativeInfinity(min) ? x.clamp_max(hi) : double.IsPositiveInfinity(max) ? x.clamp_min(lo) : x.clamp(lo, hi);
    });
}
