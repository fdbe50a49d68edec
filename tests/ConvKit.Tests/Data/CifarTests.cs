using ConvKit.Data;

namespace ConvKit.Tests.Data;

public class CifarTests
{
    static void AssertRecord(ImageDataset ds, int sample, int record)
    {
        // Planar R, G, B in the file become the last axis; pixel p = row * 32 + col.
        foreach (var (r, c) in new[] { (0, 0), (0, 31), (17, 5), (31, 31) })
            for (int ch = 0; ch < 3; ch++)
                Assert.Equal(DataFiles.CifarValue(record, ch, r * 32 + c), ds.Images[sample, r, c, ch].item<byte>());
    }

    [Theory]
    [InlineData("folder")]
    [InlineData("subfolder")]
    [InlineData("archive")]
    public void Load10_FromFolderOrArchive(string form)
    {
        using var tmp = new TempFolder();
        string path;
        if (form == "archive")
        {
            path = tmp["cifar-10-binary.tar.gz"];
            DataFiles.WriteTarGz(path, DataFiles.Cifar10Files());
        }
        else
        {
            DataFiles.WriteFiles(tmp.Path, DataFiles.Cifar10Files());
            path = form == "folder" ? tmp["cifar-10-batches-bin"] : tmp.Path;
        }
        using var splits = Cifar.Load10(path);
        Assert.Equal(10, splits.Train.Count);
        Assert.Equal(3, splits.Test.Count);
        Assert.Equal(new long[] { 10, 32, 32, 3 }, splits.Train.Images.shape);
        Assert.Equal(new long[] { 0, 5, 1, 6, 2, 7, 3, 8, 4, 9 }, splits.Train.Labels.data<long>().ToArray());
        Assert.Equal(new long[] { 9, 0, 3 }, splits.Test.Labels.data<long>().ToArray());
        Assert.Equal("truck", splits.Train.ClassNames[9]);
        AssertRecord(splits.Train, sample: 3, record: 1); // second record of data_batch_2
        AssertRecord(splits.Test, sample: 2, record: 2);
    }

    [Theory]
    [InlineData(CifarLabelMode.Fine, new long[] { 99, 42, 1 }, "fine99")]
    [InlineData(CifarLabelMode.Coarse, new long[] { 19, 0, 7 }, "coarse19")]
    public void Load100_FineOrCoarse_FromArchive(CifarLabelMode mode, long[] expected, string firstName)
    {
        using var tmp = new TempFolder();
        var path = tmp["cifar-100-binary.tar.gz"];
        DataFiles.WriteTarGz(path, DataFiles.Cifar100Files());
        using var splits = Cifar.Load100(tmp.Path, mode);
        Assert.Equal(expected, splits.Train.Labels.data<long>().ToArray());
        Assert.Equal(mode == CifarLabelMode.Fine ? 100 : 20, splits.Train.ClassNames.Count);
        Assert.Equal(firstName, splits.Train.ClassNames[(int)expected[0]]);
        Assert.Equal(2, splits.Test.Count);
        AssertRecord(splits.Train, 2, 2);
    }

    [Fact]
    public void SizeNotMultipleOfRecord_IsReported()
    {
        using var tmp = new TempFolder();
        var files = DataFiles.Cifar10Files();
        files[2] = (files[2].Name, files[2].Data[..5000]);
        DataFiles.WriteFiles(tmp.Path, files);
        var e = Assert.Throws<DatasetFormatException>(() => Cifar.Load10(tmp.Path));
        Assert.Contains("data_batch_3.bin", e.Message);
        Assert.Contains("size 5000 bytes is not a multiple of the 3073-byte record", e.Message);
        Assert.Contains("byte offset 3073", e.Message);
    }

    [Fact]
    public void LabelOutOfRange_IsReported()
    {
        using var tmp = new TempFolder();
        var files = DataFiles.Cifar100Files();
        var train = files[0].Data;
        train[3074] = 20; // coarse label of record 1
        files[0] = (files[0].Name, train);
        DataFiles.WriteFiles(tmp.Path, files);
        using (Cifar.Load100(tmp.Path, CifarLabelMode.Fine)) { } // the fine labels are fine
        var e = Assert.Throws<DatasetFormatException>(() => Cifar.Load100(tmp.Path, CifarLabelMode.Coarse));
        Assert.Contains("label 20 at byte offset 3074 (record 1)", e.Message);
        Assert.Contains("expected 0..19", e.Message);
    }

    [Fact]
    public void TruncatedArchive_IsFormatError()
    {
        using var tmp = new TempFolder();
        var path = tmp["cifar-10-binary.tar.gz"];
        DataFiles.WriteTarGz(path, DataFiles.Cifar10Files());
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<DatasetFormatException>(() => Cifar.Load10(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void MissingFiles_AreNamed()
    {
        using var tmp = new TempFolder();
        var path = tmp["cifar-10-binary.tar.gz"];
        DataFiles.WriteTarGz(path, DataFiles.Cifar10Files().Where(f => !f.Name.EndsWith("test_batch.bin")));
        var e = Assert.Throws<DatasetFormatException>(() => Cifar.Load10(path));
        Assert.Contains("lacks test_batch.bin", e.Message);
        Assert.Throws<DatasetNotFoundException>(() => Cifar.Load10(tmp["nothing-here"]));
    }
}
