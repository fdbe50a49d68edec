// Predict on image files: decode (StbImageSharp), resize the shorter side and center-crop to the model input, apply
// the model's keras.applications preprocessing, and report the top classes with names.
using ConvKit.Models;
using StbImageSharp;
using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Applications;

/// <summary>One class of a prediction.</summary>
/// <param name="Index">Class index.</param>
/// <param name="Name">Class name (ImageNet names for 1000-class models, else <c>class N</c>).</param>
/// <param name="Probability">Softmax probability.</param>
public sealed record ClassScore(int Index, string Name, double Probability);

/// <summary>The top classes for one image.</summary>
/// <param name="Path">The image file.</param>
/// <param name="Top">Best classes first.</param>
public sealed record ImagePrediction(string Path, IReadOnlyList<ClassScore> Top);

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

    /// <summary>Wraps a built model whose output is one score per class.</summary>
    /// <param name="model">The model; its input shape decides the image size and channels (1 or 3).</param>
    /// <param name="preprocessing">How pixels are prepared (the registry's <see cref="ModelInfo.Preprocessing"/>).</param>
    /// <param name="classNames">Class names; null for ImageNet names when the model has 1000 classes, else <c>class N</c>.</param>
    /// <param name="ownsModel">Dispose the model with the classifier.</param>
    /// <exception cref="ShapeException">The model does not take images (h, w, 1 or 3) or does not output class scores.</exception>
    public ImageClassifier(Model model, Preprocessing preprocessing, IReadOnlyList<string>? classNames = null, bool ownsModel = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        var input = model.ModelInputShape;
        if (input.Rank != 3 || input[2] is not (1 or 3) || !input.IsFullyDefined)
            throw new ShapeException($"model '{model.Name}' takes {input.ToBatchString()}; image prediction needs (height, width, 1 or 3).");
        var output = model.ModelOutputShape;
        if (output.Rank != 1)
            throw new ShapeException($"model '{model.Name}' outputs {output.ToBatchString()}; image prediction needs class scores (batch, classes). Build it with its top.");
        Model = model;
        Preprocessing = preprocessing;
        int classes = output[0];
        ClassNames = classNames ?? (classes == 1000 ? ImageNetClasses : Enumerable.Range(0, classes).Select(i => $"class {i}").ToArray());
        if (ClassNames.Count != classes)
            throw new ArgumentException($"{ClassNames.Count} class names for a model with {classes} classes.", nameof(classNames));
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

    /// <summary>The model.</summary>
    public Model Model { get; }

    /// <summary>The preprocessing applied to pixels.</summary>
    public Preprocessing Preprocessing { get; }

    /// <summary>Class names in index order.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>The <paramref name="top"/> classes of each image, best first.</summary>
    /// <exception cref="ConvKitException">An image cannot be read or decoded (the message names the file).</exception>
    public IReadOnlyList<ImagePrediction> Predict(IEnumerable<string> paths, int top = 5)
    {
        var list = paths.ToList();
        if (list.Count == 0) return [];
        if (top <= 0) throw new ArgumentOutOfRangeException(nameof(top), "top must be positive.");
        using var scope = NewDisposeScope();
        var x = LoadImages(list, Model.ModelInputShape, Preprocessing);
        var y = Model.Predict(x);
        // Models built with classifier_activation=None give logits; softmax-activated outputs already sum to one.
        bool isProbability = y.ge(Scalars.Zero).all().item<bool>() && y.sum(1).sub(Scalars.One).abs().max().item<float>() < 1e-3;
        var p = isProbability ? y : y.softmax(1);
        int k = Math.Min(top, (int)p.shape[1]);
        var (values, indices) = p.topk(k, dim: 1);
        var result = new List<ImagePrediction>(list.Count);
        for (int i = 0; i < list.Count; i++)
        {
            var scores = new ClassScore[k];
            for (int j = 0; j < k; j++)
            {
                int index = (int)indices[i, j].item<long>();
                scores[j] = new ClassScore(index, ClassNames[index], values[i, j].item<float>());
            }
            result.Add(new ImagePrediction(list[i], scores));
        }
        return result;
    }

    /// <summary>
    /// Reads images into a Keras-layout batch (N, H, W, C) for a model input: decode, resize the shorter side to the
    /// larger of H and W (bilinear), center-crop to H x W, then apply <paramref name="preprocessing"/>.
    /// </summary>
    /// <exception cref="ConvKitException">A file cannot be read or decoded.</exception>
    public static Tensor LoadImages(IReadOnlyList<string> paths, Shape inputShape, Preprocessing preprocessing)
    {
        int h = inputShape[0], w = inputShape[1], c = inputShape[2];
        var batch = new Tensor[paths.Count];
        using var scope = NewDisposeScope();
        for (int i = 0; i < paths.Count; i++) batch[i] = ResizeCrop(Decode(paths[i], c), h, w);
        var x = stack(batch).permute(0, 2, 3, 1); // N, H, W, C in [0, 255]
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

    static Tensor Decode(string path, int channels)
    {
        ImageResult image;
        try
        {
            using var stream = File.OpenRead(path);
            image = ImageResult.FromStream(stream, channels == 1 ? ColorComponents.Grey : ColorComponents.RedGreenBlue);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConvKitException($"cannot read image '{path}': {e.Message}", e);
        }
        catch (Exception e)
        {
            throw new ConvKitException($"cannot decode image '{path}' (JPEG, PNG, BMP, GIF, TGA, PSD, HDR are supported): {e.Message}", e);
        }
        using var bytes = tensor(image.Data, [image.Height, image.Width, channels], dtype: ScalarType.Byte);
        return bytes.permute(2, 0, 1).to(float32); // C, H, W
    }

    static Tensor ResizeCrop(Tensor chw, int h, int w)
    {
        long ih = chw.shape[1], iw = chw.shape[2];
        double scale = Math.Max((double)h / ih, (double)w / iw);
        long rh = Math.Max(h, (long)Math.Round(ih * scale)), rw = Math.Max(w, (long)Math.Round(iw * scale));
        var resized = rh == ih && rw == iw ? chw
            : F.interpolate(chw.unsqueeze(0), [rh, rw], mode: InterpolationMode.Bilinear, align_corners: false).squeeze(0);
        long top = (rh - h) / 2, left = (rw - w) / 2;
        using var maxPixel = 255.ToScalar();
        return resized.narrow(1, top, h).narrow(2, left, w).clamp(Scalars.Zero, maxPixel);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (ownsModel) Model.Dispose();
    }
}
