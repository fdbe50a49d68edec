using ConvKit.Evaluation;
using ConvKit.Layers;
using ConvKit.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Evaluation;

public class GradCamTests
{
    // A model whose answer is known: the feature map is the image itself (1x1 convolution, weight 1, ReLU), class 1's
    // logit is its mean and class 0's minus its mean. So class 1 is "something bright", and the only place that
    // carries it is where the image is bright.
    static Model BrightnessModel()
    {
        using var _ = Backend.NameScope();
        var input = new Input(new Shape(12, 12, 1));
        var features = new Conv2D(1, 1, activation: "relu", name: "features").Apply(input);
        var pooled = new GlobalAveragePooling2D().Apply(features);
        var logits = new Dense(2, name: "head").Apply(pooled);
        var model = new Model(input, logits, name: "brightness");
        using var k = ones(1, 1, 1, 1);
        using var b = zeros(1);
        using var w = tensor(new float[,] { { -1f }, { 1f } }); // (units, inputs), as torch stores it
        using var hb = zeros(2);
        model.SetWeights([k, b, w, hb]);
        return model;
    }

    static Tensor Images()
    {
        var x = zeros(2, 12, 12, 1);
        using var g = new Generator(1);
        using var noise = rand([2, 12, 12, 1], generator: g);
        using var scale = 0.05.ToScalar();
        using var one = 1.0.ToScalar();
        using (var small = noise.mul(scale)) x.add_(small, one);
        using (var patch = x[0].narrow(0, 8, 3).narrow(1, 1, 3)) patch.fill_(one);   // bottom left
        using (var patch = x[1].narrow(0, 1, 4).narrow(1, 7, 4)) patch.fill_(one);   // top right
        return x;
    }

    [Fact]
    public void TheHeatmapPeaksWhereTheClassIs()
    {
        using var model = BrightnessModel();
        using var x = Images();
        var cam = GradCam.For(model);
        Assert.Equal("features", cam.LayerName); // the last feature map on the way to the output
        var (maps, classes) = cam.Compute(x);
        using (maps)
        {
            Assert.Equal([1L, 1L], classes);
            Assert.Equal([2L, 12, 12], maps.shape);
            var m = maps.data<float>().ToArray();
            (int R0, int C0, int H, int W)[] patches = [(8, 1, 3, 3), (1, 7, 4, 4)];
            for (int i = 0; i < 2; i++)
            {
                var (r0, c0, h, w) = patches[i];
                int peak = Enumerable.Range(0, 144).MaxBy(p => m[i * 144 + p]);
                Assert.InRange(peak / 12, r0, r0 + h - 1);
                Assert.InRange(peak % 12, c0, c0 + w - 1);
                double inside = 0, outside = 0;
                for (int p = 0; p < 144; p++)
                {
                    bool inPatch = p / 12 >= r0 && p / 12 < r0 + h && p % 12 >= c0 && p % 12 < c0 + w;
                    if (inPatch) inside = Math.Max(inside, m[i * 144 + p]) ; else outside = Math.Max(outside, m[i * 144 + p]);
                }
                Assert.Equal(1.0, inside, 5);
                Assert.True(outside < 0.1, $"image {i}: {outside} outside the patch");
            }
        }
        // Class 0 ("dark") is lowered by every bright pixel: its map is empty everywhere.
        var (zero, _) = cam.Compute(x, [0L, 0L]);
        using (zero)
        using (var max = zero.max())
            Assert.Equal(0f, max.item<float>());
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void BadLayersImagesAndClassesAreNamedErrors()
    {
        using var model = BrightnessModel();
        var e = Assert.Throws<ConvKitException>(() => GradCam.For(model, "nope"));
        Assert.Contains("no layer 'nope'", e.Message);
        Assert.Contains("features", e.Message);
        e = Assert.Throws<ConvKitException>(() => GradCam.For(model, "head"));
        Assert.Contains("not a feature map", e.Message);
        var cam = GradCam.For(model);
        using var wrong = zeros(1, 10, 10, 1);
        e = Assert.Throws<ConvKitException>(() => cam.Compute(wrong));
        Assert.Contains("expected images (batch, 12, 12, 1)", e.Message);
        using var x = Images();
        e = Assert.Throws<ConvKitException>(() => cam.Compute(x, [0L, 5L]));
        Assert.Contains("class 5 is out of range for 2 outputs", e.Message);
    }

    [Fact]
    public void OverlayIsAPngOfAtLeastTheRequestedSize()
    {
        var pixels = new float[4 * 4 * 3];
        var heat = new float[16];
        heat[5] = 1;
        var png = GradCam.OverlayPng(pixels, 4, 4, 3, heat, minSize: 64);
        using var bitmap = SkiaSharp.SKBitmap.Decode(png);
        Assert.Equal((64, 64), (bitmap.Width, bitmap.Height));
        var hot = bitmap.GetPixel(16 + 8, 16 + 8);  // cell (1, 1) = index 5: jet's red over black
        var cold = bitmap.GetPixel(60, 60);
        Assert.True(hot.Red > 50 && hot.Blue < 10, hot.ToString());
        Assert.Equal(0, cold.Red + cold.Green + cold.Blue);
    }
}
