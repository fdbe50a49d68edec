using System.Diagnostics;
using ConvKit.Native;
using ConvKit.Tests.Saving;
using static TorchSharp.torch;

namespace ConvKit.Tests.Native;

public class TorchNativeTests
{
    [Fact]
    public void TensorOpAndBackwardRunInTheTestProcess()
    {
        var x = tensor(new float[] { 1, -2, 3 }, requires_grad: true);
        var y = (x * x).sum();
        y.backward();
        Assert.Equal(new float[] { 2, -4, 6 }, x.grad!.data<float>().ToArray());
        Assert.DoesNotContain("not initialized", TorchNative.Status);
    }

    [Fact]
    public void PatcherMarksOnlyTheNamedVersionWeak()
    {
        var shim = FindShipped();
        var bytes = File.ReadAllBytes(shim);
        var copy = (byte[])bytes.Clone();
        bool needsIt = ElfVersionPatcher.MakeVersionNeedWeak(copy, "GLIBCXX_3.4.32");
        Assert.True(needsIt, "TorchSharp 0.107's shim asks for GLIBCXX_3.4.32");
        int changed = bytes.Zip(copy).Count(p => p.First != p.Second);
        Assert.Equal(1, changed); // one flags byte
        Assert.False(ElfVersionPatcher.MakeVersionNeedWeak((byte[])bytes.Clone(), "GLIBCXX_9.9.99"));
    }

    [Fact]
    public void PatcherRejectsNonElfInput()
    {
        Assert.Throws<BadImageFormatException>(() => ElfVersionPatcher.MakeVersionNeedWeak(new byte[100], "X"));
        var truncated = File.ReadAllBytes(FindShipped())[..4096];
        Assert.Throws<BadImageFormatException>(() => ElfVersionPatcher.MakeVersionNeedWeak(truncated, "GLIBCXX_3.4.32"));
    }

    static string FindShipped() =>
        Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
}

/// <summary>
/// Regression tests for libtorch 2.10's wrong and crashing float32 CPU convolutions (see VerifiedConvolution). On this
/// project's machine (AVX-512), before ConvKit's fix: the first two shapes gave wrong outputs in 10 of 10 runs (errors
/// 15-30% of the output range), the next two wrong input gradients in 9-20 of 20 runs, the 1x1 ones with 37 and 40
/// filters wrong outputs (40-70%), the grouped 2->14 one wrong outputs and input gradients, and 512->1024 1x1 on 14x14
/// killed the process (SIGFPE).
/// </summary>
public class ConvolutionCorrectnessTests
{
    public static TheoryData<int, int, int, int, int, int, int> Shapes => new()
    {
        // batch, in channels, out channels, size, kernel, stride, groups
        { 2, 31, 31, 8, 3, 1, 1 },
        { 32, 24, 24, 16, 3, 1, 1 },
        { 2, 16, 15, 8, 3, 1, 1 },
        { 2, 15, 15, 8, 3, 1, 1 },
        { 8, 30, 30, 9, 3, 2, 2 },
        { 8, 24, 40, 15, 1, 2, 1 },
        { 2, 32, 37, 10, 1, 1, 1 },
        { 8, 2, 14, 6, 3, 1, 2 },
        { 2, 16, 48, 5, 3, 1, 1 },
        { 1, 512, 1024, 14, 1, 1, 1 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ConvolutionOutputAndGradientsMatchFloat64(int n, int cin, int cout, int size, int k, int stride, int groups)
    {
        set_num_threads(2);
        var gen = new Generator(11);
        using var w = randn(cout, cin / groups, k, k, generator: gen);
        using var x = randn(n, cin, size, size, generator: gen); // plain NCHW memory, the case libtorch gets wrong
        using var probe0 = Ops.Conv2D(x, w, [stride, stride], "same", groups: groups);
        using var probe = randn(probe0.shape, generator: gen);
        using var xd = x.to_type(ScalarType.Float64).requires_grad_();
        using var wd = w.to_type(ScalarType.Float64).requires_grad_();
        using var yd = Ops.Conv2D(xd, wd, [stride, stride], "same", groups: groups);
        (yd * probe.to_type(ScalarType.Float64)).sum().backward();
        for (int trial = 0; trial < 5; trial++)
        {
            using var scope = NewDisposeScope();
            using (no_grad())
            {
                AssertClose(yd.detach(), Ops.Conv2D(x, w, [stride, stride], "same", groups: groups), $"inference output, trial {trial}");
                // The inference plan of bottleneck networks convolves on NCHW memory: checked on its own.
                using (VerifiedConvolution.ChannelsFirst())
                    AssertClose(yd.detach(), Ops.Conv2D(x, w, [stride, stride], "same", groups: groups), $"inference output on NCHW memory, trial {trial}");
            }
            var xi = x.detach().clone().requires_grad_();
            var wi = w.detach().clone().requires_grad_();
            var y = Ops.Conv2D(xi, wi, [stride, stride], "same", groups: groups);
            (y * probe).sum().backward();
            AssertClose(yd, y, $"output, trial {trial}");
            AssertClose(xd.grad!, xi.grad!, $"input gradient, trial {trial}");
            AssertClose(wd.grad!, wi.grad!, $"filter gradient, trial {trial}");
        }
    }

    [Fact]
    public void ReferenceFormulationMatchesFloat64Convolution()
    {
        var gen = new Generator(5);
        foreach (var (cin, cout, k, s, p, d, g) in new[] { (6, 8, 3, 1, 1, 1, 1), (6, 9, 3, 2, 0, 1, 3), (4, 4, 3, 1, 2, 2, 4), (3, 5, 5, 2, 2, 1, 1) })
        {
            using var scope = NewDisposeScope();
            var x = randn([2, cin, 11, 9], generator: gen, dtype: ScalarType.Float64);
            var w = randn([cout, cin / g, k, k], generator: gen, dtype: ScalarType.Float64);
            var b = randn([cout], generator: gen, dtype: ScalarType.Float64);
            var expected = TorchSharp.torch.nn.functional.conv2d(x, w, b, [s, s], [p, p], [d, d], g);
            var actual = VerifiedConvolution.Reference(x, w, b, [s, s], [p, p], [d, d], g);
            Assert.Equal(expected.shape, actual.shape);
            AssertClose(expected, actual, $"{cin}->{cout} k{k} s{s} p{p} d{d} g{g}");
        }
    }

    static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        double scale = expected.abs().max().item<double>();
        double err = (actual.to_type(ScalarType.Float64) - expected).abs().max().item<double>() / scale;
        Assert.True(err < 1e-5, $"{what} off by {err:G3} of its range");
    }
}

public class MallocTuningTests
{
    [Fact]
    public void GlibcMallocIsTunedUnlessTheUserTunedIt()
    {
        TorchNative.Initialize();
        if (!OperatingSystem.IsLinux() || TorchNative.MallocTuningDeclined()) Assert.Null(TorchNative.MallocTuning);
        else Assert.Equal("glibc malloc: mmap threshold 32 MiB, trim threshold 256 MiB", TorchNative.MallocTuning);
    }
}

public class OpenMpTuningTests
{
    // Child processes: ConvKit decides once, when it is first used, before libtorch (and its libgomp) loads.
    [Theory]
    [InlineData(null, null, "OpenMpTuning=libgomp: GOMP_SPINCOUNT=1000 (idle threads sleep soon instead of spinning); C environment GOMP_SPINCOUNT=1000")]
    [InlineData("OMP_WAIT_POLICY", "ACTIVE", "OpenMpTuning=null; C environment GOMP_SPINCOUNT=null")]
    [InlineData("GOMP_SPINCOUNT", "300000", "OpenMpTuning=null; C environment GOMP_SPINCOUNT=300000")]
    [InlineData("CONVKIT_OMP_TUNING", "0", "OpenMpTuning=null; C environment GOMP_SPINCOUNT=null")]
    public void LibgompSpinningIsShortenedUnlessTheUserChose(string? variable, string? value, string expected)
    {
        if (!OperatingSystem.IsLinux()) return;
        var psi = KillHelperProcess.StartInfo(["omp-tuning"]);
        foreach (var name in new[] { "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "CONVKIT_OMP_TUNING" }) psi.Environment.Remove(name);
        if (variable is not null) psi.Environment[variable] = value;
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd();
        string error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, error);
        Assert.Equal(expected, output.Trim());
    }
}
