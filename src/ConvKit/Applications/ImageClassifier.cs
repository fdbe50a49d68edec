// Predict on image files: decode (Data/Imaging), resize the shorter side and center-crop to the model input, apply
// the model's keras.applications preprocessing, and report the top classes with names, one batch at a time.
using ConvKit.Data.Imaging;
using ConvKit.Models;
using ConvKit.Models.Inference;
using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Applications;

/// <summary>One class of a prediction.</summary>
/// <param name="Index">Class index.</param>
/// <param name="Name">Class name (ImageNet names for 1000-class models, else <c>class N</c>).</param>
/// <param name="Probability">Softmax probability.</param>
public sealed record ClassScore(int Index, string Name, double Probability);

/// <summary>The top classes for one image, or why it could not be classified.</summary>
/// <param name="Path">The image file.</param>
/// <param name="Top">Best classes first; empty when <see cref="Error"/> is set.</param>
public sealed record ImagePrediction(string Path, IReadOnlyList<ClassScore> Top)
{
    /// <summary>Why the image could not be classified (missing, not an image, over the pixel budget, truncated, ...);
    /// null when it was.</summary>
    public ImageDecodeException? Error { get; init; }

    /// <summary>Whether the image was classified.</summary>
    public bool Succeeded => Error is null;
}

/// <summary>
/// Classifies image files with a model: <c>new ImageClassifier(model, Preprocessing.Caffe).Predict(["cat.jpg"])</c>,
/// or <c>ImageClassifier.FromRegistry("resnet50", "imagenet")</c>.
/// </summary>
public sealed class ImageClassifier : IDisposable
{
    static readonly Lazy<string[]> ImageNet = new(() =>
    {
        using var s = typeof(ImageClassifier).Assembly.GetManifestResourceStream("ConvKit.imagenet_classes.txt")!;
        using var r = new StreamReader(s);
        return r.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
    });

    /// <summary>The 1000 ImageNet-1k class names in index order (torchvision's names).</summary>
    public static IReadOnlyList<string> ImageNetClasses => ImageNet.Value;

    readonly bool ownsModel;

    /// <summary>Wraps a built model whose output is one score per class: a <see cref="Models.Model"/>, an
    /// <see cref="InferenceModel"/>, or an int8 <see cref="Quantization.QuantizedModel"/> (any <see cref="IPredictor"/>;
    /// <c>new ImageClassifier(quantized, quantized.Preprocessing ?? Preprocessing.None, quantized.ClassNames)</c>).</summary>
    /// <param name="predictor">The model; its input shape decides the image size and channels (1 or 3).</param>
    /// <param name="preprocessing">How pixels are prepared (the registry's <see cref="ModelInfo.Preprocessing"/>).</param>
    /// <param name="classNames">Class names; null for ImageNet names when the model has 1000 classes, else <c>class N</c>.</param>
    /// <param name="ownsModel">Dispose the model with the classifier (when it is disposable).</param>
    /// <exception cref="ShapeException">The model does not take images (h, w, 1 or 3) or does not output class scores.</exception>
    public ImageClassifier(IPredictor predictor, Preprocessing preprocessing, IReadOnlyList<string>? classNames = null, bool ownsModel = false)
    {
        ArgumentNullException.ThrowIfNull(predictor);
        var input = predictor.InputShape;
        if (input.Rank != 3 || input[2] is not (1 or 3) || !input.IsFullyDefined)
            throw new ShapeException($"model '{predictor.Name}' takes {input.ToBatchString()}; image prediction needs (height, width, 1 or 3).");
        var output = predictor.OutputShape;
        if (output.Rank != 1 || !output.IsFullyDefined)
            throw new ShapeException($"model '{predictor.Name}' outputs {output.ToBatchString()}; image prediction needs class scores (batch, classes). Build it with its top.");
        Predictor = predictor;
        Preprocessing = preprocessing;
        int classes = output[0];
        ClassNames = classNames ?? (classes == 1000 ? ImageNetClasses : Enumerable.Range(0, classes).Select(i => $"class {i}").ToArray());
        if (ClassNames.Count != classes)
            throw new InvalidOptionException(nameof(classNames), $"{ClassNames.Count} class names for a model with {classes} classes.");
        this.ownsModel = ownsModel;
    }

    /// <summary>A registry model with weights (<c>"imagenet"</c>, a file, or null for random) and its preprocessing.</summary>
    /// <exception cref="ConvKitException">Unknown model, or the weights cannot be loaded.</exception>
    public static ImageClassifier FromRegistry(string name, string? weights, ModelOptions? options = null)
    {
        var info = ModelRegistry.Get(name);
        var model = ModelRegistry.Create(name, (options ?? ModelOptions.Default) with { Weights = weights });
        return new ImageClassifier(model, info.Preprocessing, ownsModel: true);
    }

    /// <summary>What classifies the images.</summary>
    public IPredictor Predictor { get; }

    /// <summary>The model, when <see cref="Predictor"/> is one (null for an <see cref="InferenceModel"/> or a quantized model).</summary>
    public Model? Model => Predictor as Model;

    /// <summary>The preprocessing applied to pixels.</summary>
    public Preprocessing Preprocessing { get; }

    /// <summary>Class names in index order.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Images decoded, preprocessed and classified together by <see cref="Classify"/> unless told otherwise.</summary>
    public const int DefaultBatchSize = 8;

    /// <summary>Called with each image path as it is decoded (tests watch that decoding follows classification).</summary>
    internal Action<string>? OnDecoded { get; set; }

    /// <summary>The <paramref name="top"/> classes of each image, best first; the first image that cannot be decoded
    /// stops the call.</summary>
    /// <param name="paths">Image files.</param>
    /// <param name="top">Classes per image.</param>
    /// <returns>One prediction per image, in order.</returns>
    /// <exception cref="ImageDecodeException">An image cannot be read or decoded (the message names the file and the
    /// reason).</exception>
    /// <exception cref="InvalidOptionException"><paramref name="top"/> is not positive.</exception>
    public IReadOnlyList<ImagePrediction> Predict(IEnumerable<string> paths, int top = 5)
    {
        ArgumentNullException.ThrowIfNull(paths);
        if (top <= 0) throw new InvalidOptionException(nameof(top), $"top must be positive; received {top}.");
        var result = new List<ImagePrediction>();
        foreach (var p in Classify(paths, top))
        {
            if (p.Error is { } e) throw e;
            result.Add(p);
        }
        return result;
    }

    /// <summary>
    /// Classifies images lazily, <paramref name="batchSize"/> at a time: an image is decoded only when its batch is
    /// classified, so memory does not grow with the number of files. An image that cannot be used gives a prediction
    /// with <see cref="ImagePrediction.Error"/> set and the others go on.
    /// </summary>
    /// <param name="paths">Image files, read as the sequence is enumerated.</param>
    /// <param name="top">Classes per image.</param>
    /// <param name="batchSize">Images per batch.</param>
    /// <param name="decodeOptions">Pixel budget and aspect-ratio bound; null for the defaults (50 megapixels, 100:1).</param>
    /// <returns>One prediction per path, in order.</returns>
    /// <remarks>Each enumeration has its own buffers; several threads may classify with one classifier (every
    /// <see cref="IPredictor"/> of ConvKit may be called concurrently).</remarks>
    /// <exception cref="InvalidOptionException"><paramref name="top"/> or <paramref name="batchSize"/> is not
    /// positive, or the decode options are invalid (thrown when enumeration starts).</exception>
    public IEnumerable<ImagePrediction> Classify(IEnumerable<string> paths, int top = 5, int batchSize = DefaultBatchSize, ImageDecodeOptions? decodeOptions = null)
    {
        ArgumentNullException.ThrowIfNull(paths);
        if (top <= 0) throw new InvalidOptionException(nameof(top), $"top must be positive; received {top}.");
        if (batchSize <= 0) throw new InvalidOptionException(nameof(batchSize), $"batch size must be positive; received {batchSize}.");
        decodeOptions ??= ImageDecodeOptions.Default;
        decodeOptions.Validate();
        return ClassifyBatches(paths, top, batchSize, decodeOptions);
    }

    IEnumerable<ImagePrediction> ClassifyBatches(IEnumerable<string> paths, int top, int batchSize, ImageDecodeOptions decodeOptions)
    {
        var input = Predictor.InputShape;
        int h = input[0], w = input[1], c = input[2], sample = h * w * c;
        var pixels = new float[batchSize * sample];
        var batch = new List<(string Path, ImageDecodeException? Error)>(batchSize);
        int decoded = 0;
        bool? isProbability = null;
        foreach (var path in paths)
        {
            try
            {
                var image = ImageDecoder.Decode(path, c, decodeOptions);
                OnDecoded?.Invoke(path);
                ImageResizer.ResizeCenterCrop(image, h, w, pixels.AsSpan(decoded * sample, sample));
                decoded++;
                batch.Add((path, null));
            }
            catch (ImageDecodeException e)
            {
                batch.Add((path, e));
            }
            // A full batch is classified; errors are reported at once when no decoded image waits before them, and
            // do not pile up behind one (at most batchSize of them wait).
            if (decoded == batchSize || decoded == 0 || batch.Count - decoded >= batchSize)
            {
                foreach (var p in Flush()) yield return p;
            }
        }
        foreach (var p in Flush()) yield return p;

        List<ImagePrediction> Flush()
        {
            var results = new List<ImagePrediction>(batch.Count);
            var scores = decoded == 0 ? [] : Scores(pixels.AsSpan(0, decoded * sample), decoded, top, ref isProbability);
            int next = 0;
            foreach (var (path, error) in batch)
                results.Add(error is null ? new ImagePrediction(path, scores[next++]) : new ImagePrediction(path, []) { Error = error });
            batch.Clear();
            decoded = 0;
            return results;
        }
    }

    /// <summary>The top classes of a batch of resized pixels (N, H, W, C) in [0, 255].</summary>
    ClassScore[][] Scores(ReadOnlySpan<float> pixels, int n, int top, ref bool? isProbability)
    {
        var input = Predictor.InputShape;
        using var scope = NewDisposeScope();
        var raw = tensor(pixels.ToArray(), [n, input[0], input[1], input[2]]);
        var x = Preprocess(raw, Preprocessing).contiguous();
        var y = Predictor.Predict(x, n);
        // Models built with classifier_activation=None give logits; softmax-activated outputs already sum to one. The
        // first batch decides, so that every batch of one call is reported alike.
        isProbability ??= y.ge(Scalars.Zero).all().item<bool>() && y.sum(1).sub(Scalars.One).abs().max().item<float>() < 1e-3;
        var p = isProbability.Value ? y : y.softmax(1);
        int k = Math.Min(top, (int)p.shape[1]);
        var (values, indices) = p.topk(k, dim: 1);
        var v = values.contiguous().data<float>().ToArray();
        var ix = indices.contiguous().data<long>().ToArray();
        var result = new ClassScore[n][];
        for (int i = 0; i < n; i++)
        {
            result[i] = new ClassScore[k];
            for (int j = 0; j < k; j++)
            {
                int index = (int)ix[i * k + j];
                result[i][j] = new ClassScore(index, ClassNames[index], v[i * k + j]);
            }
        }
        return result;
    }

    /// <summary>
    /// Reads images into a Keras-layout batch (N, H, W, C) for a model input: decode, resize the shorter side to cover
    /// H x W (bilinear, antialiased when downscaling), center-crop to H x W, then apply <paramref name="preprocessing"/>.
    /// </summary>
    /// <param name="paths">Image files.</param>
    /// <param name="inputShape">The model's input shape (height, width, 1 or 3).</param>
    /// <param name="preprocessing">How pixels are prepared.</param>
    /// <param name="decodeOptions">Pixel budget and aspect-ratio bound; null for the defaults.</param>
    /// <returns>A float32 batch.</returns>
    /// <exception cref="ImageDecodeException">A file cannot be read or decoded.</exception>
    public static Tensor LoadImages(IReadOnlyList<string> paths, Shape inputShape, Preprocessing preprocessing, ImageDecodeOptions? decodeOptions = null)
    {
        ArgumentNullException.ThrowIfNull(paths);
        int h = inputShape[0], w = inputShape[1], c = inputShape[2], sample = h * w * c;
        var pixels = new float[checked(paths.Count * sample)];
        for (int i = 0; i < paths.Count; i++)
            ImageResizer.ResizeCenterCrop(ImageDecoder.Decode(paths[i], c, decodeOptions), h, w, pixels.AsSpan(i * sample, sample));
        using var scope = NewDisposeScope();
        var x = tensor(pixels, [paths.Count, h, w, c]);
        return Preprocess(x, preprocessing).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>keras.applications' <c>preprocess_input</c> on an RGB batch (N, H, W, C) of values in [0, 255].</summary>
    public static Tensor Preprocess(Tensor rgb, Preprocessing preprocessing)
    {
        int c = (int)rgb.shape[^1];
        using var maxPixel = 255.ToScalar();
        switch (preprocessing)
        {
            case Preprocessing.Caffe when c == 3:
                using (var bgr = rgb.flip(-1))
                using (var mean = tensor(new[] { 103.939f, 116.779f, 123.68f }))
                    return bgr - mean;
            case Preprocessing.TF:
                using (var halfRange = 127.5.ToScalar())
                using (var scaled = rgb.div(halfRange))
                    return scaled.sub(Scalars.One);
            case Preprocessing.Torch when c == 3:
                using (var mean = tensor(new[] { 0.485f, 0.456f, 0.406f }))
                using (var std = tensor(new[] { 0.229f, 0.224f, 0.225f }))
                using (var scaled = rgb.div(maxPixel))
                    return (scaled - mean) / std;
            default:
                return rgb.div(maxPixel); // the seeds' models take pixels scaled to [0, 1]
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (ownsModel && Predictor is IDisposable disposable) disposable.Dispose();
    }
}
