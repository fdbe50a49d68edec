using System.Text.Json;
using System.Text.Json.Nodes;
using ConvKit.Applications;
using ConvKit.Saving;

namespace ConvKit.Tests.Cli;

/// <summary>Issue 12, section 4: predict/evaluate/export take what train writes, through one resolver.</summary>
[Collection(nameof(ConvKit.Tests.Training.GlobalRandomCollection))]
public class RunFolderTests(TrainedRun run) : IClassFixture<TrainedRun>
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    static string Top(string output) => output.Split('\n').First(l => l.TrimStart().StartsWith("1.", StringComparison.Ordinal)).Trim();

    [Fact]
    public void PredictTakesTheRunFolderTheModelFolderTheModelFileAndAZooNameWithTheseAsWeights()
    {
        // Before: 'predict lenet5 --weights runs/X/model/model.safetensors' failed with "no tensor 'conv2d.weight'".
        var forms = new[]
        {
            new[] { "predict", run.Run, run.Image },
            ["predict", run.ModelFolder, run.Image],
            ["predict", run.ModelFile, run.Image],
            ["predict", "lenet5", "--weights", run.ModelFile, run.Image],
            ["predict", "lenet5", "--weights", run.Run, run.Image],
        };
        string? first = null;
        foreach (var args in forms)
        {
            var (code, output, error) = Run(args);
            Assert.True(code == 0, string.Join(' ', args) + ": " + error);
            Assert.DoesNotContain("random weights", output);
            var top = Top(output);
            // The class names come from the run's training.json (Fashion-MNIST's), not "class N".
            Assert.Matches(@"%  (T-shirt/top|Trouser|Pullover|Dress|Coat|Sandal|Shirt|Sneaker|Bag|Ankle boot) \(\d\)$", top);
            Assert.Equal(first ??= top, top);
        }
    }

    [Fact]
    public void EvaluateAndExportTakeTheRunFolder()
    {
        var (code, output, error) = Run("evaluate", run.Run, "--data", run.Data);
        Assert.True(code == 0, error);
        Assert.Contains("fashion-mnist test split (20 images)", output);
        (code, output, error) = Run("evaluate", "lenet5", "--weights", run.ModelFolder, "--data", run.Data);
        Assert.True(code == 0, error); // the dataset comes from the training.json beside the weights
        var onnx = Path.Combine(run.Dir, "run.onnx");
        (code, output, error) = Run("export", run.Run, "--onnx", onnx);
        Assert.True(code == 0, error);
        Assert.Contains("input 'input_1' (N, 28, 28, 1)", output);
        Assert.Equal(FileKind.Onnx, FileSignature.Detect(onnx));
    }

    [Fact]
    public void TrainRecordsWhatIsNeededToUseTheModelAgain()
    {
        var info = TrainedModelFolder.ReadInfo(run.ModelFolder)!;
        Assert.Equal("lenet5", info.Model);
        Assert.Equal("fashion-mnist", info.Dataset);
        Assert.Equal([28, 28, 1], info.InputShape!);
        Assert.Equal("grayscale", info.ColorMode);
        Assert.Equal("None", info.Preprocessing);
        Assert.Equal(1.0 / 255, info.Rescale);
        Assert.Equal(10, info.ClassNames.Length);
        using var resolved = ModelResolver.Resolve(run.Run);
        Assert.Equal(ModelSourceKind.RunFolder, resolved.Kind);
        Assert.Equal("grayscale", resolved.ColorMode);
        Assert.Equal("lenet5", resolved.Zoo?.Name);
        Assert.Equal(Preprocessing.None, resolved.Preprocessing);
    }

    [Fact]
    public void ATrainingJsonWrittenBeforeTheNewFieldsStillLoads()
    {
        var folder = run.CopyModelFolder("old-json");
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "training.json")))!.AsObject();
        foreach (var key in new[] { "InputShape", "ColorMode", "Preprocessing", "Rescale" }) json.Remove(key);
        File.WriteAllText(Path.Combine(folder, "training.json"), json.ToJsonString());
        using var resolved = ModelResolver.Resolve(folder);
        Assert.Equal(ModelSourceKind.ModelFolder, resolved.Kind);
        Assert.Equal("grayscale", resolved.ColorMode); // from the model's input
        Assert.Equal("fashion-mnist", resolved.Dataset);
        Assert.Equal("Trouser", resolved.ClassNames![1]);
        var (code, _, error) = Run("predict", folder, run.Image);
        Assert.True(code == 0, error);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void ANameThatIsBothAZooModelAndAFolderIsAmbiguous()
    {
        var cwd = Path.Combine(run.Dir, "cwd");
        Directory.CreateDirectory(Path.Combine(cwd, "lenet5"));
        var e = Assert.Throws<ConvKitException>(() => ModelResolver.Resolve("lenet5", null, null, cwd));
        Assert.Contains("'lenet5' is ambiguous", e.Message);
        Assert.Contains("./lenet5", e.Message);
        using var folder = ModelResolver.Resolve(run.Run, null, null, cwd); // an absolute path is never ambiguous
        Assert.Equal(ModelSourceKind.RunFolder, folder.Kind);
    }

    [Fact]
    public void TrainRefusesANonEmptyOutUnlessOverwriteAndThenReplacesTheRunCleanly()
    {
        var outDir = Path.Combine(run.Dir, "again");
        string[] Args(params string[] extra) => ["train", "lenet5", "--data", run.Data, "--epochs", "1", "--batch-size", "32",
            "--verbose", "0", "--out", outDir, .. extra];
        Assert.Equal(0, Run(Args()).Code);
        var model = File.ReadAllBytes(Path.Combine(outDir, "model", "model.safetensors"));
        var events = Directory.GetFiles(Path.Combine(outDir, "tensorboard"), "*", SearchOption.AllDirectories);

        var (code, _, error) = Run(Args("--seed", "5"));
        Assert.Equal(1, code);
        Assert.Contains($"--out '{outDir}' is not empty", error);
        Assert.Contains("--overwrite", error);
        Assert.Equal(model, File.ReadAllBytes(Path.Combine(outDir, "model", "model.safetensors"))); // untouched

        (code, _, error) = Run(Args("--seed", "5", "--overwrite"));
        Assert.True(code == 0, error);
        Assert.NotEqual(model, File.ReadAllBytes(Path.Combine(outDir, "model", "model.safetensors")));
        var after = Directory.GetFiles(Path.Combine(outDir, "tensorboard"), "*", SearchOption.AllDirectories);
        Assert.Equal(events.Length, after.Length); // one run's event files, not two runs' mixed
        Assert.Empty(after.Intersect(events));
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void OverwriteRefusesAFolderHoldingOtherFiles()
    {
        var outDir = Path.Combine(run.Dir, "mine");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "thesis.tex"), "precious");
        var (code, _, error) = Run("train", "lenet5", "--data", run.Data, "--epochs", "1", "--out", outDir, "--overwrite");
        Assert.Equal(1, code);
        Assert.Contains("thesis.tex", error);
        Assert.DoesNotContain("   at ", error);
        Assert.Equal(["thesis.tex"], Directory.GetFileSystemEntries(outDir).Select(Path.GetFileName));
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void AHugeLearningRateStopsOnNaNWritesAReadableHistoryAndNoModel()
    {
        // Before: training went on with NaN loss, then ".NET number values such as infinity cannot be written as valid
        // JSON", no history or plots, and a model full of NaNs saved as the result with exit code 0.
        var outDir = Path.Combine(run.Dir, "nan");
        var (code, output, error) = Run("train", "lenet5", "--data", run.Data, "--epochs", "3", "--batch-size", "16", "--optimizer", "sgd",
            "--lr", "1e30", "--verbose", "0", "--out", outDir);
        Assert.Equal(2, code);
        Assert.Contains("Invalid loss, terminating training", output);
        Assert.StartsWith("error: training stopped in epoch 1", error);
        Assert.Contains("NaN or infinite", error);
        Assert.Contains("--lr", error);
        Assert.Single(error.Trim().Split('\n'));
        Assert.False(File.Exists(Path.Combine(outDir, "model", "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(outDir, "model", "model-nonfinite.safetensors")));
        var csv = File.ReadAllLines(Path.Combine(outDir, "history.csv"));
        Assert.Equal("epoch,accuracy,elapsed_seconds,loss,lr,val_accuracy,val_loss", csv[0]); // elapsed_seconds: the time curve
        Assert.Equal(2, csv.Length); // stopped in the first epoch
        Assert.Contains(",nan,", csv[1]);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "history.json")));
        Assert.Equal("NaN", doc.RootElement.GetProperty("history").GetProperty("loss")[0].GetString());
        Assert.True(File.Exists(Path.Combine(outDir, "accuracy.png"))); // finite curves are still plotted
        Assert.False(File.Exists(Path.Combine(outDir, "loss.png")));    // no finite loss to plot
        // The run folder is not mistaken for a usable model.
        var (evalCode, _, evalError) = Run("evaluate", outDir, "--data", run.Data);
        Assert.Equal(1, evalCode);
        Assert.Contains("folder without a model", evalError);
    }
}
