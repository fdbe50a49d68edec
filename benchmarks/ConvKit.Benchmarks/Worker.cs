using System.Diagnostics;
using System.Globalization;
using ConvKit.Applications;
using ConvKit.Data;
using ConvKit.Models;
using ConvKit.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Benchmarks;

/// <summary>
/// Runs one workload for one implementation in this process and prints
/// <c>RESULT ips=… seconds=… rss=… [note=…]</c>, rss being the process's peak resident set (VmHWM) at the end.
/// </summary>
static class Worker
{
    public const string FashionPath = "/usr/share/datasets/fashion-mnist";

    public static void Run(Workload w, string impl, Options o)
    {
        ConvKit.Native.TorchNative.Initialize();
        set_num_threads(o.Threads);
        if (impl == "phases")
        {
            Phases(w, o);
            return;
        }
        if (impl == "ort-paired")
        {
            OrtBench.Paired(w, o);
            return;
        }
        if (impl is "paired" or "paired-loop")
        {
            Paired(w, o, loopOnly: impl == "paired-loop");
            return;
        }
        if (impl is not ("convkit" or "raw" or "plain")) throw new ArgumentException($"--impl must be convkit, raw, plain, paired, paired-loop, ort-paired or phases; received {impl}");
        bool ck = impl == "convkit";
        // raw: activations channels-last like ConvKit's (an expert's TorchSharp); plain: NCHW-contiguous, the default.
        bool plain = impl == "plain";
        manual_seed(0);
        var (ips, seconds, note) = w.Kind switch
        {
            Kind.Train => ck ? TrainConvKit(w, o.Quick) : TrainRaw(w, o.Quick, plain),
            Kind.Infer => ck ? InferConvKit(w, o) : InferRaw(w, o.Quick, plain),
            _ => ck ? EpochConvKit(w) : EpochRaw(w, plain),
        };
        if (ConvKit.Native.CpuMemoryPool.IsInstalled)
            note = (note + FormattableString.Invariant($" pool_peak_mb={ConvKit.Native.CpuMemoryPool.Statistics.PeakReservedBytes / 1e6:F0}")).Trim();
        Console.WriteLine(FormattableString.Invariant($"RESULT ips={ips:F2} seconds={seconds:F4} rss={PeakRssMb():F1}{(note.Length > 0 ? " note=" + note : "")}"));
    }

    // Process CPU seconds: less sensitive than wall time to other processes on a shared machine (with one thread).
    static double Cpu() => Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;

    internal static double PeakRssMbPublic() => PeakRssMb();

    /// <summary>The workload's zoo model with the engine asked for by --engine (ConvKit's Model.InferenceEngine).</summary>
    internal static Model ZooModelFor(Workload w, Options o)
    {
        var m = ZooModel(w);
        m.InferenceEngine = Engine(o);
        return m;
    }

    static ConvKit.Models.Inference.InferenceEngine Engine(Options o) => o.Engine switch
    {
        "torchsharp" => ConvKit.Models.Inference.InferenceEngine.TorchSharp,
        "onnxruntime" => ConvKit.Models.Inference.InferenceEngine.OnnxRuntime,
        "auto" => ConvKit.Models.Inference.InferenceEngine.Auto,
        _ => throw new ArgumentException($"--engine must be torchsharp, onnxruntime or auto; received {o.Engine}"),
    };

    static double PeakRssMb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return double.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024;
        return double.NaN;
    }

    static Model ZooModel(Workload w)
    {
        if (w.Model == "tiny")
        {
            // Diagnostics: a model with almost no compute, so that the time is the framework's per-batch overhead.
            var input = new Input((w.Height, w.Width, w.Channels));
            return new Model(input, new ConvKit.Layers.Dense(10).Apply(new ConvKit.Layers.Flatten().Apply(input)), "tiny");
        }
        return ModelRegistry.Create(w.Model, new ModelOptions { InputShape = (w.Height, w.Width, w.Channels), ClassifierActivation = null });
    }

    static nn.Module<Tensor, Tensor> RawModel(string name) => name switch
    {
        "lenet5" => new RawTorch.LeNet5(),
        "resnet20" => new RawTorch.ResNet20(),
        "vgg16" => new RawTorch.Vgg16(),
        "resnet50" => new RawTorch.ResNet50(),
        "tiny" => new RawTorch.Tiny(),
        _ => throw new ArgumentException(name),
    };

    static void Compile(Model m) =>
        m.Compile(new SGD(learningRate: 0.01, momentum: 0.9), new SparseCategoricalCrossentropy(fromLogits: true), ["accuracy"]);

    const int WarmupBatches = 3;

    // Random data in Keras' layout for ConvKit; the raw loop gets the same values in NCHW.
    static (Tensor X, Tensor Y) Data(Workload w, int samples)
    {
        var x = randn(samples, w.Height, w.Width, w.Channels);
        var y = randint(0, 10, samples, dtype: int64);
        return (x, y);
    }

    static (double, double, string) TrainConvKit(Workload w, bool quick)
    {
        int samples = w.Batch * (quick ? w.QuickSteps : w.Steps);
        var (x, y) = Data(w, samples);
        var model = ZooModel(w);
        Compile(model);
        model.Fit(x.narrow(0, 0, WarmupBatches * w.Batch), y.narrow(0, 0, WarmupBatches * w.Batch), batchSize: w.Batch, epochs: 1, verbose: 0);
        var cpu = Cpu();
        var sw = Stopwatch.StartNew();
        var h = model.Fit(x, y, batchSize: w.Batch, epochs: 1, verbose: 0);
        double s = sw.Elapsed.TotalSeconds;
        return (samples / s, s, FormattableString.Invariant($"loss={h["loss"][^1]:F3} cpu_ips={samples / (Cpu() - cpu):F1}"));
    }

    /// <summary>Keras-layout data as the raw models take it: channels-last strides (no copy), or NCHW-contiguous when plain.</summary>
    static Tensor RawInput(Tensor keras, bool plain) => plain ? keras.permute(0, 3, 1, 2).contiguous() : Layout.FromKeras(keras);

    static (double, double, string) TrainRaw(Workload w, bool quick, bool plain)
    {
        int samples = w.Batch * (quick ? w.QuickSteps : w.Steps);
        var (xk, y) = Data(w, samples);
        var x = RawInput(xk, plain);
        var model = RawModel(w.Model);
        var opt = optim.SGD(model.parameters(), 0.01, momentum: 0.9);
        using var gen = new Generator(42);
        RawTorch.TrainEpoch(model, opt, x, y, w.Batch, gen, WarmupBatches * w.Batch);
        var cpu = Cpu();
        var sw = Stopwatch.StartNew();
        var (loss, _) = RawTorch.TrainEpoch(model, opt, x, y, w.Batch, gen);
        double s = sw.Elapsed.TotalSeconds;
        return (samples / s, s, FormattableString.Invariant($"loss={loss:F3} cpu_ips={samples / (Cpu() - cpu):F1}"));
    }

    /// <summary>
    /// Diagnostics for training workloads: ConvKit's Fit and the raw epoch alternate in one process, many short rounds,
    /// so that load from other processes hits both alike; prints the median paired ratio of wall and CPU time.
    /// </summary>
    /// <remarks>With <paramref name="loopOnly"/> the raw loop trains a second ConvKit model (through its graph executor),
    /// so that only the loops differ, not the models.</remarks>
    static void Paired(Workload w, Options o, bool loopOnly = false)
    {
        if (w.Kind != Kind.Train) throw new ArgumentException("--impl paired is for training workloads");
        int rounds = o.Repeats, samples = w.Batch * (o.Quick ? w.QuickSteps : w.Steps);
        var (xk, y) = Data(w, samples);
        var x = Layout.FromKeras(xk);
        var model = ZooModel(w);
        Compile(model);
        nn.Module<Tensor, Tensor> raw;
        if (loopOnly)
        {
            var twin = ZooModel(w);
            twin.Build(new ConvKit.Shape(w.Height, w.Width, w.Channels));
            raw = new GraphModule(twin);
        }
        else raw = RawModel(w.Model);
        var opt = optim.SGD(raw.parameters(), 0.01, momentum: 0.9);
        using var gen = new Generator(42);
        model.Fit(xk.narrow(0, 0, WarmupBatches * w.Batch), y.narrow(0, 0, WarmupBatches * w.Batch), batchSize: w.Batch, epochs: 1, verbose: 0);
        RawTorch.TrainEpoch(raw, opt, x, y, w.Batch, gen, WarmupBatches * w.Batch);
        var wall = new List<double>();
        var cpu = new List<double>();
        for (int r = 0; r < rounds; r++)
        {
            double ckWall = 0, ckCpu = 0, rawWall = 0, rawCpu = 0;
            for (int k = 0; k < 2; k++)
            {
                // Alternate the order inside each round too.
                if ((r + k) % 2 == 0)
                {
                    var (a, b) = Time(() => model.Fit(xk, y, batchSize: w.Batch, epochs: 1, verbose: 0));
                    ckWall += a; ckCpu += b;
                }
                else
                {
                    var (a, b) = Time(() => RawTorch.TrainEpoch(raw, opt, x, y, w.Batch, gen));
                    rawWall += a; rawCpu += b;
                }
            }
            wall.Add(rawWall / ckWall);
            cpu.Add(rawCpu / ckCpu);
            Console.WriteLine(FormattableString.Invariant($"round {r + 1}: ConvKit {samples / ckWall,8:F1} img/s (cpu {samples / ckCpu,8:F1})  raw {samples / rawWall,8:F1} img/s (cpu {samples / rawCpu,8:F1})  CK/raw wall {rawWall / ckWall:F3} cpu {rawCpu / ckCpu:F3}"));
        }
        static double Med(List<double> v) { var a = v.OrderBy(t => t).ToArray(); return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2; }
        Console.WriteLine(FormattableString.Invariant($"{w.Key}: median ConvKit/raw throughput ratio: wall {Med(wall):F3}, cpu {Med(cpu):F3} over {rounds} rounds"));
    }

    /// <summary>
    /// Diagnostics: forward and backward of the ConvKit model (its graph executor, as Fit calls it) and of the raw
    /// module, interleaved step by step on the same batch; prints the median time of each phase.
    /// </summary>
    static void Phases(Workload w, Options o)
    {
        var (xk, y) = Data(w, w.Batch);
        var x = Layout.FromKeras(xk);
        var model = ZooModel(w);
        model.Build(new ConvKit.Shape(w.Height, w.Width, w.Channels));
        model.train();
        var raw = RawModel(w.Model);
        raw.train();
        Console.WriteLine($"parameters: ConvKit {model.parameters().Count()} tensors / {model.parameters().Sum(p => p.numel())} values, raw {raw.parameters().Count()} / {raw.parameters().Sum(p => p.numel())}");
        int steps = o.Repeats * 20;
        var t = new Dictionary<string, List<double>> { ["ck fwd"] = [], ["ck bwd"] = [], ["raw fwd"] = [], ["raw bwd"] = [] };
        for (int i = 0; i < steps + 5; i++)
        {
            foreach (var which in i % 2 == 0 ? new[] { "ck", "raw" } : ["raw", "ck"])
            {
                using var scope = NewDisposeScope();
                var sw = Stopwatch.StartNew();
                var logits = which == "ck" ? model.Forward([x])[0] : raw.forward(x);
                var loss = nn.functional.cross_entropy(logits, y);
                double f = sw.Elapsed.TotalMilliseconds;
                loss.backward();
                double b = sw.Elapsed.TotalMilliseconds - f;
                if (i >= 5)
                {
                    t[which + " fwd"].Add(f);
                    t[which + " bwd"].Add(b);
                }
            }
            foreach (var p in model.parameters()) p.grad?.zero_();
            foreach (var p in raw.parameters()) p.grad?.zero_();
        }
        foreach (var (k, v) in t)
        {
            var a = v.OrderBy(d => d).ToArray();
            Console.WriteLine(FormattableString.Invariant($"{w.Key} {k,-8} median {a[a.Length / 2]:F3} ms  p25 {a[a.Length / 4]:F3}  p75 {a[3 * a.Length / 4]:F3}"));
        }
    }

    /// <summary>A ConvKit model seen as a TorchSharp module (its graph executor as forward).</summary>
    sealed class GraphModule : nn.Module<Tensor, Tensor>
    {
        readonly Model model;

        public GraphModule(Model model) : base("graph")
        {
            this.model = model;
            register_module("model", model);
        }

        public override Tensor forward(Tensor x) => model.Forward([x])[0];
    }

    static (double Wall, double Cpu) Time(Action a)
    {
        double c0 = Cpu();
        var sw = Stopwatch.StartNew();
        a();
        return (sw.Elapsed.TotalSeconds, Cpu() - c0);
    }

    static (double, double, string) InferLoop(Workload w, bool quick, Action once)
    {
        // One warm-up call for the 224x224 models (seconds each), two for the small ones.
        for (int i = 0; i < (w.Height >= 224 ? 1 : 2); i++) once();
        double budget = quick && w.QuickSeconds > 0 ? w.QuickSeconds : w.Seconds;
        int n = 0;
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed.TotalSeconds < budget || n < w.MinIterations)
        {
            once();
            n++;
        }
        double s = sw.Elapsed.TotalSeconds;
        return (n * (double)w.Batch / s, s / n, "");
    }

    static (double, double, string) InferConvKit(Workload w, Options o)
    {
        var (x, _) = Data(w, w.Batch);
        var model = ZooModelFor(w, o);
        return InferLoop(w, o.Quick, () => model.Predict(x, batchSize: w.Batch).Dispose());
    }

    static (double, double, string) InferRaw(Workload w, bool quick, bool plain)
    {
        var (xk, _) = Data(w, w.Batch);
        var x = RawInput(xk, plain);
        var model = RawModel(w.Model);
        model.eval();
        using var _ = inference_mode();
        return InferLoop(w, quick, () => model.forward(x).Dispose());
    }

    // One cold epoch including the data pipeline: read the IDX files with ConvKit.Data, convert to float, train.
    static (double, double, string) EpochConvKit(Workload w)
    {
        var sw = Stopwatch.StartNew();
        using var data = Datasets.FashionMnist.Load(FashionPath);
        using var x = data.Train.Images.to_type(ScalarType.Float32).div_(255f);
        var y = data.Train.Labels;
        double load = sw.Elapsed.TotalSeconds;
        var model = ZooModel(w);
        Compile(model);
        var fit = Stopwatch.StartNew();
        var h = model.Fit(x, y, batchSize: w.Batch, epochs: 1, verbose: 0);
        double total = sw.Elapsed.TotalSeconds;
        return (x.shape[0] / total, total, FormattableString.Invariant($"load={load:F3} fit={fit.Elapsed.TotalSeconds:F3} acc={h["accuracy"][^1]:F3}"));
    }

    static (double, double, string) EpochRaw(Workload w, bool plain)
    {
        var sw = Stopwatch.StartNew();
        using var data = Datasets.FashionMnist.Load(FashionPath);
        using var x = data.Train.ToFloatNchw(); // one channel: NCHW and channels-last are the same memory
        var y = data.Train.Labels;
        double load = sw.Elapsed.TotalSeconds;
        var model = RawModel(w.Model);
        var opt = optim.SGD(model.parameters(), 0.01, momentum: 0.9);
        using var gen = new Generator(42);
        var loop = Stopwatch.StartNew();
        var (_, acc) = RawTorch.TrainEpoch(model, opt, x, y, w.Batch, gen);
        double total = sw.Elapsed.TotalSeconds;
        return (x.shape[0] / total, total, FormattableString.Invariant($"load={load:F3} fit={loop.Elapsed.TotalSeconds:F3} acc={acc:F3}"));
    }
}
