using System.Globalization;
using System.Text.Json;
using ConvKit.Applications;
using ConvKit.Formats.Onnx;
using ConvKit.Models.Inference;
using ConvKit.Saving;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace ConvKit.Quantization;

/// <summary>
/// An int8 model made by <see cref="Quantizer.Quantize"/> (or read back with <see cref="Load"/>): a QDQ ONNX graph run by
/// an ONNX Runtime session (all graph optimizations, so the Q/DQ pairs fuse into integer kernels).
/// <para><b>Thread safety.</b> <see cref="Predict"/> and <see cref="Evaluate"/> may be called from any number of
/// threads at once (ONNX Runtime's <c>Run</c> is thread-safe); each call gives what it gives alone.</para>
/// </summary>
public sealed class QuantizedModel : IPredictor, IDisposable
{
    internal const string KeyModelName = "convkit.model";
    internal const string KeyInputShape = "convkit.input_shape";
    internal const string KeyCalibration = "convkit.calibration";
    internal const string KeyScheme = "convkit.quantization";
    internal const string KeyPreprocessing = "convkit.preprocessing";
    internal const string KeyClassNames = "convkit.class_names";

    readonly byte[] onnx;
    readonly InferenceSession session;
    readonly string inputName;
    readonly string outputName;
    volatile bool disposed;

    internal QuantizedModel(byte[] onnx, int threads, string source = "the quantizer's output")
    {
        this.onnx = onnx;
        Threads = threads;
        using var options = new SessionOptions
        {
            IntraOpNumThreads = threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        try
        {
            session = new InferenceSession(onnx, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new InvalidFileException($"{source}: ONNX Runtime cannot load the quantized model: {e.Message}", e);
        }
        var meta = session.ModelMetadata.CustomMetadataMap;
        if (session.InputNames.Count != 1 || session.OutputNames.Count != 1 || !meta.TryGetValue(KeyInputShape, out var shape))
        {
            session.Dispose();
            throw new InvalidFileException($"{source} is not a ConvKit quantized model (one input, one output and '{KeyInputShape}' metadata expected).");
        }
        inputName = session.InputNames[0];
        outputName = session.OutputNames[0];
        ModelName = meta.TryGetValue(KeyModelName, out var name) ? name : "model";
        Calibration = meta.TryGetValue(KeyCalibration, out var c) ? c : "";
        try
        {
            InputShape = new Shape([.. shape.Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture))]);
        }
        catch (Exception e) when (e is FormatException or OverflowException or ShapeException)
        {
            session.Dispose();
            throw new InvalidFileException($"{source}: metadata '{KeyInputShape}' is '{shape}', not a list of sizes.", e);
        }
        OutputShape = new Shape([.. session.OutputMetadata[outputName].Dimensions.Skip(1).Select(d => d > 0 ? d : Shape.Unknown)]);
        if (meta.TryGetValue(KeyPreprocessing, out var p))
        {
            if (!Enum.TryParse<Preprocessing>(p, out var preprocessing) || !Enum.IsDefined(preprocessing) || int.TryParse(p, out _))
            {
                session.Dispose();
                throw new InvalidFileException($"{source}: metadata '{KeyPreprocessing}' is '{p}'; expected one of {string.Join(", ", Enum.GetNames<Preprocessing>())}.");
            }
            Preprocessing = preprocessing;
        }
        if (meta.TryGetValue(KeyClassNames, out var names))
        {
            string[]? parsed = null;
            try { parsed = JsonSerializer.Deserialize<string[]>(names); }
            catch (JsonException) { }
            if (parsed is null || parsed.Any(string.IsNullOrEmpty) || !(OutputShape is { Rank: 1 } o && o[0] == parsed.Length))
            {
                session.Dispose();
                throw new InvalidFileException($"{source}: metadata '{KeyClassNames}' is not a JSON list of one name per output class ({OutputShape.ToBatchString()}).");
            }
            ClassNames = parsed;
        }
    }

    /// <summary>Whether <paramref name="path"/> is an int8 model written by <see cref="Save"/> (an ONNX file with
    /// ConvKit's quantization metadata); reads the metadata only, not the graph.</summary>
    /// <param name="path">Any path.</param>
    /// <returns>False for a folder, a missing or unreadable file, or any other file.</returns>
    public static bool IsQuantizedModelFile(string path)
    {
        if (string.IsNullOrEmpty(path) || !File.Exists(path)) return false;
        try
        {
            return FileSignature.Detect(path) == FileKind.Onnx && OnnxReader.ReadMetadata(path).ContainsKey(KeyScheme);
        }
        catch (Exception e) when (e is ConvKitException or IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>The name of the model that was quantized.</summary>
    public string ModelName { get; }

    /// <summary>The sample shape <see cref="Predict"/> takes (NHWC images, without the batch axis), as the FP32 model's.</summary>
    public Shape InputShape { get; }

    /// <summary>One sample's output shape (class scores: (classes)).</summary>
    public Shape OutputShape { get; }

    /// <summary>The pixel preprocessing stored at quantization (<see cref="QuantizationOptions.Preprocessing"/>); null
    /// when none was.</summary>
    public Preprocessing? Preprocessing { get; }

    /// <summary>The class names stored at quantization (<see cref="QuantizationOptions.ClassNames"/>); null when none were.</summary>
    public IReadOnlyList<string>? ClassNames { get; }

    string IPredictor.Name => ModelName;

    /// <summary>How it was calibrated ("MinMax on 500 samples").</summary>
    public string Calibration { get; }

    /// <summary>The ONNX Runtime session's intra-op threads.</summary>
    public int Threads { get; }

    /// <summary>The size of the QDQ ONNX model in bytes.</summary>
    public long SizeInBytes => onnx.LongLength;

    /// <summary>Reads a model written by <see cref="Save"/>.</summary>
    /// <param name="path">The .onnx file.</param>
    /// <param name="threads">Intra-op threads; null takes <see cref="Backend.Threads"/>.</param>
    /// <returns>The model (dispose it).</returns>
    /// <exception cref="InvalidOptionException"><paramref name="path"/> does not exist, or <paramref name="threads"/> is out of range.</exception>
    /// <exception cref="InvalidFileException">The file is not a quantized model ConvKit wrote.</exception>
    public static QuantizedModel Load(string path, int? threads = null)
    {
        Require.NotBlank(path);
        if (!File.Exists(path)) throw new InvalidOptionException(nameof(path), $"path '{path}' does not exist.");
        if (threads is { } t && (t < 1 || t > Backend.MaxThreads)) throw new InvalidOptionException(nameof(threads), $"threads must be between 1 and {Backend.MaxThreads}; received {t}.");
        return new QuantizedModel(File.ReadAllBytes(path), threads ?? Backend.Threads, $"'{path}'");
    }

    /// <summary>Writes the QDQ ONNX model (with ConvKit's metadata) atomically; any ONNX Runtime can run it.</summary>
    /// <param name="path">The .onnx file to write (replaced when it exists).</param>
    /// <exception cref="IOException">The file cannot be written.</exception>
    public void Save(string path)
    {
        Require.NotBlank(path);
        AtomicFile.Write(path, s => s.Write(onnx));
    }

    /// <summary>Runs the int8 model on <paramref name="x"/> in batches.</summary>
    /// <param name="x">Float32 samples of <see cref="InputShape"/> with a leading batch axis (NHWC, preprocessed as for the FP32 model's Predict).</param>
    /// <param name="batchSize">Samples per ONNX Runtime call.</param>
    /// <returns>A new float32 CPU tensor of outputs, one row per sample.</returns>
    /// <exception cref="ShapeException"><paramref name="x"/> does not have the input shape.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="batchSize"/> is below 1, or <paramref name="x"/> is not float32.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    /// <remarks>May be called from several threads at once.</remarks>
    public Tensor Predict(Tensor x, int batchSize = 128)
    {
        ArgumentNullException.ThrowIfNull(x);
        ObjectDisposedException.ThrowIf(disposed, this);
        Require.Positive(batchSize);
        CheckInput(x);
        long n = x.shape[0];
        var parts = new List<Tensor>();
        try
        {
            using var runOptions = new RunOptions();
            for (long start = 0; start < n; start += batchSize)
            {
                using var batch = x.narrow(0, start, Math.Min(batchSize, n - start)).cpu().contiguous();
                var data = batch.data<float>().ToArray();
                using var value = OrtValue.CreateTensorValueFromMemory(data, batch.shape);
                using var results = session.Run(runOptions, [inputName], [value], [outputName]);
                var info = results[0].GetTensorTypeAndShape();
                parts.Add(tensor(results[0].GetTensorDataAsSpan<float>().ToArray(), info.Shape));
            }
            if (parts.Count == 0)
                return empty([0, .. OutputShape.Dims.ToArray().Select(d => (long)Math.Max(d, 0))]);
            return parts.Count == 1 ? parts[0] : cat(parts, 0);
        }
        finally
        {
            if (parts.Count > 1) foreach (var p in parts) p.Dispose();
        }
    }

    /// <summary>Top-1 accuracy of the int8 model on labelled samples.</summary>
    /// <param name="x">Samples, as <see cref="Predict"/> takes them.</param>
    /// <param name="labels">Integer class indices, one per sample.</param>
    /// <param name="batchSize">Samples per ONNX Runtime call.</param>
    /// <returns><c>{"accuracy": ...}</c>.</returns>
    /// <exception cref="ShapeException">The samples do not have the input shape, or the label count differs.</exception>
    public IReadOnlyDictionary<string, double> Evaluate(Tensor x, Tensor labels, int batchSize = 128)
    {
        ArgumentNullException.ThrowIfNull(labels);
        if (labels.shape.Length != 1 || labels.shape[0] != x.shape[0])
            throw new ShapeException($"labels has shape ({string.Join(", ", labels.shape)}); one label per sample ({x.shape[0]}) is expected.");
        using var y = Predict(x, batchSize);
        return new Dictionary<string, double> { ["accuracy"] = Evaluation.Top1.Accuracy(y, labels) };
    }

    void CheckInput(Tensor x)
    {
        var s = x.shape;
        if (s.Length != InputShape.Rank + 1 || Enumerable.Range(0, InputShape.Rank).Any(i => InputShape[i] != Shape.Unknown && InputShape[i] != s[i + 1]))
            throw new ShapeException($"quantized model '{ModelName}' takes {InputShape.ToBatchString()}; received a tensor of shape ({string.Join(", ", s)}).");
        if (x.dtype != ScalarType.Float32)
            throw new InvalidOptionException("x", $"x must be float32 (preprocessed as for the FP32 model); received {x.dtype}.");
    }

    /// <summary>Releases the ONNX Runtime session.</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        session.Dispose();
    }
}
