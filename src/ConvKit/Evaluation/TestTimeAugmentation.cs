// Test-time augmentation with the left-right mirror, as fastai's tta() and timm's flip evaluation do: the model sees
// each image and its mirror, and the two outputs are averaged. Keras has no built-in form; users write this loop by hand.
using ConvKit.Models;
using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Evaluation;

/// <summary>
/// Test-time augmentation: the mean of a model's outputs on each image and on its left-right mirror (for a softmax
/// classifier, the mean of the two probability vectors). Costs two Predict passes; worth a few tenths of a point of
/// accuracy on datasets whose classes are mirror-symmetric (Fashion-MNIST, CIFAR, most photos), nothing on those that
/// are not (digits, text).
/// </summary>
public static class TestTimeAugmentation
{
    /// <summary>
    /// <see cref="Model.Predict(Tensor, int, Verbosity, IEnumerable{Callbacks.Callback}?)"/> on <paramref name="x"/> and on
    /// <paramref name="x"/> mirrored left-right, averaged. <paramref name="x"/> is a batch of images in the model's
    /// <see cref="Model.InputDataFormat"/>.
    /// </summary>
    /// <returns>A new tensor owned by the caller, shaped as Predict's.</returns>
    /// <exception cref="ShapeException"><paramref name="x"/> is not a 4-D batch of images.</exception>
    public static Tensor PredictWithFlip(Model model, Tensor x, int batchSize = 32)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(x);
        if (x.dim() != 4)
            throw new ShapeException($"model '{model.Name}': test-time flipping needs a 4-D batch of images; received shape [{string.Join(", ", x.shape)}].");
        int widthAxis = model.InputDataFormat == DataFormat.ChannelsLast ? 2 : 3;
        using var plain = model.Predict(x, batchSize);
        using var mirrored = x.flip(widthAxis);
        using var flipped = model.Predict(mirrored, batchSize);
        using var half = 0.5.ToScalar();
        return plain.add(flipped, Scalars.One).mul_(half);
    }

    /// <summary>
    /// Accuracy of <see cref="PredictWithFlip"/> against integer class labels <paramref name="labels"/> (N): the
    /// fraction of images whose averaged output is largest at their label.
    /// </summary>
    /// <exception cref="ShapeException">The labels do not match the batch, or the outputs are not (N, classes).</exception>
    public static double AccuracyWithFlip(Model model, Tensor x, Tensor labels, int batchSize = 32)
    {
        ArgumentNullException.ThrowIfNull(labels);
        using var scores = PredictWithFlip(model, x, batchSize);
        if (scores.dim() != 2 || labels.dim() != 1 || labels.shape[0] != scores.shape[0])
            throw new ShapeException($"model '{model.Name}': test-time accuracy needs outputs (N, classes) and labels (N); received outputs [{string.Join(", ", scores.shape)}] and labels [{string.Join(", ", labels.shape)}].");
        return Top1.Accuracy(scores, labels);
    }
}
