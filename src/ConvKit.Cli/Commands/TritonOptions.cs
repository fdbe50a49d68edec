using System.CommandLine;
using ConvKit.Models;
using ConvKit.Saving;

namespace ConvKit.Cli.Commands;

/// <summary>
/// The <c>export --triton-repo DIR</c> options: a Triton/KServe model repository instead of a single .onnx file. Kept
/// apart from <see cref="ExportCommand"/> so that command stays about the model and the ONNX file.
/// </summary>
public sealed class TritonOptions
{
    readonly Option<string?> repo = new("--triton-repo") { Description = "Write a Triton/KServe model repository in this folder instead of --onnx: DIR/NAME/config.pbtxt and DIR/NAME/VERSION/model.onnx." };
    readonly Option<string?> name = new("--triton-name") { Description = "Model name in the repository (letters, digits, '_', '-', '.'); default: the model's name." };
    readonly Option<long> version = new("--triton-version") { Description = "Version folder, a positive integer.", DefaultValueFactory = _ => 1 };
    readonly Option<int> maxBatch = new("--max-batch") { Description = "max_batch_size of the Triton config.", DefaultValueFactory = _ => 32 };
    readonly Option<long> maxQueueDelay = new("--max-queue-delay-us") { Description = "dynamic_batching max_queue_delay_microseconds.", DefaultValueFactory = _ => 100 };
    readonly Option<string?> preferred = new("--preferred-batch") { Description = "dynamic_batching preferred_batch_size, comma-separated, e.g. 8,16." };
    readonly Option<int> instances = new("--triton-instances") { Description = "CPU model instances (instance_group count).", DefaultValueFactory = _ => 1 };
    readonly Option<bool> overwrite = new("--overwrite") { Description = "Replace an existing, non-empty version folder." };

    TritonOptions() { }

    /// <summary>Creates the option set.</summary>
    public static TritonOptions Create() => new();

    /// <summary>All options, to add to the command.</summary>
    public Option[] All => [repo, name, version, maxBatch, maxQueueDelay, preferred, instances, overwrite];

    /// <summary>
    /// Validates the Triton options by their CLI names before any model is built; returns the repository folder and
    /// options, or null when the export writes a single .onnx file.
    /// </summary>
    /// <exception cref="ConvKitException">Neither or both of --onnx and --triton-repo, or a Triton option is out of
    /// range or given without --triton-repo.</exception>
    public (string Dir, TritonRepositoryOptions Options)? Check(ParseResult parse, bool onnxGiven)
    {
        var dir = parse.GetValue(repo);
        if (dir is null)
        {
            if (!onnxGiven) throw new InvalidOptionException("--onnx", "Option '--onnx' is required (or '--triton-repo DIR' for a Triton model repository).");
            foreach (var o in All.Skip(1))
                if (parse.GetResult(o) is { Implicit: false })
                    throw new InvalidOptionException(o.Name, $"{o.Name} applies only to --triton-repo exports.");
            return null;
        }
        if (onnxGiven) throw new InvalidOptionException("--triton-repo", "give either --onnx FILE or --triton-repo DIR, not both.");
        if (string.IsNullOrWhiteSpace(dir)) throw new InvalidOptionException("--triton-repo", "--triton-repo must name a folder; received an empty value.");
        if (parse.GetValue(name) is { } n && TritonRepository.NameProblem(n) is { } why)
            throw new InvalidOptionException("--triton-name", $"--triton-name '{n}' is not a valid Triton model name: {why}.");
        long v = parse.GetValue(version);
        if (v < 1) throw new InvalidOptionException("--triton-version", $"--triton-version must be a positive integer; received {v}.");
        int mb = parse.GetValue(maxBatch);
        if (mb < 1) throw new InvalidOptionException("--max-batch", $"--max-batch must be at least 1; received {mb}.");
        long delay = parse.GetValue(maxQueueDelay);
        if (delay < 0) throw new InvalidOptionException("--max-queue-delay-us", $"--max-queue-delay-us must be at least 0; received {delay}.");
        int inst = parse.GetValue(instances);
        if (inst < 1) throw new InvalidOptionException("--triton-instances", $"--triton-instances must be at least 1; received {inst}.");
        var sizes = new List<int>();
        if (parse.GetValue(preferred) is { } list)
            foreach (var part in list.Split(','))
            {
                if (!int.TryParse(part.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int p) || p < 1 || p > mb)
                    throw new InvalidOptionException("--preferred-batch", $"--preferred-batch must be comma-separated integers from 1 to --max-batch ({mb}); received '{list}'.");
                sizes.Add(p);
            }
        if (File.Exists(dir)) throw new InvalidOptionException("--triton-repo", $"--triton-repo '{dir}' is a file; name a folder.");
        var full = Path.GetFullPath(dir);
        if (!Directory.Exists(full) && Path.GetDirectoryName(full) is { } parent && !Directory.Exists(parent))
            throw new InvalidOptionException("--triton-repo", $"--triton-repo '{dir}': the folder '{parent}' does not exist.");
        bool replace = parse.GetValue(overwrite);
        if (parse.GetValue(name) is { } given) Destination(dir, given, v, replace);
        return (dir, new TritonRepositoryOptions
        {
            Name = parse.GetValue(name),
            Version = v,
            MaxBatchSize = mb,
            MaxQueueDelayMicroseconds = delay,
            PreferredBatchSizes = sizes,
            InstanceCount = inst,
            Overwrite = replace,
        });
    }

    static void Destination(string dir, string modelName, long v, bool replace)
    {
        try
        {
            TritonRepository.CheckDestination(dir, modelName, v, replace);
        }
        catch (ConvKitException e) when (e.Message.Contains("allow overwriting", StringComparison.Ordinal))
        {
            throw new ConvKitException(e.Message.Replace("allow overwriting it", "pass --overwrite", StringComparison.Ordinal).Replace("choose another version", "choose another --triton-version", StringComparison.Ordinal));
        }
    }

    /// <summary>Writes the repository entry for <paramref name="model"/> and prints what was written.</summary>
    /// <returns>The exit code, 0.</returns>
    public static int Write(CliConsole console, Model model, (string Dir, TritonRepositoryOptions Options) target, OnnxExportOptions onnx)
    {
        var (dir, o) = (target.Dir, target.Options with { Onnx = onnx });
        var modelName = o.Name ?? model.Name;
        if (o.Name is null)
        {
            if (TritonRepository.NameProblem(modelName) is { } why)
                throw new InvalidOptionException("--triton-name", $"the model's name '{modelName}' is not a valid Triton model name ({why}); give one with --triton-name.");
            Destination(dir, modelName, o.Version, o.Overwrite);
        }
        var entry = TritonRepository.Write(model, dir, o with { Name = modelName });
        console.Output.WriteLine(FormattableString.Invariant(
            $"wrote Triton model '{modelName}' version {o.Version} in {dir}: {entry.ConfigPath} and {entry.OnnxPath} ({new FileInfo(entry.OnnxPath).Length:N0} bytes, opset {onnx.Opset}, max_batch_size {o.MaxBatchSize}, dynamic batching with max_queue_delay_microseconds {o.MaxQueueDelayMicroseconds})"));
        return 0;
    }
}
