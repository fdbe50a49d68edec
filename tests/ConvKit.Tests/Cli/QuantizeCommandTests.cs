using ConvKit.Cli.Commands;
using ConvKit.Quantization;

namespace ConvKit.Tests.Cli;

/// <summary><c>convkit quantize RUN --calibration-data DIR|NAME</c> (issue 17 goal 3): the int8 file, the side-by-side
/// report, and every option named when it is wrong.</summary>
public class QuantizeCommandTests(TrainedRun run) : IClassFixture<TrainedRun>
{
    [Fact]
    public void WritesTheInt8ModelAndReportsAccuracyAndSpeedSideBySide()
    {
        var outDir = Path.Combine(run.Dir, "q8-out");
        var (code, output, error) = CliRunner.Run("quantize", run.Run, "--calibration-data", "fashion_mnist", "--samples", "64",
            "--speed-seconds", "0.2", "--out", outDir, "--threads", "1");
        Assert.True(code == 0, error + output);
        var file = Path.Combine(outDir, QuantizeCommand.FileName);
        Assert.True(File.Exists(file));
        Assert.Contains("MinMax on 64 samples", output);
        Assert.Contains("FP32", output);
        Assert.Contains("int8", output);
        Assert.Contains("fashion-mnist test split, 10000 images", output);
        Assert.Contains("images/s", output);
        using (var q = QuantizedModel.Load(file))
            Assert.Equal(new Shape(28, 28, 1), q.InputShape);

        var (evalCode, evalOutput, evalError) = CliRunner.Run("evaluate", file, "--dataset", "fashion_mnist", "--threads", "1");
        Assert.True(evalCode == 0, evalError + evalOutput);
        Assert.Contains("(int8, MinMax on 64 samples) on the fashion-mnist test split (10000 images)", evalOutput);
        Assert.Contains("accuracy", evalOutput);
        // The report, on a folder of class subfolders read with the preprocessing and class names stored in the file.
        var classes = Path.Combine(run.Dir, "q8-classes");
        using (var q = QuantizedModel.Load(file))
            foreach (var name in q.ClassNames!)
                for (int i = 0; i < 2; i++)
                {
                    Directory.CreateDirectory(Path.Combine(classes, name.Replace('/', '_')));
                    TrainedRun.WritePng(Path.Combine(classes, name.Replace('/', '_'), $"{i}.png"), 28 + i, 28);
                }
        var reportDir = Path.Combine(run.Dir, "q8-report");
        var (folderCode, folderOutput, folderError) = CliRunner.Run("evaluate", file, "--data", classes, "--report", reportDir, "--threads", "1");
        Assert.True(folderCode == 0, folderError + folderOutput);
        Assert.Contains($"(int8, MinMax on 64 samples) on '{classes}' (20 images, 10 classes)", folderOutput);
        using (var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(reportDir, "report.json"))))
            Assert.Equal(20, json.RootElement.GetProperty("samples").GetInt32());
        Assert.True(File.Exists(Path.Combine(reportDir, "confusion_matrix.png")));
        Assert.False(File.Exists(Path.Combine(reportDir, "gradcam.png")));
        var (camCode, _, camError) = CliRunner.Run("evaluate", file, "--dataset", "fashion_mnist", "--grad-cam", "2");
        Assert.NotEqual(0, camCode);
        Assert.Contains("--grad-cam does not apply to the int8 model", camError);

        var (noDataset, _, noDatasetError) = CliRunner.Run("evaluate", file);
        Assert.NotEqual(0, noDataset);
        Assert.Contains("--dataset is required", noDatasetError);

        // predict classifies images with it, named and prepared as for the FP32 run (stored in the file).
        var (predictCode, predicted, predictError) = CliRunner.Run("predict", file, run.Image, "--top", "1", "--threads", "1");
        Assert.True(predictCode == 0, predictError + predicted);
        using (var q = QuantizedModel.Load(file, threads: 1))
        {
            Assert.NotNull(q.Preprocessing);
            Assert.NotNull(q.ClassNames);
            using var classifier = new ConvKit.Applications.ImageClassifier(q, q.Preprocessing!.Value, q.ClassNames);
            var best = classifier.Predict([run.Image], top: 1)[0].Top[0];
            Assert.Contains($"{best.Name} ({best.Index})", predicted);
        }
        Assert.DoesNotContain("records no preprocessing", predicted);
        var (withWeights, _, weightsError) = CliRunner.Run("predict", file, run.Image, "--weights", run.ModelFile);
        Assert.NotEqual(0, withWeights);
        Assert.Contains("--weights does not apply to the int8 model", weightsError);
        var (withEngine, _, engineError) = CliRunner.Run("predict", file, run.Image, "--engine", "torchsharp");
        Assert.NotEqual(0, withEngine);
        Assert.Contains("--engine torchsharp does not apply", engineError);
        // A damaged int8 file is reported as a damaged ONNX file, naming the byte, not passed on as "an ONNX model".
        var bytes = File.ReadAllBytes(file);
        var truncated = Path.Combine(run.Dir, "q8-truncated.onnx");
        File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
        var (truncatedCode, _, truncatedError) = CliRunner.Run("predict", truncated, run.Image);
        Assert.NotEqual(0, truncatedCode);
        Assert.Contains("truncated or corrupt protobuf", truncatedError);
        Assert.Contains("at byte", truncatedError);
        Assert.DoesNotContain("   at ", truncatedError);
        var serveError = new StringWriter();
        Assert.Equal(1, ConvKit.Cli.Program.Run(["serve", file, "--weights", run.ModelFile, "--port", "0"], new StringWriter(), serveError));
        Assert.Contains("error: --weights does not apply to the int8 model", serveError.ToString());

        var (again, _, againError) = CliRunner.Run("quantize", run.Run, "--calibration-data", "fashion_mnist", "--samples", "16",
            "--speed-seconds", "0", "--out", outDir);
        Assert.NotEqual(0, again);
        Assert.Contains("--out", againError);
        Assert.Contains("--overwrite", againError);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("--samples", "--samples", "0")]
    [InlineData("--calibration-data", "--calibration-data", "no_such_dataset")]
    [InlineData("--calibration-data", "--calibration-data", "")]
    [InlineData("--batch-size", "--batch-size", "0")]
    [InlineData("--speed-seconds", "--speed-seconds", "-1")]
    [InlineData("--threads", "--threads", "0")]
    public void AWrongOptionIsNamed(string named, string option, string value)
    {
        string[] args = option == "--calibration-data"
            ? ["quantize", run.Run, option, value]
            : ["quantize", run.Run, "--calibration-data", "fashion_mnist", option, value];
        var (code, _, error) = CliRunner.Run(args);
        Assert.NotEqual(0, code);
        Assert.Contains(named, error);
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void CalibrationDataIsRequiredAndNamed()
    {
        var (code, _, error) = CliRunner.Run("quantize", run.Run);
        Assert.NotEqual(0, code);
        Assert.Contains("--calibration-data", error);
        Assert.DoesNotContain("   at ", error);
    }
}
