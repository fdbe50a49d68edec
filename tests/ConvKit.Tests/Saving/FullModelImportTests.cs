// These tests exercise the obsolete loader entry points, which forward to Model.LoadWeights(path, format, options).
#pragma warning disable CS0618
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

/// <summary>Big models one at a time. A definition class of its own: on the test class itself, xunit never disposed
/// the class fixture, and every run left its ~1.4 GB of generated models in the temporary folder.</summary>
[CollectionDefinition(nameof(FullModelImportTests), DisableParallelization = true)]
public class FullModelImportCollection;

[Trait("Category", "Slow")]
[Collection(nameof(FullModelImportTests))] // one generator run; big models one at a time
public class FullModelImportTests(GeneratedImportFixtures fx, ITestOutputHelper log) : IClassFixture<GeneratedImportFixtures>
{
    [Theory]
    [InlineData("vgg16", 32)]         // Flatten of 1x1x512 into fc1
    [InlineData("googlenet", 224)]    // seed 002's, Keras' automatic layer names
    [InlineData("resnet50", 224)]
    [InlineData("inception_v3", 299)] // mixed8-10 on 8x8 maps
    public void KerasApplicationsModelsMatchTheReference(string name, int size)
    {
        // Issue #5: FP32 logits within 1e-4 (max abs) of the float64 reference. The seeded random networks (BN
        // statistics from calibration images, see the generator) run at their native sizes; ResNet-50 and Inception
        // v3 meet it with a margin of 1.5 or more (ConvKit 5.2e-5 to 6.5e-5 across runs and with Predict's BN folding,
        // PyTorch 1.13's FP32 7.0e-5 and 7.1e-5 on the same weights). At 64x64 and 139x139 FP32 rounding alone, in
        // ConvKit and PyTorch alike, exceeds 1e-4.
        using var model = ModelRegistry.Create(name, new ModelOptions
        {
            InputShape = (size, size, 3), ClassifierActivation = null, Weights = fx.File_(name + ".h5"),
        });
        var io = fx.File_(name + "_io.safetensors");
        double diff = KerasImportTests.MaxAbsDiff(model, io);
        // The mapping itself, free of FP32 rounding (the reference logits are stored as float32, hence 1e-5).
        double diff64 = MaxAbsDiff64(model, io);
        log.WriteLine($"{name}: max abs difference FP32 {diff:g3}, float64 {diff64:g3}, on logits up to {MaxAbs(io):g3}");
        Assert.True(diff < KerasImportTests.Tolerance, $"{name}: FP32 max abs difference {diff:g3}");
        Assert.True(diff64 < 1e-5, $"{name} (float64): max abs difference {diff64:g3}");
    }

    static double MaxAbs(string ioPath)
    {
        using var io = SafeTensors.Read(ioPath);
        using var output = io.Get("output");
        return output.abs().max().item<float>();
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
    [InlineData("resnet50", 224, 224)] // native size (at 64x64 the FP32 rounding of any implementation exceeds 1e-4, see the Keras test)
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
        Assert.True(abs < KerasImportTests.Tolerance, $"{name}_tv: FP32 max abs difference {abs:g3} (max |logit| {scale:g3})");
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

}
