using System.Diagnostics;
using System.Globalization;
using ConvKit.Applications;
using ConvKit.Data;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Models.Inference;
using ConvKit.Quantization;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace ConvKit.Benchmarks;

/// <summary>
/// Issue 17 goal 3, int8 on VNNI: accuracy FP32 vs int8 of LeNet-5 and a ResNet-20 trained briefly on Fashion-MNIST
/// (calibrated on training samples, scored on the whole test split), and paired, alternating images/s of ConvKit
/// Predict (TorchSharp engine), ConvKit Predict (ONNX Runtime engine), raw ORT FP32 on ConvKit's export, QuantizedModel.Predict
/// and raw ORT on the int8 graph, for lenet5 b128, resnet20 b128 and resnet50 b16 (random weights: speed only).
///   dotnet run --project benchmarks/ConvKit.Benchmarks -c Release -- --int8 [--only accuracy,lenet5,resnet20,resnet50]
///       [--threads 2] [--rounds 3] [--seconds 3] [--epochs 2] [--resnet-train 20000] [--calibration 500] [--method minmax|percentile (default: both)]
/// </summary>
static class Int8Bench
{
    public static int Run(string[] args)
    {
        string[] only = ["accuracy", "lenet5", "resnet20", "resnet50"];
        int threads = 2, rounds = 3, epochs = 2, resnetTrain = 20000, calibration = 500;
        double seconds = 3;
        CalibrationMethod? method = null;   // both
        for (int i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--only": only = Next().Split(','); break;
                case "--threads": threads = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--rounds": rounds = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--seconds": seconds = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--epochs": epochs = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--resnet-train": resnetTrain = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--calibration": calibration = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--method": method = Next() == "percentile" ? CalibrationMethod.Percentile : CalibrationMethod.MinMax; break;
                default: throw new ArgumentException($"unknown option {args[i]}");
            }
        }
        Backend.Threads = threads;
        Console.WriteLine($"int8 benchmark: threads {threads}, rounds {rounds}, {seconds} s per measurement; {Uptime()}");
        if (only.Contains("accuracy"))
        {
            Accuracy("lenet5", new ModelOptions(), 60000, epochs + 1, calibration, method);
            Accuracy("resnet20", new ModelOptions { InputShape = (28, 28, 1), Classes = 10 }, resnetTrain, epochs, calibration, method);
        }
        foreach (var (key, name, batch, h, c) in new[] { ("lenet5", "lenet5", 128, 28, 1), ("resnet20", "resnet20", 128, 32, 3), ("resnet50", "resnet50", 16, 224, 3) })
            if (only.Contains(key)) Speed(name, batch, h, c, threads, rounds, seconds);
        Console.WriteLine($"done; {Uptime()}");
        return 0;
    }

    static string Uptime() => File.Exists("/proc/loadavg") ? "load average " + string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "";

    static void Accuracy(string name, ModelOptions options, int trainCount, int epochs, int calibration, CalibrationMethod? method)
    {
        var (train, test) = Datasets.FashionMnist.Load();
        manual_seed(42);
        using var model = ModelRegistry.Create(name, options);
        model.Compile(optimizer: "adam", loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
        using var xTrain = train.Images.narrow(0, 0, trainCount).to(float32).div(255f);
        using var yTrain = train.Labels.narrow(0, 0, trainCount);
        using var xTest = test.Images.to(float32).div(255f);
        var sw = Stopwatch.StartNew();
        model.Fit(xTrain, yTrain, batchSize: 64, epochs: epochs, verbose: 0);
        Console.WriteLine($"{name}: trained {epochs} epochs on {trainCount} Fashion-MNIST images in {sw.Elapsed.TotalSeconds:F0} s");
        double a32 = model.Evaluate(xTest, test.Labels, batchSize: 256, verbose: 0)["accuracy"];
        using var p32 = model.Predict(xTest, batchSize: 256);
        using var top32 = p32.argmax(1);
        foreach (var m in method is { } only ? [only] : new[] { CalibrationMethod.MinMax, CalibrationMethod.Percentile })
        {
            sw.Restart();
            using var q = Quantizer.Quantize(model, xTrain, new QuantizationOptions { Samples = calibration, Method = m });
            Console.WriteLine($"{name}: quantized ({q.Calibration}) in {sw.Elapsed.TotalSeconds:F1} s, {q.SizeInBytes / 1024.0:F0} KB");
            double a8 = q.Evaluate(xTest, test.Labels, batchSize: 256)["accuracy"];
            using var p8 = q.Predict(xTest, batchSize: 256);
            using var agree = top32.eq(p8.argmax(1)).to(float32).mean();
            Console.WriteLine(FormattableString.Invariant(
                $"ACCURACY {name} {m} fp32={a32 * 100:F2}% int8={a8 * 100:F2}% drop={(a32 - a8) * 100:F2} points top1_agreement={agree.item<float>() * 100:F2}% (test split, {xTest.shape[0]} images)"));
        }
    }

    static void Speed(string name, int batch, int size, int channels, int threads, int rounds, double seconds)
    {
        manual_seed(0);
        using var model = ModelRegistry.Create(name, new ModelOptions { InputShape = (size, size, channels), ClassifierActivation = null });
        RandomizeBatchNorm(model, 1);
        using var x = randn(batch, size, size, channels);
        var data = x.data<float>().ToArray();
        long[] shape = [batch, size, size, channels];
        using var calibration = randn(Math.Min(64, batch * 4), size, size, channels);
        using var q = Quantizer.Quantize(model, calibration, new QuantizationOptions { BatchSize = batch });
        var path = Path.Combine(Path.GetTempPath(), $"convkit-int8-bench-{Environment.ProcessId}.onnx");
        q.Save(path);
        var optimized = path + ".optimized.onnx";
        using (var dump = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, OptimizedModelFilePath = optimized })
        using (new InferenceSession(path, dump)) { }
        // What ORT runs after its QDQ fusions: integer kernels, not float Conv between Q/DQ pairs.
        var ops = ConvKit.Formats.Onnx.OnnxReader.Read(optimized).Graph.Nodes.GroupBy(n => n.OpType).OrderByDescending(g => g.Count());
        Console.WriteLine($"{name}: ORT's optimized int8 graph: " + string.Join(", ", ops.Select(g => $"{g.Key} x{g.Count()}")));
        File.Delete(optimized);
        using var so = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var int8Session = new InferenceSession(path, so);
        File.Delete(path);
        using var fp32Session = OrtBench.Session(model, threads);
        using var ckTs = model.AsInferenceModel(InferenceEngine.TorchSharp);
        using var ckOrt = model.AsInferenceModel(InferenceEngine.OnnxRuntime);

        using (var a = ckTs.Predict(x, batchSize: batch))
        using (var b = q.Predict(x, batchSize: batch))
        {
            using var rel = (a - b).abs().max() / a.abs().max();
            using var agree = a.argmax(1).eq(b.argmax(1)).to(float32).mean();
            Console.WriteLine(FormattableString.Invariant($"{name} b{batch}: int8 vs fp32 on random input: max |diff|/max|y| {rel.item<float>():F3}, top-1 agreement {agree.item<float>() * 100:F0}%"));
        }
        var impls = new (string Name, Action Once)[]
        {
            ("ck-torchsharp", () => ckTs.Predict(x, batchSize: batch).Dispose()),
            ("ck-onnxruntime", () => ckOrt.Predict(x, batchSize: batch).Dispose()),
            ("ort-fp32", () => OrtBench.Run(fp32Session, data, shape)),
            ("int8-predict", () => q.Predict(x, batchSize: batch).Dispose()),
            ("ort-int8", () => OrtBench.Run(int8Session, data, shape)),
        };
        foreach (var (_, once) in impls) { once(); once(); }
        var ips = impls.ToDictionary(i => i.Name, _ => new List<double>());
        var ratios = new List<double>();
        for (int r = 0; r < rounds; r++)
        {
            var order = r % 2 == 0 ? impls : impls.Reverse().ToArray();
            var got = new Dictionary<string, double>();
            foreach (var (n, once) in order) got[n] = Ips(once, batch, seconds);
            foreach (var (n, v) in got) ips[n].Add(v);
            double bestFp32 = new[] { got["ck-torchsharp"], got["ck-onnxruntime"], got["ort-fp32"] }.Max();
            ratios.Add(got["int8-predict"] / bestFp32);
            Console.WriteLine($"  round {r + 1}: " + string.Join("  ", impls.Select(i => FormattableString.Invariant($"{i.Name} {got[i.Name]:F1}"))) +
                FormattableString.Invariant($"  int8/best-fp32 {ratios[^1]:F2}  ({Uptime()})"));
        }
        Console.WriteLine($"SPEED {name} b{batch} img/s medians: " + string.Join("  ", impls.Select(i => FormattableString.Invariant($"{i.Name} {Median(ips[i.Name]):F1}"))) +
            FormattableString.Invariant($"  int8-predict/best-fp32 {Median(ratios):F2} [{ratios.Min():F2}..{ratios.Max():F2}]"));
    }

    static void RandomizeBatchNorm(Model model, int seed)
    {
        using var g = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var bn in model.Layers.OfType<BatchNormalization>())
        {
            bn.MovingMean!.copy_(randn(bn.MovingMean.shape, generator: g).mul(0.1));
            bn.MovingVariance!.copy_(rand(bn.MovingVariance.shape, generator: g).mul(1.5).add(0.5));
            bn.Gamma?.copy_(rand(bn.Gamma.shape, generator: g).add(0.5));
            bn.Beta?.copy_(randn(bn.Beta.shape, generator: g).mul(0.1));
        }
    }

    static double Ips(Action once, int batch, double seconds)
    {
        int n = 0;
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed.TotalSeconds < seconds || n < 2)
        {
            once();
            n++;
        }
        return n * (double)batch / sw.Elapsed.TotalSeconds;
    }

    static double Median(List<double> v)
    {
        var a = v.OrderBy(t => t).ToArray();
        return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }
}
