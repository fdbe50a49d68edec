using System.IO.Compression;
using ConvKit.Models;
using ConvKit.Saving;
using ConvKit.Tests.Data;
using ConvKit.Tests.Saving;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Cli;

/// <summary>
/// Issue 12's hostile catalogue for the command line: every option with bad values, unknown names, bad paths, files of
/// the wrong format, corrupt weights and datasets. Each row: a non-zero exit code, one error naming the option or the
/// file, no stack trace, and no output folder or stray file left by a run that failed.
/// </summary>
[Collection(nameof(ConvKit.Tests.Training.GlobalRandomCollection))]
public class HostileCliTests(TrainedRun run) : IClassFixture<TrainedRun>
{
    // Placeholders in the rows, made on demand in the fixture's folder.
    string Resolve(string arg, string outDir) => arg switch
    {
        "{out}" => outDir,
        "{data}" => run.Data,
        "{run}" => run.Run,
        "{modelfolder}" => run.ModelFolder,
        "{modelfile}" => run.ModelFile,
        "{png}" => run.Image,
        "{emptydir}" => Dir("empty"),
        "{nonempty}" => NonEmpty(),
        "{file}" => run.File("notes.txt", "hello"u8.ToArray()),
        "{h5}" => Path.Combine(SafeTensorsFixtures.Dir, "keras_weights.h5"),
        "{torchst}" => Path.Combine(SafeTensorsFixtures.Dir, "python_reference.safetensors"),
        "{gz}" => run.File("labels.gz", DataFiles.Gzip([1, 2, 3])),
        "{zip}" => run.File("model.pt", [0x50, 0x4b, 0x03, 0x04, .. new byte[60]]),
        "{pickle}" => run.File("model.pkl", [0x80, 0x02, 0x7d, 0x71, 0x00, .. new byte[60]]),
        "{onnx}" => run.File("model.onnx", [0x08, 0x07, 0x12, 0x07, .. "pytorch"u8.ToArray(), 0x1a, 0x03, .. "1.0"u8.ToArray()]),
        "{jpeg}" => run.File("photo.jpg", [0xff, 0xd8, 0xff, 0xe0, .. new byte[60]]),
        "{empty}" => run.File("empty.safetensors", []),
        "{nanmodel}" => NanModel(),
        "{intweights}" => IntWeights(),
        "{badjson}" => AlteredJson("badjson", "{ not json"),
        "{wrongclasses}" => AlteredJson("wrongclasses", """{"Model":"lenet5","Dataset":"fashion-mnist","ClassNames":["a","b","c"]}"""),
        "{wrongshape}" => AlteredJson("wrongshape", """{"Model":"lenet5","Dataset":"fashion-mnist","ClassNames":["0","1","2","3","4","5","6","7","8","9"],"InputShape":[32,32,3]}"""),
        "{badcolor}" => AlteredJson("badcolor", """{"Model":"lenet5","Dataset":"fashion-mnist","ClassNames":["0","1","2","3","4","5","6","7","8","9"],"ColorMode":"cmyk"}"""),
        "{idx_incomplete}" => IdxVariant("incomplete", d => File.Delete(Path.Combine(d, "t10k-labels-idx1-ubyte.gz"))),
        "{idx_mismatch}" => IdxVariant("mismatch", d =>
        {
            foreach (var f in Directory.GetFiles(d, "t10k-*")) File.Delete(f);
            DataFiles.WriteIdxPair(d, "t10k", 5, 32, 32, gzip: true);
        }),
        "{idx_trunc}" => IdxVariant("trunc", d => Truncate(Path.Combine(d, "train-images-idx3-ubyte.gz"), 40)),
        "{idx_crc}" => IdxVariant("crc", d => FlipByte(Path.Combine(d, "train-images-idx3-ubyte.gz"), -8)),
        "{idx_garbage}" => IdxVariant("garbage", d => File.WriteAllBytes(Path.Combine(d, "train-labels-idx1-ubyte.gz"), [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0])),
        "{idx_magic}" => IdxVariant("magic", d =>
        {
            File.Delete(Path.Combine(d, "train-labels-idx1-ubyte.gz"));
            File.WriteAllBytes(Path.Combine(d, "train-labels-idx1-ubyte"), DataFiles.Idx([96, 1], new byte[96]));
        }),
        "{idx32}" => Idx32(),
        _ when arg.StartsWith("{trunc:", StringComparison.Ordinal) => Mutated("trunc", arg, b => b[..Cut(arg, b.Length)]),
        _ when arg.StartsWith("{flip:", StringComparison.Ordinal) => Mutated("flip", arg, b =>
        {
            var c = (byte[])b.Clone();
            c[Cut(arg, b.Length)] ^= 0xff;
            return c;
        }),
        _ when arg.StartsWith("{h5trunc:", StringComparison.Ordinal) => H5Truncated(arg),
        _ => arg,
    };

    string Dir(string name)
    {
        var d = Path.Combine(run.Dir, "dirs", name);
        Directory.CreateDirectory(d);
        return d;
    }

    string NonEmpty()
    {
        var d = Dir("nonempty");
        File.WriteAllText(Path.Combine(d, "old.txt"), "x");
        return d;
    }

    static int Cut(string arg, int length)
    {
        var v = arg[(arg.IndexOf(':') + 1)..^1];
        return v == "half" ? length / 2 : v == "last" ? length - 1 : int.Parse(v, System.Globalization.CultureInfo.InvariantCulture);
    }

    string Mutated(string kind, string arg, Func<byte[], byte[]> mutate)
    {
        var folder = run.CopyModelFolder(kind + "-" + arg.Trim('{', '}').Replace(':', '-'));
        var file = Path.Combine(folder, "model.safetensors");
        File.WriteAllBytes(file, mutate(File.ReadAllBytes(run.ModelFile)));
        return file;
    }

    string H5Truncated(string arg)
    {
        var bytes = File.ReadAllBytes(Path.Combine(SafeTensorsFixtures.Dir, "keras_weights.h5"));
        return run.File($"h5-{arg.Trim('{', '}').Replace(':', '-')}.h5", bytes[..Cut(arg, bytes.Length)]);
    }

    string NanModel()
    {
        var folder = run.CopyModelFolder("nan");
        using var model = Model.Load(run.ModelFile);
        using (no_grad())
        using (var nan = float.NaN.ToScalar())
            model.Weights.First().Value.fill_(nan);
        model.Save(Path.Combine(folder, "model.safetensors"));
        return folder;
    }

    string IntWeights()
    {
        using var model = Model.Load(run.ModelFile);
        var tensors = ModelFormat.WeightTensors(model).ToDictionary(p => p.Key, p => p.Value.to(int32));
        var path = Path.Combine(run.Dir, "files", "int.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        SafeTensors.Write(path, tensors, ModelFormat.Metadata("weights"));
        foreach (var t in tensors.Values) t.Dispose();
        return path;
    }

    string AlteredJson(string name, string json)
    {
        var folder = run.CopyModelFolder(name);
        File.WriteAllText(Path.Combine(folder, "training.json"), json);
        return folder;
    }

    string IdxVariant(string name, Action<string> alter)
    {
        var d = Path.Combine(run.Dir, "idx", name);
        if (Directory.Exists(d)) Directory.Delete(d, recursive: true);
        DataFiles.WriteIdxDataset(d, trainCount: 96, testCount: 20);
        alter(d);
        return d;
    }

    string Idx32()
    {
        var d = Path.Combine(run.Dir, "idx", "32");
        if (Directory.Exists(d)) return d;
        Directory.CreateDirectory(d);
        DataFiles.WriteIdxPair(d, "train", 8, 32, 32, gzip: true);
        DataFiles.WriteIdxPair(d, "t10k", 4, 32, 32, gzip: true);
        return d;
    }

    static void Truncate(string path, int length) => File.WriteAllBytes(path, File.ReadAllBytes(path)[..length]);

    static void FlipByte(string path, int fromEnd)
    {
        var b = File.ReadAllBytes(path);
        b[b.Length + fromEnd] ^= 0x5a;
        File.WriteAllBytes(path, b);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    // train: every option with bad values; nothing is loaded or created before they are checked
    [InlineData("--epochs must be at least 1; received 0", "train", "lenet5", "--epochs", "0", "--out", "{out}")]
    [InlineData("--epochs must be at least 1; received -5", "train", "lenet5", "--epochs", "-5", "--out", "{out}")]
    [InlineData("--batch-size must be positive; received 0", "train", "lenet5", "--batch-size", "0", "--out", "{out}")]
    [InlineData("--batch-size must be positive; received -1", "train", "lenet5", "--batch-size", "-1", "--out", "{out}")]
    [InlineData("--lr must be a positive finite number; received 0", "train", "lenet5", "--lr", "0", "--out", "{out}")]
    [InlineData("--lr must be a positive finite number; received -0.1", "train", "lenet5", "--lr", "-0.1", "--out", "{out}")]
    [InlineData("--lr must be a positive finite number; received NaN", "train", "lenet5", "--lr", "NaN", "--out", "{out}")]
    [InlineData("--lr must be a positive finite number; received Infinity", "train", "lenet5", "--lr", "Infinity", "--out", "{out}")]
    [InlineData("--validation-split must be at least 0 and less than 1; received 1", "train", "lenet5", "--validation-split", "1", "--out", "{out}")]
    [InlineData("--validation-split must be at least 0 and less than 1; received -0.1", "train", "lenet5", "--validation-split", "-0.1", "--out", "{out}")]
    [InlineData("--validation-split must be at least 0 and less than 1; received 1.5", "train", "lenet5", "--validation-split", "1.5", "--out", "{out}")]
    [InlineData("--validation-split must be at least 0 and less than 1; received NaN", "train", "lenet5", "--validation-split", "NaN", "--out", "{out}")]
    [InlineData("--verbose must be 0, 1 or 2; received 3", "train", "lenet5", "--verbose", "3", "--out", "{out}")]
    [InlineData("--verbose must be 0, 1 or 2; received -1", "train", "lenet5", "--verbose", "-1", "--out", "{out}")]
    [InlineData("Argument 'foo' not recognized", "train", "lenet5", "--optimizer", "foo", "--out", "{out}")]
    [InlineData("--dataset: Unknown dataset 'imagenet'", "train", "lenet5", "--dataset", "imagenet", "--out", "{out}")]
    [InlineData("unknown model 'nosuchnet'", "train", "nosuchnet", "--out", "{out}")]
    [InlineData("--data '/nonexistent/fm' does not exist", "train", "lenet5", "--data", "/nonexistent/fm", "--out", "{out}")]
    [InlineData("is a file; name a folder", "train", "lenet5", "--out", "{file}")]
    [InlineData("is not empty (it holds old.txt)", "train", "lenet5", "--out", "{nonempty}")]
    [InlineData("--overwrite replaces only a run folder", "train", "lenet5", "--out", "{nonempty}", "--overwrite")]
    [InlineData("--out must name a folder", "train", "lenet5", "--out", " ")]
    [InlineData("Cannot parse argument 'abc' for option '--epochs'", "train", "lenet5", "--epochs", "abc", "--out", "{out}")]
    [InlineData("Cannot parse argument '1e3' for option '--batch-size'", "train", "lenet5", "--batch-size", "1e3", "--out", "{out}")]
    [InlineData("Cannot parse argument 'x' for option '--seed'", "train", "lenet5", "--seed", "x", "--out", "{out}")]
    [InlineData("Cannot parse argument 'fast' for option '--lr'", "train", "lenet5", "--lr", "fast", "--out", "{out}")]
    [InlineData("Unrecognized command or argument '--epoch'", "train", "lenet5", "--epoch", "1", "--out", "{out}")]
    // train: datasets that are missing, incomplete, corrupt or inconsistent
    [InlineData("does not hold the fashion-mnist dataset", "train", "lenet5", "--data", "{emptydir}", "--out", "{out}")]
    [InlineData("t10k-labels-idx1-ubyte.gz", "train", "lenet5", "--data", "{idx_incomplete}", "--out", "{out}")]
    [InlineData("both splits must have one image size", "train", "lenet5", "--data", "{idx_mismatch}", "--out", "{out}")]
    [InlineData("train-images-idx3-ubyte.gz", "train", "lenet5", "--data", "{idx_trunc}", "--out", "{out}")]
    [InlineData("CRC-32 mismatch", "train", "lenet5", "--data", "{idx_crc}", "--out", "{out}")]
    [InlineData("train-labels-idx1-ubyte.gz: bad gzip data", "train", "lenet5", "--data", "{idx_garbage}", "--out", "{out}")]
    [InlineData("wrong magic number", "train", "lenet5", "--data", "{idx_magic}", "--out", "{out}")]
    [InlineData("does not hold the fashion-mnist dataset", "train", "lenet5", "--data", "{png}", "--out", "{out}")]
    [InlineData("model 'resnet50'", "train", "resnet50", "--dataset", "fashion-mnist", "--data", "{data}", "--out", "{out}")]
    // evaluate: paths that are not models, files of other formats, broken run folders, bad options
    [InlineData("'/nonexistent/run' does not exist", "evaluate", "/nonexistent/run")]
    [InlineData("is a folder without a model", "evaluate", "{emptydir}")]
    [InlineData("is a Keras HDF5 weights file (.h5), not a ConvKit model file", "evaluate", "{h5}")]
    [InlineData("is a PNG image, not a ConvKit model file", "evaluate", "{png}")]
    [InlineData("is a JPEG image, not a ConvKit model file", "evaluate", "{jpeg}")]
    [InlineData("is a gzip-compressed file, not a ConvKit model file", "evaluate", "{gz}")]
    [InlineData("is a zip archive", "evaluate", "{zip}")]
    [InlineData("is a Python pickle", "evaluate", "{pickle}")]
    [InlineData("is an ONNX model", "evaluate", "{onnx}")]
    [InlineData("empty.safetensors", "evaluate", "{empty}")]
    [InlineData("is a safetensors file but not a ConvKit model file", "evaluate", "{torchst}")]
    [InlineData("--batch-size must be positive; received 0", "evaluate", "{run}", "--batch-size", "0")]
    [InlineData("--dataset: Unknown dataset 'imagenet'", "evaluate", "{run}", "--dataset", "imagenet")]
    [InlineData("--data '/nonexistent/fm' does not exist", "evaluate", "{run}", "--data", "/nonexistent/fm")]
    [InlineData("non-finite: layer 'conv2d' weight 'kernel' holds 150 NaN/Inf values", "evaluate", "{nanmodel}", "--data", "{data}")]
    [InlineData("training.json' is not valid", "evaluate", "{badjson}")]
    [InlineData("names 3 classes, but the model outputs 10", "evaluate", "{wrongclasses}")]
    [InlineData("says the input shape is (32, 32, 3)", "evaluate", "{wrongshape}")]
    [InlineData("\"ColorMode\" must be \"grayscale\" or \"rgb\"", "evaluate", "{badcolor}")]
    [InlineData("takes (None, 28, 28, 1), but the mnist test images are 32x32x1", "evaluate", "{run}", "--dataset", "mnist", "--data", "{idx32}")]
    [InlineData("--dataset is required", "evaluate", "lenet5")]
    [InlineData("dtype mismatch: layer 'conv2d' weight 'kernel' is Float32, the file has Int32", "evaluate", "{run}", "--weights", "{intweights}", "--data", "{data}")]
    [InlineData("unknown model 'lenet'", "evaluate", "lenet")]
    // evaluate: truncated and bit-flipped model files
    [InlineData("Invalid safetensors file", "evaluate", "{trunc:4}")]
    [InlineData("Invalid safetensors file", "evaluate", "{trunc:8}")]
    [InlineData("Invalid safetensors file", "evaluate", "{trunc:9}")]
    [InlineData("Invalid safetensors file", "evaluate", "{trunc:100}")]
    [InlineData("Invalid safetensors file", "evaluate", "{trunc:half}")]
    [InlineData("Invalid safetensors file", "evaluate", "{trunc:last}")]
    [InlineData("Invalid safetensors file", "evaluate", "{flip:0}")]
    [InlineData("Invalid safetensors file", "evaluate", "{flip:7}")]
    [InlineData("Invalid safetensors file", "evaluate", "{flip:8}")]
    [InlineData("Invalid safetensors file", "evaluate", "{flip:12}")]
    // export
    [InlineData("--opset must be 13 to 21; received 9", "export", "lenet5", "--onnx", "{out}.onnx", "--opset", "9")]
    [InlineData("--opset must be 13 to 21; received 99", "export", "lenet5", "--onnx", "{out}.onnx", "--opset", "99")]
    [InlineData("is a folder; name the .onnx file", "export", "lenet5", "--onnx", "{emptydir}")]
    [InlineData("the folder '/nonexistent/dir' does not exist", "export", "lenet5", "--onnx", "/nonexistent/dir/x.onnx")]
    [InlineData("--onnx must name a file", "export", "lenet5", "--onnx", " ")]
    [InlineData("weights file '/nonexistent/w.safetensors' does not exist", "export", "lenet5", "--onnx", "{out}.onnx", "--weights", "/nonexistent/w.safetensors")]
    [InlineData("is a folder without a model", "export", "lenet5", "--onnx", "{out}.onnx", "--weights", "{emptydir}")]
    [InlineData("is a PNG image, not a weights file", "export", "lenet5", "--onnx", "{out}.onnx", "--weights", "{png}")]
    [InlineData("is a zip archive", "export", "lenet5", "--onnx", "{out}.onnx", "--weights", "{zip}")]
    [InlineData("--input-shape must be height,width,channels of positive integers", "export", "lenet5", "--onnx", "{out}.onnx", "--input-shape", "0,0,1")]
    [InlineData("--input-shape must be height,width,channels of positive integers", "export", "lenet5", "--onnx", "{out}.onnx", "--input-shape", "abc")]
    [InlineData("--input-shape must have three values", "export", "lenet5", "--onnx", "{out}.onnx", "--input-shape", "32,32")]
    [InlineData("--classes must be positive; received 0", "export", "lenet5", "--onnx", "{out}.onnx", "--classes", "0")]
    [InlineData("--classes must be positive; received -3", "export", "lenet5", "--onnx", "{out}.onnx", "--classes", "-3")]
    [InlineData("whose architecture is fixed", "export", "{run}", "--onnx", "{out}.onnx", "--classes", "5")]
    [InlineData("weights 'imagenet' apply only to zoo names", "export", "{run}", "--onnx", "{out}.onnx", "--weights", "imagenet")]
    [InlineData("unknown model 'nosuchnet'", "export", "nosuchnet", "--onnx", "{out}.onnx")]
    [InlineData("holds 150 NaN/Inf values", "export", "lenet5", "--onnx", "{out}.onnx", "--weights", "{nanmodel}")]
    [InlineData("Option '--onnx' is required", "export", "lenet5")]
    [InlineData("layer 'conv2d'", "export", "lenet5", "--onnx", "{out}.onnx", "--weights", "{torchst}")]
    [InlineData("keras_weights.h5", "export", "lenet5", "--onnx", "{out}.onnx", "--weights", "{h5}")]
    [InlineData("h5-h5trunc-100.h5", "export", "lenet5", "--onnx", "{out}.onnx", "--weights", "{h5trunc:100}")]
    [InlineData("h5-h5trunc-half.h5", "export", "lenet5", "--onnx", "{out}.onnx", "--weights", "{h5trunc:half}")]
    [InlineData("h5-h5trunc-last.h5", "export", "lenet5", "--onnx", "{out}.onnx", "--weights", "{h5trunc:last}")]
    // predict (the model argument and --weights)
    [InlineData("--top must be a positive integer; received 0", "predict", "lenet5", "{png}", "--top", "0")]
    [InlineData("--top must be a positive integer; received -1", "predict", "lenet5", "{png}", "--top", "-1")]
    [InlineData("unknown model 'nosuchnet'", "predict", "nosuchnet", "{png}")]
    [InlineData("'/nonexistent/run' does not exist", "predict", "/nonexistent/run", "{png}")]
    [InlineData("is a folder without a model", "predict", "{emptydir}", "{png}")]
    [InlineData("is a folder without a model", "predict", "lenet5", "--weights", "{emptydir}", "{png}")]
    [InlineData("is a PNG image, not a weights file", "predict", "lenet5", "--weights", "{png}", "{png}")]
    [InlineData("is a Keras HDF5 weights file (.h5), not a ConvKit model file", "predict", "{h5}", "{png}")]
    [InlineData("weights 'imagenet' apply only to zoo names", "predict", "{run}", "--weights", "imagenet", "{png}")]
    [InlineData("holds 150 NaN/Inf values", "predict", "lenet5", "--weights", "{nanmodel}", "{png}")]
    [InlineData("holds 150 NaN/Inf values", "predict", "{nanmodel}", "{png}")]
    [InlineData("dtype mismatch", "predict", "lenet5", "--weights", "{intweights}", "{png}")]
    [InlineData("Invalid safetensors file", "predict", "{trunc:half}", "{png}")]
    [InlineData("'/nonexistent/w.h5' does not exist", "predict", "lenet5", "--weights", "/nonexistent/w.h5", "{png}")]
    // summary and models
    [InlineData("unknown model 'nosuchnet'", "summary", "nosuchnet")]
    [InlineData("--classes must be positive; received 0", "summary", "lenet5", "--classes", "0")]
    [InlineData("--input-shape must have three values", "summary", "lenet5", "--input-shape", "1,1")]
    [InlineData("--input-shape must be height,width,channels of positive integers", "summary", "lenet5", "--input-shape", "-1,28,1")]
    [InlineData("Argument 'mean' not recognized", "summary", "vgg16", "--no-top", "--pooling", "mean")]
    [InlineData("Cannot parse argument 'abc' for option '--classes'", "summary", "lenet5", "--classes", "abc")]
    [InlineData("no model matches 'nothing*'", "models", "nothing*")]
    [InlineData("no model matches '[x'", "models", "[x")]
    public void BadArgumentsAndFilesGiveOneNamedErrorAndLeaveNothingBehind(string expected, params string[] args)
    {
        var outDir = Path.Combine(run.Dir, "out-" + Guid.NewGuid().ToString("N")[..8]);
        var resolved = args.Select(a => a.Contains("{out}", StringComparison.Ordinal) ? a.Replace("{out}", outDir) : Resolve(a, outDir)).ToArray();
        var (code, output, error) = CliRunner.Run(resolved);
        Assert.NotEqual(0, code);
        Assert.Contains(expected, error);
        Assert.DoesNotContain("   at ", error + output);
        Assert.DoesNotContain("Exception", error);
        Assert.DoesNotContain('\0', error);
        // Errors from ConvKit are one line; System.CommandLine's parse errors print the help after theirs.
        if (error.StartsWith("error: ", StringComparison.Ordinal)) Assert.Single(error.TrimEnd().Split('\n'));
        Assert.False(Directory.Exists(outDir), $"a failed run created {outDir}");
        Assert.False(File.Exists(outDir + ".onnx"), "a failed export left a file");
        foreach (var dir in new[] { run.ModelFolder, Path.Combine(run.Dir, "files") })
            if (Directory.Exists(dir)) Assert.Empty(Directory.GetFiles(dir, AtomicFile.TempPrefix + "*"));
    }
}
