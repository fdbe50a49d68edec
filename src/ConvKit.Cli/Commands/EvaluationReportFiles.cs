using System.Globalization;
using System.Text.Json;
using ConvKit.Applications;
using ConvKit.Data.Imaging;
using ConvKit.Evaluation;
using ConvKit.Models;
using ConvKit.Models.Inference;
using ConvKit.Saving;
using SkiaSharp;
using Spectre.Console;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Cli.Commands;

/// <summary>Test images an evaluation report reads: how many, their labels, and each image as the model sees it.</summary>
public interface IReportImages
{
    /// <summary>Number of images.</summary>
    long Count { get; }

    /// <summary>Batches of (model input in Keras layout, labels as model class indices), in order.</summary>
    IEnumerable<(Tensor X, Tensor Y)> Batches(int batchSize);

    /// <summary>Image <paramref name="index"/> at the model's input size: pixels in [0, 255], (H, W, C) row-major.</summary>
    float[] Pixels(long index);

    /// <summary>Image <paramref name="index"/> as the model takes it: a batch of one, Keras layout.</summary>
    Tensor Input(long index);

    /// <summary>A short name of image <paramref name="index"/> (its file name, or its index in a built-in split).</summary>
    string Describe(long index);
}

/// <summary>A built-in dataset's test split (uint8 images at the model's size, scaled by 1/255 for the model).</summary>
public sealed class TensorReportImages(Tensor images, Tensor labels) : IReportImages
{
    /// <inheritdoc/>
    public long Count => images.shape[0];

    /// <inheritdoc/>
    public IEnumerable<(Tensor X, Tensor Y)> Batches(int batchSize)
    {
        for (long start = 0; start < Count; start += batchSize)
        {
            long len = Math.Min(batchSize, Count - start);
            using var slice = images.narrow(0, start, len);
            using var x = ToModel(slice);
            using var y = labels.narrow(0, start, len);
            yield return (x, y);
        }
    }

    static Tensor ToModel(Tensor uint8)
    {
        using var f = uint8.to_type(float32);
        using var scale = (1f / 255).ToScalar();
        return f.mul(scale);
    }

    /// <inheritdoc/>
    public float[] Pixels(long index)
    {
        using var one = images[index].to_type(float32).contiguous();
        return one.data<float>().ToArray();
    }

    /// <inheritdoc/>
    public Tensor Input(long index)
    {
        using var one = images.narrow(0, index, 1);
        return ToModel(one);
    }

    /// <inheritdoc/>
    public string Describe(long index) => $"#{index}";
}

/// <summary>
/// A folder with one subfolder per class (Keras' <c>image_dataset_from_directory</c> layout), decoded one batch at a
/// time with the model's colour mode, size (shorter side resized, centre crop) and preprocessing, as <c>convkit
/// predict</c> does. Its class set must be the run's.
/// </summary>
public sealed class FolderReportImages : IReportImages
{
    static readonly string[] Extensions = [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"];
    readonly List<(string Path, int Label)> files = [];
    readonly Shape inputShape;
    readonly Preprocessing preprocessing;

    /// <summary>Lists the folder and maps its classes to the model's.</summary>
    /// <exception cref="ConvKitException">No class subfolder, no image, or a class set different from <paramref name="classNames"/> (the message lists both).</exception>
    public FolderReportImages(string root, IReadOnlyList<string> classNames, Shape inputShape, Preprocessing preprocessing)
    {
        this.inputShape = inputShape;
        this.preprocessing = preprocessing;
        var folders = Directory.GetDirectories(root).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();
        if (folders.Count == 0) throw new ConvKitException($"--data '{root}' has no class subfolders; expected one subfolder per class.");
        // A class name holding '/' (Fashion-MNIST's "T-shirt/top") cannot be a folder name: '_' stands for it.
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < classNames.Count; i++) index.TryAdd(classNames[i].Replace('/', '_'), i);
        var unknown = folders.Where(f => !index.ContainsKey(f)).ToList();
        var missing = index.Keys.Where(k => !folders.Contains(k)).ToList();
        if (unknown.Count > 0 || missing.Count > 0)
            throw new EvaluationClassMismatchException($"--data '{root}': its class folders differ from the run's classes" +
                (unknown.Count > 0 ? $"; not classes of the run: {string.Join(", ", unknown.Take(8))}" : "") +
                (missing.Count > 0 ? $"; classes of the run without a folder: {string.Join(", ", missing.Take(8))}" : "") +
                $". The run's classes: {string.Join(", ", index.Keys)}.");
        foreach (var folder in folders)
            files.AddRange(Directory.GetFiles(Path.Combine(root, folder))
                .Where(f => Extensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase))
                .Order(StringComparer.Ordinal).Select(f => (f, index[folder])));
        if (files.Count == 0) throw new ConvKitException($"--data '{root}': its class subfolders hold no PNG, JPEG, BMP, GIF or WebP image.");
    }

    /// <summary>Whether <paramref name="folder"/> is laid out as one subfolder of images per class (rather than a built-in dataset's files).</summary>
    public static bool IsClassFolderLayout(string folder) =>
        Directory.Exists(folder) && Directory.EnumerateDirectories(folder).Any(d =>
            Directory.EnumerateFiles(d).Any(f => Extensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase)));

    /// <inheritdoc/>
    public long Count => files.Count;

    /// <inheritdoc/>
    public IEnumerable<(Tensor X, Tensor Y)> Batches(int batchSize)
    {
        for (int start = 0; start < files.Count; start += batchSize)
        {
            var chunk = files.Skip(start).Take(batchSize).ToList();
            Tensor x;
            try
            {
                x = ImageClassifier.LoadImages(chunk.Select(f => f.Path).ToList(), inputShape, preprocessing);
            }
            catch (ImageDecodeException e)
            {
                throw new ConvKitException($"--data: {e.Message}", e);
            }
            using (x)
            using (var y = tensor(chunk.Select(f => (long)f.Label).ToArray()))
                yield return (x, y);
        }
    }

    /// <inheritdoc/>
    public float[] Pixels(long index)
    {
        var pixels = new float[inputShape[0] * inputShape[1] * inputShape[2]];
        ImageResizer.ResizeCenterCrop(ImageDecoder.Decode(files[(int)index].Path, inputShape[2]), inputShape[0], inputShape[1], pixels);
        return pixels;
    }

    /// <inheritdoc/>
    public Tensor Input(long index) => ImageClassifier.LoadImages([files[(int)index].Path], inputShape, preprocessing);

    /// <inheritdoc/>
    public string Describe(long index) => Path.GetFileName(files[(int)index].Path);
}

/// <summary>The evaluation folder's class set is not the run's.</summary>
public sealed class EvaluationClassMismatchException(string message) : ConvKitException(message);

/// <summary>
/// Writes an <see cref="EvaluationReport"/> into a folder: <c>confusion_matrix.png</c> (counts) and
/// <c>confusion_matrix_normalized.png</c> (rows divided by their support), <c>per_class.csv</c>, <c>report.json</c> (accuracy, top-k, averages, mistakes),
/// <c>mistakes.png</c> (the most confident mistakes as a grid) and <c>gradcam.png</c> (Grad-CAM over the first test
/// images), each file atomically; prints the per-class table.
/// </summary>
public static class EvaluationReportFiles
{
    /// <summary>The report's folder inside a run folder.</summary>
    public const string Folder = "evaluation";

    /// <summary>Writes the report; returns the files written.</summary>
    /// <exception cref="ConvKitException">A file cannot be written.</exception>
    /// <remarks>Grad-CAM needs gradients: it is drawn for a <see cref="Model"/> only.</remarks>
    public static IReadOnlyList<string> Write(CliConsole console, string folder, EvaluationReport report, IPredictor model, IReportImages images, int gradCamImages)
    {
        try
        {
            Directory.CreateDirectory(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConvKitException($"cannot create the report folder '{folder}': {e.Message}", e);
        }
        var written = new List<string>();
        void Save(string name, byte[] bytes)
        {
            var path = Path.Combine(folder, name);
            AtomicFile.WriteOrExplain(path, s => s.Write(bytes));
            written.Add(path);
        }
        Save("per_class.csv", System.Text.Encoding.UTF8.GetBytes(report.PerClassCsv()));
        Save("confusion_matrix.png", ConfusionPng(report, normalized: false));
        Save("confusion_matrix_normalized.png", ConfusionPng(report, normalized: true));
        var shape = model.InputShape;
        if (report.MostConfidentMistakes.Count > 0)
            Save("mistakes.png", Grid(report.MostConfidentMistakes.Select(m => (images.Pixels(m.Index),
                $"{images.Describe(m.Index)}", $"true {report.ClassNames[m.TrueClass]}", $"pred {report.ClassNames[m.PredictedClass]} {m.Confidence:P0}")).ToList(), shape, null));
        if (gradCamImages > 0 && model is Model fp32)
        {
            var cam = TryGradCam(console, fp32);
            if (cam is not null)
            {
                var tiles = new List<(float[], string, string, string)>();
                var heat = new List<float[]>();
                for (long i = 0; i < Math.Min(gradCamImages, images.Count); i++)
                {
                    using var x = images.Input(i);
                    var (maps, classes) = cam.Compute(x);
                    using (maps) heat.Add(maps.data<float>().ToArray());
                    tiles.Add((images.Pixels(i), images.Describe(i), $"pred {report.ClassNames[(int)classes[0]]}", $"layer {cam.LayerName}"));
                }
                Save("gradcam.png", Grid(tiles, shape, heat));
            }
        }
        var json = JsonSerializer.Serialize(new
        {
            samples = report.Count,
            accuracy = report.Accuracy,
            top_k = report.TopK,
            top_k_accuracy = report.TopKAccuracy,
            macro_precision = report.MacroPrecision,
            macro_recall = report.MacroRecall,
            macro_f1 = report.MacroF1,
            weighted_f1 = report.WeightedF1,
            classes = report.ClassNames,
            confusion_matrix = Enumerable.Range(0, report.ClassNames.Count).Select(i => Enumerable.Range(0, report.ClassNames.Count).Select(j => report.Confusion(i, j)).ToArray()).ToArray(),
            most_confident_mistakes = report.MostConfidentMistakes.Select(m => new { image = images.Describe(m.Index), index = m.Index, true_class = report.ClassNames[m.TrueClass], predicted = report.ClassNames[m.PredictedClass], confidence = m.Confidence }),
        }, new JsonSerializerOptions { WriteIndented = true });
        Save("report.json", System.Text.Encoding.UTF8.GetBytes(json));
        Print(console, report);
        return written;
    }

    static GradCam? TryGradCam(CliConsole console, Model model)
    {
        try
        {
            return GradCam.For(model);
        }
        catch (ConvKitException e)
        {
            console.Error.WriteLine($"warning: no Grad-CAM images: {CliConsole.OneLine(e.Message)}");
            return null;
        }
    }

    /// <summary>Prints the per-class table and the summary lines.</summary>
    public static void Print(CliConsole console, EvaluationReport report)
    {
        var table = new Table().AddColumns("class", "precision", "recall", "f1", "support");
        foreach (var m in report.PerClass)
            table.AddRow(Markup.Escape(m.Name), $"{m.Precision:F3}", $"{m.Recall:F3}", $"{m.F1:F3}", m.Support.ToString(CultureInfo.InvariantCulture));
        table.AddRow("[bold]macro avg[/]", $"{report.MacroPrecision:F3}", $"{report.MacroRecall:F3}", $"{report.MacroF1:F3}", report.Count.ToString(CultureInfo.InvariantCulture));
        console.Ansi.Write(table);
        console.Output.WriteLine($"accuracy {report.Accuracy:P2}, top-{report.TopK} accuracy {report.TopKAccuracy:P2}, weighted F1 {report.WeightedF1:F3} ({report.Count} images)");
    }

    /// <summary>The confusion matrix as a PNG (ScottPlot heatmap with the values written in the cells): counts, or
    /// each row divided by its support (the diagonal is then the recall).</summary>
    public static byte[] ConfusionPng(EvaluationReport report, bool normalized)
    {
        int c = report.ClassNames.Count;
        int cell = Math.Clamp(600 / c, 18, 60);
        int size = cell * c + 220;
        var values = new double[c, c];
        if (normalized) values = report.NormalizedConfusionMatrix();
        else for (int i = 0; i < c; i++) for (int j = 0; j < c; j++) values[i, j] = report.Confusion(i, j);
        var plot = normalized
            ? Matrix(values, report.ClassNames, "confusion matrix, normalized by true class (recall)", v => v.ToString("0.00", CultureInfo.InvariantCulture), cell)
            : Matrix(values, report.ClassNames, "confusion matrix (counts)", v => v.ToString("0", CultureInfo.InvariantCulture), cell);
        return plot.GetImage(size, size).GetImageBytes(ScottPlot.ImageFormat.Png);
    }

    static ScottPlot.Plot Matrix(double[,] values, IReadOnlyList<string> names, string title, Func<double, string> format, int cell)
    {
        int c = names.Count;
        var plot = new ScottPlot.Plot();
        // Row 0 (the first true class) at the top, as sklearn draws it: ScottPlot's y grows upwards.
        var flipped = new double[c, c];
        for (int i = 0; i < c; i++) for (int j = 0; j < c; j++) flipped[i, j] = values[i, j];
        var heatmap = plot.Add.Heatmap(flipped);
        heatmap.Colormap = new ScottPlot.Colormaps.CustomInterpolated(
            [ScottPlot.Colors.White, ScottPlot.Color.FromHex("#6baed6"), ScottPlot.Color.FromHex("#08306b")]); // matplotlib's Blues
        heatmap.Position = new ScottPlot.CoordinateRect(0, c - 1, 0, c - 1);
        double max = 0;
        foreach (var v in values) max = Math.Max(max, v);
        for (int i = 0; i < c; i++)
            for (int j = 0; j < c; j++)
            {
                var text = plot.Add.Text(format(values[i, j]), j, c - 1 - i);
                text.LabelAlignment = ScottPlot.Alignment.MiddleCenter;
                text.LabelFontSize = Math.Clamp(cell / 3f, 8, 16);
                text.LabelFontColor = values[i, j] > max / 2 ? ScottPlot.Colors.White : ScottPlot.Colors.Black;
            }
        var positions = Enumerable.Range(0, c).Select(i => (double)i).ToArray();
        plot.Axes.Bottom.SetTicks(positions, names.ToArray());
        plot.Axes.Bottom.TickLabelStyle.Rotation = 45;
        plot.Axes.Bottom.TickLabelStyle.Alignment = ScottPlot.Alignment.MiddleLeft;
        plot.Axes.Left.SetTicks(positions, names.Reverse().ToArray());
        plot.Axes.Bottom.MinimumSize = 20 + 7 * names.Max(n => n.Length);
        plot.Axes.Bottom.Label.Text = "predicted class";
        plot.Axes.Left.Label.Text = "true class";
        plot.Title(title);
        plot.Axes.SetLimits(-0.5, c - 0.5, -0.5, c - 0.5);
        return plot;
    }

    /// <summary>A grid of images (up to 6 per row), each scaled to 128 pixels and captioned with three lines; with
    /// <paramref name="heatmaps"/>, each image carries its Grad-CAM overlay.</summary>
    public static byte[] Grid(IReadOnlyList<(float[] Pixels, string Line1, string Line2, string Line3)> tiles, Shape shape, IReadOnlyList<float[]>? heatmaps)
    {
        const int Tile = 128, Caption = 48, Pad = 8;
        int h = shape[0], w = shape[1], ch = shape[2];
        int columns = Math.Min(6, tiles.Count), rows = (tiles.Count + columns - 1) / columns;
        using var surface = SKSurface.Create(new SKImageInfo(columns * (Tile + Pad) + Pad, rows * (Tile + Caption + Pad) + Pad));
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        using var font = new SKFont(SKTypeface.Default, 11);
        using var paint = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        var zeros = new float[h * w];
        for (int t = 0; t < tiles.Count; t++)
        {
            int x0 = Pad + t % columns * (Tile + Pad), y0 = Pad + t / columns * (Tile + Caption + Pad);
            using var bitmap = GradCam.Overlay(tiles[t].Pixels, h, w, ch, heatmaps is null ? zeros : heatmaps[t], 1);
            using var image = SKImage.FromBitmap(bitmap);
            float scale = (float)Tile / Math.Max(h, w);
            var dest = SKRect.Create(x0, y0, w * scale, h * scale);
            canvas.DrawImage(image, dest, new SKSamplingOptions(SKFilterMode.Nearest));
            var lines = new[] { tiles[t].Line1, tiles[t].Line2, tiles[t].Line3 };
            for (int l = 0; l < lines.Length; l++)
                canvas.DrawText(Fit(lines[l], font, Tile), x0, y0 + Tile + 13 + l * 14, SKTextAlign.Left, font, paint);
        }
        using var snapshot = surface.Snapshot();
        using var data = snapshot.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    static string Fit(string text, SKFont font, float width)
    {
        if (font.MeasureText(text) <= width) return text;
        while (text.Length > 1 && font.MeasureText(text + "…") > width) text = text[..^1];
        return text + "…";
    }
}
