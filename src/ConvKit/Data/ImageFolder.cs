using StbImageSharp;
using static TorchSharp.torch;

namespace ConvKit.Data;

/// <summary>
/// Loads a folder of images laid out like Keras' <c>image_dataset_from_directory</c>: one subfolder per class,
/// classes sorted by ordinal name, label = index of the subfolder.
/// </summary>
public static class ImageFolder
{
    static readonly string[] Extensions = [".png", ".jpg", ".jpeg"];

    /// <summary>
    /// Decodes every PNG/JPEG under <paramref name="root"/>'s class subfolders to RGB. With <paramref name="imageSize"/>
    /// every image is resized (bilinear, half-pixel centres as in Keras' resizing) to (height, width); without it all
    /// images must share the first image's size. Files with other extensions are ignored.
    /// </summary>
    /// <returns>uint8 images (N, H, W, 3) and labels, in class order then ordinal file-name order.</returns>
    /// <exception cref="DatasetNotFoundException"><paramref name="root"/> does not exist.</exception>
    /// <exception cref="DatasetFormatException">No class folder or no image, an image fails to decode, or (without
    /// <paramref name="imageSize"/>) sizes differ.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="imageSize"/> is not positive.</exception>
    public static ImageDataset Load(string root, (int Height, int Width)? imageSize = null)
    {
        if (imageSize is { } s && (s.Height <= 0 || s.Width <= 0))
            throw new ArgumentOutOfRangeException(nameof(imageSize), $"image size must be positive, got {s}");
        if (!Directory.Exists(root))
            throw new DatasetNotFoundException($"Image folder {root} does not exist.");
        var classes = Directory.GetDirectories(root).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();
        if (classes.Count == 0)
            throw new DatasetFormatException($"{root}: expected one subfolder per class, found none.");
        var files = new List<(string Path, int Label)>();
        for (int c = 0; c < classes.Count; c++)
            files.AddRange(Directory.GetFiles(Path.Combine(root, classes[c]))
                .Where(f => Extensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
                .Order(StringComparer.Ordinal)
                .Select(f => (f, c)));
        if (files.Count == 0)
            throw new DatasetFormatException($"{root}: expected PNG or JPEG files in the class subfolders, found none.");

        int h = 0, w = 0;
        byte[]? all = null;
        var labels = new long[files.Count];
        for (int i = 0; i < files.Count; i++)
        {
            var (path, label) = files[i];
            ImageResult img;
            try
            {
                using var stream = File.OpenRead(path);
                img = ImageResult.FromStream(stream, ColorComponents.RedGreenBlue);
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException or IndexOutOfRangeException or NullReferenceException)
            {
                // StbImageSharp reports undecodable data with these exception types.
                throw new DatasetFormatException($"{path}: cannot decode as PNG or JPEG: {e.Message}", e);
            }
            if (all is null)
            {
                (h, w) = imageSize ?? (img.Height, img.Width);
                long total = (long)files.Count * h * w * 3;
                if (total > Array.MaxLength)
                    throw new DatasetFormatException($"{root}: {files.Count} images of {h}x{w} exceed the size of one in-memory array.");
                all = new byte[total];
            }
            var dest = all.AsSpan(i * h * w * 3, h * w * 3);
            if (img.Height == h && img.Width == w)
                img.Data.AsSpan(0, h * w * 3).CopyTo(dest);
            else if (imageSize is not null)
                ResizeBilinear(img.Data, img.Height, img.Width, dest, h, w, 3);
            else
                throw new DatasetFormatException(
                    $"{path}: image is {img.Height}x{img.Width}, expected {h}x{w} like {files[0].Path}; pass an image size to resize.");
            labels[i] = label;
        }
        return new ImageDataset(tensor(all!, [files.Count, h, w, 3], ScalarType.Byte), tensor(labels, [files.Count], ScalarType.Int64), classes);
    }

    /// <summary>Bilinear resize of interleaved 8-bit pixels with half-pixel centres, edges clamped.</summary>
    internal static void ResizeBilinear(ReadOnlySpan<byte> src, int sh, int sw, Span<byte> dst, int dh, int dw, int channels)
    {
        float sy = (float)sh / dh, sx = (float)sw / dw;
        for (int y = 0; y < dh; y++)
        {
            float fy = Math.Clamp((y + 0.5f) * sy - 0.5f, 0, sh - 1);
            int y0 = (int)fy, y1 = Math.Min(y0 + 1, sh - 1);
            float wy = fy - y0;
            for (int x = 0; x < dw; x++)
            {
                float fx = Math.Clamp((x + 0.5f) * sx - 0.5f, 0, sw - 1);
                int x0 = (int)fx, x1 = Math.Min(x0 + 1, sw - 1);
                float wx = fx - x0;
                for (int c = 0; c < channels; c++)
                {
                    float top = src[(y0 * sw + x0) * channels + c] * (1 - wx) + src[(y0 * sw + x1) * channels + c] * wx;
                    float bottom = src[(y1 * sw + x0) * channels + c] * (1 - wx) + src[(y1 * sw + x1) * channels + c] * wx;
                    dst[(y * dw + x) * channels + c] = (byte)Math.Clamp(MathF.Round(top * (1 - wy) + bottom * wy), 0, 255);
                }
            }
        }
    }
}
