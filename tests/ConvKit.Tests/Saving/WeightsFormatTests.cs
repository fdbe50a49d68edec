// These tests exercise the obsolete loader entry points, which forward to Model.LoadWeights(path, format, options).
#pragma warning disable CS0618
using ConvKit.Applications;
using ConvKit.Models;
using ConvKit.Saving;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

/// <summary>
/// Issue 12: a Keras .h5 given to LoadWeights was reported as "Invalid safetensors file ... header length
/// 727905341903489161"; NaN/Inf weights were accepted (predictions NaN%, exit 0); corrupt .h5 files surfaced
/// ArgumentOutOfRangeException/NotSupportedException names. Files are now recognized by signature and named with what
/// reads them, and non-finite weights are refused by layer and weight in every loader.
/// </summary>
public class WeightsFormatTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-formats-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    static string KerasLeNet5 => Path.Combine(KerasImportTests.Dir, "lenet5.h5");

    string Write(string name, byte[] bytes)
    {
        var p = Path.Combine(dir, name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    string Sample(string kind) => kind switch
    {
        "h5" => KerasLeNet5,
        "png" => Write("x.png", [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, .. new byte[40]]),
        "jpeg" => Write("x.jpg", [0xff, 0xd8, 0xff, 0xe1, .. new byte[40]]),
        "zip" => Write("x.pt", [0x50, 0x4b, 0x03, 0x04, .. new byte[40]]),
        "pickle" => Write("x.pth", [0x80, 0x04, 0x95, 0x10, .. new byte[40]]),
        "gzip" => Write("x.gz", ConvKit.Tests.Data.DataFiles.Gzip([1, 2, 3])),
        "onnx" => Write("x.onnx", [0x08, 0x08, 0x12, 0x04, .. "test"u8.ToArray(), .. new byte[20]]),
        "safetensors" => Path.Combine(SafeTensorsFixtures.Dir, "python_reference.safetensors"),
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("h5", "a Keras HDF5 weights file (.h5)", "--weights")]
    [InlineData("png", "a PNG image", "convkit predict")]
    [InlineData("jpeg", "a JPEG image", "convkit predict")]
    [InlineData("zip", "a zip archive", "safetensors")]
    [InlineData("pickle", "a Python pickle", "can run code")]
    [InlineData("gzip", "a gzip-compressed file", "IDX datasets")]
    [InlineData("onnx", "an ONNX model", "ONNX Runtime")]
    public void LoadWeightsAndLoadNameAFileOfAnotherFormatAndWhatReadsIt(string kind, string what, string advice)
    {
        var path = Sample(kind);
        using var model = ModelRegistry.Create("lenet5");
        var e = Assert.Throws<WrongFileFormatException>(() => model.LoadWeights(path, WeightsFormat.Native));
        Assert.StartsWith($"'{path}' is {what}", e.Message);
        Assert.Contains("not a ConvKit model or weights file", e.Message);
        Assert.Contains(advice, e.Message);
        Assert.DoesNotContain("header length", e.Message);
        var load = Assert.Throws<WrongFileFormatException>(() => Model.Load(path));
        Assert.Equal(e.Message, load.Message);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("png", "a PNG image")]
    [InlineData("safetensors", "a safetensors file")]
    [InlineData("zip", "a zip archive")]
    public void KerasH5NamesAFileOfAnotherFormat(string kind, string what)
    {
        var path = Sample(kind);
        var e = Assert.Throws<KerasH5FormatException>(() => KerasH5.Read(path));
        Assert.Contains($"this is {what}", e.Message);
        Assert.Contains("not a Keras HDF5 weights file", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void ADirectoryIsNamedAsADirectory()
    {
        using var model = ModelRegistry.Create("lenet5");
        Assert.Equal($"'{dir}' is a directory, not a ConvKit model or weights file.", Assert.Throws<ConvKitException>(() => model.LoadWeights(dir, WeightsFormat.Native)).Message);
        Assert.Contains("is a directory", Assert.Throws<KerasH5FormatException>(() => KerasH5.Read(dir)).Message);
        var option = Assert.Throws<LayerArgumentException>(() => ModelRegistry.Create("lenet5", new ModelOptions { Weights = dir }));
        Assert.Contains("is a directory, not a weights file", option.Message);
    }

    [Fact]
    public void SignaturesAreRecognized()
    {
        foreach (var (kind, expected) in new[] { ("h5", FileKind.Hdf5), ("png", FileKind.Png), ("jpeg", FileKind.Jpeg), ("zip", FileKind.Zip),
                     ("pickle", FileKind.Pickle), ("gzip", FileKind.Gzip), ("onnx", FileKind.Onnx), ("safetensors", FileKind.SafeTensors) })
            Assert.Equal(expected, FileSignature.Detect(Sample(kind)));
        Assert.Equal(FileKind.Empty, FileSignature.Detect(Write("empty", [])));
        Assert.Equal(FileKind.Unknown, FileSignature.Detect(Write("text", "hello world, not a model"u8.ToArray())));
        // A safetensors header of 640 bytes starts 0x80 0x02, as a pickle does: the header check comes first.
        Assert.Equal(FileKind.SafeTensors, FileSignature.Detect([0x80, 0x02, 0, 0, 0, 0, 0, 0, (byte)'{'], 2000));
    }

    static void FillFirstWith(Model model, float value)
    {
        using (no_grad())
        using (var v = value.ToScalar())
            model.Weights.First().Value.narrow(0, 0, 1).fill_(v);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void NonFiniteWeightsAreRefusedByEveryLoaderAndNothingIsCopied(float bad)
    {
        using var source = ModelRegistry.Create("lenet5");
        FillFirstWith(source, bad);
        var native = Path.Combine(dir, "native.safetensors");
        source.SaveWeights(native);
        // torchvision's naming: the same layout (out, in, kh, kw) under 'layer.weight' / 'layer.bias'.
        var torchvision = Path.Combine(dir, "tv.safetensors");
        SafeTensors.Write(torchvision, ModelFormat.NamedWeights(source).ToDictionary(
            p => StateDictMapping.Default.KeyOf(p.Weight.Owner.Name) + (p.Weight.Name == "kernel" ? ".weight" : ".bias"), p => p.Weight.Value));

        using var target = ModelRegistry.Create("lenet5");
        using var before = target.Weights.First().Value.clone();
        var e1 = Assert.Throws<WeightsMismatchException>(() => target.LoadWeights(native));
        Assert.Contains("non-finite: layer 'conv2d' weight 'kernel' holds 25 NaN/Inf values", e1.Message);
        var e2 = Assert.Throws<WeightsMismatchException>(() => target.LoadTorchvisionWeights(torchvision));
        Assert.True(e2.Message.Contains("layer 'conv2d', weight 'kernel': 25 NaN/Inf values"), e2.Message);
        Assert.True(target.Weights.First().Value.eq(before).all().item<bool>(), "a refused file changed the weights");
        var e3 = Assert.ThrowsAny<ConvKitException>(() => ModelRegistry.Create("lenet5", new ModelOptions { Weights = native }));
        Assert.Contains("NaN/Inf", e3.Message);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void IntegerTorchvisionWeightsAreRefusedNotConvertedSilently()
    {
        using var source = ModelRegistry.Create("lenet5");
        var path = Path.Combine(dir, "int.safetensors");
        var tensors = ModelFormat.NamedWeights(source).ToDictionary(
            p => StateDictMapping.Default.KeyOf(p.Weight.Owner.Name) + (p.Weight.Name == "kernel" ? ".weight" : ".bias"), p => p.Weight.Value.to(int32));
        SafeTensors.Write(path, tensors);
        foreach (var t in tensors.Values) t.Dispose();
        using var target = ModelRegistry.Create("lenet5");
        var e = Assert.Throws<WeightsMismatchException>(() => target.LoadTorchvisionWeights(path));
        Assert.Contains("layer 'conv2d', weight 'kernel': the file holds Int32 values; weights must be floating point", e.Message);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("truncate", 1)]
    [InlineData("truncate", 2)]
    [InlineData("flip", 3)]
    [InlineData("flip", 4)]
    [InlineData("flip", 5)]
    [InlineData("flip-data", 6)]
    public void MutatedKerasWeightsEndInALoadOfFiniteWeightsOrANamedConvKitError(string mutation, int seed)
    {
        var original = File.ReadAllBytes(KerasLeNet5);
        var rng = new Random(seed);
        var path = Path.Combine(dir, "mutated.h5");
        var outcomes = new Dictionary<string, int>();
        using var model = ModelRegistry.Create("lenet5");
        // CONVKIT_FUZZ_CASES raises the count for a longer search (60 per row in the suite).
        int cases = int.TryParse(Environment.GetEnvironmentVariable("CONVKIT_FUZZ_CASES"), out var n) ? n : 60;
        for (int i = 0; i < cases; i++)
        {
            byte[] b = mutation switch
            {
                "truncate" => original[..rng.Next(0, original.Length)],
                "flip" => Flip(original, rng, rng.Next(0, Math.Min(original.Length, 4096))), // metadata near the start
                _ => Nan(original, rng.Next(original.Length / 2, original.Length - 4)),      // weight data
            };
            File.WriteAllBytes(path, b);
            try
            {
                model.LoadKerasWeights(path);
                foreach (var w in model.Weights)
                {
                    using var finite = w.Value.isfinite().all();
                    Assert.True(finite.item<bool>(), $"case {i}: non-finite weights were loaded");
                }
                outcomes["loaded"] = outcomes.GetValueOrDefault("loaded") + 1;
            }
            catch (ConvKitException e)
            {
                Assert.Contains(path, e.Message);
                foreach (var raw in new[] { "ArgumentOutOfRangeException", "NotSupportedException", "IndexOutOfRangeException", "   at " })
                    Assert.DoesNotContain(raw, e.Message);
                outcomes[e.GetType().Name] = outcomes.GetValueOrDefault(e.GetType().Name) + 1;
            }
        }
        Assert.True(outcomes.Keys.Any(k => k != "loaded"), "no mutation was rejected: " + string.Join(", ", outcomes));
    }

    static byte[] Nan(byte[] original, int at)
    {
        var b = (byte[])original.Clone();
        BitConverter.GetBytes(float.NaN).CopyTo(b, at);
        return b;
    }

    static byte[] Flip(byte[] original, Random rng, int at)
    {
        var b = (byte[])original.Clone();
        b[at] ^= (byte)(1 << rng.Next(8));
        return b;
    }
}
