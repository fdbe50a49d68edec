using System.Reflection;
using System.Runtime.CompilerServices;
using ConvKit.Layers;
using ConvKit.Models.Inference;
using static TorchSharp.torch;

namespace ConvKit.Models;

/// <summary>
/// A model: a functional graph (<c>new Model(inputs, outputs)</c>), a <see cref="Sequential"/> stack, or a subclass
/// that declares its layers as fields and overrides <see cref="Call(Tensor)"/>. All three share summary, training,
/// evaluation, prediction and saving.
/// </summary>
public partial class Model : Layer
{
    FunctionalGraph? graph;
    List<Layer>? tracked;
    Dictionary<Layer, List<TracedCall>>? tracedShapes;

    /// <summary>A functional model from one input to one output.</summary>
    /// <exception cref="GraphException">The output cannot be computed from the input, or names repeat.</exception>
    public Model(SymbolicTensor inputs, SymbolicTensor outputs, string? name = null)
        : this([inputs], [outputs], name) { }

    /// <summary>A functional model with several inputs and/or outputs.</summary>
    /// <exception cref="GraphException">An output cannot be computed from the inputs, or names repeat.</exception>
    public Model(IReadOnlyList<SymbolicTensor> inputs, IReadOnlyList<SymbolicTensor> outputs, string? name = null)
        : base(name)
    {
        SetGraph(inputs, outputs);
    }

    /// <summary>For subclassed models (and <see cref="Sequential"/>): layers are declared as fields.</summary>
    protected Model(string? name = null) : base(name) { }

    /// <summary>Keras 2's class name: <c>Functional</c> for functional models, else the class name.</summary>
    public override string ClassName => GetType() == typeof(Model) ? "Functional" : GetType().Name;

    /// <inheritdoc/>
    protected override string DefaultNamePrefix => GetType() == typeof(Model) ? "model" : base.DefaultNamePrefix;

    /// <summary>Installs a functional graph (used by constructors and by <see cref="Sequential"/> as it grows).</summary>
    private protected void SetGraph(IReadOnlyList<SymbolicTensor> inputs, IReadOnlyList<SymbolicTensor> outputs)
    {
        var g = new FunctionalGraph(inputs, outputs, Name);
        // Re-register: a Sequential that grows replaces its graph.
        foreach (var layer in g.Layers)
            if (layer is not InputLayer && !HasChild(layer.Name)) register_module(layer.Name, layer);
        WeightsChanged();
        graph = g;
        SetBuilt(inputs.Select(i => i.Shape).ToArray());
    }

    bool HasChild(string childName) => named_children().Any(c => c.name == childName);

    private protected FunctionalGraph? Graph => graph;

    /// <summary>True for functional models and built Sequential models.</summary>
    public bool IsGraphNetwork => graph is not null;

    /// <summary>The graph's inputs (functional and built Sequential models).</summary>
    /// <exception cref="GraphException">The model is subclassed or not built.</exception>
    public IReadOnlyList<SymbolicTensor> Inputs => RequireGraph().Inputs;

    /// <summary>The graph's outputs (functional and built Sequential models).</summary>
    /// <exception cref="GraphException">The model is subclassed or not built.</exception>
    public IReadOnlyList<SymbolicTensor> Outputs => RequireGraph().Outputs;

    /// <summary>The layers, in Keras' order: graph order for functional models, declaration order for subclasses.</summary>
    public virtual IReadOnlyList<Layer> Layers => graph is not null ? graph.Layers : Tracked();

    /// <summary>A layer by name.</summary>
    /// <exception cref="UnknownNameException">No such layer.</exception>
    public Layer GetLayer(string layerName) =>
        Layers.FirstOrDefault(l => l.Name == layerName)
        ?? throw new UnknownNameException("layer", layerName, $"model '{Name}' has no layer named '{layerName}'; it has: {string.Join(", ", Layers.Select(l => l.Name))}");

    /// <inheritdoc/>
    public override IEnumerable<Layer> SubLayers
    {
        get
        {
            if (graph is null) Tracked();
            return base.SubLayers;
        }
    }

    /// <summary>The sample shape of the (first) input, once known.</summary>
    /// <exception cref="GraphException">The model is not built yet.</exception>
    public Shape ModelInputShape => BuiltInputShapes is { } s ? s[0] : throw NotBuilt();

    /// <summary>The sample shape of the (first) output.</summary>
    /// <exception cref="GraphException">The model is not built yet.</exception>
    public Shape ModelOutputShape => graph is not null ? graph.Outputs[0].Shape
        : builtOutputShape ?? throw NotBuilt();

    Shape? builtOutputShape;

    /// <summary>
    /// Builds a model whose input shape is not yet known (subclassed, or a Sequential without an input shape) for samples
    /// of <paramref name="inputShapes"/>, like Keras' <c>model.build()</c>: creates every weight and records shapes.
    /// </summary>
    /// <exception cref="ShapeException">A layer cannot take the shapes it receives.</exception>
    public void Build(params Shape[] inputShapes)
    {
        if (inputShapes.Length == 0) throw new InvalidOptionException(nameof(inputShapes), $"model '{Name}': Build needs at least one input shape.");
        if (IsBuilt)
        {
            CheckCompatible(inputShapes);
            return;
        }
        EnsureBuilt(inputShapes, trackDevice: null);
    }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(IReadOnlyList<Shape> inputShapes)
    {
        if (graph is not null)
        {
            CheckCompatible(inputShapes);
            if (graph.Outputs.Count != 1)
                throw new ShapeException($"model '{Name}' has {graph.Outputs.Count} outputs and cannot be used as a layer of another model.");
            return graph.Outputs[0].Shape;
        }
        Tracked();
        Shape? output = null;
        tracedShapes = Tracing.Run(() => output = TraceOutputShape(inputShapes));
        builtOutputShape = output;
        return output!.Value;
    }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape) => ComputeOutputShape([inputShape]);

    /// <inheritdoc/>
    public override int MaxInputs => graph?.Inputs.Count ?? 1;

    /// <inheritdoc/>
    public override int MinInputs => graph?.Inputs.Count ?? 1;

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => true;

    /// <summary>
    /// The forward computation on internal-layout tensors. Functional models run their graph; subclassed models
    /// override this, calling their layers' <see cref="Layer.Apply(Tensor)"/>.
    /// </summary>
    /// <exception cref="GraphException">A subclassed model did not override Call.</exception>
    public override Tensor Call(Tensor inputs)
    {
        if (graph is null)
            throw new GraphException($"model '{Name}' ({GetType().Name}) has no graph: a subclassed model must override Call(Tensor).");
        return Forward([inputs])[0];
    }

    /// <inheritdoc/>
    public override Tensor Call(IReadOnlyList<Tensor> inputs)
    {
        if (graph is null) return base.Call(inputs);
        return Forward(inputs)[0];
    }

    /// <summary>
    /// The layout in which Fit, Evaluate and Predict take this model's data and Predict returns 4-D outputs: its (first)
    /// Input's <see cref="InputLayer.DataFormat"/>, channels-last unless the Input was declared channels-first; a
    /// subclassed model without a graph takes channels-last data.
    /// </summary>
    public DataFormat InputDataFormat =>
        graph is { Inputs.Count: > 0 } g && g.Inputs[0].Layer is InputLayer input ? input.DataFormat : DataFormat.ChannelsLast;

    /// <summary>
    /// Applies the model to one tensor per input and returns every output, Keras' <c>model([a, b])</c> for a model
    /// with several inputs or outputs. With <see cref="DataFormat.ChannelsLast"/> each 4-D input is read as
    /// (N, H, W, C) and each 4-D output is returned as (N, H, W, C); with <see cref="DataFormat.ChannelsFirst"/> they
    /// are (N, C, H, W), ConvKit's internal layout. Other ranks are the same in both. Records gradients when autograd
    /// is on, as <see cref="Layer.Apply(Tensor)"/> does; for batched inference use Predict.
    /// </summary>
    /// <param name="inputs">One tensor per model input, in the order of the model's inputs.</param>
    /// <param name="dataFormat">The layout of 4-D inputs and outputs.</param>
    /// <returns>One tensor per model output, owned by the caller.</returns>
    /// <exception cref="ShapeException">The number or shapes of the inputs do not match the model; a shape that
    /// looks channels-last given as channels-first (or the reverse) is named as such.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="dataFormat"/> is not a defined value.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public IReadOnlyList<Tensor> ApplyAll(IReadOnlyList<Tensor> inputs, DataFormat dataFormat)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (dataFormat == DataFormat.ChannelsFirst) return Forward(inputs);
        if (dataFormat != DataFormat.ChannelsLast)
            throw new InvalidOptionException(nameof(dataFormat), $"model '{Name}': dataFormat must be ChannelsLast or ChannelsFirst; received {(int)dataFormat}.");
        using var scope = NewDisposeScope();
        var internalInputs = inputs.Select(Layout.FromKeras).ToArray();
        var outputs = Forward(internalInputs);
        var result = new Tensor[outputs.Count];
        for (int i = 0; i < outputs.Count; i++)
            result[i] = Layout.ToKeras(outputs[i]).MoveToOuterDisposeScope();
        return result;
    }

    /// <summary>
    /// Runs the model on internal-layout tensors and returns every output (functional models). When no gradient is
    /// recorded and no layer is in training mode, this runs the model's cached <see cref="InferenceModel"/> (the inference
    /// plan with <see cref="InferenceOptimizations"/>). Internal: users call Apply/ApplyAll (Keras' <c>model(x)</c>),
    /// Predict, or override Call in a subclassed model.
    /// </summary>
    internal IReadOnlyList<Tensor> Forward(IReadOnlyList<Tensor> inputs)
    {
        ThrowIfDisposed();
        CheckForwardInputs(inputs);
        if (graph is null || !InferenceOptimizations || is_grad_enabled() || AnyLayerTraining()) return ForwardLayers(inputs);
        var inference = inferenceSlot.Acquire(this, graph, optimized: true);
        try { return inference.Run(inputs); }
        finally { inference.Release(); }
    }

    bool AnyLayerTraining() => IsTraining || graph!.Layers.Any(l => l.IsTraining);

    /// <summary>Every layer as written (no inference plan), in the current mode.</summary>
    internal IReadOnlyList<Tensor> ForwardLayers(IReadOnlyList<Tensor> inputs) =>
        graph is null ? [Apply(inputs[0])] : graph.Run(inputs);

    void CheckForwardInputs(IReadOnlyList<Tensor> inputs)
    {
        if (graph is null)
        {
            if (inputs.Count != 1) throw new ShapeException($"model '{Name}' takes one input; received {inputs.Count}.");
            return;
        }
        if (inputs.Count != graph.Inputs.Count)
            throw new ShapeException($"model '{Name}' takes {graph.Inputs.Count} inputs; received {inputs.Count}.");
        for (int i = 0; i < inputs.Count; i++)
        {
            var expected = graph.Inputs[i].Shape;
            var got = Layout.ToKeras(inputs[i].shape);
            bool ok = got.Rank == expected.Rank;
            for (int d = 0; ok && d < got.Rank; d++) ok = expected[d] == Shape.Unknown || expected[d] == got[d];
            if (!ok)
                throw new ShapeException($"model '{Name}': input '{graph.Inputs[i].Layer.Name}' expects {expected.ToBatchString()}; received {got.ToBatchString()}."
                    + (expected.Rank == 3 ? Layout.NhwcHint(inputs[i].shape, expected[2]) : ""));
        }
    }

    readonly InferenceSlot inferenceSlot = new();

    /// <summary>The folded and packed convolution kernels of this model's inference models, shared by them.</summary>
    internal KernelCache InferenceKernels { get; } = new();

    /// <summary>Whether <see cref="Layer"/>'s Dispose has run on this model.</summary>
    internal bool IsDisposed { get; private set; }

    /// <summary>Throws <see cref="ObjectDisposedException"/> naming the model once it was disposed.</summary>
    private protected void ThrowIfDisposed()
    {
        if (IsDisposed) throw new ObjectDisposedException(GetType().Name, $"model '{Name}' was disposed and cannot be used any more.");
    }

    /// <summary>
    /// A thread-safe, eval-only view of this model for inference (see <see cref="InferenceModel"/>): prepared from the
    /// weights as they are now (folded and packed kernels with <see cref="InferenceOptimizations"/>), callable from many
    /// threads at once. The caller owns (and disposes) it. <see cref="Predict"/> keeps such an object itself; make your
    /// own to share one prepared model between threads, as a server does.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    /// <exception cref="GraphException">The model is not built yet.</exception>
    public InferenceModel AsInferenceModel()
    {
        ThrowIfDisposed();
        if (!IsBuilt) throw NotBuilt();
        return new InferenceModel(this, graph, InferenceOptimizations, InferenceEngine);
    }

    /// <summary>
    /// Whether a functional model runs an optimized plan when no gradient is recorded (Predict, Evaluate, validation,
    /// or your own code under <c>no_grad</c>/<c>inference_mode</c>): BatchNormalization folded into the preceding
    /// Conv2D (weights cached and refreshed whenever a source weight is written), ZeroPadding2D folded into the next
    /// 'valid' Conv2D, activations and Add computed in place where nothing else reads their input. Outputs agree with
    /// the layer-by-layer run to FP32 rounding (about 1e-6 relative). Default true; false runs every layer as written.
    /// </summary>
    public bool InferenceOptimizations { get; set; } = true;

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing && !IsDisposed)
        {
            IsDisposed = true;
            inferenceSlot.Dispose();
            fusedHead?.Dispose();
            InferenceKernels.Dispose();
        }
        base.Dispose(disposing);
    }

    /// <summary>Output shapes recorded for each layer of a subclassed model while it was built.</summary>
    internal IReadOnlyList<Shape>? TracedShapes(Layer layer) => TracedCalls(layer)?.Select(c => c.Output).ToArray();

    /// <summary>Eager calls recorded for a layer of a subclassed model while it was built.</summary>
    internal IReadOnlyList<TracedCall>? TracedCalls(Layer layer) =>
        tracedShapes is not null && tracedShapes.TryGetValue(layer, out var l) ? l : null;

    internal FunctionalGraph? GraphForSummary => graph;

    List<Layer> Tracked()
    {
        if (tracked is not null) return tracked;
        tracked = [];
        // A subclass's layers are its fields (Keras tracks attribute assignment); register them in declaration order.
        var chain = new Stack<Type>();
        for (var t = GetType(); t is not null && t != typeof(Model); t = t.BaseType) chain.Push(t);
        foreach (var type in chain)
        {
            foreach (var field in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            {
                var fieldName = FieldName(field);
                switch (field.GetValue(this))
                {
                    case Layer layer:
                        Track(fieldName, layer);
                        break;
                    case IEnumerable<Layer> list:
                        int i = 0;
                        foreach (var layer in list) Track($"{fieldName}_{i++}", layer);
                        break;
                }
            }
        }
        return tracked;
    }

    void Track(string key, Layer layer)
    {
        if (tracked!.Contains(layer)) return;
        tracked.Add(layer);
        register_module(key, layer);
        WeightsChanged();
    }

    static string FieldName(FieldInfo f)
    {
        // Auto-property backing fields are named "<Prop>k__BackingField".
        if (f.Name.StartsWith('<') && f.Name.IndexOf('>') is > 1 and var end) return f.Name[1..end];
        return f.Name.TrimStart('_');
    }

    FunctionalGraph RequireGraph() => graph ?? throw (IsBuilt
        ? new GraphException($"model '{Name}' is a subclassed model: it has no symbolic inputs and outputs.")
        : NotBuilt());

    private protected GraphException NotBuilt() => new(
        $"model '{Name}' has not been built yet. Build it first with Build(inputShape), give its first layer an input shape, or call it on data.");

    /// <summary>The Keras-style summary table.</summary>
    /// <exception cref="GraphException">The model is not built yet.</exception>
    public string Summary(SummaryOptions? options = null) => SummaryFormatter.Format(ModelSummary.Of(this), options ?? new SummaryOptions());

    /// <summary>Prints <see cref="Summary"/> to <paramref name="output"/> (Keras' <c>print_fn</c>), standard output by default.</summary>
    /// <param name="options">Columns and width.</param>
    /// <param name="output">Where to print; null for standard output.</param>
    public void PrintSummary(SummaryOptions? options = null, TextWriter? output = null) => (output ?? DefaultOutput.Out).Write(Summary(options));
}
