// One place that turns what a user names into a model: a zoo name (with optional weights), a run folder written by
// 'convkit train', its model folder, or the model file. predict, evaluate and export (later serve) all go through it.
using ConvKit.Models;
using ConvKit.Saving;

namespace ConvKit.Applications;

/// <summary>What a name given to <see cref="ModelResolver.Resolve(string, string?, ModelOptions?)"/> turned out to be.</summary>
public enum ModelSourceKind
{
    /// <summary>A registry (zoo) name: the architecture built fresh, with random or named weights.</summary>
    Zoo,

    /// <summary>A run folder written by <c>convkit train --out X</c> (the model is in <c>X/model</c>).</summary>
    RunFolder,

    /// <summary>A model folder: <c>model.safetensors</c> and, usually, <c>training.json</c>.</summary>
    ModelFolder,

    /// <summary>A ConvKit model file saved with <see cref="Model.Save"/>.</summary>
    ModelFile,
}

/// <summary>A model and what is needed to use it: preprocessing, colour mode, class names, where it came from.</summary>
public sealed class ResolvedModel : IDisposable
{
    Model? model;

    internal ResolvedModel(Model model, ModelSourceKind kind, string source, string? file, ModelInfo? zoo, TrainedModelInfo? training,
        Preprocessing preprocessing, IReadOnlyList<string>? classNames)
    {
        this.model = model;
        Kind = kind;
        Source = source;
        ModelFilePath = file;
        Zoo = zoo;
        Training = training;
        Preprocessing = preprocessing;
        ClassNames = classNames;
    }

    /// <summary>The model (owned by this object until <see cref="Release"/>).</summary>
    /// <exception cref="ObjectDisposedException">After <see cref="Dispose"/> or <see cref="Release"/>.</exception>
    public Model Model => model ?? throw new ObjectDisposedException(nameof(ResolvedModel), "the model was released or disposed");

    /// <summary>What the name was.</summary>
    public ModelSourceKind Kind { get; }

    /// <summary>The name or path as given.</summary>
    public string Source { get; }

    /// <summary>The model file read, for trained models; null for zoo models.</summary>
    public string? ModelFilePath { get; }

    /// <summary>The registry entry of the architecture, when known (zoo names, and trained models whose training.json
    /// names a registered model).</summary>
    public ModelInfo? Zoo { get; }

    /// <summary>The trained model's <c>training.json</c>; null for zoo names and bare model files without one.</summary>
    public TrainedModelInfo? Training { get; }

    /// <summary>The pixel preprocessing the model expects.</summary>
    public Preprocessing Preprocessing { get; }

    /// <summary>Class names in output order; null when unknown (ImageClassifier then uses ImageNet or <c>class N</c>).</summary>
    public IReadOnlyList<string>? ClassNames { get; }

    /// <summary>Colour mode of the model's input: <c>grayscale</c> (1 channel) or <c>rgb</c> (3), else null.</summary>
    public string? ColorMode => Training?.ColorMode ?? (model?.ModelInputShape is { Rank: 3 } s ? s[2] switch { 1 => "grayscale", 3 => "rgb", _ => null } : null);

    /// <summary>The dataset a trained model was trained on; null for zoo models.</summary>
    public string? Dataset => Training?.Dataset;

    /// <summary>Hands the model over to the caller, who then disposes it.</summary>
    public Model Release()
    {
        var m = Model;
        model = null;
        return m;
    }

    /// <summary>Disposes the model unless it was released.</summary>
    public void Dispose()
    {
        model?.Dispose();
        model = null;
    }
}

/// <summary>
/// Turns what a user names into a model: <c>lenet5</c> (a zoo name, with <c>weights</c> null for random, <c>imagenet</c>,
/// a weights file, or a run/model folder), <c>runs/X</c> (a run folder written by <c>convkit train</c>),
/// <c>runs/X/model</c> (its model folder) or <c>runs/X/model/model.safetensors</c> (the model file).
/// </summary>
public static class ModelResolver
{
    /// <summary>Resolves <paramref name="name"/>; see <see cref="ModelResolver"/>.</summary>
    /// <param name="name">Zoo name or path.</param>
    /// <param name="weights">Weights to load: for zoo names as <see cref="ModelOptions.Weights"/> (a run or model folder is
    /// accepted too); for trained models a ConvKit weights file (SaveWeights, ModelCheckpoint) of the same architecture.</param>
    /// <param name="zooOptions">Options for building a zoo model (input shape, classes, top); must be null for paths,
    /// whose architecture is fixed.</param>
    /// <exception cref="ConvKitException">The path does not exist, is a folder without a model, names a file of another
    /// format (the message says what it is and what reads it), is ambiguous (a zoo name and an existing path), or the
    /// name is neither a zoo model nor a path; or the model or its weights cannot be loaded.</exception>
    public static ResolvedModel Resolve(string name, string? weights = null, ModelOptions? zooOptions = null) =>
        Resolve(name, weights, zooOptions, Directory.GetCurrentDirectory());

    // baseDirectory: what relative paths are relative to (tests pass their own folder; the process's current
    // directory is shared by every test).
    internal static ResolvedModel Resolve(string name, string? weights, ModelOptions? zooOptions, string baseDirectory)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new ConvKitException("no model named: give a zoo name (see 'convkit models'), a run folder, a model folder or a model file.");
        var path = Path.IsPathRooted(name) ? name : Path.Combine(baseDirectory, name);
        bool exists = File.Exists(path) || Directory.Exists(path);
        bool looksLikePath = LooksLikePath(name);
        bool isZoo = !looksLikePath && ModelRegistry.List().Any(m => string.Equals(m.Name, name, StringComparison.OrdinalIgnoreCase));
        if (isZoo && exists)
            throw new ConvKitException($"'{name}' is ambiguous: it is a zoo model and a {(Directory.Exists(path) ? "folder" : "file")} here; " +
                $"write './{name}' for the {(Directory.Exists(path) ? "folder" : "file")}, or run from another folder for the zoo model.");
        if (isZoo) return FromZoo(name, weights, zooOptions);
        if (!exists)
        {
            if (looksLikePath) throw new ConvKitException($"'{name}' does not exist (expected a zoo name, a run folder, a model folder or a model file).");
            ModelRegistry.Get(name); // throws "unknown model 'x'. Did you mean ...?"
        }
        if (zooOptions is not null)
            throw new ConvKitException($"'{name}' is a trained model, whose architecture is fixed: input shape, classes and top options apply only to zoo names.");
        if (weights is not null && string.Equals(weights, "imagenet", StringComparison.OrdinalIgnoreCase))
            throw new ConvKitException($"weights 'imagenet' apply only to zoo names; '{name}' is a trained model.");

        var (kind, file) = LocateModelFile(path);
        var folder = Path.GetDirectoryName(Path.GetFullPath(file))!;
        var training = TrainedModelFolder.ReadInfo(folder);
        var model = Model.Load(file);
        try
        {
            if (weights is not null) model.LoadWeights(WeightsPath(weights));
            var zoo = training is not null && ModelRegistry.List().FirstOrDefault(m => string.Equals(m.Name, training.Model, StringComparison.OrdinalIgnoreCase)) is { } z ? z : null;
            Check(model, training, Path.Combine(folder, TrainedModelFolder.InfoFile));
            var preprocessing = training?.Preprocessing is { } p ? Enum.Parse<Preprocessing>(p) : Preprocessing.None;
            return new ResolvedModel(model, kind, name, file, zoo, training, preprocessing, training?.ClassNames);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Finds the model file a run folder, model folder or file path stands for.</summary>
    /// <exception cref="ConvKitException">The folder holds no model, or the file is of another format.</exception>
    public static (ModelSourceKind Kind, string File) LocateModelFile(string path)
    {
        if (Directory.Exists(path))
        {
            var inFolder = Path.Combine(path, TrainedModelFolder.ModelFile);
            if (File.Exists(inFolder)) return (ModelSourceKind.ModelFolder, inFolder);
            var inRun = Path.Combine(path, TrainedModelFolder.RunModelFolder, TrainedModelFolder.ModelFile);
            if (File.Exists(inRun)) return (ModelSourceKind.RunFolder, inRun);
            throw new ConvKitException($"'{path}' is a folder without a model: expected {TrainedModelFolder.ModelFile} (a model folder) or " +
                $"{TrainedModelFolder.RunModelFolder}/{TrainedModelFolder.ModelFile} (a run folder written by 'convkit train').");
        }
        if (!File.Exists(path)) throw new ConvKitException($"'{path}' does not exist.");
        var kind = FileSignature.Detect(path);
        if (kind is not (FileKind.SafeTensors or FileKind.Unknown))
            throw new WrongFileFormatException(path, kind, "a ConvKit model file (.safetensors written by 'convkit train' or Model.Save)");
        return (ModelSourceKind.ModelFile, path);
    }

    static ResolvedModel FromZoo(string name, string? weights, ModelOptions? options)
    {
        var info = ModelRegistry.Get(name);
        var w = weights is null || string.Equals(weights, "imagenet", StringComparison.OrdinalIgnoreCase) ? weights : WeightsPath(weights);
        var model = ModelRegistry.Create(info.Name, (options ?? ModelOptions.Default) with { Weights = w });
        try
        {
            // Weights written by 'convkit train' carry the class names of their dataset beside them.
            TrainedModelInfo? training = null;
            if (w is not null && !string.Equals(w, "imagenet", StringComparison.OrdinalIgnoreCase))
                training = TrainedModelFolder.ReadInfo(Path.GetDirectoryName(Path.GetFullPath(w))!);
            var classNames = training is not null && model.ModelOutputShape is { Rank: 1 } o && o[0] == training.ClassNames.Length ? training.ClassNames : null;
            return new ResolvedModel(model, ModelSourceKind.Zoo, name, null, info, training, info.Preprocessing, classNames);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>A weights argument: a file, or a run/model folder standing for its model file.</summary>
    static string WeightsPath(string weights)
    {
        if (Directory.Exists(weights)) return LocateModelFile(weights).File;
        if (!File.Exists(weights)) throw new ConvKitException($"weights file '{weights}' does not exist.");
        return weights;
    }

    static void Check(Model model, TrainedModelInfo? training, string infoPath)
    {
        if (training is null) return;
        var input = model.ModelInputShape;
        if (training.InputShape is { } s && !(input.Rank == 3 && input[0] == s[0] && input[1] == s[1] && input[2] == s[2]))
            throw new ConvKitException($"'{infoPath}' says the input shape is ({string.Join(", ", s)}), but the model takes {input.ToBatchString()}: the folder mixes two runs.");
        if (model.ModelOutputShape is { Rank: 1 } o && o[0] != training.ClassNames.Length)
            throw new ConvKitException($"'{infoPath}' names {training.ClassNames.Length} classes, but the model outputs {o[0]}: the folder mixes two runs.");
    }

    static bool LooksLikePath(string name) =>
        name.Contains('/') || name.Contains(Path.DirectorySeparatorChar) || name.StartsWith('.') || name.StartsWith('~')
        || Path.HasExtension(name) && !ModelRegistry.List().Any(m => string.Equals(m.Name, name, StringComparison.OrdinalIgnoreCase));
}
