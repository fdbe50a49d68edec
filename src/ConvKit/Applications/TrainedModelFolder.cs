using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using ConvKit.Models;
using ConvKit.Saving;

namespace ConvKit.Applications;

/// <summary>
/// What <c>convkit train</c> records beside a trained model (<c>training.json</c>): where it came from and what is
/// needed to use it again. Files written before the optional members existed still load; the resolver then derives
/// them from the model (input shape, colour mode) and from what <c>train</c> always did (pixels scaled by 1/255).
/// </summary>
/// <param name="Model">Registry name of the architecture.</param>
/// <param name="Dataset">Dataset it was trained on.</param>
/// <param name="ClassNames">Names of the classes, in output order.</param>
public sealed record TrainedModelInfo(string Model, string Dataset, string[] ClassNames)
{
    /// <summary>Input shape (height, width, channels) the model was trained at; null in older files.</summary>
    public int[]? InputShape { get; init; }

    /// <summary><c>grayscale</c> or <c>rgb</c>: how images are decoded for the model; null in older files.</summary>
    public string? ColorMode { get; init; }

    /// <summary>The pixel preprocessing (a <see cref="ConvKit.Applications.Preprocessing"/> name); null in older files, which
    /// mean <c>None</c>.</summary>
    public string? Preprocessing { get; init; }

    /// <summary>Factor pixel values in [0, 255] are multiplied by before preprocessing (Keras' <c>Rescaling</c>): 1/255
    /// for everything <c>convkit train</c> writes; null in older files, which mean 1/255.</summary>
    public double? Rescale { get; init; }
}

/// <summary>
/// A trained model on disk: <c>model.safetensors</c> (ConvKit's native format: architecture and weights, one atomic
/// file) and <c>training.json</c> (<see cref="TrainedModelInfo"/>). <c>convkit train --out X</c> writes it to
/// <c>X/model</c>; <see cref="ModelResolver"/> reads it.
/// </summary>
public static class TrainedModelFolder
{
    /// <summary>The model file inside the folder.</summary>
    public const string ModelFile = "model.safetensors";

    /// <summary>The metadata file inside the folder.</summary>
    public const string InfoFile = "training.json";

    /// <summary>The model folder inside a run folder written by <c>convkit train</c>.</summary>
    public const string RunModelFolder = "model";

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    /// <summary>Writes the folder: the model, then its metadata, each atomically.</summary>
    /// <exception cref="ConvKitException">A file cannot be written (the message names it and the cause).</exception>
    public static void Save(string folder, Model model, TrainedModelInfo info)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(info);
        model.Save(Path.Combine(folder, ModelFile));
        var json = JsonSerializer.Serialize(info, Json);
        var path = Path.Combine(folder, InfoFile);
        AtomicFile.WriteOrExplain(path, s => s.Write(Encoding.UTF8.GetBytes(json)));
    }

    /// <summary>Reads <c>training.json</c> in <paramref name="folder"/>; null when there is none.</summary>
    /// <exception cref="ConvKitException">The file is not valid (the message names it).</exception>
    public static TrainedModelInfo? ReadInfo(string folder)
    {
        var path = Path.Combine(folder, InfoFile);
        if (!File.Exists(path)) return null;
        TrainedModelInfo? info;
        try
        {
            info = JsonSerializer.Deserialize<TrainedModelInfo>(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new ConvKitException($"'{path}' is not valid: {e.Message}", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConvKitException($"cannot read '{path}': {e.Message}", e);
        }
        if (info is null || info.Model is null || info.ClassNames is null || info.Dataset is null)
            throw new ConvKitException($"'{path}' is not valid: it needs \"Model\", \"Dataset\" and \"ClassNames\".");
        if (info.InputShape is { } s && (s.Length != 3 || s.Any(d => d <= 0)))
            throw new ConvKitException($"'{path}' is not valid: \"InputShape\" must be three positive numbers (height, width, channels).");
        if (info.ColorMode is not (null or "grayscale" or "rgb"))
            throw new ConvKitException($"'{path}' is not valid: \"ColorMode\" must be \"grayscale\" or \"rgb\"; found \"{info.ColorMode}\".");
        if (info.Preprocessing is { } p && !Enum.TryParse<Preprocessing>(p, ignoreCase: false, out _))
            throw new ConvKitException($"'{path}' is not valid: \"Preprocessing\" must be one of {string.Join(", ", Enum.GetNames<Preprocessing>())}; found \"{p}\".");
        if (info.Rescale is { } r && Math.Abs(r - 1.0 / 255) > 1e-12)
            throw new ConvKitException($"'{path}': \"Rescale\" {r} is not supported; ConvKit's image pipeline scales by 1/255.");
        return info;
    }
}
