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
        for (int i = 0; i < (w.Height >= 224 ? 1 : 2); i++) { Ck(); Ort(); }
        int rounds = Math.Max(o.Repeats, 3);
        double budget = Math.Max((o.Quick && w.QuickSeconds > 0 ? w.QuickSeconds : w.Seconds) / 2, 0.5);
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
    /// The machine's measured peak: float32 matrix products of 2048x2048 with libtorch's BLAS (oneDNN/MKL path of
    /// torch.mm) on the given threads; prints <c>RESULT gflops=…</c> (the best of several timed products).
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
        Console.WriteLine(FormattableString.Invariant($"RESULT ips={best:F2} seconds=0 rss={Worker.PeakRssMbPublic():F1} note=sgemm_n={n} median_gflops={Median(all):F2}"));
    }
}
