using System.Diagnostics;
using System.Text.Json;
using ConvKit.Applications;
using ConvKit.Formats.Onnx;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Tests.Saving;
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
    public static readonly string[] Fast = ["resnet18:64", "mobilenet_v2_folded:64", "squeezenet1_1:64", "mobilenet_v2:64", "googlenet:64", "squeezenet1_1:64:9", "mnasnet0_5:64:11", "convtranspose:8"];

    /// <summary>
    /// The rest of torchvision's classification families, made on first use by one generator run (Slow tests): each at
    /// the smallest size its fixed pooling allows (VGG's and AlexNet's adaptive pooling exports only at 224).
    /// </summary>
    public static readonly string[] Slow =
    [
        "resnet50:64", "vgg16_bn:224", "alexnet:224", "inception_v3:96", "densenet121:64", "mobilenet_v3_small:64",
        "mobilenet_v3_large:64", "efficientnet_b0:64", "shufflenet_v2_x1_0:64", "regnet_y_400mf:64", "mnasnet1_0:64",
    ];

    readonly Lazy<string?> slowError;

    public OnnxFixtures()
    {
        Dir = Path.Combine(Path.GetTempPath(), "convkit-onnx-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(Dir);
        Error = Make(Fast);
        slowError = new(() => Make(Slow));
    }

    /// <summary>Path of a file of the <see cref="Slow"/> set, made on first use.</summary>
    public string SlowPath(string tag, string ext)
    {
        Assert.True(slowError.Value is null, slowError.Value);
        return Path_(tag, ext);
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
    [InlineData("convtranspose")]
    public void ImportedTorchvisionModelMatchesOnnxRuntimeAndPyTorch(string tag) => CheckAgainstOrtAndTorch(fx.Path_(tag, ".onnx"), tag);

    [Theory]
    [Trait("Category", "Slow")]
    [InlineData("resnet50")]
    [InlineData("vgg16_bn")]
    [InlineData("alexnet")]
    [InlineData("inception_v3")]
    [InlineData("densenet121")]
    [InlineData("mobilenet_v3_small")]
    [InlineData("mobilenet_v3_large")]
    [InlineData("efficientnet_b0")]
    [InlineData("shufflenet_v2_x1_0")]
    [InlineData("regnet_y_400mf")]
    [InlineData("mnasnet1_0")]
    public void EveryTorchvisionClassifierFamilyMatchesOnnxRuntimeAndPyTorch(string tag)
    {
        var path = fx.SlowPath(tag, ".onnx");
        CheckAgainstOrtAndTorch(path, tag);
        File.Delete(path); // the big ones hold hundreds of MB
    }

    /// <summary>
    /// Imports <paramref name="path"/> and compares Predict with ONNX Runtime on the same file and with PyTorch's own
    /// output: max |a - b| / max |b| within 1e-4. Logs one row of docs/onnx-import.md's table.
    /// </summary>
    void CheckAgainstOrtAndTorch(string path, string tag)
    {
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
        log.WriteLine($"| {tag} | {result.Opset} | {model.CountParams():N0} | {importTime.TotalSeconds:F2} | {vsOrt:E1} | {vsTorch:E1} |");
        Assert.True(vsOrt <= 1e-4, $"{tag}: relative error vs ONNX Runtime {vsOrt}");
        Assert.True(vsTorch <= 1e-4, $"{tag}: relative error vs PyTorch {vsTorch}");
    }

    [Theory]
    // Spellings of ConvTranspose PyTorch does not write: auto_pad, output_shape, pads that differ per side, no bias.
    [InlineData("auto_pad=SAME_UPPER", 3, 2, true)]
    [InlineData("auto_pad=SAME_LOWER", 3, 2, true)]
    [InlineData("auto_pad=SAME_UPPER", 4, 2, true)]
    [InlineData("auto_pad=VALID", 2, 3, true)]
    [InlineData("output_shape=14,13", 3, 2, true)]
    [InlineData("output_shape=14,12", 3, 2, false)]
    [InlineData("pads=0,1,2,0", 3, 2, true)]
    [InlineData("pads=1,0,0,2;output_padding=1,1", 3, 2, false)]
    public void ConvTransposeAttributesImportAsOnnxRuntimeReadsThem(string spec, int k, int s, bool bias)
    {
        var gen = new Generator(5);
        using var w = randn(new long[] { 4, 3, k, k }, generator: gen);
        using var b = randn(new long[] { 3 }, generator: gen);
        var attrs = new List<ConvKit.Saving.OnnxAttribute> { ConvKit.Saving.OnnxAttribute.Ints("kernel_shape", k, k), ConvKit.Saving.OnnxAttribute.Ints("strides", s, s) };
        foreach (var part in spec.Split(';'))
        {
            var (key, value) = (part.Split('=')[0], part.Split('=')[1]);
            attrs.Add(key == "auto_pad" ? ConvKit.Saving.OnnxAttribute.String(key, value) : ConvKit.Saving.OnnxAttribute.Ints(key, value.Split(',').Select(long.Parse).ToArray()));
        }
        var builder = new ConvKit.Saving.OnnxGraphBuilder().AddInput("x", "N", 4, 7, 6).AddInitializer("w", w);
        if (bias) builder.AddInitializer("b", b);
        builder.AddNode("ConvTranspose", bias ? ["x", "w", "b"] : ["x", "w"], ["y"], attrs, name: "up").AddOutput("y", "N", 3, "H", "W");
        var path = Path.Combine(fx.Dir, $"convtranspose-{Guid.NewGuid():N}.onnx");
        builder.Save(path);
        try
        {
            using var model = OnnxImport.Load(path);
            using var x = randn(new long[] { 2, 4, 7, 6 }, generator: gen);
            using var y = model.Apply(x);
            var ort = RunOrtWithShape(path, x, out var ortShape);
            Assert.Equal(ortShape, y.shape);
            Assert.True(RelativeError(y, ort) <= 1e-5, spec);
        }
        finally { File.Delete(path); }
    }

    static float[] RunOrtWithShape(string path, Tensor nchw, out long[] shape)
    {
        using var session = new InferenceSession(path);
        var input = new DenseTensor(nchw.contiguous().data<float>().ToArray(), nchw.shape.Select(d => (int)d).ToArray());
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(session.InputMetadata.Keys.First(), input)]);
        var t = results.First().AsTensor<float>();
        shape = t.Dimensions.ToArray().Select(d => (long)d).ToArray();
        return t.ToArray();
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
    [MemberData(nameof(OnnxExportTests.FastModels), MemberType = typeof(OnnxExportTests))]
    public void EveryRegistryModelRoundTripsThroughExportAndImport(string name) => RoundTrip(name);

    [Theory]
    [Trait("Category", "Slow")]
    [MemberData(nameof(OnnxExportTests.BigModels), MemberType = typeof(OnnxExportTests))]
    public void EveryBigRegistryModelRoundTripsThroughExportAndImport(string name) => RoundTrip(name);

    /// <summary>
    /// A zoo model at its smallest input (7 classes, logits: a saturated softmax would hide differences), seeded
    /// weights and non-trivial batch-norm statistics, exported channels-first and imported: equal within 1e-5 relative,
    /// same parameter count, and the imported model keeps one BatchNormalization per exported one.
    /// </summary>
    void RoundTrip(string name)
    {
        var info = ModelRegistry.Get(name);
        using var source = ModelRegistry.Create(name, new ModelOptions
        {
            InputShape = new Shape(info.MinInputSize, info.MinInputSize, info.DefaultInputShape[2]), Classes = 7, ClassifierActivation = "linear",
        });
        var gen = new Generator(11);
        // Explicit scalars (ScalarIlTests): variance in [0.5, 1.5), gamma about 1, beta and mean about 0.
        using var half = 0.5.ToScalar();
        using var spread = 0.2.ToScalar();
        using var one = 1.0.ToScalar();
        using var zero = 0.0.ToScalar();
        using (no_grad())
            foreach (var w in source.Weights.Where(w => w.Owner is BatchNormalization))
            {
                using var r = w.Name is "moving_variance" ? rand(w.Value.shape, generator: gen) : randn(w.Value.shape, generator: gen);
                if (w.Name is "moving_variance") r.add_(half, one);
                else r.mul_(spread).add_(w.Name == "gamma" ? one : zero, one);
                w.Value.copy_(r);
            }
        var path = Path.Combine(fx.Dir, name + "_roundtrip.onnx");
        var watch = Stopwatch.StartNew();
        source.ExportOnnx(path, channelsLast: false);
        var exportTime = watch.Elapsed;
        watch.Restart();
        using var imported = OnnxImport.Load(path);
        var importTime = watch.Elapsed;
        File.Delete(path);
        var shape = source.ModelInputShape;
        using var x = randn(new long[] { 2, shape[0], shape[1], shape[2] }, generator: gen);
        using var a = source.Predict(x);
        using var b = imported.Predict(x);
        double rel = RelativeError(b, a.flatten().data<float>().ToArray());
        log.WriteLine($"{name} ({shape}): {source.CountParams():N0} params, export {exportTime.TotalSeconds:F2} s, import {importTime.TotalSeconds:F2} s, max rel error {rel:E1}");
        Assert.True(rel <= 1e-5, $"{name}: {rel}");
        // A Keras BatchNormalization without scale or center (Inception-v3's) exports its constant gamma / beta, which
        // import as weights.
        long constants = source.Layers.OfType<BatchNormalization>().Sum(l => ((l.Scale ? 0 : 1) + (l.Center ? 0 : 1)) * l.MovingMean!.shape[0]);
        Assert.Equal(source.CountParams() + constants, imported.CountParams());
        static int Norms(Model m) => m.Weights.Count(w => w.Owner is BatchNormalization && w.Name == "moving_mean");
        Assert.Equal(Norms(source), Norms(imported));
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
