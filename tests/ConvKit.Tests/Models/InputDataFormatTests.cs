using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Training;
using static TorchSharp.torch;

namespace ConvKit.Tests.Models;

// Issue 13: a model's Input declares its DataFormat (channels-last by default); Fit, Evaluate and Predict take the
// data in that layout, and a shape error on data in the other layout says which layout they look like.
public class InputDataFormatTests
{
    // Two models of one architecture and the same weights, one per input layout; the first output is the conv maps.
    static Model Net(DataFormat format, string name)
    {
        var inputs = format == DataFormat.ChannelsFirst
            ? new Input(new Shape(3, 6, 5), name: name + "_in", dataFormat: DataFormat.ChannelsFirst)
            : new Input(new Shape(6, 5, 3), name: name + "_in");
        var maps = new Conv2D(4, 3, padding: "same", activation: "relu", name: name + "_conv").Apply(inputs);
        var logits = new Dense(2, activation: "softmax", name: name + "_dense").Apply(new Flatten().Apply(maps));
        return new Model(inputs, logits, name);
    }

    static (Model Last, Model First) Pair()
    {
        var last = Net(DataFormat.ChannelsLast, "last");
        var first = Net(DataFormat.ChannelsFirst, "first");
        using (no_grad())
            foreach (var (a, b) in last.Weights.Zip(first.Weights)) b.Value.copy_(a.Value);
        return (last, first);
    }

    [Fact]
    public void TheInputDeclaresTheLayoutAndTheShapeIsReadInIt()
    {
        using var _ = Backend.NameScope();
        var (last, first) = Pair();
        Assert.Equal(DataFormat.ChannelsLast, last.InputDataFormat);
        Assert.Equal(DataFormat.ChannelsFirst, first.InputDataFormat);
        var input = (InputLayer)first.Inputs[0].Layer;
        Assert.Equal(new Shape(3, 6, 5), input.DeclaredShape);
        Assert.Equal(new Shape(6, 5, 3), input.Shape); // the graph holds shapes channels-last
        Assert.Equal(last.CountParams(), first.CountParams());
        var e = Assert.Throws<LayerArgumentException>(() => new Input(new Shape(3, 6, 5), dataFormat: (DataFormat)9));
        Assert.Equal("data_format", e.Argument);
    }

    [Fact]
    public void PredictEvaluateAndFitTakeDataInTheInputsLayout()
    {
        using var _ = Backend.NameScope();
        var (last, first) = Pair();
        using var nhwc = rand(8, 6, 5, 3);
        using var nchw = nhwc.permute(0, 3, 1, 2).contiguous();
        using var y = tensor(new long[] { 0, 1, 0, 1, 1, 0, 1, 0 });
        using (var a = last.Predict(nhwc))
        using (var b = first.Predict(nchw))
            Assert.True(a.allclose(b, 1e-5, 1e-6));
        foreach (var m in new[] { last, first }) m.Compile(optimizer: new SGD(learningRate: 0.1), loss: "sparse_categorical_crossentropy");
        var ea = last.Evaluate(nhwc, y, verbose: 0);
        var eb = first.Evaluate(nchw, y, verbose: 0);
        Assert.Equal(ea["loss"], eb["loss"], 5);
        var ha = last.Fit(nhwc, y, batchSize: 4, epochs: 2, verbose: 0, shuffle: false);
        var hb = first.Fit(nchw, y, batchSize: 4, epochs: 2, verbose: 0, shuffle: false);
        Assert.Equal(ha["loss"][1], hb["loss"][1], 4);
    }

    [Fact]
    public void PredictReturnsFourDimensionalOutputsInTheInputsLayout()
    {
        using var _ = Backend.NameScope();
        var inputs = new Input(new Shape(3, 6, 5), dataFormat: DataFormat.ChannelsFirst);
        using var model = new Model(inputs, new Conv2D(4, 3, padding: "same").Apply(inputs));
        using var x = rand(2, 3, 6, 5);
        using var y = model.Predict(x);
        Assert.Equal(new long[] { 2, 4, 6, 5 }, y.shape);
        using var none = model.Predict(zeros(0, 3, 6, 5));
        Assert.Equal(new long[] { 0, 4, 6, 5 }, none.shape);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData(DataFormat.ChannelsLast, "looks like NCHW (channels-first)")]
    [InlineData(DataFormat.ChannelsFirst, "looks like NHWC (channels-last)")]
    public void DataInTheOtherLayoutIsNamedAsSuch(DataFormat format, string expected)
    {
        using var _ = Backend.NameScope();
        using var model = Net(format, "net");
        // Predict takes the model's layout; give it the other one.
        using var wrong = format == DataFormat.ChannelsLast ? rand(2, 3, 6, 5) : rand(2, 6, 5, 3);
        var e = Assert.Throws<ShapeException>(() => model.Predict(wrong));
        Assert.Contains("model 'net' expects " + (format == DataFormat.ChannelsLast ? "channels-last (N, H, W, C) input (None, 6, 5, 3)" : "channels-first (N, C, H, W) input (None, 3, 6, 5)"), e.Message);
        Assert.Contains(expected, e.Message);
        // A shape that fits neither layout gets no layout guess.
        using var other = rand(2, 7, 7, 7);
        Assert.DoesNotContain("looks like", Assert.Throws<ShapeException>(() => model.Predict(other)).Message);
    }

    [Fact]
    public void SaveAndLoadKeepTheLayout()
    {
        using var _ = Backend.NameScope();
        var dir = Directory.CreateTempSubdirectory("convkit-layout-").FullName;
        try
        {
            var path = Path.Combine(dir, "m.safetensors");
            using var model = Net(DataFormat.ChannelsFirst, "cf");
            model.Save(path);
            using var loaded = Model.Load(path);
            Assert.Equal(DataFormat.ChannelsFirst, loaded.InputDataFormat);
            using var x = rand(2, 3, 6, 5);
            using var a = model.Predict(x);
            using var b = loaded.Predict(x);
            Assert.True(a.allclose(b));
            var seq = new Sequential([new Input(new Shape(3, 6, 5), dataFormat: DataFormat.ChannelsFirst), new Flatten(), new Dense(2)]);
            var seqPath = Path.Combine(dir, "s.safetensors");
            seq.Save(seqPath);
            using var seqLoaded = Model.Load(seqPath);
            Assert.Equal(DataFormat.ChannelsFirst, seqLoaded.InputDataFormat);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
