using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using ConvKit.Layers;
using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Saving;

/// <summary>Options of <see cref="OnnxExport"/>.</summary>
public sealed record OnnxExportOptions
{
    /// <summary>Default-domain opset: 13 (the default) to 21.</summary>
    public int Opset { get; init; } = 13;

    /// <summary>
    /// True (the default): image inputs and image outputs of the ONNX model are NHWC, as Keras and
    /// <see cref="Model.Predict"/> take them; the graph transposes once to NCHW after each input and back before each
    /// image output. False: they are NCHW (ConvKit's internal layout), with no transposes.
    /// </summary>
    public bool ChannelsLast { get; init; } = true;

    /// <summary>The options used when none are given.</summary>
    public static OnnxExportOptions Default { get; } = new();
}

/// <summary>
/// Everything an exporter needs to lower one layer call to ONNX nodes: the graph, the input value names (in ConvKit's
/// internal layout: images NCHW), the Keras shapes, and the value name the exporter must define.
/// </summary>
public sealed class OnnxLayerContext
{
    readonly OnnxExporter exporter;

    internal OnnxLayerContext(OnnxExporter exporter, Layer layer, string[] inputs, Shape[] inputShapes, Shape outputShape, string output)
    {
        this.exporter = exporter;
        Layer = layer;
        Inputs = inputs;
        InputShapes = inputShapes;
        OutputShape = outputShape;
        Output = output;
    }

    internal OnnxExporter Exporter => exporter;

    /// <summary>The graph being built; add nodes with <see cref="OnnxGraphBuilder.AddNode"/>.</summary>
    public OnnxGraphBuilder Graph => exporter.Graph;

    /// <summary>The default-domain opset of the export.</summary>
    public int Opset => exporter.Options.Opset;

    /// <summary>The layer being exported.</summary>
    public Layer Layer { get; }

    /// <summary>Names of the input values, in ConvKit's internal layout (images NCHW, batch first).</summary>
    public IReadOnlyList<string> Inputs { get; }

    /// <summary>Keras sample shapes of the inputs (channels last, no batch axis).</summary>
    public IReadOnlyList<Shape> InputShapes { get; }

    /// <summary>Keras sample shape of the output.</summary>
    public Shape OutputShape { get; }

    /// <summary>The value name the exporter must define, in ConvKit's internal layout.</summary>
    public string Output { get; }

    /// <summary>A fresh value name derived from <paramref name="hint"/> (e.g. <c>conv1/conv</c>).</summary>
    /// <param name="hint">Suffix appended to the layer's name.</param>
    /// <returns>An unused value name.</returns>
    public string NewName(string hint) => exporter.Unique($"{Output}/{hint}");

    /// <summary>Adds a tensor as an initializer once (asking again for the same tensor returns the same name).</summary>
    /// <param name="value">A floating-point tensor (written as float32) or an int64 tensor; copied.</param>
    /// <param name="weightName">Name suffix, e.g. <c>kernel</c>.</param>
    /// <returns>The initializer's value name.</returns>
    public string Weight(Tensor value, string weightName) => exporter.Weight(Layer, value, weightName, "");

    /// <summary>Adds a float32 constant.</summary>
    /// <param name="values">Values in C order.</param>
    /// <param name="dims">Shape; none for a scalar.</param>
    /// <returns>The constant's value name.</returns>
    public string Constant(float[] values, params long[] dims)
    {
        var name = NewName("const");
        Graph.AddInitializer(name, values, dims);
        return name;
    }

    /// <summary>Adds an int64 constant (shapes, pads).</summary>
    /// <param name="values">Values in C order.</param>
    /// <param name="dims">Shape; none for a scalar.</param>
    /// <returns>The constant's value name.</returns>
    public string Constant(long[] values, params long[] dims)
    {
        var name = NewName("const");
        Graph.AddInitializer(name, values, dims);
        return name;
    }

    /// <summary>Lowers a ConvKit activation function from <paramref name="input"/> to <paramref name="output"/>.</summary>
    /// <param name="function">The activation.</param>
    /// <param name="input">Input value (internal layout).</param>
    /// <param name="output">Value to define.</param>
    /// <param name="rank">Rank of the value including the batch axis (softmax uses the channel axis of 4-D values).</param>
    /// <exception cref="ConvKitException">The activation has no ONNX lowering.</exception>
    public void Activation(ActivationFunction function, string input, string output, int rank) =>
        OnnxLowerings.Activation(this, function, input, output, rank);
}

/// <summary>
/// Exports functional (and built Sequential) models to ONNX, one lowering per layer type. Built-in layers are covered;
/// register lowerings for your own layers with <see cref="Register{TLayer}"/>.
/// </summary>
/// <remarks>
/// The exported graph computes in NCHW, ConvKit's internal layout; with <see cref="OnnxExportOptions.ChannelsLast"/>
/// (the default) image inputs and outputs are NHWC like Keras. The batch dimension is symbolic (<c>N</c>). The model
/// is exported for inference: dropout is the identity and batch normalization uses its moving statistics.
/// </remarks>
public static class OnnxExport
{
    /// <summary>The lowest supported opset.</summary>
    public const int MinOpset = 13;

    /// <summary>The highest supported opset.</summary>
    public const int MaxOpset = 21;

    static readonly ConcurrentDictionary<Type, Action<OnnxLayerContext, Layer>> Exporters = new();

    static OnnxExport() => OnnxLowerings.RegisterBuiltIns();

    /// <summary>
    /// Registers (or replaces) the lowering of layers of exactly type <typeparamref name="TLayer"/> (subclasses need
    /// their own registration: a subclass may compute something else). The exporter must define
    /// <see cref="OnnxLayerContext.Output"/>.
    /// </summary>
    /// <typeparam name="TLayer">The layer type.</typeparam>
    /// <param name="exporter">Adds the nodes computing the layer.</param>
    public static void Register<TLayer>(Action<OnnxLayerContext, TLayer> exporter) where TLayer : Layer
    {
        ArgumentNullException.ThrowIfNull(exporter);
        Exporters[typeof(TLayer)] = (ctx, layer) => exporter(ctx, (TLayer)layer);
    }

    /// <summary>Whether layers of this exact type can be exported.</summary>
    /// <param name="layerType">A layer type.</param>
    /// <returns>True when a lowering is registered.</returns>
    public static bool IsRegistered(Type layerType) => Exporters.ContainsKey(layerType) || typeof(Model).IsAssignableFrom(layerType);

    internal static Action<OnnxLayerContext, Layer>? Find(Type t) => Exporters.GetValueOrDefault(t);

    /// <summary>Serializes <paramref name="model"/> as an ONNX model.</summary>
    /// <param name="model">A functional model or a built Sequential.</param>
    /// <param name="options">Export options; null for the defaults.</param>
    /// <returns>The ONNX <c>ModelProto</c> bytes.</returns>
    /// <exception cref="ConvKitException">The model is subclassed or not built, contains a layer without a lowering
    /// (the message names it), or the opset is out of range.</exception>
    public static byte[] ToBytes(Model model, OnnxExportOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var graph = Export(model, options);
        return graph.ToBytes();
    }

    /// <summary>Writes <paramref name="model"/> to an ONNX file atomically.</summary>
    /// <param name="model">A functional model or a built Sequential.</param>
    /// <param name="path">Destination file.</param>
    /// <param name="options">Export options; null for the defaults.</param>
    /// <exception cref="ConvKitException">See <see cref="ToBytes"/>.</exception>
    /// <exception cref="IOException">The file cannot be written (nothing is left at <paramref name="path"/> then: the
    /// previous file, if any, is untouched).</exception>
    public static void Save(Model model, string path, OnnxExportOptions? options = null)
    {
        Require.NotBlank(path);
        ArgumentNullException.ThrowIfNull(model);
        // Streamed: initializers are written from the model's tensor memory, so the export needs about the model's
        // size plus a constant (it needed about 13 times the file size when the whole ModelProto was built in memory).
        using var graph = Export(model, options);
        graph.Save(path);
    }

    /// <summary><see cref="Save"/>, returning the graph's declared inputs and outputs (what a serving config lists).</summary>
    internal static (IReadOnlyList<(string Name, OnnxDataType Type, OnnxDim[] Dims)> Inputs, IReadOnlyList<(string Name, OnnxDataType Type, OnnxDim[] Dims)> Outputs)
        SaveWithSignature(Model model, string path, OnnxExportOptions? options)
    {
        using var graph = Export(model, options);
        graph.Save(path);
        return (graph.GraphInputs.ToArray(), graph.GraphOutputs.ToArray());
    }

    /// <summary>The model's graph; on failure the tensors the partial graph holds are released at once.</summary>
    static OnnxGraphBuilder Export(Model model, OnnxExportOptions? options)
    {
        var exporter = new OnnxExporter(options ?? OnnxExportOptions.Default);
        try
        {
            return exporter.Export(model);
        }
        catch
        {
            exporter.Graph.Dispose();
            throw;
        }
    }
}

/// <summary>Walks a functional graph (inlining nested models) and emits nodes.</summary>
internal sealed class OnnxExporter
{
    readonly Dictionary<(object Tensor, string Tag), string> weights = new();
    readonly HashSet<string> reserved = new(StringComparer.Ordinal);

    public OnnxExporter(OnnxExportOptions options)
    {
        if (options.Opset is < OnnxExport.MinOpset or > OnnxExport.MaxOpset)
            throw new ConvKitException($"ONNX export: opset {options.Opset} is not supported; use {OnnxExport.MinOpset} to {OnnxExport.MaxOpset} (opset 13 is where Softmax takes a single axis and Pad takes its pads as an input).");
        Options = options;
        // The lowest IR version that carries the opset (IR 8: opset <= 18, IR 9: <= 20, IR 10: 21).
        long ir = options.Opset <= 18 ? 8 : options.Opset <= 20 ? 9 : 10;
        Graph = new OnnxGraphBuilder("convkit", options.Opset, ir);
    }

    public OnnxExportOptions Options { get; }

    public OnnxGraphBuilder Graph { get; private set; }

    public OnnxGraphBuilder Export(Model model)
    {
        if (!model.IsGraphNetwork)
            throw new ConvKitException(model.IsBuilt
                ? $"model '{model.Name}' ({model.GetType().Name}) is a subclassed model: its computation is C# code in Call(Tensor), which has no graph to export to ONNX. Build it with the functional API (new Model(inputs, outputs)) or as a Sequential, then export."
                : $"model '{model.Name}' has not been built yet: give it an input shape or call Build(inputShape) before exporting to ONNX.");
        Graph = new OnnxGraphBuilder(Sanitize(model.Name), Graph.OpsetVersion, Graph.IrVersion);
        var graph = model.GraphForSummary!;
        var outputNames = new string[graph.Outputs.Count];
        for (int i = 0; i < outputNames.Length; i++)
        {
            var name = graph.Outputs[i].Layer.Name;
            outputNames[i] = reserved.Contains(name) || graph.Inputs.Any(x => x.Layer.Name == name) ? $"{name}_{i}" : name;
            reserved.Add(outputNames[i]);
        }

        var inputValues = new string[graph.Inputs.Count];
        for (int i = 0; i < inputValues.Length; i++)
        {
            var input = graph.Inputs[i];
            var name = input.Layer.Name;
            var s = input.Shape;
            if (s.Rank == 3 && Options.ChannelsLast)
            {
                Graph.AddInput(name, ["N", Dim(s[0], "H"), Dim(s[1], "W"), Dim(s[2], "C")]);
                inputValues[i] = Unique(name + "/nchw");
                Graph.AddNode("Transpose", [name], [inputValues[i]], [OnnxAttribute.Ints("perm", 0, 3, 1, 2)], name: inputValues[i]);
            }
            else
            {
                Graph.AddInput(name, InternalDims(s));
                inputValues[i] = name;
            }
        }

        var values = Walk(graph, inputValues, "", isTop: true, outputNames);
        for (int i = 0; i < outputNames.Length; i++)
        {
            var s = graph.Outputs[i].Shape;
            var v = values[i];
            if (s.Rank == 3 && Options.ChannelsLast)
            {
                Graph.AddNode("Transpose", [v], [outputNames[i]], [OnnxAttribute.Ints("perm", 0, 2, 3, 1)], name: outputNames[i] + "/nhwc");
                Graph.AddOutput(outputNames[i], ["N", Dim(s[0], "H"), Dim(s[1], "W"), Dim(s[2], "C")]);
            }
            else
            {
                if (v != outputNames[i]) Graph.AddNode("Identity", [v], [outputNames[i]]);
                Graph.AddOutput(outputNames[i], InternalDims(s));
            }
        }
        return Graph;
    }

    /// <summary>Emits a graph's nodes; returns the value names of its outputs.</summary>
    string[] Walk(FunctionalGraph graph, IReadOnlyList<string> inputValues, string prefix, bool isTop, string[]? outputNames)
    {
        var values = new Dictionary<SymbolicTensor, string>();
        for (int i = 0; i < graph.Inputs.Count; i++) values[graph.Inputs[i]] = inputValues[i];
        // A top-level value that is a graph output exactly once (and needs no transpose) takes the output's name.
        var direct = new Dictionary<SymbolicTensor, string>();
        if (isTop)
            for (int i = 0; i < graph.Outputs.Count; i++)
            {
                var o = graph.Outputs[i];
                bool transposed = o.Shape.Rank == 3 && Options.ChannelsLast;
                if (!transposed && graph.Outputs.Count(x => x.Equals(o)) == 1 && !graph.Inputs.Contains(o)) direct[o] = outputNames![i];
            }

        foreach (var node in graph.Schedule)
        {
            var layer = node.Layer;
            var ins = node.Inputs.Select(x => values[x]).ToArray();
            if (layer is Model nested)
            {
                if (!nested.IsGraphNetwork)
                    throw new ConvKitException($"{layer.Describe} inside the model is a subclassed model: it has no graph to export to ONNX. Build it with the functional API or as a Sequential.");
                var outs = Walk(nested.GraphForSummary!, ins, prefix + layer.Name + "/", isTop: false, null);
                var v = outs[0];
                if (direct.TryGetValue(node.Output, out var outName))
                {
                    Graph.AddNode("Identity", [v], [outName]);
                    v = outName;
                }
                values[node.Output] = v;
                continue;
            }
            var exporter = OnnxExport.Find(layer.GetType()) ?? throw Unsupported(layer);
            var output = direct.TryGetValue(node.Output, out var name) ? name : Unique(Sanitize(prefix + layer.Name));
            var ctx = new OnnxLayerContext(this, layer, ins, node.Inputs.Select(x => x.Shape).ToArray(), node.Output.Shape, output);
            exporter(ctx, layer);
            if (!Graph.IsDefined(output))
                throw new ConvKitException($"the ONNX exporter of {layer.Describe} did not define its output value '{output}' (OnnxLayerContext.Output).");
            values[node.Output] = output;
        }
        return graph.Outputs.Select(o => values[o]).ToArray();
    }

    static ConvKitException Unsupported(Layer layer)
    {
        var builtIn = layer.GetType().BaseType is { } b && b != typeof(Layer) && OnnxExport.IsRegistered(b)
            ? $" It derives from {b.Name}, which can be exported, but a subclass may compute something else, so it needs its own lowering."
            : "";
        return new ConvKitException(
            $"{layer.Describe} ({layer.GetType().FullName}) has no ONNX lowering.{builtIn} Register one before exporting: " +
            $"OnnxExport.Register<{layer.GetType().Name}>((ctx, layer) => ctx.Graph.AddNode(\"...\", ctx.Inputs, [ctx.Output], ...)).");
    }

    public string Unique(string hint)
    {
        var name = hint;
        for (int i = 1; Graph.IsDefined(name) || reserved.Contains(name); i++) name = $"{hint}_{i}";
        reserved.Add(name);
        return name;
    }

    public string Weight(Layer layer, Tensor value, string weightName, string tag)
    {
        var key = ((object)value, tag);
        if (weights.TryGetValue(key, out var existing)) return existing;
        var name = Unique(Sanitize(layer.Name) + "/" + weightName);
        // The graph computes in float32 (its inputs are float): a model converted to another float type is exported
        // with float32 weights.
        if (value.is_floating_point() && value.dtype != ScalarType.Float32)
        {
            using var f = value.detach().to(ScalarType.Float32);
            Graph.AddInitializerView(name, f);
        }
        else Graph.AddInitializerView(name, value);
        weights[key] = name;
        return name;
    }

    /// <summary>Caches a weight derived from another (a transposed kernel) under the source tensor.</summary>
    public string DerivedWeight(Layer layer, Tensor source, string tag, Func<Tensor> derive)
    {
        var key = ((object)source, tag);
        if (weights.TryGetValue(key, out var existing)) return existing;
        using var raw = derive();
        using var d = raw.to(ScalarType.Float32);
        var name = Unique(Sanitize(layer.Name) + "/" + tag);
        Graph.AddInitializerView(name, d);
        weights[key] = name;
        return name;
    }

    static OnnxDim Dim(int d, string symbol) => d == Shape.Unknown ? symbol : d;

    static OnnxDim[] InternalDims(Shape s)
    {
        if (s.Rank == 3) return ["N", Dim(s[2], "C"), Dim(s[0], "H"), Dim(s[1], "W")];
        return [(OnnxDim)"N", .. s.Dims.ToArray().Select((d, i) => Dim(d, $"D{i + 1}"))];
    }

    static string Sanitize(string name) => name.Length == 0 ? "model" : name;
}
