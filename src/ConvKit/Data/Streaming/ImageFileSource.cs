using ConvKit.Data.Imaging;

namespace ConvKit.Data.Streaming;

/// <summary>The colour mode images are converted to, Keras' <c>color_mode</c>.</summary>
public enum ColorMode
{
    /// <summary>One channel (luma).</summary>
    Grayscale,

    /// <summary>Three channels.</summary>
    Rgb,

    /// <summary>Four channels, alpha unpremultiplied (opaque formats get alpha 255).</summary>
    Rgba,
}

/// <summary>
/// Image files and their labels as a <see cref="SampleSource"/>: each file is decoded when loaded (SkiaSharp, pixel
/// budget checked first, EXIF orientation applied), converted to the colour mode and resized to one size, so that
/// files of mixed sizes and modes (grayscale, RGB, RGBA, palette) make one dataset.
/// </summary>
public sealed class ImageFileSource : SampleSource
{
    readonly (string Path, int Label)[] files;
    readonly string[] classNames;
    readonly int height, width;
    readonly ImageDecodeOptions decodeOptions;

    /// <summary>Creates the source.</summary>
    /// <param name="files">Image files and their labels (indices into <paramref name="classNames"/>).</param>
    /// <param name="classNames">Class names, indexed by label.</param>
    /// <param name="imageSize">Size every image is resized to.</param>
    /// <param name="colorMode">Channels every image is converted to.</param>
    /// <param name="cropToAspectRatio">Crop the largest centred window of the target aspect ratio before resizing
    /// (Keras' crop_to_aspect_ratio) instead of stretching.</param>
    /// <param name="antialias">Widen the resize filter when downscaling (on by default, as torchvision v2).</param>
    /// <param name="decodeOptions">Pixel budget and aspect-ratio bound; EXIF orientation is always applied.</param>
    /// <exception cref="InvalidOptionException">The size is not positive, the colour mode unknown, or a label out of range.</exception>
    public ImageFileSource(IReadOnlyList<(string Path, int Label)> files, IReadOnlyList<string> classNames, (int Height, int Width) imageSize,
        ColorMode colorMode = ColorMode.Rgb, bool cropToAspectRatio = false, bool antialias = true, ImageDecodeOptions? decodeOptions = null)
    {
        ArgumentNullException.ThrowIfNull(files);
        ArgumentNullException.ThrowIfNull(classNames);
        if (imageSize.Height <= 0 || imageSize.Width <= 0)
            throw new InvalidOptionException(nameof(imageSize), $"image_size must be positive; received {imageSize.Height}x{imageSize.Width}.");
        if (imageSize.Height > 8192 || imageSize.Width > 8192)
            throw new InvalidOptionException(nameof(imageSize), $"image_size must be at most 8192x8192; received {imageSize.Height}x{imageSize.Width}.");
        if (!Enum.IsDefined(colorMode)) throw new InvalidOptionException(nameof(colorMode), $"color_mode must be Grayscale, Rgb or Rgba; received {(int)colorMode}.");
        this.files = files.ToArray();
        this.classNames = classNames.ToArray();
        foreach (var (path, label) in this.files)
            if (label < 0 || label >= this.classNames.Length)
                throw new InvalidOptionException(nameof(files), $"'{ImageDecodeException.Sanitize(path)}' has label {label}; there are {this.classNames.Length} classes.");
        (height, width) = imageSize;
        ColorMode = colorMode;
        CropToAspectRatio = cropToAspectRatio;
        Antialias = antialias;
        this.decodeOptions = (decodeOptions ?? ImageDecodeOptions.Default) with { ApplyExifOrientation = true };
        this.decodeOptions.Validate();
    }

    /// <summary>The files and labels, in source order.</summary>
    public IReadOnlyList<(string Path, int Label)> Files => files;

    /// <summary>The colour mode.</summary>
    public ColorMode ColorMode { get; }

    /// <summary>Whether images are cropped to the target aspect ratio before resizing.</summary>
    public bool CropToAspectRatio { get; }

    /// <summary>Whether downscaling is antialiased.</summary>
    public bool Antialias { get; }

    /// <inheritdoc/>
    public override int Count => files.Length;

    /// <inheritdoc/>
    public override int Height => height;

    /// <inheritdoc/>
    public override int Width => width;

    /// <inheritdoc/>
    public override int Channels => ColorMode switch { ColorMode.Grayscale => 1, ColorMode.Rgba => 4, _ => 3 };

    /// <inheritdoc/>
    public override IReadOnlyList<string> ClassNames => classNames;

    /// <inheritdoc/>
    public override long LabelOf(int index) => files[index].Label;

    /// <inheritdoc/>
    public override string Describe(int index) => files[index].Path;

    /// <inheritdoc/>
    public override void Load(int index, Span<byte> destination)
    {
        var image = ImageDecoder.Decode(files[index].Path, Channels, decodeOptions);
        if (image.Height == height && image.Width == width)
            image.Pixels.AsSpan(0, destination.Length).CopyTo(destination);
        else if (CropToAspectRatio)
        {
            var f = new float[destination.Length];
            ImageResizer.ResizeCenterCrop(image, height, width, Antialias, f);
            for (int i = 0; i < f.Length; i++) destination[i] = (byte)Math.Clamp(MathF.Round(f[i]), 0, 255);
        }
        else ImageResizer.Resize(image, height, width, Antialias).Pixels.CopyTo(destination);
    }
}
