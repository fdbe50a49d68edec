using ConvKit.Training;
using static TorchSharp.torch;

namespace ConvKit.Tests.Training;

public class LabelSmoothingTests
{
    // One sample, three classes, probabilities (0.7, 0.2, 0.1), true class 0, s = 0.1:
    // Keras' smoothed target (0.9 + 0.1/3, 0.1/3, 0.1/3), loss = −Σ t·log p.
    static readonly double Expected = -((0.9 + 0.1 / 3) * Math.Log(0.7) + 0.1 / 3 * Math.Log(0.2) + 0.1 / 3 * Math.Log(0.1));

    [Fact]
    public void SparseLabelSmoothingMatchesTheHandComputedKerasLoss()
    {
        using var p = tensor(new[] { 0.7f, 0.2f, 0.1f }, [1, 3]);
        using var label = tensor(new[] { 0L });
        using var loss = new SparseCategoricalCrossentropy(labelSmoothing: 0.1).Compute(label, p);
        Assert.Equal(Expected, loss.item<float>(), 5);
        // The one-hot form, which Keras has, agrees.
        using var onehot = tensor(new[] { 1f, 0f, 0f }, [1, 3]);
        using var categorical = new CategoricalCrossentropy(labelSmoothing: 0.1).Compute(onehot, p);
        Assert.Equal(Expected, categorical.item<float>(), 5);
    }

    [Fact]
    public void SparseLabelSmoothingFromLogitsMatchesTheHandComputedLoss()
    {
        // logits (2, 1, 0): log-softmax by hand.
        double z = Math.Log(Math.Exp(2) + Math.Exp(1) + 1);
        double[] logp = [2 - z, 1 - z, -z];
        double s = 0.2, expected = -((1 - s) * logp[1] + s / 3 * logp.Sum()); // true class 1
        using var logits = tensor(new[] { 2f, 1f, 0f }, [1, 3]);
        using var label = tensor(new[] { 1L });
        var loss = new SparseCategoricalCrossentropy(fromLogits: true, labelSmoothing: s);
        using var value = loss.Compute(label, logits);
        Assert.Equal(expected, value.item<float>(), 5);
        using var fused = loss.CallFromLogits(label, logits);
        Assert.Equal(expected, fused.item<float>(), 5);
        // The soft-target form with the one-hot row gives the same number.
        using var onehot = tensor(new[] { 0f, 1f, 0f }, [1, 3]);
        using var soft = loss.ForSoftTargets().Compute(onehot, logits);
        Assert.Equal(expected, soft.item<float>(), 5);
    }

    [Fact]
    public void WithoutSmoothingTheLossIsUnchanged()
    {
        using var p = tensor(new[] { 0.7f, 0.2f, 0.1f }, [1, 3]);
        using var label = tensor(new[] { 0L });
        using var loss = new SparseCategoricalCrossentropy().Compute(label, p);
        Assert.Equal(-Math.Log(0.7), loss.item<float>(), 5);
    }

    [Theory]
    [InlineData(-0.1)]
    [InlineData(1.5)]
    [InlineData(double.NaN)]
    public void SmoothingOutsideZeroToOneIsRefusedByName(double s) =>
        Assert.Equal("labelSmoothing", Assert.Throws<InvalidOptionException>(() => new SparseCategoricalCrossentropy(labelSmoothing: s)).Option);
}
