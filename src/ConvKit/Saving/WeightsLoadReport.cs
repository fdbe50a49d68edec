// The one options type and the one report type of Model.LoadWeights, whatever file the weights come from.
namespace ConvKit.Saving;

/// <summary>Which reader <see cref="Models.Model.LoadWeights(string, WeightsFormat, LoadWeightsOptions?)"/> uses.</summary>
public enum WeightsFormat
{
    /// <summary>Decide from the file: a folder is a ConvKit run or model folder, HDF5 is Keras, safetensors with ConvKit
    /// metadata is the native format, other safetensors a PyTorch/torchvision state dict.</summary>
    Auto,

    /// <summary>ConvKit's native safetensors (<c>Save</c>, <c>SaveWeights</c>, checkpoints), keyed <c>layer/weight</c>.</summary>
    Native,

    /// <summary>Keras legacy HDF5 weights (<c>save_weights('x.h5')</c>, keras.applications downloads).</summary>
    KerasH5,

    /// <summary>A PyTorch state dict saved as safetensors, onto a model with torchvision's layer names (the <c>*_tv</c> models).</summary>
    Torchvision,

    /// <summary>A folder written by <c>convkit train</c> (its <c>model/model.safetensors</c>) or a trained model folder.</summary>
    Run,
}

/// <summary>How <see cref="Models.Model.LoadWeights(string, WeightsFormat, LoadWeightsOptions?)"/> matches and what it tolerates.</summary>
public sealed record LoadWeightsOptions
{
    /// <summary>Match weights by layer name (the default). False matches the layers that have weights in order, Keras'
    /// topological loading; only Keras .h5 files support it.</summary>
    public bool ByName { get; init; } = true;

    /// <summary>Skip a weight whose shape differs from the model's instead of failing (Keras' <c>skip_mismatch</c>):
    /// a new classifier with another number of classes, for example.</summary>
    public bool SkipMismatched { get; init; }

    /// <summary>True (the default): a model weight the file lacks, or a file tensor no model weight takes, is an error,
    /// as torch's <c>strict=True</c>. False: both are reported as skipped and the rest is loaded.</summary>
    public bool Strict { get; init; } = true;

    /// <summary>Layers (by name) to leave as they are, on both sides: e.g. a new head. Weights of these layers are
    /// reported as <see cref="SkipReason.Excluded"/>.</summary>
    public IReadOnlyList<string> SkipLayers { get; init; } = [];

    /// <summary>Also leave the model's last Dense layer (its classifier) as it is.</summary>
    public bool SkipClassifier { get; init; }

    /// <summary>For <see cref="WeightsFormat.Torchvision"/>: how layer names map to state-dict keys; null for
    /// <see cref="StateDictMapping.Default"/> ('_' becomes '.').</summary>
    public StateDictMapping? StateDict { get; init; }

    /// <summary>The options for a pretrained backbone under a new head: by name, shape mismatches and missing or
    /// unexpected weights skipped and reported.</summary>
    public static LoadWeightsOptions Transfer { get; } = new() { SkipMismatched = true, Strict = false };

    /// <summary>The defaults: by name, strict, nothing skipped.</summary>
    public static LoadWeightsOptions Default { get; } = new();
}

/// <summary>Why a weight was not loaded.</summary>
public enum SkipReason
{
    /// <summary>The model has the weight, the file does not (only when not <see cref="LoadWeightsOptions.Strict"/>).</summary>
    Missing,

    /// <summary>Both have it, with different shapes (only with <see cref="LoadWeightsOptions.SkipMismatched"/>).</summary>
    ShapeMismatch,

    /// <summary>The file has it, no weight of the model takes it (only when not <see cref="LoadWeightsOptions.Strict"/>).</summary>
    Unexpected,

    /// <summary>Its layer was excluded by <see cref="LoadWeightsOptions.SkipLayers"/> or <see cref="LoadWeightsOptions.SkipClassifier"/>.</summary>
    Excluded,
}

/// <summary>A weight that was not loaded.</summary>
/// <param name="Name">The model's key (<c>layer/weight</c>) or, for <see cref="SkipReason.Unexpected"/>, the file's key.</param>
/// <param name="Reason">Why.</param>
/// <param name="Detail">The shapes or layers involved, in words.</param>
public sealed record SkippedWeight(string Name, SkipReason Reason, string Detail)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Name} ({Detail})";
}

/// <summary>What <see cref="Models.Model.LoadWeights(string, WeightsFormat, LoadWeightsOptions?)"/> did.</summary>
/// <param name="Path">The file (or, for a run, the model file inside it) the weights came from.</param>
/// <param name="Format">The reader used (never <see cref="WeightsFormat.Auto"/>).</param>
/// <param name="Loaded">The model's weights that were set, keyed <c>layer/weight</c>, in model order.</param>
/// <param name="Skipped">The weights that were not, with why.</param>
public sealed record WeightsLoadReport(string Path, WeightsFormat Format, IReadOnlyList<string> Loaded, IReadOnlyList<SkippedWeight> Skipped)
{
    /// <summary>The skipped weights with one reason.</summary>
    public IReadOnlyList<SkippedWeight> SkippedFor(SkipReason reason) => Skipped.Where(s => s.Reason == reason).ToArray();

    /// <summary>One line: how many weights were loaded and skipped, by reason.</summary>
    public string Summary()
    {
        var parts = Enum.GetValues<SkipReason>().Select(r => (r, n: Skipped.Count(s => s.Reason == r))).Where(p => p.n > 0)
            .Select(p => $"{p.n} {Words(p.r)}");
        var skipped = Skipped.Count == 0 ? "none skipped" : $"skipped {Skipped.Count} ({string.Join(", ", parts)})";
        return $"loaded {Loaded.Count} weight tensor{(Loaded.Count == 1 ? "" : "s")} from '{Path}' ({Format}); {skipped}";
    }

    static string Words(SkipReason r) => r switch
    {
        SkipReason.Missing => "missing from the file",
        SkipReason.ShapeMismatch => "shape mismatch",
        SkipReason.Unexpected => "unexpected in the file",
        _ => "excluded",
    };
}
