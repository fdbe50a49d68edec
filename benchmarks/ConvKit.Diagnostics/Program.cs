// Timing experiments behind figures in the docs, each alternating what it compares (the machine is shared and noisy):
//   augment                        fmnist_resnet training img/s: plain, and behind RandomFlip + RandomTranslation
//                                  (docs/zoo.md: the channels-last fix of Augment)
//   ort-blocks MODEL BATCH ROUNDS  a bare ONNX Runtime session vs model.Predict vs an inference model's Predict (ORT
//                                  engine), blocks of 5 calls after 2 warm-up calls, in rotating order
//                                  (docs/inference-engines.md: what the CK/ORT gap is made of)
//   ort-config MODEL BATCH ROUNDS [aa]  bare ONNX Runtime sessions with different session options (spinning,
//                                  dynamic block base), blocks of 5 calls in rotating order; aa: two identical ones
//   pointwise                      ResNet-50's stride-1 1x1 convolutions above 64 channels, forward + backward:
//                                  oneDNN vs the GEMM (F.linear on channels-last memory) ConvKit runs them as
//   pointwise-sweep [SKIP]         oneDNN's channels-last 1x1 convolutions (stride 1 and 2), forward + backward, over
//                                  channel pairs x sizes x batches, printing each case before it runs: the last line
//                                  before a crash (SIGFPE) names the case; SKIP resumes after it
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

if (args.Length == 0) { Console.Error.WriteLine("usage: ConvKit.Diagnostics augment | ort-blocks MODEL BATCH ROUNDS | ort-config MODEL BATCH ROUNDS | pointwise | pointwise-sweep [SKIP] | strided-1x1 [--threads N]"); return 1; }
int threadsAt = Array.IndexOf(args, "--threads");
Backend.Threads = threadsAt >= 0 ? int.Parse(args[threadsAt + 1], CultureInfo.InvariantCulture) : 2;
Console.WriteLine($"threads {Backend.Threads}, load average {File.ReadAllText("/proc/loadavg").Trim()}");
switch (args[0])
{
    case "augment": Augmentation(); break;
    case "ort-blocks": OrtBlocks(args[1], int.Parse(args[2], CultureInfo.InvariantCulture), int.Parse(args[3], CultureInfo.InvariantCulture)); break;
    case "strided-1x1": Strided1x1(); break;
    case "pointwise": Pointwise(); break;
    case "pointwise-sweep": PointwiseSweep(args.Length > 1 && !args[1].StartsWith("--") ? int.Parse(args[1], CultureInfo.InvariantCulture) : 0); break;
    case "ort-config": OrtConfig(args[1], int.Parse(args[2], CultureInfo.InvariantCulture), int.Parse(args[3], CultureInfo.InvariantCulture), args.Contains("aa")); break;
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

static void OrtConfig(string name, int batch, int rounds, bool aa)
{
    using var model = ModelRegistry.Create(name);
    var s = model.ModelInputShape;
    using var x = randn(batch, s[0], s[1], s[2]);
    var bytes = OnnxExport.ToBytes(model);
    var data = x.data<float>().ToArray();
    long[] shape = [batch, s[0], s[1], s[2]];
    (string Name, Action<SessionOptions> Configure)[] variants = aa ? [("default A", _ => { }), ("default B", _ => { })] :
    [
        ("default", _ => { }),
        ("no spinning", o => o.AddSessionConfigEntry("session.intra_op.allow_spinning", "0")),
        ("dynamic block 4", o => o.AddSessionConfigEntry("session.dynamic_block_base", "4")),
        ("no arena", o => o.EnableCpuMemArena = false),
    ];
    var sessions = variants.Select(v =>
    {
        using var options = new SessionOptions { IntraOpNumThreads = Backend.Threads, InterOpNumThreads = 1, ExecutionMode = ExecutionMode.ORT_SEQUENTIAL, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        v.Configure(options);
        return (v.Name, Session: new InferenceSession(bytes, options));
    }).ToArray();
    void Run(InferenceSession session)
    {
        using var v = OrtValue.CreateTensorValueFromMemory(data, shape);
        using var runOptions = new RunOptions();
        using var o = session.Run(runOptions, [session.InputNames[0]], [v], [session.OutputNames[0]]);
        _ = o[0].GetTensorDataAsSpan<float>().ToArray();
    }
    var ms = sessions.ToDictionary(c => c.Name, _ => new List<double>());
    for (int r = 0; r < rounds; r++)
        foreach (var (variant, session) in sessions.Skip(r % sessions.Length).Concat(sessions.Take(r % sessions.Length)))
        {
            Run(session); Run(session);
            var sw = Stopwatch.StartNew();
            for (int k = 0; k < 5; k++) Run(session);
            ms[variant].Add(sw.Elapsed.TotalMilliseconds / 5);
        }
    foreach (var (variant, v) in ms) Console.WriteLine($"{name} b{batch} {variant,-16} median {Median(v):F3} ms, best {v.Min():F3} ms");
    foreach (var (_, session) in sessions) session.Dispose();
}

// Milliseconds of conv on a fresh leaf copy of x, forward and backward.
static double ForwardBackwardMs(Tensor x, Func<Tensor, Tensor> conv)
{
    using var input = x.detach().requires_grad_(true);
    var sw = Stopwatch.StartNew();
    using var y = conv(input);
    using var total = y.sum();
    total.backward();
    return sw.Elapsed.TotalMilliseconds;
}

static void Pointwise()
{
    // (in, out, size, how many in ResNet-50 v1)
    double totalOne = 0, totalGemm = 0, totalNchw = 0;
    foreach (var (cin, cout, size, count) in new[] { (64, 256, 56, 4), (256, 64, 56, 2), (128, 512, 28, 4), (512, 128, 28, 3), (256, 1024, 14, 6), (1024, 256, 14, 5), (512, 2048, 7, 3), (2048, 512, 7, 2) })
    {
        using var nhwc = randn(16, size, size, cin);
        using var x = nhwc.permute(0, 3, 1, 2);
        using var weights = randn(cout, cin, 1, 1);
        using var w = weights.mul(0.01).requires_grad_(true);
        using var b = zeros(cout).requires_grad_(true);
        double Step(Func<Tensor, Tensor> conv) => ForwardBackwardMs(x, conv);
        Tensor OneDnn(Tensor t) => F.conv2d(t, w, b);
        Tensor Gemm(Tensor t)
        {
            using var rows = t.permute(0, 2, 3, 1);
            using var matrix = w.reshape(cout, cin);
            using var y = F.linear(rows, matrix, b);
            return y.permute(0, 3, 1, 2);
        }
        // oneDNN's jit_1x1 on plain NCHW memory (blocked reorders inside), converted from and back to channels-last.
        Tensor Nchw(Tensor t)
        {
            using var plain = t.contiguous();
            using var kernel = w.contiguous();
            using var y = F.conv2d(plain, kernel, b);
            using var nhwc = y.permute(0, 2, 3, 1);
            using var dense = nhwc.contiguous();
            return dense.permute(0, 3, 1, 2);
        }
        for (int i = 0; i < 2; i++) { Step(OneDnn); Step(Gemm); Step(Nchw); }
        List<double> a = [], g = [], c = [];
        for (int i = 0; i < 8; i++) { a.Add(Step(OneDnn)); g.Add(Step(Gemm)); c.Add(Step(Nchw)); }
        totalOne += count * Median(a);
        totalGemm += count * Median(g);
        totalNchw += count * Median(c);
        Console.WriteLine($"{cin}->{cout} at {size}x{size} b16 (x{count}), forward + backward: oneDNN {Median(a):F1} ms, GEMM {Median(g):F1} ms, NCHW jit_1x1 {Median(c):F1} ms");
    }
    Console.WriteLine($"per ResNet-50 training step: oneDNN {totalOne:F0} ms, GEMM {totalGemm:F0} ms, NCHW {totalNchw:F0} ms");
}

static void PointwiseSweep(int skip)
{
    var pairs = new[] { (512, 1024), (1024, 2048), (256, 1024), (1024, 256), (512, 2048), (2048, 512), (64, 256), (256, 64), (128, 512), (512, 128), (256, 512), (256, 128), (512, 256), (1024, 512) };
    int index = 0;
    foreach (var (cin, cout) in pairs)
        foreach (int size in new[] { 1, 2, 3, 4, 7, 8, 14, 16, 28, 32, 56 })
            foreach (int batch in new[] { 1, 2, 16 })
                foreach (int stride in new[] { 1, 2 })
                {
                    if (index++ < skip) continue;
                    Console.WriteLine($"case {index - 1}: {cin}->{cout} at {size}x{size} b{batch} stride {stride}");
                    Console.Out.Flush();
                    using var scope = NewDisposeScope();
                    var x = randn(batch, size, size, cin).permute(0, 3, 1, 2).requires_grad_(true);
                    var w = randn(cout, cin, 1, 1).mul(0.01).requires_grad_(true);
                    var y = F.conv2d(x, w, strides: [stride, stride]);
                    y.sum().backward();
                }
    Console.WriteLine($"all {index} cases ran");
}

static void Strided1x1()
{
    foreach (var (cin, cout, size) in new[] { (256, 128, 56), (256, 512, 56), (512, 1024, 28), (1024, 2048, 14) })
    {
        using var nhwc = randn(16, size, size, cin);
        using var x = nhwc.permute(0, 3, 1, 2); // channels-last memory, as Fit's batches
        using var weights = randn(cout, cin, 1, 1);
        using var w = weights.mul(0.01).requires_grad_(true);
        double Step(Func<Tensor, Tensor> conv) => ForwardBackwardMs(x, conv);
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
