using System.Text.Json;
using ConvKit.Cli.Commands;

namespace ConvKit.Tests.Cli;

/// <summary><c>convkit evaluate</c>'s report and <c>convkit explain</c> on the shared small run.</summary>
public class EvaluateReportTests(TrainedRun run) : IClassFixture<TrainedRun>
{
    static readonly string[] ReportFiles = ["confusion_matrix.png", "confusion_matrix_normalized.png", "per_class.csv", "report.json", "mistakes.png", "gradcam.png"];

    [Fact]
    public void EvaluateWritesTheReportIntoTheRunFolderAndItsNumbersAgree()
    {
        var report = Path.Combine(run.Dir, "report-builtin");
        var (code, @out, err) = CliRunner.Run("evaluate", run.Run, "--data", run.Data, "--report", report, "--top-k", "3", "--grad-cam", "4");
        Assert.True(code == 0, err);
        foreach (var f in ReportFiles) Assert.True(new FileInfo(Path.Combine(report, f)).Length > 0, f);
        Assert.Contains("top-3 accuracy", @out);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(report, "report.json")));
        var root = json.RootElement;
        Assert.Equal(20, root.GetProperty("samples").GetInt64());
        var matrix = root.GetProperty("confusion_matrix").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
        long diagonal = Enumerable.Range(0, matrix.Length).Sum(i => matrix[i][i]);
        Assert.Equal(20, matrix.Sum(r => r.Sum()));
        Assert.Equal(diagonal / 20.0, root.GetProperty("accuracy").GetDouble(), 12);
        // per_class.csv's supports are the matrix's row sums.
        var rows = File.ReadAllLines(Path.Combine(report, "per_class.csv")).Skip(1).Take(matrix.Length).ToArray();
        for (int i = 0; i < matrix.Length; i++) Assert.EndsWith("," + matrix[i].Sum(), rows[i]);
        Tmpfs.AssertNoStrayFiles(report);
    }

    static string ClassFolder(string root, IEnumerable<string> classes)
    {
        foreach (var c in classes)
        {
            Directory.CreateDirectory(Path.Combine(root, c));
            TrainedRun.WritePng(Path.Combine(root, c, "a.png"), 28, 28);
            TrainedRun.WritePng(Path.Combine(root, c, "b.png"), 40, 30);
        }
        return root;
    }

    static readonly string[] FashionFolders = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    [Fact]
    public void EvaluateOnAFolderOfClassSubfolders()
    {
        var data = ClassFolder(Path.Combine(run.Dir, "classes-ok"), FashionFolders);
        var report = Path.Combine(run.Dir, "report-folder");
        var (code, @out, err) = CliRunner.Run("evaluate", run.Run, "--data", data, "--report", report, "--grad-cam", "2");
        Assert.True(code == 0, err);
        Assert.Contains("(20 images, 10 classes)", @out);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(report, "report.json")));
        Assert.Equal(20, json.RootElement.GetProperty("samples").GetInt64());
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void AnEvaluationFolderWhoseClassesDifferFromTheRunsIsANamedError()
    {
        var data = ClassFolder(Path.Combine(run.Dir, "classes-bad"), FashionFolders.Take(9).Append("Cat"));
        var report = Path.Combine(run.Dir, "report-bad");
        var (code, _, err) = CliRunner.Run("evaluate", run.Run, "--data", data, "--report", report);
        Assert.Equal(1, code);
        Assert.Contains("its class folders differ from the run's classes", err);
        Assert.Contains("not classes of the run: Cat", err);
        Assert.Contains("classes of the run without a folder: Ankle boot", err);
        Assert.False(Directory.Exists(report));
        Assert.Throws<EvaluationClassMismatchException>(() => new FolderReportImages(data, FashionFolders, new Shape(28, 28, 1), ConvKit.Applications.Preprocessing.None));
        foreach (var (args, expected) in new (string[], string)[]
        {
            (["--top-k", "0"], "--top-k must be at least 1"),
            (["--mistakes", "-1"], "--mistakes must be between 0 and 200"),
            (["--grad-cam", "1000"], "--grad-cam must be between 0 and 200"),
        })
        {
            (code, _, err) = CliRunner.Run(["evaluate", run.Run, "--data", run.Data, .. args]);
            Assert.Equal(1, code);
            Assert.Contains(expected, err);
        }
    }

    [Fact]
    public void ExplainWritesAHeatmapPerImage()
    {
        var outDir = Path.Combine(run.Dir, "explained");
        var (code, @out, err) = CliRunner.Run("explain", run.Run, run.Image, "--out", outDir);
        Assert.True(code == 0, err);
        var png = Path.Combine(outDir, Path.GetFileNameWithoutExtension(run.Image) + ".gradcam.png");
        Assert.True(new FileInfo(png).Length > 0);
        Assert.Contains("layer ", @out);
        (code, _, err) = CliRunner.Run("explain", run.Run, run.Image, "--out", outDir, "--class", "Bag");
        Assert.True(code == 0, err);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void ExplainNamesBadImagesClassesAndLayers()
    {
        var outDir = Path.Combine(run.Dir, "explained-bad");
        var bad = run.File("not-an-image.png", [1, 2, 3, 4]);
        var (code, _, err) = CliRunner.Run("explain", run.Run, bad, "--out", outDir);
        Assert.Equal(1, code);
        Assert.Contains("not-an-image.png", err);
        Assert.DoesNotContain("   at ", err);
        (code, _, err) = CliRunner.Run("explain", run.Run, run.Image, "--class", "Unicorn");
        Assert.Equal(1, code);
        Assert.Contains("--class 'Unicorn' is neither a class name", err);
        (code, _, err) = CliRunner.Run("explain", run.Run, run.Image, "--layer", "nope");
        Assert.Equal(1, code);
        Assert.Contains("no layer 'nope'", err);
        Assert.False(File.Exists(Path.Combine(outDir, "not-an-image.gradcam.png")));
    }
}
