namespace ConvKit.Data.Imaging;

/// <summary>Limits applied to every image before any pixel buffer is allocated.</summary>
public sealed record ImageDecodeOptions
{
    /// <summary>The default pixel budget: 50 megapixels (a 200 MB RGBA buffer).</summary>
    public const long DefaultMaxPixels = 50_000_000;

    /// <summary>The default bound on the aspect ratio (longer side / shorter side): 100.</summary>
    public const double DefaultMaxAspectRatio = 100;

    /// <summary>
    /// Largest width x height accepted (default <see cref="DefaultMaxPixels"/>). Larger images are refused from their
    /// header, before their pixels are decoded. Files larger than 8 bytes per pixel of this budget plus 1 MiB are refused
    /// unread.
    /// </summary>
    public long MaxPixels { get; init; } = DefaultMaxPixels;

    /// <summary>
    /// Largest ratio of the longer to the shorter side accepted (default 100: a 1x5000 strip is refused; resizing its
    /// short side to a model's input would make a huge image).
    /// </summary>
    public double MaxAspectRatio { get; init; } = DefaultMaxAspectRatio;

    /// <summary>
    /// Turn the image as the EXIF orientation tag says it is displayed (what phones write instead of rotating the
    /// pixels). Off by default, as in torchvision's <c>decode_image</c>; the image datasets turn it on.
    /// </summary>
    public bool ApplyExifOrientation { get; init; }

    /// <summary>The defaults.</summary>
    public static ImageDecodeOptions Default { get; } = new();

    /// <summary>Checks the options.</summary>
    /// <exception cref="InvalidOptionException">A limit is not positive (or the aspect-ratio bound is below 1).</exception>
    public void Validate()
    {
        if (MaxPixels <= 0) throw new InvalidOptionException(nameof(MaxPixels), $"the pixel budget (max pixels) must be positive; received {MaxPixels}.");
        if (!(MaxAspectRatio >= 1) || double.IsInfinity(MaxAspectRatio))
            throw new InvalidOptionException(nameof(MaxAspectRatio), $"the aspect-ratio bound must be a finite number >= 1; received {KerasFormat.Repr(MaxAspectRatio)}.");
    }

    internal long MaxFileBytes => MaxPixels > (long.MaxValue - (1 << 20)) / 8 ? long.MaxValue : MaxPixels * 8 + (1 << 20);
}
