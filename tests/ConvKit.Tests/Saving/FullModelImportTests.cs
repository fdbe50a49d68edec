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
    [InlineData("resnet50", 64, 64)]
    [InlineData("alexnet", 255, 223)]   // adaptive pooling 7x6 -> 6x6: overlapping windows along height, identity along width
    [InlineData("vgg16", 128, 96)]      // adaptive pooling 4x3 -> 7x7: overlapping windows and repeated cells
    [InlineData("googlenet", 83, 79)]   // ceil-mode poolings that pad and that do not; aux1/aux2 in the file, ignored
    [InlineData("inception_v3", 139, 139)] // AuxLogits in the file, ignored; 3x3 maps in Mixed_7b/7c
    public void TorchvisionModelsMatchTheReference(string name, int height, int width)
    {
        using var model = ModelRegistry.Create(name + "_tv", new ModelOptions
        {
            InputShape = (height, width, 3), ClassifierActivation = null, Weights = fx.File_(name + "_tv.safetensors"),
        });
        var io = fx.File_(name + "_tv_io.safetensors");
        // Logits of a trained classifier's spread (the generator scales the last layer to a standard deviation of 3).
        double abs = KerasImportTests.MaxAbsDiff(model, io), scale = MaxAbs(io);
        double diff64 = MaxAbsDiff64(model, io);
        log.WriteLine($"{name}_tv at {height}x{width}: FP32 max abs difference {abs:g3} (max |logit| {scale:g3}, relative {abs / scale:g3}); float64 {diff64:g3}");
        // ResNet-50's 50 layers accumulate FP32 rounding past 1e-4 on its |7.5| logits (see the Keras test above): relative there.
        double bound = name == "resnet50" ? KerasImportTests.Tolerance * Math.Max(1, scale) : KerasImportTests.Tolerance;
        Assert.True(abs < bound, $"{name}_tv: FP32 max abs difference {abs:g3} (max |logit| {scale:g3})");
        Assert.True(diff64 < 1e-5, $"{name}_tv (float64): max abs difference {diff64:g3}");
    }

    [Fact]
    public void APyTorchLeNet5LoadsOntoTheZooModelWithAnExplicitKeyMapping()
    {
        // The generator's TorchLeNet5 names its modules conv1, conv2, fc1, fc2, fc3; the zoo's lenet5 has Keras' names.
        var torchName = new Dictionary<string, string>
        {
            ["conv2d"] = "conv1", ["conv2d_1"] = "conv2", ["dense"] = "fc1", ["dense_1"] = "fc2", ["dense_2"] = "fc3",
        };
        using var model = ModelRegistry.Create("lenet5", new ModelOptions { ClassifierActivation = null });
        var result = model.LoadTorchvisionWeights(fx.File_("lenet5_torch.safetensors"), keyOf: name => torchName[name]);
        Assert.Equal((5, 10), (result.LayersLoaded, result.WeightsLoaded));
        var io = fx.File_("lenet5_torch_io.safetensors");
        double abs = KerasImportTests.MaxAbsDiff(model, io), diff64 = MaxAbsDiff64(model, io);
        log.WriteLine($"lenet5 (PyTorch): FP32 max abs difference {abs:g3} (max |logit| {MaxAbs(io):g3}); float64 {diff64:g3}");
        Assert.True(abs < KerasImportTests.Tolerance, $"lenet5 (PyTorch): FP32 max abs difference {abs:g3}");
        Assert.True(diff64 < 1e-5, $"lenet5 (PyTorch, float64): max abs difference {diff64:g3}");
    }

    static double MaxAbs(string ioPath)
    {
        using var io = SafeTensors.Read(ioPath);
        using var y = io.Get("output");
        return y.abs().max().item<float>();
    }
}
