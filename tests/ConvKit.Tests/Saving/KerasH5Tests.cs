using System.Text.Json;
using ConvKit.Saving;

namespace ConvKit.Tests.Saving;

public class KerasH5Tests
{
    sealed record ExpectedWeight(string name, long[] shape, double[] data);
    sealed record ExpectedLayer(string name, ExpectedWeight[] weights);

    static readonly ExpectedLayer[] Expected = JsonSerializer.Deserialize<ExpectedLayer[]>(
        File.ReadAllText(Path.Combine(SafeTensorsFixtures.Dir, "keras_expected.json")))!;

    [Theory]
    [InlineData("keras_weights.h5")] // layer_names as one attribute
    [InlineData("keras_split.h5")]   // layer_names0/1 and weight_names0/1/2, as Keras splits long attributes
    [InlineData("keras_model.h5")]   // model.save layout: everything under /model_weights
    public void ReadsEveryLayerWeightShapeAndValueExactly(string fixture)
    {
        var file = KerasH5.Read(Path.Combine(SafeTensorsFixtures.Dir, fixture));
        Assert.Equal(Expected.Select(l => l.name), file.Layers.Select(l => l.Name));
        foreach (var (exp, got) in Expected.Zip(file.Layers))
        {
            Assert.Equal(exp.weights.Select(w => w.name), got.Weights.Select(w => w.Name));
            foreach (var (ew, gw) in exp.weights.Zip(got.Weights))
            {
                Assert.Equal(ew.shape, gw.Shape);
                Assert.Equal(ew.data.Select(d => (float)d).ToArray(), gw.Data); // bit-exact float32
            }
        }
        Assert.Equal(new long[] { 3, 3, 3, 4 }, file.Layer("block1_conv1").Weights[0].Shape); // HWIO
        Assert.Equal(["bn/gamma:0", "bn/beta:0", "bn/moving_mean:0", "bn/moving_variance:0"], file.Layer("bn").Weights.Select(w => w.Name));
        Assert.Empty(file.Layer("block1_pool").Weights);
    }

    [Fact]
    public void ANonKerasOrNonHdf5FileFailsWithKerasH5FormatException()
    {
        var e = Assert.Throws<KerasH5FormatException>(() => KerasH5.Read(new MemoryStream(new byte[4096]), "zeros.h5"));
        Assert.Contains("'zeros.h5'", e.Message);
        Assert.Contains("no HDF5 signature", e.Message);
        var st = Path.Combine(SafeTensorsFixtures.Dir, "python_reference.safetensors");
        Assert.Throws<KerasH5FormatException>(() => KerasH5.Read(st));
    }

    [Fact]
    public void ErrorsNameTheLayerAndWeight()
    {
        // Truncating the file cuts off the data of the last datasets while the metadata near the start stays.
        var bytes = File.ReadAllBytes(Path.Combine(SafeTensorsFixtures.Dir, "keras_weights.h5"));
        KerasH5FormatException? e = null;
        for (int cut = bytes.Length - 1; cut > 0 && e?.WeightName is null; cut -= 64)
        {
            try { KerasH5.Read(new MemoryStream(bytes[..cut]), "cut.h5"); }
            catch (KerasH5FormatException x) { e = x; }
        }
        Assert.NotNull(e?.WeightName);
        Assert.Contains($"layer '{e!.LayerName}'", e.Message);
        Assert.Contains($"weight '{e.WeightName}'", e.Message);
    }
}
