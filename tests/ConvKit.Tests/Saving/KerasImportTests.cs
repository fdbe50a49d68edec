// These tests exercise the obsolete loader entry points, which forward to Model.LoadWeights(path, format, options).
#pragma warning disable CS0618
using ConvKit.Applications;
using ConvKit.Models;
using ConvKit.Saving;
using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

/// <summary>
/// Keras HDF5 import against Fixtures/make_import_fixtures.py: the same Keras architectures written again in PyTorch
/// (float64), with seeded random weights saved in keras.applications' .h5 layout. ConvKit must reproduce the outputs.
/// </summary>
public class KerasImportTests
{
    internal static string Dir => Path.Combine(AppContext.BaseDirectory, "Fixtures", "Import");

    internal const double Tolerance = 1e-4;

    /// <summary>Runs the model on the fixture's input and returns the max absolute difference to its output.</summary>
    internal static double MaxAbsDiff(Model model, string ioPath, bool relative = false)
    {
        using var io = SafeTensors.Read(ioPath);
        using var x = io.Get("input");
        using var expected = io.Get("output");
        using var y = model.Predict(x);
        Assert.Equal(expected.shape, y.shape);
        double diff = (y - expected).abs().max().item<float>();
        return relative ? diff / Math.Max(1.0, expected.abs().max().item<float>()) : diff;
    }

    static Model Prefix(string name, ModelOptions options, string lastLayer)
    {
        var full = ModelRegistry.Create(name, options);
        return new Model(full.Inputs[0], full.GetLayer(lastLayer).InboundNodes[0].Output, name + "_prefix");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void LeNet5MatchesTheReferenceIncludingTheFlattenOrderOfTheFirstDense(bool byName)
    {
        using var model = ModelRegistry.Create("lenet5", new ModelOptions { ClassifierActivation = null });
        var result = model.LoadKerasWeights(Path.Combine(Dir, "lenet5.h5"), byName: byName);
        Assert.Equal(5, result.LayersLoaded);
        Assert.Equal(10, result.WeightsLoaded);
        Assert.True(MaxAbsDiff(model, Path.Combine(Dir, "lenet5_io.safetensors")) < Tolerance);
    }

    [Fact]
    public void WithoutTheFlattenPermutationLeNet5WouldDiffer()
    {
        // Guards the test above: loading the dense kernel in plain transposed order gives different outputs.
        using var model = ModelRegistry.Create("lenet5", new ModelOptions { ClassifierActivation = null });
        var file = KerasH5.Read(Path.Combine(Dir, "lenet5.h5"));
        model.LoadKerasWeights(Path.Combine(Dir, "lenet5.h5"));
        var dense = model.GetLayer("dense");
        var k = file.Layer("dense").Weights[0];
        using (no_grad())
        using (var plain = tensor(k.Data, k.Shape.ToArray()).t())
            dense.OwnWeights[0].Value.copy_(plain);
        Assert.True(MaxAbsDiff(model, Path.Combine(Dir, "lenet5_io.safetensors")) > 1e-2);
    }

    [Fact]
    public void GoogLeNetStemAndInception3aMatchTheReference()
    {
        // Keras 'same' padding of the 7x7/2 convolution and 3x3/2 max pooling on even sizes is asymmetric.
        using var model = Prefix("googlenet", new ModelOptions { InputShape = (32, 32, 3) }, "inception3a");
        model.LoadKerasWeights(Path.Combine(Dir, "googlenet_3a.h5"));
        Assert.True(MaxAbsDiff(model, Path.Combine(Dir, "googlenet_3a_io.safetensors")) < Tolerance);
    }

    [Fact]
    public void ResNet50StemAndConv2StageMatchTheReference()
    {
        using var model = Prefix("resnet50", new ModelOptions { InputShape = (32, 32, 3) }, "conv2_block3_out");
        var result = model.LoadKerasWeights(Path.Combine(Dir, "resnet50_conv2.h5"));
        Assert.Equal(2 + 3 * 6 + 2, result.LayersLoaded); // conv1 + bn, 3 blocks of 3 conv + 3 bn, one projection
        Assert.True(MaxAbsDiff(model, Path.Combine(Dir, "resnet50_conv2_io.safetensors")) < Tolerance);
    }

    [Fact]
    public void InceptionV3StemAndMixed0MatchTheReferenceWithBatchNormWithoutGamma()
    {
        using var model = Prefix("inception_v3", new ModelOptions { InputShape = (75, 75, 3) }, "mixed0");
        model.LoadKerasWeights(Path.Combine(Dir, "inception_v3_mixed0.h5"));
        Assert.True(MaxAbsDiff(model, Path.Combine(Dir, "inception_v3_mixed0_io.safetensors")) < Tolerance);
    }

    [Fact]
    public void AMissingLayerIsNamedWithTheFile()
    {
        using var model = ModelRegistry.Create("lenet5_classic");
        var e = Assert.Throws<WeightsMismatchException>(() => model.LoadKerasWeights(Path.Combine(Dir, "lenet5.h5")));
        Assert.Contains("lenet5.h5", e.Message);
        Assert.Equal("conv2d_2", e.LayerName); // lenet5_classic has a third convolution
    }

    [Fact]
    public void AMisShapedWeightIsNamedWithLayerWeightAndBothShapes()
    {
        using var model = ModelRegistry.Create("lenet5", new ModelOptions { Classes = 7 });
        var e = Assert.Throws<WeightsMismatchException>(() => model.LoadKerasWeights(Path.Combine(Dir, "lenet5.h5")));
        Assert.Equal("dense_2", e.LayerName);
        Assert.Equal("dense_2/kernel:0", e.WeightName);
        Assert.Contains("(84, 7)", e.Message);
        Assert.Contains("(84, 10)", e.Message);
    }

    [Fact]
    public void SkipMismatchLeavesTheMismatchedLayerAndLoadsTheRest()
    {
        using var model = ModelRegistry.Create("lenet5", new ModelOptions { Classes = 7 });
        using var before = model.GetLayer("dense_2").OwnWeights[0].Value.clone();
        var result = model.LoadKerasWeights(Path.Combine(Dir, "lenet5.h5"), skipMismatch: true);
        Assert.Equal(4, result.LayersLoaded);
        Assert.Single(result.Skipped);
        Assert.Contains("dense_2", result.Skipped[0]);
        Assert.True(before.equal(model.GetLayer("dense_2").OwnWeights[0].Value).all().item<bool>());
        var file = KerasH5.Read(Path.Combine(Dir, "lenet5.h5"));
        var bias = file.Layer("conv2d").Weights[1].Data;
        Assert.Equal(bias, model.GetLayer("conv2d").OwnWeights[1].Value.data<float>().ToArray());
    }

    [Fact]
    public void TopologicalLoadingWithDifferentLayerCountsFails()
    {
        using var model = Prefix("lenet5", ModelOptions.Default, "conv2d_1");
        var e = Assert.Throws<WeightsMismatchException>(() => model.LoadKerasWeights(Path.Combine(Dir, "lenet5.h5"), byName: false));
        Assert.Contains("5 layers with weights", e.Message);
        Assert.Contains("has 2", e.Message);
        // By name, the file's extra layers are ignored, as in Keras.
        Assert.Equal(2, model.LoadKerasWeights(Path.Combine(Dir, "lenet5.h5")).LayersLoaded);
    }

    [Fact]
    public void NothingIsWrittenWhenALaterLayerDoesNotFit()
    {
        using var model = ModelRegistry.Create("lenet5", new ModelOptions { Classes = 7 });
        using var before = model.GetLayer("conv2d").OwnWeights[0].Value.clone();
        Assert.Throws<WeightsMismatchException>(() => model.LoadKerasWeights(Path.Combine(Dir, "lenet5.h5")));
        Assert.True(before.equal(model.GetLayer("conv2d").OwnWeights[0].Value).all().item<bool>());
    }

    [Fact]
    public void AMissingFileIsFileNotFound()
    {
        using var model = ModelRegistry.Create("lenet5");
        var e = Assert.Throws<FileNotFoundException>(() => model.LoadKerasWeights(Path.Combine(Dir, "nope.h5")));
        Assert.Contains("nope.h5", e.Message);
    }
}
