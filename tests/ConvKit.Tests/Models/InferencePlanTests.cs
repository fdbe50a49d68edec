using ConvKit.Applications;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Native;
using ConvKit.Tests.Training;
using ConvKit.Training;
using TorchSharp;
using Padding = ConvKit.Padding;
using static TorchSharp.torch;

namespace ConvKit.Tests.Models;

/// <summary>
/// The inference plan (FunctionalGraph.InferencePlan): folded Conv2D+BatchNormalization, ZeroPadding2D folded into
/// convolutions, in-place activations and additions. Each test compares against the same model run layer by layer
/// (<see cref="Model.InferenceOptimizations"/> = false).
/// </summary>
[Collection(nameof(GlobalRandomCollection))]
public class InferencePlanTests
{
    /// <summary>Moving statistics and affine parameters away from their initial 0/1, as in a trained network.</summary>
    static void Randomize(Model model, int seed)
    {
        using var g = new TorchSharp.torch.Generator((ulong)seed);
        using var _ = no_grad();
        using var tenth = 0.1.ToScalar();
        using var width = 1.5.ToScalar();
        using var half = 0.5.ToScalar();
        using var twentieth = 0.05.ToScalar();
        foreach (var bn in model.Layers.OfType<BatchNormalization>())
        {
            bn.MovingMean!.copy_(randn(bn.MovingMean.shape, generator: g).mul(tenth));
            bn.MovingVariance!.copy_(rand(bn.MovingVariance.shape, generator: g).mul(width).add(half, Scalars.One));
            bn.Gamma?.copy_(rand(bn.Gamma.shape, generator: g).add(half, Scalars.One));
            bn.Beta?.copy_(randn(bn.Beta.shape, generator: g).mul(tenth));
        }
        foreach (var conv in model.Layers.OfType<Conv2D>())
            conv.Bias?.copy_(randn(conv.Bias.shape, generator: g).mul(twentieth));
    }

    static int Folds(Model model) => model.InferenceKernels.Folds;

    static Tensor Predict(Model model, Tensor x, bool optimized)
    {
        model.InferenceOptimizations = optimized;
        try { return model.Predict(x, batchSize: (int)x.shape[0]); }
        finally { model.InferenceOptimizations = true; }
    }

    /// <summary>max |a - b| / max(1, max |b|).</summary>
    static double RelativeDifference(Tensor a, Tensor b) =>
        (a - b).abs().max().to_type(float64).item<double>() / Math.Max(1.0, b.abs().max().to_type(float64).item<double>());

    static void AssertSame(Model model, Tensor x, double tolerance = 1e-5)
    {
        using var plain = Predict(model, x, optimized: false);
        using var fast = Predict(model, x, optimized: true);
        double d = RelativeDifference(fast, plain);
        Assert.True(d < tolerance, $"{model.Name}: optimized vs layer-by-layer relative difference {d:g3}");
    }

    // channelsFirst: without packed convolutions, the plan convolves on NCHW memory (graphs with 1x1 convolutions of more than 64 channels).
    [Theory]
    [InlineData("resnet20", 32, false)]     // Conv+BN, in-place ReLU and Add, 1x1 projection shortcuts
    [InlineData("resnet50", 64, true)]      // Keras ResNet: conv bias + BN, ZeroPadding2D before conv1, bottleneck 1x1s
    [InlineData("resnet18_tv", 64, false)]  // torchvision: ZeroPadding2D before every 3x3 convolution, BN without conv bias
    [InlineData("inception_v3", 75, true)]  // BN without gamma (scale=False), concatenations
    [InlineData("googlenet", 64, true)]     // no BatchNormalization: only in-place activations
    public void RegistryModelsGiveTheSameOutputsWithinFp32Rounding(string name, int size, bool channelsFirst)
    {
        manual_seed(7);
        using var model = ModelRegistry.Create(name, new ModelOptions { InputShape = (size, size, 3), ClassifierActivation = null });
        Randomize(model, 11);
        using var x = randn(2, size, size, 3);
        AssertSame(model, x);
        // NCHW memory is the fallback when packed convolutions are not available.
        Assert.Equal(channelsFirst && !PackedConvolution.Available, model.GraphForSummary!.InferenceChannelsFirst);
    }

    [Fact]
    public void FoldedWeightsAreCachedAndRebuiltAfterAnyWrite()
    {
        Assert.True(TensorVersion.Available, "libtorch's version counter should be readable on Linux x64");
        manual_seed(3);
        using var model = ModelRegistry.Create("resnet20", new ModelOptions { InputShape = (32, 32, 3) });
        Randomize(model, 5);
        using var x = randn(4, 32, 32, 3);
        Predict(model, x, optimized: true).Dispose();
        long folds = Folds(model);
        Predict(model, x, optimized: true).Dispose();
        Assert.Equal(folds, Folds(model)); // nothing written: nothing refolded

        // A user's in-place edit of one weight: that pair is refolded, and the output follows.
        var bn = model.Layers.OfType<BatchNormalization>().First();
        using var three = 3.ToScalar();
        using (no_grad()) bn.Gamma!.mul_(three);
        AssertSame(model, x);
        Assert.True(Folds(model) > folds);

        // SetWeights (copy_), then a training step (optimizer and moving statistics), then a dtype change.
        var weights = model.GetWeights();
        using var half = 0.5.ToScalar();
        using (no_grad()) weights[0].add_(half, Scalars.One);
        model.SetWeights(weights);
        foreach (var w in weights) w.Dispose();
        AssertSame(model, x);

        model.Compile(new SGD(learningRate: 0.1), new SparseCategoricalCrossentropy(), []);
        using var y = randint(0, 10, 4, dtype: int64);
        model.Fit(x, y, batchSize: 4, epochs: 1, verbose: 0);
        AssertSame(model, x);

        model.to(float64);
        using var x64 = x.to(float64);
        AssertSame(model, x64, 1e-12);
    }

    static int Packs(Model model) => model.InferenceKernels.Packs;

    [Fact]
    public void PackedKernelsArePackedOnceAndRepackedAfterAnyWrite()
    {
        if (!PackedConvolution.Available) return; // the packed path is off here (see PackedConvolutionTests)
        manual_seed(13);
        using var model = ModelRegistry.Create("resnet20", new ModelOptions { InputShape = (32, 32, 3) });
        Randomize(model, 14);
        using var x = randn(4, 32, 32, 3);
        AssertSame(model, x);
        int convolutions = model.Layers.OfType<Conv2D>().Count();
        Assert.Equal(convolutions, Packs(model)); // every convolution runs packed, each packed once
        long folds = Folds(model);

        // Another batch size and the same batch again: the packed kernels serve them, nothing is folded or packed again.
        using var x1 = randn(1, 32, 32, 3);
        AssertSame(model, x1);
        AssertSame(model, x);
        Assert.Equal(convolutions, Packs(model));
        Assert.Equal(folds, Folds(model));

        // An in-place edit of one kernel: that convolution alone is refolded and repacked, and the output follows.
        var conv = model.Layers.OfType<Conv2D>().Skip(3).First();
        using var factor = 1.5.ToScalar();
        using (no_grad()) conv.Kernel!.mul_(factor);
        AssertSame(model, x);
        Assert.Equal(convolutions + 1, Packs(model));

        // Training: every kernel and moving statistic changes, every convolution is repacked.
        model.Compile(new SGD(learningRate: 0.05), new SparseCategoricalCrossentropy(), []);
        using var y = randint(0, 10, 4, dtype: int64);
        model.Fit(x, y, batchSize: 4, epochs: 1, verbose: 0);
        AssertSame(model, x);
        Assert.Equal(2 * convolutions + 1, Packs(model));
    }

    [Fact]
    public void ConvolutionsWithoutBatchNormalizationRunPackedWithTheirReLU()
    {
        // VGG-style: Conv2D(activation='relu') and Conv2D followed by a ReLU layer, no normalization to fold.
        if (!PackedConvolution.Available) return;
        manual_seed(15);
        var input = new Input((12, 12, 3));
        var a = new Conv2D(16, 3, padding: Padding.Same, activation: "relu", name: "a").Apply(input);
        var b = new Conv2D(16, 3, padding: Padding.Same, name: "b").Apply(a);
        var r = new ReLU(name: "r").Apply(b);
        var c = new Conv2D(8, 3, strides: 2, padding: Padding.Same, name: "c").Apply(r); // linear, 'same' with stride 2: asymmetric pads
        var output = new GlobalAveragePooling2D().Apply(new Activation("sigmoid").Apply(c));
        using var model = new Model(input, output);
        using var x = randn(3, 12, 12, 3);
        AssertSame(model, x);
        Assert.Equal(3, Packs(model));
    }

    [Fact]
    public void EvaluateThroughTheFusedSoftmaxHeadAgrees()
    {
        // A softmax-ended model evaluates cross-entropy from the logits of a sub-graph; that sub-graph runs the
        // inference plan too, sharing the model's folded weights.
        manual_seed(9);
        using var model = ModelRegistry.Create("resnet20", new ModelOptions { InputShape = (32, 32, 3) });
        Randomize(model, 10);
        model.Compile(new SGD(), new SparseCategoricalCrossentropy(), ["accuracy"]);
        using var x = randn(16, 32, 32, 3);
        using var y = randint(0, 10, 16, dtype: int64);
        model.InferenceOptimizations = false;
        var plain = model.Evaluate(x, y, batchSize: 8, verbose: 0);
        model.InferenceOptimizations = true;
        long folds = Folds(model);
        Predict(model, x, optimized: true).Dispose(); // folds once for both graphs
        var fast = model.Evaluate(x, y, batchSize: 8, verbose: 0);
        Assert.Equal(plain["accuracy"], fast["accuracy"]);
        Assert.True(Math.Abs(plain["loss"] - fast["loss"]) < 1e-5 * Math.Max(1, plain["loss"]), $"{plain["loss"]} vs {fast["loss"]}");
        Assert.Equal(folds + model.Layers.OfType<BatchNormalization>().Count(), Folds(model));
    }

    [Fact]
    public void SharedAndAliasedTensorsAreNeverWrittenInPlace()
    {
        // c feeds a ReLU and a Flatten (a view of c): the ReLU must not run in place on c. d = Dropout(a) is an alias
        // of a in inference; Add(d, relu) must not write into a either. The conv output is also a model output, so
        // it must not be folded away.
        var input = new Input((6, 6, 3));
        var c = new Conv2D(4, 3, padding: Padding.Same, name: "c").Apply(input);
        var bn = new BatchNormalization(name: "bn").Apply(c);
        var relu = new Activation("relu", name: "relu").Apply(bn);
        var flat = new Flatten(name: "flat").Apply(bn);
        var a = new Conv2D(4, 1, name: "a").Apply(input);
        var d = new Dropout(0.5, name: "d").Apply(a);
        var sum = new Add(name: "sum").Apply(d, relu);
        var sum2 = new Add(name: "sum2").Apply(a, sum);
        var act = new Activation("relu", name: "act").Apply(sum2);
        using var model = new Model([input], [act, flat, c, a], "shared");
        manual_seed(1);
        model.Build(new ConvKit.Shape(6, 6, 3));
        Randomize(model, 2);
        model.eval(); // dropout as identity: d aliases a
        using var x = randn(3, 6, 6, 3);
        using var before = x.clone();
        Tensor[] Run(bool optimized)
        {
            model.InferenceOptimizations = optimized;
            using var _ = inference_mode();
            using var xi = Layout.FromKeras(x);
            return model.Forward([xi]).Select(t => t.clone()).ToArray();
        }
        var plain = Run(false);
        var fast = Run(true);
        model.InferenceOptimizations = true;
        for (int i = 0; i < plain.Length; i++)
            Assert.True(RelativeDifference(fast[i], plain[i]) < 1e-6, $"output {i}: {RelativeDifference(fast[i], plain[i]):g3}");
        Assert.True(x.eq(before).all().item<bool>(), "the input was modified");
    }

    [Fact]
    public void BatchNormalizationInTrainingModeIsNotFoldedEvenWithoutGradients()
    {
        manual_seed(4);
        using var model = ModelRegistry.Create("resnet20", new ModelOptions { InputShape = (32, 32, 3) });
        Randomize(model, 6);
        using var x = Layout.FromKeras(randn(8, 32, 32, 3));
        Tensor Run(bool optimized)
        {
            model.InferenceOptimizations = optimized;
            var state = model.GetWeights(); // batch statistics update the moving ones: start each run from the same
            try
            {
                model.train();
                using var _ = no_grad();
                return model.Forward([x])[0].clone();
            }
            finally
            {
                model.SetWeights(state);
                foreach (var t in state) t.Dispose();
                model.InferenceOptimizations = true;
            }
        }
        using var plain = Run(false);
        using var fast = Run(true);
        Assert.True(RelativeDifference(fast, plain) < 1e-6, $"{RelativeDifference(fast, plain):g3}");
    }

    [Fact]
    public void PredictReturnsOrdinaryTensorsAndLeavesTheModelTrainable()
    {
        // A subclassed-style lazy build and 'same' average pooling (a cached divisor) first met inside Predict's
        // inference mode: training afterwards must still work, and Predict's result must be usable with autograd.
        manual_seed(8);
        var model = new Sequential(name: "lazy");
        model.Add(new Conv2D(4, 3, padding: Padding.Same));
        model.Add(new BatchNormalization());
        model.Add(new AveragePooling2D(3, strides: 2, padding: Padding.Same));
        model.Add(new Flatten());
        model.Add(new Dense(3));
        using var x = randn(4, 8, 8, 2); // 8 -> 4 with a 3x3 window: asymmetric padding, the cached divisor
        using var p = model.Predict(x);
        p.mul_(Scalars.Two); // in place outside inference mode: only allowed on ordinary tensors
        using var w = ones(3, requires_grad: true);
        (p * w).sum().backward();
        Assert.NotNull(w.grad);
        model.Compile(new SGD(learningRate: 0.01), new SparseCategoricalCrossentropy(fromLogits: true), []);
        using var y = randint(0, 3, 4, dtype: int64);
        var h = model.Fit(x, y, batchSize: 2, epochs: 1, verbose: 0);
        Assert.False(double.IsNaN(h["loss"][^1]));
        model.Dispose();

        // A layer built lazily by a call under inference mode (as a subclassed model's Call may do) gets ordinary
        // weights that train.
        using var conv = new Conv2D(2, 3);
        using (inference_mode()) conv.Apply(Layout.FromKeras(randn(1, 5, 5, 1))).Dispose();
        using var loss = conv.Apply(Layout.FromKeras(randn(1, 5, 5, 1))).sum();
        loss.backward();
        Assert.NotNull(conv.Kernel!.grad);
    }

    [Fact]
    public void TheVersionCounterMovesWithEveryInPlaceWrite()
    {
        using var t = zeros(3);
        long v0 = TensorVersion.Of(t)!.Value;
        t.add_(Scalars.One, Scalars.One);
        using (var view = t.narrow(0, 0, 1)) view.mul_(Scalars.Two); // a view shares the counter
        Assert.Equal(v0 + 2, TensorVersion.Of(t));
        using (inference_mode())
        {
            using var inf = zeros(2);
            Assert.Null(TensorVersion.Of(inf)); // not tracked: the caller must not cache
        }
    }
}
