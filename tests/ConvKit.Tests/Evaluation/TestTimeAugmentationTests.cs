using ConvKit.Evaluation;
using ConvKit.Layers;
using ConvKit.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Evaluation;

/// <summary>Flip test-time augmentation (issue 14's Fashion-MNIST recipe): the mean of Predict on the images and their mirrors.</summary>
[Collection(nameof(ConvKit.Tests.Training.GlobalRandomCollection))]
public class TestTimeAugmentationTests
{
    // A small classifier that is not mirror-symmetric (its first convolution's weights are random), in either layout.
    static Model Classifier(DataFormat format)
    {
        manual_seed(4);
        var inputs = new Input(format == DataFormat.ChannelsLast ? [8, 6, 2] : [2, 8, 6], dataFormat: format);
        var y = new Conv2D(3, 3, activation: "relu").Apply(inputs);
        y = new Dense(4, activation: "softmax").Apply(new Flatten().Apply(y));
        return new Model(inputs, y);
    }

    [Theory]
    [InlineData(DataFormat.ChannelsLast)]
    [InlineData(DataFormat.ChannelsFirst)]
    public void TheResultIsTheMeanOfPredictOnTheImagesAndOnTheirMirrors(DataFormat format)
    {
        using var model = Classifier(format);
        using var x = format == DataFormat.ChannelsLast ? rand(10, 8, 6, 2) : rand(10, 2, 8, 6);
        int width = format == DataFormat.ChannelsLast ? 2 : 3;
        using var plain = model.Predict(x, batchSize: 4);
        using var mirrored = x.flip(width);
        using var flipped = model.Predict(mirrored, batchSize: 4);
        using var half = 0.5.ToScalar();
        using var sum = plain.add(flipped, ConvKit.Native.Scalars.One);
        using var expected = sum.mul(half);
        using var tta = TestTimeAugmentation.PredictWithFlip(model, x, batchSize: 4);
        Assert.True(tta.allclose(expected, rtol: 1e-6, atol: 1e-7));
        Assert.False(plain.allclose(flipped, rtol: 1e-3, atol: 1e-4)); // the model does see the mirror differently

        using var labels = tta.argmax(1);
        Assert.Equal(1.0, TestTimeAugmentation.AccuracyWithFlip(model, x, labels, batchSize: 4));
        using var four = 4.ToScalar();
        using var plusOne = labels.add(ConvKit.Native.Scalars.One, ConvKit.Native.Scalars.One);
        using var shifted = plusOne.remainder(four);
        Assert.Equal(0.0, TestTimeAugmentation.AccuracyWithFlip(model, x, shifted, batchSize: 4));
    }

    [Fact]
    public void NonImageInputsAndMismatchedLabelsAreNamedErrors()
    {
        using var model = Classifier(DataFormat.ChannelsLast);
        using var flat = rand(3, 96);
        Assert.Contains("needs a 4-D batch of images", Assert.Throws<ShapeException>(() => TestTimeAugmentation.PredictWithFlip(model, flat)).Message);
        using var x = rand(3, 8, 6, 2);
        using var labels = zeros(new long[] { 2 }, ScalarType.Int64);
        Assert.Contains("labels (N)", Assert.Throws<ShapeException>(() => TestTimeAugmentation.AccuracyWithFlip(model, x, labels)).Message);
    }
}
