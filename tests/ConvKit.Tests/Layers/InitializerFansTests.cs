using ConvKit.Layers;
using static TorchSharp.torch;

namespace ConvKit.Tests.Layers;

// Issue 13: Initializer.Fill(t, 0, 0) silently filled U(-1.73, 1.73).
public class InitializerFansTests
{
    [Fact]
    public void ComputeFansFollowsKerasOnConvKitsLayout()
    {
        Assert.Equal((1L, 1L), Initializer.ComputeFans([]));
        Assert.Equal((7L, 7L), Initializer.ComputeFans([7]));
        Assert.Equal((784L, 10L), Initializer.ComputeFans([10, 784]));          // Dense kernel (units, in)
        Assert.Equal((3L * 25, 32L * 25), Initializer.ComputeFans([32, 3, 5, 5])); // Conv2D kernel (out, in, kh, kw)
    }

    [Fact]
    public void FillWithoutFansUsesTheShapesFansAsTheLayersDo()
    {
        manual_seed(3);
        using var w = empty(256, 128, 3, 3);
        Initializers.GlorotUniform.Fill(w);
        double limit = Math.Sqrt(6.0 / (128 * 9 + 256 * 9));
        double max = w.abs().max().item<float>();
        Assert.InRange(max, 0.99 * limit, limit);

        // A Conv2D's own kernel gets the same fans.
        var conv = new Conv2D(16, 3);
        conv.Apply(zeros(1, 8, 5, 5)).Dispose();
        var (fanIn, fanOut) = Initializer.ComputeFans(conv.Kernel!.shape);
        Assert.Equal((8L * 9, 16L * 9), (fanIn, fanOut));
        Assert.True(conv.Kernel.abs().max().item<float>() <= Math.Sqrt(6.0 / (fanIn + fanOut)));
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("glorot_uniform", 0, 0, "fanIn")]
    [InlineData("he_normal", 0, 16, "fanIn")]
    [InlineData("lecun_uniform", 16, -1, "fanOut")]
    public void AZeroFanIsANamedErrorForFanScaledInitializers(string name, long fanIn, long fanOut, string argument)
    {
        using var w = empty(4, 4);
        Initializer init = name;
        var e = Assert.Throws<LayerArgumentException>(() => init.Fill(w, fanIn, fanOut));
        Assert.Equal(argument, e.Argument);
        Assert.StartsWith(name + ":", e.Message);
        Assert.Contains("[4, 4]", e.Message);
        Assert.Contains("Fill(target)", e.Message);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void AZeroSizedWeightHasNoFan()
    {
        using var w = empty(0, 5);
        var e = Assert.Throws<LayerArgumentException>(() => Initializers.GlorotUniform.Fill(w));
        Assert.Equal("fanOut", e.Argument);
    }

    [Fact]
    public void InitializersThatIgnoreFansStillAcceptNone()
    {
        using var w = empty(3);
        Initializers.Ones.Fill(w, 0, 0);
        Assert.Equal(3f, w.sum().item<float>());
    }
}
