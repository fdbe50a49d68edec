using ConvKit.Data;
using static TorchSharp.torch;

namespace ConvKit.Tests.Data;

public class NormalizeTests
{
    [Fact]
    public void ToCategorical_OneHot_AndValidatesRange()
    {
        using var labels = tensor(new long[] { 2, 0, 1 });
        using var y = DataUtils.ToCategorical(labels, 3);
        Assert.Equal(ScalarType.Float32, y.dtype);
        Assert.Equal(new float[] { 0, 0, 1, 1, 0, 0, 0, 1, 0 }, y.data<float>().ToArray());
        using var bad = tensor(new long[] { 0, 3 });
        Assert.Throws<InvalidOptionException>(() => DataUtils.ToCategorical(bad, 3));
        using var negative = tensor(new long[] { -1 });
        Assert.Throws<InvalidOptionException>(() => DataUtils.ToCategorical(negative, 3));
        using var floats = tensor(new float[] { 1f });
        Assert.Throws<InvalidOptionException>(() => DataUtils.ToCategorical(floats, 3));
    }

    [Fact]
    public void Scale_AndPerChannelStandardize()
    {
        // NHWC, 2 channels: channel 0 = {0, 2, 4, 6}, channel 1 = {10, 10, 10, 30}.
        using var x = tensor(new byte[] { 0, 10, 2, 10, 4, 10, 6, 30 }, [1, 2, 2, 2]);
        using var scaled = Normalize.Scale(x, 0.5f);
        Assert.Equal(new float[] { 0, 5, 1, 5, 2, 5, 3, 15 }, scaled.data<float>().ToArray());
        var (mean, std) = Normalize.ComputeMeanStd(x);
        Assert.Equal(new[] { 3f, 15f }, mean);
        Assert.Equal(MathF.Sqrt(5), std[0], 5);
        Assert.Equal(MathF.Sqrt(75), std[1], 5);
        using var z = Normalize.Standardize(x, mean, std);
        var (m2, s2) = Normalize.ComputeMeanStd(z);
        Assert.All(m2, m => Assert.Equal(0f, m, 5));
        Assert.All(s2, s => Assert.Equal(1f, s, 5));
        // NCHW: the same data permuted gives the same statistics on axis 1.
        using var nchw = x.permute(0, 3, 1, 2);
        Assert.Equal(mean, Normalize.ComputeMeanStd(nchw, channelAxis: 1).Mean);
        Assert.Throws<InvalidOptionException>(() => Normalize.Standardize(x, [1f], [1f]));
    }

    [Fact]
    public void ToFloatNchw_ScalesAndPermutes()
    {
        using var images = tensor(new byte[] { 0, 255, 51, 102, 153, 204 }, [1, 1, 2, 3]); // N H W C = 1,1,2,3
        using var ds = new ImageDataset(images.clone(), tensor(new long[] { 0 }), ["a"]);
        using var f = ds.ToFloatNchw();
        Assert.Equal(new long[] { 1, 3, 1, 2 }, f.shape);
        Assert.Equal(new float[] { 0, 0.4f, 1, 0.6f, 0.2f, 0.8f }, f.data<float>().ToArray().Select(v => MathF.Round(v, 5)).ToArray());
    }

    [Fact]
    public void ImageDataset_ValidatesShapesAndLabels()
    {
        using var imgs = zeros([2, 3, 3, 1], ScalarType.Byte);
        using var lab = tensor(new long[] { 0, 2 });
        Assert.Throws<InvalidOptionException>(() => new ImageDataset(imgs, lab, ["a", "b"]));
        using var lab1 = tensor(new long[] { 0 });
        Assert.Throws<InvalidOptionException>(() => new ImageDataset(imgs, lab1, ["a", "b"]));
        using var f = zeros([2, 3, 3, 1]);
        Assert.Throws<InvalidOptionException>(() => new ImageDataset(f, lab, ["a", "b", "c"]));
    }
}
