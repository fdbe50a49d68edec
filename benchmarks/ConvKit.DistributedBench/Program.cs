// Scaling report for ConvKit's data-parallel training (c10d + Gloo), printed, not asserted:
//   dotnet run --project benchmarks/ConvKit.DistributedBench -c Release -- [--repeats 3] [--steps 30] [--model lenet5|resnet20]
//       [--global-batch 128] [--allreduce-only]
// 1. Training throughput, 2 ranks x 1 thread against 1 rank x 2 threads, same global batch, alternating A/B per repeat.
// 2. All-reduce latency and bandwidth against message size on loopback (2 ranks, one thread each).
// 3. A paper estimate for 8 and 64 nodes from those figures (ring all-reduce model, no overlap with backward).
// Every rank is a child process of this program (re-invoked with --worker, the torchrun environment set).
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using ConvKit;
using ConvKit.Applications;
using ConvKit.Distributed;
using ConvKit.Models;
using ConvKit.Training;
using TorchSharp;
using static TorchSharp.torch;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

string Arg(string name, string fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
}

string worker = Arg("--worker", "");
int steps = int.Parse(Arg("--steps", "30"));
string model = Arg("--model", "lenet5");
int perRankBatch = int.Parse(Arg("--batch", "64"));
if (worker == "train") return Workers.Train(model, perRankBatch, steps);
if (worker == "allreduce") return Workers.AllReduce();

int repeats = int.Parse(Arg("--repeats", "3"));
int globalBatch = int.Parse(Arg("--global-batch", "128"));
Console.WriteLine($"ConvKit distributed scaling report; {Environment.ProcessorCount} logical CPUs; model {model}, global batch {globalBatch}, {steps} timed steps, {repeats} repeats (A/B alternating).");
Console.WriteLine("Measured while other work may share the machine: compare the paired figures, not absolute ones.");
Console.WriteLine();

bool allReduceOnly = args.Contains("--allreduce-only");
var oneByTwo = new List<double>();
var twoByOne = new List<double>();
for (int r = 0; r < (allReduceOnly ? 0 : repeats); r++)
{
    bool twoFirst = r % 2 == 1;
    for (int k = 0; k < 2; k++)
    {
        bool two = (k == 0) == twoFirst;
        double ips = two
            ? Launcher.Run(2, 1, ["--worker", "train", "--model", model, "--batch", (globalBatch / 2).ToString(), "--steps", steps.ToString()]).Max()
            : Launcher.Run(1, 2, ["--worker", "train", "--model", model, "--batch", globalBatch.ToString(), "--steps", steps.ToString()]).Max();
        (two ? twoByOne : oneByTwo).Add(ips);
    }
}
static string Fmt(List<double> v) => $"median {Median(v),8:F1} images/s  (runs: {string.Join(", ", v.Select(x => x.ToString("F1")))})";
static double Median(List<double> v) { var s = v.Order().ToArray(); return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2; }
if (allReduceOnly) { oneByTwo.Add(double.NaN); twoByOne.Add(double.NaN); }
Console.WriteLine("1. Training throughput (same global batch, same math):");
Console.WriteLine($"   1 rank  x 2 threads: {Fmt(oneByTwo)}");
Console.WriteLine($"   2 ranks x 1 thread : {Fmt(twoByOne)}");
Console.WriteLine($"   ratio (2x1 / 1x2)  : {Median(twoByOne) / Median(oneByTwo):F2}");
Console.WriteLine();

Console.WriteLine("2. All-reduce (sum, float32) on loopback, 2 ranks x 1 thread, median of repeated calls:");
var table = Launcher.RunAllReduce();
Console.WriteLine("   bytes        latency (us)   algbw (MB/s)   busbw (MB/s)");
foreach (var (bytes, us) in table)
    Console.WriteLine($"   {bytes,10}   {us,12:F1}   {bytes / us,12:F1}   {bytes / us,12:F1}");
Console.WriteLine("   (for 2 ranks the ring's bus bandwidth equals the algorithm bandwidth: 2(n-1)/n = 1)");
Console.WriteLine();

// Latency alpha: the smallest message; bandwidth beta: the best of the messages of 1 MB and more.
double alphaUs = table[0].Us;
double betaBytesPerUs = table.Where(t => t.Bytes >= 1 << 20).Max(t => t.Bytes / (t.Us - alphaUs));
int parameters = Workers.ParameterCount(model);
double gradBytes = parameters * 4.0;
double computePerImageUs = 1e6 / Median(oneByTwo) * 2; // one thread's time per image (the 1x2 run used 2 threads)
Console.WriteLine($"3. Paper estimate for {model} ({parameters:N0} parameters, {gradBytes / 1e6:F2} MB of gradients per step), per-rank batch {globalBatch / 2}:");
Console.WriteLine($"   from the loopback figures: alpha = {alphaUs:F1} us per message step, beta = {betaBytesPerUs:F0} bytes/us; compute {computePerImageUs:F0} us per image per thread.");
Console.WriteLine("   Ring all-reduce time T(n) = 2(n-1) alpha + 2(n-1)/n * bytes / beta; step time = compute + T(n) (no overlap).");
foreach (var (label, beta, alpha) in new[] { ("loopback figures", betaBytesPerUs, alphaUs), ("10 GbE (1250 B/us, 50 us)", 1250.0, 50.0), ("100 GbE (12500 B/us, 10 us)", 12500.0, 10.0) })
{
    foreach (int n in new[] { 8, 64 })
    {
        double comm = 2 * (n - 1) * alpha + 2.0 * (n - 1) / n * gradBytes / beta;
        double compute = computePerImageUs * (globalBatch / 2); // one rank, one thread, its per-rank batch
        double eff = compute / (compute + comm);
        Console.WriteLine($"   {label,-28} n={n,2}: all-reduce {comm / 1000,8:F2} ms, compute {compute / 1000,8:F2} ms per step -> efficiency {eff,6:P1}, speed-up {n * eff,6:F1}x");
    }
}
return 0;

static class Launcher
{
    static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int p = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return p;
    }

    /// <summary>Runs <paramref name="world"/> ranks with <paramref name="threads"/> threads each; returns each rank's last stdout number.</summary>
    public static double[] Run(int world, int threads, string[] workerArgs) => RunLines(world, threads, workerArgs)
        .Select(lines => double.Parse(lines.Last(l => l.StartsWith("RESULT ")).Substring(7), CultureInfo.InvariantCulture)).ToArray();

    public static List<(long Bytes, double Us)> RunAllReduce()
    {
        var lines = RunLines(2, 1, ["--worker", "allreduce"])[0];
        return lines.Where(l => l.StartsWith("AR ")).Select(l =>
        {
            var p = l.Split(' ');
            return (long.Parse(p[1]), double.Parse(p[2], CultureInfo.InvariantCulture));
        }).ToList();
    }

    static List<string>[] RunLines(int world, int threads, string[] workerArgs)
    {
        int port = FreePort();
        string dll = typeof(Launcher).Assembly.Location;
        var procs = new Process[world];
        var outputs = new List<string>[world];
        for (int r = 0; r < world; r++)
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add(dll);
            foreach (var a in workerArgs) psi.ArgumentList.Add(a);
            psi.Environment["CONVKIT_BENCH_THREADS"] = threads.ToString();
            if (world > 1)
            {
                psi.Environment["MASTER_ADDR"] = "127.0.0.1";
                psi.Environment["MASTER_PORT"] = port.ToString();
                psi.Environment["WORLD_SIZE"] = world.ToString();
                psi.Environment["RANK"] = r.ToString();
                psi.Environment["LOCAL_RANK"] = r.ToString();
            }
            procs[r] = Process.Start(psi)!;
        }
        var errors = procs.Select(p => p.StandardError.ReadToEndAsync()).ToArray();
        for (int r = 0; r < world; r++)
        {
            outputs[r] = procs[r].StandardOutput.ReadToEnd().Split('\n').Select(l => l.Trim()).ToList();
            procs[r].WaitForExit();
            if (procs[r].ExitCode != 0) throw new InvalidOperationException($"rank {r} failed: {errors[r].Result}");
        }
        return outputs;
    }
}

static class Workers
{
    public static int ParameterCount(string model)
    {
        using var m = Create(model);
        return (int)m.CountParams();
    }

    static Model Create(string model) => model switch
    {
        "resnet20" => Zoo.ResNet20(new ModelOptions { InputShape = new Shape(32, 32, 3), Classes = 10 }),
        _ => Zoo.LeNet5(new ModelOptions { InputShape = new Shape(28, 28, 1), Classes = 10 }),
    };

    static void SetThreads() => Backend.Threads = int.Parse(Environment.GetEnvironmentVariable("CONVKIT_BENCH_THREADS") ?? "1");

    public static int Train(string model, int batch, int steps)
    {
        SetThreads();
        Backend.SetSeed(1);
        using var group = DistributedEnvironment.FromEnvironment() is not null ? ProcessGroup.InitializeFromEnvironment() : null;
        int world = group?.WorldSize ?? 1;
        var m = Create(model);
        m.Compile(optimizer: new SGD(learningRate: 0.01, momentum: 0.9), loss: "sparse_categorical_crossentropy");
        if (group is not null) m.Distribute(new DataParallel(group));
        var shape = model == "resnet20" ? new long[] { 1, 32, 32, 3 } : new long[] { 1, 28, 28, 1 };
        // One warm-up epoch of 3 global batches, then the timed epoch of `steps` global batches.
        long warm = 3L * batch * world, timed = (long)steps * batch * world;
        using var xw = rand([warm, .. shape[1..]]);
        using var yw = randint(0, 10, [warm], dtype: int64);
        m.Fit(xw, yw, batchSize: batch, epochs: 1, verbose: 0, seed: 1);
        using var x = rand([timed, .. shape[1..]]);
        using var y = randint(0, 10, [timed], dtype: int64);
        group?.Barrier();
        var sw = Stopwatch.StartNew();
        m.Fit(x, y, batchSize: batch, epochs: 1, verbose: 0, seed: 2);
        group?.Barrier();
        double seconds = sw.Elapsed.TotalSeconds;
        Console.WriteLine($"RESULT {timed / seconds:F2}"); // images per second, all ranks together
        return 0;
    }

    public static int AllReduce()
    {
        SetThreads();
        using var group = ProcessGroup.InitializeFromEnvironment();
        foreach (long floats in new long[] { 1, 256, 4096, 65536, 262144, 1 << 20, 4 << 20, 16 << 20 })
        {
            using var t = ones(floats);
            for (int i = 0; i < 3; i++) group.AllReduce(t);
            // The same count on every rank (a per-rank time budget would let one rank stop early and leave the other waiting).
            int iterations = floats <= 65536 ? 100 : floats <= (1 << 20) ? 20 : 6;
            var times = new List<double>();
            for (int i = 0; i < iterations; i++)
            {
                group.Barrier();
                var sw = Stopwatch.StartNew();
                group.AllReduce(t);
                times.Add(sw.Elapsed.TotalMicroseconds);
            }
            times.Sort();
            if (group.Rank == 0) Console.WriteLine($"AR {floats * 4} {times[times.Count / 2]:F1}");
        }
        return 0;
    }
}
