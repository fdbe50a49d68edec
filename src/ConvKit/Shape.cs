using System.Collections;

namespace ConvKit;

/// <summary>
/// The shape of one sample, in Keras' channels-last order and without the batch axis:
/// <c>(28, 28, 1)</c> for an image, <c>(120)</c> for a feature vector. A dimension of -1 is unknown (Keras' None).
/// </summary>
public readonly struct Shape : IEquatable<Shape>, IReadOnlyList<int>
{
    /// <summary>The marker of an unknown dimension.</summary>
    public const int Unknown = -1;

    readonly int[]? dims;

    /// <summary>Creates a shape from its dimensions (each positive, or -1 for unknown).</summary>
    /// <exception cref="ShapeException">A dimension is 0 or below -1.</exception>
    public Shape(params int[] dims)
    {
        ArgumentNullException.ThrowIfNull(dims);
        for (int i = 0; i < dims.Length; i++)
            if (dims[i] <= 0 && dims[i] != Unknown) throw BadDimension(i, dims[i], string.Join(", ", dims));
        this.dims = (int[])dims.Clone();
    }

    /// <summary>
    /// Creates a shape from TorchSharp-style long dimensions, e.g. <c>new Shape(x.shape[1..])</c> for the sample shape of
    /// a batch (each positive, or -1 for unknown).
    /// </summary>
    /// <exception cref="ShapeException">A dimension is 0, below -1, or larger than int.MaxValue.</exception>
    public Shape(ReadOnlySpan<long> dims)
    {
        var d = new int[dims.Length];
        for (int i = 0; i < dims.Length; i++)
        {
            if ((dims[i] <= 0 && dims[i] != Unknown) || dims[i] > int.MaxValue) throw BadDimension(i, dims[i], string.Join(", ", dims.ToArray()));
            d[i] = (int)dims[i];
        }
        this.dims = d;
    }

    static ShapeException BadDimension(int axis, long value, string all) => new(
        $"shape dimension {axis} is {value}: dimensions must be positive (at most {int.MaxValue}) or -1 (unknown); received ({all}).");

    /// <summary>The number of dimensions (without the batch axis).</summary>
    public int Rank => dims?.Length ?? 0;

    /// <summary>Dimension <paramref name="i"/>; negative indices count from the end, as in Python.</summary>
    public int this[int i] => Dims[i < 0 ? Rank + i : i];

    /// <summary>The dimensions.</summary>
    public ReadOnlySpan<int> Dims => dims ?? [];

    int IReadOnlyCollection<int>.Count => Rank;

    /// <summary>Product of the dimensions; -1 when any is unknown.</summary>
    public long Size
    {
        get
        {
            long n = 1;
            foreach (var d in Dims)
            {
                if (d == Unknown) return Unknown;
                n *= d;
            }
            return n;
        }
    }

    /// <summary>True when every dimension is known.</summary>
    public bool IsFullyDefined => !Dims.Contains(Unknown);

    /// <summary>A copy with dimension <paramref name="i"/> replaced.</summary>
    public Shape With(int i, int value)
    {
        var d = Dims.ToArray();
        d[i < 0 ? Rank + i : i] = value;
        return new Shape(d);
    }

    /// <summary>The dimensions as an array.</summary>
    public int[] ToArray() => Dims.ToArray();

    /// <summary>Keras' rendering with the batch axis: <c>(None, 24, 24, 32)</c>.</summary>
    public string ToBatchString() => "(" + string.Join(", ", new[] { "None" }.Concat(Dims.ToArray().Select(Fmt))) + ")";

    /// <summary>Rendering without the batch axis, as Keras prints a tuple: <c>(28, 28, 1)</c>, <c>(10,)</c>.</summary>
    public override string ToString() => Rank == 1 ? $"({Fmt(Dims[0])},)" : "(" + string.Join(", ", Dims.ToArray().Select(Fmt)) + ")";

    static string Fmt(int d) => d == Unknown ? "None" : d.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <inheritdoc/>
    public bool Equals(Shape other) => Dims.SequenceEqual(other.Dims);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Shape s && Equals(s);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var d in Dims) h.Add(d);
        return h.ToHashCode();
    }

    /// <summary>Equality of dimensions.</summary>
    public static bool operator ==(Shape a, Shape b) => a.Equals(b);

    /// <summary>Inequality of dimensions.</summary>
    public static bool operator !=(Shape a, Shape b) => !a.Equals(b);

    /// <summary>A one-dimensional shape.</summary>
    public static implicit operator Shape(int d) => new(d);
    // No implicit conversion from long[]: it would give `cond ? shape : null` the type Shape and a null long[] at run time.

    /// <summary>A two-dimensional shape.</summary>
    public static implicit operator Shape((int, int) t) => new(t.Item1, t.Item2);

    /// <summary>A three-dimensional shape, e.g. (height, width, channels).</summary>
    public static implicit operator Shape((int, int, int) t) => new(t.Item1, t.Item2, t.Item3);

    /// <summary>A four-dimensional shape.</summary>
    public static implicit operator Shape((int, int, int, int) t) => new(t.Item1, t.Item2, t.Item3, t.Item4);

    /// <inheritdoc/>
    public IEnumerator<int> GetEnumerator() => ((IEnumerable<int>)(dims ?? [])).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>A pair of sizes (height, width): a kernel size, strides, a dilation rate. Converts from an int or a tuple.</summary>
/// <param name="Height">Along the rows.</param>
/// <param name="Width">Along the columns.</param>
public readonly record struct Size2(int Height, int Width)
{
    /// <summary>The same size on both axes.</summary>
    public static implicit operator Size2(int n) => new(n, n);

    /// <summary>(height, width).</summary>
    public static implicit operator Size2((int Height, int Width) t) => new(t.Height, t.Width);

    /// <summary>Keras' rendering: <c>(3, 3)</c>.</summary>
    public override string ToString() => $"({Height}, {Width})";
}

/// <summary>Maps between Keras' channels-last shapes and ConvKit's internal tensor layout.</summary>
/// <remarks>
/// Internally, rank-3 samples (images) are held channels-first, NCHW, which is libtorch's native convolution layout;
/// every other rank is held as Keras holds it. The conversion happens once at the data boundary (Fit, Predict), never
/// per layer.
/// </remarks>
public static class Layout
{
    /// <summary>The internal tensor shape (with batch) of a batch of samples of Keras shape <paramref name="s"/>.</summary>
    public static long[] ToInternal(Shape s, long batch) => s.Rank == 3
        ? [batch, s[2], s[0], s[1]]
        : [batch, .. s.Dims.ToArray().Select(d => (long)d)];

    /// <summary>The Keras sample shape of an internal batch tensor shape.</summary>
    public static Shape ToKeras(ReadOnlySpan<long> internalShape) => internalShape.Length == 4
        ? new Shape((int)internalShape[2], (int)internalShape[3], (int)internalShape[1])
        : new Shape(internalShape[1..].ToArray().Select(d => (int)d).ToArray());

    /// <summary>
    /// A hint for a shape error: when an internal-layout (N, C, H, W) input was expected with <paramref name="channels"/>
    /// channels and <paramref name="received"/> is 4-D with that many in its last axis but not in axis 1, the data is
    /// probably channels-last; returns the sentence that says so (with a leading space), otherwise "".
    /// </summary>
    internal static string NhwcHint(ReadOnlySpan<long> received, int channels) =>
        received.Length == 4 && channels > 0 && received[3] == channels && received[1] != channels
            ? $" The tensor [{string.Join(", ", received.ToArray())}] looks like NHWC (channels-last); Apply takes ConvKit's internal (N, C, H, W) layout: "
              + "call Apply(x, DataFormat.ChannelsLast), or Predict, which take channels-last data as Keras does."
            : "";

    /// <summary>The internal tensor axis (batch = 0) of Keras axis <paramref name="kerasAxis"/> (batch = 0, negative from the end).</summary>
    public static int ToInternalAxis(int kerasAxis, int batchRank)
    {
        int a = kerasAxis < 0 ? batchRank + kerasAxis : kerasAxis;
        if (a < 0 || a >= batchRank) throw new InvalidOptionException(nameof(kerasAxis), $"axis {kerasAxis} is out of range for rank {batchRank}");
        if (batchRank != 4) return a;
        return a switch { 0 => 0, 1 => 2, 2 => 3, _ => 1 }; // N H W C -> N C H W
    }

    /// <summary>
    /// Converts a Keras-layout batch (N, H, W, C) to the internal layout, (N, C, H, W) with channels-last strides (the
    /// convolutions' memory format, see Ops.ToChannelsLast): no copy when <paramref name="x"/> is contiguous. Other
    /// ranks pass through.
    /// </summary>
    public static TorchSharp.torch.Tensor FromKeras(TorchSharp.torch.Tensor x)
    {
        if (x.dim() != 4) return x.alias();
        using var dense = x.contiguous();
        return dense.permute(0, 3, 1, 2);
    }

    /// <summary>
    /// The samples <paramref name="index"/> of an internal-layout batch, keeping a 4-D batch's channels-last strides
    /// (a plain index_select would gather into NCHW-contiguous memory that the next convolution copies back).
    /// </summary>
    internal static TorchSharp.torch.Tensor SelectSamples(TorchSharp.torch.Tensor x, TorchSharp.torch.Tensor index)
    {
        if (x.dim() != 4) return x.index_select(0, index);
        using var nhwc = x.permute(0, 2, 3, 1);
        using var picked = nhwc.index_select(0, index);
        return picked.permute(0, 3, 1, 2);
    }

    /// <summary>Converts an internal-layout batch back to Keras' layout (N, H, W, C); other ranks pass through.</summary>
    public static TorchSharp.torch.Tensor ToKeras(TorchSharp.torch.Tensor x) =>
        x.dim() == 4 ? x.permute(0, 2, 3, 1).contiguous() : x.alias();
}
