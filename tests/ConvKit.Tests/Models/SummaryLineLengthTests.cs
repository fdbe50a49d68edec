using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Tests.Models;

// Issue 13: Summary(new SummaryOptions { LineLength = 40 }) crashed; 140 widened only the last column.
public class SummaryLineLengthTests
{
    static Sequential Seq() => new([new InputLayer(new Shape(28, 28, 3)), new Conv2D(32, 5, name: "conv2d_with_a_long_name"),
        new MaxPool2D(2, name: "max_pooling2d_8"), new Flatten(name: "flatten_6"), new Dense(10, activation: "softmax", name: "dense_14")], name: "seq");

    static Model Functional()
    {
        var inputs = new Input(new Shape(8, 8, 3), name: "in");
        var a = new Conv2D(4, 3, padding: "same", name: "left_branch_conv").Apply(inputs);
        var b = new Conv2D(4, 1, name: "right_branch_conv").Apply(inputs);
        return new Model(inputs, new Add(name: "add").Apply(a, b), name: "fun");
    }

    static string[] Lines(string s) => s.TrimEnd('\n').Split('\n');

    [Theory]
    [InlineData(40, 18, 34)]   // Keras: int(40 * .45), int(40 * .85)
    [InlineData(140, 63, 119)] // every column scales, not only the last
    [InlineData(65, 29, 55)]   // Keras' default, explicitly
    public void SequentialColumnsScaleAsKerasPrintSummary(int length, int shapeAt, int paramsAt)
    {
        var text = Seq().Summary(new SummaryOptions { LineLength = length });
        var lines = Lines(text);
        Assert.Equal(new string('_', length), lines[1]);
        Assert.Equal(new string('=', length), lines.First(l => l.StartsWith('=')));
        Assert.Equal(shapeAt, lines[2].IndexOf("Output", StringComparison.Ordinal));
        Assert.Equal(paramsAt, lines[2].IndexOf('P'));
        Assert.All(lines.Skip(1).TakeWhile(l => !l.StartsWith("Total", StringComparison.Ordinal)), l => Assert.Equal(length, l.Length));
        Assert.Contains("2432", text); // the Conv2D's parameters still print
        Assert.Contains("46090", text);
    }

    [Fact]
    public void DefaultWidthIsUnchanged() =>
        Assert.Equal(Seq().Summary(), Seq().Summary(new SummaryOptions { LineLength = 65 }));

    [Theory]
    [InlineData(40, 12, 24, 28)] // Keras: int(40 * .3), int(40 * .6), int(40 * .7)
    [InlineData(140, 42, 84, 98)]
    public void FunctionalColumnsScaleAsKerasPrintSummary(int length, int shapeAt, int paramsAt, int connectedAt)
    {
        var text = Functional().Summary(new SummaryOptions { LineLength = length });
        var lines = Lines(text);
        Assert.Equal(new string('=', length), lines.First(l => l.StartsWith('=')));
        Assert.Equal(shapeAt, lines[2].IndexOf("Output", StringComparison.Ordinal));
        Assert.Equal(paramsAt, lines[2].IndexOf('P'));
        Assert.Equal(connectedAt, lines[2].IndexOf("Con", StringComparison.Ordinal));
        Assert.Equal(Functional().Summary(), Functional().Summary(new SummaryOptions { LineLength = 98 }));
    }

    [Fact]
    public void OptionalColumnsScaleToo()
    {
        var lines = Lines(Seq().Summary(new SummaryOptions { LineLength = 40, ShowMacs = true, ShowReceptiveField = true }));
        Assert.Equal(new string('=', 40), lines.First(l => l.StartsWith('=')));
        Assert.Contains(lines.TakeWhile(l => !l.StartsWith('=')), l => l.Contains("MAC", StringComparison.Ordinal));
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData(1)]
    [InlineData(10)]
    public void ATooSmallLineLengthIsWidenedSoEveryColumnHoldsACharacter(int length)
    {
        var text = Functional().Summary(new SummaryOptions { LineLength = length });
        var lines = Lines(text);
        Assert.Equal(new string('=', 4 * SummaryFormatter.MinColumnWidth), lines.First(l => l.StartsWith('=')));
        Assert.Contains("Total params: 128 ", string.Join("\n", lines)); // finished, with the right totals
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData(0)]
    [InlineData(-40)]
    public void ANonPositiveLineLengthIsANamedError(int length)
    {
        var e = Assert.Throws<LayerArgumentException>(() => Seq().Summary(new SummaryOptions { LineLength = length }));
        Assert.Equal("LineLength", e.Argument);
        Assert.Contains($"LineLength={length}", e.Message);
    }
}
