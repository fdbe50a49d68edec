using System.Diagnostics;
using System.Globalization;
using ConvKit.Applications;
using ConvKit.Models;
using ConvKit.Saving;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace ConvKit.Benchmarks;

/// <summary>
/// The ONNX Runtime column: ConvKit's own ONNX export of the same model (same weights) run by an ORT session with the
/// same intra-op thread count, alternated with ConvKit's Predict in one process, outputs compared, and the median of
/// per-round paired throughput ratios (ConvKit/ORT) printed; and the machine's SGEMM peak.
/// </summary>
static class OrtBench
{
    /// <summary>An ORT session over ConvKit's export of <paramref name="model"/> with <paramref name="threads"/> intra-op threads.</summary>
    public static InferenceSession Session(Model model, int threads)
    {
        var bytes = OnnxExport.ToBytes(model);
        using var so = new SessionOptions
        {
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        return new InferenceSession(bytes, so);
    }

    /// <summary>Runs <paramref name="session"/> on NHWC float data; returns the first output's values.</summary>
    public static float[] Run(InferenceSession session, float[] data, long[] shape)
    {
        using var input = OrtValue.CreateTensorValueFromMemory(data, shape);
        using var outputs = session.Run(new RunOptions(), [session.InputNames[0]], [input], [session.OutputNames[0]]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>Paired ConvKit Predict vs ORT, prints per-round lines and a RESULT line (ips = ORT's median; note carries ConvKit's and the ratio).</summary>
    public static void Paired(Workload w, Options o)
    {
        if (w.Kind != Kind.Infer) throw new ArgumentException("--impl ort-paired is for inference workloads");
        manual_seed(0);
        var x = randn(w.Batch, w.Height, w.Width, w.Channels);
        var model = Worker.ZooModelFor(w, o);
        using var session = Session(model, o.Threads);
        var data = x.data<float>().ToArray();
        long[] shape = [w.Batch, w.Height, w.Width, w.Channels];

        // Equal outputs: ConvKit's Predict (inference plan) against ORT on the same input.
        float[] ck;
        using (var p = model.Predict(x, batchSize: w.Batch)) ck = p.data<float>().ToArray();
        var ort = Run(session, data, shape);
        double maxAbs = 0, scale = 0;
        for (int i = 0; i < ck.Length; i++)
        {
            maxAbs = Math.Max(maxAbs, Math.Abs(ck[i] - ort[i]));
            scale = Math.Max(scale, Math.Abs(ort[i]));
        }
        double maxRel = maxAbs / Math.Max(scale, 1e-12);
        if (ck.Length != ort.Length || !(maxRel < 1e-4))
            throw new InvalidOperationException($"ConvKit and ORT disagree on {w.Key}: {ck.Length} vs {ort.Length} values, max |diff|/max|y| {maxRel:E2}");

        void Ck() => model.Predict(x, batchSize: w.Batch).Dispose();
        void Ort() => Run(session, data, shape);
        // Warm-up, call by call, until each side has run for a second (and 5 calls): .NET's tiered JIT recompiles a
        // method after 30 calls, and ConvKit's Predict has more managed code on the way to the session than the bare
        // loop; a 1-call warm-up left ConvKit's first round at 0.72-0.91 of ORT where later rounds were 0.98-1.03.
        var warm = Stopwatch.StartNew();
        for (int i = 0; i < 5 || warm.Elapsed.TotalSeconds < 2; i++) { Ck(); Ort(); }
        // Short blocks, many rounds: this shared machine's speed drifts over seconds (both sides rose 20% over three
        // 2.5 s rounds in one run), which a long block turns into a ratio error.
        int rounds = Math.Max(o.Repeats, 3) * 2;
        double budget = Math.Max((o.Quick && w.QuickSeconds > 0 ? w.QuickSeconds : w.Seconds) / 4, 0.4);
        var ratios = new List<double>();
        var ckIps = new List<double>();
        var ortIps = new List<double>();
        for (int r = 0; r < rounds; r++)
        {
            double a = 0, b = 0;
            foreach (bool ckFirst in r % 2 == 0 ? new[] { true, false } : [false, true])
            {
                if (ckFirst) a = Ips(Ck, w, budget);
                else b = Ips(Ort, w, budget);
            }
            ckIps.Add(a);
            ortIps.Add(b);
            ratios.Add(a / b);
            Console.WriteLine(FormattableString.Invariant($"round {r + 1}: ConvKit {a,10:F1} img/s  ORT {b,10:F1} img/s  CK/ORT {a / b:F3}"));
        }
        double macs = ModelSummary.Of(model).TotalMacs;
        double ortMed = Median(ortIps), ckMed = Median(ckIps);
        Console.WriteLine(FormattableString.Invariant(
            $"RESULT ips={ortMed:F2} seconds={w.Batch / ortMed:F4} rss={Worker.PeakRssMbPublic():F1} note=ck_ips={ckMed:F2} ck_ort={Median(ratios):F3} ck_ort_min={ratios.Min():F3} ck_ort_max={ratios.Max():F3} maxrel={maxRel:E1} macs={macs:F0}"));
    }

    static double Ips(Action once, Workload w, double budget)
    {
        int n = 0;
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed.TotalSeconds < budget || n < Math.Max(1, w.MinIterations / 2))
        {
            once();
            n++;
        }
        return n * (double)w.Batch / sw.Elapsed.TotalSeconds;
    }

    static double Median(List<double> v)
    {
        var a = v.OrderBy(t => t).ToArray();
        return a.Length % 2 == 1 ? a[a.Length / 2] : (a[a.Length / 2 - 1] + a[a.Length / 2]) / 2;
    }

    /// <summary>
    /// The machine's measured peak: the float32 FMA peak (<see cref="FmaPeak"/>) as the RESULT, and beside it float32
    /// matrix products of 2048x2048 with libtorch's BLAS (torch.mm) on the given threads (best and median of 8).
    /// </summary>
    public static void Sgemm(Options o)
    {
        const int n = 2048;
        ConvKit.Native.TorchNative.Initialize();
        set_num_threads(o.Threads);
        manual_seed(0);
        using var a = randn(n, n);
        using var b = randn(n, n);
        for (int i = 0; i < 2; i++) a.matmul(b).Dispose();
        double best = 0;
        var all = new List<double>();
        for (int i = 0; i < 8; i++)
        {
            var sw = Stopwatch.StartNew();
            a.matmul(b).Dispose();
            double g = 2.0 * n * n * n / sw.Elapsed.TotalSeconds / 1e9;
            all.Add(g);
            best = Math.Max(best, g);
        }
        double fma = FmaPeak(o.Threads);
        Console.WriteLine(FormattableString.Invariant($"RESULT ips={fma:F2} seconds=0 rss={Worker.PeakRssMbPublic():F1} note=sgemm_n={n} sgemm_best_gflops={best:F2} sgemm_median_gflops={Median(all):F2} fma_width={FmaWidth}"));
    }

    static int FmaWidth => System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? 512 : System.Runtime.Intrinsics.X86.Fma.IsSupported ? 256 : 0;

    /// <summary>
    /// The CPU's float32 arithmetic peak on <paramref name="threads"/> threads: each runs bursts of 12 independent chains
    /// of fused multiply-adds on the widest vectors the CPU has (AVX-512 here) for 0.3 s, enough chains to hide the FMA
    /// latency on two ports; best of 3. (libtorch's 2048x2048 SGEMM, the suite's earlier "peak", measured 123-196 GFLOP/s
    /// on this machine, below what oneDNN's convolutions reach, so it is no peak; this loop gives ~228 on 2 threads.)
    /// </summary>
    static double FmaPeak(int threads)
    {
        double best = 0;
        for (int round = 0; round < 3; round++)
        {
            var flops = new double[threads];
            using var start = new Barrier(threads);
            var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
            {
                start.SignalAndWait();
                flops[t] = FmaLoop(TimeSpan.FromMilliseconds(300));
            })).ToArray();
            var sw = Stopwatch.StartNew();
            foreach (var w in workers) w.Start();
            foreach (var w in workers) w.Join();
            best = Math.Max(best, flops.Sum() / sw.Elapsed.TotalSeconds / 1e9);
        }
        return best;
    }

    // 12 chains of 4096 dependent FMAs each, in a method with no call inside so that the JIT keeps the 12 vectors in
    // registers (every vector register is caller-saved in the SysV ABI: a call in the loop, such as reading a
    // Stopwatch, made it keep them in memory, and the loop ran at a quarter of one FMA per cycle). Optimized from the
    // first call: tier-0 code keeps every local in memory.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization | System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    static float Burst512(float seed)
    {
        var a = System.Runtime.Intrinsics.Vector512.Create(0.999999f);
        var b = System.Runtime.Intrinsics.Vector512.Create(1e-7f);
        var c0 = System.Runtime.Intrinsics.Vector512.Create(seed); var c1 = c0 + b; var c2 = c1 + b; var c3 = c2 + b;
        var c4 = c3 + b; var c5 = c4 + b; var c6 = c5 + b; var c7 = c6 + b; var c8 = c7 + b; var c9 = c8 + b; var c10 = c9 + b; var c11 = c10 + b;
        for (int k = 0; k < 4096; k++)
        {
            c0 = System.Runtime.Intrinsics.X86.Avx512F.FusedMultiplyAdd(c0, a, b); c1 = System.Runtime.Intrinsics.X86.Avx512F.FusedMultiplyAdd(c1, a, b);
            c2 = System.Runtime.Intrinsics.X86.Avx512F.FusedMultiplyAdd(c2, a, b); c3 = System.Runtime.Intrinsics.X86.Avx512F.FusedMultiplyAdd(c3, a, b);
            c4 = System.Runtime.Intrinsics.X86.Avx512F.FusedMultiplyAdd(c4, a, b); c5 = System.Runtime.Intrinsics.X86.Avx512F.FusedMultiplyAdd(c5, a, b);
            c6 = System.Runtime.Intrinsics.X86.Avx512F.FusedMultiplyAdd(c6, a, b); c7 = System.Runtime.Intrinsics.X86.Avx512F.FusedMultiplyAdd(c7, a, b);
            c8 = System.Runtime.Intrinsics.X86.Avx512F.FusedMultiplyAdd(c8, a, b); c9 = System.Runtime.Intrinsics.X86.Avx512F.FusedMultiplyAdd(c9, a, b);
            c10 = System.Runtime.Intrinsics.X86.Avx512F.FusedMultiplyAdd(c10, a, b); c11 = System.Runtime.Intrinsics.X86.Avx512F.FusedMultiplyAdd(c11, a, b);
        }
        return System.Runtime.Intrinsics.Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization | System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    static float Burst256(float seed)
    {
        var a = System.Runtime.Intrinsics.Vector256.Create(0.999999f);
        var b = System.Runtime.Intrinsics.Vector256.Create(1e-7f);
        var c0 = System.Runtime.Intrinsics.Vector256.Create(seed); var c1 = c0 + b; var c2 = c1 + b; var c3 = c2 + b;
        var c4 = c3 + b; var c5 = c4 + b; var c6 = c5 + b; var c7 = c6 + b; var c8 = c7 + b; var c9 = c8 + b; var c10 = c9 + b; var c11 = c10 + b;
        for (int k = 0; k < 4096; k++)
        {
            c0 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(c0, a, b); c1 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(c1, a, b);
            c2 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(c2, a, b); c3 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(c3, a, b);
            c4 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(c4, a, b); c5 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(c5, a, b);
            c6 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(c6, a, b); c7 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(c7, a, b);
            c8 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(c8, a, b); c9 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(c9, a, b);
            c10 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(c10, a, b); c11 = System.Runtime.Intrinsics.X86.Fma.MultiplyAdd(c11, a, b);
        }
        return System.Runtime.Intrinsics.Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }

    // Floating-point operations done (2 per lane per FMA) in about `duration` of bursts.
    static double FmaLoop(TimeSpan duration)
    {
        bool wide = System.Runtime.Intrinsics.X86.Avx512F.IsSupported;
        if (!wide && !System.Runtime.Intrinsics.X86.Fma.IsSupported) return 0;
        long bursts = 0;
        float sink = 0;
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < duration)
        {
            for (int i = 0; i < 64; i++) sink += wide ? Burst512(sink * 1e-9f + 0.5f) : Burst256(sink * 1e-9f + 0.5f);
            bursts += 64;
        }
        if (float.IsNaN(sink)) Console.Error.Write(""); // keeps the result live
        return bursts * 4096.0 * 12 * (wide ? 16 : 8) * 2;
    }
}
