using ConvKit.Applications;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Tests.Training;
using ConvKit.Training;
using TorchSharp;
using static TorchSharp.torch;
using Padding = ConvKit.Padding;

namespace ConvKit.Tests.Models;

/// <summary>
/// NaN and infinities through the inference plan (issue 12: an all-NaN image gave 0.1 for every class on the
/// optimized path, NaN layer by layer): every rewrite must propagate them exactly as the layers do.
/// </summary>
[Collection(nameof(GlobalRandomCollection))]
public class NonFiniteInferenceTests
{
    /// <summary>Input patterns: all NaN, one NaN pixel, +Inf and -Inf pixels, NaN and Inf in different images.</summary>
    public static TheoryData<string> Patterns => new() { "all-nan", "one-nan", "plus-inf", "minus-inf", "mixed" };

    static Tensor Poisoned(long[] shape, string pattern, int seed)
    {
        manual_seed(seed);
        var x = randn(shape);
        using var _ = no_grad();
        long h = shape[1] / 2, w = shape[2] / 3;
        switch (pattern)
        {
            case "all-nan": { using var nan = double.NaN.ToScalar(); x.fill_(nan); } break;
            case "one-nan": x[0, h, w, 0] = tensor(float.NaN); break;
            case "plus-inf": x[0, h, w, 0] = tensor(float.PositiveInfinity); x[1, 1, 1, 0] = tensor(float.PositiveInfinity); break;
            case "minus-inf": x[0, h, w, 0] = tensor(float.NegativeInfinity); break;
            case "mixed": x[0, h, w, 0] = tensor(float.NaN); x[1, h, w, 0] = tensor(float.PositiveInfinity); x[1, 0, 0, 0] = tensor(float.NegativeInfinity); break;
        }
        return x;
    }

    static Tensor Predict(Model model, Tensor x, bool optimized)
    {
        model.InferenceOptimizations = optimized;
        try { return model.Predict(x, batchSize: (int)x.shape[0]); }
        finally { model.InferenceOptimizations = true; }
    }

    /// <summary>Same NaN positions, same infinities, finite values within FP32 rounding.</summary>
    internal static void AssertSameNonFinite(Tensor fast, Tensor plain, string what)
    {
        using var nanFast = fast.isnan();
        using var nanPlain = plain.isnan();
        Assert.True(ConcurrentInferenceTests.Identical(nanFast, nanPlain), $"{what}: NaN at {nanFast.sum().item<long>()} places optimized, {nanPlain.sum().item<long>()} layer by layer");
        using var posFast = fast.isposinf();
        using var posPlain = plain.isposinf();
        using var negFast = fast.isneginf();
        using var negPlain = plain.isneginf();
        Assert.True(ConcurrentInferenceTests.Identical(posFast, posPlain) && ConcurrentInferenceTests.Identical(negFast, negPlain), $"{what}: infinities differ");
        using var finite = isfinite(plain);
        if (!finite.any().item<bool>()) return;
        using var a = fast.masked_select(finite);
        using var b = plain.masked_select(finite);
        double d = (a - b).abs().max().item<float>() / Math.Max(1.0, b.abs().max().item<float>());
        Assert.True(d < 1e-5, $"{what}: finite values differ by {d:g3}");
    }

    static void AssertPropagates(Model model, long[] shape, string pattern)
    {
        using var x = Poisoned(shape, pattern, 5);
        using var plain = Predict(model, x, optimized: false);
        using var fast = Predict(model, x, optimized: true);
        Assert.True(plain.isfinite().logical_not().any().item<bool>(), $"{model.Name} {pattern}: the layers should give a non-finite output");
        AssertSameNonFinite(fast, plain, $"{model.Name} {pattern}");
    }

    [Theory]
    [MemberData(nameof(Patterns))]
    public void ResNet20FoldedBatchNormPackedReluAndInPlaceAdd(string pattern)
    {
        manual_seed(1);
        using var model = ModelRegistry.Create("resnet20", new ModelOptions { InputShape = (32, 32, 3) });
        ConcurrentInferenceTests.Randomize(model, 2);
        AssertPropagates(model, [2, 32, 32, 3], pattern);
    }

    [Theory]
    [MemberData(nameof(Patterns))]
    public void TorchvisionResNet18ZeroPaddingFoldAndMaxPool(string pattern)
    {
        manual_seed(3);
        using var model = ModelRegistry.Create("resnet18_tv", new ModelOptions { InputShape = (64, 64, 3), ClassifierActivation = null });
        ConcurrentInferenceTests.Randomize(model, 4);
        AssertPropagates(model, [2, 64, 64, 3], pattern);
    }

    [Theory]
    [MemberData(nameof(Patterns))]
    public void PackedConvolutionsWithoutNormalizationAndInPlaceActivations(string pattern)
    {
        // Conv2D(activation='relu'), Conv2D followed by a ReLU layer, a linear strided conv, an in-place sigmoid.
        manual_seed(6);
        var input = new Input((12, 12, 3));
        var a = new Conv2D(16, 3, padding: Padding.Same, activation: "relu").Apply(input);
        var b = new Conv2D(16, 3, padding: Padding.Same).Apply(a);
        var r = new ReLU().Apply(b);
        var c = new Conv2D(8, 3, strides: 2, padding: Padding.Same).Apply(r);
        var s = new Activation("sigmoid").Apply(new Activation("relu").Apply(c));
        using var model = new Model(input, new Flatten().Apply(s), "vgg_like");
        AssertPropagates(model, [2, 12, 12, 3], pattern);
    }

    [Theory]
    [MemberData(nameof(Patterns))]
    public void LeNet5SoftmaxHead(string pattern)
    {
        manual_seed(7);
        using var model = ModelRegistry.Create("lenet5", new ModelOptions());
        AssertPropagates(model, [2, 28, 28, 1], pattern);
    }

    [Fact]
    public void AnOverflowInsideTheNetworkPropagatesAsLayerByLayer()
    {
        // Finite input and weights; the first convolution overflows to +-infinity, the second makes NaN from it
        // (infinity times a zero weight), which a fused ReLU post-op would turn into 0.
        var input = new Input((4, 4, 1));
        var c1 = new Conv2D(2, 1, activation: "relu", name: "c1");
        var c2 = new Conv2D(2, 1, activation: "relu", name: "c2");
        using var model = new Model(input, new Flatten().Apply(c2.Apply(c1.Apply(input))), "overflow");
        using (no_grad())
        {
            c1.Kernel!.copy_(tensor(new float[] { 1e30f, -1e30f }).reshape(2, 1, 1, 1));
            c2.Kernel!.copy_(tensor(new float[] { 1, 1, 0, 1 }).reshape(2, 2, 1, 1));
        }
        using var x = tensor(Enumerable.Range(0, 32).Select(i => (i % 3 == 0 ? -1e10f : 1e10f)).ToArray()).reshape(2, 4, 4, 1);
        using var plain = Predict(model, x, optimized: false);
        using var fast = Predict(model, x, optimized: true);
        Assert.True(plain.isnan().any().item<bool>(), "the layers should make NaN");
        AssertSameNonFinite(fast, plain, "overflow");
    }

    [Fact]
    public void AnAllNanImageGivesNanProbabilitiesNotAUniformDistribution()
    {
        manual_seed(8);
        using var model = ModelRegistry.Create("resnet20", new ModelOptions { InputShape = (32, 32, 3) });
        using var nan = double.NaN.ToScalar();
        using var x = full([1, 32, 32, 3], nan);
        using var p = model.Predict(x);
        Assert.True(p.isnan().all().item<bool>(), $"probabilities: {string.Join(", ", p.data<float>().ToArray())}");
    }

    [Theory]
    [InlineData("all-nan")]
    [InlineData("one-nan")]
    [InlineData("plus-inf")]
    public void EvaluateThroughTheFusedSoftmaxHeadGivesTheLayersLoss(string pattern)
    {
        manual_seed(9);
        using var model = ModelRegistry.Create("resnet20", new ModelOptions { InputShape = (32, 32, 3) });
        ConcurrentInferenceTests.Randomize(model, 10);
        model.Compile(new SGD(), new SparseCategoricalCrossentropy(), ["accuracy"]);
        using var x = Poisoned([4, 32, 32, 3], pattern, 11);
        using var y = randint(0, 10, 4, dtype: int64);
        model.InferenceOptimizations = false;
        var plain = model.Evaluate(x, y, batchSize: 2, verbose: 0);
        model.InferenceOptimizations = true;
        var fast = model.Evaluate(x, y, batchSize: 2, verbose: 0);
        Assert.Equal(double.IsNaN(plain["loss"]), double.IsNaN(fast["loss"]));
        Assert.Equal(double.IsInfinity(plain["loss"]), double.IsInfinity(fast["loss"]));
        if (double.IsFinite(plain["loss"])) Assert.True(Math.Abs(plain["loss"] - fast["loss"]) < 1e-5 * Math.Max(1, Math.Abs(plain["loss"])));
        Assert.Equal(plain["accuracy"], fast["accuracy"]);
    }
}
