namespace ConvKit.Data.Streaming;

/// <summary>
/// On-the-fly augmentation of uint8 images on a <see cref="DataLoader"/>'s workers, as Keras' preprocessing layers
/// (<c>RandomFlip</c>, <c>RandomRotation</c>, <c>RandomZoom</c>, <c>RandomTranslation</c>, <c>RandomBrightness</c>,
/// <c>RandomContrast</c>) with their factor conventions. Each sample's draws come from a <see cref="SampleRandom"/>
/// keyed by (seed, epoch, sample index), so the result does not depend on the number of workers. The geometric
/// transforms are combined into one bilinear resampling, edges filled by reflection (Keras' default fill mode).
/// </summary>
public sealed record ImageAugmentation
{
    /// <summary>Mirror left-right with probability 1/2.</summary>
    public bool HorizontalFlip { get; init; }

    /// <summary>Mirror top-bottom with probability 1/2.</summary>
    public bool VerticalFlip { get; init; }

    /// <summary>Rotation by a uniform angle in [-f, f] x 2 pi (Keras' RandomRotation factor); 0 for none.</summary>
    public double Rotation { get; init; }

    /// <summary>Zoom by a uniform factor in [1 - f, 1 + f] (values above 1 zoom in); 0 for none.</summary>
    public double Zoom { get; init; }

    /// <summary>Shift by a uniform fraction in [-f, f] of the height and of the width; 0 for none.</summary>
    public double Translation { get; init; }

    /// <summary>Add a uniform delta in [-f, f] x 255 to every pixel (Keras' RandomBrightness factor); 0 for none.</summary>
    public double Brightness { get; init; }

    /// <summary>Scale the deviation from each channel's mean by a uniform factor in [1 - f, 1 + f]; 0 for none.</summary>
    public double Contrast { get; init; }

    /// <summary>The CLI's <c>--augment</c>: horizontal flip, 10% translation, zoom 10%, rotation 5% (18 degrees).</summary>
    public static ImageAugmentation Default { get; } = new() { HorizontalFlip = true, Translation = 0.1, Zoom = 0.1, Rotation = 0.05 };

    /// <summary>Checks the factors.</summary>
    /// <exception cref="InvalidOptionException">A factor is negative, not finite, or (zoom, contrast) not below 1.</exception>
    public void Validate()
    {
        static void Check(double v, string name, double max)
        {
            if (!double.IsFinite(v) || v < 0 || v > max)
                throw new InvalidOptionException(name, $"augmentation {name} must be between 0 and {max}; received {v}.");
        }
        Check(Rotation, nameof(Rotation), 1);
        Check(Zoom, nameof(Zoom), 0.99);
        Check(Translation, nameof(Translation), 1);
        Check(Brightness, nameof(Brightness), 1);
        Check(Contrast, nameof(Contrast), 0.99);
    }

    bool Geometric => HorizontalFlip || VerticalFlip || Rotation > 0 || Zoom > 0 || Translation > 0;

    /// <summary>Augments one image in place.</summary>
    /// <param name="pixels">Height x width x channels bytes.</param>
    /// <param name="height">Height.</param>
    /// <param name="width">Width.</param>
    /// <param name="channels">Channels.</param>
    /// <param name="random">The sample's random source.</param>
    /// <param name="scratch">Working memory of at least the image's size (reused by a worker).</param>
    public void Apply(Span<byte> pixels, int height, int width, int channels, ref SampleRandom random, byte[] scratch)
    {
        // Every draw happens whatever its outcome, so the sequence of draws is fixed by the options alone.
        bool flipX = HorizontalFlip && random.NextDouble() < 0.5;
        bool flipY = VerticalFlip && random.NextDouble() < 0.5;
        double angle = Rotation > 0 ? random.Uniform(-Rotation, Rotation) * 2 * Math.PI : 0;
        double zoom = Zoom > 0 ? random.Uniform(1 - Zoom, 1 + Zoom) : 1;
        double ty = Translation > 0 ? random.Uniform(-Translation, Translation) * height : 0;
        double tx = Translation > 0 ? random.Uniform(-Translation, Translation) * width : 0;
        double delta = Brightness > 0 ? random.Uniform(-Brightness, Brightness) * 255 : 0;
        double contrast = Contrast > 0 ? random.Uniform(1 - Contrast, 1 + Contrast) : 1;
        if (Geometric && (flipX || flipY || angle != 0 || zoom != 1 || ty != 0 || tx != 0))
            Warp(pixels, height, width, channels, flipX, flipY, angle, zoom, ty, tx, scratch);
        if (contrast != 1) AdjustContrast(pixels, height * width, channels, contrast);
        if (delta != 0)
            for (int i = 0; i < pixels.Length; i++) pixels[i] = (byte)Math.Clamp((int)Math.Round(pixels[i] + delta), 0, 255);
    }

    static void Warp(Span<byte> pixels, int h, int w, int c, bool flipX, bool flipY, double angle, double zoom, double ty, double tx, byte[] scratch)
    {
        var src = scratch.AsSpan(0, pixels.Length);
        pixels.CopyTo(src);
        double cy = (h - 1) / 2.0, cx = (w - 1) / 2.0;
        double cos = Math.Cos(angle), sin = Math.Sin(angle);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                // Output pixel -> source pixel: undo the translation, the rotation, the zoom, then the flips.
                double dy = y - cy - ty, dx = x - cx - tx;
                double ry = (cos * dy + sin * dx) / zoom, rx = (-sin * dy + cos * dx) / zoom;
                double sy = ry + cy, sx = rx + cx;
                if (flipY) sy = h - 1 - sy;
                if (flipX) sx = w - 1 - sx;
                int y0 = (int)Math.Floor(sy), x0 = (int)Math.Floor(sx);
                double fy = sy - y0, fx = sx - x0;
                int ya = Reflect(y0, h), yb = Reflect(y0 + 1, h), xa = Reflect(x0, w), xb = Reflect(x0 + 1, w);
                int o = (y * w + x) * c;
                for (int k = 0; k < c; k++)
                {
                    double v = (1 - fy) * ((1 - fx) * src[(ya * w + xa) * c + k] + fx * src[(ya * w + xb) * c + k])
                             + fy * ((1 - fx) * src[(yb * w + xa) * c + k] + fx * src[(yb * w + xb) * c + k]);
                    pixels[o + k] = (byte)Math.Clamp((int)Math.Round(v), 0, 255);
                }
            }
    }

    // Keras' "reflect" fill: (d c b a | a b c d | d c b a).
    static int Reflect(int i, int n)
    {
        if (n == 1) return 0;
        int period = 2 * n;
        i %= period;
        if (i < 0) i += period;
        return i < n ? i : period - 1 - i;
    }

    static void AdjustContrast(Span<byte> pixels, int count, int channels, double factor)
    {
        Span<double> mean = stackalloc double[channels];
        for (int i = 0; i < count; i++)
            for (int k = 0; k < channels; k++) mean[k] += pixels[i * channels + k];
        for (int k = 0; k < channels; k++) mean[k] /= count;
        for (int i = 0; i < count; i++)
            for (int k = 0; k < channels; k++)
            {
                int j = i * channels + k;
                pixels[j] = (byte)Math.Clamp((int)Math.Round((pixels[j] - mean[k]) * factor + mean[k]), 0, 255);
            }
    }
}
