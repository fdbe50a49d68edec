using ConvKit.Layers;

namespace ConvKit.Models;

/// <summary>
/// A placeholder for a batch of tensors in a functional graph (Keras' KerasTensor): it knows its sample shape and the
/// layer call that produces it. Create graph inputs with <see cref="Input"/>, then call layers on them with
/// <see cref="Layer.Apply(SymbolicTensor)"/>.
/// </summary>
public class SymbolicTensor
{
    /// <summary>Wraps the output of a node.</summary>
    internal SymbolicTensor(Node node, Shape shape)
    {
        Node = node;
        Shape = shape;
    }

    /// <summary>Keras' sample shape (without the batch axis).</summary>
    public Shape Shape { get; }

    /// <summary>The layer call that produces this tensor.</summary>
    public Node Node { get; }

    /// <summary>The producing layer.</summary>
    public Layer Layer => Node.Layer;

    /// <summary>Two symbolic tensors are the same when they are the output of the same node.</summary>
    public override bool Equals(object? obj) => obj is SymbolicTensor t && ReferenceEquals(t.Node, Node);

    /// <inheritdoc/>
    public override int GetHashCode() => System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(Node);

    /// <inheritdoc/>
    public override string ToString() => $"SymbolicTensor(shape={Shape.ToBatchString()}, produced by {Layer.Describe})";
}

/// <summary>One call of a layer in a functional graph: its inputs and its output.</summary>
public sealed class Node
{
    internal Node(Layer layer, IReadOnlyList<SymbolicTensor> inputs, Shape outputShape, int index)
    {
        Layer = layer;
        Inputs = inputs;
        Index = index;
        Output = new SymbolicTensor(this, outputShape);
    }

    /// <summary>The layer called.</summary>
    public Layer Layer { get; }

    /// <summary>The tensors it was called on (empty for an input layer).</summary>
    public IReadOnlyList<SymbolicTensor> Inputs { get; }

    /// <summary>The result.</summary>
    public SymbolicTensor Output { get; }

    /// <summary>Position of this call among the layer's calls (Keras' node index).</summary>
    public int Index { get; }

    /// <summary>True for the node of an <see cref="InputLayer"/>.</summary>
    public bool IsInput => Layer is InputLayer;

    /// <inheritdoc/>
    public override string ToString() => $"{Layer.Name}[{Index}]";
}

/// <summary>
/// A graph input, Keras' <c>Input(shape=...)</c>: <c>var inputs = new Input(shape: (28, 28, 1));</c>.
/// Also usable as the first element of a <see cref="Sequential"/>.
/// </summary>
public sealed class Input : SymbolicTensor
{
    /// <summary>
    /// Creates an input of the given sample shape (no batch axis) in <paramref name="dataFormat"/>'s layout: (H, W, C)
    /// channels-last by default, (C, H, W) with <see cref="DataFormat.ChannelsFirst"/>. The model's Fit, Evaluate and
    /// Predict then take (N, H, W, C) or (N, C, H, W) batches.
    /// </summary>
    /// <exception cref="LayerArgumentException">The shape has no dimension, or the data format is not a defined value.</exception>
    public Input(Shape shape, string? name = null, DataFormat dataFormat = DataFormat.ChannelsLast) : this(new InputLayer(shape, name, dataFormat)) { }

    /// <summary>Creates an input from TorchSharp's long dimensions, e.g. <c>new Input(x.shape[1..])</c> for a batch <c>x</c>.</summary>
    /// <exception cref="ShapeException">A dimension is 0, below -1, or too large.</exception>
    public Input(ReadOnlySpan<long> shape, string? name = null, DataFormat dataFormat = DataFormat.ChannelsLast)
        : this(new InputLayer(new Shape(shape), name, dataFormat)) { }

    Input(InputLayer layer) : base(layer.CreateNode(), layer.Shape) => InputLayer = layer;

    /// <summary>The layer behind this input.</summary>
    public InputLayer InputLayer { get; }

    /// <summary>Lets an input stand where a layer is expected, e.g. as the first element of a Sequential.</summary>
    public static implicit operator Layer(Input input) => input.InputLayer;
}
