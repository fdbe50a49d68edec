using ConvKit.Applications;
using ConvKit.Evaluation;
using ConvKit.Models;
using ConvKit.Models.Inference;

namespace ConvKit.Cli.Commands;

/// <summary>The evaluation report part of <c>convkit evaluate</c> (see <see cref="EvaluationReportFiles"/>).</summary>
public static class EvaluateReport
{
    /// <summary>The report options.</summary>
    /// <param name="Folder">--report, or null for the default.</param>
    /// <param name="TopK">--top-k.</param>
    /// <param name="Mistakes">--mistakes.</param>
    /// <param name="GradCam">--grad-cam.</param>
    public sealed record Options(string? Folder, int TopK, int Mistakes, int GradCam)
    {
        /// <summary>Checks every option by its CLI name.</summary>
        /// <exception cref="ConvKitException">An option is out of range.</exception>
        public void Validate()
        {
            if (TopK < 1) throw new ConvKitException($"--top-k must be at least 1; received {TopK}.");
            if (Mistakes is < 0 or > 200) throw new ConvKitException($"--mistakes must be between 0 and 200; received {Mistakes}.");
            if (GradCam is < 0 or > 200) throw new ConvKitException($"--grad-cam must be between 0 and 200; received {GradCam}.");
            if (Folder is { } f && File.Exists(f)) throw new ConvKitException($"--report '{f}' is a file; name a folder.");
        }
    }

    /// <summary>Where the report goes: --report, else <c>evaluation/</c> in the run folder (or beside the model folder)
    /// the model argument names; null when the model argument is neither (a model file or a zoo name).</summary>
    public static string? Folder(string modelArgument, Options options)
    {
        if (options.Folder is { } f) return f;
        if (!Directory.Exists(modelArgument)) return null;
        if (Directory.Exists(Path.Combine(modelArgument, TrainedModelFolder.RunModelFolder)))
            return Path.Combine(modelArgument, EvaluationReportFiles.Folder);
        if (File.Exists(Path.Combine(modelArgument, TrainedModelFolder.InfoFile)))
            return Path.Combine(Path.GetDirectoryName(Path.GetFullPath(modelArgument).TrimEnd(Path.DirectorySeparatorChar))!, EvaluationReportFiles.Folder);
        return null;
    }

    /// <summary>Evaluates on a folder of class subfolders: the report's numbers, printed and (with a folder) written.</summary>
    /// <exception cref="ConvKitException">The model has no class names, or the folder's classes are not the model's.</exception>
    public static int OnFolder(CliConsole console, ResolvedModel resolved, string dataPath, int batchSize, string? reportFolder, Options options)
    {
        var model = resolved.Model;
        var names = resolved.ClassNames
            ?? throw new ConvKitException($"--data '{dataPath}' is a folder of class subfolders, but '{resolved.Source}' has no class names (training.json) to match them with.");
        var images = new FolderReportImages(dataPath, names, model.ModelInputShape, resolved.Preprocessing);
        console.Output.WriteLine($"{model.Name} on '{dataPath}' ({images.Count} images, {names.Count} classes):");
        Write(console, model, images, names, batchSize, reportFolder, options);
        return 0;
    }

    /// <summary>Builds the report and writes it (or only prints it when <paramref name="reportFolder"/> is null).</summary>
    public static EvaluationReport Write(CliConsole console, IPredictor model, IReportImages images, IReadOnlyList<string> names, int batchSize,
        string? reportFolder, Options options)
    {
        var report = EvaluationReport.Create(model, images.Batches(batchSize), names, options.TopK, options.Mistakes);
        if (reportFolder is null)
        {
            EvaluationReportFiles.Print(console, report);
            return report;
        }
        EvaluationReportFiles.Write(console, reportFolder, report, model, images, options.GradCam);
        console.Output.WriteLine($"report written to {Path.GetFullPath(reportFolder)}");
        return report;
    }
}
