using ConvKit.Layers;

namespace ConvKit.Models;

/// <summary>
/// A plain stack of layers, Keras' <c>Sequential</c>. Once the input shape is known (an <see cref="Input"/> first, an
/// <c>inputShape</c> on the first layer, <see cref="Model.Build(Shape[])"/>, or the first data it sees) it becomes a
/// functional graph, so summary, training and saving work as for any functional model, and a layer that does not fit
/// is reported the moment it is added.
/// </summary>
public class Sequential : Model
{
    readonly List<Layer> layers = [];
    InputLayer? input;
    SymbolicTensor? lastOutput;

    /// <summary>Creates a Sequential model from layers (an <see cref="Input"/> may come first).</summary>
    /// <exception cref="ShapeException">A layer does not fit the output of the one before.</exception>
    public Sequential(IEnumerable<Layer>? layers = null, string? name = null) : base(name)
    {
        if (layers is null) return;
        foreach (var layer in layers) Add(layer);
    }

    /// <summary>The layers, without the input layer (as Keras lists them).</summary>
    public override IReadOnlyList<Layer> Layers => layers;

    /// <summary>Appends a layer.</summary>
    /// <exception cref="ShapeException">The layer does not fit the current output.</exception>
    /// <exception cref="GraphException">The layer is already in the model, or its name is taken.</exception>
    public void Add(Layer layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if (layer is InputLayer il)
        {
            if (input is not null || layers.Count > 0)
                throw new GraphException($"Sequential '{Name}': an Input can only be the first element.");
            input = il;
            lastOutput = il.Output;
            return;
        }
        if (layers.Contains(layer)) throw new GraphException($"Sequential '{Name}' already contains {layer.Describe}.");
        if (layers.Any(l => l.Name == layer.Name) || input?.Name == layer.Name)
            throw new GraphException($"Sequential '{Name}': the name \"{layer.Name}\" is already used. All layer names should be unique.");
        if (layer.MinInputs > 1) throw new ShapeException($"Sequential '{Name}': {layer.Describe} merges several inputs and cannot be part of a Sequential model; use the functional API.");
        if (lastOutput is null && layers.Count == 0 && layer.InputShape is { } declared)
        {
            input = new InputLayer(declared, name: layer.Name + "_input");
            lastOutput = input.Output;
        }
        if (lastOutput is not null)
        {
            var next = layer.Apply(lastOutput); // throws before anything changes when the layer does not fit
            layers.Add(layer);
            lastOutput = next;
            SetGraph([input!.Output], [lastOutput]);
        }
        else
        {
            layers.Add(layer);
        }
    }

    /// <summary>Adds an input (Keras 3 style: <c>model.Add(new Input(shape: (227, 227, 3)))</c>).</summary>
    public void Add(Input input) => Add(input.InputLayer);

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(IReadOnlyList<Shape> inputShapes)
    {
        if (Graph is null) BuildGraph(inputShapes);
        return base.ComputeOutputShape(inputShapes);
    }

    void BuildGraph(IReadOnlyList<Shape> inputShapes)
    {
        if (inputShapes.Count != 1) throw new ShapeException($"Sequential '{Name}' takes one input; received {inputShapes.Count}.");
        if (layers.Count == 0) throw new GraphException($"Sequential '{Name}' has no layers.");
        input = new InputLayer(inputShapes[0], name: layers[0].Name + "_input");
        var x = input.Output;
        foreach (var layer in layers) x = layer.Apply(x);
        lastOutput = x;
        SetGraph([input.Output], [x]);
    }
}
