using ConvKit.Layers;

namespace ConvKit.Tests.Layers;

// Issue 13: `padding: "same"` must compile and mean what Padding.Same means, everywhere a padding is taken.
public class PaddingTests
{
    [Fact]
    public void KerasStringsCompileWherePaddingIsTakenAndMeanTheSameAsTheStaticMembers()
    {
        var input = new Shape(7, 9, 3);
        Assert.Equal(new Conv2D(4, 3, strides: 2, padding: Padding.Same).ComputeOutputShape(input),
            new Conv2D(4, 3, strides: 2, padding: "same").ComputeOutputShape(input));
        Assert.Equal(new Shape(4, 5, 4), new Conv2D(4, 3, strides: 2, padding: "same").ComputeOutputShape(input));
        Assert.Equal(new Shape(3, 4, 4), new Conv2D(4, 3, strides: 2, padding: "valid").ComputeOutputShape(input));
        Assert.Equal(new Shape(4, 5, 3), new MaxPooling2D(2, padding: "same").ComputeOutputShape(input));
        Assert.Equal(new Shape(4, 5, 3), new AveragePooling2D(2, padding: "Same").ComputeOutputShape(input));
        Assert.Equal(new Shape(4, 5, 3), new MaxPool2D(2, padding: "SAME").ComputeOutputShape(input));
        Assert.Equal(new Shape(3, 4, 3), new AvgPool2D(2, padding: "valid").ComputeOutputShape(input));
        var rows = ConvArithmetic.Trace(32, new ConvStep(3, Padding: "same"), new ConvStep(3, 2, "valid"));
        Assert.Equal([32, 15], rows.Select(r => r.OutputSize));
        Assert.Equal(ConvArithmetic.OutputLength(7, 3, 2, Padding.Same), ConvArithmetic.OutputLength(7, 3, 2, "same"));
    }

    [Fact]
    public void DefaultIsValidAndValuesCompareAndPrintAsKeras()
    {
        Assert.Equal(Padding.Valid, default(Padding));
        Assert.Equal(Padding.Valid, new Conv2D(4, 3).Padding);
        Assert.Equal(Padding.Valid, new ConvStep(3).Padding);
        Assert.True(Padding.Same == "same");
        Assert.True(Padding.Same != Padding.Valid);
        Assert.Equal("same", Padding.Same.ToString());
        Assert.Equal("valid", Padding.Valid.ToString());
        Assert.Equal(Padding.Same.GetHashCode(), ((Padding)"SaMe").GetHashCode());
        Assert.True(Padding.Same.IsSame && Padding.Valid.IsValid && !Padding.Same.IsValid);
        Assert.True(Padding.TryParse("VALID", out var v) && v == Padding.Valid);
        Assert.False(Padding.TryParse("causal", out _));
        Assert.False(Padding.TryParse(null, out _));
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("causal")]
    [InlineData("")]
    [InlineData(" same")]
    [InlineData(null)]
    public void AnUnknownPaddingStringIsANamedErrorListingTheValidValues(string? padding)
    {
        var e = Assert.Throws<LayerArgumentException>(() => new Conv2D(4, 3, padding: padding!));
        Assert.Equal("padding", e.Argument);
        Assert.Contains("\"valid\", \"same\"", e.Message);
        Assert.Contains(padding is null ? "padding=null" : $"padding=\"{padding}\"", e.Message);
    }

    [Fact]
    public void SavedConfigsKeepTheKerasSpelling()
    {
        var json = ConvKit.Saving.LayerRegistry.GetConfig(new Conv2D(2, 3, padding: "same")).ToJsonString()
            + ConvKit.Saving.LayerRegistry.GetConfig(new MaxPooling2D(2, padding: "SAME")).ToJsonString();
        Assert.Equal(2, json.Split("\"padding\":\"same\"").Length - 1);
    }
}
