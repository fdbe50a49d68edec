using System.Globalization;
using System.Text.Json;
using ConvKit.Models;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace ConvKit.Quantization;

/// <summary>
/// Post-training static int8 quantization. The model is exported to ONNX (ConvKit's own exporter), simplified (batch
/// normalization folded into the convolution before it), calibrated by running the calibration samples through ONNX
/// Runtime with every tensor to be quantized as an extra output, and rewritten as a QDQ graph: uint8 asymmetric
/// activations (QuantizeLinear/DequantizeLinear), int8 symmetric per-output-channel weights, int32 biases. ONNX Runtime
/// fuses that graph into its integer kernels (QLinearConv, QLinearAdd, QGemm, ...; on x86 with AVX-512 VNNI they use
/// the int8 dot-product instructions).
/// </summary>
public static class Quantizer
{
    /// <summary>
    /// Quantizes <paramref name="model"/> with the ranges its activations take on <paramref name="calibrationImages"/>.
    /// </summary>
    /// <param name="model">A built functional or Sequential model with one image input and one output, on the CPU, float32.</param>
    /// <param name="calibrationImages">Float32 samples in the layout <see cref="Model.Predict"/> takes (NHWC for images),
    /// preprocessed as for Predict; a few hundred are enough.</param>
    /// <param name="options">Options; null for <see cref="QuantizationOptions.Default"/>.</param>
    /// <returns>The quantized model, ready to predict (dispose it).</returns>
    /// <exception cref="InvalidOptionException">The calibration set is empty, or an option is out of range (named).</exception>
    /// <exception cref="ShapeException">The calibration samples do not have the model's input shape.</exception>
    /// <exception cref="UnsupportedException">The model cannot be quantized; the message names the model or the layer.</exception>
    public static QuantizedModel Quantize(Model model, Tensor calibrationImages, QuantizationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(calibrationImages);
        options ??= QuantizationOptions.Default;
        options.Validate();
        if (calibrationImages.shape.Length == 0 || calibrationImages.shape[0] == 0)
            throw new InvalidOptionException("calibration_images", "calibration_images is empty: post-training quantization needs calibration samples (a few hundred) to measure activation ranges.");
        if (!model.IsBuilt) throw new UnsupportedException($"ConvKit cannot quantize model '{model.Name}': it is not built (call Build or Fit first).");
        var input = model.ModelInputShape;
        var sample = calibrationImages.shape[1..];
        if (sample.Length != input.Rank || Enumerable.Range(0, input.Rank).Any(i => input[i] != Shape.Unknown && input[i] != sample[i]))
            throw new ShapeException($"calibration_images has samples of shape ({string.Join(", ", sample)}), but model '{model.Name}' takes {input.ToBatchString()}.");
        if (calibrationImages.dtype != ScalarType.Float32)
            throw new InvalidOptionException("calibration_images", $"calibration_images must be float32 (preprocessed as for Predict); received {calibrationImages.dtype}.");

        if (options.ClassNames is { } names && !(model.ModelOutputShape is { Rank: 1 } o && o[0] == names.Count))
            throw new InvalidOptionException("class_names", $"class_names holds {names.Count} names, but model '{model.Name}' outputs {model.ModelOutputShape.ToBatchString()}.");
        var graph = QdqGraph.FromModel(model);
        long n = options.Samples > 0 ? Math.Min(options.Samples, calibrationImages.shape[0]) : calibrationImages.shape[0];
        using var x = calibrationImages.narrow(0, 0, n).cpu().contiguous();
        var ranges = Calibrate(graph, x, options);
        using var builder = graph.QdqBuilder(ranges, Opset);
        var threads = options.Threads ?? Backend.Threads;
        var meta = builder.MetadataProps;
        meta[QuantizedModel.KeyModelName] = model.Name;
        meta[QuantizedModel.KeyInputShape] = string.Join(",", Enumerable.Range(0, input.Rank).Select(i => input[i].ToString(CultureInfo.InvariantCulture)));
        meta[QuantizedModel.KeyCalibration] = $"{options.Method} {(options.Method == CalibrationMethod.Percentile ? options.Percentile.ToString(CultureInfo.InvariantCulture) + " " : "")}on {n} samples";
        if (options.Preprocessing is { } preprocessing) meta[QuantizedModel.KeyPreprocessing] = preprocessing.ToString();
        if (options.ClassNames is { } classNames) meta[QuantizedModel.KeyClassNames] = JsonSerializer.Serialize(classNames);
        meta[QuantizedModel.KeyScheme] = "QDQ: uint8 asymmetric activations, int8 symmetric per-channel weights, int32 biases";
        return new QuantizedModel(builder.ToBytes(), threads);
    }

    /// <summary>Opset 13: the first with per-axis QuantizeLinear/DequantizeLinear.</summary>
    internal const int Opset = 13;

    static Dictionary<string, (float Min, float Max)> Calibrate(QdqGraph graph, Tensor x, QuantizationOptions options)
    {
        var bytes = graph.CalibrationGraph(Opset);
        using var so = new SessionOptions
        {
            IntraOpNumThreads = options.Threads ?? Backend.Threads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            // Basic only: the extra outputs must stay what the FP32 graph computes.
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_BASIC,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        using var session = new InferenceSession(bytes, so);
        var names = graph.Calibrated.ToArray();
        var min = names.ToDictionary(t => t, _ => float.PositiveInfinity, StringComparer.Ordinal);
        var max = names.ToDictionary(t => t, _ => float.NegativeInfinity, StringComparer.Ordinal);
        ForEachBatch(session, graph, x, options.BatchSize, names, (t, values) =>
        {
            float lo = min[t], hi = max[t];
            foreach (var v in values)
            {
                if (!float.IsFinite(v)) continue;
                if (v < lo) lo = v;
                if (v > hi) hi = v;
            }
            (min[t], max[t]) = (lo, hi);
        });
        foreach (var t in names)
            if (float.IsInfinity(min[t])) throw new ConvKitException($"Calibration of model '{graph.ModelName}' found no finite value in '{t}': the model outputs NaN or infinity on the calibration samples.");
        if (options.Method == CalibrationMethod.MinMax) return names.ToDictionary(t => t, t => (min[t], max[t]), StringComparer.Ordinal);

        // Percentile: a second pass fills a 4096-bin histogram per tensor over its [min, max].
        const int bins = 4096;
        var hist = names.ToDictionary(t => t, _ => new long[bins], StringComparer.Ordinal);
        ForEachBatch(session, graph, x, options.BatchSize, names, (t, values) =>
        {
            var h = hist[t];
            float lo = min[t], width = (max[t] - lo) / bins;
            foreach (var v in values)
            {
                if (!float.IsFinite(v)) continue;
                int i = width > 0 ? (int)Math.Clamp((v - lo) / width, 0, bins - 1) : 0;
                h[i]++;
            }
        });
        var result = new Dictionary<string, (float, float)>(StringComparer.Ordinal);
        foreach (var t in names)
        {
            var h = hist[t];
            long total = h.Sum();
            double upper = options.Percentile / 100 * total, lower = (1 - options.Percentile / 100) * total;
            float width = (max[t] - min[t]) / bins;
            long cum = 0;
            int loBin = 0, hiBin = bins - 1;
            for (int i = 0; i < bins; i++)
            {
                cum += h[i];
                if (cum <= lower) loBin = i + 1;
                if (cum >= upper) { hiBin = i; break; }
            }
            result[t] = (min[t] + loBin * width, min[t] + (hiBin + 1) * width);
        }
        return result;
    }

    static void ForEachBatch(InferenceSession session, QdqGraph graph, Tensor x, int batchSize, string[] names, Action<string, ReadOnlySpan<float>> visit)
    {
        long n = x.shape[0];
        var outputs = session.OutputNames.Where(names.Contains).ToArray();
        for (long start = 0; start < n; start += batchSize)
        {
            using var batch = x.narrow(0, start, Math.Min(batchSize, n - start)).contiguous();
            var data = batch.data<float>().ToArray();
            if (names.Contains(graph.Input.Name)) visit(graph.Input.Name, data);
            using var value = OrtValue.CreateTensorValueFromMemory(data, batch.shape);
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, [graph.Input.Name], [value], outputs);
            for (int i = 0; i < outputs.Length; i++) visit(outputs[i], results[i].GetTensorDataAsSpan<float>());
        }
    }
}
