namespace ConvKit.Quantization;

/// <summary>How activation ranges are taken from the calibration samples.</summary>
public enum CalibrationMethod
{
    /// <summary>The smallest and largest value seen (never clips a calibration value).</summary>
    MinMax,

    /// <summary>The <see cref="QuantizationOptions.Percentile"/> and 100 - that percentile of the values seen,
    /// per tensor over all calibration samples (clips rare outliers to spend the 256 levels on the bulk).</summary>
    Percentile,
}

/// <summary>Options of <see cref="Quantizer.Quantize"/>.</summary>
public sealed record QuantizationOptions
{
    /// <summary>Calibration samples used (the first ones of the set given); 0 or more than given means all. Default 500.</summary>
    public int Samples { get; init; } = 500;

    /// <summary>Samples per calibration batch (default 64).</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>How ranges are taken (default <see cref="CalibrationMethod.MinMax"/>).</summary>
    public CalibrationMethod Method { get; init; } = CalibrationMethod.MinMax;

    /// <summary>The upper percentile of <see cref="CalibrationMethod.Percentile"/>, in (50, 100]; default 99.999.</summary>
    public double Percentile { get; init; } = 99.999;

    /// <summary>Intra-op threads of the quantized model's ONNX Runtime session; null (the default) takes <see cref="Backend.Threads"/>.</summary>
    public int? Threads { get; init; }

    /// <summary>The pixel preprocessing the model was trained with, stored in the file so that <c>convkit predict</c>
    /// and <c>convkit serve</c> prepare images as the FP32 model's <c>ImageClassifier</c> does; null stores none
    /// (<see cref="QuantizedModel.Preprocessing"/> is then null and images are scaled to [0, 1]).</summary>
    public Applications.Preprocessing? Preprocessing { get; init; }

    /// <summary>Class names in output order, stored in the file; null stores none (<c>class N</c> is shown, or
    /// ImageNet's names for 1000 classes).</summary>
    public IReadOnlyList<string>? ClassNames { get; init; }

    /// <summary>The options used when none are given.</summary>
    public static QuantizationOptions Default { get; } = new();

    internal void Validate()
    {
        if (Samples < 0) throw new InvalidOptionException("samples", $"samples must be >= 0; received {Samples}.");
        if (BatchSize < 1) throw new InvalidOptionException("batch_size", $"batch_size must be positive; received {BatchSize}.");
        if (!(Percentile > 50 && Percentile <= 100)) throw new InvalidOptionException("percentile", $"percentile must be in (50, 100]; received {Percentile}.");
        if (!Enum.IsDefined(Method)) throw new InvalidOptionException("method", $"method must be MinMax or Percentile; received {(int)Method}.");
        if (Preprocessing is { } p && !Enum.IsDefined(p)) throw new InvalidOptionException("preprocessing", $"preprocessing must be one of {string.Join(", ", Enum.GetNames<Applications.Preprocessing>())}; received {(int)p}.");
        if (ClassNames is { } names && names.Any(string.IsNullOrEmpty)) throw new InvalidOptionException("class_names", "class_names holds an empty name.");
        if (Threads is { } t && (t < 1 || t > Backend.MaxThreads)) throw new InvalidOptionException("threads", $"threads must be between 1 and {Backend.MaxThreads}; received {t}.");
    }
}
