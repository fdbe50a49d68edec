using ConvKit.Data;
using static TorchSharp.torch;

namespace ConvKit.Layers;

/// <summary>
/// Base of Keras' random augmentation layers: active only in training (identity in inference), on image batches, each
/// with its own generator so that a seed (or <see cref="Backend.SetSeed"/>) makes the augmentation repeat.
/// </summary>
public abstract class RandomAugmentation : Layer
{
    /// <summary>Creates the layer; a null seed draws one from torch's global generator.</summary>
    protected RandomAugmentation(long? seed, string? name) : base(name)
    {
        Seed = seed ?? randint(0, int.MaxValue, [1]).item<long>();
        Generator = new Generator((ulong)Seed);
    }

    /// <summary>The seed of this layer's generator.</summary>
    public long Seed { get; }

    /// <summary>This layer's random generator.</summary>
    protected Generator Generator { get; }

    // A training checkpoint saves and restores it, so a resumed run draws the same augmentations.
    internal Generator CheckpointedGenerator => Generator;

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        if (inputShape.Rank != 3)
            throw new ShapeException($"{Describe} expects images of shape (height, width, channels); received {inputShape.ToBatchString()}.");
        return inputShape;
    }

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => false;

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => IsTraining ? Augment(inputs) : inputs;

    /// <summary>The random transformation, applied in training only.</summary>
    protected abstract Tensor Augment(Tensor images);
}

/// <summary>
/// Which flips <see cref="RandomFlip"/> draws: <see cref="HorizontalAndVertical"/> (Keras' default, the default value),
/// <see cref="Horizontal"/> or <see cref="Vertical"/>. Keras' strings convert implicitly: <c>new RandomFlip("horizontal")</c>.
/// </summary>
public readonly struct FlipMode : IEquatable<FlipMode>
{
    // 0 is HorizontalAndVertical so that default(FlipMode) is Keras' default.
    readonly byte mode;

    FlipMode(byte mode) => this.mode = mode;

    /// <summary>Left-right and up-down flips, each with probability 1/2 (Keras' <c>"horizontal_and_vertical"</c>).</summary>
    public static FlipMode HorizontalAndVertical => new(0);

    /// <summary>Left-right flips (Keras' <c>"horizontal"</c>).</summary>
    public static FlipMode Horizontal => new(1);

    /// <summary>Up-down flips (Keras' <c>"vertical"</c>).</summary>
    public static FlipMode Vertical => new(2);

    /// <summary>Whether left-right flips are drawn.</summary>
    public bool FlipsHorizontally => mode != 2;

    /// <summary>Whether up-down flips are drawn.</summary>
    public bool FlipsVertically => mode != 1;

    /// <summary>Parses Keras' mode string (exact, as Keras compares it).</summary>
    /// <exception cref="LayerArgumentException">Any other string; the message lists the valid values.</exception>
    public static FlipMode Parse(string mode) => mode switch
    {
        "horizontal_and_vertical" => HorizontalAndVertical,
        "horizontal" => Horizontal,
        "vertical" => Vertical,
        _ => throw new LayerArgumentException("RandomFlip", "mode",
            $"must be 'horizontal', 'vertical' or 'horizontal_and_vertical'; received mode={(mode is null ? "null" : $"'{mode}'")}."),
    };

    /// <summary>Converts Keras' mode string.</summary>
    /// <exception cref="LayerArgumentException">Unknown mode.</exception>
    public static implicit operator FlipMode(string mode) => Parse(mode);

    /// <inheritdoc/>
    public bool Equals(FlipMode other) => mode == other.mode;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is FlipMode m && Equals(m);

    /// <inheritdoc/>
    public override int GetHashCode() => mode;

    /// <summary>Equality.</summary>
    public static bool operator ==(FlipMode a, FlipMode b) => a.mode == b.mode;

    /// <summary>Inequality.</summary>
    public static bool operator !=(FlipMode a, FlipMode b) => a.mode != b.mode;

    /// <summary>Keras' spelling.</summary>
    public override string ToString() => mode switch { 1 => "horizontal", 2 => "vertical", _ => "horizontal_and_vertical" };
}

/// <summary>Keras' <c>RandomFlip</c>: mirrors each image with probability 1/2 in training.</summary>
public class RandomFlip : RandomAugmentation
{
    /// <summary>Creates the layer; <paramref name="mode"/> is a <see cref="FlipMode"/> or Keras' string ("horizontal", "vertical",
    /// "horizontal_and_vertical", the default).</summary>
    /// <exception cref="LayerArgumentException">Unknown mode string.</exception>
    public RandomFlip(FlipMode mode = default, long? seed = null, string? name = null) : base(seed, name) => Mode = mode;

    /// <summary>Which flips are drawn.</summary>
    public FlipMode Mode { get; }

    /// <inheritdoc/>
    protected override Tensor Augment(Tensor images)
    {
        var x = images;
        if (Mode.FlipsHorizontally) x = ConvKit.Data.Augment.RandomHorizontalFlip(x, 0.5, Generator, DataFormat.ChannelsFirst);
        if (Mode.FlipsVertically)
        {
            // A vertical flip is a horizontal flip of the transposed image.
            using var transposed = x.transpose(2, 3);
            var flipped = ConvKit.Data.Augment.RandomHorizontalFlip(transposed, 0.5, Generator, DataFormat.ChannelsFirst);
            if (!ReferenceEquals(x, images)) x.Dispose();
            x = flipped.transpose(2, 3);
            flipped.Dispose();
        }
        return x;
    }
}

/// <summary>
/// Keras' <c>RandomTranslation</c> with <c>fill_mode='constant'</c>: shifts each image by up to
/// <c>heightFactor × height</c> rows and <c>widthFactor × width</c> columns (zeros fill in), in training — the
/// pad-and-random-crop of the VGG and ResNet recipes.
/// </summary>
public class RandomTranslation : RandomAugmentation
{
    /// <summary>Creates the layer; factors are fractions of the image size in [0, 1).</summary>
    /// <exception cref="LayerArgumentException">A factor outside [0, 1).</exception>
    public RandomTranslation(double heightFactor, double widthFactor, long? seed = null, string? name = null) : base(seed, name)
    {
        if (heightFactor is < 0 or >= 1) throw ArgumentError("height_factor", $"must be in [0, 1); received height_factor={heightFactor}.");
        if (widthFactor is < 0 or >= 1) throw ArgumentError("width_factor", $"must be in [0, 1); received width_factor={widthFactor}.");
        HeightFactor = heightFactor;
        WidthFactor = widthFactor;
    }

    /// <summary>Largest vertical shift as a fraction of the height.</summary>
    public double HeightFactor { get; }

    /// <summary>Largest horizontal shift as a fraction of the width.</summary>
    public double WidthFactor { get; }

    /// <inheritdoc/>
    protected override Tensor Augment(Tensor images) => ConvKit.Data.Augment.RandomTranslation(images,
        (int)Math.Round(HeightFactor * images.shape[2]), (int)Math.Round(WidthFactor * images.shape[3]), Generator, DataFormat.ChannelsFirst);
}

/// <summary>
/// Keras' <c>RandomZoom</c> with <c>fill_mode='constant'</c>: zooms each image by a factor drawn from
/// [-<c>factor</c>, +<c>factor</c>] in training; as in Keras, a positive value zooms out (the content shrinks by 1 / (1 + value)).
/// </summary>
public class RandomZoom : RandomAugmentation
{
    /// <summary>Creates the layer; <paramref name="factor"/> in [0, 1).</summary>
    /// <exception cref="LayerArgumentException">A factor outside [0, 1).</exception>
    public RandomZoom(double factor, long? seed = null, string? name = null) : base(seed, name)
    {
        if (factor is < 0 or >= 1) throw ArgumentError("height_factor", $"must be in [0, 1); received height_factor={factor}.");
        Factor = factor;
    }

    /// <summary>Largest relative zoom.</summary>
    public double Factor { get; }

    /// <inheritdoc/>
    protected override Tensor Augment(Tensor images) =>
        ConvKit.Data.Augment.RandomZoom(images, 1 / (1 + Factor), 1 / (1 - Factor), Generator, DataFormat.ChannelsFirst);
}
