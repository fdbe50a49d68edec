using ConvKit.Layers;
using static TorchSharp.torch;

namespace ConvKit.Tests.Layers;

// Issue 13: flip mode is a closed set (an enum-like type) that still takes Keras' strings.
public class FlipModeTests
{
    [Fact]
    public void KerasStringsAndTheStaticMembersAreTheSameModes()
    {
        Assert.Equal(FlipMode.Horizontal, new RandomFlip("horizontal").Mode);
        Assert.Equal(FlipMode.Vertical, new RandomFlip(FlipMode.Vertical).Mode);
        Assert.Equal(FlipMode.HorizontalAndVertical, new RandomFlip().Mode);
        Assert.Equal("horizontal_and_vertical", default(FlipMode).ToString());
        Assert.Equal("vertical", FlipMode.Vertical.ToString());
        Assert.True(FlipMode.Horizontal.FlipsHorizontally && !FlipMode.Horizontal.FlipsVertically);
        Assert.True(FlipMode.Vertical.FlipsVertically && !FlipMode.Vertical.FlipsHorizontally);
    }

    [Fact]
    public void HorizontalModeOnlyEverMirrorsLeftRight()
    {
        using var scope = NewDisposeScope();
        var flip = new RandomFlip("horizontal", seed: 1);
        flip.train();
        var x = randn(16, 2, 3, 4);
        var y = flip.Apply(x);
        int flipped = 0;
        for (int i = 0; i < 16; i++)
        {
            bool mirrored = !allclose(y[i], x[i]);
            Assert.True(!mirrored || allclose(y[i], x[i].flip(2))); // (C, H, W): width is axis 2
            if (mirrored) flipped++;
        }
        Assert.InRange(flipped, 1, 15); // some, not all: drawn with probability 1/2
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("diagonal")]
    [InlineData("Horizontal ")]
    public void AnUnknownModeIsANamedError(string mode)
    {
        var e = Assert.Throws<LayerArgumentException>(() => new RandomFlip(mode));
        Assert.Equal("mode", e.Argument);
        Assert.Contains($"received mode='{mode}'", e.Message);
    }
}
