using ConvKit.Data.Imaging;
using static TorchSharp.torch;

namespace ConvKit.Data;

/// <summary>
/// Loads a folder of images laid out like Keras' <c>image_dataset_from_directory</c>: one subfolder per class,
/// classes sorted by ordinal name, label = index of the subfolder.
/// </summary>
public static class ImageFolder
{
    static readonly string[] Extensions = [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"];

    /// <summary>
    /// Decodes every PNG/JPEG/BMP/GIF/WebP under <paramref name="root"/>'s class subfolders to RGB with
    /// <see cref="ImageDecoder"/> (pixel budget and truncation checks included). With <paramref name="imageSize"/> every
    /// image is resized by <see cref="ImageResizer"/> (bilinear on half-pixel centres as in Keras' resizing, antialiased
    /// when downscaling) to (height, width); without it all images must share the first image's size. Files with other
    /// extensions are ignored.
    /// </summary>
    /// <returns>uint8 images (N, H, W, 3) and labels, in class order then ordinal file-name order.</returns>
    /// <exception cref="DatasetNotFoundException"><paramref name="root"/> does not exist.</exception>
    /// <exception cref="DatasetFormatException">No class folder or no image, an image cannot be decoded (missing, truncated, corrupt, over the pixel budget; the message names the file), or (without
    /// <paramref name="imageSize"/>) sizes differ.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="imageSize"/> is not positive.</exception>
    /// <param name="root">The folder holding one subfolder per class.</param>
    /// <param name="imageSize">Size to resize every image to; null to require equal sizes.</param>
    /// <param name="decodeOptions">Pixel budget and aspect-ratio bound; null for the defaults.</param>
    public static ImageDataset Load(string root, (int Height, int Width)? imageSize = null, ImageDecodeOptions? decodeOptions = null)
    {
        if (imageSize is { } s && (s.Height <= 0 || s.Width <= 0))
            throw new InvalidOptionException(nameof(imageSize), $"image size must be positive, got {s}");
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
            throw new DatasetFormatException($"{root}: expected image files (PNG, JPEG, BMP, GIF, WebP) in the class subfolders, found none.");

        int h = 0, w = 0;
        byte[]? all = null;
        var labels = new long[files.Count];
        for (int i = 0; i < files.Count; i++)
        {
            var (path, label) = files[i];
            DecodedImage img;
            try
            {
                img = ImageDecoder.Decode(path, channels: 3, decodeOptions);
            }
            catch (ImageDecodeException e)
            {
                throw new DatasetFormatException(e.Message, e);
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
                img.Pixels.AsSpan(0, h * w * 3).CopyTo(dest);
            else if (imageSize is not null)
                ImageResizer.Resize(img, h, w).Pixels.CopyTo(dest);
            else
                throw new DatasetFormatException(
                    $"{ImageDecodeException.Sanitize(path)}: image is {img.Height}x{img.Width}, expected {h}x{w} like {ImageDecodeException.Sanitize(files[0].Path)}; pass an image size to resize.");
            labels[i] = label;
        }
        return new ImageDataset(tensor(all!, [files.Count, h, w, 3], ScalarType.Byte), tensor(labels, [files.Count], ScalarType.Int64), classes);
    }
}
