using ConvKit.Models;
using ConvKit.Native;
using static TorchSharp.torch;

namespace ConvKit.Layers;

/// <summary>Base of layers that merge two or more inputs.</summary>
public abstract class Merge : Layer
{
    /// <summary>Stores the name.</summary>
    protected Merge(string? name) : base(name) { }

    /// <inheritdoc/>
    public override int MinInputs => 2;

    /// <inheritdoc/>
    public override int MaxInputs => int.MaxValue;

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape) =>
        throw new ShapeException($"{Describe} merges at least two inputs; received one ({inputShape.ToBatchString()}).");

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => false;

    /// <summary>Formats shapes for messages.</summary>
    protected static string List(IReadOnlyList<Shape> shapes) => "[" + string.Join(", ", shapes.Select(s => s.ToBatchString())) + "]";
}

/// <summary>Element-wise sum of inputs of equal shape, Keras' <c>Add</c> (residual connections).</summary>
public class Add : Merge
{
    /// <summary>Creates the layer.</summary>
    public Add(string? name = null) : base(name) { }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(IReadOnlyList<Shape> inputShapes)
    {
        if (inputShapes.Count < 2) throw new ShapeException($"{Describe} merges at least two inputs; received {inputShapes.Count}.");
        var first = inputShapes[0];
        foreach (var s in inputShapes)
        {
            bool ok = s.Rank == first.Rank;
            for (int d = 0; ok && d < s.Rank; d++) ok = s[d] == first[d] || s[d] == Shape.Unknown || first[d] == Shape.Unknown;
            if (!ok)
                throw new ShapeException($"{Describe} needs inputs of the same shape; received {List(inputShapes)}. For a residual connection whose channels or size change, project the shortcut with a 1x1 Conv2D (strides as the main path).");
        }
        return first;
    }

    /// <inheritdoc/>
    public override Tensor Call(IReadOnlyList<Tensor> inputs)
    {
        var sum = inputs[0].add(inputs[1], Scalars.One);
        for (int i = 2; i < inputs.Count; i++) sum.add_(inputs[i], Scalars.One);
        return sum;
    }

    /// <summary>Keras' functional helper <c>add([x, y])</c>.</summary>
    public static SymbolicTensor Of(params SymbolicTensor[] inputs) => new Add().Apply(inputs);
}

/// <summary>Joins inputs along an axis (default: channels), Keras' <c>Concatenate</c>.</summary>
public class Concatenate : Merge
{
    /// <summary>Creates the layer; <paramref name="axis"/> is in Keras' terms (-1 = channels).</summary>
    public Concatenate(int axis = -1, string? name = null) : base(name) => Axis = axis;

    /// <summary>Keras' axis.</summary>
    public int Axis { get; }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(IReadOnlyList<Shape> inputShapes)
    {
        if (inputShapes.Count < 2) throw new ShapeException($"{Describe} merges at least two inputs; received {inputShapes.Count}.");
        var first = inputShapes[0];
        int rank = first.Rank;
        int a = Axis < 0 ? rank + 1 + Axis : Axis;
        if (a < 1 || a > rank)
            throw ArgumentError("axis", $"axis={Axis} is out of range for inputs {List(inputShapes)} (the batch axis cannot be concatenated).");
        int total = 0;
        foreach (var s in inputShapes)
        {
            bool ok = s.Rank == rank;
            for (int d = 0; ok && d < rank; d++)
                ok = d == a - 1 || s[d] == first[d] || s[d] == Shape.Unknown || first[d] == Shape.Unknown;
            if (!ok)
                throw new ShapeException($"{Describe} (axis={Axis}) needs inputs that match except along the concatenation axis; received {List(inputShapes)}.");
            total = total == Shape.Unknown || s[a - 1] == Shape.Unknown ? Shape.Unknown : total + s[a - 1];
        }
        return first.With(a - 1, total);
    }

    /// <inheritdoc/>
    public override Tensor Call(IReadOnlyList<Tensor> inputs) =>
        cat(inputs.ToArray(), Layout.ToInternalAxis(Axis, (int)inputs[0].dim()));

    /// <summary>Keras' functional helper <c>concatenate([a, b, c], axis=-1)</c>.</summary>
    public static SymbolicTensor Of(SymbolicTensor[] inputs, int axis = -1) => new Concatenate(axis).Apply(inputs);
}

/// <summary>Pads height and width with zeros, Keras' <c>ZeroPadding2D</c>.</summary>
public class ZeroPadding2D : Layer
{
    /// <summary>The same padding on every side.</summary>
    public ZeroPadding2D(int padding = 1, string? name = null) : this((padding, padding), (padding, padding), name) { }

    /// <summary>Symmetric padding: (rows above and below, columns left and right).</summary>
    public ZeroPadding2D(Size2 padding, string? name = null)
        : this((padding.Height, padding.Height), (padding.Width, padding.Width), name) { }

    /// <summary>Explicit padding: ((top, bottom), (left, right)).</summary>
    /// <exception cref="LayerArgumentException">A value is negative.</exception>
    public ZeroPadding2D((int Top, int Bottom) height, (int Left, int Right) width, string? name = null) : base(name)
    {
        if (height.Top < 0 || height.Bottom < 0 || width.Left < 0 || width.Right < 0)
            throw ArgumentError("padding", $"must be non-negative; received (({height.Top}, {height.Bottom}), ({width.Left}, {width.Right})).");
        Top = height.Top; Bottom = height.Bottom; Left = width.Left; Right = width.Right;
    }

    /// <summary>Rows added above.</summary>
    public int Top { get; }

    /// <summary>Rows added below.</summary>
    public int Bottom { get; }

    /// <summary>Columns added left.</summary>
    public int Left { get; }

    /// <summary>Columns added right.</summary>
    public int Right { get; }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        if (inputShape.Rank != 3)
            throw new ShapeException($"{Describe} expects inputs of shape (height, width, channels); received {inputShape.ToBatchString()}.");
        int Grow(int n, int by) => n == Shape.Unknown ? n : n + by;
        return new Shape(Grow(inputShape[0], Top + Bottom), Grow(inputShape[1], Left + Right), inputShape[2]);
    }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => nn.functional.pad(inputs, [Left, Right, Top, Bottom]);

    /// <inheritdoc/>
    public override WindowInfo? Window(IReadOnlyList<Shape> inputShapes) => new WindowInfo(1, 1, 1, new Size2(Top, Left));

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => false;
}
