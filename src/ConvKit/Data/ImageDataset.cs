using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Data;

/// <summary>
/// Images and labels held in memory, as <c>keras.datasets.*.load_data()</c> returns them: images uint8 in
/// (N, H, W, C) layout, labels int64 (N). The dataset owns both tensors and disposes them.
/// </summary>
public sealed class ImageDataset : IDisposable
{
    /// <summary>Creates a dataset that takes ownership of <paramref name="images"/> and <paramref name="labels"/>.</summary>
    /// <exception cref="InvalidOptionException">Images are not uint8 (N, H, W, C), labels not int64 (N), or counts differ.</exception>
    /// <exception cref="InvalidOptionException">A label is outside [0, class count).</exception>
    public ImageDataset(Tensor images, Tensor labels, IReadOnlyList<string> classNames)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(classNames);
        if (images.dtype != ScalarType.Byte || images.dim() != 4)
            throw new InvalidOptionException(nameof(images), $"images must be uint8 (N, H, W, C); found {images.dtype} with shape [{string.Join(", ", images.shape)}]");
        if (labels.dtype != ScalarType.Int64 || labels.dim() != 1)
            throw new InvalidOptionException(nameof(labels), $"labels must be int64 (N); found {labels.dtype} with shape [{string.Join(", ", labels.shape)}]");
        if (images.shape[0] != labels.shape[0])
            throw new InvalidOptionException(nameof(labels), $"{images.shape[0]} images but {labels.shape[0]} labels");
        if (labels.numel() > 0 && classNames.Count > 0)
        {
            long min = labels.min().item<long>(), max = labels.max().item<long>();
            if (min < 0 || max >= classNames.Count)
                throw new InvalidOptionException(nameof(labels), $"labels span [{min}, {max}] but there are {classNames.Count} classes");
        }
        Images = images;
        Labels = labels;
        ClassNames = classNames;
    }

    /// <summary>uint8 images, (N, H, W, C).</summary>
    public Tensor Images { get; }

    /// <summary>int64 class indices, (N).</summary>
    public Tensor Labels { get; }

    /// <summary>Class names indexed by label.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Number of samples.</summary>
    public int Count => (int)Images.shape[0];

    /// <summary>Image height.</summary>
    public int Height => (int)Images.shape[1];

    /// <summary>Image width.</summary>
    public int Width => (int)Images.shape[2];

    /// <summary>Channels per pixel (1 grey, 3 RGB).</summary>
    public int Channels => (int)Images.shape[3];

    /// <summary>
    /// The images as a new float32 tensor in ConvKit's internal (N, C, H, W) layout, multiplied by
    /// <paramref name="scale"/> (default 1/255, giving [0, 1]). The caller owns the result.
    /// </summary>
    public Tensor ToFloatNchw(float scale = 1f / 255f)
    {
        using var f = Images.to_type(ScalarType.Float32);
        using var factor = scale.ToScalar();
        f.mul_(factor);
        using var view = f.permute(0, 3, 1, 2);
        return view.contiguous();
    }

    /// <summary>Disposes the image and label tensors.</summary>
    public void Dispose()
    {
        Images.Dispose();
        Labels.Dispose();
    }
}

/// <summary>The train and test parts of a dataset, like Keras' <c>(x_train, y_train), (x_test, y_test)</c>.</summary>
/// <param name="Train">Training part.</param>
/// <param name="Test">Test part.</param>
public sealed record DatasetSplits(ImageDataset Train, ImageDataset Test) : IDisposable
{
    /// <summary>Disposes both parts.</summary>
    public void Dispose()
    {
        Train.Dispose();
        Test.Dispose();
    }
}
