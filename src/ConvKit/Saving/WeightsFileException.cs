namespace ConvKit.Saving;

/// <summary>An error about a weights file, naming the file and, when known, the layer and weight concerned.</summary>
public abstract class WeightsFileException : ConvKitException
{
    /// <summary>Creates the exception; the message is <paramref name="lead"/> 'file', layer 'l', weight 'w': problem.</summary>
    /// <param name="lead">What kind of error, e.g. "Cannot load weights from".</param>
    /// <param name="file">The weights file.</param>
    /// <param name="layer">The layer, if known.</param>
    /// <param name="weight">The weight, if known.</param>
    /// <param name="problem">What is wrong.</param>
    /// <param name="inner">Underlying cause, if any.</param>
    protected WeightsFileException(string lead, string file, string? layer, string? weight, string problem, Exception? inner)
        : base($"{lead} '{file}'" + (layer is null ? "" : $", layer '{layer}'") + (weight is null ? "" : $", weight '{weight}'") + $": {problem}", inner!)
    {
        FilePath = file;
        LayerName = layer;
        WeightName = weight;
    }

    /// <summary>The weights file (path or display name).</summary>
    public string FilePath { get; }

    /// <summary>The layer concerned, or null.</summary>
    public string? LayerName { get; }

    /// <summary>The weight concerned, or null.</summary>
    public string? WeightName { get; }
}
