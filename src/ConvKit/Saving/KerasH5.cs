using PureHDF;

namespace ConvKit.Saving;

/// <summary>One weight of a Keras layer, as stored (Conv2D kernels HWIO, Dense kernels (in, out)).</summary>
/// <param name="Name">Full Keras name, e.g. <c>block1_conv1/kernel:0</c>.</param>
/// <param name="Shape">Dimensions as stored.</param>
/// <param name="Data">Values in C order, converted to float32 when stored as float16 or float64.</param>
public sealed record KerasWeight(string Name, IReadOnlyList<long> Shape, float[] Data);

/// <summary>The weights of one Keras layer in file order (e.g. BatchNormalization: gamma, beta, moving_mean,
/// moving_variance).</summary>
/// <param name="Name">Layer name.</param>
/// <param name="Weights">Weights in the order of the layer's <c>weight_names</c> attribute.</param>
public sealed record KerasLayerWeights(string Name, IReadOnlyList<KerasWeight> Weights);

/// <summary>The contents of a Keras legacy HDF5 weights file.</summary>
/// <param name="Path">Path or display name of the file.</param>
/// <param name="Layers">Layers in the order of <c>layer_names</c>, including layers without weights.</param>
public sealed record KerasWeightsFile(string Path, IReadOnlyList<KerasLayerWeights> Layers)
{
    /// <summary>The layer with that name.</summary>
    /// <param name="name">Layer name.</param>
    /// <returns>Its weights.</returns>
    /// <exception cref="UnknownNameException">No layer has that name.</exception>
    public KerasLayerWeights Layer(string name) =>
        Layers.FirstOrDefault(l => l.Name == name) ?? throw new UnknownNameException("layer", name, $"'{Path}' has no layer '{name}'.");
}

/// <summary>A Keras HDF5 weights file is malformed or not in the expected layout.</summary>
public sealed class KerasH5FormatException : WeightsFileException
{
    /// <summary>Creates the exception; the message names the file, and the layer and weight when known.</summary>
    /// <param name="file">Path or display name of the file.</param>
    /// <param name="layer">Layer being read, if any.</param>
    /// <param name="weight">Weight being read, if any.</param>
    /// <param name="problem">What is wrong.</param>
    /// <param name="inner">Underlying cause (often a PureHDF exception), if any.</param>
    public KerasH5FormatException(string file, string? layer, string? weight, string problem, Exception? inner = null)
        : base("Invalid Keras HDF5 weights file", file, layer, weight, problem, inner) { }
}

/// <summary>
/// Reads Keras legacy HDF5 weights (keras.applications downloads, Keras 2 <c>save_weights('x.h5')</c>, and the
/// <c>model_weights</c> group of <c>model.save('x.h5')</c>) with PureHDF.
/// </summary>
/// <remarks>
/// Layout: the weights group has attribute <c>layer_names</c> (Keras splits long attributes into
/// <c>layer_names0</c>, <c>layer_names1</c>, ...), one subgroup per layer with attribute <c>weight_names</c>, and
/// the datasets at those paths relative to the layer group. A corrupted file can make the reader neither allocate in
/// proportion to the sizes it claims nor recurse without end: before PureHDF opens it, <see cref="Hdf5Preflight"/>
/// checks every structure PureHDF will decode against its bounds, and a weight whose shape needs more bytes than the
/// file holds is rejected before it is read. Keras writes weights contiguous and uncompressed; chunked (compressed)
/// and virtual datasets, dense (fractal-heap) link and attribute storage, shared messages and soft or external links
/// are not supported.
/// </remarks>
public static class KerasH5
{
    /// <summary>Reads every layer and weight of a Keras HDF5 weights file.</summary>
    /// <param name="path">The .h5 file.</param>
    /// <returns>The layers and weights in file order.</returns>
    /// <exception cref="KerasH5FormatException">The file is not valid HDF5 or not in the Keras layout (the message
    /// names the file, layer and weight; when PureHDF found the problem, its exception is the inner exception).</exception>
    /// <exception cref="IOException">The file cannot be opened.</exception>
    public static KerasWeightsFile Read(string path)
    {
        // A file of another recognized kind (safetensors, zip, image, ...) is named as what it is, not as broken HDF5.
        if (Directory.Exists(path)) throw new KerasH5FormatException(path, null, null, "this is a directory, not a Keras HDF5 weights file");
        if (File.Exists(path) && FileSignature.Detect(path) is var kind && kind is not (FileKind.Hdf5 or FileKind.Unknown or FileKind.Empty))
            throw new KerasH5FormatException(path, null, null, $"this is {FileSignature.Name(kind)}, not a Keras HDF5 weights file" + (FileSignature.Advice(kind) is { } a ? $"; {a}" : ""));
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        return Read(fs, path);
    }

    /// <summary>Reads a Keras HDF5 weights image from a seekable stream.</summary>
    /// <param name="stream">Readable, seekable stream holding the whole file; left open.</param>
    /// <param name="displayName">Name used in error messages.</param>
    /// <returns>The layers and weights in file order.</returns>
    /// <exception cref="InvalidOptionException">The stream is not readable and seekable.</exception>
    /// <exception cref="KerasH5FormatException">The image is malformed.</exception>
    public static KerasWeightsFile Read(Stream stream, string displayName)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanRead || !stream.CanSeek) throw new InvalidOptionException(nameof(stream), "The stream must be readable and seekable.");
        string? layer = null, weight = null;
        try
        {
            long fileLength = stream.Length;
            Hdf5Preflight.Check(stream, (path, problem) => PreflightError(displayName, path, problem));
            stream.Position = 0;
            using var file = H5File.Open(stream, leaveOpen: true);
            IH5Group root = file;
            if (!HasList(root, "layer_names") && root.LinkExists("model_weights"))
                root = root.Group("model_weights");
            var layerNames = ReadList(root, "layer_names", fileLength, displayName, null);
            var layers = new List<KerasLayerWeights>(layerNames.Count);
            foreach (var ln in layerNames)
            {
                layer = ln;
                weight = null;
                if (!root.LinkExists(ln)) throw new KerasH5FormatException(displayName, ln, null, "the layer group is missing");
                var group = root.Group(ln);
                var weightNames = ReadList(group, "weight_names", fileLength, displayName, ln);
                var weights = new List<KerasWeight>(weightNames.Count);
                foreach (var wn in weightNames)
                {
                    weight = wn;
                    weights.Add(ReadWeight(group, wn, fileLength, displayName, ln));
                }
                layers.Add(new KerasLayerWeights(ln, weights));
            }
            return new KerasWeightsFile(displayName, layers);
        }
        catch (KerasH5FormatException)
        {
            throw;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // PureHDF reports corrupt structures with many exception types (its own, IndexOutOfRange, EndOfStream,
            // Overflow, ...); the caller gets one ConvKit type with the original kept as the inner exception.
            // The message says what it means for the user; the reader's exception type stays in InnerException.
            throw new KerasH5FormatException(displayName, layer, weight,
                $"the HDF5 structure is corrupt or truncated ({e.Message.ReplaceLineEndings(" ")})", e);
        }
    }

    // Names the layer and weight from the HDF5 path of the object at fault: /[model_weights/]layer[/weight path].
    static KerasH5FormatException PreflightError(string file, string path, string problem)
    {
        var rest = path.Trim('/');
        if (rest == "model_weights" || rest.StartsWith("model_weights/", StringComparison.Ordinal)) rest = rest["model_weights".Length..].TrimStart('/');
        var parts = rest.Split('/', 2);
        string? layer = parts[0].Length > 0 ? parts[0] : null;
        string? weight = parts.Length > 1 ? parts[1] : null;
        return new KerasH5FormatException(file, layer, weight, path == "/" ? problem : $"object '{path}': {problem}");
    }

    static KerasWeight ReadWeight(IH5Group group, string name, long fileLength, string file, string layer)
    {
        if (!group.LinkExists(name)) throw new KerasH5FormatException(file, layer, name, "the dataset is missing");
        var ds = group.Dataset(name);
        var type = ds.Type;
        if (type.Class != H5DataTypeClass.FloatingPoint || type.Size is not (2 or 4 or 8))
            throw new KerasH5FormatException(file, layer, name, $"expected float16/32/64 data, found {type.Class} of {type.Size} bytes");
        // Chunked data goes through index structures the preflight does not follow, and may decompress to any size.
        if (ds.Layout.Class is not (H5DataLayoutClass.Contiguous or H5DataLayoutClass.Compact))
            throw new KerasH5FormatException(file, layer, name, $"{ds.Layout.Class} datasets are not supported (Keras writes weights contiguous)");
        var dims = ds.Space.Dimensions;
        long count = 1;
        var shape = new long[dims.Length];
        for (int i = 0; i < dims.Length; i++)
        {
            if (dims[i] > (ulong)fileLength) throw Huge(file, layer, name, dims);
            shape[i] = (long)dims[i];
            count = checked(count * shape[i]);
            if (count * type.Size > fileLength) throw Huge(file, layer, name, dims);
        }
        float[] data = type.Size switch
        {
            4 => ds.Read<float[]>(),
            8 => Array.ConvertAll(ds.Read<double[]>(), d => (float)d),
            _ => Array.ConvertAll(ds.Read<Half[]>(), h => (float)h),
        };
        if (data.Length != count)
            throw new KerasH5FormatException(file, layer, name, $"read {data.Length} values for shape [{string.Join(", ", shape)}]");
        return new KerasWeight(name, shape, data);
    }

    static KerasH5FormatException Huge(string file, string layer, string name, ulong[] dims) =>
        new(file, layer, name, $"shape [{string.Join(", ", dims)}] needs more bytes than the {file} file holds");

    static bool HasList(IH5Object obj, string name) => obj.AttributeExists(name) || obj.AttributeExists(name + "0");

    /// <summary>Reads a string-list attribute, joining Keras's split form <c>name0</c>, <c>name1</c>, ...</summary>
    static List<string> ReadList(IH5Object obj, string name, long fileLength, string file, string? layer)
    {
        var result = new List<string>();
        if (obj.AttributeExists(name))
        {
            result.AddRange(ReadStrings(obj.Attribute(name), fileLength, file, layer));
            return result;
        }
        if (!obj.AttributeExists(name + "0"))
            throw new KerasH5FormatException(file, layer, null, $"attribute '{name}' is missing (not a Keras HDF5 weights file?)");
        for (int i = 0; obj.AttributeExists(name + i); i++)
            result.AddRange(ReadStrings(obj.Attribute(name + i), fileLength, file, layer));
        return result;
    }

    static string[] ReadStrings(IH5Attribute attr, long fileLength, string file, string? layer)
    {
        var dims = attr.Space.Dimensions;
        ulong total = 1;
        foreach (var d in dims)
        {
            if (d > (ulong)fileLength) throw new KerasH5FormatException(file, layer, null, $"attribute '{attr.Name}' claims {d} elements");
            total = checked(total * d);
        }
        if (total == 0) return []; // Keras stores an empty list as an empty float64 array
        if (total > (ulong)fileLength) throw new KerasH5FormatException(file, layer, null, $"attribute '{attr.Name}' claims {total} elements");
        var cls = attr.Type.Class;
        if (cls is not (H5DataTypeClass.String or H5DataTypeClass.VariableLength))
            throw new KerasH5FormatException(file, layer, null, $"attribute '{attr.Name}' should hold strings, not {cls}");
        var values = dims.Length == 0 ? [attr.Read<string>()] : attr.Read<string[]>();
        // Fixed-length byte strings (numpy 'S') come back null-padded.
        return Array.ConvertAll(values, v => (v ?? "").TrimEnd('\0'));
    }
}
