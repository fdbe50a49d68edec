using System.Text.Json;
using ConvKit.Cli;
using ConvKit.Tests.Data;

namespace ConvKit.Tests.Cli;

/// <summary>convkit train / evaluate: the main job, end to end. Not run in parallel with other classes: training
/// seeds torch's global generator, which concurrent tests would draw from.</summary>
[Collection(nameof(ConvKit.Tests.Training.GlobalRandomCollection))]
public class TrainCommandTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-train-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    static double TestAccuracy(string outDir)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "history.json")));
        return doc.RootElement.GetProperty("test").GetProperty("accuracy").GetDouble();
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void TrainsLeNet5OnTheRealFashionMnistAndTheSavedModelEvaluatesTheSame()
    {
        // One epoch of the README's main job on the real data (Debian's dataset-fashion-mnist, installed by .ci/run).
        var outDir = Path.Combine(dir, "run");
        var (code, output, error) = Run("train", "lenet5", "--epochs", "1", "--verbose", "2", "--out", outDir);
        Assert.True(code == 0, error);
        Assert.Contains("Total params: 61706", output);
        Assert.Contains("844/844", output);         // 54,000 training images in batches of 64
        Assert.Contains("val_accuracy", output);
        double accuracy = TestAccuracy(outDir);
        Assert.InRange(accuracy, 0.80, 1.0);       // one epoch of Adam reaches ~84%; chance is 10%
        foreach (var f in new[] { "summary.txt", "history.csv", "history.json", "loss.png", "accuracy.png", "model/model.safetensors", "model/training.json" })
            Assert.True(File.Exists(Path.Combine(outDir, f)), f);
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(outDir, "tensorboard"), "events.out.tfevents.*", SearchOption.AllDirectories));

        var (evalCode, evalOut, evalErr) = Run("evaluate", Path.Combine(outDir, "model"));
        Assert.True(evalCode == 0, evalErr);
        Assert.Contains($"{accuracy:P2}", evalOut);
    }

    [Fact]
    public void TrainsWithAugmentationOnAnIdxFolderAndRepeatsBitForBitWithTheSameSeed()
    {
        var data = Path.Combine(dir, "data");
        DataFiles.WriteIdxDataset(data, trainCount: 96, testCount: 20);
        string[] Args(string outDir) => ["train", "lenet5", "--dataset", "fashion-mnist", "--data", data, "--epochs", "2",
            "--batch-size", "16", "--augment", "--optimizer", "sgd", "--seed", "7", "--verbose", "0", "--out", outDir];
        var (code, output, error) = Run(Args(Path.Combine(dir, "a")));
        Assert.True(code == 0, error);
        Assert.Contains("random_flip (RandomFlip)", output);
        Assert.Contains(" random_translation (Random", output); // Keras wraps names longer than the column
        Assert.Equal(0, Run(Args(Path.Combine(dir, "b"))).Code);
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir, "a", "model", "model.safetensors")),
            File.ReadAllBytes(Path.Combine(dir, "b", "model", "model.safetensors")));
    }

    [Theory]
    [Trait("Catalogue", "Hostile")] // existing before issue 12
    [InlineData(new[] { "train", "nosuchnet" }, "nosuchnet")]
    [InlineData(new[] { "train", "lenet5", "--epochs", "0" }, "--epochs")]
    [InlineData(new[] { "train", "lenet5", "--dataset", "imagenet" }, "imagenet")]
    [InlineData(new[] { "evaluate", "/nonexistent/model" }, "'/nonexistent/model' does not exist")]
    public void BadArgumentsGiveOneLineErrors(string[] args, string mentioned)
    {
        var (code, _, error) = Run(args);
        Assert.Equal(1, code);
        Assert.StartsWith("error: ", error);
        Assert.Contains(mentioned, error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")] // existing before issue 12
    public void AMissingDatasetSaysWhereTheFilesGo()
    {
        var empty = Path.Combine(dir, "empty");
        Directory.CreateDirectory(empty);
        var (code, _, error) = Run("train", "lenet5", "--data", empty, "--out", Path.Combine(dir, "x"));
        Assert.Equal(1, code);
        Assert.Contains("fashion-mnist", error);
        Assert.Contains(empty, error);
    }
}
