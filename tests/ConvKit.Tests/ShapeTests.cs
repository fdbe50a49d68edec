using ConvKit.Layers;
using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Tests;

// Issue 13: `new Input(x.shape[1..])` must not need a manual long-to-int conversion.
public class ShapeTests
{
    [Fact]
    public void InputAcceptsTorchSharpShapes()
    {
        using var x = zeros(2, 28, 28, 1);
        var fromArray = new Input(x.shape[1..]);
        Assert.Equal(new Shape(28, 28, 1), fromArray.Shape);
        var fromSpan = new Input(x.shape.AsSpan(1));
        Assert.Equal(new Shape(28, 28, 1), fromSpan.Shape);
        Assert.Equal(new Shape(28, 28, 1), new Shape(x.shape[1..]));
        Assert.Equal(new Shape(-1, 4), new Shape(new long[] { -1, 4 }));
        var y = new Dense(3).Apply(new Flatten().Apply(fromArray));
        Assert.Equal(new Shape(3), y.Shape);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData(new long[] { 28, 0, 1 }, 1, "0")]
    [InlineData(new long[] { -3, 28 }, 0, "-3")]
    [InlineData(new long[] { 4, 3_000_000_000 }, 1, "3000000000")]
    public void ANonPositiveOrHugeLongDimensionIsANamedShapeError(long[] dims, int axis, string value)
    {
        var e = Assert.Throws<ShapeException>(() => new Input(dims));
        Assert.Contains($"shape dimension {axis} is {value}", e.Message);
        Assert.Contains($"received ({string.Join(", ", dims)})", e.Message);
        Assert.Throws<ShapeException>(() => new Input(dims.AsSpan()));
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void ANonPositiveIntDimensionIsANamedShapeError()
    {
        var e = Assert.Throws<ShapeException>(() => new Shape(28, -2, 1));
        Assert.Contains("shape dimension 1 is -2", e.Message);
    }
}
