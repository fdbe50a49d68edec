using TorchSharp;
using System.Diagnostics;
using ConvKit.Formats.Onnx;
using ConvKit.Layers;
using ConvKit.Models;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ConvKit.Tests.Formats.Onnx;

/// <summary>
/// ML.NET's real ImageNet ResNet-18 (NuGet Microsoft.ML.DnnImageFeaturizer.ResNet18 0.24.0: a CNTK export, opset 8,
/// 1x3x224x224 -> 512x1x1 after a 7x7 average pooling) and its preprocessing graph (a 224x224 mean-image subtraction),
/// fetched by restoring Fixtures/ResNet18Package (a test-only restore; ConvKit never references the package).
/// </summary>
public class OnnxPretrainedResNet18Tests(ITestOutputHelper log)
{
    static readonly Lazy<(string Backbone, string Preprocess)> Files = new(Locate);

    static (string, string) Locate()
    {
        var packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var root = Path.Combine(packages, "microsoft.ml.dnnimagefeaturizer.resnet18", "0.24.0", "tools", "DnnImageModels");
        var backbone = Path.Combine(root, "ResNet18Onnx", "ResNet18.onnx");
        var preprocess = Path.Combine(root, "ResNetPrepOnnx", "ResNetPreprocess.onnx");
        if (!File.Exists(backbone))
        {
            var proj = Path.Combine(AppContext.BaseDirectory, "Fixtures", "ResNet18Package", "ResNet18Package.proj");
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in new[] { "restore", proj }) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0 && File.Exists(backbone), $"restoring Microsoft.ML.DnnImageFeaturizer.ResNet18 failed:\n{output}");
        }
        return (backbone, preprocess);
    }

    static Tensor Image()
    {
        // A smooth synthetic photo-like image in 0..255 (the preprocessing expects raw pixel values).
        var g = new Generator(11);
        using var small = rand([1, 3, 14, 14], generator: g);
        using var up = nn.functional.interpolate(small, [224, 224], mode: InterpolationMode.Bilinear, align_corners: false);
        using var s = 255.0.ToScalar();
        return up.mul(s);
    }

    [Fact]
    public void TheRealResNet18AndItsPreprocessingImportAndMatchOnnxRuntime()
    {
        var (backbonePath, preprocessPath) = Files.Value;
        var watch = Stopwatch.StartNew();
        var backbone = OnnxImport.Import(backbonePath);
        log.WriteLine($"ResNet18.onnx: producer '{backbone.Producer}', opset {backbone.Opset}, {backbone.Model.CountParams():N0} params, import {watch.Elapsed.TotalSeconds:F2} s");
        using var net = backbone.Model;
        using var prep = OnnxImport.Load(preprocessPath);
        using var x = Image();
        using var prepared = prep.Apply(x);
        double prepError = OnnxImportTests.RelativeError(prepared, OnnxImportTests.RunOrt(preprocessPath, x));
        using var features = net.Apply(prepared);
        Assert.Equal(new long[] { 1, 512, 1, 1 }, features.shape);
        double error = OnnxImportTests.RelativeError(features, OnnxImportTests.RunOrt(backbonePath, prepared));
        log.WriteLine($"max relative error vs ORT: preprocessing {prepError:E2}, backbone {error:E2}");
        Assert.True(prepError <= 1e-4, $"preprocessing: {prepError}");
        Assert.True(error <= 1e-4, $"backbone: {error}");
    }

    [Fact]
    [Trait("Category", "Slow")] // two imports of the 64 MB file
    public void AFreeBatchAndGlobalPoolingLetTheFixedGraphTakeOtherSizes()
    {
        var (backbonePath, _) = Files.Value;
        using var fixedSize = OnnxImport.Load(backbonePath);
        Assert.Contains(fixedSize.Layers, l => l is AveragePooling2D);
        using var flexible = OnnxImport.Load(backbonePath, new OnnxImportOptions { InputShape = (160, 160, 3), GlobalPoolingForFullWindow = true });
        Assert.DoesNotContain(flexible.Layers, l => l is AveragePooling2D);
        Assert.Contains(flexible.Layers, l => l is GlobalAveragePooling2D);
        using var x = rand(3, 160, 160, 3);
        using var y = flexible.Predict(x);
        Assert.Equal(new long[] { 3, 1, 1, 512 }, y.shape); // Predict answers channels-last
    }
}
