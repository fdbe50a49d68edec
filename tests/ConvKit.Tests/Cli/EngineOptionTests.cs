using ConvKit.Cli;

namespace ConvKit.Tests.Cli;

// Issue 17: 'convkit predict --engine auto|torchsharp|onnxruntime'.
[Collection(nameof(ConvKit.Tests.Training.GlobalRandomCollection))]
public class EngineOptionTests
{
    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("gpu")]
    [InlineData("")]
    public void AnUnknownEngineIsNamedByItsOption(string engine)
    {
        var (code, output, error) = CliRunner.Run("predict", "lenet5", "/nonexistent/a.png", "--engine", engine);
        Assert.NotEqual(0, code);
        Assert.Contains($"--engine must be auto, torchsharp or onnxruntime; received '{engine}'.", error);
        Assert.DoesNotContain("   at ", error + output);
    }

    [Fact]
    public void EveryEngineGivesTheSameTopClassesForTheSameImages()
    {
        var dir = Directory.CreateTempSubdirectory("convkit-engine-").FullName;
        try
        {
            // Seven images at batch size 2: four batches, so that Auto measures on the third.
            var images = Enumerable.Range(0, 7).Select(i => Path.Combine(dir, $"img{i}.png")).ToArray();
            foreach (var (p, i) in images.Select((p, i) => (p, i))) TrainedRun.WritePng(p, 28 + i, 30);
            // The same weights for every run (the zoo's are random per process).
            var weights = Path.Combine(dir, "lenet5.safetensors");
            using (var model = ConvKit.Applications.Zoo.LeNet5()) model.SaveWeights(weights);
            string? reference = null;
            foreach (var engine in new[] { "torchsharp", "onnxruntime", "auto" })
            {
                var (code, output, error) = CliRunner.Run(["predict", "lenet5", "--weights", weights, .. images, "--batch-size", "2", "--top", "3", "--engine", engine]);
                Assert.True(code == 0, $"{engine}: exit {code}: {error}");
                // Class order and names agree; the percentages may differ in the last printed digit.
                var classes = string.Join("\n", output.Split('\n').Where(l => l.TrimStart().Length > 0 && char.IsDigit(l.TrimStart()[0]))
                    .Select(l => l[(l.IndexOf('%') + 1)..].Trim()));
                Assert.Equal(21, classes.Split('\n').Length);
                reference ??= classes;
                Assert.Equal(reference, classes);
            }
        }
        finally { Directory.Delete(dir, true); }
    }
}
