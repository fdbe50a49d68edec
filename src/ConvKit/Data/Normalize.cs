using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Data;

/// <summary>Label encoding helpers, like <c>keras.utils</c>.</summary>
public static class DataUtils
{
    /// <summary>One-hot encodes integer <paramref name="labels"/> (any shape) into float32 with a trailing axis of
    /// <paramref name="numClasses"/>, like <c>keras.utils.to_categorical</c>. The caller owns the result.</summary>
    /// <exception cref="InvalidOptionException"><paramref name="labels"/> is not an integer tensor.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="numClasses"/> is not positive, or a label is
    /// outside [0, numClasses).</exception>
    public static Tensor ToCategorical(Tensor labels, int numClasses)
    {
        ArgumentNullException.ThrowIfNull(labels);
        Require.Positive(numClasses);
        if (labels.dtype is not (ScalarType.Int64 or ScalarType.Int32 or ScalarType.Int16 or ScalarType.Int8 or ScalarType.Byte))
            throw new InvalidOptionException(nameof(labels), $"labels must be an integer tensor, found {labels.dtype}");
        using var l = labels.to_type(ScalarType.Int64);
        if (l.numel() > 0)
        {
            long min = l.min().item<long>(), max = l.max().item<long>();
            if (min < 0 || max >= numClasses)
                throw new InvalidOptionException(nameof(labels), $"labels span [{min}, {max}], expected 0..{numClasses - 1}");
        }
        using var oneHot = nn.functional.one_hot(l, numClasses);
        return oneHot.to_type(ScalarType.Float32);
    }
}

/// <summary>Pixel normalization helpers.</summary>
public static class Normalize
{
    /// <summary>Returns <paramref name="x"/> as float32 multiplied by <paramref name="factor"/>, like Keras'
    /// <c>Rescaling(1/255)</c>. The caller owns the result.</summary>
    public static Tensor Scale(Tensor x, float factor)
    {
        ArgumentNullException.ThrowIfNull(x);
        using var f = x.to_type(ScalarType.Float32);
        using var scale = factor.ToScalar();
        return f.mul(scale);
    }

    /// <summary>Per-channel mean and (population) standard deviation of <paramref name="x"/>, channels on
    /// <paramref name="channelAxis"/> (-1 for Keras' NHWC, 1 for ConvKit's internal NCHW).</summary>
    /// <exception cref="InvalidOptionException"><paramref name="channelAxis"/> is not an axis of <paramref name="x"/>.</exception>
    public static (float[] Mean, float[] Std) ComputeMeanStd(Tensor x, int channelAxis = -1)
    {
        ArgumentNullException.ThrowIfNull(x);
        int axis = ResolveAxis(x, channelAxis);
        long[] reduce = Enumerable.Range(0, (int)x.dim()).Where(d => d != axis).Select(d => (long)d).ToArray();
        // float64 accumulation: 60000x28x28 sums lose digits in float32.
        using var d64 = x.to_type(ScalarType.Float64);
        using var mean = d64.mean(reduce);
        using var std = d64.std(reduce, unbiased: false);
        using var m32 = mean.to_type(ScalarType.Float32);
        using var s32 = std.to_type(ScalarType.Float32);
        return (m32.data<float>().ToArray(), s32.data<float>().ToArray());
    }

    /// <summary>Returns float32 <c>(x - mean) / std</c> per channel on <paramref name="channelAxis"/>. The caller owns the result.</summary>
    /// <exception cref="InvalidOptionException">The statistics do not have one value per channel, or a std is not positive.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="channelAxis"/> is not an axis of <paramref name="x"/>.</exception>
    public static Tensor Standardize(Tensor x, float[] mean, float[] std, int channelAxis = -1)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(mean);
        ArgumentNullException.ThrowIfNull(std);
        int axis = ResolveAxis(x, channelAxis);
        long channels = x.shape[axis];
        if (mean.Length != channels || std.Length != channels)
            throw new InvalidOptionException("mean", $"expected {channels} means and stds, got {mean.Length} and {std.Length}");
        if (std.Any(s => !(s > 0)))
            throw new InvalidOptionException(nameof(std), "every std must be positive");
        var shape = Enumerable.Repeat(1L, (int)x.dim()).ToArray();
        shape[axis] = channels;
        using var m = tensor(mean).reshape(shape);
        using var s = tensor(std).reshape(shape);
        using var f = x.to_type(ScalarType.Float32);
        using var centered = f.sub(m);
        return centered.div(s);
    }

    static int ResolveAxis(Tensor x, int axis)
    {
        int rank = (int)x.dim();
        int a = axis < 0 ? axis + rank : axis;
        if (a < 0 || a >= rank) throw new InvalidOptionException(nameof(axis), $"axis {axis} is not an axis of a rank-{rank} tensor");
        return a;
    }
}
