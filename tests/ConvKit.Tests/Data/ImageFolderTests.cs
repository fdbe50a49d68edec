using ConvKit.Data;
using StbImageWriteSharp;

namespace ConvKit.Tests.Data;

public class ImageFolderTests
{
    static byte[] Solid(int h, int w, byte r, byte g, byte b)
    {
        var data = new byte[h * w * 3];
        for (int i = 0; i < h * w; i++) (data[3 * i], data[3 * i + 1], data[3 * i + 2]) = (r, g, b);
        return data;
    }

    static void Write(string path, byte[] rgb, int h, int w)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var s = File.Create(path);
        var writer = new ImageWriter();
        if (path.EndsWith(".png", StringComparison.Ordinal)) writer.WritePng(rgb, w, h, ColorComponents.RedGreenBlue, s);
        else writer.WriteJpg(rgb, w, h, ColorComponents.RedGreenBlue, s, 95);
    }

    [Fact]
    public void LoadsClassesInOrdinalOrder_PngAndJpeg()
    {
        using var tmp = new TempFolder();
        // A gradient PNG checks exact pixel placement; JPEG is lossy, so it gets a solid colour.
        var gradient = new byte[4 * 6 * 3];
        for (int i = 0; i < gradient.Length; i++) gradient[i] = (byte)(i * 3);
        Write(tmp["cat/b.png"], gradient, 4, 6);
        Write(tmp["cat/a.jpg"], Solid(4, 6, 200, 40, 10), 4, 6);
        Write(tmp["Dog/x.png"], Solid(4, 6, 0, 0, 255), 4, 6);
        File.WriteAllText(tmp["Dog/notes.txt"], "ignored");
        using var ds = ImageFolder.Load(tmp.Path);
        Assert.Equal(new[] { "Dog", "cat" }, ds.ClassNames); // ordinal: upper case first
        Assert.Equal(new long[] { 3, 4, 6, 3 }, ds.Images.shape);
        Assert.Equal(new long[] { 0, 1, 1 }, ds.Labels.data<long>().ToArray());
        Assert.Equal(255, ds.Images[0, 2, 3, 2].item<byte>());
        Assert.InRange(ds.Images[1, 1, 1, 0].item<byte>(), 190, 210); // cat/a.jpg
        using var png = ds.Images[2];
        Assert.Equal(gradient, png.contiguous().data<byte>().ToArray()); // cat/b.png
    }

    [Fact]
    public void Resizes_WhenSizeGiven_AndRequiresEqualSizesOtherwise()
    {
        using var tmp = new TempFolder();
        Write(tmp["a/1.png"], Solid(8, 8, 10, 20, 30), 8, 8);
        Write(tmp["b/2.png"], Solid(5, 3, 90, 80, 70), 5, 3);
        var e = Assert.Throws<DatasetFormatException>(() => ImageFolder.Load(tmp.Path));
        Assert.Contains("2.png", e.Message);
        Assert.Contains("expected 8x8", e.Message);
        using var ds = ImageFolder.Load(tmp.Path, (4, 6));
        Assert.Equal(new long[] { 2, 4, 6, 3 }, ds.Images.shape);
        // A solid image stays solid after bilinear resizing.
        using var second = ds.Images[1].contiguous();
        Assert.All(second.data<byte>().ToArray().Chunk(3), px => Assert.Equal(new byte[] { 90, 80, 70 }, px));
    }

    [Fact]
    public void ResizeBilinear_InterpolatesHalfPixelCentres()
    {
        // 1x2 -> 1x4: output centres at 0.25, 0.75, 1.25, 1.75 map to input -0.25(clamped 0), 0.25, 0.75, 1.25(clamped 1).
        var resized = ConvKit.Data.Imaging.ImageResizer.Resize(new ConvKit.Data.Imaging.DecodedImage(2, 1, 1, [0, 100]), 1, 4);
        Assert.Equal(new byte[] { 0, 25, 75, 100 }, resized.Pixels);
    }

    [Fact]
    public void UndecodableImage_NamesFile()
    {
        using var tmp = new TempFolder();
        Directory.CreateDirectory(tmp["a"]);
        File.WriteAllText(tmp["a/broken.png"], "not a png");
        var e = Assert.Throws<DatasetFormatException>(() => ImageFolder.Load(tmp.Path));
        Assert.Contains("broken.png", e.Message);
    }

    [Fact]
    public void MissingOrEmptyRoot_IsReported()
    {
        using var tmp = new TempFolder();
        Assert.Throws<DatasetNotFoundException>(() => ImageFolder.Load(tmp["missing"]));
        Assert.Throws<DatasetFormatException>(() => ImageFolder.Load(tmp.Path));
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("truncated", "truncated PNG")]
    [InlineData("bomb", "exceeds the pixel budget")]
    [InlineData("strip", "extreme aspect ratio")]
    [InlineData("loop", "cannot read")]
    public void HostileImagesInAClassFolderAreNamed(string kind, string reason)
    {
        using var tmp = new TempFolder();
        Write(tmp["a/good.png"], Solid(8, 8, 1, 2, 3), 8, 8);
        var bad = tmp["b/bad.png"];
        Directory.CreateDirectory(tmp["b"]);
        switch (kind)
        {
            case "truncated": Write(bad, Solid(8, 8, 1, 2, 3), 8, 8); File.WriteAllBytes(bad, File.ReadAllBytes(bad)[..^13]); break;
            case "bomb": File.WriteAllBytes(bad, Imaging.ImageFiles.PngHeader(30000, 30000)); break;
            case "strip": File.WriteAllBytes(bad, Imaging.ImageFiles.PngHeader(1, 5000)); break;
            case "loop": File.CreateSymbolicLink(bad, bad); break;
        }
        var e = Assert.Throws<DatasetFormatException>(() => ImageFolder.Load(tmp.Path, (8, 8)));
        Assert.Contains($"image '{bad}': ", e.Message);
        Assert.Contains(reason, e.Message);
    }
}
