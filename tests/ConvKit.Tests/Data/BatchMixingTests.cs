using ConvKit.Data;
using ConvKit.Data.Streaming;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Tests.Data.Streaming;
using ConvKit.Training;
using static TorchSharp.torch;

namespace ConvKit.Tests.Data;

public class BatchMixingTests
{
    // Four 1-channel 4x4 images, image i filled with the value i + 1; labels 0..3 of 4 classes.
    static Tensor Images() => tensor(new float[] { 1, 2, 3, 4 }).reshape(4, 1, 1, 1).expand(4, 1, 4, 4).contiguous();

    [Fact]
    public void MixUpMixesEachSampleWithItsPartnerByLambda()
    {
        var mixing = new BatchMixing(mixUpAlpha: 0.4);
        using var x = Images();
        using var labels = tensor(new long[] { 0, 1, 2, 3 });
        var (mixed, targets) = mixing.Mix(x, labels, classes: 4, seed: 7, epoch: 2, batch: 5);
        using (mixed)
        using (targets)
        {
            var draw = mixing.DrawFor(7, 2, 5, 4, 4, 4);
            Assert.False(draw.CutMix);
            Assert.InRange(draw.Lambda, 0, 1);
            var t = targets.data<float>().ToArray();
            for (int i = 0; i < 4; i++)
            {
                int j = draw.Partner[i];
                double expectedPixel = draw.Lambda * (i + 1) + (1 - draw.Lambda) * (j + 1);
                Assert.Equal(expectedPixel, mixed[i, 0, 2, 3].item<float>(), 5);
                for (int c = 0; c < 4; c++)
                {
                    double expected = (c == i ? draw.Lambda : 0) + (c == j ? 1 - draw.Lambda : 0);
                    Assert.Equal(expected, t[i * 4 + c], 5);
                }
            }
            Assert.Equal(Enumerable.Range(0, 4), draw.Partner.Order());
        }
    }

    [Fact]
    public void CutMixPastesThePartnersBoxAndWeighsLabelsByArea()
    {
        var mixing = new BatchMixing(cutMixAlpha: 1.0);
        using var x = Images();
        using var labels = tensor(new long[] { 0, 1, 2, 3 });
        for (int batch = 0; batch < 20; batch++)
        {
            var draw = mixing.DrawFor(3, 0, batch, 4, 4, 4);
            Assert.True(draw.CutMix);
            var (top, left, h, w) = draw.Box;
            Assert.Equal(1 - h * w / 16.0, draw.Lambda, 12);
            var (mixed, targets) = mixing.Mix(x, labels, 4, 3, 0, batch);
            using (mixed)
            using (targets)
            {
                for (int i = 0; i < 4; i++)
                    for (int r = 0; r < 4; r++)
                        for (int c = 0; c < 4; c++)
                        {
                            bool inBox = r >= top && r < top + h && c >= left && c < left + w;
                            Assert.Equal(inBox ? draw.Partner[i] + 1 : i + 1, mixed[i, 0, r, c].item<float>());
                        }
                using var rowSums = targets.sum(1);
                Assert.All(rowSums.data<float>().ToArray(), v => Assert.Equal(1f, v, 5));
            }
        }
    }

    [Fact]
    public void DrawsDependOnSeedEpochAndBatchOnly()
    {
        var mixing = new BatchMixing(mixUpAlpha: 0.2, cutMixAlpha: 1.0);
        var a = mixing.DrawFor(11, 3, 9, 32, 28, 28);
        var b = new BatchMixing(mixUpAlpha: 0.2, cutMixAlpha: 1.0).DrawFor(11, 3, 9, 32, 28, 28);
        Assert.Equal((a.CutMix, a.Lambda, a.Box), (b.CutMix, b.Lambda, b.Box));
        Assert.Equal(a.Partner, b.Partner);
        Assert.NotEqual(a.Lambda, mixing.DrawFor(11, 3, 10, 32, 28, 28).Lambda);
        Assert.NotEqual(a.Lambda, mixing.DrawFor(11, 4, 9, 32, 28, 28).Lambda);
        Assert.NotEqual(a.Lambda, mixing.DrawFor(12, 3, 9, 32, 28, 28).Lambda);
        // With both, each batch takes one of the two, about half the time each.
        int cut = Enumerable.Range(0, 400).Count(i => mixing.DrawFor(1, 0, i, 4, 8, 8).CutMix);
        Assert.InRange(cut, 150, 250);
    }

    [Theory]
    [InlineData(0.4)]
    [InlineData(2.0)]
    public void MixUpLambdaFollowsBetaAlphaAlpha(double alpha)
    {
        var mixing = new BatchMixing(mixUpAlpha: alpha);
        var l = Enumerable.Range(0, 4000).Select(i => mixing.DrawFor(5, 0, i, 2).Lambda).ToArray();
        double mean = l.Average(), variance = l.Select(v => (v - mean) * (v - mean)).Average();
        Assert.Equal(0.5, mean, 1);                                   // Beta(a, a): mean 1/2
        Assert.Equal(1 / (4 * (2 * alpha + 1)), variance, 2);         // variance 1 / (4 (2a + 1))
    }

    [Fact]
    public void InvalidAlphasAreRefusedByName()
    {
        Assert.Equal("mixUpAlpha", Assert.Throws<InvalidOptionException>(() => new BatchMixing(mixUpAlpha: -1)).Option);
        Assert.Equal("cutMixAlpha", Assert.Throws<InvalidOptionException>(() => new BatchMixing(cutMixAlpha: double.NaN)).Option);
        Assert.Equal("mixUpAlpha", Assert.Throws<InvalidOptionException>(() => new BatchMixing()).Option);
    }

    static float[] TrainOnLoader(int workers, Sequential init)
    {
        using var loader = new DataLoader(new SyntheticSource(40), batchSize: 8, seed: 4, workers: workers, rescale: 1f / 64);
        var model = DataLoaderTests.SmallCnn();
        model.SetWeights(init.GetWeights());
        model.Compile(optimizer: new SGD(learningRate: 0.05), loss: new SparseCategoricalCrossentropy(labelSmoothing: 0.1));
        model.Fit(loader, epochs: 2, verbose: 0, mixing: new BatchMixing(mixUpAlpha: 0.4, cutMixAlpha: 1.0));
        return model.Weights.SelectMany(w => w.Value.data<float>().ToArray()).ToArray();
    }

    [Fact]
    public void FitWithMixingOverALoaderIsTheSameWithOneOrFourWorkers()
    {
        var init = DataLoaderTests.SmallCnn();
        var one = TrainOnLoader(1, init);
        var four = TrainOnLoader(4, init);
        Assert.Equal(one, four);
        // And the mixing changed training: without it the weights differ.
        using var loader = new DataLoader(new SyntheticSource(40), batchSize: 8, seed: 4, workers: 1, rescale: 1f / 64);
        var plain = DataLoaderTests.SmallCnn();
        plain.SetWeights(init.GetWeights());
        plain.Compile(optimizer: new SGD(learningRate: 0.05), loss: new SparseCategoricalCrossentropy(labelSmoothing: 0.1));
        plain.Fit(loader, epochs: 2, verbose: 0);
        Assert.NotEqual(one, plain.Weights.SelectMany(w => w.Value.data<float>().ToArray()).ToArray());
    }

    [Fact]
    public void FitWithMixingOverTensorsIsReproducibleForASeed()
    {
        var init = DataLoaderTests.SmallCnn();
        using var x = rand(new long[] { 24, 6, 5, 3 }, generator: new TorchSharp.torch.Generator(1));
        using var y = tensor(Enumerable.Range(0, 24).Select(i => (long)(i % 3)).ToArray());
        float[] Run(long seed)
        {
            var m = DataLoaderTests.SmallCnn();
            m.SetWeights(init.GetWeights());
            m.Compile(optimizer: new SGD(learningRate: 0.05), loss: "sparse_categorical_crossentropy");
            m.Fit(x, y, batchSize: 8, epochs: 2, verbose: 0, seed: seed, mixing: new BatchMixing(cutMixAlpha: 1.0));
            return m.Weights.SelectMany(w => w.Value.data<float>().ToArray()).ToArray();
        }
        Assert.Equal(Run(9), Run(9));
        Assert.NotEqual(Run(9), Run(10));
    }

    [Fact]
    public void MixingWithALossWithoutASoftFormIsRefusedByName()
    {
        var model = DataLoaderTests.SmallCnn();
        model.Compile(optimizer: new SGD(), loss: "mse");
        using var x = zeros(4, 6, 5, 3);
        using var y = zeros(4, 3);
        var e = Assert.Throws<InvalidOptionException>(() => model.Fit(x, y, verbose: 0, mixing: new BatchMixing(mixUpAlpha: 0.2)));
        Assert.Equal("mixing", e.Option);
        Assert.Contains("mean_squared_error", e.Message);
    }
}
