using System.Text.Json;
using ConvKit.Tests.Data;
using ConvKit.Tests.Data.Streaming;

namespace ConvKit.Tests.Cli;

/// <summary><c>convkit train MODEL --data DIR</c> with one subfolder of images per class.</summary>
[Collection(nameof(ConvKit.Tests.Training.GlobalRandomCollection))]
public class TrainFolderTests : IDisposable
{
    readonly TempFolder tmp = new();

    public void Dispose() => tmp.Dispose();

    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    /// <summary>Two easy classes of 28x28 grey PNGs: "bright" has a light upper half, "dark" a light lower half.</summary>
    string WriteFolder(string name, int perClass, int size = 28)
    {
        var rng = new Random(5);
        foreach (var (cls, top) in new[] { ("bright", true), ("dark", false) })
            for (int i = 0; i < perClass; i++)
            {
                var px = new byte[size * size];
                for (int y = 0; y < size; y++)
                    for (int x = 0; x < size; x++)
                        px[y * size + x] = (byte)(((y < size / 2) == top ? 200 : 30) + rng.Next(40));
                ImageDatasetsTests.Write(tmp[$"{name}/{cls}/{i:D3}.png"], px, size, size, channels: 1);
            }
        return tmp[name];
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void TrainsOnAFolderOfPngs_EndToEnd_AndPredictPrintsTheFolderClassNames()
    {
        var data = WriteFolder("train", 150);
        var val = WriteFolder("val", 30);
        var outDir = tmp["run"];
        var (code, output, error) = Run("train", "lenet5", "--data", data, "--val-data", val, "--epochs", "3", "--lr", "0.003", "--batch-size", "32",
            "--workers", "2", "--cache", "memory", "--augment", "--verbose", "2", "--out", outDir);
        Assert.True(code == 0, error + output);
        Assert.Contains("300 images resized to (None, 28, 28, 1), 2 classes (bright, dark)", output);
        Assert.Contains("images/s", output);
        Assert.Contains("of the time waiting for data", output);
        using (var doc = JsonDocument.Parse(File.ReadAllText(tmp["run/model/training.json"])))
        {
            Assert.Equal(new[] { "bright", "dark" }, doc.RootElement.GetProperty("ClassNames").EnumerateArray().Select(e => e.GetString()));
            Assert.Equal("grayscale", doc.RootElement.GetProperty("ColorMode").GetString());
            Assert.Equal(new[] { 28, 28, 1 }, doc.RootElement.GetProperty("InputShape").EnumerateArray().Select(e => e.GetInt32()));
        }
        using (var doc = JsonDocument.Parse(File.ReadAllText(tmp["run/history.json"])))
            Assert.InRange(doc.RootElement.GetProperty("test").GetProperty("accuracy").GetDouble(), 0.9, 1.0);
        var (pcode, pout, perr) = Run("predict", outDir, tmp["val/dark/000.png"]);
        Assert.True(pcode == 0, perr);
        Assert.Contains("1.", pout);
        Assert.Matches(@"1\.\s+[\d.]+%\s+dark", pout);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void ValidationSplitOfTheFolder_AndImageSize()
    {
        var data = WriteFolder("train", 40, size: 20);
        var (code, output, error) = Run("train", "lenet5", "--data", data, "--validation-split", "0.25", "--image-size", "28x28",
            "--epochs", "1", "--verbose", "0", "--out", tmp["run"]);
        Assert.True(code == 0, error + output);
        Assert.Contains("60 images resized to (None, 28, 28, 1)", output);
        Assert.Contains("validation split 0.25 (20 images)", output);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void BadFoldersAndOptionsAreNamedByTheirCliNames()
    {
        var data = WriteFolder("train", 2);
        Directory.CreateDirectory(tmp["empty"]);
        var (code, _, err) = Run("train", "lenet5", "--data", tmp["empty"], "--out", tmp["o1"]);
        Assert.Equal(1, code);
        Assert.Contains(tmp["empty"], err); // an empty folder: the built-in dataset's loader says which files belong there
        Assert.Contains("fashion-mnist", err);
        Directory.CreateDirectory(tmp["classless/a"]);
        Directory.CreateDirectory(tmp["classless/b"]);
        (code, _, err) = Run("train", "lenet5", "--data", tmp["classless"], "--out", tmp["o1"]);
        Assert.Equal(1, code);
        Assert.Contains("has subfolders but no images in them", err);

        DataFiles.WriteIdxDataset(tmp["mixed"], trainCount: 4, testCount: 2);
        ImageDatasetsTests.Write(tmp["mixed/cats/1.png"], new byte[12], 2, 2);
        (code, _, err) = Run("train", "lenet5", "--data", tmp["mixed"], "--out", tmp["o2"]);
        Assert.Equal(1, code);
        Assert.Contains("--data", err);
        Assert.Contains("ambiguous", err);

        ImageDatasetsTests.Write(tmp["loose/1.png"], new byte[12], 2, 2);
        (code, _, err) = Run("train", "lenet5", "--data", tmp["loose"], "--out", tmp["o3"]);
        Assert.Contains("holds images directly", err);

        ImageDatasetsTests.Write(tmp["one/only/1.png"], new byte[12], 2, 2);
        (code, _, err) = Run("train", "lenet5", "--data", tmp["one"], "--validation-split", "0", "--out", tmp["o4"]);
        Assert.Equal(1, code);
        Assert.Contains("--data", err);
        Assert.Contains("single class folder", err);

        (code, _, err) = Run("train", "lenet5", "--data", data, "--image-size", "0x5", "--out", tmp["o5"]);
        Assert.Contains("--image-size", err);
        (code, _, err) = Run("train", "lenet5", "--data", data, "--cache", "ssd", "--out", tmp["o6"]);
        Assert.Contains("--cache must be memory or disk; received 'ssd'", err);
        (code, _, err) = Run("train", "lenet5", "--data", data, "--workers", "-1", "--out", tmp["o7"]);
        Assert.Contains("--workers", err);
        (code, _, err) = Run("train", "lenet5", "--data", data, "--tta", "flip", "--out", tmp["o8"]);
        Assert.Equal(1, code);
        Assert.Contains("--tta evaluates a built-in dataset's test set", err);
        (code, _, err) = Run("train", "lenet5", "--workers", "2", "--out", tmp["o8"]);
        Assert.Contains("--workers apply to --data DIR", err);

        ImageDatasetsTests.Write(tmp["otherval/bright/1.png"], new byte[12], 2, 2);
        ImageDatasetsTests.Write(tmp["otherval/cloudy/1.png"], new byte[12], 2, 2);
        (code, _, err) = Run("train", "lenet5", "--data", data, "--val-data", tmp["otherval"], "--out", tmp["o9"]);
        Assert.Equal(1, code);
        Assert.Contains("--val-data", err);
        Assert.Contains("missing dark", err);
        Assert.Contains("extra cloudy", err);
        foreach (var o in new[] { "o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9" })
            Assert.False(Directory.Exists(tmp[o]), $"{o} was created for a refused run");
    }
}
