using ConvKit.Saving;
using ConvKit.Tests.Data;
using static TorchSharp.torch;

namespace ConvKit.Tests.Cli;

/// <summary>convkit train --weights / --freeze-backbone / --fine-tune-epochs / --fine-tune-lr.</summary>
[Collection(nameof(ConvKit.Tests.Training.GlobalRandomCollection))]
public class TrainTransferTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-transfer-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    string Data()
    {
        var data = Path.Combine(dir, "data");
        if (!Directory.Exists(data)) DataFiles.WriteIdxDataset(data, trainCount: 96, testCount: 20);
        return data;
    }

    string Pretrained()
    {
        var run = Path.Combine(dir, "pretrained");
        var (code, _, error) = CliRunner.Run("train", "lenet5", "--data", Data(), "--epochs", "1", "--batch-size", "16", "--verbose", "0", "--out", run);
        Assert.True(code == 0, error);
        return run;
    }

    static bool SameTensor(string fileA, string fileB, string key)
    {
        using var a = SafeTensors.Read(fileA);
        using var b = SafeTensors.Read(fileB);
        using var ta = a.Get(key);
        using var tb = b.Get(key);
        return ta.shape.SequenceEqual(tb.shape) && ta.eq(tb).all().item<bool>();
    }

    [Fact]
    public void AFrozenBackboneFromAPreviousRunStaysBitIdenticalAndFineTuningThenTrainsIt()
    {
        var pretrained = Pretrained();
        var frozenRun = Path.Combine(dir, "frozen");
        var (code, output, error) = CliRunner.Run("train", "lenet5", "--data", Data(), "--epochs", "1", "--batch-size", "16", "--verbose", "0",
            "--weights", pretrained, "--freeze-backbone", "--out", frozenRun);
        Assert.True(code == 0, error);
        Assert.Contains($"Weights: loaded 10 weight tensors from '{Path.Combine(pretrained, "model", "model.safetensors")}' (Run); none skipped.", output);
        Assert.Contains("Backbone frozen (4 layers); training the head: dense_2.", output);
        Assert.Contains("Trainable params: 850 ", output); // dense_2: 84 x 10 + 10
        string before = Path.Combine(pretrained, "model", "model.safetensors"), after = Path.Combine(frozenRun, "model", "model.safetensors");
        foreach (var key in new[] { "conv2d/kernel", "conv2d_1/bias", "dense/kernel", "dense_1/kernel" })
            Assert.True(SameTensor(before, after, key), key);
        Assert.False(SameTensor(before, after, "dense_2/kernel"));

        var tunedRun = Path.Combine(dir, "tuned");
        (code, output, error) = CliRunner.Run("train", "lenet5", "--data", Data(), "--epochs", "1", "--batch-size", "16", "--verbose", "0",
            "--weights", pretrained, "--freeze-backbone", "--fine-tune-epochs", "1", "--fine-tune-lr", "1e-4", "--out", tunedRun);
        Assert.True(code == 0, error);
        Assert.Contains("Fine-tuning: backbone unfrozen (BatchNormalization stays frozen), 1 epochs at learning rate 0.0001.", output);
        var csv = File.ReadAllLines(Path.Combine(tunedRun, "history.csv"));
        Assert.Equal(3, csv.Length); // header, the frozen epoch, the fine-tuning epoch
        Assert.StartsWith("1,", csv[2]);
        Assert.False(SameTensor(before, Path.Combine(tunedRun, "model", "model.safetensors"), "conv2d/kernel"));
    }

    [Fact]
    public void BackboneLrFactorFineTunesTheBackboneAndTheHeadAtTheirOwnRates()
    {
        var pretrained = Pretrained();
        var run = Path.Combine(dir, "grouped");
        var (code, output, error) = CliRunner.Run("train", "lenet5", "--data", Data(), "--epochs", "1", "--batch-size", "16", "--verbose", "0",
            "--weights", pretrained, "--freeze-backbone", "--fine-tune-epochs", "1", "--fine-tune-lr", "1e-3", "--backbone-lr-factor", "0.1", "--out", run);
        Assert.True(code == 0, error);
        Assert.Contains("1 epochs at learning rate 0.001 for the head, 0.0001 for the backbone.", output);
        Assert.False(SameTensor(Path.Combine(pretrained, "model", "model.safetensors"), Path.Combine(run, "model", "model.safetensors"), "conv2d/kernel"));
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData(new[] { "--freeze-backbone" }, "--freeze-backbone needs --weights")]
    [InlineData(new[] { "--weights", "{run}", "--fine-tune-epochs", "2" }, "--fine-tune-epochs needs --freeze-backbone")]
    [InlineData(new[] { "--weights", "{run}", "--freeze-backbone", "--fine-tune-lr", "0.001" }, "--fine-tune-lr needs --fine-tune-epochs")]
    [InlineData(new[] { "--weights", "{run}", "--freeze-backbone", "--fine-tune-epochs", "1", "--fine-tune-lr", "-1" }, "--fine-tune-lr must be a positive finite number; received -1")]
    [InlineData(new[] { "--weights", "{run}", "--freeze-backbone", "--fine-tune-epochs", "-2" }, "--fine-tune-epochs must be 0 or more; received -2")]
    [InlineData(new[] { "--weights", "{run}", "--freeze-backbone", "--backbone-lr-factor", "0.1" }, "--backbone-lr-factor needs --fine-tune-epochs")]
    [InlineData(new[] { "--weights", "{run}", "--freeze-backbone", "--fine-tune-epochs", "1", "--backbone-lr-factor", "0" }, "--backbone-lr-factor must be a positive finite number; received 0")]
    [InlineData(new[] { "--weights", "/nonexistent/w.safetensors" }, "--weights '/nonexistent/w.safetensors' does not exist")]
    [InlineData(new[] { "--weights", "{png}" }, "--weights: ")]
    [InlineData(new[] { "--weights", "{empty}" }, "is a folder without a ConvKit model")]
    public void BadTransferOptionsGiveNamedErrorsAndWriteNothing(string[] options, string expected)
    {
        var png = Path.Combine(dir, "x.png");
        File.WriteAllBytes(png, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0]);
        var empty = Path.Combine(dir, "empty");
        Directory.CreateDirectory(empty);
        var run = Path.Combine(dir, "some-run");
        Directory.CreateDirectory(Path.Combine(run, "model"));
        var outDir = Path.Combine(dir, "out");
        var args = new[] { "train", "lenet5", "--data", Data(), "--epochs", "1", "--verbose", "0", "--out", outDir }
            .Concat(options.Select(o => o.Replace("{run}", run).Replace("{png}", png).Replace("{empty}", empty))).ToArray();
        var (code, _, error) = CliRunner.Run(args);
        Assert.Equal(1, code);
        Assert.StartsWith("error: ", error);
        Assert.Contains(expected, error);
        Assert.DoesNotContain("   at ", error);
        Assert.False(Directory.Exists(outDir), "a refused run created --out");
    }
}
