using System.Diagnostics;
using System.Text.Json;
using ConvKit.Applications;
using ConvKit.Formats.Onnx;
using ConvKit.Layers;
using ConvKit.Models;
using Microsoft.ML.OnnxRuntime;
using DenseTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ConvKit.Tests.Formats.Onnx;

/// <summary>
/// torchvision classifiers exported to ONNX once per run by Fixtures/make_onnx_fixtures.py (Debian's python3-torch
/// 1.13), seeded random weights, batch normalization kept (TrainingMode.PRESERVE, no constant folding).
/// </summary>
public sealed class OnnxFixtures : IDisposable
{
    public const string Python = "/usr/bin/python3";

    /// <summary>Models of the fast tests, at a small input size.</summary>
    public static readonly string[] Fast = ["resnet18:64", "mobilenet_v2_folded:64", "squeezenet1_1:64", "mobilenet_v2:64", "googlenet:64", "squeezenet1_1:64:9", "mnasnet0_5:64:11"];

    readonly Dictionary<string, string?> made = [];

    public OnnxFixtures()
    {
        Dir = Path.Combine(Path.GetTempPath(), "convkit-onnx-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(Dir);
        Error = Make(Fast);
    }

    public string Dir { get; }

    public string? Error { get; }

    /// <summary>Runs the generator for <paramref name="specs"/>; null on success, else the reason.</summary>
    public string? Make(params string[] specs)
    {
        if (!File.Exists(Python)) return $"{Python} is missing: install python3-torch python3-torchvision.";
        var script = Path.Combine(AppContext.BaseDirectory, "Fixtures", "make_onnx_fixtures.py");
        var psi = new ProcessStartInfo(Python) { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add(script);
        psi.ArgumentList.Add(Dir);
        foreach (var s in specs) psi.ArgumentList.Add(s);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return p.ExitCode == 0 ? null : $"make_onnx_fixtures.py failed (exit {p.ExitCode}); it needs python3-torch and python3-torchvision:\n{stderr.Result}";
    }

    public string Path_(string tag, string ext)
    {
        Assert.True(Error is null, Error);
        return Path.Combine(Dir, tag + ext);
    }

    public void Dispose()
    {
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

public class OnnxImportTests(OnnxFixtures fx, ITestOutputHelper log) : IClassFixture<OnnxFixtures>
{
    static Tensor ReadFloats(string path, long[] shape)
    {
        var bytes = File.ReadAllBytes(path);
        var v = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, v, 0, bytes.Length);
        return tensor(v, shape);
    }

    (Tensor X, Tensor Torch) Reference(string tag)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(fx.Path_(tag, ".json")));
        long[] Shape(string k) => json.RootElement.GetProperty(k).EnumerateArray().Select(e => e.GetInt64()).ToArray();
        return (ReadFloats(fx.Path_(tag, ".input.bin"), Shape("input")), ReadFloats(fx.Path_(tag, ".torch.bin"), Shape("output")));
    }

    /// <summary>ONNX Runtime's output of the file on an NCHW batch.</summary>
    internal static float[] RunOrt(string path, Tensor nchw)
    {
        using var session = new InferenceSession(path);
        var data = nchw.contiguous().data<float>().ToArray();
        var input = new DenseTensor(data, nchw.shape.Select(d => (int)d).ToArray());
        var name = session.InputMetadata.Keys.First();
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(name, input)]);
        return results.First().AsEnumerable<float>().ToArray();
    }

    internal static double RelativeError(Tensor a, float[] b)
    {
        using var bt = tensor(b);
        using var af = a.flatten();
        Assert.Equal(bt.shape[0], af.shape[0]);
        using var diff = (af - bt).abs().max();
        using var scale = bt.abs().max();
        return diff.item<float>() / scale.item<float>();
    }

    [Theory]
    [InlineData("resnet18")]
    [InlineData("mobilenet_v2_folded")]
    [InlineData("squeezenet1_1")]
    [InlineData("mobilenet_v2")]
    [InlineData("googlenet")]
    [InlineData("squeezenet1_1_op9")]
    [InlineData("mnasnet0_5_op11")]
    public void ImportedTorchvisionModelMatchesOnnxRuntimeAndPyTorch(string tag)
    {
        var path = fx.Path_(tag, ".onnx");
        var (x, expected) = Reference(tag);
        using var _x = x;
        using var _e = expected;
        var watch = Stopwatch.StartNew();
        var result = OnnxImport.Import(path);
        using var model = result.Model;
        var importTime = watch.Elapsed;
        using var nhwc = x.permute(0, 2, 3, 1).contiguous();
        using var y = model.Predict(nhwc);
        double vsTorch = RelativeError(y, expected.flatten().data<float>().ToArray());
        double vsOrt = RelativeError(y, RunOrt(path, x));
        log.WriteLine($"{tag}: opset {result.Opset}, {model.CountParams():N0} params, import {importTime.TotalSeconds:F2} s, max rel error vs ORT {vsOrt:E2}, vs PyTorch {vsTorch:E2}");
        Assert.True(vsOrt <= 1e-4, $"{tag}: relative error vs ONNX Runtime {vsOrt}");
        Assert.True(vsTorch <= 1e-4, $"{tag}: relative error vs PyTorch {vsTorch}");
    }

    [Fact]
    public void BatchNormalizationIsKeptByPreserveExportsAndAFoldedGraphIsWarnedAbout()
    {
        var kept = OnnxImport.Import(fx.Path_("resnet18", ".onnx"));
        using (kept.Model)
        {
            Assert.Equal(20, kept.Model.Layers.OfType<BatchNormalization>().Count());
            Assert.Empty(kept.Warnings);
        }
        var folded = OnnxImport.Import(fx.Path_("mobilenet_v2_folded", ".onnx"));
        using (folded.Model)
        {
            Assert.Empty(folded.Model.Layers.OfType<BatchNormalization>());
            Assert.Contains(folded.Warnings, w => w.Contains("BatchNormalization") && w.Contains("TrainingMode.PRESERVE"));
        }
    }

    [Fact]
    public void InitializerNamesMapToTheWeightsTheyBecame()
    {
        var result = OnnxImport.Import(fx.Path_("resnet18", ".onnx"));
        using var model = result.Model;
        Assert.True(result.WeightNames.TryGetValue("conv1.weight", out var conv1), string.Join(", ", result.WeightNames.Keys.Take(10)));
        Assert.True(result.WeightNames.TryGetValue("fc.bias", out _));
        var (layerName, weightName) = (conv1!.Split('/')[0], conv1.Split('/')[1]);
        var w = model.GetLayer(layerName).OwnWeights.Single(o => o.Name == weightName);
        Assert.Equal(new long[] { 64, 3, 7, 7 }, w.Value.shape);
        // Every weight of the model came from an initializer.
        Assert.Equal(model.Weights.Count(), result.WeightNames.Count);
    }

    [Fact]
    public void GradientsReachEveryImportedWeightAndChannelsFirstApplyEqualsPredict()
    {
        using var model = OnnxImport.Load(fx.Path_("mobilenet_v2", ".onnx"));
        using var x = randn(2, 3, 64, 64);
        using var nhwc = x.permute(0, 2, 3, 1).contiguous();
        using (var predicted = model.Predict(nhwc))
        using (var applied = model.Apply(x))
        {
            double d = (predicted - applied).abs().max().item<float>();
            Assert.True(d < 1e-5, $"Apply on NCHW vs Predict on NHWC: {d}");
        }
        model.train();
        using var y = model.Apply(x);
        using var squared = y.mul(y);
        using var loss = squared.mean();
        loss.backward();
        var missing = model.TrainableWeights.Where(w => w.Value.grad is null || w.Value.grad.abs().max().item<float>() == 0)
            .Select(w => $"{w.Owner.Name}/{w.Name}").ToList();
        Assert.Empty(missing);
        Assert.Equal(model.Weights.Count(w => w.IsTrainableWeight), model.TrainableWeights.Count());
    }

    [Theory]
    [InlineData("lenet5")]
    [InlineData("resnet20")]
    public void RegistryModelsRoundTripThroughExportAndImport(string name)
    {
        var info = ModelRegistry.Get(name);
        using var source = ModelRegistry.Create(name);
        var path = Path.Combine(fx.Dir, name + "_roundtrip.onnx");
        source.ExportOnnx(path, channelsLast: false);
        using var imported = OnnxImport.Load(path);
        var shape = source.ModelInputShape;
        using var x = rand(3, shape[0], shape[1], shape[2]);
        using var a = source.Predict(x);
        using var b = imported.Predict(x);
        double rel = RelativeError(b, a.flatten().data<float>().ToArray());
        Assert.True(rel <= 1e-5, $"{name}: {rel}");
        Assert.Equal(source.CountParams(), imported.CountParams());
        _ = info;
    }

    [Fact]
    public void AnInputShapeOverrideBuildsTheGraphForAnotherSize()
    {
        using var model = OnnxImport.Load(fx.Path_("resnet18", ".onnx"), new OnnxImportOptions { InputShape = (96, 96, 3) });
        Assert.Equal(new Shape(96, 96, 3), model.ModelInputShape);
        using var x = rand(1, 96, 96, 3);
        using var y = model.Predict(x);
        Assert.Equal(new long[] { 1, 1000 }, y.shape);
    }

    [Theory]
    [InlineData("resnet18")]
    [InlineData("googlenet")]
    [InlineData("mobilenet_v2")]
    [InlineData("mnasnet0_5_op11")]
    public void ImportExportImportIsIdempotent(string tag)
    {
        using var first = OnnxImport.Load(fx.Path_(tag, ".onnx"));
        var path = Path.Combine(fx.Dir, tag + "_reexported.onnx");
        first.ExportOnnx(path, channelsLast: false);
        using var second = OnnxImport.Load(path);
        // The first round may spell a node differently (ReduceMean without keepdims exports as GlobalAveragePool +
        // Flatten); from then on the structure is a fixed point.
        var path2 = Path.Combine(fx.Dir, tag + "_reexported2.onnx");
        second.ExportOnnx(path2, channelsLast: false);
        using (var third = OnnxImport.Load(path2))
            Assert.Equal(second.Layers.Select(l => l.ClassName), third.Layers.Select(l => l.ClassName));
        File.Delete(path2);
        Assert.Equal(first.CountParams(), second.CountParams());
        using var x = rand(2, 64, 64, 3);
        using var a = first.Predict(x);
        using var b = second.Predict(x);
        double rel = RelativeError(b, a.flatten().data<float>().ToArray());
        File.Delete(path);
        Assert.True(rel <= 1e-5, $"{tag}: {rel}");
    }

    [Fact]
    public void CliImportWritesAModelFolderThatPredictAndExportTake()
    {
        var folder = Path.Combine(fx.Dir, "cli-squeezenet");
        var labels = Path.Combine(fx.Dir, "labels.txt");
        File.WriteAllLines(labels, Enumerable.Range(0, 1000).Select(i => $"label {i}"));
        var (code, output, error) = ConvKit.Tests.Cli.CliRunner.Run("import", fx.Path_("squeezenet1_1", ".onnx"), "--out", folder, "--preprocess", "torch", "--labels", labels);
        Assert.True(code == 0, error);
        Assert.Contains("opset 13", output);
        using var direct = OnnxImport.Load(fx.Path_("squeezenet1_1", ".onnx"));
        using (var resolved = ModelResolver.Resolve(folder))
        {
            Assert.Equal(Preprocessing.Torch, resolved.Preprocessing);
            Assert.Equal("label 999", resolved.ClassNames![999]);
            using var x = rand(2, 64, 64, 3);
            using var a = direct.Predict(x);
            using var b = resolved.Model.Predict(x);
            Assert.True(RelativeError(b, a.flatten().data<float>().ToArray()) <= 1e-6);
        }
        // A second import into the same folder is refused, and nothing is overwritten.
        var before = File.GetLastWriteTimeUtc(Path.Combine(folder, "model.safetensors"));
        (code, _, error) = ConvKit.Tests.Cli.CliRunner.Run("import", fx.Path_("squeezenet1_1", ".onnx"), "--out", folder);
        Assert.Equal(1, code);
        Assert.Contains("--out", error);
        Assert.Equal(before, File.GetLastWriteTimeUtc(Path.Combine(folder, "model.safetensors")));
        // export takes the folder; the exported file imports again.
        var exported = Path.Combine(fx.Dir, "cli-squeezenet.onnx");
        (code, _, error) = ConvKit.Tests.Cli.CliRunner.Run("export", folder, "--onnx", exported, "--channels-first");
        Assert.True(code == 0, error);
        using var again = OnnxImport.Load(exported);
        Assert.Equal(direct.CountParams(), again.CountParams());
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void CliImportOfAnUnsupportedOrMissingFileIsAOneLineErrorAndWritesNothing()
    {
        var folder = Path.Combine(fx.Dir, "cli-missing");
        var (code, _, error) = ConvKit.Tests.Cli.CliRunner.Run("import", Path.Combine(fx.Dir, "nope.onnx"), "--out", folder);
        Assert.Equal(1, code);
        Assert.Contains("nope.onnx", error);
        Assert.DoesNotContain("   at ", error);
        Assert.False(Directory.Exists(folder));
        var labels = Path.Combine(fx.Dir, "three.txt");
        File.WriteAllLines(labels, ["a", "b", "c"]);
        (code, _, error) = ConvKit.Tests.Cli.CliRunner.Run("import", fx.Path_("squeezenet1_1", ".onnx"), "--out", folder, "--labels", labels);
        Assert.Equal(1, code);
        Assert.Contains("--labels names 3 classes", error);
        Assert.False(Directory.Exists(folder));
    }
}
