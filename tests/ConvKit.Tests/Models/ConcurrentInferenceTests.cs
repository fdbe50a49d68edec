using ConvKit.Applications;
using ConvKit.Callbacks;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Models.Inference;
using ConvKit.Tests.Training;
using ConvKit.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Models;

/// <summary>
/// Predict and Evaluate from many threads on one model (issue 12, "wrong results"): every result bit-identical to the
/// same call made alone, the model unchanged (training flag, moving statistics), with the inference plan on and off;
/// the thread-safe <see cref="InferenceModel"/>; Fit against concurrent inference refused by name.
/// </summary>
[Collection(nameof(GlobalRandomCollection))]
public class ConcurrentInferenceTests
{
    /// <summary>Moving statistics and affine parameters away from 0/1, as in a trained network.</summary>
    internal static void Randomize(Model model, int seed)
    {
        using var g = new Generator((ulong)seed);
        using var _ = no_grad();
        using var tenth = 0.1.ToScalar();
        using var width = 1.5.ToScalar();
        using var half = 0.5.ToScalar();
        foreach (var bn in model.Layers.OfType<BatchNormalization>())
        {
            bn.MovingMean!.copy_(randn(bn.MovingMean.shape, generator: g).mul(tenth));
            bn.MovingVariance!.copy_(rand(bn.MovingVariance.shape, generator: g).mul(width).add(half, ConvKit.Native.Scalars.One));
            bn.Gamma?.copy_(rand(bn.Gamma.shape, generator: g).add(half, ConvKit.Native.Scalars.One));
            bn.Beta?.copy_(randn(bn.Beta.shape, generator: g).mul(tenth));
        }
    }

    static Model Create(string name, int seed)
    {
        manual_seed(seed);
        var model = name == "resnet20"
            ? ModelRegistry.Create("resnet20", new ModelOptions { InputShape = (32, 32, 3) })
            : ModelRegistry.Create(name, new ModelOptions());
        Randomize(model, seed + 1);
        return model;
    }

    /// <summary>Inputs of batch 1 to 4 for the model's input shape.</summary>
    static Tensor[] Inputs(Model model, int count, int seed)
    {
        using var g = new Generator((ulong)seed);
        var s = model.ModelInputShape;
        return Enumerable.Range(0, count)
            .Select(i => randn([1 + i % 4, s[0], s[1], s[2]], generator: g))
            .ToArray();
    }

    static Tensor[] Snapshot(Model model) => model.GetWeights();

    /// <summary>torch.equal: same shape, dtype and every element bit for bit (NaN never equals).</summary>
    internal static bool Identical(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape) || a.dtype != b.dtype) return false;
        using var eq = a.eq(b);
        using var all = eq.all();
        return all.item<bool>();
    }

    static void AssertUnchanged(Tensor[] before, Model model)
    {
        var after = model.GetWeights();
        try
        {
            Assert.Equal(before.Length, after.Length);
            for (int i = 0; i < before.Length; i++)
                Assert.True(Identical(before[i], after[i]), $"weight {i} ({model.Weights.ElementAt(i).Owner.Name}/{model.Weights.ElementAt(i).Name}) changed");
        }
        finally
        {
            foreach (var t in after) t.Dispose();
        }
    }

    /// <summary>Runs <paramref name="calls"/> calls on each of <paramref name="threads"/> threads at once; returns the
    /// failures (wrong result or exception).</summary>
    static List<string> RunConcurrently(int threads, int calls, Func<int, int, string?> call)
    {
        var failures = new List<string>();
        using var start = new Barrier(threads);
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            for (int i = 0; i < calls; i++)
            {
                string? failure;
                try { failure = call(t, i); }
                catch (Exception e) { failure = $"thread {t} call {i}: {e.GetType().Name}: {e.Message}"; }
                if (failure is not null) lock (failures) failures.Add(failure);
            }
        })).ToArray();
        foreach (var w in workers) w.Start();
        foreach (var w in workers) w.Join();
        return failures;
    }

    static void PredictConcurrently(string name, bool optimized, int threads, int calls)
    {
        using var model = Create(name, 21);
        model.InferenceOptimizations = optimized;
        var inputs = Inputs(model, 12, 22);
        var expected = inputs.Select(x => model.Predict(x, batchSize: 4)).ToArray();
        var before = Snapshot(model);
        bool wasTraining = model.training;
        var failures = RunConcurrently(threads, calls, (t, i) =>
        {
            int k = (t * 7 + i) % inputs.Length;
            using var y = model.Predict(inputs[k], batchSize: 4);
            return Identical(y, expected[k]) ? null : $"thread {t} call {i} input {k}: max |diff| {(y - expected[k]).abs().max().item<float>():g3}";
        });
        Assert.True(failures.Count == 0, $"{name} (optimized: {optimized}): {failures.Count} of {threads * calls} calls wrong; first: {failures.FirstOrDefault()}");
        AssertUnchanged(before, model);
        Assert.Equal(wasTraining, model.training);
        foreach (var t in inputs.Concat(expected).Concat(before)) t.Dispose();
    }

    [Theory]
    [InlineData("resnet20", true)]
    [InlineData("resnet20", false)]
    [InlineData("lenet5", true)]
    [InlineData("lenet5", false)]
    public void ConcurrentPredictIsBitIdenticalToSingleThreaded(string name, bool optimized) => PredictConcurrently(name, optimized, 4, 50);

    [Theory]
    [Trait("Category", "Slow")]
    [InlineData("resnet20", true)]
    [InlineData("resnet20", false)]
    [InlineData("lenet5", true)]
    [InlineData("lenet5", false)]
    public void EightThreadsTimesFiveHundredPredictCallsAreBitIdentical(string name, bool optimized) => PredictConcurrently(name, optimized, 8, 500);

    [Fact]
    public void SameAveragePoolingsCachedDivisorServesConcurrentCallsOfDifferentSizes()
    {
        // 'same' average pooling caches the count of real cells for the last input size: threads alternating between
        // sizes replace it while others read it.
        manual_seed(71);
        var input = new Input(new ConvKit.Shape(ConvKit.Shape.Unknown, ConvKit.Shape.Unknown, 2));
        var pooled = new AveragePooling2D(3, strides: 2, padding: Padding.Same).Apply(new Conv2D(4, 3, padding: Padding.Same).Apply(input));
        using var model = new Model(input, new GlobalAveragePooling2D().Apply(pooled));
        using var g = new Generator(72);
        var inputs = new[] { 8, 9, 10, 13 }.Select(n => randn([2, n, n, 2], generator: g)).ToArray();
        var expected = inputs.Select(x => model.Predict(x)).ToArray();
        var failures = RunConcurrently(4, 100, (t, i) =>
        {
            int k = (t + i) % inputs.Length;
            using var y = model.Predict(inputs[k]);
            return Identical(y, expected[k]) ? null : $"thread {t} call {i} size {inputs[k].shape[1]}";
        });
        Assert.True(failures.Count == 0, $"{failures.Count} wrong; first: {failures.FirstOrDefault()}");
        foreach (var t in inputs.Concat(expected)) t.Dispose();
    }

    /// <summary>A subclassed model with dropout, batch normalization and an augmentation layer (all mode-dependent).</summary>
    sealed class Subclassed : Model
    {
        readonly RandomFlip flip = new(seed: 3);
        readonly Conv2D conv = new(8, 3, padding: Padding.Same);
        readonly BatchNormalization norm = new();
        readonly Dropout drop = new(0.5);
        readonly GlobalAveragePooling2D pool = new();
        readonly Dense head = new(4);

        public Subclassed() : base("subclassed") { }

        public override Tensor Call(Tensor inputs) => head.Apply(pool.Apply(drop.Apply(norm.Apply(conv.Apply(flip.Apply(inputs))))));
    }

    [Fact]
    public void ASubclassedModelInTrainingModePredictsInInferenceFromManyThreads()
    {
        // The model stays in training mode (the user's choice); Predict must still run dropout, augmentation and
        // batch normalization as in inference, on every thread, without touching the moving statistics.
        manual_seed(81);
        using var model = new Subclassed();
        model.Build(new ConvKit.Shape(10, 10, 3));
        Randomize(model, 82);
        model.train();
        using var g = new Generator(83);
        var inputs = Enumerable.Range(0, 6).Select(i => randn([1 + i % 3, 10, 10, 3], generator: g)).ToArray();
        var expected = inputs.Select(x => model.Predict(x)).ToArray();
        var before = Snapshot(model);
        var failures = RunConcurrently(4, 40, (t, i) =>
        {
            int k = (t + i) % inputs.Length;
            using var y = model.Predict(inputs[k]);
            return Identical(y, expected[k]) ? null : $"thread {t} call {i}";
        });
        Assert.True(failures.Count == 0, $"{failures.Count} wrong; first: {failures.FirstOrDefault()}");
        AssertUnchanged(before, model);
        Assert.True(model.training);
        using (var again = model.Predict(inputs[0])) Assert.True(Identical(again, expected[0]));
    }

    [Fact]
    public void PredictAndEvaluateNeverSwitchTheModelsTrainingFlag()
    {
        // Another thread reads the model's mode while Predict/Evaluate run: it must stay what the user set.
        using var model = Create("lenet5", 31);
        model.Compile(new SGD(), new SparseCategoricalCrossentropy(), ["accuracy"]);
        model.train();
        using var x = randn(8, 28, 28, 1);
        using var y = randint(0, 10, 8, dtype: int64);
        var seen = new List<bool>();
        var spy = new Hooks
        {
            PredictBatch = () => seen.Add(model.training),
            TestBatch = () => seen.Add(model.training),
        };
        model.Predict(x, batchSize: 4, callbacks: [spy]).Dispose();
        model.Evaluate(x, y, batchSize: 4, verbose: 0, callbacks: [spy]);
        Assert.Equal(4, seen.Count);
        Assert.All(seen, training => Assert.True(training));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ConcurrentEvaluateIsBitIdenticalAndLeavesMovingStatisticsAlone(bool optimized)
    {
        using var model = Create("resnet20", 41);
        model.InferenceOptimizations = optimized;
        model.Compile(new SGD(), new SparseCategoricalCrossentropy(), ["accuracy", new SparseTopKCategoricalAccuracy(3, "top3")]);
        using var g = new Generator(42);
        var xs = Enumerable.Range(0, 4).Select(i => randn([6 + i, 32, 32, 3], generator: g)).ToArray();
        var ys = xs.Select(x => randint(0, 10, [x.shape[0]], dtype: int64, generator: g)).ToArray();
        var expected = xs.Select((x, i) => model.Evaluate(x, ys[i], batchSize: 4, verbose: 0)).ToArray();
        var before = Snapshot(model);
        var failures = RunConcurrently(4, 6, (t, i) =>
        {
            int k = (t + i) % xs.Length;
            var got = model.Evaluate(xs[k], ys[k], batchSize: 4, verbose: 0);
            // Predict interleaved: Evaluate's fused softmax head and Predict's full graph run side by side.
            model.Predict(xs[k], batchSize: 4).Dispose();
            return got.All(kv => kv.Value.Equals(expected[k][kv.Key])) ? null
                : $"thread {t} call {i}: {string.Join(", ", got.Select(kv => $"{kv.Key} {kv.Value:R} vs {expected[k][kv.Key]:R}"))}";
        });
        Assert.True(failures.Count == 0, $"{failures.Count} wrong; first: {failures.FirstOrDefault()}");
        AssertUnchanged(before, model);
        foreach (var t in xs.Concat(ys).Concat(before)) t.Dispose();
    }

    /// <summary>A user's metric with state ConvKit cannot copy: concurrent Evaluate calls must take turns on it.</summary>
    sealed class MeanMaxProbability() : Metric("mean_max_probability")
    {
        double total;
        long count;

        public override void UpdateState(Tensor yTrue, Tensor yPred, Tensor? sampleWeight = null)
        {
            using var max = yPred.amax([1]);
            using var sum = max.sum();
            using var wide = sum.to_type(ScalarType.Float64);
            total += wide.item<double>();
            count += yPred.shape[0];
        }

        public override double Result() => count == 0 ? double.NaN : total / count;

        public override void ResetState() => (total, count) = (0, 0);
    }

    [Fact]
    public void ConcurrentEvaluateWithAUsersOwnMetricIsBitIdentical()
    {
        using var model = Create("lenet5", 91);
        model.Compile(new SGD(), new SparseCategoricalCrossentropy(), [new MeanMaxProbability(), "accuracy"]);
        using var g = new Generator(92);
        var xs = Enumerable.Range(0, 3).Select(i => randn([5 + i, 28, 28, 1], generator: g)).ToArray();
        var ys = xs.Select(x => randint(0, 10, [x.shape[0]], dtype: int64, generator: g)).ToArray();
        var expected = xs.Select((x, i) => model.Evaluate(x, ys[i], batchSize: 2, verbose: 0)).ToArray();
        var failures = RunConcurrently(4, 15, (t, i) =>
        {
            int k = (t + i) % xs.Length;
            var got = model.Evaluate(xs[k], ys[k], batchSize: 2, verbose: 0);
            return got.All(kv => kv.Value.Equals(expected[k][kv.Key])) ? null : $"thread {t} call {i}: mean_max_probability {got["mean_max_probability"]:R} vs {expected[k]["mean_max_probability"]:R}";
        });
        Assert.True(failures.Count == 0, $"{failures.Count} wrong; first: {failures.FirstOrDefault()}");
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void AnInferenceModelServesManyThreadsAndRefusesWhenStaleOrDisposed()
    {
        using var model = Create("resnet20", 51);
        var inputs = Inputs(model, 6, 52);
        var expected = inputs.Select(x => model.Predict(x)).ToArray();
        var inference = model.AsInferenceModel();
        Assert.True(inference.Optimized);
        Assert.True(inference.IsCurrent);
        var failures = RunConcurrently(4, 20, (t, i) =>
        {
            int k = (t + i) % inputs.Length;
            using var y = inference.Predict(inputs[k]);
            return Identical(y, expected[k]) ? null : $"thread {t} call {i}";
        });
        Assert.Empty(failures);

        // A write to one weight makes it stale: refused by name; the model's own Predict follows the new weights.
        var conv = model.Layers.OfType<Conv2D>().First();
        using (no_grad()) conv.Kernel!.mul_(ConvKit.Native.Scalars.Two);
        Assert.False(inference.IsCurrent);
        var stale = Assert.Throws<ConvKitException>(() => inference.Predict(inputs[0]));
        Assert.Contains(model.Name, stale.Message);
        Assert.Contains("AsInferenceModel", stale.Message);
        using var after = model.Predict(inputs[0]);
        Assert.False(Identical(after, expected[0]));
        using var fresh = model.AsInferenceModel();
        using (var again = fresh.Predict(inputs[0])) Assert.True(Identical(again, after));

        // Weights replaced rather than written (a conversion makes new tensors; their counters are new ones too): the
        // inference model walks the model's weights again, finds other tensors, and is stale.
        using var fresh2 = model.AsInferenceModel();
        Assert.True(fresh2.IsCurrent);
        Assert.True(fresh2.IsCurrent); // the second call takes the fast path (no weight changed anywhere since)
        model.to(ScalarType.Float64);
        Assert.False(fresh2.IsCurrent);
        model.to(ScalarType.Float32);
        Assert.False(fresh2.IsCurrent);

        inference.Dispose();
        var disposed = Assert.Throws<ObjectDisposedException>(() => inference.Predict(inputs[0]));
        Assert.Contains(model.Name, disposed.Message);
        inference.Dispose(); // twice: nothing happens
        foreach (var t in inputs.Concat(expected)) t.Dispose();
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void FitWhilePredictRunsOnAnotherThreadIsRefusedAndViceVersa()
    {
        using var model = Create("lenet5", 61);
        model.Compile(new SGD(), new SparseCategoricalCrossentropy(), []);
        using var x = randn(8, 28, 28, 1);
        using var y = randint(0, 10, 8, dtype: int64);
        var before = Snapshot(model);

        // Predict is inside its first batch (held by a callback) when another thread starts Fit.
        using var inPredict = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var hold = new Hooks { PredictBatch = () => { inPredict.Set(); release.Wait(); } };
        var predictor = new Thread(() => model.Predict(x, callbacks: [hold]).Dispose());
        predictor.Start();
        inPredict.Wait();
        Exception? fitError = null;
        var fitter = new Thread(() => { try { model.Fit(x, y, epochs: 1, verbose: 0); } catch (Exception e) { fitError = e; } });
        fitter.Start();
        fitter.Join();
        release.Set();
        predictor.Join();
        var refused = Assert.IsType<ConvKitException>(fitError);
        Assert.Contains($"model '{model.Name}'", refused.Message);
        Assert.Contains("Predict or Evaluate runs", refused.Message);
        AssertUnchanged(before, model);

        // Fit is inside an epoch (held by a callback) when another thread calls Predict, then Evaluate.
        using var inFit = new ManualResetEventSlim();
        using var releaseFit = new ManualResetEventSlim();
        var holdFit = new Hooks { EpochBegin = () => { inFit.Set(); releaseFit.Wait(); } };
        var training = new Thread(() => model.Fit(x, y, epochs: 1, verbose: 0, callbacks: [holdFit]));
        training.Start();
        inFit.Wait();
        var p = Assert.Throws<ConvKitException>(() => model.Predict(x));
        var e = Assert.Throws<ConvKitException>(() => model.Evaluate(x, y, verbose: 0));
        releaseFit.Set();
        training.Join();
        Assert.Contains("Predict cannot run while Fit trains", p.Message);
        Assert.Contains("Evaluate cannot run while Fit trains", e.Message);
        // Fit's own callbacks may predict (same thread), and a model whose Fit ended predicts from any thread.
        var fromCallback = new Hooks { EpochEnd = () => model.Predict(x).Dispose() };
        model.Fit(x, y, epochs: 1, verbose: 0, callbacks: [fromCallback]);
        model.Predict(x).Dispose();
        foreach (var t in before) t.Dispose();
    }

    /// <summary>Actions at the callback points these tests hold or observe.</summary>
    internal sealed class Hooks : Callback
    {
        public Action? PredictBatch { get; init; }
        public Action? TestBatch { get; init; }
        public Action? EpochBegin { get; init; }
        public Action? EpochEnd { get; init; }

        public override void OnPredictBatchBegin(int batch, Logs logs) => PredictBatch?.Invoke();
        public override void OnTestBatchBegin(int batch, Logs logs) => TestBatch?.Invoke();
        public override void OnEpochBegin(int epoch, Logs logs) => EpochBegin?.Invoke();
        public override void OnEpochEnd(int epoch, Logs logs) => EpochEnd?.Invoke();
    }
}
