namespace ConvKit.Data.Imaging;

/// <summary>
/// Resizes 8-bit interleaved images with a separable triangle (bilinear) filter on half-pixel centres. Downscaling is
/// antialiased as torchvision v2 and PyTorch's <c>interpolate(..., antialias=True)</c> do (the filter widens to the
/// scale factor, so every source pixel contributes); upscaling is plain bilinear with clamped edges, identical to
/// <c>interpolate(mode="bilinear", align_corners=False)</c> and Keras' resizing.
/// </summary>
public static class ImageResizer
{
    /// <summary>Resizes to (height, width), rounding to bytes.</summary>
    /// <param name="image">The image.</param>
    /// <param name="height">Output height.</param>
    /// <param name="width">Output width.</param>
    /// <param name="antialias">Widen the filter when downscaling (default true).</param>
    /// <returns>The resized image.</returns>
    /// <exception cref="InvalidOptionException">A size is not positive.</exception>
    public static DecodedImage Resize(DecodedImage image, int height, int width, bool antialias = true)
    {
        ArgumentNullException.ThrowIfNull(image);
        Require.Positive(height);
        Require.Positive(width);
        var result = new byte[checked(height * width * image.Channels)];
        if (image.Height == height && image.Width == width) image.Pixels.AsSpan(0, result.Length).CopyTo(result);
        else
        {
            var f = ResizeToFloats(image, height, width, antialias);
            for (int i = 0; i < f.Length; i++) result[i] = (byte)Math.Clamp(MathF.Round(f[i]), 0, 255);
        }
        return image with { Height = height, Width = width, Pixels = result };
    }

    /// <summary>The resized image before rounding (height x width x channels).</summary>
    internal static float[] ResizeToFloats(DecodedImage image, int height, int width, bool antialias)
    {
        var f = new float[checked(height * width * image.Channels)];
        Resample(image, height, width, 0, 0, height, width, antialias, f);
        return f;
    }

    /// <summary>
    /// Resizes the shorter side to cover (height, width) keeping the aspect ratio, then takes the centre (height, width)
    /// crop: what <c>ImageClassifier</c> feeds a model. Only the cropped pixels are computed.
    /// </summary>
    /// <param name="image">The image.</param>
    /// <param name="height">Crop height.</param>
    /// <param name="width">Crop width.</param>
    /// <param name="destination">Receives height x width x channels values in [0, 255], interleaved.</param>
    /// <exception cref="InvalidOptionException">A size is not positive.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="destination"/> has the wrong length.</exception>
    public static void ResizeCenterCrop(DecodedImage image, int height, int width, Span<float> destination)
    {
        ArgumentNullException.ThrowIfNull(image);
        Require.Positive(height);
        Require.Positive(width);
        if (destination.Length != height * width * image.Channels)
            throw new InvalidOptionException(nameof(destination), $"destination holds {destination.Length} values, the crop needs {height * width * image.Channels}.");
        ResizeCenterCrop(image, height, width, antialias: true, destination);
    }

    /// <summary><see cref="ResizeCenterCrop(DecodedImage, int, int, Span{float})"/> with antialiasing on request.</summary>
    internal static void ResizeCenterCrop(DecodedImage image, int height, int width, bool antialias, Span<float> destination)
    {
        long ih = image.Height, iw = image.Width;
        double scale = Math.Max((double)height / ih, (double)width / iw);
        long rh = Math.Max(height, (long)Math.Round(ih * scale)), rw = Math.Max(width, (long)Math.Round(iw * scale));
        int top = (int)((rh - height) / 2), left = (int)((rw - width) / 2);
        Resample(image, checked((int)rh), checked((int)rw), top, left, height, width, antialias, destination);
    }

    /// <summary>Output pixels [top, top + outH) x [left, left + outW) of the image resized to (fullH, fullW).</summary>
    static void Resample(DecodedImage image, int fullH, int fullW, int top, int left, int outH, int outW, bool antialias, Span<float> dst)
    {
        int c = image.Channels, sw = image.Width;
        var ys = Taps(image.Height, fullH, top, outH, antialias);
        var xs = Taps(image.Width, fullW, left, outW, antialias);
        // Horizontal pass over the source rows the vertical taps touch, then the vertical pass.
        int firstRow = ys.Start[0], lastRow = ys.Start[^1] + ys.Count[^1];
        for (int i = 0; i < outH; i++) { firstRow = Math.Min(firstRow, ys.Start[i]); lastRow = Math.Max(lastRow, ys.Start[i] + ys.Count[i]); }
        int rows = lastRow - firstRow;
        var horizontal = new float[checked(rows * outW * c)];
        var src = image.Pixels;
        for (int r = 0; r < rows; r++)
        {
            int srcRow = (firstRow + r) * sw * c, dstRow = r * outW * c;
            for (int x = 0; x < outW; x++)
            {
                int start = xs.Start[x], count = xs.Count[x], wBase = x * xs.Stride;
                for (int ch = 0; ch < c; ch++)
                {
                    float sum = 0;
                    for (int k = 0; k < count; k++) sum += src[srcRow + (start + k) * c + ch] * xs.Weights[wBase + k];
                    horizontal[dstRow + x * c + ch] = sum;
                }
            }
        }
        int rowLength = outW * c;
        for (int y = 0; y < outH; y++)
        {
            var output = dst.Slice(y * rowLength, rowLength);
            output.Clear();
            int start = ys.Start[y] - firstRow, count = ys.Count[y], wBase = y * ys.Stride;
            for (int k = 0; k < count; k++)
            {
                float weight = ys.Weights[wBase + k];
                var row = horizontal.AsSpan((start + k) * rowLength, rowLength);
                for (int i = 0; i < rowLength; i++) output[i] += row[i] * weight;
            }
        }
    }

    sealed record TapTable(int[] Start, int[] Count, float[] Weights, int Stride);

    /// <summary>PyTorch's antialiased bilinear weights (<c>_compute_indices_weights_aa</c>), normalized over in-range taps.</summary>
    static TapTable Taps(int inSize, int outSize, int offset, int count, bool antialias)
    {
        double scale = (double)inSize / outSize;
        double support = antialias && scale > 1 ? scale : 1.0;
        double invScale = antialias && scale > 1 ? 1.0 / scale : 1.0;
        int stride = (int)Math.Ceiling(support) * 2 + 1;
        var start = new int[count];
        var taps = new int[count];
        var weights = new float[count * stride];
        var buffer = new double[stride];
        for (int i = 0; i < count; i++)
        {
            double center = scale * (i + offset + 0.5);
            int xmin = Math.Max((int)(center - support + 0.5), 0);
            int xsize = Math.Min((int)(center + support + 0.5), inSize) - xmin;
            xsize = Math.Clamp(xsize, 1, stride);
            if (xmin > inSize - 1) xmin = inSize - 1;
            if (xmin + xsize > inSize) xsize = inSize - xmin;
            double total = 0;
            for (int j = 0; j < xsize; j++)
            {
                double v = Math.Max(0, 1 - Math.Abs((j + xmin - center + 0.5) * invScale));
                buffer[j] = v;
                total += v;
            }
            for (int j = 0; j < xsize; j++) weights[i * stride + j] = total > 0 ? (float)(buffer[j] / total) : j == 0 ? 1f : 0f;
            start[i] = xmin;
            taps[i] = xsize;
        }
        return new TapTable(start, taps, weights, stride);
    }
}
