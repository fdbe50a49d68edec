using ConvKit.Saving;

namespace ConvKit.Models;

// The native format (see ModelFormat): one atomic safetensors file with the architecture in its metadata.
public partial class Model
{
    /// <summary>
    /// Saves the architecture (as JSON in the safetensors metadata) and every weight to <paramref name="path"/>, one
    /// file written atomically (a crash leaves the old file or the new one, never a torn one). A subclassed model is
    /// saved with its weights but can only be reloaded with <see cref="LoadWeights"/> (or through a registered factory).
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
            ModelFormat.LoadWeights(model, tensors, path, skipMismatch: false, skipLayers: null, skipClassifier: false);
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

    /// <summary>
    /// Loads weights by layer and weight name from a file written by <see cref="SaveWeights"/>, <see cref="Save"/> or a
    /// training checkpoint. Nothing is copied unless every tensor fits.
    /// </summary>
    /// <param name="path">The safetensors file.</param>
    /// <param name="skipMismatch">Skip weights whose shape differs instead of failing (Keras' <c>skip_mismatch</c>).</param>
    /// <param name="skipLayers">Layers (by name) to leave as they are, on both sides: e.g. a classifier to fine-tune.</param>
    /// <param name="skipClassifier">Also skip the model's last Dense layer (its classifier head).</param>
    /// <returns>Which tensors were loaded and which were skipped.</returns>
    /// <exception cref="ConvKitException">The file is missing or malformed, or tensors are missing, unexpected or mis-shaped
    /// (the message lists each: layer, weight, expected and found shapes, file).</exception>
    public WeightLoadReport LoadWeights(string path, bool skipMismatch = false, IEnumerable<string>? skipLayers = null, bool skipClassifier = false)
    {
        Require.NotBlank(path);
        var (tensors, meta) = ModelFormat.ReadFile(path);
        try
        {
            ModelFormat.Kind(meta, path);
            return ModelFormat.LoadWeights(this, tensors.Where(p => !p.Key.StartsWith(TrainingCheckpoint.ReservedPrefix, StringComparison.Ordinal))
                .ToDictionary(p => p.Key, p => p.Value), path, skipMismatch, skipLayers, skipClassifier);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
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
