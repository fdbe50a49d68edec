using System.Security.Cryptography;
using ConvKit.Applications;
using ConvKit.Cli;
using StbImageWriteSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Applications;

public sealed class ImageClassifierTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-predict-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    /// <summary>Writes an RGB PNG whose pixel (y, x) is <paramref name="color"/>(y, x).</summary>
    string Png(string name, int w, int h, Func<int, int, (byte R, byte G, byte B)> color)
    {
        var rgb = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                var (r, g, b) = color(y, x);
                rgb[(y * w + x) * 3] = r;
                rgb[(y * w + x) * 3 + 1] = g;
                rgb[(y * w + x) * 3 + 2] = b;
            }
        var path = Path.Combine(dir, name);
        using var s = File.Create(path);
        new ImageWriter().WritePng(rgb, w, h, ColorComponents.RedGreenBlue, s);
        return path;
    }

    [Theory]
    [InlineData(Preprocessing.Caffe, 50 - 103.939, 100 - 116.779, 200 - 123.68)] // BGR, ImageNet means subtracted
    [InlineData(Preprocessing.TF, 200 / 127.5 - 1, 100 / 127.5 - 1, 50 / 127.5 - 1)]
    [InlineData(Preprocessing.Torch, (200 / 255.0 - 0.485) / 0.229, (100 / 255.0 - 0.456) / 0.224, (50 / 255.0 - 0.406) / 0.225)]
    [InlineData(Preprocessing.None, 200 / 255.0, 100 / 255.0, 50 / 255.0)]
    public void PreprocessingMatchesKerasPreprocessInput(Preprocessing mode, double c0, double c1, double c2)
    {
        var path = Png("solid.png", 40, 30, (_, _) => (200, 100, 50));
        using var x = ImageClassifier.LoadImages([path], (24, 24, 3), mode);
        Assert.Equal(new long[] { 1, 24, 24, 3 }, x.shape);
        var expected = new[] { c0, c1, c2 };
        for (int c = 0; c < 3; c++)
        {
            using var channel = x.select(3, c);
            Assert.Equal(expected[c], channel.min().item<float>(), 1e-4);
            Assert.Equal(expected[c], channel.max().item<float>(), 1e-4);
        }
    }

    [Fact]
    public void TheShorterSideIsResizedAndTheCenterCropped()
    {
        // 64x32: left quarter red, the rest blue; resized to 32x16, the center 16x16 crop keeps resized columns 8-23.
        var path = Png("wide.png", 64, 32, (_, x) => x < 32 ? ((byte)255, (byte)0, (byte)0) : ((byte)0, (byte)0, (byte)255));
        using var img = ImageClassifier.LoadImages([path], (16, 16, 3), Preprocessing.None);
        Assert.Equal(1.0, img[0, 8, 0, 0].item<float>(), 1e-5);  // crop column 0 = resized column 8: red
        Assert.Equal(0.0, img[0, 8, 0, 2].item<float>(), 1e-5);
        Assert.Equal(0.0, img[0, 8, 15, 0].item<float>(), 1e-5); // crop column 15 = resized column 23: blue
        Assert.Equal(1.0, img[0, 8, 15, 2].item<float>(), 1e-5);
    }

    [Fact]
    public void ImageNetClassNamesAreTorchvisionsInIndexOrder()
    {
        Assert.Equal(1000, ImageClassifier.ImageNetClasses.Count);
        Assert.Equal("tench", ImageClassifier.ImageNetClasses[0]);
        Assert.Equal("tabby", ImageClassifier.ImageNetClasses[281]);
        Assert.Equal("toilet tissue", ImageClassifier.ImageNetClasses[999]);
    }

    [Fact]
    public void PredictReturnsTheTopClassesOfEachImageInOrder()
    {
        var a = Png("a.png", 30, 30, (y, x) => ((byte)(x * 8), (byte)(y * 8), 90));
        var b = Png("b.png", 50, 20, (y, x) => (10, (byte)(x * 5), (byte)(y * 12)));
        using var classifier = ImageClassifier.FromRegistry("lenet5", weights: null);
        var predictions = classifier.Predict([a, b], top: 3);
        Assert.Equal([a, b], predictions.Select(p => p.Path));
        // The classifier's numbers are the model's own softmax outputs on the preprocessed batch.
        using var x = ImageClassifier.LoadImages([a, b], (28, 28, 1), Preprocessing.None);
        using var probs = classifier.Model!.Predict(x);
        foreach (var (p, i) in predictions.Select((p, i) => (p, i)))
        {
            Assert.Equal(3, p.Top.Count);
            var (values, indices) = probs[i].topk(3);
            for (int j = 0; j < 3; j++)
            {
                Assert.Equal(indices[j].item<long>(), p.Top[j].Index);
                Assert.Equal(values[j].item<float>(), p.Top[j].Probability, 1e-6);
                Assert.Equal($"class {p.Top[j].Index}", p.Top[j].Name);
            }
        }
    }

    static (int Code, string Out, string Err) Cli(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Program.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void PredictCommandPrintsTheTopImageNetClassesPerImage()
    {
        var path = Png("cat.png", 60, 40, (y, x) => ((byte)(x * 4), (byte)(y * 6), 128));
        var (code, output, error) = Cli("predict", "resnet18_tv", path, "--top", "3");
        Assert.Equal("", error);
        Assert.Equal(0, code);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("note: resnet18_tv has random weights", lines[0]);
        Assert.Equal(path, lines[1]);
        var rows = lines[2..].Select(l => System.Text.RegularExpressions.Regex.Match(l, @"^  (\d)\.\s+(\d+\.\d\d)%  (.+) \((\d+)\)$")).ToArray();
        Assert.Equal(3, rows.Length);
        Assert.All(rows, r => Assert.True(r.Success));
        Assert.Equal(["1", "2", "3"], rows.Select(r => r.Groups[1].Value));
        var probs = rows.Select(r => double.Parse(r.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.True(probs[0] >= probs[1] && probs[1] >= probs[2]);
        Assert.All(rows, r => Assert.Equal(ImageClassifier.ImageNetClasses[int.Parse(r.Groups[4].Value)], r.Groups[3].Value));
    }

    [Fact]
    public void PredictCommandNamesAnUnreadableImage()
    {
        var (code, _, error) = Cli("predict", "lenet5", Path.Combine(dir, "missing.png"));
        Assert.Equal(1, code);
        Assert.Contains("missing.png", error);
        var junk = Path.Combine(dir, "junk.jpg");
        File.WriteAllBytes(junk, new byte[100]);
        (code, _, error) = Cli("predict", "lenet5", junk);
        Assert.Equal(1, code);
        Assert.Contains("not an image (unknown format", error);
        Assert.Contains("junk.jpg", error);
    }

    [Fact]
    public void ClassifyDecodesOneBatchAtATime()
    {
        var paths = Enumerable.Range(0, 20).Select(i => Png($"p{i}.png", 40, 30, (y, x) => ((byte)(x * i), (byte)(y * 3), 7))).ToArray();
        using var classifier = ImageClassifier.FromRegistry("lenet5", weights: null);
        int decoded = 0;
        classifier.OnDecoded = _ => decoded++;
        int seen = 0;
        foreach (var p in classifier.Classify(paths, top: 2, batchSize: 4))
        {
            Assert.Equal(paths[seen], p.Path);
            // When result i comes out, only its batch (and the ones before) has been decoded.
            Assert.InRange(decoded, seen + 1, (seen / 4 + 1) * 4);
            seen++;
        }
        Assert.Equal(20, seen);
        Assert.Equal(20, decoded);
    }

    [Fact]
    public void ErrorsAreReportedWithoutWaitingForAFullBatch()
    {
        var good = Png("good.png", 30, 30, (y, x) => ((byte)x, (byte)y, 0));
        var bad = Enumerable.Range(0, 10).Select(i => Path.Combine(dir, $"missing{i}.png")).ToArray();
        using var classifier = ImageClassifier.FromRegistry("lenet5", weights: null);
        int decoded = 0;
        classifier.OnDecoded = _ => decoded++;
        using var results = classifier.Classify([.. bad, good, .. bad], batchSize: 4).GetEnumerator();
        for (int i = 0; i < 10; i++)
        {
            Assert.True(results.MoveNext());
            Assert.Equal(bad[i], results.Current.Error!.Path);
            Assert.Equal(0, decoded); // each error came out before the good image behind it was read
        }
        Assert.True(results.MoveNext());
        Assert.True(results.Current.Succeeded);
        int rest = 0;
        while (results.MoveNext()) rest++;
        Assert.Equal(10, rest);
    }

    [Fact]
    public void BatchedClassificationEqualsOneBigBatch()
    {
        var paths = Enumerable.Range(0, 7).Select(i => Png($"q{i}.png", 30 + i, 25, (y, x) => ((byte)(x * 5 + i), (byte)(y * 9), (byte)(i * 30)))).ToArray();
        using var classifier = ImageClassifier.FromRegistry("lenet5", weights: null);
        var batched = classifier.Classify(paths, top: 3, batchSize: 3).ToArray();
        var whole = classifier.Classify(paths, top: 3, batchSize: 100).ToArray();
        for (int i = 0; i < paths.Length; i++)
        {
            Assert.Equal(whole[i].Top.Select(t => t.Index), batched[i].Top.Select(t => t.Index));
            for (int j = 0; j < 3; j++) Assert.Equal(whole[i].Top[j].Probability, batched[i].Top[j].Probability, 1e-6);
        }
    }

    [Fact]
    public void ClassifyReportsEachBadImageAndGoesOn()
    {
        var good = Png("good.png", 30, 30, (y, x) => ((byte)x, (byte)y, 0));
        var missing = Path.Combine(dir, "missing.png");
        var truncated = Path.Combine(dir, "truncated.png");
        File.WriteAllBytes(truncated, File.ReadAllBytes(good)[..60]);
        using var classifier = ImageClassifier.FromRegistry("lenet5", weights: null);
        var results = classifier.Classify([good, missing, good, truncated, good], batchSize: 2).ToArray();
        Assert.Equal([true, false, true, false, true], results.Select(r => r.Succeeded));
        Assert.Contains("file not found", results[1].Error!.Message);
        Assert.Contains("truncated PNG", results[3].Error!.Message);
        Assert.Empty(results[1].Top);
        foreach (var same in new[] { results[2], results[4] })
        {
            Assert.Equal(results[0].Top.Select(t => t.Index), same.Top.Select(t => t.Index));
            Assert.All(same.Top.Zip(results[0].Top), t => Assert.Equal(t.Second.Probability, t.First.Probability, 1e-6));
        }
        // Predict keeps its contract: the first bad image is thrown, by name.
        var e = Assert.Throws<ConvKit.Data.Imaging.ImageDecodeException>(() => classifier.Predict([good, missing]));
        Assert.Equal(missing, e.Path);
    }

    public static TheoryData<string, string> BadImages() => new()
    {
        { "missing", "file not found" },
        { "directory", "is a directory" },
        { "truncated", "truncated PNG" },
        { "bomb", "exceeds the pixel budget" },
        { "strip", "extreme aspect ratio (5000:1" },
        { "empty", "empty file" },
        { "junk", "not an image (unknown format" },
        { "newline", "not an image (unknown format" },
    };

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [MemberData(nameof(BadImages))]
    public void PredictCommandPrintsGoodImagesAndOneLinePerBadOne(string kind, string reason)
    {
        var a = Png("a.png", 30, 30, (y, x) => ((byte)(x * 8), (byte)(y * 8), 90));
        var b = Png("b.png", 20, 40, (y, x) => (10, (byte)(x * 5), (byte)(y * 6)));
        var bad = Path.Combine(dir, kind + ".png");
        switch (kind)
        {
            case "directory": Directory.CreateDirectory(bad); break;
            case "truncated": File.WriteAllBytes(bad, File.ReadAllBytes(a)[..^20]); break;
            case "bomb": File.WriteAllBytes(bad, ConvKit.Tests.Data.Imaging.ImageFiles.PngHeader(30000, 30000)); break;
            case "strip": File.WriteAllBytes(bad, ConvKit.Tests.Data.Imaging.ImageFiles.PngHeader(1, 5000)); break;
            case "empty": File.WriteAllBytes(bad, []); break;
            case "junk": File.WriteAllBytes(bad, new byte[20]); break;
            case "newline": bad = Path.Combine(dir, "new\nline.png"); File.WriteAllBytes(bad, new byte[20]); break;
        }
        var (code, output, error) = Cli("predict", "lenet5", a, bad, b, "--top", "2");
        Assert.Equal(1, code);
        var outLines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(a, outLines);
        Assert.Contains(b, outLines);
        Assert.Equal(1 + 2 * 3, outLines.Length); // the note, then each good image and its two classes
        var errLines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, errLines.Length);
        Assert.StartsWith($"error: image '{ConvKit.Data.Imaging.ImageDecodeException.Sanitize(bad)}': ", errLines[0]);
        Assert.Contains(reason, errLines[0]);
        Assert.Equal("error: 1 of 3 images could not be classified.", errLines[1]);
        Assert.DoesNotContain("   at ", error); // no stack trace
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("--batch-size", "0", "--batch-size must be a positive integer; received 0.")]
    [InlineData("--batch-size", "-3", "--batch-size must be a positive integer; received -3.")]
    [InlineData("--max-pixels", "0", "--max-pixels must be a positive integer; received 0.")]
    [InlineData("--max-pixels", "-1", "--max-pixels must be a positive integer; received -1.")]
    [InlineData("--max-pixels", "899", "30x30 = 900 pixels exceeds the pixel budget of 899 pixels (raise it with ImageDecodeOptions.MaxPixels or --max-pixels)")]
    public void PredictCommandValidatesItsImageOptions(string option, string value, string expected)
    {
        var a = Png("a.png", 30, 30, (y, x) => ((byte)(x * 8), (byte)(y * 8), 90));
        var (code, _, error) = Cli("predict", "lenet5", a, option, value);
        Assert.Equal(1, code);
        Assert.Contains(expected, error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void ImageNetWeightsOfflineAndAbsentNameTheFileAndWhereToPutIt()
    {
        var cache = new WeightsCache(Path.Combine(dir, "cache"), Offline: true);
        var e = Assert.Throws<ConvKitException>(() => ModelRegistry.Create("vgg16", new ModelOptions { Weights = "imagenet", IncludeTop = false, WeightsCache = cache }));
        Assert.Contains("vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", e.Message);
        Assert.Contains(cache.Directory, e.Message);
        Assert.Contains("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/", e.Message);
        var noKeras = Assert.Throws<LayerArgumentException>(() => ModelRegistry.Create("lenet5", new ModelOptions { Weights = "imagenet", WeightsCache = cache }));
        Assert.Contains("resnet50", noKeras.Message);
    }

    [Fact]
    public void CachedFilesAreVerifiedWithKerasMd5()
    {
        var cache = new WeightsCache(dir, Offline: true);
        var content = "not really weights"u8.ToArray();
        File.WriteAllBytes(Path.Combine(dir, "w.h5"), content);
        var good = new PretrainedFile("w.h5", "https://example.invalid/w.h5", Convert.ToHexStringLower(MD5.HashData(content)));
        Assert.Equal(Path.Combine(dir, "w.h5"), cache.Resolve(good));
        var e = Assert.Throws<ConvKitException>(() => cache.Resolve(good with { Md5 = "64373286793e3c8b2b4e3219cbf3544b" }));
        Assert.Contains("MD5", e.Message);
        Assert.Contains("64373286793e3c8b2b4e3219cbf3544b", e.Message);
        Assert.Equal("64373286793e3c8b2b4e3219cbf3544b", WeightsCache.KerasImageNet("vgg16", includeTop: true).Md5);
    }
}
