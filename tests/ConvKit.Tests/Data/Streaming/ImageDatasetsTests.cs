using ConvKit.Data;
using ConvKit.Data.Imaging;
using ConvKit.Data.Streaming;
using StbImageWriteSharp;

namespace ConvKit.Tests.Data.Streaming;

public class ImageDatasetsTests
{
    internal static byte[] Solid(int h, int w, int channels, params byte[] value)
    {
        var data = new byte[h * w * channels];
        for (int i = 0; i < h * w; i++) for (int c = 0; c < channels; c++) data[i * channels + c] = value[c];
        return data;
    }

    internal static void Write(string path, byte[] pixels, int h, int w, int channels = 3)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var s = File.Create(path);
        var writer = new ImageWriter();
        var comp = channels switch { 1 => ColorComponents.Grey, 4 => ColorComponents.RedGreenBlueAlpha, _ => ColorComponents.RedGreenBlue };
        switch (Path.GetExtension(path))
        {
            case ".png": writer.WritePng(pixels, w, h, comp, s); break;
            case ".bmp": writer.WriteBmp(pixels, w, h, comp, s); break;
            default: writer.WriteJpg(pixels, w, h, comp, s, 95); break;
        }
    }

    static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "Imaging", name);

    static List<DataBatch> All(DataLoader loader, int epoch = 0) => loader.Batches(epoch).ToList();

    [Fact]
    public void LabelsComeFromSortedSubfolders_EveryFormatAndModeIsConverted()
    {
        using var tmp = new TempFolder();
        Write(tmp["b/1.png"], Solid(6, 6, 3, 0, 0, 255), 6, 6);
        Write(tmp["b/2.jpg"], Solid(8, 4, 3, 0, 0, 250), 8, 4);
        Write(tmp["b/3.bmp"], Solid(4, 4, 3, 0, 0, 255), 4, 4);
        Write(tmp["b/nested/4.png"], Solid(4, 4, 1, 128), 4, 4, channels: 1);
        Write(tmp["a/5.png"], Solid(4, 4, 4, 255, 0, 0, 100), 4, 4, channels: 4);
        File.Copy(Fixture("gradient.gif"), tmp["a/6.gif"]);
        File.Copy(Fixture("gradient.webp"), tmp["a/7.webp"]);
        File.WriteAllText(tmp["a/notes.txt"], "not an image");
        using var rgb = ImageDatasets.ImageDatasetFromDirectory(tmp.Path, batchSize: 4, imageSize: (4, 4), shuffle: false);
        Assert.Equal(new[] { "a", "b" }, rgb.ClassNames);
        Assert.Equal(7, rgb.Count);
        var source = (ImageFileSource)rgb.Source;
        Assert.Equal(new[] { 0, 0, 0, 1, 1, 1, 1 }, source.Files.Select(f => f.Label));
        Assert.EndsWith(Path.Combine("b", "nested", "4.png"), source.Files[^1].Path);
        var batches = All(rgb);
        Assert.Equal(7, batches.Sum(b => b.Count));
        Assert.Empty(rgb.Skipped);
        var x = batches.SelectMany(b => b.Pixels).ToArray();
        Assert.Equal(7 * 4 * 4 * 3, x.Length);
        Assert.Equal(1f, x[0], 3); // a/5.png: red, alpha dropped
        Assert.Equal(128 / 255f, x[6 * 48], 3); // the grey PNG as RGB
        Assert.Equal(128 / 255f, x[6 * 48 + 2], 3);

        using var grey = ImageDatasets.ImageDatasetFromDirectory(tmp.Path, imageSize: (4, 4), colorMode: ColorMode.Grayscale, shuffle: false, rescale: 1);
        Assert.Equal(1, grey.Source.Channels);
        var g = All(grey).SelectMany(b => b.Pixels).ToArray();
        Assert.Equal(7 * 16, g.Length);
        Assert.Equal(128, g[6 * 16]);
        using var rgba = ImageDatasets.ImageDatasetFromDirectory(tmp.Path, imageSize: (4, 4), colorMode: ColorMode.Rgba, shuffle: false, rescale: 1);
        var a = All(rgba).SelectMany(b => b.Pixels).ToArray();
        Assert.Equal(100, a[3]); // a/5.png keeps its alpha
        Assert.Equal(255, a[6 * 64 + 3]); // opaque grey PNG: alpha 255
    }

    [Fact]
    public void ValidationSplitSubsetsNeverOverlap_AndTogetherCoverEveryFile()
    {
        using var tmp = new TempFolder();
        for (int i = 0; i < 30; i++) Write(tmp[$"{(i % 3 == 0 ? "x" : "y")}/{i:D2}.png"], Solid(2, 2, 3, (byte)i, 0, 0), 2, 2);
        HashSet<string> Files(DataLoader l) => ((ImageFileSource)l.Source).Files.Select(f => f.Path).ToHashSet();
        using var train = ImageDatasets.ImageDatasetFromDirectory(tmp.Path, imageSize: (2, 2), validationSplit: 0.2, subset: DatasetSubset.Training, seed: 7);
        using var val = ImageDatasets.ImageDatasetFromDirectory(tmp.Path, imageSize: (2, 2), validationSplit: 0.2, subset: DatasetSubset.Validation, seed: 7);
        Assert.Equal(24, train.Count);
        Assert.Equal(6, val.Count);
        Assert.Empty(Files(train).Intersect(Files(val)));
        Assert.Equal(30, Files(train).Union(Files(val)).Count());
        // Another seed splits differently, and again without overlap.
        using var val2 = ImageDatasets.ImageDatasetFromDirectory(tmp.Path, imageSize: (2, 2), validationSplit: 0.2, subset: DatasetSubset.Validation, seed: 8);
        Assert.NotEqual(Files(val), Files(val2));

        // The list-file form splits the same way.
        var csv = tmp["list.csv"];
        File.WriteAllLines(csv, ["path,label", .. Directory.GetFiles(tmp.Path, "*.png", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Select(f => $"{Path.GetRelativePath(tmp.Path, f)},{Path.GetFileName(Path.GetDirectoryName(f))}")]);
        using var ctrain = ImageDatasets.ImageDatasetFromCsv(csv, imageSize: (2, 2), validationSplit: 0.2, subset: DatasetSubset.Training, seed: 7);
        using var cval = ImageDatasets.ImageDatasetFromCsv(csv, imageSize: (2, 2), validationSplit: 0.2, subset: DatasetSubset.Validation, seed: 7);
        Assert.Equal(new[] { "x", "y" }, ctrain.ClassNames);
        Assert.Empty(Files(ctrain).Intersect(Files(cval)));
        Assert.Equal(30, Files(ctrain).Union(Files(cval)).Count());
        Assert.Equal(Files(val), Files(cval));
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void SplitArgumentsAreChecked_AsKerasDoes()
    {
        using var tmp = new TempFolder();
        for (int i = 0; i < 4; i++) Write(tmp[$"{i % 2}/{i}.png"], Solid(2, 2, 3, 1, 2, 3), 2, 2);
        Assert.Contains("seed", Assert.Throws<InvalidOptionException>(() => ImageDatasets.ImageDatasetFromDirectory(tmp.Path, validationSplit: 0.5, subset: DatasetSubset.Training)).Message);
        Assert.Contains("subset", Assert.Throws<InvalidOptionException>(() => ImageDatasets.ImageDatasetFromDirectory(tmp.Path, validationSplit: 0.5, seed: 1)).Message);
        Assert.Contains("validation_split", Assert.Throws<InvalidOptionException>(() => ImageDatasets.ImageDatasetFromDirectory(tmp.Path, subset: DatasetSubset.Validation, seed: 1)).Message);
        Assert.Contains("empty training or validation", Assert.Throws<DatasetFormatException>(() => ImageDatasets.ImageDatasetFromDirectory(tmp.Path, validationSplit: 0.1, subset: DatasetSubset.Validation, seed: 1)).Message);
        Assert.Contains("image_size", Assert.Throws<InvalidOptionException>(() => ImageDatasets.ImageDatasetFromDirectory(tmp.Path, imageSize: (0, 3))).Message);
    }

    /// <summary>Inserts an EXIF APP1 segment with the orientation tag right after a JPEG's SOI marker.</summary>
    internal static byte[] WithExifOrientation(byte[] jpeg, ushort orientation)
    {
        byte[] app1 =
        [
            0xFF, 0xE1, 0x00, 0x22, (byte)'E', (byte)'x', (byte)'i', (byte)'f', 0, 0,
            (byte)'M', (byte)'M', 0x00, 0x2A, 0x00, 0x00, 0x00, 0x08, // big-endian TIFF header, IFD at offset 8
            0x00, 0x01, // one entry
            0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, (byte)(orientation >> 8), (byte)orientation, 0x00, 0x00, // Orientation, SHORT, 1
            0x00, 0x00, 0x00, 0x00, // no next IFD
        ];
        return [.. jpeg.AsSpan(0, 2), .. app1, .. jpeg.AsSpan(2)];
    }

    [Fact]
    public void ExifOrientationIsApplied_ToARotatedJpeg()
    {
        using var tmp = new TempFolder();
        // Stored 16 wide x 8 high, left half red, right half blue; orientation 6 = displayed rotated 90 degrees clockwise,
        // so the image is 8 wide x 16 high with red on top.
        var stored = new byte[8 * 16 * 3];
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 16; x++)
                if (x < 8) stored[(y * 16 + x) * 3] = 255; else stored[(y * 16 + x) * 3 + 2] = 255;
        var plain = tmp["plain.jpg"];
        Write(plain, stored, 8, 16);
        Directory.CreateDirectory(tmp["red"]);
        Directory.CreateDirectory(tmp["blue"]);
        File.WriteAllBytes(tmp["red/rotated.jpg"], WithExifOrientation(File.ReadAllBytes(plain), 6));
        File.WriteAllBytes(tmp["blue/rotated.jpg"], WithExifOrientation(File.ReadAllBytes(plain), 8));

        var ignored = ImageDecoder.Decode(tmp["red/rotated.jpg"], 3);
        Assert.Equal((16, 8), (ignored.Width, ignored.Height));
        var turned = ImageDecoder.Decode(tmp["red/rotated.jpg"], 3, new ImageDecodeOptions { ApplyExifOrientation = true });
        Assert.Equal((8, 16), (turned.Width, turned.Height));
        Assert.True(turned.Pixels[(1 * 8 + 4) * 3] > 200 && turned.Pixels[(1 * 8 + 4) * 3 + 2] < 60, "top of the displayed image is red");
        Assert.True(turned.Pixels[(14 * 8 + 4) * 3 + 2] > 200, "bottom is blue");

        // The dataset applies it: orientation 8 (90 degrees counter-clockwise) puts blue on top.
        using var ds = ImageDatasets.ImageDatasetFromDirectory(tmp.Path, imageSize: (16, 8), shuffle: false, rescale: 1);
        var px = All(ds).SelectMany(b => b.Pixels).ToArray();
        int top = (1 * 8 + 4) * 3, bottom = (14 * 8 + 4) * 3, second = 16 * 8 * 3;
        Assert.True(px[second + top] > 200, "red/rotated.jpg: red on top"); // classes sorted: blue = 0, red = 1
        Assert.True(px[top + 2] > 200 && px[bottom] > 200, "blue/rotated.jpg: blue on top, red at the bottom");
    }

    [Fact]
    public void CropToAspectRatioTakesTheCentre_AntialiasIsOnByDefault()
    {
        using var tmp = new TempFolder();
        // 4 high x 8 wide: red, green, green, blue columns of width 2.
        var img = new byte[4 * 8 * 3];
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 8; x++)
                img[(y * 8 + x) * 3 + (x < 2 ? 0 : x < 6 ? 1 : 2)] = 255;
        Write(tmp["a/wide.png"], img, 4, 8);
        Write(tmp["b/checker.png"], Enumerable.Range(0, 64).SelectMany(i => Enumerable.Repeat((byte)(((i / 8) + (i % 8)) % 2 * 255), 3)).ToArray(), 8, 8);
        using var crop = ImageDatasets.ImageDatasetFromDirectory(tmp.Path, imageSize: (4, 4), shuffle: false, cropToAspectRatio: true, rescale: 1);
        var c = All(crop).SelectMany(b => b.Pixels).ToArray();
        for (int p = 0; p < 16; p++) Assert.Equal(new float[] { 0, 255, 0 }, c.Skip(p * 3).Take(3)); // only the green centre
        using var stretch = ImageDatasets.ImageDatasetFromDirectory(tmp.Path, imageSize: (4, 4), shuffle: false, rescale: 1);
        var s = All(stretch).SelectMany(b => b.Pixels).ToArray();
        Assert.True(s[0] > 200, "stretched: the red left edge stays");
        // The checkerboard downscaled 2x: antialiased to flat grey; without antialiasing, plain bilinear as Keras.
        Assert.All(s.Skip(48).Take(48), v => Assert.InRange(v, 120, 135));
        using var sharp = ImageDatasets.ImageDatasetFromDirectory(tmp.Path, imageSize: (4, 4), shuffle: false, antialias: false, rescale: 1);
        var expected = ImageResizer.Resize(ImageDecoder.Decode(tmp["b/checker.png"], 3), 4, 4, antialias: false).Pixels.Select(v => (float)v);
        Assert.Equal(expected, All(sharp).SelectMany(b => b.Pixels).Skip(48));
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void BadFoldersAreNamedErrors()
    {
        using var tmp = new TempFolder();
        var missing = tmp["nope"];
        Assert.Contains(missing, Assert.Throws<DatasetNotFoundException>(() => ImageDatasets.ImageDatasetFromDirectory(missing)).Message);
        Write(tmp["loose/1.png"], Solid(2, 2, 3, 1, 1, 1), 2, 2);
        Assert.Contains("move them into one folder per class", Assert.Throws<DatasetFormatException>(() => ImageDatasets.ImageDatasetFromDirectory(tmp["loose"])).Message);
        Write(tmp["single/only/1.png"], Solid(2, 2, 3, 1, 1, 1), 2, 2);
        Assert.Contains("single class folder ('only')", Assert.Throws<DatasetFormatException>(() => ImageDatasets.ImageDatasetFromDirectory(tmp["single"])).Message);
        Write(tmp["emptyclass/a/1.png"], Solid(2, 2, 3, 1, 1, 1), 2, 2);
        Directory.CreateDirectory(tmp["emptyclass/b"]);
        File.WriteAllText(tmp["emptyclass/b/readme.txt"], "x");
        Assert.Contains("class folder 'b' holds no image", Assert.Throws<DatasetFormatException>(() => ImageDatasets.ImageDatasetFromDirectory(tmp["emptyclass"])).Message);
        Directory.CreateDirectory(tmp["noimages/a"]);
        Directory.CreateDirectory(tmp["noimages/b"]);
        Assert.Contains("holds no image", Assert.Throws<DatasetFormatException>(() => ImageDatasets.ImageDatasetFromDirectory(tmp["noimages"])).Message);
        Assert.Contains("'c'", Assert.Throws<DatasetFormatException>(() => ImageDatasets.ImageDatasetFromDirectory(tmp["emptyclass"], classNames: ["a", "c"])).Message);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void SymlinkLoopsAreANamedError_OrNotFollowed()
    {
        using var tmp = new TempFolder();
        Write(tmp["d/a/1.png"], Solid(2, 2, 3, 1, 1, 1), 2, 2);
        Write(tmp["d/b/2.png"], Solid(2, 2, 3, 1, 1, 1), 2, 2);
        Directory.CreateSymbolicLink(tmp["d/a/loop"], tmp["d/a"]);
        var e = Assert.Throws<DatasetFormatException>(() => ImageDatasets.ImageDatasetFromDirectory(tmp["d"], followLinks: true));
        Assert.Contains("symbolic-link loop", e.Message);
        Assert.Contains("loop", e.Message);
        using var ds = ImageDatasets.ImageDatasetFromDirectory(tmp["d"], imageSize: (2, 2));
        Assert.Equal(2, ds.Count);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void UndecodableFilesAreSkippedWithTheirNames_NeverAFailureMidEpoch()
    {
        using var tmp = new TempFolder();
        for (int i = 0; i < 6; i++) Write(tmp[$"{i % 2}/{i}.png"], Solid(3, 3, 3, 9, 9, 9), 3, 3);
        var good = File.ReadAllBytes(tmp["0/0.png"]);
        File.WriteAllBytes(tmp["0/truncated.png"], good[..(good.Length / 2)]);
        File.WriteAllText(tmp["1/fake.jpg"], "this is not a JPEG");
        var warnings = new StringWriter();
        using var ds = ImageDatasets.ImageDatasetFromDirectory(tmp.Path, imageSize: (3, 3), batchSize: 3, workers: 2, seed: 1);
        ds.Warnings = warnings;
        Assert.Equal(6, All(ds).Sum(b => b.Count));
        var text = warnings.ToString();
        Assert.Contains("truncated.png", text);
        Assert.Contains("fake.jpg", text);
        Assert.Contains("2 of 8 files could not be decoded and were skipped", text);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void ListFilesAreParsed_AndBadLinesNamed()
    {
        using var tmp = new TempFolder();
        Write(tmp["img/a,1.png"], Solid(2, 2, 3, 1, 1, 1), 2, 2);
        Write(tmp["img/b.png"], Solid(2, 2, 3, 1, 1, 1), 2, 2);
        Write(tmp["img/c.png"], Solid(2, 2, 3, 1, 1, 1), 2, 2);
        var csv = tmp["list.csv"];
        File.WriteAllLines(csv, ["path,label", "\"img/a,1.png\",10", "img/b.png,2", "", $"{tmp["img/c.png"]},2"]);
        using var ds = ImageDatasets.ImageDatasetFromCsv(csv, imageSize: (2, 2), shuffle: false);
        Assert.Equal(new[] { "2", "10" }, ds.ClassNames); // integers sort numerically
        Assert.Equal(new[] { 1, 0, 0 }, ((ImageFileSource)ds.Source).Files.Select(f => f.Label));
        Assert.Equal(3, All(ds).Sum(b => b.Count));

        File.WriteAllLines(csv, ["img/b.png,x", "img/c.png"]);
        Assert.Contains("line 2", Assert.Throws<DatasetFormatException>(() => ImageDatasets.ImageDatasetFromCsv(csv)).Message);
        File.WriteAllLines(csv, ["img/b.png,x", "img/c.png,x"]);
        Assert.Contains("at least two classes", Assert.Throws<DatasetFormatException>(() => ImageDatasets.ImageDatasetFromCsv(csv)).Message);
        File.WriteAllLines(csv, ["\"img/b.png,x"]);
        Assert.Contains("not closed", Assert.Throws<DatasetFormatException>(() => ImageDatasets.ImageDatasetFromCsv(csv)).Message);
        Assert.Throws<DatasetNotFoundException>(() => ImageDatasets.ImageDatasetFromCsv(tmp["none.csv"]));
    }
}
