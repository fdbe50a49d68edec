using System.Diagnostics;
using Xunit.Abstractions;
using ConvKit.Applications;
using ConvKit.Models;
using ConvKit.Saving;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

/// <summary>
/// Generates full-size reference models with Fixtures/make_import_fixtures.py once per run (too big to commit: VGG-16
/// alone is 138M weights) into a temporary directory. Needs Debian's /usr/bin/python3 with python3-torch,
/// python3-torchvision, python3-h5py and python3-numpy; without them the tests fail and say so.
/// </summary>
public sealed class GeneratedImportFixtures : IDisposable
{
    public const string Python = "/usr/bin/python3";

    public GeneratedImportFixtures()
    {
        Dir = Path.Combine(Path.GetTempPath(), "convkit-import-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(Dir);
        var script = Path.Combine(AppContext.BaseDirectory, "Fixtures", "make_import_fixtures.py");
        Error = Run(script, "--full") ?? Run(script, "--torchvision");
    }

    string? Run(string script, string mode)
    {
        if (!File.Exists(Python)) return $"{Python} is missing: install python3 python3-torch python3-torchvision python3-h5py python3-numpy.";
        var psi = new ProcessStartInfo(Python) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { script, mode, Dir }) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        Log += p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return p.ExitCode == 0 ? null
            : $"{Python} {Path.GetFileName(script)} {mode} failed (exit {p.ExitCode}); it needs python3-torch python3-torchvision python3-h5py python3-numpy:\n{stderr.Result}";
    }

    public string Dir { get; }

    public string? Error { get; }

    public string Log { get; private set; } = "";

    public string File_(string name)
    {
        Assert.True(Error is null, Error);
        return Path.Combine(Dir, name);
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

[Trait("Category", "Slow")]
[Collection(nameof(FullModelImportTests))] // one generator run; big models one at a time
[CollectionDefinition(nameof(FullModelImportTests), DisableParallelization = true)]
public class FullModelImportTests(GeneratedImportFixtures fx, ITestOutputHelper log) : IClassFixture<GeneratedImportFixtures>
{
    [Theory]
    [InlineData("vgg16", 32)]      // Flatten of 1x1x512 into fc1
    [InlineData("resnet50", 64)]
    public void KerasApplicationsModelsMatchTheReference(string name, int size)
    {
        // Logits: FP32 is checked relative to their scale (max |logit| or 1, whichever is larger).
        using var model = ModelRegistry.Create(name, new ModelOptions
        {
            InputShape = (size, size, 3), ClassifierActivation = null, Weights = fx.File_(name + ".h5"),
        });
        double diff = KerasImportTests.MaxAbsDiff(model, fx.File_(name + "_io.safetensors"), relative: true);
        log.WriteLine($"{name}: max abs difference / max(1, max |reference|) {diff:g3}");
        // ResNet-50's 50 layers of seeded random weights accumulate FP32 rounding: on this machine 1.04e-4 with oneDNN's
        // AVX-512 channels-last kernels, 9.8e-5 under AVX2, PyTorch 1.13's own FP32 4.0e-5 (same weights, same float64
        // reference). The bound leaves room for the kernels' rounding; the mapping is checked exactly in float64 below.
        double bound = name == "resnet50" ? 2e-4 : KerasImportTests.Tolerance;
        Assert.True(diff < bound, $"{name}: max abs difference / max(1, max |reference|) {diff:g3}");
        // The mapping itself, free of FP32 rounding.
        double diff64 = MaxAbsDiff64(model, fx.File_(name + "_io.safetensors"));
        log.WriteLine($"{name} (float64): max abs difference {diff64:g3}");
        Assert.True(diff64 < 1e-5, $"{name} (float64): max abs difference {diff64:g3}");
    }

    [Fact]
    public void InceptionV3MatchesTheReferenceInFloat64()
    {
        // At 75x75 the last modules run on 3x3 and 1x1 maps with BN statistics from a 2-sample batch: random weights
        // make that chain ill-conditioned, so FP32 rounding alone moves the output by ~1e-3. In float64 the mapping is
        // checked exactly (the logits are stored as float32, hence 1e-5).
        using var model = ModelRegistry.Create("inception_v3", new ModelOptions
        {
            InputShape = (75, 75, 3), ClassifierActivation = null, Weights = fx.File_("inception_v3.h5"),
        });
        double diff = MaxAbsDiff64(model, fx.File_("inception_v3_io.safetensors"));
        log.WriteLine($"inception_v3 (float64): max abs difference {diff:g3}");
        Assert.True(diff < 1e-5, $"inception_v3 (float64): max abs difference {diff:g3}");
    }

    /// <summary>Converts the model to float64 and returns the max absolute difference to the reference.</summary>
    static double MaxAbsDiff64(Model model, string ioPath)
    {
        model.to(float64);
        model.eval();
        using var io = SafeTensors.Read(ioPath);
        using var _ = no_grad();
        using var x = io.Get("input").to(float64);
        using var expected = io.Get("output").to(float64);
        using var y = Layout.ToKeras(model.Forward([Layout.FromKeras(x)])[0]);
        return (y - expected).abs().max().item<double>();
    }

    [Theory]
    [InlineData("resnet50", 64)]
    public void TorchvisionModelsMatchTheReference(string name, int size)
    {
        using var model = ModelRegistry.Create(name + "_tv", new ModelOptions
        {
            InputShape = (size, size, 3), ClassifierActivation = null, Weights = fx.File_(name + "_tv.safetensors"),
        });
        // Logits reach |7.5|: FP32 is checked relative to their scale, the mapping exactly in float64.
        double diff = KerasImportTests.MaxAbsDiff(model, fx.File_(name + "_tv_io.safetensors"), relative: true);
        Assert.True(diff < KerasImportTests.Tolerance, $"{name}_tv: max abs difference / max |reference| = {diff:g3}");
        double diff64 = MaxAbsDiff64(model, fx.File_(name + "_tv_io.safetensors"));
        log.WriteLine($"{name}_tv: FP32 max abs difference / max(1, max |reference|) {diff:g3}; float64 {diff64:g3}");
        Assert.True(diff64 < 1e-5, $"{name}_tv (float64): max abs difference {diff64:g3}");
    }
}
