using ConvKit.Data.Streaming;

namespace ConvKit.Tests.Data.Streaming;

public class ImageAugmentationTests
{
    static byte[] Gradient(int h, int w, int c)
    {
        var px = new byte[h * w * c];
        for (int i = 0; i < px.Length; i++) px[i] = (byte)(i * 7 % 251);
        return px;
    }

    [Fact]
    public void AFlipIsAnExactMirror_AndHappensForAboutHalfTheSamples()
    {
        const int h = 5, w = 7, c = 3;
        var source = Gradient(h, w, c);
        var aug = new ImageAugmentation { HorizontalFlip = true };
        int flipped = 0;
        for (int index = 0; index < 200; index++)
        {
            var px = (byte[])source.Clone();
            var rng = new SampleRandom(3, 0, index);
            aug.Apply(px, h, w, c, ref rng, new byte[px.Length]);
            if (px.SequenceEqual(source)) continue;
            flipped++;
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    for (int k = 0; k < c; k++)
                        Assert.Equal(source[(y * w + (w - 1 - x)) * c + k], px[(y * w + x) * c + k]);
        }
        Assert.InRange(flipped, 70, 130);
    }

    [Fact]
    public void TheSameKeyGivesTheSameResult_AnotherEpochAnother()
    {
        var aug = new ImageAugmentation { Rotation = 0.1, Zoom = 0.2, Translation = 0.1, Brightness = 0.1, Contrast = 0.2 };
        byte[] Run(int epoch)
        {
            var px = Gradient(16, 16, 3);
            var rng = new SampleRandom(9, epoch, 4);
            aug.Apply(px, 16, 16, 3, ref rng, new byte[px.Length]);
            return px;
        }
        Assert.Equal(Run(0), Run(0));
        Assert.NotEqual(Run(0), Run(1));
        Assert.NotEqual(Gradient(16, 16, 3), Run(0));
    }

    [Fact]
    public void PermutationsAreShufflesFixedBySeedAndEpoch()
    {
        var a = SampleRandom.Permutation(100, 5, 0);
        Assert.Equal(Enumerable.Range(0, 100), a.Order());
        Assert.Equal(a, SampleRandom.Permutation(100, 5, 0));
        Assert.NotEqual(a, SampleRandom.Permutation(100, 5, 1));
        Assert.NotEqual(a, SampleRandom.Permutation(100, 6, 0));
    }
}
