using ConvKit.Data;
using static TorchSharp.torch;
using static ConvKit.Tests.Ranges;

namespace ConvKit.Tests.Data;

public class AugmentTests
{
    static bool Same(Tensor a, Tensor b) { using var eq = a.eq(b); using var all = eq.all(); return all.item<bool>(); }

    // Distinct positive values, so a zero always means padding and no two shifts look alike.
    static Tensor Batch(int n, int c, int h, int w) => Arange(1, n * c * h * w + 1, ScalarType.Float32).reshape(n, c, h, w);

    [Fact]
    public void Flip_FlipsExactlyChosenSamples_AndIsReproducible()
    {
        using var x = Batch(64, 2, 3, 4);
        using var flippedAll = x.flip(3);
        using var g1 = new Generator(42);
        using var g2 = new Generator(42);
        using var a = Augment.RandomHorizontalFlip(x, 0.5, g1, dataFormat: DataFormat.ChannelsFirst);
        using var b = Augment.RandomHorizontalFlip(x, 0.5, g2, dataFormat: DataFormat.ChannelsFirst);
        Assert.True(Same(a, b));
        int flipped = 0;
        for (int i = 0; i < 64; i++)
        {
            bool same = Same(a[i], x[i]), mirrored = Same(a[i], flippedAll[i]);
            Assert.True(same ^ mirrored, $"sample {i} is neither the original nor its mirror");
            if (mirrored) flipped++;
        }
        Assert.InRange(flipped, 16, 48); // p = 0.5 over 64 samples
        using var none = Augment.RandomHorizontalFlip(x, 0, g1, dataFormat: DataFormat.ChannelsFirst);
        using var all = Augment.RandomHorizontalFlip(x, 1, g1, dataFormat: DataFormat.ChannelsFirst);
        Assert.True(Same(none, x));
        Assert.True(Same(all, flippedAll));
    }

    [Fact]
    public void Translation_ShiftsEachSampleByAnIntegerOffset_WithZeroFill()
    {
        const int n = 32, c = 2, h = 5, w = 6, my = 2, mx = 3;
        using var x = Batch(n, c, h, w);
        using var g = new Generator(7);
        using var y = Augment.RandomTranslation(x, my, mx, g, dataFormat: DataFormat.ChannelsFirst);
        Assert.Equal(x.shape, y.shape);
        var xs = x.data<float>().ToArray();
        var ys = y.data<float>().ToArray();
        var seen = new HashSet<(int, int)>();
        for (int i = 0; i < n; i++)
        {
            var match = (from dy in Enumerable.Range(-my, 2 * my + 1)
                         from dx in Enumerable.Range(-mx, 2 * mx + 1)
                         where Shifted(xs, ys, i, c, h, w, dy, dx)
                         select (dy, dx)).ToList();
            Assert.Single(match);
            seen.Add(match[0]);
        }
        Assert.True(seen.Count > 5, "offsets should vary across samples");
        using var g2 = new Generator(7);
        using var again = Augment.RandomTranslation(x, my, mx, g2, dataFormat: DataFormat.ChannelsFirst);
        Assert.True(Same(again, y));
        using var zero = Augment.RandomTranslation(x, 0, 0, g2, dataFormat: DataFormat.ChannelsFirst);
        Assert.True(Same(zero, x));
    }

    static bool Shifted(float[] x, float[] y, int i, int c, int h, int w, int dy, int dx)
    {
        for (int ch = 0; ch < c; ch++)
            for (int r = 0; r < h; r++)
                for (int col = 0; col < w; col++)
                {
                    int sr = r - dy, sc = col - dx;
                    float expected = sr >= 0 && sr < h && sc >= 0 && sc < w ? x[((i * c + ch) * h + sr) * w + sc] : 0f;
                    if (y[((i * c + ch) * h + r) * w + col] != expected) return false;
                }
        return true;
    }

    [Fact]
    public void Zoom_ScaleOneIsIdentity_OthersAreReproducibleAndChangeContent()
    {
        using var x = rand(4, 3, 8, 8);
        using var g = new Generator(1);
        using var same = Augment.RandomZoom(x, 1, 1, g, dataFormat: DataFormat.ChannelsFirst);
        Assert.True(same.allclose(x, rtol: 1e-5, atol: 1e-5));
        using var g1 = new Generator(3);
        using var g2 = new Generator(3);
        using var a = Augment.RandomZoom(x, 0.5, 0.8, g1, dataFormat: DataFormat.ChannelsFirst);
        using var b = Augment.RandomZoom(x, 0.5, 0.8, g2, dataFormat: DataFormat.ChannelsFirst);
        Assert.True(Same(a, b));
        // Shrinking content by at most 0.8 leaves the border pixels zero-filled.
        using var corner = a.select(2, 0).select(2, 0);
        Assert.True(corner.abs().max().item<float>() == 0f);
        Assert.Throws<InvalidOptionException>(() => Augment.RandomZoom(x, 0, 1, g, dataFormat: DataFormat.ChannelsFirst));
    }

    [Fact]
    public void Zoom_ByTwo_MagnifiesTheCentre()
    {
        // A 4x4 image zoomed 2x: output pixel (1,1) samples input coordinate (1.25, 1.25) in pixel units.
        using var x = Arange(16, ScalarType.Float32).reshape(1, 1, 4, 4);
        using var y = Augment.RandomZoom(x, 2, 2, new Generator(0), dataFormat: DataFormat.ChannelsFirst);
        // bilinear at (1.25, 1.25): 5 + 0.25 * 1 + 0.25 * 4 = 6.25
        Assert.Equal(6.25f, y[0, 0, 1, 1].item<float>(), 4);
    }

    // Fit hands layers an (N, H, W, C) batch seen through a permute, i.e. channels-last memory, and libtorch runs every
    // convolution after it in the memory format of its input: translation and zoom must keep that memory order (an
    // NCHW-strided output made fmnist_resnet's epoch 25% slower), with the same values and draws as the NCHW path.
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void TranslationAndZoom_KeepAChannelsLastBatchChannelsLast_WithTheSameValues(int channels)
    {
        using var nhwc = rand(16, 9, 7, channels);
        using var viewed = nhwc.permute(0, 3, 1, 2);    // channels-last memory, as Fit passes it
        using var packed = empty(16, channels, 9, 7);   // the same values in NCHW memory
        packed.copy_(viewed);
        foreach (var op in new Func<Tensor, Generator, Tensor>[]
        {
            (t, g) => Augment.RandomTranslation(t, 2, 3, g, DataFormat.ChannelsFirst),
            (t, g) => Augment.RandomZoom(t, 0.7, 1.3, g, DataFormat.ChannelsFirst),
        })
        {
            using var a = op(viewed, new Generator(5));
            using var b = op(packed, new Generator(5));
            Assert.True(Same(a, b));
            Assert.Equal(viewed.stride(), a.stride());
            Assert.Equal(packed.stride(), b.stride());
        }
    }
}
