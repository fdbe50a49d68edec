// ConvKit's benchmark suite: ConvKit vs the same math in raw TorchSharp vs PyTorch (when available), side by side.
//   dotnet run --project benchmarks/ConvKit.Benchmarks -c Release -- [--quick] [--only lenet5,resnet20,...] [--repeats N]
//       [--peer PATH] [--python PATH] [--no-peer] [--no-plain] [--threads N]
//   ... -- --int8 [...]: int8 quantization, accuracy and speed (see Int8Bench.cs)
// Every measurement runs in a child process (this program re-invoked with --worker) so that its peak RSS is its own;
// within a repeat ConvKit and raw runs alternate (and swap order every repeat) so that machine noise hits both alike.
using System.Diagnostics;
using System.Globalization;
using ConvKit.Benchmarks;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

if (args.Length > 0 && args[0] == "--int8") return Int8Bench.Run(args[1..]);   // int8 accuracy and speed (Int8Bench.cs)
var options = Options.Parse(args);
if (options.Worker is { } workerKey)
{
    if (workerKey == "sgemm") OrtBench.Sgemm(options);
    else Worker.Run(Suite.Find(workerKey), options.Impl, options);
    return 0;
}
return Suite.Run(options);

namespace ConvKit.Benchmarks
{
    enum Kind { Train, Infer, Epoch }

    /// <summary>One benchmarked workload. Steps are training batches per timed epoch, or timed seconds for inference.</summary>
    sealed record Workload(string Key, string Model, Kind Kind, int Batch, int Height, int Width, int Channels, int Steps, int QuickSteps,
        double Seconds, double QuickSeconds, int MinIterations, bool InQuick, int MaxRepeats = int.MaxValue,
        string? PeerModel = null, bool HasRaw = true, bool HasPeer = true)
    {
        /// <summary>Whether the ORT column applies: every inference workload (ConvKit's own export run by ONNX Runtime).</summary>
        public bool HasOrt => Kind == Kind.Infer;

        /// <summary>The model name peer_torch.py knows this workload's network by.</summary>
        public string Peer => PeerModel ?? Model;

        public string Title => Kind switch
        {
            Kind.Train => $"{Model} {Height}x{Width}x{Channels} train b{Batch}",
            Kind.Infer => $"{Model} {Height}x{Width}x{Channels} infer b{Batch}",
            _ => $"fashion-mnist epoch {Model} b{Batch}",
        };
    }

    sealed record Options(bool Quick, string[]? Only, int Repeats, string PeerPath, string Python, bool NoPeer, int Threads,
        string? Worker, string Impl, bool NoPlain, bool NoOrt, string Engine = "torchsharp")
    {
        public static Options Parse(string[] args)
        {
            bool quick = false, noPeer = false, noPlain = false, noOrt = false;
            string[]? only = null;
            int? repeats = null;
            int threads = 2;
            string? worker = null, impl = "convkit";
            string engine = "torchsharp";
            string peer = Environment.GetEnvironmentVariable("CONVKIT_PEER_SCRIPT") ?? DefaultPeerPath();
            string python = Environment.GetEnvironmentVariable("CONVKIT_PEER_PYTHON") ?? "/usr/bin/python3";
            for (int i = 0; i < args.Length; i++)
            {
                string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
                switch (args[i])
                {
                    case "--quick": quick = true; break;
                    case "--only": only = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries); break;
                    case "--repeats": repeats = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                    case "--peer": peer = Next(); break;
                    case "--python": python = Next(); break;
                    case "--no-peer": noPeer = true; break;
                    case "--no-plain": noPlain = true; break;
                    case "--no-ort": noOrt = true; break;
                    case "--engine": engine = Next(); break;
                    case "--threads": threads = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                    case "--worker": worker = Next(); break;
                    case "--impl": impl = Next(); break;
                    case "-h" or "--help":
                        Console.WriteLine("options: --quick  --only lenet5,resnet20,vgg16,resnet50,fashion (or workload keys)  --repeats N  " +
                            "--peer PATH (env CONVKIT_PEER_SCRIPT; default ../shared/bench/peer_torch.py from the repo root)  --python PATH  --no-peer  --threads N\n" +
                            "  --no-plain: skip the 'plain TS' column (raw TorchSharp on NCHW-contiguous data with glibc's malloc defaults)\n" +
                            "  --engine torchsharp|onnxruntime|auto: ConvKit's Model.InferenceEngine for Predict (default torchsharp)\n" +
                            "  --no-ort: skip the ONNX Runtime column (ConvKit's export in an ORT session, paired with Predict in one process)");
                        Environment.Exit(0);
                        break;
                    default: throw new ArgumentException($"unknown option {args[i]} (try --help)");
                }
            }
            return new Options(quick, only, repeats ?? (quick ? 1 : 3), peer, python, noPeer, threads, worker, impl, noPlain, noOrt, engine);
        }

        /// <summary>../shared/bench/peer_torch.py relative to the repository root (found from the working directory up).</summary>
        static string DefaultPeerPath()
        {
            for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "ConvKit.slnx")))
                    return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "bench", "peer_torch.py"));
            return Path.GetFullPath(Path.Combine("..", "shared", "bench", "peer_torch.py"));
        }
    }

    /// <summary>What one worker measured.</summary>
    sealed record Measurement(double ImagesPerSecond, double Seconds, double PeakRssMb, string Note);

    static class Suite
    {
        public static readonly Workload[] All =
        [
            new("lenet5-train-b32", "lenet5", Kind.Train, 32, 28, 28, 1, 600, 250, 0, 0, 0, true),
            new("lenet5-train-b128", "lenet5", Kind.Train, 128, 28, 28, 1, 200, 80, 0, 0, 0, true),
            new("resnet20-train-b128", "resnet20", Kind.Train, 128, 32, 32, 3, 10, 5, 0, 0, 0, true),
            // ResNet-50 training at 224x224, batch 16: a few seconds per step on 2 cores (one repeat).
            new("resnet50-train-b16", "resnet50", Kind.Train, 16, 224, 224, 3, 4, 2, 0, 0, 0, false, MaxRepeats: 1),
            new("lenet5-infer-b128", "lenet5", Kind.Infer, 128, 28, 28, 1, 0, 0, 2.5, 1.5, 3, true),
            new("resnet20-infer-b128", "resnet20", Kind.Infer, 128, 32, 32, 3, 0, 0, 2.5, 1.5, 3, true),
            new("vgg16-infer-b1", "vgg16", Kind.Infer, 1, 224, 224, 3, 0, 0, 2.5, 1.5, 3, true),
            // VGG-16 and ResNet-50 at batch 16 take 5-15 s per batch on 2 cores: one timed batch after one warm-up.
            new("vgg16-infer-b16", "vgg16", Kind.Infer, 16, 224, 224, 3, 0, 0, 0, 0, 1, false, MaxRepeats: 1),
            new("resnet50-infer-b1", "resnet50", Kind.Infer, 1, 224, 224, 3, 0, 0, 2.5, 1.5, 3, true),
            new("resnet50-infer-b16", "resnet50", Kind.Infer, 16, 224, 224, 3, 0, 0, 0, 0, 1, false, MaxRepeats: 1),
            // The network PyTorch runs (torchvision's v1.5), from ConvKit's zoo: ConvKit only, no hand-written twin.
            new("resnet50tv-infer-b1", "resnet50_tv", Kind.Infer, 1, 224, 224, 3, 0, 0, 2.5, 1.5, 3, true, PeerModel: "resnet50", HasRaw: false),
            new("resnet50tv-infer-b16", "resnet50_tv", Kind.Infer, 16, 224, 224, 3, 0, 0, 0, 0, 1, false, MaxRepeats: 1, PeerModel: "resnet50", HasRaw: false),
            // Zoo networks without a hand-written twin or a PyTorch peer: ConvKit and ORT only.
            new("googlenet-infer-b1", "googlenet", Kind.Infer, 1, 224, 224, 3, 0, 0, 2.5, 1.5, 3, true, HasRaw: false, HasPeer: false),
            new("inceptionv3-infer-b1", "inception_v3", Kind.Infer, 1, 299, 299, 3, 0, 0, 2.5, 1.5, 3, true, HasRaw: false, HasPeer: false),
            new("fashion-epoch-b128", "lenet5", Kind.Epoch, 128, 28, 28, 1, 0, 0, 0, 0, 0, true),
        ];

        /// <summary>Diagnostic workloads, run only when named with --only or --worker.</summary>
        public static readonly Workload[] Diagnostics =
        [
            new("tiny-train-b32", "tiny", Kind.Train, 32, 28, 28, 1, 2000, 1000, 0, 0, 0, false),
        ];

        public static Workload Find(string key) =>
            All.Concat(Diagnostics).FirstOrDefault(w => w.Key == key) ?? throw new ArgumentException($"unknown workload {key}; known: {string.Join(", ", All.Select(w => w.Key))}");

        static IEnumerable<Workload> Selected(Options o)
        {
            var list = All.Where(w => !o.Quick || w.InQuick);
            if (o.Only is { } only)
                list = All.Concat(Diagnostics).Where(w => only.Any(s => w.Key == s || w.Model == s || (s == "fashion" && w.Kind == Kind.Epoch)))
                    .Where(w => !o.Quick || w.InQuick || only.Contains(w.Key));
            return list.ToArray();
        }

        public static int Run(Options o)
        {
            var workloads = Selected(o).ToArray();
            if (workloads.Length == 0)
            {
                Console.Error.WriteLine($"no workload selected; known: {string.Join(", ", All.Select(w => w.Key))}");
                return 2;
            }
            var started = DateTime.UtcNow;
            Console.WriteLine($"ConvKit benchmarks  {started:yyyy-MM-dd HH:mm} UTC  threads={o.Threads}  repeats={o.Repeats}  engine={o.Engine}{(o.Quick ? "  (quick)" : "")}");
            Console.WriteLine($"load average at start: {LoadAverage()}");
            // raw = the hand-written TorchSharp models in a process set up as ConvKit sets it up (malloc tuning, oneDNN cap):
            // the framework's overhead. plain = the same models with TorchSharp's and glibc's defaults, what a raw
            // TorchSharp user gets.
            string[] impls = [.. (o.NoPlain ? new[] { "convkit", "raw" } : ["convkit", "raw", "plain"]), .. (o.NoOrt ? Array.Empty<string>() : ["ort"])];
            // The machine's peak, measured first: fused multiply-add chains on the same threads (and a large float32
            // matrix product, libtorch's best GEMM, beside it).
            var sgemm = RunWorker(null, "sgemm", o);
            Console.WriteLine(FormattableString.Invariant($"Peak (float32 FMA chains, {o.Threads} threads, best of 3): {sgemm.ImagesPerSecond:F1} GFLOP/s; 2048x2048 matmul: {sgemm.Note}"));
            var results = impls.ToDictionary(i => i, _ => workloads.ToDictionary(w => w, _ => new List<Measurement>()));
            for (int r = 0; r < o.Repeats; r++)
            {
                foreach (var w in workloads.Where(w => r < w.MaxRepeats))
                {
                    // Rotate which implementation goes first so that drifting load favours none.
                    int shift = (r + Array.IndexOf(workloads, w)) % impls.Length;
                    foreach (var impl in impls.Skip(shift).Concat(impls.Take(shift)))
                    {
                        if (impl is "raw" or "plain" && !w.HasRaw) continue;
                        if (impl == "ort" && !w.HasOrt) continue;
                        var m = RunWorker(w, impl, o);
                        results[impl][w].Add(m);
                        Console.Error.WriteLine($"  [{r + 1}/{o.Repeats}] {w.Key,-20} {impl,-8} {Describe(w, m)}");
                    }
                }
            }
            var peer = RunPeer(workloads, o);
            Console.WriteLine($"load average at end: {LoadAverage()}   elapsed {(DateTime.UtcNow - started).TotalMinutes:F1} min");
            Print(workloads, results, peer, o, sgemm.ImagesPerSecond);
            return 0;
        }

        static string Describe(Workload w, Measurement m) =>
            m.ImagesPerSecond is double.NaN ? $"failed: {m.Note}" : $"{m.ImagesPerSecond,10:F1} img/s  {m.Seconds,7:F2} s  rss {m.PeakRssMb:F0} MB {m.Note}";

        static Measurement RunWorker(Workload? w, string impl, Options o)
        {
            var self = Environment.ProcessPath!;
            var psi = new ProcessStartInfo { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            // TorchSharp as a raw user runs it: glibc's malloc defaults (and NCHW-contiguous inputs, see Worker).
            if (impl == "plain")
            {
                psi.Environment["CONVKIT_MALLOC_TUNING"] = "0";
                psi.Environment["CONVKIT_CPU_POOL"] = "0";
            }
            if (Path.GetFileNameWithoutExtension(self) == "dotnet")
            {
                psi.FileName = self;
                psi.ArgumentList.Add(typeof(Suite).Assembly.Location);
            }
            else psi.FileName = self;
            // ort: ConvKit's Predict and an ORT session over its export, alternated in one process (paired ratio in the note).
            foreach (var a in new[] { "--worker", w?.Key ?? "sgemm", "--impl", impl == "ort" ? "ort-paired" : impl, "--threads", o.Threads.ToString(CultureInfo.InvariantCulture), "--engine", o.Engine })
                psi.ArgumentList.Add(a);
            if (o.Quick) psi.ArgumentList.Add("--quick");
            using var p = Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            var stdout = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            var line = stdout.Split('\n').LastOrDefault(l => l.StartsWith("RESULT ", StringComparison.Ordinal));
            if (p.ExitCode != 0 || line is null)
                return new Measurement(double.NaN, double.NaN, double.NaN, $"exit {p.ExitCode}: {LastLine(stderr.Result)}");
            var kv = Fields(line);
            return new Measurement(kv["ips"], kv["seconds"], kv["rss"], line.Contains(" note=", StringComparison.Ordinal) ? line[(line.IndexOf(" note=", StringComparison.Ordinal) + 6)..] : "");
        }

        static string LastLine(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault()?.Trim() ?? "";

        static Dictionary<string, double> Fields(string line)
        {
            var d = new Dictionary<string, double>();
            foreach (var part in line.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                int eq = part.IndexOf('=');
                if (eq > 0 && double.TryParse(part[(eq + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var v)) d[part[..eq]] = v;
            }
            return d;
        }

        // ------------------------------------------------------------------ PyTorch peer

        sealed record PeerResult(double Train, double Infer, double RssMb);

        static Dictionary<Workload, PeerResult>? RunPeer(Workload[] workloads, Options o)
        {
            if (o.NoPeer) return null;
            if (!File.Exists(o.PeerPath) || !File.Exists(o.Python) || !PythonHasTorch(o.Python))
            {
                Console.WriteLine($"PyTorch: not available (peer script {o.PeerPath}{(File.Exists(o.PeerPath) ? "" : " missing")}; python {o.Python})");
                return null;
            }
            var results = new Dictionary<Workload, PeerResult>();
            var cache = new Dictionary<(string, int), PeerResult?>();
            foreach (var w in workloads.Where(w => w.Kind != Kind.Epoch && w.HasPeer))
            {
                var key = (w.Peer, w.Batch);
                if (!cache.TryGetValue(key, out var pr))
                {
                    pr = RunPeerOnce(w.Peer, w.Batch, o);
                    cache[key] = pr;
                    Console.Error.WriteLine($"  pytorch {w.Model} b{w.Batch}: {(pr is null ? "failed" : $"train {pr.Train:F1} infer {pr.Infer:F1} img/s rss {pr.RssMb:F0} MB")}");
                }
                if (pr is not null) results[w] = pr;
            }
            return results;
        }

        static bool PythonHasTorch(string python)
        {
            try
            {
                var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                psi.ArgumentList.Add("-c");
                psi.ArgumentList.Add("import torch");
                using var p = Process.Start(psi)!;
                p.WaitForExit();
                return p.ExitCode == 0;
            }
            catch (System.ComponentModel.Win32Exception)
            {
                return false;
            }
        }

        static PeerResult? RunPeerOnce(string model, int batch, Options o)
        {
            var psi = new ProcessStartInfo(o.Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { o.PeerPath, model, batch.ToString(CultureInfo.InvariantCulture), o.Threads.ToString(CultureInfo.InvariantCulture) })
                psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var err = p.StandardError.ReadToEndAsync();
            var line = p.StandardOutput.ReadToEnd().Split('\n').FirstOrDefault(l => l.StartsWith("pytorch", StringComparison.Ordinal));
            p.WaitForExit();
            if (p.ExitCode != 0 || line is null) return null;
            var kv = Fields(line);
            return new PeerResult(kv.GetValueOrDefault("train_img_per_s", double.NaN), kv.GetValueOrDefault("infer_img_per_s", double.NaN),
                kv.GetValueOrDefault("peak_rss_mb", double.NaN));
        }

        // ------------------------------------------------------------------ report

        static double Median(IEnumerable<double> values)
        {
            var v = values.Where(x => !double.IsNaN(x)).OrderBy(x => x).ToArray();
            if (v.Length == 0) return double.NaN;
            return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
        }

        static string Num(double v) => double.IsNaN(v) ? "n/a" : v >= 100 ? v.ToString("N0", CultureInfo.InvariantCulture) : v.ToString("F1", CultureInfo.InvariantCulture);

        static string Ratio(double v) => double.IsNaN(v) ? "n/a" : v.ToString("F3", CultureInfo.InvariantCulture);

        static void Print(Workload[] workloads, Dictionary<string, Dictionary<Workload, List<Measurement>>> results,
            Dictionary<Workload, PeerResult>? peer, Options o, double peakGflops)
        {
            var ort = results.GetValueOrDefault("ort");
            var ck = results["convkit"];
            var raw = results["raw"];
            var plain = results.GetValueOrDefault("plain");
            double Paired(Dictionary<Workload, List<Measurement>> other, Workload w, out string range)
            {
                var v = ck[w].Zip(other[w], (a, b) => a.ImagesPerSecond / b.ImagesPerSecond).Where(x => !double.IsNaN(x)).ToArray();
                range = v.Length > 1 ? $"[{v.Min():F2}..{v.Max():F2}]" : "";
                return Median(v);
            }
            Console.WriteLine();
            Console.WriteLine($"Throughput, images/s (median of {o.Repeats}; VGG-16/ResNet-50 batch 16: one run; higher is better). Ratios > 1: ConvKit faster;");
            Console.WriteLine("CK/raw and CK/plain are medians of per-repeat paired ratios [min..max].");
            string header = $"{"workload",-34} {"ConvKit",8} {"raw TS",8} {"plain TS",8} {"PyTorch",8} {"CK/raw",6} {"[min..max]",12} {"CK/plain",8} {"CK/PT",6}  {"RSS CK",6} {"raw",6} {"plain",6} {"PT",6} (MB)";
            Console.WriteLine(header);
            Console.WriteLine(new string('-', header.Length));
            foreach (var w in workloads)
            {
                double cIps = Median(ck[w].Select(m => m.ImagesPerSecond)), rIps = Median(raw[w].Select(m => m.ImagesPerSecond));
                double plIps = plain is null ? double.NaN : Median(plain[w].Select(m => m.ImagesPerSecond));
                double pIps = double.NaN, pRss = double.NaN;
                if (peer is not null && peer.TryGetValue(w, out var pr))
                {
                    pIps = w.Kind == Kind.Train ? pr.Train : pr.Infer;
                    pRss = pr.RssMb;
                }
                double vsRaw = Paired(raw, w, out var range);
                double vsPlain = plain is null ? double.NaN : Paired(plain, w, out _);
                Console.WriteLine($"{w.Title,-34} {Num(cIps),8} {Num(rIps),8} {Num(plIps),8} {Num(pIps),8} {Ratio(vsRaw),6} {range,12} {Ratio(vsPlain),8} {Ratio(cIps / pIps),6}  " +
                    $"{Num(Median(ck[w].Select(m => m.PeakRssMb))),6} {Num(Median(raw[w].Select(m => m.PeakRssMb))),6} {Num(plain is null ? double.NaN : Median(plain[w].Select(m => m.PeakRssMb))),6} {Num(pRss),6}");
            }
            Console.WriteLine();
            foreach (var w in workloads.Where(w => w.Kind == Kind.Epoch))
            {
                Console.WriteLine($"Fashion-MNIST, one epoch of lenet5 at batch {w.Batch} (60,000 images, shuffled, loss + accuracy), seconds (median):");
                foreach (var (name, dict) in results)
                    Console.WriteLine($"  {name,-8} load + float conversion {Num(Median(dict[w].Select(m => Extra(m, "load"))))} s, training {Num(Median(dict[w].Select(m => Extra(m, "fit"))))} s, total {Num(Median(dict[w].Select(m => m.Seconds)))} s");
                Console.WriteLine("  (all load with ConvKit.Data; the PyTorch peer has no epoch workload)");
            }
            var trains = workloads.Where(w => w.Kind == Kind.Train && All.Contains(w)).ToArray();
            if (trains.Length > 0)
            {
                Console.WriteLine("Issue 3 (Fit within 5% of the raw TorchSharp loop in the same process set-up):");
                foreach (var w in trains)
                {
                    double ratio = Paired(raw, w, out _);
                    Console.WriteLine($"  {w.Title,-34} ConvKit/raw {Ratio(ratio)}  {(ratio >= 0.95 ? "ok" : "SLOWER than 5%")}");
                }
            }
            if (workloads.Any(w => w.Model is "resnet50" or "resnet50_tv" or "vgg16"))
            {
                Console.WriteLine("Note: ConvKit's and raw resnet50 are Keras' ResNet-50 v1 (stride in the first 1x1 conv, biased convs); PyTorch runs torchvision's");
                Console.WriteLine("      resnet50, which is v1.5 (stride in the 3x3 conv, no conv biases): similar but not identical FLOPs. The resnet50_tv rows run");
                Console.WriteLine("      v1.5 in ConvKit (zoo entry resnet50_tv) against the same PyTorch run: the same network. VGG-16 is the same net in all three.");
            }
            Console.WriteLine("raw TS = the same models written by hand in TorchSharp (RawTorch.cs), fed channels-last data and run in a process set up");
            Console.WriteLine("as ConvKit sets it up (glibc malloc tuning): ConvKit's own overhead. plain TS = the same code on NCHW-contiguous data with");
            Console.WriteLine("glibc's malloc defaults, as a raw TorchSharp user runs it (note: libtorch 2.10 computes some convolutions wrongly that way,");
            Console.WriteLine("see the README, Convolutions). The raw loop shuffles every epoch and accumulates loss and accuracy on the device like Fit.");
            if (ort is not null)
            {
                Console.WriteLine();
                Console.WriteLine("ONNX Runtime (ConvKit's own export of the same model and weights, ORT session with the same intra-op threads, alternated");
                Console.WriteLine("with Predict in one process; CK/ORT = median of per-round paired ratios [min..max] over the repeats' processes; outputs compared):");
                Console.WriteLine(FormattableString.Invariant($"Achieved GFLOP/s = 2 x MACs x images/s (training: 3x the forward's), beside the FMA peak {peakGflops:F1} GFLOP/s."));
                string h2 = $"{"workload",-34} {"ConvKit",9} {"ORT",9} {"CK/ORT",7} {"[min..max]",14} {"max rel",8} {"CK GF/s",8} {"ORT GF/s",8} {"CK %peak",8}";
                Console.WriteLine(h2);
                Console.WriteLine(new string('-', h2.Length));
                var ratios = new List<double>();
                foreach (var w in workloads)
                {
                    double macs = ModelMacs(w), cIps = Median(ck[w].Select(m => m.ImagesPerSecond));
                    double flopsPerImage = 2 * macs * (w.Kind == Kind.Train ? 3 : 1);
                    if (!w.HasOrt)
                    {
                        if (w.Kind == Kind.Train)
                            Console.WriteLine($"{w.Title,-34} {Num(cIps),9} {"-",9} {"",7} {"",14} {"",8} {Num(cIps * flopsPerImage / 1e9),8} {"-",8} {Pct(cIps * flopsPerImage / 1e9 / peakGflops),8}");
                        continue;
                    }
                    var ms = ort[w].Where(m => !double.IsNaN(m.ImagesPerSecond)).ToArray();
                    double oIps = Median(ms.Select(m => m.ImagesPerSecond)), pairedCk = Median(ms.Select(m => Extra(m, "ck_ips")));
                    double ratio = Median(ms.Select(m => Extra(m, "ck_ort")));
                    string range = ms.Length == 0 ? "" : FormattableString.Invariant($"[{ms.Min(m => Extra(m, "ck_ort_min")):F2}..{ms.Max(m => Extra(m, "ck_ort_max")):F2}]");
                    string rel = ms.Length == 0 ? "failed" : ms.Max(m => Extra(m, "maxrel")).ToString("E0", CultureInfo.InvariantCulture);
                    if (!double.IsNaN(ratio)) ratios.Add(ratio);
                    Console.WriteLine($"{w.Title,-34} {Num(pairedCk),9} {Num(oIps),9} {Ratio(ratio),7} {range,14} {rel,8} {Num(pairedCk * flopsPerImage / 1e9),8} {Num(oIps * flopsPerImage / 1e9),8} {Pct(pairedCk * flopsPerImage / 1e9 / peakGflops),8}");
                }
                if (ratios.Count > 0)
                    Console.WriteLine(FormattableString.Invariant($"geometric mean CK/ORT over {ratios.Count} inference workloads: {Math.Exp(ratios.Average(Math.Log)):F3} (issue 17 target: >= 0.97 each, > 1.0 mean)"));
                foreach (var w in workloads.Where(w => w.HasOrt))
                    foreach (var m in ort[w].Where(m => double.IsNaN(m.ImagesPerSecond)))
                        Console.WriteLine($"  ORT {w.Key} failed: {m.Note}");
            }
            Console.WriteLine("ConvKit trains through Model.Fit (verbose 0, SGD lr 0.01 momentum 0.9, sparse CE on logits) and infers through Model.Predict.");
        }

        static string Pct(double v) => double.IsNaN(v) ? "n/a" : (100 * v).ToString("F0", CultureInfo.InvariantCulture) + "%";

        /// <summary>Multiply-accumulates per sample of the workload's model (the registry's table; its defaults are the workloads' shapes).</summary>
        static double ModelMacs(Workload w)
        {
            var info = ConvKit.Applications.ModelRegistry.All.FirstOrDefault(i => i.Name == w.Model);
            return info is null ? double.NaN : info.Macs;
        }

        static double Extra(Measurement m, string key)
        {
            foreach (var part in m.Note.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                if (part.StartsWith(key + "=", StringComparison.Ordinal) && double.TryParse(part[(key.Length + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
                    return v;
            return double.NaN;
        }

        static string LoadAverage()
        {
            try
            {
                return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
            }
            catch (IOException)
            {
                return "unknown";
            }
        }
    }
}
