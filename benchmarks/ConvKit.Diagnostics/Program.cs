// Timing experiments behind figures in the docs, each alternating what it compares (the machine is shared and noisy):
//   augment                        fmnist_resnet training img/s: plain, and behind RandomFlip + RandomTranslation
//                                  (docs/zoo.md: the channels-last fix of Augment)
//   ort-blocks MODEL BATCH ROUNDS  a bare ONNX Runtime session vs model.Predict vs an inference model's Predict (ORT
//                                  engine), blocks of 5 calls after 2 warm-up calls, in rotating order
//                                  (docs/inference-engines.md: what the CK/ORT gap is made of)
//   strided-1x1                    ResNet-50's strided 1x1 convolutions, forward + backward: oneDNN strided vs the
//                                  subsample + stride-1 form ConvKit uses above 64 channels (session 9's note)
// Usage: dotnet run --project benchmarks/ConvKit.Diagnostics -c Release -- MODE [args] [--threads N]
using System.Diagnostics;
using System.Globalization;
using ConvKit;
using ConvKit.Applications;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Models.Inference;
using ConvKit.Saving;
using ConvKit.Training;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

if (args.Length == 0) { Console.Error.WriteLine("usage: ConvKit.Diagnostics augment | ort-blocks MODEL BATCH ROUNDS | strided-1x1 [--threads N]"); return 1; }
int threadsAt = Array.IndexOf(args, "--threads");
Backend.Threads = threadsAt >= 0 ? int.Parse(args[threadsAt + 1], CultureInfo.InvariantCulture) : 2;
Console.WriteLine($"threads {Backend.Threads}, load average {File.ReadAllText("/proc/loadavg").Trim()}");
switch (args[0])
{
    case "augment": Augmentation(); break;
    case "ort-blocks": OrtBlocks(args[1], int.Parse(args[2], CultureInfo.InvariantCulture), int.Parse(args[3], CultureInfo.InvariantCulture)); break;
    case "strided-1x1": Strided1x1(); break;
    default: Console.Error.WriteLine($"unknown mode '{args[0]}'"); return 1;
}
return 0;

static double Median(List<double> v) { var o = v.Order().ToArray(); return o[o.Length / 2]; }

static void Augmentation()
{
    const int n = 128 * 30;
    var gen = new Generator(1);
    using var xs = rand(new long[] { n, 28, 28, 1 }, generator: gen);
    using var ys = randint(0, 10, new long[] { n }, generator: gen);
    Model Make(bool augmented)
    {
        var net = ModelRegistry.Create("fmnist_resnet");
        var m = augmented
            ? new Sequential([new Input([28, 28, 1]), new RandomFlip("horizontal", seed: 1), new RandomTranslation(0.1, 0.1, seed: 2), net], name: "augmented")
            : new Sequential([new Input([28, 28, 1]), net], name: "plain");
        m.Compile(optimizer: new SGD(0.05, momentum: 0.9), loss: "sparse_categorical_crossentropy");
        using var wx = xs.narrow(0, 0, 384);
        using var wy = ys.narrow(0, 0, 384);
        m.Fit(wx, wy, batchSize: 128, epochs: 1, verbose: 0); // warm-up
        return m;
    }
    using var plain = Make(false);
    using var augmented = Make(true);
    var rates = new Dictionary<string, List<double>> { ["plain"] = [], ["augmented"] = [] };
    for (int r = 0; r < 4; r++)
        foreach (var (name, m) in r % 2 == 0 ? new[] { ("plain", plain), ("augmented", augmented) } : [("augmented", augmented), ("plain", plain)])
        {
            var sw = Stopwatch.StartNew();
            m.Fit(xs, ys, batchSize: 128, epochs: 1, verbose: 0);
            rates[name].Add(n / sw.Elapsed.TotalSeconds);
        }
    foreach (var (name, v) in rates) Console.WriteLine($"fmnist_resnet training, {name}: median {Median(v):F0} img/s ({string.Join(", ", v.Select(x => x.ToString("F0", CultureInfo.InvariantCulture)))})");
}

static void OrtBlocks(string name, int batch, int rounds)
{
    using var model = ModelRegistry.Create(name);
    var s = model.ModelInputShape;
    using var x = randn(batch, s[0], s[1], s[2]);
    model.InferenceEngine = InferenceEngine.OnnxRuntime;
    using var inference = model.AsInferenceModel(InferenceEngine.OnnxRuntime);
    using var options = new SessionOptions { IntraOpNumThreads = Backend.Threads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
    using var session = new InferenceSession(OnnxExport.ToBytes(model), options);
    var data = x.data<float>().ToArray();
    long[] shape = [batch, s[0], s[1], s[2]];
    void Bare()
    {
        using var v = OrtValue.CreateTensorValueFromMemory(data, shape);
        using var runOptions = new RunOptions();
        using var o = session.Run(runOptions, [session.InputNames[0]], [v], [session.OutputNames[0]]);
        _ = o[0].GetTensorDataAsSpan<float>().ToArray();
    }
    var calls = new (string Name, Action Run)[]
    {
        ("bare session", Bare),
        ("model.Predict", () => { using var y = model.Predict(x, batchSize: batch); }),
        ("inference.Predict", () => { using var y = inference.Predict(x, batchSize: batch); }),
    };
    var ms = calls.ToDictionary(c => c.Name, _ => new List<double>());
    for (int r = 0; r < rounds; r++)
        foreach (var (callName, run) in calls.Skip(r % 3).Concat(calls.Take(r % 3)))
        {
            run(); run();
            var sw = Stopwatch.StartNew();
            for (int k = 0; k < 5; k++) run();
            ms[callName].Add(sw.Elapsed.TotalMilliseconds / 5);
        }
    foreach (var (callName, v) in ms) Console.WriteLine($"{name} b{batch} {callName,-18} median {Median(v):F3} ms, best {v.Min():F3} ms");
}

static void Strided1x1()
{
    foreach (var (cin, cout, size) in new[] { (256, 128, 56), (256, 512, 56), (512, 1024, 28), (1024, 2048, 14) })
    {
        using var nhwc = randn(16, size, size, cin);
        using var x = nhwc.permute(0, 3, 1, 2); // channels-last memory, as Fit's batches
        using var weights = randn(cout, cin, 1, 1);
        using var w = weights.mul(0.01).requires_grad_(true);
        double Step(Func<Tensor, Tensor> conv)
        {
            using var input = x.detach().requires_grad_(true);
            var sw = Stopwatch.StartNew();
            using var y = conv(input);
            using var total = y.sum();
            total.backward();
            return sw.Elapsed.TotalMilliseconds;
        }
        Tensor Strided(Tensor t) => F.conv2d(t, w, strides: [2, 2]);
        Tensor Subsampled(Tensor t)
        {
            using var every2 = t[TensorIndex.Colon, TensorIndex.Colon, TensorIndex.Slice(step: 2), TensorIndex.Slice(step: 2)];
            return F.conv2d(every2, w);
        }
        for (int i = 0; i < 2; i++) { Step(Strided); Step(Subsampled); }
        List<double> a = [], b = [];
        for (int i = 0; i < 8; i++) { a.Add(Step(Strided)); b.Add(Step(Subsampled)); }
        Console.WriteLine($"{cin}->{cout} at {size}x{size} b16, forward + backward: oneDNN strided {Median(a):F1} ms, subsample + stride 1 {Median(b):F1} ms");
    }
}
