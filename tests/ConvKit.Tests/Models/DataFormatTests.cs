using ConvKit.Data;
using ConvKit.Layers;
using ConvKit.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Models;

// Issue 13: Model.Apply(nhwc) and Augment.RandomHorizontalFlip(nhwc) silently treated the data as NCHW.
public class DataFormatTests
{
    static Model Net()
    {
        var inputs = new Input(new Shape(6, 5, 3));
        var x = new Conv2D(4, 3, padding: "same", activation: "relu").Apply(inputs);
        return new Model(inputs, new Dense(2).Apply(new Flatten().Apply(x)));
    }

    /// <summary>ApplyAll is Keras' model([a, b]) for several inputs and outputs: channels-last in and out (4-D
    /// outputs too), the same numbers as the internal layout.</summary>
    [Fact]
    public void ApplyAllTakesAndGivesEachTensorInTheGivenLayout()
    {
        using var _ = Backend.NameScope();
        var image = new Input(new Shape(6, 5, 3), name: "image");
        var meta = new Input(4, name: "meta");
        var maps = new Conv2D(2, 3, padding: "same").Apply(image);
        var joined = Concatenate.Of([new Flatten().Apply(maps), new Dense(3).Apply(meta)]);
        using var model = new Model([image, meta], [maps, new Dense(2).Apply(joined)]);
        using var nhwc = randn(2, 6, 5, 3);
        using var m = randn(2, 4);
        using var nchw = nhwc.permute(0, 3, 1, 2).contiguous();
        var last = model.ApplyAll([nhwc, m], DataFormat.ChannelsLast);
        var first = model.ApplyAll([nchw, m], DataFormat.ChannelsFirst);
        Assert.Equal(new long[] { 2, 6, 5, 2 }, last[0].shape);
        Assert.Equal(new long[] { 2, 2, 6, 5 }, first[0].shape);
        using (var back = first[0].permute(0, 2, 3, 1)) Assert.True(back.allclose(last[0], 1e-5, 1e-6));
        Assert.True(first[1].allclose(last[1], 1e-5, 1e-6));
        foreach (var t in last.Concat(first)) t.Dispose();
        // The NHWC batch given as channels-first is named as such.
        var e = Assert.Throws<ShapeException>(() => model.ApplyAll([nhwc, m], DataFormat.ChannelsFirst));
        Assert.Contains("NHWC", e.Message);
        Assert.Equal("dataFormat", Assert.Throws<InvalidOptionException>(() => model.ApplyAll([nhwc, m], (DataFormat)7)).Option);
    }

    [Fact]
    public void ApplyWithChannelsLastIsKerasModelOfX()
    {
        using var scope = NewDisposeScope();
        var model = Net();
        var nhwc = randn(2, 6, 5, 3);
        using (no_grad())
        {
            var viaLayout = model.Apply(nhwc, DataFormat.ChannelsLast);
            var viaInternal = model.Apply(nhwc.permute(0, 3, 1, 2).contiguous());
            var viaPredict = model.Predict(nhwc, batchSize: 2, verbose: 0);
            Assert.True(allclose(viaInternal, viaLayout, rtol: 1e-5, atol: 1e-6));
            Assert.True(allclose(viaPredict, viaLayout, rtol: 1e-5, atol: 1e-6));
            Assert.True(allclose(viaInternal, model.Apply(nhwc.permute(0, 3, 1, 2), DataFormat.ChannelsFirst)));
        }
        // A 4-D output comes back channels-last.
        var conv = new Conv2D(7, 3, padding: "same");
        Assert.Equal(new long[] { 2, 6, 5, 7 }, conv.Apply(nhwc, DataFormat.ChannelsLast).shape);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void AChannelsLastTensorGivenToTheInternalApplySaysItLooksNhwc()
    {
        using var scope = NewDisposeScope();
        var model = Net();
        var e = Assert.Throws<ShapeException>(() => model.Apply(randn(2, 6, 5, 3)));
        Assert.Contains("looks like NHWC (channels-last)", e.Message);
        Assert.Contains("DataFormat.ChannelsLast", e.Message);

        var conv = new Conv2D(4, 3);
        conv.Apply(zeros(1, 3, 8, 8)).Dispose();
        var e2 = Assert.Throws<ShapeException>(() => conv.Apply(zeros(1, 8, 8, 3)));
        Assert.Contains("looks like NHWC", e2.Message);

        // A mismatch that is not a layout mix-up gets no such hint.
        var e3 = Assert.Throws<ShapeException>(() => model.Apply(randn(2, 5, 6, 5)));
        Assert.DoesNotContain("NHWC", e3.Message);
    }

    [Fact]
    public void AugmentFlipsTheWidthAxisOfChannelsLastBatchesByDefault()
    {
        using var scope = NewDisposeScope();
        var nhwc = randn(2, 3, 4, 3);
        var flipped = Augment.RandomHorizontalFlip(nhwc, 1.0);
        Assert.True(allclose(nhwc.flip(2), flipped, rtol: 0, atol: 0)); // width, not channels
        var nchw = nhwc.permute(0, 3, 1, 2);
        Assert.True(allclose(nchw.flip(3), Augment.RandomHorizontalFlip(nchw, 1.0, dataFormat: DataFormat.ChannelsFirst), rtol: 0, atol: 0));

        // Translation and zoom: channels-last gives the channels-first result, transposed.
        using var g1 = new Generator(5);
        using var g2 = new Generator(5);
        var t1 = Augment.RandomTranslation(nhwc, 1, 1, g1);
        var t2 = Augment.RandomTranslation(nchw, 1, 1, g2, DataFormat.ChannelsFirst);
        Assert.True(allclose(t1, t2.permute(0, 2, 3, 1), rtol: 0, atol: 0));
        using var g3 = new Generator(9);
        using var g4 = new Generator(9);
        var z1 = Augment.RandomZoom(nhwc, 0.7, 1.3, g3);
        var z2 = Augment.RandomZoom(nchw, 0.7, 1.3, g4, DataFormat.ChannelsFirst);
        Assert.True(allclose(z1, z2.permute(0, 2, 3, 1)));
        Assert.Contains("(N, H, W, C)", Assert.Throws<ShapeException>(() => Augment.RandomHorizontalFlip(zeros(3, 4), 0.5)).Message);
    }
}
