// ConvKit's benchmark suite: ConvKit vs the same math in raw TorchSharp vs PyTorch (when available), side by side.
//   dotnet run --project benchmarks/ConvKit.Benchmarks -c Release -- [--quick] [--only lenet5,resnet20,...] [--repeats N]
//       [--peer PATH] [--python PATH] [--no-peer] [--threads N]
// Every measurement runs in a child process (this program re-invoked with --worker) so that its peak RSS is its own;
// within a repeat ConvKit and raw runs alternate (and swap order every repeat) so that machine noise hits both alike.
using System.Diagnostics;
using System.Globalization;
using ConvKit.Benchmarks;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

var options = Options.Parse(args);
if (options.Worker is { } workerKey)
{
    Worker.Run(Suite.Find(workerKey), options.Impl, options);
    return 0;
}
return Suite.Run(options);

namespace ConvKit.Benchmarks
{
    enum Kind { Train, Infer, Epoch }

    /// <summary>One benchmarked workload. Steps are training batches per timed epoch, or timed seconds for inference.</summary>
    sealed record Workload(string Key, string Model, Kind Kind, int Batch, int Height, int Width, int Channels, int Steps, int QuickSteps,
        double Seconds, double QuickSeconds, int MinIterations, bool InQuick, int MaxRepeats = int.MaxValue)
    {
        public string Title => Kind switch
        {
            Kind.Train => $"{Model} {Height}x{Width}x{Channels} train b{Batch}",
            Kind.Infer => $"{Model} {Height}x{Width}x{Channels} infer b{Batch}",
            _ => $"fashion-mnist epoch {Model} b{Batch}",
        };
    }

    sealed record Options(bool Quick, string[]? Only, int Repeats, string PeerPath, string Python, bool NoPeer, int Threads,
        string? Worker, string Impl, bool IsaCompare)
    {
        public static Options Parse(string[] args)
        {
            bool quick = false, noPeer = false, isaCompare = false;
            string[]? only = null;
            int? repeats = null;
            int threads = 2;
            string? worker = null, impl = "convkit";
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
                    case "--isa-compare": isaCompare = true; break;
                    case "--threads": threads = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                    case "--worker": worker = Next(); break;
                    case "--impl": impl = Next(); break;
                    case "-h" or "--help":
                        Console.WriteLine("options: --quick  --only lenet5,resnet20,vgg16,resnet50,fashion (or workload keys)  --repeats N  " +
                            "--peer PATH (env CONVKIT_PEER_SCRIPT; default ../shared/bench/peer_torch.py from the repo root)  --python PATH  --no-peer  --threads N\n" +
                            "  --isa-compare: instead of the suite, raw TorchSharp with DNNL_MAX_CPU_ISA=AVX2 (ConvKit's cap) vs AVX512_CORE");
                        Environment.Exit(0);
                        break;
                    default: throw new ArgumentException($"unknown option {args[i]} (try --help)");
                }
            }
            return new Options(quick, only, repeats ?? (quick ? 1 : 3), peer, python, noPeer, threads, worker, impl, isaCompare);
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
            new("resnet20-infer-b128", "resnet20", Kind.Infer, 128, 32, 32, 3, 0, 0, 2.5, 1.5, 3, true),
            new("vgg16-infer-b1", "vgg16", Kind.Infer, 1, 224, 224, 3, 0, 0, 2.5, 1.5, 3, true),
            // VGG-16 and ResNet-50 at batch 16 take 5-15 s per batch on 2 cores: one timed batch after one warm-up.
            new("vgg16-infer-b16", "vgg16", Kind.Infer, 16, 224, 224, 3, 0, 0, 0, 0, 1, false, MaxRepeats: 1),
            new("resnet50-infer-b1", "resnet50", Kind.Infer, 1, 224, 224, 3, 0, 0, 2.5, 1.5, 3, true),
            new("resnet50-infer-b16", "resnet50", Kind.Infer, 16, 224, 224, 3, 0, 0, 0, 0, 1, false, MaxRepeats: 1),
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
            if (o.IsaCompare) return IsaCompare(workloads, o);
            var started = DateTime.UtcNow;
            Console.WriteLine($"ConvKit benchmarks  {started:yyyy-MM-dd HH:mm} UTC  threads={o.Threads}  repeats={o.Repeats}{(o.Quick ? "  (quick)" : "")}");
            Console.WriteLine($"load average at start: {LoadAverage()}   DNNL_MAX_CPU_ISA={Environment.GetEnvironmentVariable("DNNL_MAX_CPU_ISA") ?? "(unset: ConvKit caps at AVX2)"}");
            var ck = workloads.ToDictionary(w => w, _ => new List<Measurement>());
            var raw = workloads.ToDictionary(w => w, _ => new List<Measurement>());
            for (int r = 0; r < o.Repeats; r++)
            {
                foreach (var w in workloads.Where(w => r < w.MaxRepeats))
                {
                    // Alternate which implementation goes first so that drifting load favours neither.
                    foreach (var impl in (r + Array.IndexOf(workloads, w)) % 2 == 0 ? new[] { "convkit", "raw" } : ["raw", "convkit"])
                    {
                        var m = RunWorker(w, impl, o);
                        (impl == "convkit" ? ck : raw)[w].Add(m);
                        Console.Error.WriteLine($"  [{r + 1}/{o.Repeats}] {w.Key,-20} {impl,-8} {Describe(w, m)}");
                    }
                }
            }
            var peer = RunPeer(workloads, o);
            Console.WriteLine($"load average at end: {LoadAverage()}   elapsed {(DateTime.UtcNow - started).TotalMinutes:F1} min");
            Print(workloads, ck, raw, peer, o);
            return 0;
        }

        /// <summary>
        /// What ConvKit's oneDNN cap costs: raw TorchSharp under DNNL_MAX_CPU_ISA=AVX2 (what ConvKit sets, because
        /// libtorch 2.10's AVX-512 convolution backward-data kernel races) against AVX512_CORE, alternating.
        /// </summary>
        static int IsaCompare(Workload[] workloads, Options o)
        {
            string[] isas = ["AVX2", "AVX512_CORE"];
            Console.WriteLine($"raw TorchSharp, DNNL_MAX_CPU_ISA AVX2 vs AVX512_CORE  {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC  threads={o.Threads}  repeats={o.Repeats}  load {LoadAverage()}");
            var results = workloads.ToDictionary(w => w, _ => isas.ToDictionary(i => i, _ => new List<Measurement>()));
            for (int r = 0; r < o.Repeats; r++)
                foreach (var w in workloads.Where(w => r < w.MaxRepeats))
                    foreach (var isa in r % 2 == 0 ? isas : [isas[1], isas[0]])
                    {
                        var m = RunWorker(w, "raw", o, isa);
                        results[w][isa].Add(m);
                        Console.Error.WriteLine($"  [{r + 1}/{o.Repeats}] {w.Key,-20} {isa,-12} {Describe(w, m)}");
                    }
            string header = $"{"workload",-34} {"AVX2",9} {"AVX512",9} {"AVX2/AVX512",12} {"[min..max]",15}";
            Console.WriteLine($"load at end {LoadAverage()}. images/s, median; AVX2/AVX512 < 1 means the cap costs speed.");
            Console.WriteLine(header);
            Console.WriteLine(new string('-', header.Length));
            foreach (var w in workloads)
            {
                var a = results[w]["AVX2"];
                var b = results[w]["AVX512_CORE"];
                var paired = a.Zip(b, (x, y) => x.ImagesPerSecond / y.ImagesPerSecond).Where(x => !double.IsNaN(x)).ToArray();
                string range = paired.Length > 1 ? $"[{paired.Min():F3}..{paired.Max():F3}]" : "";
                Console.WriteLine($"{w.Title,-34} {Num(Median(a.Select(m => m.ImagesPerSecond))),9} {Num(Median(b.Select(m => m.ImagesPerSecond))),9} {Ratio(Median(paired)),12} {range,15}");
            }
            return 0;
        }

        static string Describe(Workload w, Measurement m) =>
            m.ImagesPerSecond is double.NaN ? $"failed: {m.Note}" : $"{m.ImagesPerSecond,10:F1} img/s  {m.Seconds,7:F2} s  rss {m.PeakRssMb:F0} MB {m.Note}";

        static Measurement RunWorker(Workload w, string impl, Options o, string? isa = null)
        {
            var self = Environment.ProcessPath!;
            var psi = new ProcessStartInfo { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            if (Path.GetFileNameWithoutExtension(self) == "dotnet")
            {
                psi.FileName = self;
                psi.ArgumentList.Add(typeof(Suite).Assembly.Location);
            }
            else psi.FileName = self;
            foreach (var a in new[] { "--worker", w.Key, "--impl", impl, "--threads", o.Threads.ToString(CultureInfo.InvariantCulture) })
                psi.ArgumentList.Add(a);
            if (o.Quick) psi.ArgumentList.Add("--quick");
            // A value set by the user wins over ConvKit's AVX2 cap (TorchNative leaves it alone).
            if (isa is not null) psi.Environment["DNNL_MAX_CPU_ISA"] = isa;
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
            foreach (var w in workloads.Where(w => w.Kind != Kind.Epoch))
            {
                var key = (w.Model, w.Batch);
                if (!cache.TryGetValue(key, out var pr))
                {
                    pr = RunPeerOnce(w.Model, w.Batch, o);
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

        static void Print(Workload[] workloads, Dictionary<Workload, List<Measurement>> ck, Dictionary<Workload, List<Measurement>> raw,
            Dictionary<Workload, PeerResult>? peer, Options o)
        {
            Console.WriteLine();
            Console.WriteLine($"Throughput, images/s (median of {o.Repeats}; VGG-16/ResNet-50 batch 16: one run; higher is better). Ratios > 1: ConvKit faster. ConvKit/raw is the median of per-repeat paired ratios [min..max].");
            string header = $"{"workload",-34} {"ConvKit",9} {"raw TS",9} {"PyTorch",9} {"CK/raw",7} {"[min..max]",15} {"CK/PT",7}   {"RSS CK",7} {"RSS raw",7} {"RSS PT",7} (MB)";
            Console.WriteLine(header);
            Console.WriteLine(new string('-', header.Length));
            foreach (var w in workloads)
            {
                var c = ck[w];
                var r = raw[w];
                double cIps = Median(c.Select(m => m.ImagesPerSecond)), rIps = Median(r.Select(m => m.ImagesPerSecond));
                var paired = c.Zip(r, (a, b) => a.ImagesPerSecond / b.ImagesPerSecond).Where(x => !double.IsNaN(x)).ToArray();
                double pIps = double.NaN, pRss = double.NaN;
                if (peer is not null && peer.TryGetValue(w, out var pr))
                {
                    pIps = w.Kind == Kind.Train ? pr.Train : pr.Infer;
                    pRss = pr.RssMb;
                }
                string range = paired.Length > 1 ? $"[{paired.Min():F3}..{paired.Max():F3}]" : "";
                Console.WriteLine($"{w.Title,-34} {Num(cIps),9} {Num(rIps),9} {Num(pIps),9} {Ratio(Median(paired)),7} {range,15} {Ratio(cIps / pIps),7}   " +
                    $"{Num(Median(c.Select(m => m.PeakRssMb))),7} {Num(Median(r.Select(m => m.PeakRssMb))),7} {Num(pRss),7}");
            }
            Console.WriteLine();
            foreach (var w in workloads.Where(w => w.Kind == Kind.Epoch))
            {
                Console.WriteLine($"Fashion-MNIST, one epoch of lenet5 at batch {w.Batch} (60,000 images, shuffled, loss + accuracy), seconds (median):");
                Console.WriteLine($"  ConvKit: load + float conversion {Num(Median(ck[w].Select(m => Extra(m, "load"))))} s, Fit {Num(Median(ck[w].Select(m => Extra(m, "fit"))))} s, total {Num(Median(ck[w].Select(m => m.Seconds)))} s");
                Console.WriteLine($"  raw:     load + float conversion {Num(Median(raw[w].Select(m => Extra(m, "load"))))} s, loop {Num(Median(raw[w].Select(m => Extra(m, "fit"))))} s, total {Num(Median(raw[w].Select(m => m.Seconds)))} s");
                Console.WriteLine("  (both load with ConvKit.Data; PyTorch peer has no epoch workload)");
            }
            var trains = workloads.Where(w => w.Kind == Kind.Train && All.Contains(w)).ToArray();
            if (trains.Length > 0)
            {
                Console.WriteLine("Issue 3 (Fit within 5% of the raw TorchSharp loop):");
                foreach (var w in trains)
                {
                    double ratio = Median(ck[w].Zip(raw[w], (a, b) => a.ImagesPerSecond / b.ImagesPerSecond));
                    Console.WriteLine($"  {w.Title,-34} ConvKit/raw {Ratio(ratio)}  {(ratio >= 0.95 ? "ok" : "SLOWER than 5%")}");
                }
            }
            if (workloads.Any(w => w.Model is "resnet50" or "vgg16"))
            {
                Console.WriteLine("Note: ConvKit's and raw resnet50 are Keras' ResNet-50 v1 (stride in the first 1x1 conv, biased convs); PyTorch runs torchvision's");
                Console.WriteLine("      resnet50, which is v1.5 (stride in the 3x3 conv, no conv biases): similar but not identical FLOPs. VGG-16 is the same net in all three.");
            }
            Console.WriteLine("Raw TS = the same models written by hand in TorchSharp (RawTorch.cs); its training loop shuffles every epoch and accumulates");
            Console.WriteLine("loss and accuracy on the device like Fit. ConvKit trains through Model.Fit (verbose 0, SGD lr 0.01 momentum 0.9, sparse CE on logits).");
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
