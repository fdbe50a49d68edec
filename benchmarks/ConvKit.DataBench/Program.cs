// Streaming datasets: read, decode, resize to 160x160 and batch (no training) through ImageDatasetFromCsv.
//   dotnet run --project benchmarks/ConvKit.DataBench -c Release -- rss 5000 10000 20000   peak RSS per file count (one process each)
//   dotnet run --project benchmarks/ConvKit.DataBench -c Release -- workers 2000            images/s for 0, 1, 2, 4 workers
//   dotnet run --project benchmarks/ConvKit.DataBench -c Release -- train 20000 [STEPS]      ResNet-18 trained STEPS (200) batches of 32 at 160x160: peak RSS
// The files are 640x480 JPEGs (quality 90, smooth gradients plus noise): 200 distinct ones are written to a temporary
// folder and a list file names them round-robin up to the count, so disk use stays small while every sample is
// decoded from its file. Each file count runs in a child process so its peak RSS (VmHWM) is its own.
using System.Diagnostics;
using System.Globalization;
using ConvKit;
using ConvKit.Applications;
using ConvKit.Data.Streaming;
using SkiaSharp;

if (args.Length >= 2 && args[0] == "child")
{
    // child COUNT WORKERS LIST: stream one epoch, print images/s and VmHWM.
    int count = int.Parse(args[1], CultureInfo.InvariantCulture), workers = int.Parse(args[2], CultureInfo.InvariantCulture);
    using var loader = ImageDatasets.ImageDatasetFromCsv(args[3], batchSize: 64, imageSize: (160, 160), seed: 1, workers: workers);
    var clock = Stopwatch.StartNew();
    long seen = 0;
    // Raw batches (float32 NHWC arrays): what Fit turns into tensors, without loading libtorch here.
    foreach (var batch in loader.Batches(0)) seen += batch.Count;
    double seconds = clock.Elapsed.TotalSeconds;
    Console.WriteLine(FormattableString.Invariant($"{count} files, {workers} workers: {seen / seconds:F0} images/s, data wait {loader.DataWait.TotalSeconds / seconds:P0}, peak RSS {PeakRssMb():F0} MB"));
    return 0;
}

if (args.Length >= 2 && args[0] == "trainchild")
{
    // trainchild COUNT WORKERS LIST STEPS: ResNet-18 (random weights, 10 classes) trained STEPS batches from the stream.
    int count = int.Parse(args[1], CultureInfo.InvariantCulture), workers = int.Parse(args[2], CultureInfo.InvariantCulture);
    int steps = int.Parse(args[4], CultureInfo.InvariantCulture);
    using var loader = ImageDatasets.ImageDatasetFromCsv(args[3], batchSize: 32, imageSize: (160, 160), seed: 1, workers: workers);
    using var model = Zoo.ResNet18(new ModelOptions { InputShape = new Shape(160, 160, 3), Classes = 10 });
    model.Compile(optimizer: "sgd", loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
    var clock = Stopwatch.StartNew();
    model.Fit(loader, epochs: 1, verbose: 0, stepsPerEpoch: steps);
    double seconds = clock.Elapsed.TotalSeconds;
    Console.WriteLine(FormattableString.Invariant($"ResNet-18 160x160 b32, {steps} steps over {count} files, {workers} workers: {steps * 32 / seconds:F1} images/s, data wait {loader.DataWait.TotalSeconds / seconds:P0}, peak RSS {PeakRssMb():F0} MB"));
    return 0;
}

string mode = args.Length > 0 ? args[0] : "workers";
int trainSteps = mode == "train" && args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 200;
var counts = (mode == "train" ? args.Skip(1).Take(1) : args.Skip(1)).Select(a => int.Parse(a, CultureInfo.InvariantCulture)).DefaultIfEmpty(mode == "rss" ? 5000 : 2000).ToArray();
var folder = Directory.CreateTempSubdirectory("convkit-databench-").FullName;
try
{
    var files = new List<string>();
    for (int i = 0; i < 200; i++)
    {
        var path = Path.Combine(folder, $"{i:D3}.jpg");
        File.WriteAllBytes(path, Synthetic(640, 480, i));
        files.Add(path);
    }
    foreach (var count in counts)
    {
        var list = Path.Combine(folder, $"list-{count}.csv");
        File.WriteAllLines(list, Enumerable.Range(0, count).Select(i => $"{files[i % files.Count]},{i % 10}"));
        var workerCounts = mode is "rss" or "train" ? [DataLoader.DefaultWorkers] : new[] { 0, 1, 2, 4 };
        foreach (var w in workerCounts)
            Child(mode == "train" ? ["trainchild", Str(count), Str(w), list, Str(trainSteps)] : ["child", Str(count), Str(w), list]);
    }
}
finally { Directory.Delete(folder, recursive: true); }
return 0;

static string Str(int value) => value.ToString(CultureInfo.InvariantCulture);

static void Child(string[] arguments)
{
    var self = Environment.ProcessPath!;
    var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true };
    if (Path.GetFileNameWithoutExtension(self) == "dotnet") psi.ArgumentList.Add(System.Reflection.Assembly.GetEntryAssembly()!.Location);
    foreach (var a in arguments) psi.ArgumentList.Add(a);
    using var p = Process.Start(psi)!;
    Console.Write(p.StandardOutput.ReadToEnd());
    p.WaitForExit();
}

static double PeakRssMb()
{
    foreach (var line in File.ReadLines("/proc/self/status"))
        if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            return double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
    return Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0;
}

static byte[] Synthetic(int w, int h, int seed)
{
    var rng = new Random(seed);
    using var bitmap = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            bitmap.SetPixel(x, y, new SKColor((byte)(x * 255 / w + rng.Next(-12, 12) + seed), (byte)(y * 255 / h + rng.Next(-12, 12)), (byte)((x + y + seed) % 256)));
    using var image = SKImage.FromBitmap(bitmap);
    using var data = image.Encode(SKEncodedImageFormat.Jpeg, 90);
    return data.ToArray();
}
