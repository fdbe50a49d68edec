using ConvKit.Data;

namespace ConvKit.Tests.Data;

public class FashionMnistTests
{
    const string Installed = "/usr/share/datasets/fashion-mnist";

    [Fact]
    public void LoadsInstalledDebianCopy()
    {
        Assert.True(Directory.Exists(Installed), $"{Installed} is missing: apt-get install dataset-fashion-mnist");
        var resolver = new DatasetResolver { DataFolder = null, UserFolder = Path.Combine(Path.GetTempPath(), "convkit-none"), AllowDownload = false };
        using var splits = Datasets.FashionMnist.Load(resolver: resolver);
        Assert.Equal(new long[] { 60000, 28, 28, 1 }, splits.Train.Images.shape);
        Assert.Equal(new long[] { 10000, 28, 28, 1 }, splits.Test.Images.shape);
        Assert.Equal(60000, splits.Train.Labels.shape[0]);
        Assert.Equal(0, splits.Train.Labels.min().item<long>());
        Assert.Equal(9, splits.Train.Labels.max().item<long>());
        // Balanced classes: 6000 per class in train, 1000 in test.
        Assert.All(splits.Train.Labels.bincount(null).data<long>().ToArray(), c => Assert.Equal(6000, c));
        Assert.All(splits.Test.Labels.bincount(null).data<long>().ToArray(), c => Assert.Equal(1000, c));
        Assert.Equal("Ankle boot", splits.Train.ClassNames[9]);
        // The first training image is an ankle boot (label 9) per the published dataset.
        Assert.Equal(9, splits.Train.Labels[0].item<long>());
    }
}
