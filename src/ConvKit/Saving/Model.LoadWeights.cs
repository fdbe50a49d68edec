using ConvKit.Applications;
using ConvKit.Saving;

namespace ConvKit.Models;

// The one weights entry point: every reader ConvKit has, one options type, one report.
public partial class Model
{
    /// <summary>
    /// Loads weights into this (built) model from any file ConvKit reads: its native safetensors (<c>SaveWeights</c>,
    /// <c>Save</c>, checkpoints), a Keras .h5, a PyTorch/torchvision state dict in safetensors, or a folder written by
    /// <c>convkit train</c> (a previous run). Nothing is copied unless every tensor that is loaded fits and is finite.
    /// For a pretrained backbone under a new head, pass <see cref="LoadWeightsOptions.Transfer"/> (by name, mismatched,
    /// missing and unexpected weights skipped) and read the report.
    /// </summary>
    /// <param name="path">The file, or a run / trained-model folder.</param>
    /// <param name="format">The reader; <see cref="WeightsFormat.Auto"/> decides from the file's signature and metadata.</param>
    /// <param name="options">Matching and tolerance; null for <see cref="LoadWeightsOptions.Default"/> (by name, strict).</param>
    /// <returns>What was loaded and what was skipped, with why.</returns>
    /// <exception cref="WeightsMismatchException">A weight is missing, unexpected or mis-shaped and the options do not
    /// allow it, or holds NaN/Inf (the message names the file, layer and weight).</exception>
    /// <exception cref="WrongFileFormatException">The file is of another kind than <paramref name="format"/> (or one
    /// ConvKit does not read, such as a torch.save .pth: convert it to safetensors).</exception>
    /// <exception cref="InvalidOptionException"><paramref name="path"/> is empty.</exception>
    /// <exception cref="ConvKitException">The file or folder does not exist or cannot be read, the model is not built, or an
    /// option does not apply to the format.</exception>
    public WeightsLoadReport LoadWeights(string path, WeightsFormat format = WeightsFormat.Auto, LoadWeightsOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.Length == 0) throw new InvalidOptionException(nameof(path), "LoadWeights: path is empty; pass a weights file or a run folder.");
        var o = options ?? LoadWeightsOptions.Default;
        if (!Enum.IsDefined(format)) throw new ConvKitException($"LoadWeights: unknown weights format {(int)format}.");
        bool isDir = Directory.Exists(path);
        if (!isDir && !File.Exists(path)) throw new ConvKitException($"weights file '{path}' does not exist.");
        if (format == WeightsFormat.Auto) format = Detect(path, isDir);
        switch (format)
        {
            case WeightsFormat.Run:
                if (!isDir) throw new ConvKitException($"'{path}' is a file, not a ConvKit run folder; load it with WeightsFormat.Auto or Native.");
                var file = RunWeightsFile(path);
                return LoadNative(file, o) with { Format = WeightsFormat.Run };
            case WeightsFormat.Native:
                return LoadNative(path, o);
            case WeightsFormat.KerasH5:
                WrongFileFormatException.ThrowIfOther(path, FileKind.Hdf5, "a Keras HDF5 weights file (.h5)");
                return KerasWeightsLoader.Load(this, KerasH5.Read(path), o);
            default:
                WrongFileFormatException.ThrowIfOther(path, FileKind.SafeTensors, "a PyTorch state dict in safetensors");
                return TorchvisionWeightsLoader.Load(this, path, o);
        }
    }

    static WeightsFormat Detect(string path, bool isDir)
    {
        if (isDir) return WeightsFormat.Run;
        var kind = FileSignature.Detect(path);
        switch (kind)
        {
            case FileKind.Hdf5:
                return WeightsFormat.KerasH5;
            case FileKind.SafeTensors:
                using (var f = SafeTensors.Read(path))
                    return f.Metadata.ContainsKey(ModelFormat.FormatKey) ? WeightsFormat.Native : WeightsFormat.Torchvision;
            case FileKind.Unknown:
                // Left to the native reader, which names the offset at fault.
                return WeightsFormat.Native;
            default:
                throw new WrongFileFormatException(path, kind, "a weights file ConvKit reads (ConvKit .safetensors, Keras .h5, a state dict in .safetensors)");
        }
    }

    /// <summary>The model file of a run folder (<c>run/model/model.safetensors</c>) or of a trained model folder.</summary>
    static string RunWeightsFile(string folder)
    {
        foreach (var candidate in new[] { Path.Combine(folder, TrainedModelFolder.RunModelFolder, TrainedModelFolder.ModelFile), Path.Combine(folder, TrainedModelFolder.ModelFile) })
            if (File.Exists(candidate)) return candidate;
        throw new ConvKitException($"'{folder}' is a folder without a ConvKit model: expected '{TrainedModelFolder.RunModelFolder}/{TrainedModelFolder.ModelFile}' "
            + $"(a 'convkit train' run) or '{TrainedModelFolder.ModelFile}' in it.");
    }

    WeightsLoadReport LoadNative(string path, LoadWeightsOptions o)
    {
        var (tensors, meta) = ModelFormat.ReadFile(path);
        try
        {
            ModelFormat.Kind(meta, path);
            return ModelFormat.LoadWeights(this, tensors.Where(p => !p.Key.StartsWith(TrainingCheckpoint.ReservedPrefix, StringComparison.Ordinal))
                .ToDictionary(p => p.Key, p => p.Value), path, o);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }
    }
}
