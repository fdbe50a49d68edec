using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Data;

/// <summary>
/// Random augmentation of float32 image batches, drawn per sample from a <see cref="Generator"/> so runs are
/// reproducible. Batches are channels-last (N, H, W, C) by default, as users hold data and Keras takes it; pass
/// <see cref="DataFormat.ChannelsFirst"/> for ConvKit's internal (N, C, H, W) layout (inside a layer's Call). Each
/// function returns a new tensor owned by the caller, in the layout it was given.
/// </summary>
public static class Augment
{
    /// <summary>Mirrors each sample left-right with probability <paramref name="p"/>, like Keras' <c>RandomFlip("horizontal")</c>.</summary>
    /// <exception cref="ShapeException"><paramref name="x"/> is not 4-D.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="dataFormat"/> is not a defined value.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="p"/> is outside [0, 1].</exception>
    public static Tensor RandomHorizontalFlip(Tensor x, double p, Generator? generator = null, DataFormat dataFormat = DataFormat.ChannelsLast)
    {
        Check4D(x, dataFormat);
        if (!(p >= 0 && p <= 1)) throw new InvalidOptionException(nameof(p), $"probability must be in [0, 1], got {p}");
        long n = x.shape[0];
        using var draw = rand([n], generator: generator, device: x.device);
        using var probability = p.ToScalar();
        using var chosen = draw.lt(probability);
        using var mask = chosen.view(n, 1, 1, 1);
        using var flipped = x.flip(dataFormat == DataFormat.ChannelsLast ? 2 : 3); // the width axis
        return where(mask, flipped, x);
    }

    /// <summary>
    /// Shifts each sample by a random whole number of pixels, dy in [-maxDy, maxDy] and dx in [-maxDx, maxDx],
    /// filling with zeros: zero padding by the maximum, then a random crop per sample (two gathers, no per-sample loop).
    /// </summary>
    /// <exception cref="ShapeException"><paramref name="x"/> is not 4-D.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="dataFormat"/> is not a defined value.</exception>
    /// <exception cref="InvalidOptionException">A maximum is negative.</exception>
    public static Tensor RandomTranslation(Tensor x, int maxDy, int maxDx, Generator? generator = null, DataFormat dataFormat = DataFormat.ChannelsLast)
    {
        Check4D(x, dataFormat);
        Require.NonNegative(maxDy);
        Require.NonNegative(maxDx);
        return InLayout(x, dataFormat, t => Translate(t, maxDy, maxDx, generator));
    }

    // x is (N, C, H, W). A batch whose memory is channels-last (Fit's (N, H, W, C) input seen through a permute) is
    // translated in that memory order and returned with the same strides: libtorch picks a convolution's memory format
    // from its input's strides, and an NCHW-strided augmentation output moved every layer after it off oneDNN's faster
    // channels-last kernels (fmnist_resnet's training epoch took 25% longer with RandomTranslation in front).
    static Tensor Translate(Tensor x, int maxDy, int maxDx, Generator? generator)
    {
        long n = x.shape[0], h = x.shape[2], w = x.shape[3];
        // Crop origin in the padded image; origin maxDy means no shift.
        using var oy = randint(0, 2 * maxDy + 1, [n, 1], generator: generator, device: x.device);
        using var ox = randint(0, 2 * maxDx + 1, [n, 1], generator: generator, device: x.device);
        using var height = h.ToScalar();
        using var width = w.ToScalar();
        using var ar = arange(Scalars.Zero, height, Scalars.One, ScalarType.Int64, x.device);
        using var ac = arange(Scalars.Zero, width, Scalars.One, ScalarType.Int64, x.device);
        using var rows = oy.add(ar, Scalars.One);           // (n, h)
        using var cols = ox.add(ac, Scalars.One);           // (n, w)
        if (IsChannelsLastInMemory(x))
        {
            using var nhwc = x.permute(0, 2, 3, 1);
            using var shifted = CropPadded(nhwc, rows, cols, maxDy, maxDx, heightDim: 1);
            return shifted.permute(0, 3, 1, 2);
        }
        return CropPadded(x, rows, cols, maxDy, maxDx, heightDim: 2);
    }

    // Zero-pads the two spatial axes (heightDim and the next) by the maximum shifts, then gathers each sample's rows
    // and columns: two gathers, no per-sample loop.
    static Tensor CropPadded(Tensor x, Tensor rows, Tensor cols, int maxDy, int maxDx, int heightDim)
    {
        long n = x.shape[0], h = rows.shape[1], w = cols.shape[1];
        long[] pads = heightDim == 2 ? [maxDx, maxDx, maxDy, maxDy] : [0, 0, maxDx, maxDx, maxDy, maxDy];
        using var padded = nn.functional.pad(x, pads);
        var bandShape = (long[])padded.shape.Clone();
        bandShape[heightDim] = h;
        var rowShape = Enumerable.Repeat(1L, 4).ToArray();
        rowShape[0] = n; rowShape[heightDim] = h;
        using var rowsView = rows.view(rowShape);
        using var rowIndex = rowsView.expand(bandShape);
        using var band = padded.gather(heightDim, rowIndex);
        var outShape = (long[])bandShape.Clone();
        outShape[heightDim + 1] = w;
        var colShape = Enumerable.Repeat(1L, 4).ToArray();
        colShape[0] = n; colShape[heightDim + 1] = w;
        using var colsView = cols.view(colShape);
        using var colIndex = colsView.expand(outShape);
        return band.gather(heightDim + 1, colIndex);
    }

    // True when an (N, C, H, W) tensor's channels are innermost in memory, as a permuted (N, H, W, C) batch is.
    static bool IsChannelsLastInMemory(Tensor x) => x.stride(1) == 1 && x.stride(3) == x.shape[1] && x.stride(2) == x.shape[1] * x.shape[3];

    /// <summary>
    /// Zooms each sample about its centre by a factor drawn uniformly from [<paramref name="minScale"/>,
    /// <paramref name="maxScale"/>]: a factor above 1 enlarges the content (zoom in), below 1 shrinks it with zero
    /// fill, 1 is the identity. Bilinear sampling via <c>affine_grid</c> + <c>grid_sample</c>.
    /// </summary>
    /// <exception cref="ShapeException"><paramref name="x"/> is not 4-D.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="dataFormat"/> is not a defined value.</exception>
    /// <exception cref="InvalidOptionException">The scales are not positive or are in the wrong order.</exception>
    public static Tensor RandomZoom(Tensor x, double minScale, double maxScale, Generator? generator = null, DataFormat dataFormat = DataFormat.ChannelsLast)
    {
        Check4D(x, dataFormat);
        if (!(minScale > 0 && maxScale >= minScale))
            throw new InvalidOptionException(nameof(minScale), $"expected 0 < minScale <= maxScale, got {minScale}, {maxScale}");
        return InLayout(x, dataFormat, t => Zoom(t, minScale, maxScale, generator));
    }

    static Tensor Zoom(Tensor x, double minScale, double maxScale, Generator? generator)
    {
        long n = x.shape[0];
        using var u = rand([n], generator: generator, device: x.device);
        using var range = (maxScale - minScale).ToScalar();
        using var low = minScale.ToScalar();
        using var scale = u.mul(range).add_(low, Scalars.One);
        // The grid maps output to input coordinates, so the content scale s needs the inverse 1/s on the diagonal.
        using var inv = scale.reciprocal();
        using var theta = zeros([n, 2, 3], ScalarType.Float32, x.device);
        using (var sx = theta.select(1, 0).select(1, 0)) sx.copy_(inv);
        using (var sy = theta.select(1, 1).select(1, 1)) sy.copy_(inv);
        using var grid = nn.functional.affine_grid(theta, x.shape, align_corners: false);
        using var typed = x.dtype == ScalarType.Float32 ? x.alias() : x.to_type(ScalarType.Float32);
        var zoomed = nn.functional.grid_sample(typed, grid, align_corners: false);
        if (!IsChannelsLastInMemory(x) || IsChannelsLastInMemory(zoomed)) return zoomed;
        // Keep a channels-last batch channels-last (see Translate).
        // (an explicit copy: contiguous() would keep a 1-channel batch's NCHW strides, its size-1 axis being ignored).
        using (zoomed)
        using (var nhwc = zoomed.permute(0, 2, 3, 1))
        using (var packed = empty(nhwc.shape, nhwc.dtype, nhwc.device))
        {
            packed.copy_(nhwc);
            return packed.permute(0, 3, 1, 2);
        }
    }

    // Runs an (N, C, H, W) operation on a batch in either layout.
    static Tensor InLayout(Tensor x, DataFormat dataFormat, Func<Tensor, Tensor> op)
    {
        if (dataFormat == DataFormat.ChannelsFirst) return op(x);
        using var nchw = x.permute(0, 3, 1, 2);
        using var result = op(nchw);
        return result.permute(0, 2, 3, 1).contiguous();
    }

    static void Check4D(Tensor x, DataFormat dataFormat)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (dataFormat is not (DataFormat.ChannelsLast or DataFormat.ChannelsFirst))
            throw new InvalidOptionException(nameof(dataFormat), $"dataFormat must be ChannelsLast or ChannelsFirst; received {(int)dataFormat}");
        if (x.dim() != 4)
            throw new ShapeException($"expected a {(dataFormat == DataFormat.ChannelsLast ? "(N, H, W, C)" : "(N, C, H, W)")} batch, got shape [{string.Join(", ", x.shape)}]");
    }
}
