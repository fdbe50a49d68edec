using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Native;
using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Evaluation;

/// <summary>
/// Grad-CAM (Selvaraju et al., 2017), as in the Keras example: the gradients of a class score with respect to the last
/// convolutional feature map, averaged over its positions, weight that map's channels; the ReLU of the weighted sum,
/// upsampled to the input and scaled to [0, 1], shows where the model looked. <c>GradCam.For(model).Compute(x)</c>.
/// </summary>
/// <remarks>
/// The class score is the model's output before softmax when it has none, and the log of the probability when the
/// outputs are probabilities (log softmax differs from the logit by a term shared by all classes, so the map still
/// shows what raises this class above the others without the saturation of the probability itself).
/// </remarks>
public sealed class GradCam
{
    readonly Model model;
    // Shares the model's layers and weights (Keras' grad_model): never disposed, as disposing it would free them.
    readonly Model gradModel;

    GradCam(Model model, Model gradModel, string layerName)
    {
        this.model = model;
        this.gradModel = gradModel;
        LayerName = layerName;
    }

    /// <summary>The layer whose output is explained.</summary>
    public string LayerName { get; }

    /// <summary>Prepares Grad-CAM for a model with one image input and one output of class scores.</summary>
    /// <param name="model">A built functional or Sequential model.</param>
    /// <param name="layerName">The layer to explain; null for the last layer whose output is a feature map
    /// (height, width, channels) of more than one position.</param>
    /// <exception cref="ConvKitException">The model has no graph, several inputs or outputs, no such layer, or the layer's
    /// output is not a feature map.</exception>
    public static GradCam For(Model model, string? layerName = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        IReadOnlyList<SymbolicTensor> inputs, outputs;
        try
        {
            inputs = model.Inputs;
            outputs = model.Outputs;
        }
        catch (ConvKitException e)
        {
            throw new ConvKitException($"Grad-CAM needs a built functional or Sequential model; '{model.Name}': {e.Message}", e);
        }
        if (inputs.Count != 1 || outputs.Count != 1 || inputs[0].Shape.Rank != 3)
            throw new ConvKitException($"Grad-CAM needs a model with one image input and one output; '{model.Name}' has {inputs.Count} input(s) and {outputs.Count} output(s).");
        // Breadth-first from the output: the first feature map met is the last one computed on the way to it.
        SymbolicTensor? target = null;
        var queue = new Queue<SymbolicTensor>([outputs[0]]);
        var seen = new HashSet<SymbolicTensor>(ReferenceEqualityComparer.Instance);
        var featureMaps = new List<string>();
        while (queue.Count > 0)
        {
            var t = queue.Dequeue();
            if (!seen.Add(t) || t.Node.IsInput) continue;
            bool isMap = t.Shape.Rank == 3 && (long)t.Shape[0] * t.Shape[1] > 1;
            if (isMap) featureMaps.Add(t.Node.Layer.Name);
            if (layerName is null ? isMap : t.Node.Layer.Name == layerName)
            {
                target = t;
                break;
            }
            foreach (var x in t.Node.Inputs) queue.Enqueue(x);
        }
        if (target is null)
            throw new ConvKitException(layerName is null
                ? $"Grad-CAM: model '{model.Name}' has no layer whose output is a feature map (height, width, channels)."
                : $"Grad-CAM: model '{model.Name}' has no layer '{layerName}' on the way to its output; feature-map layers: {string.Join(", ", featureMaps.Take(12))}.");
        if (target.Shape.Rank != 3)
            throw new ConvKitException($"Grad-CAM: layer '{layerName}' of model '{model.Name}' outputs {target.Shape.ToBatchString()}, not a feature map (height, width, channels).");
        var gradModel = new Model(inputs, [target, outputs[0]], name: model.Name + "_gradcam");
        return new GradCam(model, gradModel, target.Node.Layer.Name);
    }

    /// <summary>
    /// Heatmaps for a batch: (N, H, W) float32 in [0, 1] at the input's height and width (bilinear upsampling), one per
    /// image, for <paramref name="classes"/> or, when null, the class each image is predicted as.
    /// </summary>
    /// <param name="x">Images as the model takes them, Keras layout (N, H, W, C).</param>
    /// <param name="classes">One class index per image; null for the predicted ones.</param>
    /// <returns>The heatmaps (the caller disposes them) and the classes explained.</returns>
    /// <exception cref="ConvKitException">The batch does not fit the model, or a class is out of range.</exception>
    public (Tensor Heatmaps, long[] Classes) Compute(Tensor x, IReadOnlyList<long>? classes = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        var input = model.ModelInputShape;
        if (x.dim() != 4 || x.shape[1] != input[0] || x.shape[2] != input[1] || x.shape[3] != input[2])
            throw new ConvKitException($"Grad-CAM on '{model.Name}': expected images (batch, {input[0]}, {input[1]}, {input[2]}); received [{string.Join(", ", x.shape)}].");
        long n = x.shape[0];
        if (classes is not null && classes.Count != n)
            throw new ConvKitException($"Grad-CAM on '{model.Name}': {classes.Count} classes for {n} images.");
        bool wasTraining = model.IsTraining;
        model.eval();
        try
        {
            using var scope = NewDisposeScope();
            using var grad = enable_grad();
            var xi = Layout.FromKeras(x.to_type(float32).cpu()).detach();
            var outs = gradModel.Forward([xi]);
            Tensor features = outs[0], scores = outs[1];
            long c = scores.shape[1];
            long[] chosen;
            if (classes is null)
            {
                using var detached = scores.detach();
                using var best = detached.argmax(1);
                chosen = best.data<long>().ToArray();
            }
            else
            {
                chosen = classes.ToArray();
                foreach (var k in chosen)
                    if (k < 0 || k >= c) throw new ConvKitException($"Grad-CAM on '{model.Name}': class {k} is out of range for {c} outputs.");
            }
            bool probabilities;
            using (no_grad())
            {
                using var sums = scores.sum(1);
                using var diff = sums.sub(Scalars.One);
                using var abs = diff.abs();
                using var dev = abs.max();
                using var min = scores.min();
                probabilities = min.item<float>() >= 0 && dev.item<float>() < 1e-3f;
            }
            using var eps = 1e-12.ToScalar();
            using var zero = 0.0.ToScalar();
            using var one = 1.0.ToScalar();
            var picked = scores.gather(1, tensor(chosen).unsqueeze(1));
            if (probabilities) picked = picked.clamp_min(eps).log();
            var g = autograd.grad([picked.sum()], [features])[0];
            var weights = g.mean([2L, 3L], keepdim: true);
            var cam = nn.functional.relu(features.mul(weights).sum(1, keepdim: true)).detach();
            var up = nn.functional.interpolate(cam, [input[0], input[1]], mode: InterpolationMode.Bilinear, align_corners: false).squeeze(1);
            var peak = up.amax([1L, 2L], keepdim: true).clamp_min(eps);
            var heat = up.div(peak).clamp(zero, one).contiguous();
            return (heat.MoveToOuterDisposeScope(), chosen);
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    /// <summary>
    /// An image with a heatmap over it (jet colours, 40% opacity where the map is 1, fading to none at 0), scaled by
    /// nearest neighbour to at least <paramref name="minSize"/> pixels on its shorter side, as a PNG.
    /// </summary>
    /// <param name="rgb">Pixels in [0, 255], row-major (height, width, 1 or 3 channels).</param>
    /// <param name="height">Image height.</param>
    /// <param name="width">Image width.</param>
    /// <param name="channels">1 or 3.</param>
    /// <param name="heatmap">Values in [0, 1], (height, width) row-major.</param>
    /// <param name="minSize">Smallest side of the picture written.</param>
    /// <exception cref="InvalidOptionException">Sizes do not match.</exception>
    public static byte[] OverlayPng(ReadOnlySpan<float> rgb, int height, int width, int channels, ReadOnlySpan<float> heatmap, int minSize = 224)
    {
        using var bitmap = Overlay(rgb, height, width, channels, heatmap, minSize);
        using var data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>The picture of <see cref="OverlayPng"/> as a bitmap (the caller disposes it).</summary>
    /// <exception cref="InvalidOptionException">Sizes do not match.</exception>
    public static SKBitmap Overlay(ReadOnlySpan<float> rgb, int height, int width, int channels, ReadOnlySpan<float> heatmap, int minSize)
    {
        if (channels is not (1 or 3) || rgb.Length != height * width * channels || heatmap.Length != height * width)
            throw new InvalidOptionException("rgb", $"overlay: {rgb.Length} pixel values and {heatmap.Length} heatmap values do not fit a {height}x{width}x{channels} image.");
        int scale = Math.Max(1, (minSize + Math.Min(height, width) - 1) / Math.Min(height, width));
        var bitmap = new SKBitmap(width * scale, height * scale, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var pixels = new byte[bitmap.Width * bitmap.Height * 4];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                int i = y * width + x;
                float r = rgb[i * channels], g = rgb[i * channels + (channels == 3 ? 1 : 0)], b = rgb[i * channels + (channels == 3 ? 2 : 0)];
                var (hr, hg, hb) = Jet(heatmap[i]);
                float a = 0.4f * Math.Clamp(heatmap[i], 0, 1);
                byte R = (byte)Math.Clamp(r * (1 - a) + hr * a, 0, 255), G = (byte)Math.Clamp(g * (1 - a) + hg * a, 0, 255), B = (byte)Math.Clamp(b * (1 - a) + hb * a, 0, 255);
                for (int dy = 0; dy < scale; dy++)
                    for (int dx = 0; dx < scale; dx++)
                    {
                        int o = (((y * scale + dy) * bitmap.Width) + x * scale + dx) * 4;
                        pixels[o] = R;
                        pixels[o + 1] = G;
                        pixels[o + 2] = B;
                        pixels[o + 3] = 255;
                    }
            }
        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bitmap.GetPixels(), pixels.Length);
        return bitmap;
    }

    // Matplotlib's jet: blue (0) through cyan, yellow to red (1).
    static (float R, float G, float B) Jet(float v)
    {
        v = Math.Clamp(v, 0, 1);
        static float Ramp(float t) => Math.Clamp(1.5f - Math.Abs(4 * t), 0, 1) * 255;
        return (Ramp(v - 0.75f), Ramp(v - 0.5f), Ramp(v - 0.25f));
    }
}
