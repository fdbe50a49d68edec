using System.Text.Json;
using ConvKit.Applications;
using ConvKit.Models;
using ConvKit.Saving;
using static TorchSharp.torch;

namespace ConvKit.Cli.Commands;

/// <summary>What <c>convkit train</c> records about a trained zoo model, so <c>convkit evaluate</c> can rebuild it.</summary>
/// <param name="Model">Registry name.</param>
/// <param name="InputShape">Input shape (height, width, channels).</param>
/// <param name="Classes">Number of classes.</param>
/// <param name="Dataset">Dataset it was trained on.</param>
/// <param name="ClassNames">Names of the classes.</param>
public sealed record TrainedModelInfo(string Model, int[] InputShape, int Classes, string Dataset, string[] ClassNames);

/// <summary>
/// A trained zoo model on disk: <c>model.json</c> (registry name and options) and <c>weights.safetensors</c> (every
/// weight by <c>layer/weight</c> name, ConvKit's internal layout). Both written atomically.
/// </summary>
public static class TrainedModelFolder
{
    const string InfoFile = "model.json";
    const string WeightsFile = "weights.safetensors";

    /// <summary>Writes the folder.</summary>
    public static void Save(string folder, Model model, TrainedModelInfo info)
    {
        Directory.CreateDirectory(folder);
        var tensors = model.Weights.ToDictionary(w => $"{w.Owner.Name}/{w.Name}", w => w.Value.detach().cpu());
        SafeTensors.Write(Path.Combine(folder, WeightsFile), tensors, new Dictionary<string, string> { ["convkit.model"] = info.Model });
        foreach (var t in tensors.Values) t.Dispose();
        var json = JsonSerializer.Serialize(info, new JsonSerializerOptions { WriteIndented = true });
        AtomicFile.Write(Path.Combine(folder, InfoFile), s => s.Write(System.Text.Encoding.UTF8.GetBytes(json)));
    }

    /// <summary>Rebuilds the model and loads its weights.</summary>
    /// <exception cref="ConvKitException">The folder is missing files, or the weights do not fit the model.</exception>
    public static (Model Model, TrainedModelInfo Info) Load(string folder)
    {
        var infoPath = Path.Combine(folder, InfoFile);
        if (!File.Exists(infoPath))
            throw new ConvKitException($"'{folder}' is not a model folder written by 'convkit train': {InfoFile} is missing.");
        TrainedModelInfo info;
        try
        {
            info = JsonSerializer.Deserialize<TrainedModelInfo>(File.ReadAllText(infoPath))
                ?? throw new ConvKitException($"{infoPath} is empty.");
        }
        catch (JsonException e)
        {
            throw new ConvKitException($"{infoPath} is not valid: {e.Message}", e);
        }
        var model = ModelRegistry.Create(info.Model, new ModelOptions { InputShape = new Shape(info.InputShape), Classes = info.Classes });
        using var file = SafeTensors.Read(Path.Combine(folder, WeightsFile));
        var expected = model.Weights.ToDictionary(w => $"{w.Owner.Name}/{w.Name}");
        var missing = expected.Keys.Where(k => !file.Contains(k)).ToArray();
        var unexpected = file.Names.Where(k => !expected.ContainsKey(k)).ToArray();
        if (missing.Length > 0 || unexpected.Length > 0)
            throw new ConvKitException($"{Path.Combine(folder, WeightsFile)} does not fit model '{info.Model}': missing [{string.Join(", ", missing)}], unexpected [{string.Join(", ", unexpected)}].");
        using (no_grad())
        {
            foreach (var (key, weight) in expected)
            {
                using var value = file.Get(key);
                if (!value.shape.SequenceEqual(weight.Value.shape))
                    throw new ConvKitException($"{Path.Combine(folder, WeightsFile)}: '{key}' has shape [{string.Join(", ", value.shape)}], the model expects [{string.Join(", ", weight.Value.shape)}].");
                weight.Value.copy_(value);
            }
        }
        return (model, info);
    }
}
