using ConvKit.Applications;
using ConvKit.Models;
using ConvKit.Models.Inference;
using ConvKit.Quantization;
using static TorchSharp.torch;

namespace ConvKit.Serving;

/// <summary>
/// One model a <see cref="ConvKitServer"/> serves under a name: its thread-safe <see cref="InferenceModel"/> (or an
/// int8 <see cref="QuantizedModel"/>, run by ONNX Runtime), the input and output it exposes over the Open Inference
/// Protocol (one FP32 tensor each, Keras layout with a batch dimension), and what the image endpoint needs
/// (preprocessing, class names).
/// </summary>
public sealed class ServedModel : IDisposable
{
    /// <summary>The name of the single input in the protocol's metadata and requests.</summary>
    public const string InputName = "input";

    /// <summary>The name of the single output.</summary>
    public const string OutputName = "output";

    readonly IDisposable? owned;
    readonly IPredictor predictor;
    volatile bool ready;

    /// <summary>Serves <paramref name="model"/> as <paramref name="name"/>.</summary>
    /// <param name="name">The name in URLs (<c>/v2/models/NAME</c>): letters, digits, '.', '_' and '-'.</param>
    /// <param name="model">A built model with one input and one output.</param>
    /// <param name="preprocessing">The pixel preprocessing for <c>classify</c>.</param>
    /// <param name="classNames">Class names in output order; null for ImageNet's when the model has 1000 classes, else
    /// <c>class N</c>.</param>
    /// <param name="ownsModel">Dispose the model with this object.</param>
    /// <param name="batchInvariant">Compute each sample's answer as Predict on that sample alone would, bit for bit,
    /// whatever batch it runs in (<see cref="InferenceModel.BatchInvariant"/>; checked at <see cref="WarmUp"/>);
    /// false lets libtorch round by batch size (answers then differ from Predict by an ulp or two).</param>
    /// <exception cref="ServingOptionException">The name is not usable in a URL, or the model has several inputs or
    /// outputs, or an input shape that is not fully defined.</exception>
    public ServedModel(string name, Model model, Preprocessing preprocessing = Preprocessing.None, IReadOnlyList<string>? classNames = null, bool ownsModel = false,
        bool batchInvariant = true)
        : this(name, Check(name, model).ModelInputShape, model.ModelOutputShape, preprocessing, classNames, ownsModel ? model : null,
            () => model.AsInferenceModel(InferenceEngine.TorchSharp, batchInvariant))
    {
        Inference = (InferenceModel)predictor;
        BatchInvariant = Inference.BatchInvariant;
    }

    /// <summary>Serves an int8 model (<see cref="Quantizer.Quantize"/>, <c>convkit quantize</c>) as
    /// <paramref name="name"/>, with the preprocessing and class names stored in it unless others are given.</summary>
    /// <param name="name">The name in URLs.</param>
    /// <param name="model">The quantized model.</param>
    /// <param name="preprocessing">The pixel preprocessing for <c>classify</c>; null for the model's own
    /// (<see cref="QuantizedModel.Preprocessing"/>, else <see cref="Preprocessing.None"/>).</param>
    /// <param name="classNames">Class names; null for the model's own, else as for the FP32 constructor.</param>
    /// <param name="ownsModel">Dispose the model with this object.</param>
    /// <param name="batchInvariant">Answer each sample as the model on that sample alone would, bit for bit:
    /// <see cref="WarmUp"/> checks ONNX Runtime's int8 kernels batched against alone and serves one request per pass
    /// where they differ (<see cref="MayBatch"/>); false batches requests regardless.</param>
    /// <exception cref="ServingOptionException">The name is not usable in a URL, or the input shape is not fully defined.</exception>
    public ServedModel(string name, QuantizedModel model, Preprocessing? preprocessing = null, IReadOnlyList<string>? classNames = null, bool ownsModel = false,
        bool batchInvariant = true)
        : this(name, NotNull(model).InputShape, model.OutputShape, preprocessing ?? model.Preprocessing ?? Preprocessing.None, classNames ?? model.ClassNames,
            ownsModel ? model : null, () => model)
    {
        BatchInvariant = batchInvariant;
    }

    // The shapes are checked before the predictor is made, so that a refused model leaves no inference model behind.
    ServedModel(string name, Shape input, Shape output, Preprocessing preprocessing, IReadOnlyList<string>? classNames, IDisposable? owned, Func<IPredictor> predictor)
    {
        CheckName(name);
        Name = name;
        if (!input.IsFullyDefined) throw new ServingOptionException("MODEL", $"model '{name}' takes {input.ToBatchString()}; the server needs every dimension but the batch known");
        InputShape = input;
        OutputShape = output;
        if (!OutputShape.IsFullyDefined) throw new ServingOptionException("MODEL", $"model '{name}' outputs {OutputShape.ToBatchString()}; the server needs every dimension but the batch known");
        SampleSize = input.Dims.ToArray().Aggregate(1L, (a, d) => a * d) is var s && s <= int.MaxValue / 4 ? (int)s : throw new ServingOptionException("MODEL", $"model '{name}' takes inputs too large to serve ({input})");
        OutputSize = (int)OutputShape.Dims.ToArray().Aggregate(1L, (a, d) => a * d);
        Preprocessing = preprocessing;
        if (OutputShape.Rank == 1)
        {
            int k = OutputShape[0];
            ClassNames = classNames ?? (k == 1000 ? ImageClassifier.ImageNetClasses : Enumerable.Range(0, k).Select(i => $"class {i}").ToArray());
            if (ClassNames.Count != k) throw new ServingOptionException("MODEL", $"model '{name}' has {k} outputs but {ClassNames.Count} class names");
        }
        this.owned = owned;
        this.predictor = predictor();
    }

    static T NotNull<T>(T value) where T : class
    {
        ArgumentNullException.ThrowIfNull(value);
        return value;
    }

    static void CheckName(string name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 128 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-') || name is "." or "..")
            throw new ServingOptionException("MODEL", $"name '{name}' cannot be served: use 1 to 128 letters, digits, '.', '_' or '-' (NAME=PATH names a model)");
    }

    static Model Check(string name, Model model)
    {
        NotNull(model);
        CheckName(name);
        if (model.BuiltInputShapes is not { Count: 1 })
            throw new ServingOptionException("MODEL", $"model '{name}' has {model.BuiltInputShapes?.Count ?? 0} inputs; the server serves models with exactly one input");
        return model;
    }

    /// <summary>Serves what <see cref="ModelResolver"/> found (a zoo name, a run folder, a model folder or file), taking
    /// over its model.</summary>
    /// <param name="name">The name in URLs.</param>
    /// <param name="resolved">The resolved model; its model is released to this object.</param>
    /// <param name="batchInvariant">See the constructor.</param>
    public static ServedModel FromResolved(string name, ResolvedModel resolved, bool batchInvariant = true)
    {
        ArgumentNullException.ThrowIfNull(resolved);
        var served = new ServedModel(name, resolved.Model, resolved.Preprocessing, resolved.ClassNames, ownsModel: true, batchInvariant);
        resolved.Release();
        return served;
    }

    /// <summary>The name in URLs.</summary>
    public string Name { get; }

    /// <summary>The inference model every request runs on; null for a quantized model (ONNX Runtime runs it).</summary>
    public InferenceModel? Inference { get; }

    /// <summary>What runs it, as the metadata endpoint's <c>platform</c>: <c>convkit_torchsharp</c> (FP32, ConvKit's
    /// inference plan on libtorch) or <c>convkit_onnxruntime_int8</c> (a quantized model).</summary>
    public string Platform => Inference is null ? "convkit_onnxruntime_int8" : "convkit_torchsharp";

    /// <summary>Whether each answer must equal the sample run alone, bit for bit (see the constructors).</summary>
    public bool BatchInvariant { get; }

    /// <summary>One sample's input shape (Keras layout, without the batch dimension).</summary>
    public Shape InputShape { get; }

    /// <summary>One sample's output shape.</summary>
    public Shape OutputShape { get; }

    /// <summary>Floats per input sample.</summary>
    public int SampleSize { get; }

    /// <summary>Floats per output sample.</summary>
    public int OutputSize { get; }

    /// <summary>The preprocessing <c>classify</c> applies to decoded pixels.</summary>
    public Preprocessing Preprocessing { get; }

    /// <summary>Class names for <c>classify</c>; null when the output is not a vector of class scores.</summary>
    public IReadOnlyList<string>? ClassNames { get; }

    /// <summary>Whether the image endpoint applies (input (h, w, 1 or 3) and class scores out).</summary>
    public bool CanClassify => ClassNames is not null && InputShape.Rank == 3 && InputShape[2] is 1 or 3;

    /// <summary>Whether warm-up has run: <c>/v2/models/NAME/ready</c> answers 200 and requests are taken.</summary>
    public bool IsReady => ready;

    /// <summary>
    /// Whether batches may hold several requests: true unless the model is batch-invariant by request and
    /// <see cref="WarmUp"/> found a batch whose rows differ from the samples run alone (<see cref="BatchVariance"/>);
    /// such a model is then served one request per forward pass, so that its answers still equal Predict's.
    /// </summary>
    public bool MayBatch => batchVariance is null;

    /// <summary>What <see cref="WarmUp"/> found when the batch-invariant model's batched rows differed from its samples
    /// run alone (batch size, row, largest difference); null when they agreed bit for bit or were not checked.</summary>
    public string? BatchVariance => batchVariance;

    volatile string? batchVariance;

    /// <summary>Runs the model once per batch size in <paramref name="batchSizes"/> on zeros (first calls pack kernels
    /// and size oneDNN's caches), then marks the model ready. A batch-invariant model (the default) is then checked on
    /// random inputs: rows of a batch of 2 and of the largest size given (rows 0-7 and the last) must equal, bit for
    /// bit, those samples run alone; where one does not, the model is served one request per pass (<see cref="MayBatch"/>).</summary>
    public void WarmUp(params int[] batchSizes)
    {
        foreach (int n in batchSizes.Distinct())
        {
            using var x = zeros([n, .. InputShape.Dims.ToArray().Select(d => (long)d)]);
            using var y = predictor.Predict(x, n);
        }
        int largest = batchSizes.DefaultIfEmpty(1).Max();
        if (BatchInvariant && largest > 1) batchVariance = CheckBatchInvariance(largest);
        ready = true;
    }

    /// <summary>Runs random samples (fixed seed) as batches of 2 and <paramref name="largest"/>, and rows 0-7 and the
    /// last of those batches alone (a batch size's rounding shows on every row; this bounds the warm-up of a large
    /// model with a large --max-batch); null when every compared row agrees bit for bit, else what differed.</summary>
    string? CheckBatchInvariance(int largest)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator(0x5e12e);
        var x = rand([largest, .. InputShape.Dims.ToArray().Select(d => (long)d)], generator: generator);
        var alone = new Dictionary<int, Tensor>();
        foreach (int n in new[] { 2, largest }.Distinct())
        {
            var batch = predictor.Predict(x.narrow(0, 0, n), n);
            foreach (int i in Enumerable.Range(0, Math.Min(n, 8)).Append(n - 1).Distinct())
            {
                if (!alone.TryGetValue(i, out var single)) alone[i] = single = predictor.Predict(x.narrow(0, i, 1).clone(), 1);
                var row = batch.narrow(0, i, 1);
                if (row.shape.SequenceEqual(single.shape) && row.eq(single).all().item<bool>()) continue;
                double diff = row.shape.SequenceEqual(single.shape) ? row.sub(single).abs().max().item<float>() : double.NaN;
                return $"in a batch of {n}, sample {i}'s outputs differ from the same sample run alone (by up to {diff:G3})";
            }
        }
        return null;
    }

    /// <summary>Runs one batch of <paramref name="samples"/> samples (row-major floats, Keras layout).</summary>
    internal float[] Run(float[] input, int samples)
    {
        using var scope = NewDisposeScope();
        var x = tensor(input, [samples, .. InputShape.Dims.ToArray().Select(d => (long)d)]);
        var y = predictor.Predict(x, samples);
        if (y.dtype != ScalarType.Float32) y = y.to(ScalarType.Float32);
        return y.contiguous().data<float>().ToArray();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        ready = false;
        Inference?.Dispose();
        owned?.Dispose();
    }
}
