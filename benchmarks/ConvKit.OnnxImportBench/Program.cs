// Issue 15 §5b, paired speed: torchvision's ResNet-50 exported by PyTorch (BatchNormalization kept) and imported with
// OnnxImport, against the zoo's resnet50_tv (the same network built by ConvKit), in one process, alternating the two
// within each round so that the machine's load (shared here) falls on both alike. Measures Predict at batch 1 and 16
// and one training step (Fit on one batch of 16, SGD, mean squared error on the logits), reports per round and the
// median ratio imported / zoo. Usage:
//   /usr/bin/python3 tests/ConvKit.Tests/Fixtures/make_onnx_fixtures.py /tmp/rn50 resnet50:224
//   dotnet run -c Release --project benchmarks/ConvKit.OnnxImportBench -- /tmp/rn50/resnet50.onnx [--rounds 5] [--threads N]
using System.Diagnostics;
using System.Globalization;
using ConvKit;
using ConvKit.Applications;
using ConvKit.Formats.Onnx;
using ConvKit.Models;
using ConvKit.Training;
using static TorchSharp.torch;

int Arg(string name, int fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault() is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
if (args.Length == 0 || !File.Exists(args[0])) { Console.Error.WriteLine("usage: ConvKit.OnnxImportBench resnet50.onnx [--rounds 5] [--threads N]"); return 1; }
int rounds = Arg("--rounds", 5);
Backend.Threads = Arg("--threads", Environment.ProcessorCount);

using var imported = OnnxImport.Load(args[0]);
using var zoo = ModelRegistry.Create("resnet50_tv", new ModelOptions { ClassifierActivation = "linear" });
Console.WriteLine($"imported {imported.CountParams():N0} params, zoo resnet50_tv {zoo.CountParams():N0} params, threads {Backend.Threads}");
foreach (var m in new[] { imported, zoo }) m.Compile(optimizer: new SGD(0.001), loss: "mse");

var gen = new Generator(1);
using var x1 = randn(new long[] { 1, 224, 224, 3 }, generator: gen);
using var x16 = randn(new long[] { 16, 224, 224, 3 }, generator: gen);
using var y16 = randn(new long[] { 16, 1000 }, generator: gen);

double Time(Action a, int repeats)
{
    a(); // warm-up: the inference plan, packed kernels, allocator
    var w = Stopwatch.StartNew();
    for (int i = 0; i < repeats; i++) a();
    return w.Elapsed.TotalMilliseconds / repeats;
}

var cases = new (string Name, Func<Model, Action> Run, int Repeats)[]
{
    ("predict b1", m => () => { using var y = m.Predict(x1); }, 5),
    ("predict b16", m => () => { using var y = m.Predict(x16); }, 2),
    ("train step b16", m => () => m.Fit(x16, y16, batchSize: 16, epochs: 1, verbose: 0, shuffle: false), 2),
};
var ratios = cases.ToDictionary(c => c.Name, _ => new List<double>());
for (int r = 0; r < rounds; r++)
{
    foreach (var (name, run, repeats) in cases)
    {
        // Alternate which model goes first from round to round.
        var order = r % 2 == 0 ? new[] { imported, zoo } : new[] { zoo, imported };
        var ms = order.ToDictionary(m => m, m => Time(run(m), repeats));
        ratios[name].Add(ms[imported] / ms[zoo]);
        Console.WriteLine($"round {r + 1} {name}: imported {ms[imported]:F0} ms, zoo {ms[zoo]:F0} ms, ratio {ms[imported] / ms[zoo]:F3}");
    }
}
foreach (var (name, list) in ratios)
{
    var sorted = list.Order().ToArray();
    Console.WriteLine($"{name}: median ratio imported / zoo {sorted[sorted.Length / 2]:F3} (range {sorted[0]:F3}-{sorted[^1]:F3})");
}
Console.WriteLine($"load: {File.ReadAllText("/proc/loadavg").Trim()}");
return 0;
