namespace ConvKit.Data.Streaming;

/// <summary>
/// Random access to the samples of a dataset, PyTorch's map-style <c>Dataset</c>: sample <c>i</c> is a uint8 image of
/// <see cref="Height"/> x <see cref="Width"/> x <see cref="Channels"/> (rows top to bottom, channels interleaved) and an
/// int64 label. A <see cref="DataLoader"/> reads samples on several worker threads at once, so
/// <see cref="Load"/> must be thread-safe.
/// </summary>
public abstract class SampleSource
{
    /// <summary>Number of samples.</summary>
    public abstract int Count { get; }

    /// <summary>Image height of every sample.</summary>
    public abstract int Height { get; }

    /// <summary>Image width of every sample.</summary>
    public abstract int Width { get; }

    /// <summary>Channels per pixel: 1 (grayscale), 3 (RGB) or 4 (RGBA).</summary>
    public abstract int Channels { get; }

    /// <summary>Class names, indexed by label.</summary>
    public abstract IReadOnlyList<string> ClassNames { get; }

    /// <summary>The label of sample <paramref name="index"/>, known without loading the sample.</summary>
    /// <param name="index">Sample index in [0, <see cref="Count"/>).</param>
    public abstract long LabelOf(int index);

    /// <summary>
    /// Writes sample <paramref name="index"/>'s pixels into <paramref name="destination"/> (Height x Width x Channels
    /// bytes). Thread-safe.
    /// </summary>
    /// <param name="index">Sample index in [0, <see cref="Count"/>).</param>
    /// <param name="destination">Receives the pixels.</param>
    /// <exception cref="Imaging.ImageDecodeException">The sample's file cannot be decoded: the loader skips the sample
    /// with a warning naming the file.</exception>
    public abstract void Load(int index, Span<byte> destination);

    /// <summary>How errors and warnings name sample <paramref name="index"/> (its file, for files).</summary>
    /// <param name="index">Sample index.</param>
    public virtual string Describe(int index) => $"sample {index}";

    /// <summary>Bytes of one sample.</summary>
    public int SampleBytes => checked(Height * Width * Channels);

    /// <summary>
    /// Samples per class, counted from the labels (no decoding): what <see cref="DataLoader.ClassWeights"/> balances.
    /// </summary>
    public long[] ClassCounts()
    {
        var counts = new long[ClassNames.Count];
        for (int i = 0; i < Count; i++) counts[LabelOf(i)]++;
        return counts;
    }
}

/// <summary>
/// The samples of an in-memory <see cref="ImageDataset"/> (uint8 (N, H, W, C)) as a <see cref="SampleSource"/>: a
/// copy of its images and labels is taken, so the dataset may be disposed afterwards.
/// </summary>
public sealed class InMemorySampleSource : SampleSource
{
    readonly byte[] pixels;
    readonly long[] labels;
    readonly int height, width, channels;
    readonly string[] classNames;

    /// <summary>Copies <paramref name="dataset"/>'s images and labels.</summary>
    /// <param name="dataset">The images and labels.</param>
    public InMemorySampleSource(ImageDataset dataset)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        using var contiguous = dataset.Images.contiguous();
        pixels = contiguous.data<byte>().ToArray();
        labels = dataset.Labels.data<long>().ToArray();
        (height, width, channels) = (dataset.Height, dataset.Width, dataset.Channels);
        classNames = dataset.ClassNames.Count > 0 ? dataset.ClassNames.ToArray()
            : Enumerable.Range(0, labels.Length == 0 ? 0 : (int)labels.Max() + 1).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
    }

    /// <inheritdoc/>
    public override int Count => labels.Length;

    /// <inheritdoc/>
    public override int Height => height;

    /// <inheritdoc/>
    public override int Width => width;

    /// <inheritdoc/>
    public override int Channels => channels;

    /// <inheritdoc/>
    public override IReadOnlyList<string> ClassNames => classNames;

    /// <inheritdoc/>
    public override long LabelOf(int index) => labels[index];

    /// <inheritdoc/>
    public override void Load(int index, Span<byte> destination) =>
        pixels.AsSpan(index * SampleBytes, SampleBytes).CopyTo(destination);
}
