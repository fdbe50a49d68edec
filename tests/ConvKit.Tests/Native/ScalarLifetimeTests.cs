using System.Diagnostics;
using System.Diagnostics.Tracing;
using System.Runtime.CompilerServices;
using ConvKit.Applications;
using ConvKit.Data;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Training;
using TorchSharp;
using Xunit.Abstractions;
using Padding = ConvKit.Padding;
using static TorchSharp.torch;

namespace ConvKit.Tests.Native;

/// <summary>
/// Runs alone: the collector thread would expose other tests' implicit Scalars (see ConvKit.Native.Scalars), the
/// finalizer count would count theirs, and the models draw from torch's global generator.
/// </summary>
[CollectionDefinition(nameof(ScalarLifetimeCollection), DisableParallelization = true)]
public sealed class ScalarLifetimeCollection;

/// <summary>
/// TorchSharp 0.107 leaves the Scalars it makes from .NET numbers to their finalizers, which a GC on another thread can
/// run while libtorch still reads the native scalar (see ConvKit.Native.Scalars). The race itself is rare per call, so
/// ConvKit's code paths are checked twice: deterministically, no Scalar of theirs may reach the finalizer; and under a
/// thread that collects garbage and runs finalizers without pause, they must neither throw nor change a bit.
/// </summary>
[Collection(nameof(ScalarLifetimeCollection))]
public class ScalarLifetimeTests(ITestOutputHelper log)
{
    /// <summary>
    /// Runs each of <paramref name="workers"/> in a loop on a thread of its own for <paramref name="duration"/> while
    /// another thread allocates, collects and runs finalizers. Stops at the first exception and returns it.
    /// </summary>
    static (long Iterations, Exception? Error) UnderCollection(TimeSpan duration, IReadOnlyList<Action> workers)
    {
        using var stop = new CancellationTokenSource();
        Exception? error = null;
        long iterations = 0;
        var collector = new Thread(() =>
        {
            var garbage = new object[64];
            for (int i = 0; !stop.IsCancellationRequested; i++)
            {
                for (int k = 0; k < 256; k++) garbage[(i + k) & 63] = new byte[512];
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
        }) { IsBackground = true };
        var threads = workers.Select(work => new Thread(() =>
        {
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    work();
                    Interlocked.Increment(ref iterations);
                }
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref error, e, null);
                stop.Cancel();
            }
        }) { IsBackground = true }).ToList();
        collector.Start();
        threads.ForEach(t => t.Start());
        stop.CancelAfter(duration);
        threads.ForEach(t => t.Join());
        collector.Join();
        return (iterations, error);
    }

    /// <summary>
    /// The collector harness reproduces the failure with plain TorchSharp, <c>x * 0.5</c>: here in 1 to 10 s (11 runs),
    /// once per 10⁵ to 10⁶ calls ("Unknown scalar type" from at::native::mul, or "Expected false to be true" from
    /// c10::Scalar::toDouble). Should this test fail, TorchSharp keeps its Scalars alive now (or the runtime no longer
    /// lets the race happen), and ConvKit's explicit Scalars could go.
    /// </summary>
    [Fact]
    [Trait("Category", "Slow")]
    public void ImplicitScalarsAreFreedDuringTheNativeCall()
    {
        using var x = ones(16);
        void Work()
        {
            using var scope = NewDisposeScope();
            for (int i = 0; i < 64; i++)
                if ((x * 0.5)[0].item<float>() != 0.5f) throw new InvalidOperationException("x * 0.5 is not 0.5");
        }
        var clock = Stopwatch.StartNew();
        var (iterations, error) = UnderCollection(TimeSpan.FromSeconds(60), [Work, Work, Work]);
        log.WriteLine($"{iterations * 64} multiplications in {clock.Elapsed.TotalSeconds:F2} s: {error?.GetType().Name} {error?.Message.Split('\n')[0]}");
        Assert.NotNull(error);
    }

    /// <summary>
    /// No Scalar made on the way through ConvKit's code paths reaches the finalizer: each is disposed after the call or
    /// rooted for good. Counted with the runtime's FinalizeObject event, so unlike the race this cannot pass by luck;
    /// before the explicit Scalars, 30 of the 32 cases failed it (1 to 40 Scalars each per run).
    /// </summary>
    [Fact]
    public void ConvKitLeavesNoScalarToTheFinalizer()
    {
        var owned = new List<IDisposable>();
        try
        {
            var cases = Cases(seed: 0, owned);
            foreach (var c in cases) owned.Add(c.Run()); // first use: lazy state, rooted constants
            using var finalized = new ScalarFinalizations();
            finalized.Take(); // whatever earlier tests left behind
            foreach (var c in cases)
                using (NewDisposeScope()) c.Run();
            if (finalized.Take() == 0) return;
            var leaks = new List<string>();
            foreach (var c in cases)
            {
                using (NewDisposeScope()) c.Run();
                if (finalized.Take() is var n and > 0) leaks.Add($"{c.Name}: {n}");
            }
            Assert.Fail($"Scalars left to the finalizer by {string.Join("; ", leaks)}");
        }
        finally
        {
            owned.ForEach(d => d.Dispose());
        }
    }

    /// <summary>
    /// Every optimizer configuration ConvKit offers steps without leaving a Scalar to the finalizer. TorchSharp's own
    /// steps left, per parameter and step, SGD 1, with momentum 3, Adam 8, AdamW 9, RMSprop 5: here, before ConvKit
    /// overrode them, from 9 (SGD) to 90 (centered RMSprop with momentum) for the 3 steps over 3 parameters.
    /// </summary>
    [Fact]
    public void OptimizerStepsLeaveNoScalarToTheFinalizer()
    {
        using var finalized = new ScalarFinalizations();
        var leaks = new List<string>();
        foreach (var (name, create) in OptimizerConfigurations())
        {
            using var scope = NewDisposeScope();
            using var g = new Generator(3);
            TorchSharp.Modules.Parameter[] parameters = [new(randn([4, 3, 3, 3], generator: g)), new(randn([4], generator: g)), new(randn([10, 4], generator: g))];
            var loss = parameters.Select(p => (p * randn(p.shape, generator: g)).sum()).Aggregate((a, b) => a.add(b, ConvKit.Native.Scalars.One));
            loss.backward();
            var optimizer = create();
            optimizer.Build(parameters);
            optimizer.Step(); // first step: lazy state (SGD's momentum buffer)
            finalized.Take();
            for (int i = 0; i < 3; i++) optimizer.Step();
            if (finalized.Take() is var n and > 0) leaks.Add($"{name}: {n}");
            optimizer.TorchOptimizer!.Dispose();
        }
        Assert.True(leaks.Count == 0, $"Scalars left to the finalizer by 3 steps over 3 parameters: {string.Join("; ", leaks)}");
    }

    /// <summary>Each optimizer and option ConvKit's wrappers expose, with its clipping and decoupled decay.</summary>
    static (string Name, Func<Optimizer> Create)[] OptimizerConfigurations() =>
    [
        ("SGD", () => new SGD(learningRate: 0.1)),
        ("SGD momentum", () => new SGD(learningRate: 0.1, momentum: 0.9)),
        ("SGD nesterov, weight decay, clipnorm", () => new SGD(learningRate: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01, clipnorm: 1)),
        ("Adam", () => new Adam(learningRate: 0.01)),
        ("Adam amsgrad, weight decay, global clipnorm", () => new Adam(learningRate: 0.01, amsgrad: true, weightDecay: 0.01, globalClipnorm: 1)),
        ("AdamW", () => new AdamW(learningRate: 0.01)),
        ("AdamW amsgrad, clipvalue", () => new AdamW(learningRate: 0.01, amsgrad: true, clipvalue: 0.5)),
        ("RMSprop", () => new RMSprop(learningRate: 0.01)),
        ("RMSprop momentum, weight decay", () => new RMSprop(learningRate: 0.01, momentum: 0.9, weightDecay: 0.01)),
        ("RMSprop centered", () => new RMSprop(learningRate: 0.01, centered: true)),
        ("RMSprop centered momentum", () => new RMSprop(learningRate: 0.01, momentum: 0.9, centered: true)),
    ];

    /// <summary>
    /// ConvKit's code paths on two threads under the collector, sharing the rooted Scalars: no exception, and every
    /// result equal to the one computed before, bit for bit. Per call the race is rare (the plain-TorchSharp loop above
    /// needs about 10⁵ calls), and these paths do much besides scalar arithmetic: before the explicit Scalars this test
    /// still passed in 25 runs of 3 to 4 s here. The finalizer count above is the test that fails without them.
    /// </summary>
    [Fact]
    public void ConvKitScalarArithmeticSurvivesConcurrentCollection()
    {
        const int workers = 2;
        var owned = new List<IDisposable>();
        try
        {
            var work = new List<Action>();
            var counts = new long[workers];
            for (int w = 0; w < workers; w++)
            {
                var cases = Cases(seed: w, owned);
                var expected = cases.Select(c => c.Run()).ToArray();
                owned.AddRange(expected);
                int worker = w;
                work.Add(() =>
                {
                    for (int i = 0; i < cases.Length; i++)
                    {
                        using var scope = NewDisposeScope();
                        var actual = cases[i].Run();
                        if (!actual.Equals(expected[i])) throw new InvalidOperationException($"{cases[i].Name}: the result changed under collection");
                    }
                    counts[worker]++;
                });
            }
            var (rounds, error) = UnderCollection(TimeSpan.FromSeconds(3), work);
            log.WriteLine($"{rounds} rounds ({string.Join(" + ", counts)}) of the cases: {error}");
            Assert.Null(error);
            Assert.True(rounds >= 2 * workers, $"only {rounds} rounds ran");
        }
        finally
        {
            owned.ForEach(d => d.Dispose());
        }
    }

    /// <summary>One ConvKit computation; its result is compared bit for bit.</summary>
    sealed record Case(string Name, Func<Tensor> Run);

    /// <summary>
    /// The ConvKit code that does scalar arithmetic: losses, metrics, the optimizer's own clipping and decay,
    /// initializers, activations, Rescaling, L2, the BatchNormalization fold, Predict and Evaluate on a small residual
    /// network, augmentation and preprocessing. Not here: the optimizer step (its own test below) and softplus, which
    /// makes Scalars of its own that ConvKit cannot reach (see ConvKit.Native.Scalars).
    /// </summary>
    static Case[] Cases(int seed, List<IDisposable> owned)
    {
        T Own<T>(T d) where T : IDisposable { owned.Add(d); return d; }
        var g = Own(new Generator((ulong)(1000 + seed)));
        var probs = Own(rand([8, 5], generator: g).softmax(-1));
        var logits = Own(randn([8, 5], generator: g));
        var labels = Own(randint(0, 5, [8], generator: g));
        var oneHot = Own(nn.functional.one_hot(labels, 5).to_type(ScalarType.Float32));
        var binary = Own(rand([8, 3], generator: g));
        var binaryTargets = Own(binary.gt(0.4f).to_type(ScalarType.Float32));
        var weights = Own(rand([8], generator: g));
        var images = Own(rand([2, 3, 8, 8], generator: g));
        var pixels = Own(randint(0, 256, [2, 8, 8, 3], generator: g).to_type(ScalarType.Byte));
        var rgb = Own(pixels.to_type(ScalarType.Float32));

        // A residual network with every layer that does scalar arithmetic, BatchNormalization statistics away from 0/1.
        var input = new Input(shape: (8, 8, 3));
        var x = new Rescaling(1 / 127.5, offset: -1).Apply(input);
        var y = new Conv2D(3, 3, padding: Padding.Same, kernelRegularizer: new L2(0.01)).Apply(x);
        y = new BatchNormalization().Apply(y);
        y = new ELU(0.5).Apply(y);
        y = Add.Of(y, x);
        y = new Activation(Activations.LeakyReLU).Apply(y);
        y = new Conv2D(4, 3, strides: 2, activation: "elu").Apply(y);
        var output = new Dense(5, activation: "softmax").Apply(new Flatten().Apply(y));
        var model = Own(new Model(input, output, name: $"scalar_stress_{seed}"));
        model.Compile(optimizer: "sgd", loss: new CategoricalCrossentropy(labelSmoothing: 0.1), metrics: ["accuracy", new Mean("mean")]);
        using (no_grad())
            foreach (var bn in model.Layers.OfType<BatchNormalization>())
            {
                bn.MovingMean!.copy_(randn(bn.MovingMean.shape, generator: g).mul_(0.1));
                bn.MovingVariance!.copy_(rand(bn.MovingVariance.shape, generator: g).add_(0.5));
            }
        var conv = model.Layers.OfType<Conv2D>().First();
        var norm = model.Layers.OfType<BatchNormalization>().First();
        var nhwc = Own(images.permute(0, 2, 3, 1).contiguous());
        var dataset = Own(new ImageDataset(pixels.clone(), labels.narrow(0, 0, 2).clone(), ["a", "b", "c", "d", "e"]));

        // The optimizer's own clipping and weight decay on fixed weights and gradients (the step is tested on its own).
        var parameter = Own(new TorchSharp.Modules.Parameter(randn([4, 3], generator: g)));
        var start = Own(parameter.detach().clone());
        var gradient = Own(randn([4, 3], generator: g).mul_(3));
        (parameter * gradient).sum().backward();
        var clipping = new SGD(learningRate: 0.1, weightDecay: 0.01, clipnorm: 1.0, clipvalue: 0.5);
        var globalClipping = new SGD(learningRate: 0.1, weightDecay: 0.01, globalClipnorm: 1.0);
        clipping.Build([parameter]);
        globalClipping.Build([parameter]);
        Tensor ClipAndDecay(Optimizer optimizer)
        {
            using (no_grad())
            {
                parameter.copy_(start);
                parameter.grad!.copy_(gradient);
            }
            optimizer.Clip();
            optimizer.Decay();
            return cat([parameter.detach().flatten(), parameter.grad!.flatten()]);
        }

        Tensor Metric(Metric metric, Tensor yTrue, Tensor yPred, Tensor? sampleWeight = null)
        {
            metric.UpdateState(yTrue, yPred, sampleWeight);
            metric.UpdateState(yTrue, yPred);
            return tensor(metric.Result());
        }

        // Two deviations (and a rounding's slack): Keras' truncated_normal has stddev 0.05, he_normal sqrt(2 / fan_in)
        // over the truncation correction.
        var truncatedBound = Own(tensor(1.0001f * 2 * 0.05f));
        var heBound = Own(tensor((float)(1.0001 * 2 * Math.Sqrt(2.0 / 16) / 0.87962566103423978)));
        Tensor Filled(Initializer initializer)
        {
            var t = empty([16, 16]);
            initializer.Fill(t, 16, 16);
            return t;
        }

        return
        [
            new("sparse categorical crossentropy", () => new SparseCategoricalCrossentropy().Compute(labels, probs, weights)),
            new("sparse categorical crossentropy from logits", () => new SparseCategoricalCrossentropy(fromLogits: true).Compute(labels, logits)),
            new("categorical crossentropy, smoothed", () => new CategoricalCrossentropy(labelSmoothing: 0.1).Compute(oneHot, probs)),
            new("categorical crossentropy from logits, smoothed", () => new CategoricalCrossentropy(fromLogits: true, labelSmoothing: 0.2).Compute(oneHot, logits, weights)),
            new("binary crossentropy, smoothed", () => new BinaryCrossentropy(labelSmoothing: 0.1).Compute(binaryTargets, binary, weights)),
            new("binary crossentropy from logits", () => new BinaryCrossentropy(fromLogits: true).Compute(binaryTargets, logits.narrow(1, 0, 3))),
            new("mean squared error", () => new MeanSquaredError().Compute(binaryTargets, binary)),
            new("binary accuracy", () => Metric(new BinaryAccuracy(threshold: 0.4), binaryTargets, binary, weights)),
            new("sparse categorical accuracy", () => Metric(new SparseCategoricalAccuracy(), labels, probs, weights)),
            new("mean", () => Metric(new Mean(), labels, probs)),
            new("clipnorm, clipvalue and weight decay", () => ClipAndDecay(clipping)),
            new("global clipnorm and weight decay", () => ClipAndDecay(globalClipping)),
            new("constant initializer", () => Filled(Initializers.Get("ones"))),
            new("truncated normal within two deviations", () => Filled(Initializers.Get("truncated_normal")).abs().le(truncatedBound).all()),
            new("he normal within two deviations", () => Filled(Initializers.Get("he_normal")).abs().le(heBound).all()),
            new("elu", () => Activations.Elu.Apply(logits)),
            new("elu, in place", () => Activations.Elu.ApplyInPlace(logits.clone())),
            new("leaky relu", () => Activations.LeakyReLU.Apply(logits)),
            new("leaky relu, in place", () => Activations.LeakyReLU.ApplyInPlace(logits.clone())),
            new("rescaling", () => new Rescaling(0.5, offset: 0.25).Call(images)),
            new("l2 penalty", () => new L2(0.01).Penalty(logits)),
            new("batch normalization fold", () =>
            {
                var (kernel, bias) = ConvKit.Models.Inference.ConvolutionKernels.Fold(conv, norm);
                using (kernel) using (bias) return cat([kernel.flatten(), bias]);
            }),
            new("predict", () => model.Predict(nhwc, batchSize: 2)),
            new("evaluate", () => tensor(model.Evaluate(nhwc, oneHot.narrow(0, 0, 2), batchSize: 1, verbose: 0).OrderBy(kv => kv.Key).Select(kv => kv.Value).ToArray())),
            new("random horizontal flip", () => { using var r = new Generator(7); return Augment.RandomHorizontalFlip(images, 0.5, r, dataFormat: DataFormat.ChannelsFirst); }),
            new("random translation", () => { using var r = new Generator(7); return Augment.RandomTranslation(images, 2, 3, r, dataFormat: DataFormat.ChannelsFirst); }),
            new("random zoom", () => { using var r = new Generator(7); return Augment.RandomZoom(images, 0.8, 1.2, r, dataFormat: DataFormat.ChannelsFirst); }),
            new("normalize", () => Normalize.Scale(pixels, 1 / 255f)),
            new("image dataset to float", () => dataset.ToFloatNchw()),
            new("preprocess tf", () => ImageClassifier.Preprocess(rgb, Preprocessing.TF)),
            new("preprocess torch", () => ImageClassifier.Preprocess(rgb, Preprocessing.Torch)),
            new("preprocess none", () => ImageClassifier.Preprocess(rgb, Preprocessing.None)),
        ];
    }

    /// <summary>
    /// Counts the TorchSharp Scalars the finalizer thread finalizes, i.e. those nobody disposed, from the runtime's
    /// FinalizeObject event (GC keyword, verbose).
    /// </summary>
    sealed class ScalarFinalizations : EventListener
    {
        static readonly IntPtr ScalarType = typeof(Scalar).TypeHandle.Value;
        static readonly IntPtr SentinelType = typeof(Sentinel).TypeHandle.Value;
        long scalars, sentinels;

        protected override void OnEventSourceCreated(EventSource source)
        {
            if (source.Name == "Microsoft-Windows-DotNETRuntime") EnableEvents(source, EventLevel.Verbose, (EventKeywords)0x1);
        }

        protected override void OnEventWritten(EventWrittenEventArgs e)
        {
            if (e.EventName != "FinalizeObject" || e.Payload?[0] is not IntPtr type) return;
            if (type == ScalarType) Interlocked.Increment(ref scalars);
            else if (type == SentinelType) Interlocked.Increment(ref sentinels);
        }

        /// <summary>Finalizes all garbage and returns the Scalars finalized since the last call.</summary>
        public long Take()
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            // Events reach the listener asynchronously, each thread's in order: once the finalizer thread's event for a
            // sentinel finalized after the Scalars has arrived, so have theirs.
            long seen = Interlocked.Read(ref sentinels);
            DropSentinel();
            GC.Collect();
            GC.WaitForPendingFinalizers();
            var clock = Stopwatch.StartNew();
            while (Interlocked.Read(ref sentinels) == seen)
            {
                if (clock.Elapsed > TimeSpan.FromSeconds(30)) throw new TimeoutException("no FinalizeObject event arrived");
                Thread.Sleep(5);
            }
            return Interlocked.Exchange(ref scalars, 0);
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        static void DropSentinel() => _ = new Sentinel();

        sealed class Sentinel
        {
            ~Sentinel() { }
        }
    }
}
