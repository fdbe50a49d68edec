using ConvKit.Data;
using TorchSharp;

namespace ConvKit.Tests.Data;

public class IdxTests
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ReadsImagesAndLabels_GzipOrRaw(bool gzip)
    {
        using var tmp = new TempFolder();
        var (images, labels) = DataFiles.WriteIdxPair(tmp.Path, "train", 4, 3, 5, gzip);
        using var x = Idx.ReadImages(images);
        using var y = Idx.ReadLabels(labels);
        Assert.Equal(new long[] { 4, 3, 5, 1 }, x.shape);
        Assert.Equal(torch.ScalarType.Byte, x.dtype);
        Assert.Equal(torch.ScalarType.Int64, y.dtype);
        Assert.Equal(DataFiles.Pixels(4, 3, 5), x.data<byte>().ToArray());
        Assert.Equal(new long[] { 0, 1, 2, 3 }, y.data<long>().ToArray());
        Assert.Equal((byte)(2 * 7 + 1 * 3 + 4), x[2, 1, 4, 0].item<byte>());
    }

    [Fact]
    public void Load_PairsImagesAndLabels()
    {
        using var tmp = new TempFolder();
        var (images, labels) = DataFiles.WriteIdxPair(tmp.Path, "train", 12, 28, 28, gzip: true);
        using var ds = Idx.Load(images, labels, ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]);
        Assert.Equal(12, ds.Count);
        Assert.Equal((28, 28, 1), (ds.Height, ds.Width, ds.Channels));
        Assert.Equal(1L, ds.Labels[11].item<long>()); // labels are i mod 10
    }

    [Fact]
    public void WrongMagic_NamesFileAndBothValues()
    {
        using var tmp = new TempFolder();
        var (images, labels) = DataFiles.WriteIdxPair(tmp.Path, "train", 2, 2, 2, gzip: false);
        // A label file where an image file is expected.
        var e = Assert.Throws<DatasetFormatException>(() => Idx.ReadImages(labels));
        Assert.Contains(labels, e.Message);
        Assert.Contains("0x00000803", e.Message);
        Assert.Contains("0x00000801", e.Message);
        Assert.Contains("offset 0", e.Message);
    }

    [Fact]
    public void NotIdxAtAll_IsRejectedBeforeAllocating()
    {
        using var tmp = new TempFolder();
        var path = tmp["junk"];
        File.WriteAllText(path, "hello world, this is not IDX");
        var e = Assert.Throws<DatasetFormatException>(() => Idx.ReadLabels(path));
        Assert.Contains("not an IDX file", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Truncated_ReportsExpectedAndFound(bool gzip)
    {
        using var tmp = new TempFolder();
        var full = DataFiles.Idx([3, 4, 4], DataFiles.Pixels(3, 4, 4)); // 16 + 48 bytes
        var cut = full[..50];
        var path = tmp["imgs"];
        File.WriteAllBytes(path, gzip ? DataFiles.Gzip(cut) : cut);
        var e = Assert.Throws<DatasetFormatException>(() => Idx.ReadImages(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("truncated", e.Message);
        if (gzip) Assert.Contains("offset 50", e.Message);
        else Assert.Contains("expected 64 bytes, found 50", e.Message);
    }

    [Fact]
    public void TruncatedHeader_IsReported()
    {
        using var tmp = new TempFolder();
        var path = tmp["short"];
        File.WriteAllBytes(path, [0, 0, 8, 3, 0, 0]);
        var e = Assert.Throws<DatasetFormatException>(() => Idx.ReadImages(path));
        Assert.Contains("truncated at byte offset 6", e.Message);
    }

    [Fact]
    public void TrailingData_IsReported()
    {
        using var tmp = new TempFolder();
        var path = tmp["labels"];
        File.WriteAllBytes(path, [.. DataFiles.Idx([3], [1, 2, 3]), 9]);
        var e = Assert.Throws<DatasetFormatException>(() => Idx.ReadLabels(path));
        Assert.Contains("expected 11 bytes, found 12", e.Message);
    }

    [Fact]
    public void HugeDeclaredDims_InSmallGzip_RejectedWithoutAllocating()
    {
        using var tmp = new TempFolder();
        var path = tmp["huge.gz"];
        // Declares 60000 x 28 x 28 = 47 MB in a file of a few dozen bytes: impossible for deflate.
        File.WriteAllBytes(path, DataFiles.Gzip(DataFiles.Idx([60000, 28, 28], [1, 2, 3])));
        var e = Assert.Throws<DatasetFormatException>(() => Idx.ReadImages(path));
        Assert.Contains("cannot expand", e.Message);
        // And dims whose product exceeds any array.
        File.WriteAllBytes(path, DataFiles.Idx([int.MaxValue, 65536, 2], []));
        Assert.Throws<DatasetFormatException>(() => Idx.ReadImages(path));
    }

    [Fact]
    public void BadGzip_IsReportedAsFormatError()
    {
        using var tmp = new TempFolder();
        var gz = DataFiles.Gzip(DataFiles.Idx([3, 4, 4], DataFiles.Pixels(3, 4, 4)));
        for (int i = 10; i < gz.Length - 8; i++) gz[i] ^= 0x5A; // corrupt the deflate stream, keep the 1f 8b header
        var path = tmp["bad.gz"];
        File.WriteAllBytes(path, gz);
        var e = Assert.Throws<DatasetFormatException>(() => Idx.ReadImages(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void TruncatedGzipFile_IsFormatError()
    {
        using var tmp = new TempFolder();
        var gz = DataFiles.Gzip(DataFiles.Idx([50, 28, 28], System.Security.Cryptography.RandomNumberGenerator.GetBytes(50 * 28 * 28)));
        var path = tmp["cut.gz"];
        File.WriteAllBytes(path, gz[..(gz.Length / 2)]);
        var e = Assert.Throws<DatasetFormatException>(() => Idx.ReadImages(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void CountMismatch_NamesBothFiles()
    {
        using var tmp = new TempFolder();
        var (images, _) = DataFiles.WriteIdxPair(tmp.Path, "a", 5, 2, 2, gzip: false);
        var (_, labels) = DataFiles.WriteIdxPair(tmp.Path, "b", 4, 2, 2, gzip: false);
        var e = Assert.Throws<DatasetFormatException>(() => Idx.Load(images, labels, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]));
        Assert.Contains(images, e.Message);
        Assert.Contains(labels, e.Message);
        Assert.Contains("5 images", e.Message);
        Assert.Contains("4 labels", e.Message);
    }

    [Fact]
    public void LabelOutOfRange_NamesOffset()
    {
        using var tmp = new TempFolder();
        var (images, labels) = DataFiles.WriteIdxPair(tmp.Path, "t", 3, 2, 2, gzip: false);
        File.WriteAllBytes(labels, DataFiles.Idx([3], [0, 1, 10]));
        var e = Assert.Throws<DatasetFormatException>(() => Idx.Load(images, labels, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]));
        Assert.Contains("label 10 at byte offset 10", e.Message);
        Assert.Contains("expected 0..9", e.Message);
    }
}
