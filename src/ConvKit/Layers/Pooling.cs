using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Layers;

/// <summary>Common part of Keras' 2-D pooling layers: window, strides (default = pool size), padding.</summary>
public abstract class Pooling2D : Layer
{
    /// <summary>Validates and stores the configuration.</summary>
    /// <exception cref="LayerArgumentException">A size or stride is not positive.</exception>
    protected Pooling2D(Size2 poolSize, Size2? strides, Padding padding, string? name) : base(name)
    {
        PoolSize = poolSize;
        Strides = strides ?? poolSize;
        Padding = padding;
        if (PoolSize.Height <= 0 || PoolSize.Width <= 0) throw ArgumentError("pool_size", $"must be positive; received pool_size={PoolSize}.");
        if (Strides.Height <= 0 || Strides.Width <= 0) throw ArgumentError("strides", $"must be positive; received strides={Strides}.");
    }

    /// <summary>Window size.</summary>
    public Size2 PoolSize { get; }

    /// <summary>Step between windows (defaults to the pool size).</summary>
    public Size2 Strides { get; }

    /// <summary>'valid' or 'same'.</summary>
    public Padding Padding { get; }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        if (inputShape.Rank != 3)
            throw new ShapeException($"{Describe} expects inputs of shape (height, width, channels); received {inputShape.ToBatchString()}.");
        int h = ConvArithmetic.OutputLength(inputShape[0], PoolSize.Height, Strides.Height, Padding);
        int w = ConvArithmetic.OutputLength(inputShape[1], PoolSize.Width, Strides.Width, Padding);
        if ((h < 1 && h != Shape.Unknown) || (w < 1 && w != Shape.Unknown))
            throw new ShapeException($"{Describe}: pool_size={PoolSize} is larger than the input {inputShape.ToBatchString()} with padding='valid'; the output would be ({h}, {w}).");
        return new Shape(h, w, inputShape[2]);
    }

    /// <inheritdoc/>
    public override WindowInfo? Window(IReadOnlyList<Shape> inputShapes)
    {
        var s = inputShapes[0];
        return new WindowInfo(PoolSize, Strides, 1, new Size2(
            ConvArithmetic.Pads(s[0], PoolSize.Height, Strides.Height, Padding).Before,
            ConvArithmetic.Pads(s[1], PoolSize.Width, Strides.Width, Padding).Before));
    }

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => false;
}

/// <summary>Max pooling, Keras' <c>MaxPooling2D</c> (alias <c>MaxPool2D</c>). 'same' padding never wins (it is -inf).</summary>
public class MaxPooling2D : Pooling2D
{
    /// <summary>Creates the layer; strides default to the pool size, as in Keras.</summary>
    public MaxPooling2D(Size2? poolSize = null, Size2? strides = null, Padding padding = default, string? name = null)
        : base(poolSize ?? 2, strides, padding, name) { }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => Ops.MaxPoolChannelsFirst(inputs, PoolSize, Strides, Padding, Describe);
}

/// <summary>Keras' alias of <see cref="MaxPooling2D"/>.</summary>
public class MaxPool2D : MaxPooling2D
{
    /// <summary>Creates the layer.</summary>
    public MaxPool2D(Size2? poolSize = null, Size2? strides = null, Padding padding = default, string? name = null)
        : base(poolSize, strides, padding, name) { }

    /// <inheritdoc/>
    protected override string DefaultNamePrefix => "max_pooling2d";

    /// <inheritdoc/>
    public override string ClassName => "MaxPooling2D";
}

/// <summary>
/// Average pooling, Keras' <c>AveragePooling2D</c> (alias <c>AvgPool2D</c>). With 'same' padding each output divides by
/// the number of real (non-padding) cells in its window.
/// </summary>
public class AveragePooling2D : Pooling2D
{
    readonly PoolDivisorCache divisor = new();

    /// <summary>Creates the layer; strides default to the pool size, as in Keras.</summary>
    public AveragePooling2D(Size2? poolSize = null, Size2? strides = null, Padding padding = default, string? name = null)
        : base(poolSize ?? 2, strides, padding, name) { }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => Ops.AvgPoolChannelsFirst(inputs, PoolSize, Strides, Padding, divisor, Describe);

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing) divisor.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>Keras' alias of <see cref="AveragePooling2D"/>.</summary>
public class AvgPool2D : AveragePooling2D
{
    /// <summary>Creates the layer.</summary>
    public AvgPool2D(Size2? poolSize = null, Size2? strides = null, Padding padding = default, string? name = null)
        : base(poolSize, strides, padding, name) { }

    /// <inheritdoc/>
    protected override string DefaultNamePrefix => "average_pooling2d";

    /// <inheritdoc/>
    public override string ClassName => "AveragePooling2D";
}

/// <summary>Common part of global pooling layers: reduce height and width.</summary>
public abstract class GlobalPooling2D : Layer
{
    /// <summary>Stores the configuration.</summary>
    protected GlobalPooling2D(bool keepDims, string? name) : base(name) => KeepDims = keepDims;

    /// <summary>Keep height and width as size-1 axes.</summary>
    public bool KeepDims { get; }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        if (inputShape.Rank != 3)
            throw new ShapeException($"{Describe} expects inputs of shape (height, width, channels); received {inputShape.ToBatchString()}.");
        return KeepDims ? new Shape(1, 1, inputShape[2]) : new Shape(inputShape[2]);
    }

    /// <inheritdoc/>
    public override WindowInfo? Window(IReadOnlyList<Shape> inputShapes) => WindowInfo.Global;

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => false;
}

/// <summary>Mean over height and width, Keras' <c>GlobalAveragePooling2D</c>.</summary>
public class GlobalAveragePooling2D : GlobalPooling2D
{
    /// <summary>Creates the layer.</summary>
    public GlobalAveragePooling2D(bool keepDims = false, string? name = null) : base(keepDims, name) { }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => inputs.mean([2, 3], keepdim: KeepDims);
}

/// <summary>Maximum over height and width, Keras' <c>GlobalMaxPooling2D</c>.</summary>
public class GlobalMaxPooling2D : GlobalPooling2D
{
    /// <summary>Creates the layer.</summary>
    public GlobalMaxPooling2D(bool keepDims = false, string? name = null) : base(keepDims, name) { }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => inputs.amax([2, 3], keepdim: KeepDims);
}

/// <summary>
/// PyTorch's <c>AdaptiveAvgPool2d</c> (Keras has no such layer): averages each sample's map to a fixed
/// <see cref="OutputSize"/> whatever the input size. Output cell i along an axis of n input cells averages cells
/// [floor(i·n / o), ceil((i + 1)·n / o)) (<see cref="ConvArithmetic.AdaptiveWindow"/>): the identity when n = o, a
/// plain average pooling with window and stride n / o when o divides n, overlapping windows otherwise, repeated cells
/// when n &lt; o. torchvision's AlexNet and VGG put it before their classifier so that any input size reaches the
/// 6x6 / 7x7 map the first dense layer expects.
/// </summary>
public class AdaptiveAveragePooling2D : Layer
{
    /// <summary>Creates the layer.</summary>
    /// <param name="outputSize">The (height, width) of the output map.</param>
    /// <param name="name">Layer name; null for an automatic one.</param>
    /// <exception cref="LayerArgumentException">A size is not positive.</exception>
    public AdaptiveAveragePooling2D(Size2 outputSize, string? name = null) : base(name)
    {
        OutputSize = outputSize;
        if (outputSize.Height <= 0 || outputSize.Width <= 0) throw ArgumentError("output_size", $"must be positive; received output_size={outputSize}.");
    }

    /// <summary>The (height, width) of the output map.</summary>
    public Size2 OutputSize { get; }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        if (inputShape.Rank != 3)
            throw new ShapeException($"{Describe} expects inputs of shape (height, width, channels); received {inputShape.ToBatchString()}.");
        return new Shape(OutputSize.Height, OutputSize.Width, inputShape[2]);
    }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => F.adaptive_avg_pool2d(inputs, [OutputSize.Height, OutputSize.Width]);

    /// <summary>
    /// The identity when the input already has the output size, a regular window when the output size divides the
    /// input's; otherwise the windows differ from cell to cell and the layer is reported as mixing all positions.
    /// </summary>
    public override WindowInfo? Window(IReadOnlyList<Shape> inputShapes)
    {
        var s = inputShapes[0];
        if (s[0] == OutputSize.Height && s[1] == OutputSize.Width) return null;
        if (s[0] > 0 && s[1] > 0 && s[0] % OutputSize.Height == 0 && s[1] % OutputSize.Width == 0)
        {
            var k = new Size2(s[0] / OutputSize.Height, s[1] / OutputSize.Width);
            return new WindowInfo(k, k, 1, 0);
        }
        return WindowInfo.Global;
    }

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => false;
}
