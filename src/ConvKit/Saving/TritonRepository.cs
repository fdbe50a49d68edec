using System.Globalization;
using System.Text;
using ConvKit.Models;

namespace ConvKit.Saving;

/// <summary>Options of <see cref="TritonRepository.Write"/>.</summary>
public sealed record TritonRepositoryOptions
{
    /// <summary>Model name in the repository (the folder name and <c>name</c> in config.pbtxt); null: the model's name.
    /// Letters, digits, '_', '-' and '.', at most 128 characters, not "." or "..".</summary>
    public string? Name { get; init; }

    /// <summary>Version folder, a positive integer (default 1).</summary>
    public long Version { get; init; } = 1;

    /// <summary><c>max_batch_size</c>: the largest batch Triton forms or accepts (default 32, at least 1).</summary>
    public int MaxBatchSize { get; init; } = 32;

    /// <summary><c>dynamic_batching.preferred_batch_size</c>; empty (the default): none, Triton batches up to
    /// <see cref="MaxBatchSize"/>. Each must be 1 to <see cref="MaxBatchSize"/>.</summary>
    public IReadOnlyList<int> PreferredBatchSizes { get; init; } = [];

    /// <summary><c>dynamic_batching.max_queue_delay_microseconds</c>: how long a request may wait for others to form a
    /// batch (default 100, at least 0).</summary>
    public long MaxQueueDelayMicroseconds { get; init; } = 100;

    /// <summary><c>instance_group { kind: KIND_CPU count }</c>: model instances run in parallel (default 1).</summary>
    public int InstanceCount { get; init; } = 1;

    /// <summary>Replace an existing non-empty version folder (default false: refuse).</summary>
    public bool Overwrite { get; init; }

    /// <summary>The ONNX export options (opset, layout); null for the defaults.</summary>
    public OnnxExportOptions? Onnx { get; init; }
}

/// <summary>What <see cref="TritonRepository.Write"/> wrote.</summary>
/// <param name="ModelFolder">The model's folder, <c>DIR/name</c>.</param>
/// <param name="ConfigPath">Its config.pbtxt.</param>
/// <param name="OnnxPath">The model file, <c>DIR/name/version/model.onnx</c>.</param>
/// <param name="Config">The text of config.pbtxt.</param>
public sealed record TritonRepositoryEntry(string ModelFolder, string ConfigPath, string OnnxPath, string Config);

/// <summary>
/// Writes a ConvKit model as a Triton Inference Server (or KServe) model repository entry:
/// <c>DIR/name/config.pbtxt</c> and <c>DIR/name/version/model.onnx</c>, for Triton's ONNX Runtime backend with
/// dynamic batching.
/// </summary>
/// <remarks>
/// config.pbtxt is Triton's <c>ModelConfig</c> message in protobuf text format. Inputs and outputs are the ONNX graph's
/// (Keras layer names), FP32, with dims without the batch axis (it is Triton's, up to <c>max_batch_size</c>); image
/// dims are HWC, or CHW when <see cref="OnnxExportOptions.ChannelsLast"/> is false; a size the model leaves open is -1.
/// The entry is staged in a hidden folder inside DIR and renamed into place, so a failure leaves the repository as it
/// was. Other versions already in <c>DIR/name</c> are kept; config.pbtxt (one per model) is replaced.
/// </remarks>
public static class TritonRepository
{
    /// <summary>The file name Triton's ONNX Runtime backend loads by default.</summary>
    public const string ModelFileName = "model.onnx";

    /// <summary>The model configuration file name.</summary>
    public const string ConfigFileName = "config.pbtxt";

    /// <summary>The longest model name accepted.</summary>
    public const int MaxNameLength = 128;

    /// <summary>Why <paramref name="name"/> cannot name a model in a repository, or null when it can.</summary>
    /// <param name="name">A candidate model name.</param>
    /// <returns>A sentence naming the problem, or null.</returns>
    public static string? NameProblem(string? name)
    {
        if (string.IsNullOrEmpty(name)) return "it is empty";
        if (name.Length > MaxNameLength) return $"it has {name.Length} characters (at most {MaxNameLength})";
        if (name is "." or "..") return $"'{name}' is not a folder name";
        if (name[0] == '.') return "it starts with '.' (a hidden folder, which Triton's repository scan may skip)";
        foreach (var c in name)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.'))
                return $"it contains {Describe(c)}; use letters, digits, '_', '-' and '.'";
        return null;
    }

    static string Describe(char c) => c switch
    {
        '/' or '\\' => $"'{c}' (a path separator)",
        ' ' => "a space",
        _ when char.IsControl(c) => $"the control character U+{(int)c:X4}",
        _ => $"'{c}'",
    };

    /// <summary>Checks the options; the messages name the <see cref="TritonRepositoryOptions"/> property.</summary>
    /// <exception cref="ConvKitException">An option is out of range.</exception>
    static void Validate(TritonRepositoryOptions o, string name)
    {
        if (NameProblem(name) is { } why) throw new InvalidOptionException("Name", $"Triton model name '{name}' is not valid: {why}.");
        if (o.Version < 1) throw new InvalidOptionException("Version", $"Triton model version must be a positive integer; received {o.Version}.");
        if (o.MaxBatchSize < 1) throw new InvalidOptionException("MaxBatchSize", $"Triton max_batch_size must be at least 1; received {o.MaxBatchSize}.");
        if (o.MaxQueueDelayMicroseconds < 0) throw new InvalidOptionException("MaxQueueDelayMicroseconds", $"Triton max_queue_delay_microseconds must be at least 0; received {o.MaxQueueDelayMicroseconds}.");
        if (o.InstanceCount < 1) throw new InvalidOptionException("InstanceCount", $"Triton instance count must be at least 1; received {o.InstanceCount}.");
        foreach (var p in o.PreferredBatchSizes ?? [])
            if (p < 1 || p > o.MaxBatchSize)
                throw new InvalidOptionException("PreferredBatchSizes", $"Triton preferred_batch_size {p} must be 1 to max_batch_size ({o.MaxBatchSize}).");
    }

    /// <summary>The config.pbtxt text for a model with these graph inputs and outputs.</summary>
    internal static string Config(string name, TritonRepositoryOptions o,
        IEnumerable<(string Name, OnnxDataType Type, OnnxDim[] Dims)> inputs,
        IEnumerable<(string Name, OnnxDataType Type, OnnxDim[] Dims)> outputs)
    {
        var b = new StringBuilder();
        string I(long v) => v.ToString(CultureInfo.InvariantCulture);
        b.Append("name: ").Append(Quote(name)).Append('\n');
        b.Append("platform: \"onnxruntime_onnx\"\n");
        b.Append("max_batch_size: ").Append(I(o.MaxBatchSize)).Append('\n');
        void Tensors(string field, IEnumerable<(string Name, OnnxDataType Type, OnnxDim[] Dims)> list)
        {
            b.Append(field).Append(" [\n");
            bool first = true;
            foreach (var (n, type, dims) in list)
            {
                if (!first) b.Append(",\n");
                first = false;
                // dims[0] is the symbolic batch axis N; Triton adds it itself when max_batch_size > 0.
                var rest = dims.Skip(1).Select(d => d.Value is { } v ? I(v) : "-1");
                b.Append("  {\n");
                b.Append("    name: ").Append(Quote(n)).Append('\n');
                b.Append("    data_type: ").Append(type switch
                {
                    OnnxDataType.Float => "TYPE_FP32",
                    OnnxDataType.Int64 => "TYPE_INT64",
                    _ => throw new UnsupportedException($"ONNX value '{n}' has element type {type}, which has no Triton data type here."),
                }).Append('\n');
                b.Append("    dims: [ ").Append(string.Join(", ", rest)).Append(" ]\n");
                b.Append("  }");
            }
            b.Append("\n]\n");
        }
        Tensors("input", inputs);
        Tensors("output", outputs);
        b.Append("dynamic_batching {\n");
        if (o.PreferredBatchSizes is { Count: > 0 } preferred)
            b.Append("  preferred_batch_size: [ ").Append(string.Join(", ", preferred.Select(p => I(p)))).Append(" ]\n");
        b.Append("  max_queue_delay_microseconds: ").Append(I(o.MaxQueueDelayMicroseconds)).Append('\n');
        b.Append("}\n");
        b.Append("instance_group [\n  {\n    count: ").Append(I(o.InstanceCount)).Append("\n    kind: KIND_CPU\n  }\n]\n");
        return b.ToString();
    }

    /// <summary>A protobuf text-format string literal (C escapes; non-ASCII as UTF-8 octal escapes).</summary>
    static string Quote(string s)
    {
        var b = new StringBuilder("\"");
        foreach (var by in Encoding.UTF8.GetBytes(s))
        {
            switch (by)
            {
                case (byte)'"': b.Append("\\\""); break;
                case (byte)'\\': b.Append("\\\\"); break;
                case (byte)'\n': b.Append("\\n"); break;
                default:
                    if (by is >= 0x20 and < 0x7f) b.Append((char)by);
                    else b.Append('\\').Append(Convert.ToString(by, 8).PadLeft(3, '0'));
                    break;
            }
        }
        return b.Append('"').ToString();
    }

    /// <summary>
    /// Checks that <paramref name="repository"/> can receive <paramref name="name"/>/<paramref name="version"/> without
    /// building anything: the repository is a folder or can be created in an existing folder, the model folder is a
    /// folder, and the version folder is absent or empty unless <paramref name="overwrite"/>.
    /// </summary>
    /// <param name="repository">The repository folder.</param>
    /// <param name="name">The model name.</param>
    /// <param name="version">The version.</param>
    /// <param name="overwrite">Whether a non-empty version folder may be replaced.</param>
    /// <exception cref="ConvKitException">The destination cannot be used; the message names the path.</exception>
    public static void CheckDestination(string repository, string name, long version, bool overwrite)
    {
        if (string.IsNullOrWhiteSpace(repository)) throw new ConvKitException("the Triton repository must name a folder; received an empty value.");
        if (NameProblem(name) is { } why) throw new InvalidOptionException("Name", $"Triton model name '{name}' is not valid: {why}.");
        if (version < 1) throw new InvalidOptionException("Version", $"Triton model version must be a positive integer; received {version}.");
        var full = Path.GetFullPath(repository);
        if (File.Exists(full)) throw new ConvKitException($"Triton repository '{repository}' is a file, not a folder.");
        if (!Directory.Exists(full) && Path.GetDirectoryName(full) is { } parent && !Directory.Exists(parent))
            throw new ConvKitException($"Triton repository '{repository}': the folder '{parent}' does not exist.");
        var modelDir = Path.Combine(full, name);
        if (File.Exists(modelDir)) throw new ConvKitException($"'{modelDir}' is a file; the Triton model '{name}' needs a folder there.");
        var versionDir = Path.Combine(modelDir, version.ToString(CultureInfo.InvariantCulture));
        if (File.Exists(versionDir)) throw new ConvKitException($"'{versionDir}' is a file; version {version} of '{name}' needs a folder there.");
        if (!overwrite && Directory.Exists(versionDir) && Directory.EnumerateFileSystemEntries(versionDir).Any())
            throw new ConvKitException($"'{versionDir}' already holds a model version; choose another version or allow overwriting it.");
    }

    /// <summary>
    /// Exports <paramref name="model"/> to ONNX and writes it with its config.pbtxt into the Triton model repository
    /// <paramref name="repository"/> (created when missing, inside an existing folder).
    /// </summary>
    /// <param name="model">A functional model or a built Sequential.</param>
    /// <param name="repository">The repository folder (DIR).</param>
    /// <param name="options">Name, version, batching; null for the defaults.</param>
    /// <returns>The paths written and the config text.</returns>
    /// <exception cref="ConvKitException">An option or the destination is not valid, the model cannot be exported (see
    /// <see cref="OnnxExport.ToBytes"/>), or the files cannot be written (the message names the path and the cause).
    /// The repository is left as it was.</exception>
    public static TritonRepositoryEntry Write(Model model, string repository, TritonRepositoryOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var o = options ?? new TritonRepositoryOptions();
        var name = o.Name ?? model.Name;
        Validate(o, name);
        CheckDestination(repository, name, o.Version, o.Overwrite);

        var repo = Path.GetFullPath(repository);
        var modelDir = Path.Combine(repo, name);
        var version = o.Version.ToString(CultureInfo.InvariantCulture);
        var versionDir = Path.Combine(modelDir, version);
        bool createdRepo = !Directory.Exists(repo);
        var stage = Path.Combine(repo, $"{AtomicFile.TempPrefix}triton-{name}.{Environment.ProcessId}.{Guid.NewGuid():N}");
        string? trash = null;
        bool createdModelDir = false, versionMoved = false;
        try
        {
            Directory.CreateDirectory(repo);
            var stagedVersion = Path.Combine(stage, version);
            Directory.CreateDirectory(stagedVersion);
            var (inputs, outputs) = OnnxExport.SaveWithSignature(model, Path.Combine(stagedVersion, ModelFileName), o.Onnx);
            var config = Config(name, o, inputs, outputs);
            AtomicFile.Write(Path.Combine(stage, ConfigFileName), s => s.Write(Encoding.UTF8.GetBytes(config)));

            if (!Directory.Exists(modelDir))
            {
                // The common case: one rename makes the whole entry appear at once.
                Directory.Move(stage, modelDir);
                createdModelDir = true;
            }
            else
            {
                if (Directory.Exists(versionDir))
                {
                    trash = Path.Combine(repo, $"{AtomicFile.TempPrefix}triton-old-{name}.{Environment.ProcessId}.{Guid.NewGuid():N}");
                    Directory.Move(versionDir, trash);
                }
                Directory.Move(stagedVersion, versionDir);
                versionMoved = true;
                File.Move(Path.Combine(stage, ConfigFileName), Path.Combine(modelDir, ConfigFileName), overwrite: true);
                TryDeleteDirectory(stage);
            }
            if (trash is not null) TryDeleteDirectory(trash);
            return new TritonRepositoryEntry(modelDir, Path.Combine(modelDir, ConfigFileName), Path.Combine(versionDir, ModelFileName), config);
        }
        catch (Exception e)
        {
            // Undo in reverse: the new version out, the old one back, the staging folder and a repository we created gone.
            if (createdModelDir) TryDeleteDirectory(modelDir);
            else if (versionMoved) TryDeleteDirectory(versionDir);
            if (trash is not null && !Directory.Exists(versionDir))
                try { Directory.Move(trash, versionDir); } catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { }
            TryDeleteDirectory(stage);
            if (createdRepo) TryDeleteDirectory(repo);
            if (e is IOException or UnauthorizedAccessException)
                throw new ConvKitException($"cannot write the Triton repository '{repository}': {AtomicFile.Explain(e, Path.Combine(versionDir, ModelFileName))}", e);
            throw;
        }
    }

    static void TryDeleteDirectory(string dir)
    {
        try
        {
            if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
