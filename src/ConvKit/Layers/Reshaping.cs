using static TorchSharp.torch;

namespace ConvKit.Layers;

/// <summary>
/// Reshapes each sample to <see cref="TargetShape"/> (the batch axis is kept), Keras' <c>Reshape</c>. The element order
/// is that of <see cref="DataFormat"/>: <see cref="DataFormat.ChannelsLast"/> (the default) reads and writes images as
/// (height, width, channels), as Keras does; <see cref="DataFormat.ChannelsFirst"/> as (channels, height, width), as
/// PyTorch's <c>view</c> and ONNX's Reshape do (what the ONNX importer uses). A 3-D target is an image, held
/// channels-first inside ConvKit as usual. One dimension may be -1 (inferred).
/// </summary>
public class Reshape : Layer
{
    readonly long[] target;

    /// <summary>Creates the layer.</summary>
    /// <param name="targetShape">The sample shape, in <paramref name="dataFormat"/>'s order; one entry may be -1.</param>
    /// <param name="dataFormat">The element order of the reshape.</param>
    /// <param name="name">Layer name; null for an automatic one.</param>
    /// <exception cref="LayerArgumentException">A dimension is 0 or below -1, or -1 appears twice.</exception>
    public Reshape(long[] targetShape, DataFormat dataFormat = DataFormat.ChannelsLast, string? name = null) : base(name)
    {
        ArgumentNullException.ThrowIfNull(targetShape);
        if (targetShape.Length == 0 || targetShape.Any(d => d == 0 || d < -1) || targetShape.Count(d => d == -1) > 1)
            throw ArgumentError("target_shape", $"needs positive dimensions and at most one -1; received ({string.Join(", ", targetShape)}).");
        if (dataFormat is not (DataFormat.ChannelsLast or DataFormat.ChannelsFirst))
            throw ArgumentError("data_format", $"must be ChannelsLast or ChannelsFirst; received {(int)dataFormat}.");
        target = (long[])targetShape.Clone();
        DataFormat = dataFormat;
    }

    /// <summary>The sample shape, in <see cref="DataFormat"/>'s order (-1 = inferred).</summary>
    public IReadOnlyList<long> TargetShape => target;

    /// <summary>The element order of the reshape.</summary>
    public DataFormat DataFormat { get; }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        long size = inputShape.Size;
        var dims = (long[])target.Clone();
        long known = dims.Where(d => d > 0).Aggregate(1L, (a, d) => a * d);
        int free = Array.IndexOf(dims, -1L);
        if (size != Shape.Unknown)
        {
            if (free >= 0)
            {
                if (size % known != 0) throw new ShapeException($"{Describe}: cannot reshape input {inputShape.ToBatchString()} ({size} values) to ({string.Join(", ", target)}).");
                dims[free] = size / known;
            }
            else if (known != size) throw new ShapeException($"{Describe}: cannot reshape input {inputShape.ToBatchString()} ({size} values) to ({string.Join(", ", target)}), which holds {known}.");
        }
        if (dims.Length == 3 && DataFormat == DataFormat.ChannelsFirst) dims = [dims[1], dims[2], dims[0]];
        return new Shape(dims.Select(d => (int)d).ToArray());
    }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs)
    {
        long[] shape = [inputs.shape[0], .. target];
        if (DataFormat == DataFormat.ChannelsFirst) return inputs.reshape(shape);
        using var keras = inputs.dim() == 4 ? inputs.permute(0, 2, 3, 1) : inputs.alias();
        using var y = keras.reshape(shape);
        return y.dim() == 4 ? y.permute(0, 3, 1, 2) : y.alias();
    }

    /// <inheritdoc/>
    public override WindowInfo? Window(IReadOnlyList<Shape> inputShapes) => WindowInfo.Global;

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => true;
}

/// <summary>
/// Permutes the axes of each sample, Keras' <c>Permute</c>: <see cref="Dims"/> is 1-based and leaves the batch axis
/// alone. The axes are those of <see cref="DataFormat"/>: (height, width, channels) for
/// <see cref="DataFormat.ChannelsLast"/> (Keras), (channels, height, width) for <see cref="DataFormat.ChannelsFirst"/>
/// (ONNX's Transpose, PyTorch's permute, e.g. ShuffleNet's channel shuffle).
/// </summary>
public class Permute : Layer
{
    readonly int[] dims;

    /// <summary>Creates the layer.</summary>
    /// <param name="dims">A permutation of 1..rank.</param>
    /// <param name="dataFormat">Whose axis order <paramref name="dims"/> refers to.</param>
    /// <param name="name">Layer name; null for an automatic one.</param>
    /// <exception cref="LayerArgumentException"><paramref name="dims"/> is not a permutation of 1..rank.</exception>
    public Permute(int[] dims, DataFormat dataFormat = DataFormat.ChannelsLast, string? name = null) : base(name)
    {
        ArgumentNullException.ThrowIfNull(dims);
        if (dims.Length == 0 || !dims.OrderBy(d => d).SequenceEqual(Enumerable.Range(1, dims.Length)))
            throw ArgumentError("dims", $"must be a permutation of 1..{dims.Length}; received ({string.Join(", ", dims)}).");
        if (dataFormat is not (DataFormat.ChannelsLast or DataFormat.ChannelsFirst))
            throw ArgumentError("data_format", $"must be ChannelsLast or ChannelsFirst; received {(int)dataFormat}.");
        this.dims = (int[])dims.Clone();
        DataFormat = dataFormat;
    }

    /// <summary>The permutation, 1-based, without the batch axis.</summary>
    public IReadOnlyList<int> Dims => dims;

    /// <summary>Whose axis order <see cref="Dims"/> refers to.</summary>
    public DataFormat DataFormat { get; }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        if (inputShape.Rank != dims.Length)
            throw new ShapeException($"{Describe}: dims ({string.Join(", ", dims)}) need inputs of rank {dims.Length}; received {inputShape.ToBatchString()}.");
        var s = inputShape.ToArray();
        if (s.Length == 3 && DataFormat == DataFormat.ChannelsFirst) s = [s[2], s[0], s[1]];
        var o = dims.Select(d => s[d - 1]).ToArray();
        if (o.Length == 3 && DataFormat == DataFormat.ChannelsFirst) o = [o[1], o[2], o[0]];
        return new Shape(o);
    }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs)
    {
        long[] perm = [0, .. dims.Select(d => (long)d)];
        if (DataFormat == DataFormat.ChannelsFirst) return inputs.permute(perm).contiguous();
        using var keras = inputs.dim() == 4 ? inputs.permute(0, 2, 3, 1) : inputs.alias();
        using var y = keras.permute(perm);
        return y.dim() == 4 ? y.permute(0, 3, 1, 2).contiguous() : y.contiguous();
    }

    /// <inheritdoc/>
    public override WindowInfo? Window(IReadOnlyList<Shape> inputShapes) => WindowInfo.Global;

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => true;
}
