using ConvKit.Tests.Data;

namespace ConvKit.Tests.Cli;

/// <summary>convkit train --label-smoothing / --mixup / --cutmix / --schedule / --warmup-epochs, and history.csv's elapsed_seconds.</summary>
[Collection(nameof(ConvKit.Tests.Training.GlobalRandomCollection))]
public class TrainRecipeTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-recipe-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    string Data()
    {
        var data = Path.Combine(dir, "data");
        if (!Directory.Exists(data)) DataFiles.WriteIdxDataset(data, trainCount: 96, testCount: 20);
        return data;
    }

    [Fact]
    public void ARecipeRunLogsTheRateAndTheElapsedTimeOfEveryEpoch()
    {
        var run = Path.Combine(dir, "run");
        var (code, output, error) = CliRunner.Run("train", "lenet5", "--data", Data(), "--epochs", "3", "--batch-size", "16", "--verbose", "0",
            "--optimizer", "sgd", "--lr", "0.05", "--label-smoothing", "0.1", "--mixup", "0.4", "--cutmix", "1", "--schedule", "cosine", "--warmup-epochs", "1", "--weight-decay", "5e-3", "--tta", "flip", "--out", run);
        Assert.True(code == 0, error);
        Assert.Contains("label smoothing 0.1, mixup 0.4, cutmix 1, weight decay 0.005, cosine schedule after 1 warm-up epochs", output);
        Assert.Contains("\"WeightDecay\": 0.005", File.ReadAllText(Path.Combine(run, "train-settings.json"))); // what --resume reads
        Assert.Contains("since process start", output);
        Assert.Contains("test accuracy, flip TTA", output);
        Assert.Contains("\"accuracy_flip_tta\"", File.ReadAllText(Path.Combine(run, "history.json")));
        var csv = File.ReadAllLines(Path.Combine(run, "history.csv"));
        var header = csv[0].Split(',');
        int elapsed = Array.IndexOf(header, "elapsed_seconds"), lr = Array.IndexOf(header, "lr");
        Assert.True(elapsed > 0 && lr > 0, csv[0]);
        var rows = csv.Skip(1).Select(l => l.Split(',')).ToArray();
        Assert.Equal(3, rows.Length);
        var seconds = rows.Select(r => double.Parse(r[elapsed], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.True(seconds[0] > 0 && seconds[1] >= seconds[0] && seconds[2] >= seconds[1], csv[1]);
        // The rate at the end of each epoch: 6 steps per epoch (86 training images, batch 16), warm-up 6 steps, cosine over 12.
        var rates = rows.Select(r => double.Parse(r[lr], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(0.05 * 5 / 6, rates[0], 6);
        Assert.Equal(0.05 * 0.5 * (1 + Math.Cos(Math.PI * 5 / 12)), rates[1], 6);
        Assert.Equal(0.05 * 0.5 * (1 + Math.Cos(Math.PI * 11 / 12)), rates[2], 6);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData(new[] { "--label-smoothing", "1" }, "--label-smoothing must be at least 0 and less than 1; received 1")]
    [InlineData(new[] { "--label-smoothing", "-0.1" }, "--label-smoothing must be at least 0 and less than 1; received -0.1")]
    [InlineData(new[] { "--mixup", "-1" }, "--mixup must be a finite alpha >= 0 (0: off); received -1")]
    [InlineData(new[] { "--cutmix", "NaN" }, "--cutmix must be a finite alpha >= 0 (0: off); received NaN")]
    [InlineData(new[] { "--schedule", "step" }, "--schedule must be constant or cosine; received 'step'")]
    [InlineData(new[] { "--warmup-epochs", "1" }, "--warmup-epochs needs --schedule cosine")]
    [InlineData(new[] { "--weight-decay", "-0.001" }, "--weight-decay must be at least 0 and less than 1; received -0.001")]
    [InlineData(new[] { "--tta", "crop" }, "--tta must be none or flip; received 'crop'")]
    [InlineData(new[] { "--schedule", "cosine", "--warmup-epochs", "1" }, "--warmup-epochs must be fewer than --epochs (1)")]
    [InlineData(new[] { "--schedule", "cosine", "--warmup-epochs", "-1" }, "--warmup-epochs must be 0 or more; received -1")]
    public void BadRecipeOptionsGiveNamedErrorsAndWriteNothing(string[] options, string expected)
    {
        var outDir = Path.Combine(dir, "out");
        var (code, _, error) = CliRunner.Run(new[] { "train", "lenet5", "--data", Data(), "--epochs", "1", "--verbose", "0", "--out", outDir }.Concat(options).ToArray());
        Assert.Equal(1, code);
        Assert.StartsWith("error: ", error);
        Assert.Contains(expected, error);
        Assert.DoesNotContain("   at ", error);
        Assert.False(Directory.Exists(outDir), "a refused run created --out");
    }

    // train-settings.json of runs saved before --weight-decay and --tta existed: --resume reads them as off.
    [Fact]
    public void RecipeSettingsSavedBeforeWeightDecayAndTtaExistedReadAsOff()
    {
        var old = System.Text.Json.JsonSerializer.Deserialize<ConvKit.Cli.Commands.TrainRecipeSettings>(
            """{ "LabelSmoothing": 0.1, "MixUp": 0, "CutMix": 0, "Schedule": "cosine", "WarmupEpochs": 1 }""")!;
        Assert.Equal(0, old.WeightDecay);
        Assert.Equal("none", old.Tta);
        ConvKit.Cli.Commands.TrainRecipeOptions.Validate(old, epochs: 3);
    }
}
