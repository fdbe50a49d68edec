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
        if (impl is not ("convkit" or "raw")) throw new ArgumentException($"--impl must be convkit or raw; received {impl}");
        bool ck = impl == "convkit";
        manual_seed(0);
        var (ips, seconds, note) = w.Kind switch
        {
            Kind.Train => ck ? TrainConvKit(w, o.Quick) : TrainRaw(w, o.Quick),
            Kind.Infer => ck ? InferConvKit(w, o.Quick) : InferRaw(w, o.Quick),
            _ => ck ? EpochConvKit(w) : EpochRaw(w),
        };
        Console.WriteLine(FormattableString.Invariant($"RESULT ips={ips:F2} seconds={seconds:F4} rss={PeakRssMb():F1}{(note.Length > 0 ? " note=" + note : "")}"));
    }

    // Process CPU seconds: less sensitive than wall time to other processes on a shared machine (with one thread).
    static double Cpu() => Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;

    static double PeakRssMb()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return double.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024;
        return double.NaN;
    }

    static Model ZooModel(Workload w) =>
        ModelRegistry.Create(w.Model, new ModelOptions { InputShape = (w.Height, w.Width, w.Channels), ClassifierActivation = null });

    static nn.Module<Tensor, Tensor> RawModel(string name) => name switch
    {
        "lenet5" => new RawTorch.LeNet5(),
        "resnet20" => new RawTorch.ResNet20(),
        "vgg16" => new RawTorch.Vgg16(),
        "resnet50" => new RawTorch.ResNet50(),
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

    static (double, double, string) TrainRaw(Workload w, bool quick)
    {
        int samples = w.Batch * (quick ? w.QuickSteps : w.Steps);
        var (xk, y) = Data(w, samples);
        var x = Layout.FromKeras(xk);
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

    static (double, double, string) InferLoop(Workload w, bool quick, Action once)
    {
        once();
        once();
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

    static (double, double, string) InferConvKit(Workload w, bool quick)
    {
        var (x, _) = Data(w, w.Batch);
        var model = ZooModel(w);
        return InferLoop(w, quick, () => model.Predict(x, batchSize: w.Batch).Dispose());
    }

    static (double, double, string) InferRaw(Workload w, bool quick)
    {
        var (xk, _) = Data(w, w.Batch);
        var x = Layout.FromKeras(xk);
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

    static (double, double, string) EpochRaw(Workload w)
    {
        var sw = Stopwatch.StartNew();
        using var data = Datasets.FashionMnist.Load(FashionPath);
        using var x = data.Train.ToFloatNchw();
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
