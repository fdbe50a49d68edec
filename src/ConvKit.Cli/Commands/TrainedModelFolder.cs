using System.Text.Json;
using ConvKit.Models;
using ConvKit.Saving;

namespace ConvKit.Cli.Commands;

/// <summary>What <c>convkit train</c> records beside a trained model: where it came from and what it predicts.</summary>
/// <param name="Model">Registry name.</param>
/// <param name="Dataset">Dataset it was trained on.</param>
/// <param name="ClassNames">Names of the classes.</param>
public sealed record TrainedModelInfo(string Model, string Dataset, string[] ClassNames);

/// <summary>
/// A trained model on disk: <c>model.safetensors</c> (ConvKit's native format: architecture and weights, one atomic
/// file) and <c>training.json</c> (dataset and class names, for <c>convkit evaluate</c>'s defaults).
/// </summary>
public static class TrainedModelFolder
{
    /// <summary>The model file inside the folder.</summary>
    public const string ModelFile = "model.safetensors";
    const string InfoFile = "training.json";

    /// <summary>Writes the folder.</summary>
    public static void Save(string folder, Model model, TrainedModelInfo info)
    {
        Directory.CreateDirectory(folder);
        model.Save(Path.Combine(folder, ModelFile));
        var json = JsonSerializer.Serialize(info, new JsonSerializerOptions { WriteIndented = true });
        AtomicFile.Write(Path.Combine(folder, InfoFile), s => s.Write(System.Text.Encoding.UTF8.GetBytes(json)));
    }

    /// <summary>Loads a model from a folder written by <see cref="Save"/> or from a native model file.</summary>
    /// <exception cref="ConvKitException">The folder holds no model, or a file is invalid.</exception>
    public static (Model Model, TrainedModelInfo? Info) Load(string path)
    {
        var file = Directory.Exists(path) ? Path.Combine(path, ModelFile) : path;
        if (!File.Exists(file))
            throw new ConvKitException($"'{path}' is neither a model file nor a folder written by 'convkit train' ({ModelFile} is missing).");
        var model = Model.Load(file);
        var infoPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(file))!, InfoFile);
        if (!File.Exists(infoPath)) return (model, null);
        try
        {
            return (model, JsonSerializer.Deserialize<TrainedModelInfo>(File.ReadAllText(infoPath)));
        }
        catch (JsonException e)
        {
            model.Dispose();
            throw new ConvKitException($"{infoPath} is not valid: {e.Message}", e);
        }
    }
}
