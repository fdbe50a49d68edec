using ConvKit.Saving;

namespace ConvKit.Models;

// The native format (see ModelFormat): one atomic safetensors file with the architecture in its metadata.
public partial class Model
{
    /// <summary>
    /// Saves the architecture (as JSON in the safetensors metadata) and every weight to <paramref name="path"/>, one
    /// file written atomically (a crash leaves the old file or the new one, never a torn one). A subclassed model is
    /// saved with its weights but can only be reloaded with <see cref="LoadWeights(string, WeightsFormat, LoadWeightsOptions?)"/> (or through a registered factory).
    /// </summary>
    /// <exception cref="ConvKitException">A layer class is not registered, the file cannot be written, or the path ends in
    /// .h5/.hdf5/.keras (Keras' own formats, which ConvKit does not write).</exception>
    public void Save(string path)
    {
        Require.NotBlank(path);
        ModelFormat.RefuseForeignExtension(path, "Model.Save");
        var json = ModelFormat.ToJson(this);
        WriteFile(path, ModelFormat.WeightTensors(this), ModelFormat.Metadata("model", json));
    }

    /// <summary>Loads a model saved by <see cref="Save"/>: rebuilds the architecture, then loads every weight (strictly).</summary>
    /// <exception cref="ConvKitException">The file is missing, not a ConvKit model file, holds weights only, was saved from
    /// a subclassed model, names an unregistered layer class, or its weights do not match the architecture.</exception>
    public static Model Load(string path)
    {
        Require.NotBlank(path);
        var (tensors, meta) = ModelFormat.ReadFile(path);
        try
        {
            var kind = ModelFormat.Kind(meta, path);
            if (!meta.TryGetValue(ModelFormat.ConfigKey, out var json))
                throw new InvalidFileException($"'{path}' holds {kind} only, without an architecture: build the model in code and call LoadWeights.");
            var model = ModelFormat.FromJson(json, path);
            ModelFormat.LoadWeights(model, tensors, path, LoadWeightsOptions.Default);
            return model;
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>Saves the weights only, keyed <c>layer/weight</c> (e.g. <c>conv2d/kernel</c>), as one atomic safetensors file.</summary>
    /// <exception cref="ConvKitException">The file cannot be written, or the path ends in .h5/.hdf5/.keras (Keras' own
    /// formats, which ConvKit does not write).</exception>
    public void SaveWeights(string path)
    {
        Require.NotBlank(path);
        ModelFormat.RefuseForeignExtension(path, "Model.SaveWeights");
        WriteFile(path, ModelFormat.WeightTensors(this), ModelFormat.Metadata("weights"));
    }

    /// <summary>Loads native ConvKit weights with the options of earlier releases; use
    /// <see cref="LoadWeights(string, WeightsFormat, LoadWeightsOptions?)"/>.</summary>
    /// <param name="path">The safetensors file.</param>
    /// <param name="skipMismatch">Skip weights whose shape differs instead of failing.</param>
    /// <param name="skipLayers">Layers (by name) to leave as they are, on both sides.</param>
    /// <param name="skipClassifier">Also skip the model's last Dense layer.</param>
    /// <returns>Which tensors were loaded and which were skipped.</returns>
    /// <exception cref="ConvKitException">As <see cref="LoadWeights(string, WeightsFormat, LoadWeightsOptions?)"/>.</exception>
    [Obsolete("Use LoadWeights(path, WeightsFormat.Native, new LoadWeightsOptions { SkipMismatched = ..., SkipLayers = ..., SkipClassifier = ... }), which returns a WeightsLoadReport.")]
    public WeightLoadReport LoadWeights(string path, bool skipMismatch, IEnumerable<string>? skipLayers = null, bool skipClassifier = false)
    {
        Require.NotBlank(path);
        var report = LoadWeights(path, WeightsFormat.Native,
            new LoadWeightsOptions { SkipMismatched = skipMismatch, SkipLayers = skipLayers?.ToArray() ?? [], SkipClassifier = skipClassifier });
        return new WeightLoadReport(report.Loaded, report.Skipped.Select(s => s.ToString()).ToArray());
    }

    static void WriteFile(string path, Dictionary<string, TorchSharp.torch.Tensor> tensors, Dictionary<string, string> meta)
    {
        try
        {
            if (Path.GetDirectoryName(Path.GetFullPath(path)) is { Length: > 0 } dir) Directory.CreateDirectory(dir);
            SafeTensors.Write(path, tensors, meta);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The cause in a few words, naming the target rather than the temp file the error was raised on.
            throw new ConvKitException($"cannot write '{path}': {AtomicFile.Explain(e, path)}", e);
        }
    }
}
