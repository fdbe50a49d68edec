// Issue 15, the real pretrained backbone at work: ML.NET's ImageNet ResNet-18 (NuGet Microsoft.ML.DnnImageFeaturizer.
// ResNet18, a CNTK export imported with OnnxImport, with its own mean-image preprocessing graph) as a frozen feature
// extractor for Fashion-MNIST (grayscale replicated to 3 channels, resized to 224x224), features computed once; a new
// Dense softmax head is trained on them and scored on the test images. The same head on the same architecture with
// random weights (the zoo's resnet18_tv, include_top=false, average pooling, same preprocessing) is the baseline.
// Usage (restores the package into the NuGet folder when missing):
//   dotnet run -c Release --project benchmarks/ConvKit.LinearProbe -- [--train 2000] [--test 1000] [--seeds 3] [--epochs 30]
using System.Diagnostics;
using System.Globalization;
using ConvKit;
using ConvKit.Applications;
using ConvKit.Data;
using ConvKit.Formats.Onnx;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Training;
using TorchSharp;
using static TorchSharp.torch;

int Arg(string name, int fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault() is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
int nTrain = Arg("--train", 2000), nTest = Arg("--test", 1000), seeds = Arg("--seeds", 3), epochs = Arg("--epochs", 30);
Backend.Threads = Arg("--threads", Environment.ProcessorCount);
var total = Stopwatch.StartNew();

var (backbonePath, preprocessPath) = LocateResNet18();
using var preprocess = OnnxImport.Load(preprocessPath);
using var pretrained = OnnxImport.Load(backbonePath);
using var random = ModelRegistry.Create("resnet18_tv", new ModelOptions { IncludeTop = false, Pooling = PoolingMode.Avg, InputShape = new Shape(224, 224, 3) });
Console.WriteLine($"pretrained ResNet-18 (ONNX, imported): {pretrained.CountParams():N0} params; random resnet18_tv backbone: {random.CountParams():N0} params; threads {Backend.Threads}");

var (train, test) = Datasets.FashionMnist.Load();
using var trainLabels = train.Labels.narrow(0, 0, nTrain).to(int64);
using var testLabels = test.Labels.narrow(0, 0, nTest).to(int64);
var features = new Dictionary<string, (Tensor Train, Tensor Test, double Seconds)>();
foreach (var (name, backbone) in new[] { ("pretrained", (Model)pretrained), ("random", random) })
{
    var clock = Stopwatch.StartNew();
    var ftrain = Features(backbone, train.Images, nTrain);
    var ftest = Features(backbone, test.Images, nTest);
    features[name] = (ftrain, ftest, clock.Elapsed.TotalSeconds);
    Console.WriteLine($"{name} features: {nTrain + nTest} images in {clock.Elapsed.TotalSeconds:F0} s ({(nTrain + nTest) / clock.Elapsed.TotalSeconds:F1} images/s), {ftrain.shape[1]} per image");
}

var accuracies = features.Keys.ToDictionary(k => k, _ => new List<double>());
for (int s = 0; s < seeds; s++)
{
    foreach (var (name, (ftrain, ftest, _)) in features)
    {
        Backend.SetSeed(100 + s);
        using var head = new Sequential([new Dense(10, activation: "softmax", inputShape: new Shape((int)ftrain.shape[1]))]);
        head.Compile(optimizer: new Adam(0.001), loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
        head.Fit(ftrain, trainLabels, batchSize: 64, epochs: epochs, verbose: 0, seed: 100 + s);
        var result = head.Evaluate(ftest, testLabels, verbose: 0);
        accuracies[name].Add(result["accuracy"] * 100);
        Console.WriteLine($"seed {100 + s}: {name} backbone + Dense head: test accuracy {result["accuracy"] * 100:F2}%");
    }
}
foreach (var (name, list) in accuracies)
{
    double mean = list.Average(), sd = Math.Sqrt(list.Sum(a => (a - mean) * (a - mean)) / Math.Max(1, list.Count - 1));
    Console.WriteLine($"{name,-10}: mean {mean:F2}% (sd {sd:F2}, min {list.Min():F2}, max {list.Max():F2}) over {list.Count} head seeds");
}
Console.WriteLine($"total {total.Elapsed.TotalSeconds:F0} s; load {File.ReadAllText("/proc/loadavg").Trim()}");
foreach (var (a, b, _) in features.Values) { a.Dispose(); b.Dispose(); }
return 0;

// Fashion-MNIST uint8 (N, 28, 28, 1) -> raw 0..255 pixels, 3 channels, 224x224 (bilinear), the preprocessing graph,
// the backbone; (N, 512) features, 16 images at a time.
Tensor Features(Model backbone, Tensor images, int count)
{
    var parts = new List<Tensor>();
    using (no_grad())
    {
        for (int start = 0; start < count; start += 16)
        {
            using var scope = NewDisposeScope();
            int n = Math.Min(16, count - start);
            var x = images.narrow(0, start, n).to(float32).permute(0, 3, 1, 2).expand(n, 3, 28, 28);
            x = nn.functional.interpolate(x, [224, 224], mode: InterpolationMode.Bilinear, align_corners: false);
            var f = backbone.Apply(preprocess.Apply(x)).reshape(n, -1);
            parts.Add(f.MoveToOuterDisposeScope());
        }
    }
    var all = cat(parts, 0);
    foreach (var p in parts) p.Dispose();
    return all;
}

static (string Backbone, string Preprocess) LocateResNet18()
{
    var packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
        ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
    var root = Path.Combine(packages, "microsoft.ml.dnnimagefeaturizer.resnet18", "0.24.0", "tools", "DnnImageModels");
    var backbone = Path.Combine(root, "ResNet18Onnx", "ResNet18.onnx");
    var preprocess = Path.Combine(root, "ResNetPrepOnnx", "ResNetPreprocess.onnx");
    if (!File.Exists(backbone))
    {
        // The repository's test-only restore project fetches the package (ConvKit never references it).
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "ConvKit.slnx"))) dir = dir.Parent;
        if (dir is null) throw new InvalidOperationException("run from the repository: the package is restored through tests/ConvKit.Tests/Fixtures/ResNet18Package");
        var psi = new ProcessStartInfo("dotnet") { ArgumentList = { "restore", Path.Combine(dir.FullName, "tests", "ConvKit.Tests", "Fixtures", "ResNet18Package", "ResNet18Package.proj") } };
        using var p = Process.Start(psi)!;
        p.WaitForExit();
        if (p.ExitCode != 0 || !File.Exists(backbone)) throw new InvalidOperationException("restoring Microsoft.ML.DnnImageFeaturizer.ResNet18 failed");
    }
    return (backbone, preprocess);
}
