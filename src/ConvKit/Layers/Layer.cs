using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using ConvKit.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Layers;

/// <summary>One weight of a layer, as Keras lists it (kernel, bias, gamma, beta, moving_mean, moving_variance).</summary>
/// <param name="Name">Keras' weight name within the layer, e.g. <c>kernel</c>.</param>
/// <param name="Value">The tensor (a parameter when trainable, a buffer otherwise), in ConvKit's internal layout.</param>
/// <param name="IsTrainableWeight">Whether the weight is trained by gradient (moving statistics are not).</param>
/// <param name="Owner">The layer that owns it.</param>
public sealed record LayerWeight(string Name, Tensor Value, bool IsTrainableWeight, Layer Owner)
{
    /// <summary>True when the optimizer updates it: a trainable weight of a trainable layer.</summary>
    public bool Trainable => IsTrainableWeight && Owner.Trainable;

    /// <summary>Number of scalars.</summary>
    public long Count => Value.numel();
}

/// <summary>
/// Base class of every ConvKit layer, with Keras' life cycle: the constructor takes and validates the configuration,
/// <see cref="Build(Shape)"/> creates the weights once the input shape is known, <see cref="Call(Tensor)"/> computes,
/// and <see cref="ComputeOutputShape(Shape)"/> is pure shape arithmetic.
/// </summary>
/// <remarks>
/// Invoke a layer with <see cref="Apply(Tensor)"/> on a tensor (eager; builds on first use) or with
/// <see cref="Apply(SymbolicTensor)"/> on a symbolic tensor to build a functional graph. Shapes are Keras'
/// channels-last sample shapes; tensors inside <see cref="Call(Tensor)"/> are in ConvKit's internal layout
/// (images NCHW, see <see cref="Layout"/>). Training mode follows TorchSharp's <c>train()</c>/<c>eval()</c>.
/// </remarks>
public abstract class Layer : nn.Module
{
    readonly List<LayerWeight> weights = [];
    bool trainable = true;

    /// <summary>Creates a layer. A null name gets Keras' automatic name (<c>conv2d</c>, <c>conv2d_1</c>, ...).</summary>
    /// <exception cref="LayerArgumentException">The name is empty or contains '.' or '/'.</exception>
    protected Layer(string? name) : base("layer")
    {
        if (name is not null && (name.Length == 0 || name.Contains('.') || name.Contains('/')))
            throw new LayerArgumentException(GetType().Name, "name", $"'{name}' must be non-empty and contain neither '.' nor '/'.");
        this.name = name ?? Backend.UniqueName(DefaultNamePrefix);
    }

    /// <summary>The prefix of automatic names: the snake_case class name, as Keras derives it.</summary>
    protected virtual string DefaultNamePrefix => Backend.ToSnakeCase(GetType().Name);

    /// <summary>The layer's name, unique within a model.</summary>
    public string Name => name!;

    /// <summary>How the layer describes itself in messages: <c>Conv2D 'conv2d_1'</c>.</summary>
    public string Describe => $"{ClassName} '{Name}'";

    /// <summary>The Keras class name shown in summaries (aliases such as MaxPool2D report MaxPooling2D).</summary>
    public virtual string ClassName => GetType().Name;

    /// <summary>False freezes every weight of the layer (and of layers nested in it).</summary>
    public bool Trainable
    {
        get => trainable;
        set
        {
            trainable = value;
            foreach (var w in weights)
                if (w.IsTrainableWeight) w.Value.requires_grad = value;
            foreach (var child in SubLayers) child.Trainable = value;
        }
    }

    /// <summary>
    /// The sample shape this layer expects when it is the first layer of a <see cref="Sequential"/> (Keras'
    /// <c>input_shape</c> argument); null otherwise.
    /// </summary>
    public Shape? InputShape { get; init; }

    /// <summary>Whether <see cref="Build(Shape)"/> has run.</summary>
    public bool IsBuilt { get; private set; }

    /// <summary>The input shapes the layer was built for.</summary>
    public IReadOnlyList<Shape>? BuiltInputShapes { get; private set; }

    /// <summary>Minimum number of inputs (2 for merge layers).</summary>
    public virtual int MinInputs => 1;

    /// <summary>Maximum number of inputs.</summary>
    public virtual int MaxInputs => 1;

    /// <summary>Graph nodes created by calls on symbolic tensors, in call order.</summary>
    public IReadOnlyList<Node> InboundNodes => inboundNodes;

    internal readonly List<Node> inboundNodes = [];

    /// <summary>The device new weights are created on; follows <c>to(device)</c>.</summary>
    protected Device WeightDevice { get; private set; } = CPU;

    /// <summary>
    /// Whether the layer computes in training mode now: TorchSharp's <c>training</c> flag (<c>train()</c>/<c>eval()</c>),
    /// unless the current thread runs inference (Predict, Evaluate, validation in Fit, an
    /// <see cref="Models.Inference.InferenceModel"/>), which never switches that shared flag. Layers that behave
    /// differently in training (dropout, batch normalization, augmentation, your own) must read this, not
    /// <c>training</c>, or concurrent Predict calls see another thread's mode.
    /// </summary>
    protected internal bool IsTraining => training && !Models.Inference.InferenceContext.Active;

    // ---------------------------------------------------------------- life cycle (override points)

    /// <summary>Creates the weights for a single input of <paramref name="inputShape"/>. Keras' <c>build</c>.</summary>
    protected virtual void Build(Shape inputShape) { }

    /// <summary>Creates the weights for several inputs; by default requires one and calls <see cref="Build(Shape)"/>.</summary>
    protected virtual void Build(IReadOnlyList<Shape> inputShapes) => Build(inputShapes[0]);

    /// <summary>
    /// The output shape for an input shape, validating it. The default builds the layer and runs
    /// <see cref="Call(Tensor)"/> on a one-sample zero batch, as Keras infers shapes of custom layers.
    /// </summary>
    /// <exception cref="ShapeException">The layer cannot take this input.</exception>
    public virtual Shape ComputeOutputShape(Shape inputShape) => TraceOutputShape([inputShape]);

    /// <summary>The output shape for several inputs; by default requires one.</summary>
    /// <exception cref="ShapeException">The layer cannot take these inputs.</exception>
    public virtual Shape ComputeOutputShape(IReadOnlyList<Shape> inputShapes)
    {
        CheckInputCount(inputShapes.Count);
        return inputShapes.Count == 1 ? ComputeOutputShape(inputShapes[0]) : TraceOutputShape(inputShapes);
    }

    /// <summary>The computation on one input in ConvKit's internal layout. Keras' <c>call</c>.</summary>
    /// <exception cref="ShapeException">The layer takes several inputs.</exception>
    public virtual Tensor Call(Tensor inputs) =>
        throw new ShapeException($"{Describe} takes {MinInputs} to {MaxInputs} inputs; it was called with one tensor.");

    /// <summary>The computation on several inputs; by default requires one and calls <see cref="Call(Tensor)"/>.</summary>
    public virtual Tensor Call(IReadOnlyList<Tensor> inputs)
    {
        CheckInputCount(inputs.Count);
        return Call(inputs[0]);
    }

    /// <summary>Multiply-accumulate operations per sample, for the summary. Zero unless the layer overrides it.</summary>
    public virtual long CountMacs(IReadOnlyList<Shape> inputShapes, Shape outputShape) => 0;

    /// <summary>
    /// How the layer moves receptive fields: null for element-wise layers (the field passes through), otherwise the
    /// window (kernel, stride, dilation, padding before) along height and width. Layers that mix all positions
    /// (Flatten, global pooling) return <see cref="WindowInfo.Global"/>.
    /// </summary>
    public virtual WindowInfo? Window(IReadOnlyList<Shape> inputShapes) => null;

    // ---------------------------------------------------------------- weights

    /// <summary>
    /// Creates and registers a weight. Trainable weights become parameters; others (moving statistics) buffers, saved
    /// with the model but not trained.
    /// </summary>
    protected Tensor AddWeight(string weightName, long[] shape, Initializer initializer, long fanIn, long fanOut, bool trainable = true)
    {
        Tensor value;
        // A layer may build lazily inside Predict (inference mode): its weights must still be ordinary tensors.
        using (inference_mode(false))
        using (no_grad())
        {
            // Weights outlive whatever dispose scope is open when a layer builds lazily.
            value = empty(shape, dtype: float32, device: WeightDevice).DetachFromDisposeScope();
            initializer.Fill(value, fanIn, fanOut);
        }
        if (trainable)
        {
            var p = new TorchSharp.Modules.Parameter(value, requires_grad: this.trainable);
            p.DetachFromDisposeScope();
            register_parameter(weightName, p);
            value = p;
        }
        else
        {
            register_buffer(weightName, value, persistent: true);
        }
        weights.Add(new LayerWeight(weightName, value, trainable, this));
        WeightsChanged();
        return value;
    }

    static long weightStructure;

    /// <summary>
    /// A process-wide count of changes to which tensors are some layer's weights (a weight added, a layer registered
    /// into a model, weights replaced by a move or conversion). Caches that hold a model's weight tensors (an
    /// <see cref="Models.Inference.InferenceModel"/>) walk the model's weights again only when it moved; in-place
    /// writes are caught by each tensor's version counter instead.
    /// </summary>
    internal static long WeightStructure => Volatile.Read(ref weightStructure);

    /// <summary>Counts a change to <see cref="WeightStructure"/>.</summary>
    internal static void WeightsChanged() => Interlocked.Increment(ref weightStructure);

    /// <summary>This layer's own weights, in Keras order.</summary>
    public IReadOnlyList<LayerWeight> OwnWeights => weights;

    /// <summary>All weights of the layer and of the layers nested in it.</summary>
    public IEnumerable<LayerWeight> Weights => weights.Concat(SubLayers.SelectMany(l => l.Weights));

    /// <summary>Weights the optimizer updates.</summary>
    public IEnumerable<LayerWeight> TrainableWeights => Weights.Where(w => w.Trainable);

    /// <summary>Weights kept out of training (moving statistics, frozen layers).</summary>
    public IEnumerable<LayerWeight> NonTrainableWeights => Weights.Where(w => !w.Trainable);

    /// <summary>Total number of weight scalars, Keras' <c>count_params</c>.</summary>
    public long CountParams() => Weights.Sum(w => w.Count);

    /// <summary>Layers registered inside this one (the layers of a model, the blocks of a composite layer).</summary>
    public virtual IEnumerable<Layer> SubLayers => named_children().Select(c => c.module).OfType<Layer>();

    /// <summary>Regularization penalties of this layer and its sub-layers, to add to the loss.</summary>
    public virtual IEnumerable<Tensor> RegularizationLosses() => SubLayers.SelectMany(l => l.RegularizationLosses());

    // ---------------------------------------------------------------- invocation

    /// <summary>
    /// Applies the layer to a tensor in ConvKit's internal layout ((N, C, H, W) for images), building it on first use.
    /// For channels-last data, as Keras' <c>model(x)</c> takes it, use <see cref="Apply(Tensor, DataFormat)"/>.
    /// </summary>
    /// <exception cref="ShapeException">The tensor's shape does not fit the layer; when it looks channels-last, the message says so.</exception>
    public Tensor Apply(Tensor input) => Apply([input]);

    /// <summary>
    /// Applies the layer to a tensor in the given layout, Keras' <c>layer(x)</c> / <c>model(x)</c>: with
    /// <see cref="DataFormat.ChannelsLast"/> a 4-D input is read as (N, H, W, C) and a 4-D output is returned as
    /// (N, H, W, C); other ranks are the same in both layouts. <see cref="DataFormat.ChannelsFirst"/> is
    /// <see cref="Apply(Tensor)"/>.
    /// </summary>
    /// <exception cref="ShapeException">The tensor's shape does not fit the layer.</exception>
    public Tensor Apply(Tensor input, DataFormat dataFormat)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (dataFormat == DataFormat.ChannelsFirst) return Apply(input);
        if (dataFormat != DataFormat.ChannelsLast)
            throw new LayerArgumentException(Describe, "dataFormat", $"must be ChannelsLast or ChannelsFirst; received {(int)dataFormat}.");
        using var internalInput = Layout.FromKeras(input);
        var output = Apply(internalInput);
        if (output.dim() != 4) return output;
        using (output) return Layout.ToKeras(output);
    }

    /// <summary>Applies the layer to several tensors (merge layers), building it on first use.</summary>
    /// <exception cref="ShapeException">The tensors' shapes do not fit the layer.</exception>
    public Tensor Apply(params Tensor[] inputs)
    {
        CheckInputCount(inputs.Length);
        var shapes = new Shape[inputs.Length];
        for (int i = 0; i < inputs.Length; i++) shapes[i] = Layout.ToKeras(inputs[i].shape);
        if (!IsBuilt) EnsureBuilt(shapes, trackDevice: inputs[0].device);
        else
        {
            try { CheckCompatible(shapes); }
            catch (ShapeException e) when (NhwcHint(inputs) is { Length: > 0 } hint) { throw new ShapeException(e.Message + hint); }
        }
        Tensor result;
        try
        {
            result = inputs.Length == 1 ? Call(inputs[0]) : Call(inputs);
        }
        catch (ExternalException e)
        {
            throw new ConvKitException($"{Describe} failed on input {string.Join(", ", shapes.Select(s => s.ToBatchString()))}: {e.Message}", e);
        }
        if (Tracing.Active) Tracing.Record(this, shapes, Layout.ToKeras(result.shape));
        return result;
    }

    // The sentence that says channels-last data was given to an internal-layout call, or "".
    string NhwcHint(Tensor[] inputs)
    {
        var built = BuiltInputShapes!;
        for (int i = 0; i < inputs.Length && i < built.Count; i++)
            if (built[i].Rank == 3 && Layout.NhwcHint(inputs[i].shape, built[i][2]) is { Length: > 0 } hint) return hint;
        return "";
    }

    /// <summary>Applies the layer to a symbolic tensor, adding a node to the functional graph.</summary>
    /// <exception cref="ShapeException">The input shape does not fit the layer.</exception>
    public SymbolicTensor Apply(SymbolicTensor input) => Apply([input]);

    /// <summary>Applies a merge layer to several symbolic tensors.</summary>
    /// <exception cref="ShapeException">The input shapes do not fit the layer.</exception>
    public SymbolicTensor Apply(params SymbolicTensor[] inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (this is InputLayer) throw new GraphException($"{Describe} cannot be called on tensors; it is where a graph starts.");
        CheckInputCount(inputs.Length);
        var shapes = inputs.Select(t => t.Shape).ToArray();
        Shape output = IsBuilt ? CheckCompatibleAndCompute(shapes) : EnsureBuilt(shapes, trackDevice: null);
        var node = new Node(this, inputs, output, inboundNodes.Count);
        inboundNodes.Add(node);
        return node.Output;
    }

    Shape CheckCompatibleAndCompute(Shape[] shapes)
    {
        CheckCompatible(shapes);
        return ComputeOutputShape(shapes);
    }

    internal Shape EnsureBuilt(IReadOnlyList<Shape> shapes, Device? trackDevice)
    {
        if (trackDevice is not null) WeightDevice = trackDevice;
        var output = ComputeOutputShape(shapes);
        MarkBuilt(shapes);
        return output;
    }

    /// <summary>Marks the layer built for <paramref name="shapes"/> without calling Build (graphs built by construction).</summary>
    internal void SetBuilt(IReadOnlyList<Shape> shapes)
    {
        BuiltInputShapes = shapes.ToArray();
        IsBuilt = true;
    }

    void MarkBuilt(IReadOnlyList<Shape> shapes)
    {
        if (IsBuilt) return;
        if (shapes.Count == 1) Build(shapes[0]); else Build(shapes);
        BuiltInputShapes = shapes.ToArray();
        IsBuilt = true;
    }

    private protected Shape TraceOutputShape(IReadOnlyList<Shape> shapes)
    {
        MarkBuilt(shapes);
        foreach (var s in shapes)
            if (!s.IsFullyDefined) throw new ShapeException($"{Describe}: cannot infer the output shape of input {s.ToBatchString()} with unknown dimensions; override ComputeOutputShape.");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var xs = shapes.Select(s => zeros(Layout.ToInternal(s, 1), device: WeightDevice)).ToArray();
        // Traced in inference (no dropout, no moving-statistics update) without switching the shared training flag.
        using var inference = Models.Inference.InferenceContext.Enter();
        try
        {
            var y = xs.Length == 1 ? Call(xs[0]) : Call(xs);
            return Layout.ToKeras(y.shape);
        }
        catch (ExternalException e)
        {
            throw new ShapeException($"{Describe} cannot take input {string.Join(", ", shapes.Select(s => s.ToBatchString()))}: {e.Message}");
        }
    }

    void CheckInputCount(int n)
    {
        if (n < MinInputs || n > MaxInputs)
            throw new ShapeException(MinInputs == MaxInputs
                ? $"{Describe} takes {MinInputs} input{(MinInputs == 1 ? "" : "s")}; received {n}."
                : $"{Describe} takes {MinInputs} to {(MaxInputs == int.MaxValue ? "any number of" : MaxInputs.ToString(System.Globalization.CultureInfo.InvariantCulture))} inputs; received {n}.");
    }

    /// <summary>Checks a new input against the shapes the layer was built for (unknown dimensions match anything).</summary>
    protected virtual void CheckCompatible(IReadOnlyList<Shape> shapes)
    {
        var built = BuiltInputShapes!;
        if (built.Count != shapes.Count)
            throw new ShapeException($"{Describe} was built for {built.Count} inputs; received {shapes.Count}.");
        for (int i = 0; i < shapes.Count; i++)
        {
            var (a, b) = (built[i], shapes[i]);
            bool ok = a.Rank == b.Rank;
            for (int d = 0; ok && d < a.Rank; d++)
                ok = a[d] == Shape.Unknown || b[d] == Shape.Unknown || a[d] == b[d] || !FixedDimension(a.Rank, d);
            if (!ok)
                throw new ShapeException($"{Describe} was built for input {a.ToBatchString()}; received incompatible input {b.ToBatchString()}.");
        }
    }

    /// <summary>
    /// Whether dimension <paramref name="d"/> of a rank-<paramref name="rank"/> input is fixed by the weights. By default
    /// only the last (channels/features) is; spatial sizes may change between calls.
    /// </summary>
    protected virtual bool FixedDimension(int rank, int d) => d == rank - 1;

    /// <summary>Moves the weights; records the device so that lazily built weights land beside the others.</summary>
    protected override nn.Module _to(Device device, ScalarType dtype, bool non_blocking)
    {
        WeightDevice = device;
        var result = base._to(device, dtype, non_blocking);
        RebindWeights();
        return result;
    }

    /// <summary>Moves the weights; records the device so that lazily built weights land beside the others.</summary>
    protected override nn.Module _to(DeviceType deviceType, int deviceIndex, bool non_blocking)
    {
        WeightDevice = new Device(deviceType, deviceIndex);
        var result = base._to(deviceType, deviceIndex, non_blocking);
        RebindWeights();
        return result;
    }

    /// <summary>Converts the weights' element type.</summary>
    protected override nn.Module _to(ScalarType dtype, bool non_blocking)
    {
        var result = base._to(dtype, non_blocking);
        RebindWeights();
        return result;
    }

    // TorchSharp replaces parameter and buffer handles when it moves or converts them: refresh what the layer holds.
    void RebindWeights()
    {
        if (weights.Count == 0) return;
        var parameters = named_parameters(recurse: false).ToDictionary(p => p.name, p => (Tensor)p.parameter);
        var buffers = named_buffers(recurse: false).ToDictionary(b => b.name, b => b.buffer);
        for (int i = 0; i < weights.Count; i++)
        {
            var w = weights[i];
            var current = (w.IsTrainableWeight ? parameters : buffers).GetValueOrDefault(w.Name);
            if (current is not null && !ReferenceEquals(current, w.Value)) weights[i] = w with { Value = current };
        }
        WeightsChanged();
        OnWeightsRebound();
    }

    /// <summary>
    /// Called after a move or conversion replaced weight tensors; layers that keep references to their weights
    /// refresh them here (with <see cref="GetWeight"/>).
    /// </summary>
    protected virtual void OnWeightsRebound() { }

    /// <summary>The current tensor of one of this layer's weights, by Keras name; null when the layer has none.</summary>
    protected Tensor? GetWeight(string weightName) => weights.FirstOrDefault(w => w.Name == weightName)?.Value;

    /// <summary>An error naming this layer and an argument.</summary>
    protected internal LayerArgumentException ArgumentError(string argument, string message) => new(Describe, argument, message);

    /// <inheritdoc/>
    public override string ToString() => Describe;
}

/// <summary>How a layer slides a window over height and width, for receptive-field analysis.</summary>
/// <param name="Kernel">Window size.</param>
/// <param name="Stride">Step.</param>
/// <param name="Dilation">Tap spacing.</param>
/// <param name="PadBefore">Padding before (top, left).</param>
/// <param name="IsGlobal">The output depends on every input position.</param>
public readonly record struct WindowInfo(Size2 Kernel, Size2 Stride, Size2 Dilation, Size2 PadBefore, bool IsGlobal = false)
{
    /// <summary>A layer whose outputs see the whole input.</summary>
    public static WindowInfo Global => new(1, 1, 1, 0, true);
}

/// <summary>One eager call seen while tracing: input and output sample shapes.</summary>
internal sealed record TracedCall(Shape[] Inputs, Shape Output);

/// <summary>Records eager calls while a subclassed model is traced for its summary.</summary>
internal static class Tracing
{
    [ThreadStatic] static Dictionary<Layer, List<TracedCall>>? records;

    public static bool Active => records is not null;

    public static void Record(Layer layer, Shape[] inputs, Shape output)
    {
        if (!records!.TryGetValue(layer, out var list)) records[layer] = list = [];
        list.Add(new TracedCall(inputs, output));
    }

    public static Dictionary<Layer, List<TracedCall>> Run(Action action)
    {
        var previous = records;
        records = new Dictionary<Layer, List<TracedCall>>(ReferenceEqualityComparer.Instance);
        try
        {
            action();
            return records;
        }
        finally
        {
            records = previous;
        }
    }
}
