using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Tests.Saving;
using TorchSharp;
using Padding = ConvKit.Padding;
using static TorchSharp.torch;

namespace ConvKit.Tests.Layers;

public class Conv2DTransposeTests
{
    [Theory]
    // Keras' deconv_output_length: valid n·s + max(k - s, 0); same n·s; with output_padding (n-1)·s + k - 2·(k/2 for same) + p.
    [InlineData(5, 3, 2, "valid", null, 1, 11)]
    [InlineData(5, 3, 2, "same", null, 1, 10)]
    [InlineData(5, 2, 3, "valid", null, 1, 15)]
    [InlineData(5, 3, 2, "same", 1, 1, 10)]
    [InlineData(5, 3, 2, "same", 0, 1, 9)]
    [InlineData(5, 4, 2, "valid", 1, 1, 13)]
    [InlineData(5, 3, 1, "valid", null, 2, 9)]
    [InlineData(5, 3, 1, "same", null, 2, 5)]
    public void OutputLengthIsKeras(int n, int k, int s, string padding, int? outputPadding, int d, int expected)
    {
        var pad = padding == "same" ? Padding.Same : Padding.Valid;
        Assert.Equal(expected, ConvArithmetic.TransposedOutputLength(n, k, s, pad, outputPadding, d));
        var layer = new Conv2DTranspose(4, k, s, pad, outputPadding is { } p ? new Size2(p, p) : null, d);
        Assert.Equal(new Shape(expected, expected, 4), layer.ComputeOutputShape(new Shape(n, n, 3)));
        // The crop is what the full result (n - 1)·s + k' loses, for any n.
        var (before, after) = ConvArithmetic.TransposedCrop(k, s, pad, outputPadding, d);
        Assert.Equal((long)(n - 1) * s + (k - 1) * d + 1 - expected, before + after);
    }

    [Theory]
    [InlineData("valid", 9, 3, 2)]
    [InlineData("same", 8, 3, 2)]
    [InlineData("same", 8, 4, 2)]
    [InlineData("valid", 7, 3, 1)]
    public void IsTheAdjointOfConv2DWithTheSameKernel(string padding, int n, int k, int s)
    {
        // <conv(x), y> = <x, conv_transpose(y)>: the transposed convolution is the gradient of Conv2D with respect to its
        // input, for TensorFlow's 'same' (odd pixel bottom/right) as for 'valid'.
        var pad = padding == "same" ? Padding.Same : Padding.Valid;
        var conv = new Conv2D(5, k, s, pad, useBias: false);
        var xIn = new Input(new Shape(n, n, 3));
        using var forward = new Model(xIn, conv.Apply(xIn));
        int m = forward.Outputs[0].Shape[0];
        var t = new Conv2DTranspose(3, k, s, pad, useBias: false);
        var yIn = new Input(new Shape(m, m, 5));
        using var backward = new Model(yIn, t.Apply(yIn));
        Assert.Equal(new Shape(n, n, 3), backward.Outputs[0].Shape);
        Assert.Equal(conv.Kernel!.shape, t.Kernel!.shape); // (5, 3, k, k): the same tensor layout
        using (no_grad()) t.Kernel.copy_(conv.Kernel);
        using var x = randn(2, 3, n, n);
        using var y = randn(2, 5, m, m);
        using var cx = forward.Apply(x);
        using var ty = backward.Apply(y);
        double a = (cx * y).sum().item<float>(), b = (x * ty).sum().item<float>();
        Assert.True(Math.Abs(a - b) <= 1e-4 * Math.Max(1, Math.Abs(a)), $"<conv x, y> = {a}, <x, convT y> = {b}");
    }

    [Theory]
    // Channel counts off oneDNN's blocks (docs/convolutions.md: plain convolutions err there) and a grouped one.
    [InlineData(31, 24, 1)]
    [InlineData(24, 37, 1)]
    [InlineData(16, 14, 2)]
    public void OddChannelCountsEqualAFloat64Reference(int channels, int filters, int groups)
    {
        var input = new Input(new Shape(9, 8, channels));
        var layer = new Conv2DTranspose(filters, 3, 2, Padding.Same, groups: groups);
        using var model = new Model(input, layer.Apply(input));
        using (no_grad()) layer.Bias!.normal_(0, 0.5);
        using var x = randn(2, channels, 9, 8);
        using var y = model.Apply(x);
        using var x64 = x.to(float64);
        using var w64 = layer.Kernel!.to(float64);
        using var full = nn.functional.conv_transpose2d(x64, w64, null, [2, 2], [0, 0], [0, 0], [1, 1], groups);
        var (top, bottom, left, right) = layer.Crop;
        using var cropped = nn.functional.pad(full, [-left, -right, -top, -bottom]);
        using var b64 = layer.Bias.to(float64).view(1, -1, 1, 1);
        using var one = 1.ToScalar();
        using var want = cropped.add(b64, one);
        Assert.Equal(want.shape, y.shape);
        double err = (y.to(float64) - want).abs().max().item<double>() / want.abs().max().item<double>();
        Assert.True(err < 1e-5, $"relative error {err}");
    }

    [Fact]
    public void ParametersSummaryAndMacsAreKeras()
    {
        var input = new Input(new Shape(7, 7, 16));
        var layer = new Conv2DTranspose(8, 3, 2, Padding.Same, name: "up");
        using var model = new Model(input, layer.Apply(input));
        // Keras: kh·kw·C·filters + filters.
        Assert.Equal(3 * 3 * 16 * 8 + 8, model.CountParams());
        Assert.Equal(new long[] { 16, 8, 3, 3 }, layer.Kernel!.shape);
        var summary = model.Summary();
        Assert.Matches(@"up \(Conv2DTranspose\)\s+\(None, 14, 14, 8\)\s+1160\s", summary);
        Assert.Equal(7L * 7 * 16 * 9 * 8, layer.CountMacs([new Shape(7, 7, 16)], new Shape(14, 14, 8)));
        var grouped = new Conv2DTranspose(8, 3, groups: 4);
        grouped.Apply(new Input(new Shape(5, 5, 16)));
        Assert.Equal(16L * 2 * 9 + 8, grouped.Weights.Sum(w => w.Value.numel()));
    }

    [Fact]
    public void BadArgumentsAreNamed()
    {
        Assert.Contains("output_padding", Assert.Throws<LayerArgumentException>(() => new Conv2DTranspose(4, 3, 2, outputPadding: new Size2(2, 0))).Message);
        Assert.Contains("filters", Assert.Throws<LayerArgumentException>(() => new Conv2DTranspose(0, 3)).Message);
        Assert.Contains("groups", Assert.Throws<LayerArgumentException>(() => new Conv2DTranspose(6, 3, groups: 4)).Message);
        Assert.Contains("strides", Assert.Throws<LayerArgumentException>(() => new Conv2DTranspose(6, 3, 2, dilationRate: 2)).Message);
    }

    static Model Decoder()
    {
        var input = new Input(new Shape(6, 5, 4));
        var x = new Conv2DTranspose(6, 3, 2, Padding.Same, activation: Activations.ReLU).Apply(input);
        x = new Conv2DTranspose(6, 4, 2, Padding.Valid, groups: 2).Apply(x);
        x = new Conv2DTranspose(5, 2, 3, Padding.Valid, useBias: false).Apply(x);
        x = new Conv2DTranspose(3, 5, 2, Padding.Same, outputPadding: new Size2(0, 1)).Apply(x);
        x = new Conv2DTranspose(2, 3, 1, Padding.Same, dilationRate: 2).Apply(x);
        return new Model(input, x, "decoder");
    }

    [Fact]
    public void ExportsToOnnxAsOnnxRuntimeComputesIt()
    {
        using var model = Decoder();
        using (no_grad()) foreach (var w in model.Weights.Where(w => w.Name == "bias")) w.Value.normal_(0, 0.5);
        OnnxExportTests.CheckAgainstOnnxRuntime(model, seed: 3);
        OnnxExportTests.CheckAgainstOnnxRuntime(model, seed: 4, channelsLast: false);
    }

    [Fact]
    public void SavesLoadsAndTrains()
    {
        using var model = Decoder();
        var dir = Directory.CreateTempSubdirectory("convkit-convt-").FullName;
        try
        {
            var path = Path.Combine(dir, "decoder.safetensors");
            model.Save(path);
            using var loaded = Model.Load(path);
            var a = (Conv2DTranspose)model.Layers[4];
            var b = (Conv2DTranspose)loaded.Layers[4];
            Assert.Equal((a.Filters, a.KernelSize, a.Strides, a.Padding, a.OutputPadding, a.DilationRate, a.Groups),
                (b.Filters, b.KernelSize, b.Strides, b.Padding, b.OutputPadding, b.DilationRate, b.Groups));
            using var x = rand(2, 6, 5, 4);
            using var ya = model.Predict(x);
            using var yb = loaded.Predict(x);
            Assert.Equal(new long[] { 2, 155, 132, 2 }, ya.shape);
            Assert.True((ya - yb).abs().max().item<float>() == 0);
        }
        finally { Directory.Delete(dir, recursive: true); }
        model.train();
        using var xt = randn(2, 4, 6, 5);
        using var y = model.Apply(xt);
        using var squared = y.mul(y);
        using var loss = squared.mean();
        loss.backward();
        Assert.All(model.TrainableWeights, w => Assert.True(w.Value.grad is { } g && g.abs().max().item<float>() > 0, $"{w.Owner.Name}/{w.Name}"));
    }
}
