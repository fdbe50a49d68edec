using ConvKit.Native;
using static TorchSharp.torch;

namespace ConvKit.Layers;

/// <summary>The operation of an <see cref="Arithmetic"/> layer.</summary>
public enum ArithmeticOperator
{
    /// <summary>a + b.</summary>
    Add,
    /// <summary>a - b.</summary>
    Subtract,
    /// <summary>a · b.</summary>
    Multiply,
    /// <summary>a / b.</summary>
    Divide,
}

/// <summary>
/// Element-wise arithmetic with NumPy broadcasting (Keras' <c>Subtract</c>, <c>Multiply</c> and friends, and ONNX's
/// Add/Sub/Mul/Div): on two inputs (a squeeze-and-excitation gate: (H, W, C) · (1, 1, C)), or on one input and a
/// constant operand held as a weight named <c>constant</c> (a mean image to subtract, a scale). Broadcasting follows
/// ConvKit's internal layout (channels-first for images), so a constant of shape (C, 1, 1) scales channels, as in ONNX.
/// </summary>
public class Arithmetic : Layer
{
    readonly long[]? constantShape;
    readonly bool constantTrainable;
    Tensor? constant;

    /// <summary>An operation on two inputs.</summary>
    public Arithmetic(ArithmeticOperator op, string? name = null) : base(name) => Operator = op;

    /// <summary>An operation between the input and a constant of <paramref name="constantShape"/> (internal layout,
    /// broadcast against the batch), the constant first when <paramref name="constantFirst"/> (c - x, c / x).</summary>
    /// <exception cref="LayerArgumentException">The operator is not defined or the shape has a non-positive dimension.</exception>
    public Arithmetic(ArithmeticOperator op, long[] constantShape, bool constantFirst = false, bool trainable = false, string? name = null) : base(name)
    {
        ArgumentNullException.ThrowIfNull(constantShape);
        if (constantShape.Any(d => d <= 0)) throw ArgumentError("constant_shape", $"dimensions must be positive; received ({string.Join(", ", constantShape)}).");
        Operator = op;
        this.constantShape = (long[])constantShape.Clone();
        ConstantFirst = constantFirst;
        constantTrainable = trainable;
    }

    /// <summary>The operation.</summary>
    public ArithmeticOperator Operator { get; }

    /// <summary>The constant operand's shape (internal layout), or null for a two-input layer.</summary>
    public IReadOnlyList<long>? ConstantShape => constantShape;

    /// <summary>Whether the constant operand is trained.</summary>
    public bool ConstantTrainable => constantTrainable;

    /// <summary>Whether the constant is the left operand.</summary>
    public bool ConstantFirst { get; }

    /// <summary>The constant operand (a weight), or null for a two-input layer or before building.</summary>
    public Tensor? Constant => constant;

    /// <inheritdoc/>
    public override int MinInputs => constantShape is null ? 2 : 1;

    /// <inheritdoc/>
    public override int MaxInputs => constantShape is null ? 2 : 1;

    /// <inheritdoc/>
    protected override void Build(Shape inputShape)
    {
        if (constantShape is not null)
            constant = AddWeight("constant", constantShape, Operator is ArithmeticOperator.Multiply or ArithmeticOperator.Divide ? Initializers.Ones : Initializers.Zeros, 1, 1, constantTrainable);
    }

    /// <inheritdoc/>
    protected override void Build(IReadOnlyList<Shape> inputShapes) { }

    /// <inheritdoc/>
    protected override void OnWeightsRebound() => constant = GetWeight("constant");

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) =>
        constant is null ? base.Call(inputs) : ConstantFirst ? Apply(constant, inputs) : Apply(inputs, constant);

    /// <inheritdoc/>
    public override Tensor Call(IReadOnlyList<Tensor> inputs) => inputs.Count == 1 ? Call(inputs[0]) : Apply(inputs[0], inputs[1]);

    Tensor Apply(Tensor a, Tensor b) => Operator switch
    {
        ArithmeticOperator.Add => a.add(b, Scalars.One),
        ArithmeticOperator.Subtract => a.sub(b),
        ArithmeticOperator.Multiply => a.mul(b),
        _ => a.div(b),
    };

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => false;
}
