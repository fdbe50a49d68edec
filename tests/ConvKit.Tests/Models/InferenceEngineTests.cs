using ConvKit.Applications;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Models.Inference;
using ConvKit.Tests.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Models;

/// <summary>
/// The ONNX Runtime engine behind <see cref="InferenceModel"/> (issue 17): outputs within 1e-5 relative of the
/// layer-by-layer path, many threads bit-identical to one, a new session after a weight write, NaN and infinities as
/// layer by layer, fallback with its reason, Auto's measured choice.
/// </summary>
[Collection(nameof(GlobalRandomCollection))]
public class InferenceEngineTests
{
    static Model ResNet20(int seed)
    {
        manual_seed(seed);
        var model = ModelRegistry.Create("resnet20", new ModelOptions { InputShape = (32, 32, 3) });
        ConcurrentInferenceTests.Randomize(model, seed + 1);
        return model;
    }

    static Tensor LayerByLayer(Model model, Tensor x)
    {
        model.InferenceOptimizations = false;
        try { return model.Predict(x, batchSize: (int)x.shape[0]); }
        finally { model.InferenceOptimizations = true; }
    }

    static double Relative(Tensor a, Tensor b)
    {
        Assert.Equal(b.shape, a.shape);
        using var d = (a - b).abs().max().to_type(ScalarType.Float64);
        using var m = b.abs().max().to_type(ScalarType.Float64);
        return d.item<double>() / Math.Max(m.item<double>(), 1e-12);
    }

    [Theory]
    [InlineData("resnet20")]
    [InlineData("lenet5")]
    public void OnnxRuntimeOutputsAreWithin1e5OfTheLayers(string name)
    {
        using var model = name == "resnet20" ? ResNet20(1) : ModelRegistry.Create("lenet5", new ModelOptions());
        var s = model.ModelInputShape;
        manual_seed(2);
        using var x = randn(5, s[0], s[1], s[2]);
        using var inference = model.AsInferenceModel(InferenceEngine.OnnxRuntime);
        Assert.Equal(InferenceEngine.OnnxRuntime, inference.Engine);
        Assert.Null(inference.EngineFallbackReason);
        using var ort = inference.Predict(x, batchSize: 2);
        using var plain = LayerByLayer(model, x);
        double r = Relative(ort, plain);
        Assert.True(r <= 1e-5, $"{name}: ORT differs from the layers by {r:g3} relative");
    }

    // The session reads a Keras-layout batch in place (its export takes (N, H, W, C)); a batch whose memory is laid out
    // otherwise (a strided slice, float64, a channels-first model's NCHW input) is copied, and image outputs come back
    // in the model's layout: all within 1e-5 of the layers.
    [Theory]
    [InlineData("strided")]
    [InlineData("float64")]
    [InlineData("image-output")]
    [InlineData("channels-first")]
    public void OnnxRuntimeTakesEveryInputLayoutAndGivesImageOutputs(string kind)
    {
        manual_seed(3);
        var first = kind == "channels-first";
        var inputs = new Input(first ? [3, 12, 10] : [12, 10, 3], dataFormat: first ? DataFormat.ChannelsFirst : DataFormat.ChannelsLast);
        SymbolicTensor y = new Conv2D(4, 3, padding: Padding.Same, activation: "relu").Apply(inputs);
        y = new MaxPooling2D(2).Apply(y);
        if (kind != "image-output") y = new Dense(5).Apply(new Flatten().Apply(y));
        using var model = new Model(inputs, y);
        using var wide = first ? randn(7, 3, 12, 20) : randn(7, 12, 20, 3);
        using var x = kind switch
        {
            "strided" => wide.narrow(2, 0, 20).slice(2, 0, 20, 2),      // every other column: not contiguous
            "float64" => wide.narrow(2, 0, 10).to_type(ScalarType.Float64),
            _ => first ? wide.narrow(3, 0, 10).contiguous() : wide.narrow(2, 0, 10).contiguous(),
        };
        using var inference = model.AsInferenceModel(InferenceEngine.OnnxRuntime);
        Assert.Equal(InferenceEngine.OnnxRuntime, inference.Engine);
        using var ort = inference.Predict(x, batchSize: 3);
        using var plain = LayerByLayer(model, x);
        double r = Relative(ort, plain);
        Assert.True(r <= 1e-5, $"{kind}: ORT differs from the layers by {r:g3} relative");
    }

    [Fact]
    public void ManyThreadsGiveTheSingleThreadedResultsBitForBit()
    {
        using var model = ResNet20(3);
        using var inference = model.AsInferenceModel(InferenceEngine.OnnxRuntime);
        Assert.Equal(InferenceEngine.OnnxRuntime, inference.Engine);
        using var g = new Generator(4);
        var inputs = Enumerable.Range(0, 6).Select(i => randn([1 + i % 3, 32, 32, 3], generator: g)).ToArray();
        var alone = inputs.Select(x => inference.Predict(x)).ToArray();
        var together = new Tensor[4 * inputs.Length];
        Parallel.For(0, together.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => together[i] = inference.Predict(inputs[i % inputs.Length]));
        try
        {
            for (int i = 0; i < together.Length; i++)
                Assert.True(ConcurrentInferenceTests.Identical(together[i], alone[i % inputs.Length]), $"call {i} differs from the same call made alone");
        }
        finally
        {
            foreach (var t in inputs.Concat(alone).Concat(together)) t.Dispose();
        }
    }

    [Fact]
    public void PredictBuildsANewSessionAfterTheWeightsChange()
    {
        using var model = ResNet20(5);
        model.InferenceEngine = InferenceEngine.OnnxRuntime;
        manual_seed(6);
        using var x = randn(3, 32, 32, 3);
        using var before = model.Predict(x);
        using (var stale = model.AsInferenceModel())
        {
            Assert.Equal(InferenceEngine.OnnxRuntime, stale.Engine);
            ConcurrentInferenceTests.Randomize(model, 7);
            var e = Assert.Throws<ConvKitException>(() => stale.Predict(x).Dispose());
            Assert.Contains("changed", e.Message);
        }
        using var after = model.Predict(x);
        using var plain = LayerByLayer(model, x);
        Assert.False(ConcurrentInferenceTests.Identical(before, after), "Predict kept the old weights' session");
        Assert.True(Relative(after, plain) <= 1e-5, $"after the write ORT differs from the layers by {Relative(after, plain):g3}");
    }

    [Theory]
    [InlineData("all-nan")]
    [InlineData("one-nan")]
    [InlineData("plus-inf")]
    public void NonFiniteInputsComeOutAsLayerByLayer(string pattern)
    {
        using var model = ResNet20(8);
        manual_seed(9);
        using var x = randn(2, 32, 32, 3);
        using (no_grad())
        {
            switch (pattern)
            {
                case "all-nan": { using var nan = double.NaN.ToScalar(); x.fill_(nan); } break;
                case "one-nan": x[0, 10, 10, 0] = tensor(float.NaN); break;
                case "plus-inf": x[1, 3, 3, 1] = tensor(float.PositiveInfinity); break;
            }
        }
        using var inference = model.AsInferenceModel(InferenceEngine.OnnxRuntime);
        Assert.Equal(InferenceEngine.OnnxRuntime, inference.Engine);
        using var ort = inference.Predict(x);
        using var plain = LayerByLayer(model, x);
        Assert.True(plain.isfinite().logical_not().any().item<bool>(), $"{pattern}: the layers should give a non-finite output");
        NonFiniteInferenceTests.AssertSameNonFinite(ort, plain, $"ORT {pattern}");
    }

    [Fact]
    public void AModelOrtCannotRunFallsBackToTorchSharpWithTheReason()
    {
        using var model = ResNet20(10);
        model.to(ScalarType.Float64);
        using var inference = model.AsInferenceModel(InferenceEngine.OnnxRuntime);
        Assert.Equal(InferenceEngine.TorchSharp, inference.Engine);
        Assert.Contains("float32", inference.EngineFallbackReason);
        manual_seed(11);
        using var x = randn(2, 32, 32, 3, dtype: ScalarType.Float64);
        using var y = inference.Predict(x);
        using var plain = LayerByLayer(model, x);
        Assert.True(Relative(y, plain) <= 1e-5);

        model.InferenceOptimizations = false;
        using var unoptimized = model.AsInferenceModel(InferenceEngine.OnnxRuntime);
        Assert.Equal(InferenceEngine.TorchSharp, unoptimized.Engine);
        Assert.Contains("InferenceOptimizations", unoptimized.EngineFallbackReason);
    }

    [Fact]
    public void AutoMeasuresOnTheThirdBatchAndKeepsTheFaster()
    {
        using var model = ResNet20(12);
        model.InferenceEngine = InferenceEngine.Auto;
        manual_seed(13);
        using var x = randn(8, 32, 32, 3);
        using var inference = model.AsInferenceModel();
        Assert.Equal(InferenceEngine.Auto, inference.Engine);
        using (var first = inference.Predict(x.narrow(0, 0, 4), batchSize: 2)) { }
        Assert.Equal(InferenceEngine.Auto, inference.Engine);
        Assert.Null(inference.EngineTimings);
        using var y = inference.Predict(x, batchSize: 2);
        Assert.NotEqual(InferenceEngine.Auto, inference.Engine);
        var (torchMs, ortMs) = inference.EngineTimings!.Value;
        Assert.True(torchMs > 0 && ortMs > 0);
        Assert.Equal(ortMs < torchMs ? InferenceEngine.OnnxRuntime : InferenceEngine.TorchSharp, inference.Engine);
        using var plain = LayerByLayer(model, x);
        Assert.True(Relative(y, plain) <= 1e-5, $"Auto differs from the layers by {Relative(y, plain):g3}");
    }
}
