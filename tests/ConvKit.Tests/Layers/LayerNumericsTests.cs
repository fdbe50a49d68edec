using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;
using Padding = ConvKit.Padding;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Tests.Layers;

/// <summary>
/// Forward values and gradients against TorchSharp reference ops; BN statistics; initializers; names.
/// These tests caught libtorch 2.10's wrong float32 convolutions (input gradients wrong in some runs for 4 channels);
/// convolution references therefore run in float64, which never goes through oneDNN (see VerifiedConvolution).
/// </summary>
public class LayerNumericsTests
{
    static void Close(Tensor expected, Tensor actual, double tol = 1e-4, string what = "")
    {
        Assert.Equal(expected.shape, actual.shape);
        double diff = (expected - actual).abs().max().item<float>();
        Assert.True(diff <= tol, $"{what}: max difference {diff}");
    }

    /// <summary>Runs layer and reference on the same input, then compares outputs and the gradients of a random projection.</summary>
    static void CheckAgainstReference(Layer layer, Tensor input, Func<Tensor, Tensor> reference, params (Tensor Weight, string Name)[] weights)
    {
        foreach (var (w, _) in weights) w.grad?.zero_();
        using var x1 = input.detach().clone().requires_grad_();
        using var x2 = input.detach().clone().requires_grad_();
        using var y1 = layer.Apply(x1);
        var copies = weights.Select(w => w.Weight.detach().clone().requires_grad_()).ToArray();
        Tensor y2 = reference(x2);
        Close(y2, y1, what: $"{layer.Describe} forward");
        using var probe = randn_like(y1);
        (y1 * probe).sum().backward();
        // The reference sees the copies through the closure below, so rebuild it on them for the gradient.
        y2.Dispose();
        y2 = ReferenceWith(reference, weights, copies, x2);
        (y2 * probe).sum().backward();
        Close(x2.grad!, x1.grad!, what: $"{layer.Describe} d/dinput");
        for (int i = 0; i < weights.Length; i++)
            Close(copies[i].grad!, weights[i].Weight.grad!, what: $"{layer.Describe} d/d{weights[i].Name}");
        y2.Dispose();
    }

    // Swaps each layer weight for its copy while the reference runs, so the reference's gradients land on the copies.
    static Tensor ReferenceWith(Func<Tensor, Tensor> reference, (Tensor Weight, string Name)[] weights, Tensor[] copies, Tensor x)
    {
        current = new Dictionary<object, Tensor>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < weights.Length; i++) current[weights[i].Weight] = copies[i];
        try { return reference(x); }
        finally { current = null; }
    }

    static Dictionary<object, Tensor>? current;

    static Tensor W(Tensor t) => current is not null && current.TryGetValue(t, out var c) ? c : t;

    [Theory]
    [InlineData(1, 1, 1, "same")]
    [InlineData(2, 1, 1, "same")]
    [InlineData(1, 2, 1, "same")]
    [InlineData(1, 1, 2, "same")]   // asymmetric padding
    [InlineData(2, 1, 2, "valid")]
    [InlineData(4, 1, 1, "valid")]  // depthwise
    public void Conv2DMatchesFConv2d(int groups, int dilation, int stride, string padding)
    {
        using var _ = Backend.NameScope();
        manual_seed(groups * 10 + dilation + stride);
        var p = padding == "same" ? Padding.Same : Padding.Valid;
        var conv = new Conv2D(4, 3, strides: stride, padding: p, dilationRate: dilation, groups: groups, biasInitializer: Initializers.RandomNormal);
        using var x = randn(2, 4, 8, 8);
        conv.Apply(x).Dispose();
        int eff = 2 * dilation + 1;
        var (before, after) = p == Padding.Same ? SamePad(8, eff, stride) : (0, 0);
        CheckAgainstReference(conv, x,
            // In float64: libtorch's float32 CPU convolution on plain NCHW memory is wrong for some channel counts
            // (4 here, input gradient; see VerifiedConvolution), its float64 one never runs oneDNN.
            input => F.conv2d(F.pad(input.to_type(ScalarType.Float64), [before, after, before, after]), W(conv.Kernel!).to_type(ScalarType.Float64),
                W(conv.Bias!).to_type(ScalarType.Float64), [stride, stride], [0, 0], [dilation, dilation], groups).to_type(ScalarType.Float32),
            (conv.Kernel!, "kernel"), (conv.Bias!, "bias"));
    }

    static (long, long) SamePad(int n, int effective, int s)
    {
        int o = (n + s - 1) / s;
        int total = Math.Max(0, (o - 1) * s + effective - n);
        return (total / 2, total - total / 2);
    }

    [Fact]
    public void DenseMatchesMatmul()
    {
        using var _ = Backend.NameScope();
        var dense = new Dense(3, activation: "tanh", biasInitializer: Initializers.RandomNormal);
        using var x = randn(4, 5);
        dense.Apply(x).Dispose();
        CheckAgainstReference(dense, x, input => input.matmul(W(dense.Kernel!).t()).add(W(dense.Bias!), Scalars.One).tanh(),
            (dense.Kernel!, "kernel"), (dense.Bias!, "bias"));
    }

    [Fact]
    public void BatchNormalizationMatchesFormulaInTrainingAndInference()
    {
        using var _ = Backend.NameScope();
        var bn = new BatchNormalization(gammaInitializer: Initializers.Uniform(0.5, 1.5), betaInitializer: Initializers.RandomNormal);
        using var x = randn(4, 3, 5, 5).mul(Scalars.Two).add(Scalars.One, Scalars.One);
        bn.Apply(x.narrow(0, 0, 1)).Dispose(); // builds; the moving statistics are reset below
        var gamma = bn.OwnWeights.Single(w => w.Name == "gamma").Value;
        var beta = bn.OwnWeights.Single(w => w.Name == "beta").Value;
        var movingMean = bn.OwnWeights.Single(w => w.Name == "moving_mean").Value;
        var movingVar = bn.OwnWeights.Single(w => w.Name == "moving_variance").Value;
        using (no_grad()) { movingMean.fill_(Scalars.Zero); movingVar.fill_(Scalars.One); }

        using var epsilon = 1e-3.ToScalar();
        bn.train();
        Tensor Train(Tensor input)
        {
            var mean = input.mean([0, 2, 3], keepdim: true);
            var variance = input.var([0, 2, 3], unbiased: false, keepdim: true);
            return ((input - mean) / variance.add(epsilon, Scalars.One).sqrt() * W(gamma).view(1, -1, 1, 1)).add(W(beta).view(1, -1, 1, 1), Scalars.One);
        }
        CheckAgainstReference(bn, x, Train, (gamma, "gamma"), (beta, "beta"));
        // Keras: moving = 0.99 * moving + 0.01 * batch (libtorch's running variance is the unbiased one, as TF's).
        using var batchMean = x.mean([0, 2, 3]);
        using var batchVar = x.var([0, 2, 3], unbiased: true);
        using var batchShare = 0.01.ToScalar();
        using var movingShare = 0.99.ToScalar();
        Close(batchMean.mul(batchShare), movingMean, 1e-5, "moving_mean");
        Close(batchVar.mul(batchShare).add(movingShare, Scalars.One), movingVar, 1e-5, "moving_variance");

        bn.eval();
        using (no_grad()) { movingMean.copy_(tensor(new float[] { 0.5f, -1f, 2f })); movingVar.copy_(tensor(new float[] { 4f, 0.25f, 1f })); }
        CheckAgainstReference(bn, x,
            input => ((input - movingMean.view(1, -1, 1, 1)) / movingVar.view(1, -1, 1, 1).add(epsilon, Scalars.One).sqrt() * W(gamma).view(1, -1, 1, 1)).add(W(beta).view(1, -1, 1, 1), Scalars.One),
            (gamma, "gamma"), (beta, "beta"));
        Close(tensor(new float[] { 0.5f, -1f, 2f }), movingMean, 0, "inference leaves moving stats alone");

        Assert.Equal(6, bn.TrainableWeights.Sum(w => w.Count));
        Assert.Equal(6, bn.NonTrainableWeights.Sum(w => w.Count));
        Assert.Equal(12, bn.CountParams());
    }

    [Fact]
    public void LocalResponseNormalizationMatchesTheTensorFlowFormula()
    {
        using var _ = Backend.NameScope();
        // AlexNet's setting: n = 5, k = 2, alpha = 1e-4, beta = 0.75; and a large alpha so the sum matters.
        foreach (var (r, k, alpha, beta) in new[] { (2, 2.0, 1e-4, 0.75), (1, 1.0, 0.5, 0.5), (3, 0.5, 2.0, 1.0) })
        {
            var lrn = new LocalResponseNormalization(depthRadius: r, bias: k, alpha: alpha, beta: beta);
            using var three = 3.ToScalar();
            using var x = randn(2, 7, 3, 3).mul(three);
            using var alphaScalar = alpha.ToScalar();
            using var kScalar = k.ToScalar();
            using var betaScalar = beta.ToScalar();
            Tensor Direct(Tensor input)
            {
                // sqr_sum[c] = sum over c' in [c - r, c + r] of x[c']^2, channels outside clipped.
                int channels = (int)input.shape[1];
                var sq = input.pow(Scalars.Two);
                var parts = new List<Tensor>();
                for (int c = 0; c < channels; c++)
                {
                    int lo = Math.Max(0, c - r), hi = Math.Min(channels - 1, c + r);
                    parts.Add(sq.narrow(1, lo, hi - lo + 1).sum(1, keepdim: true));
                }
                var sqrSum = cat(parts.ToArray(), 1);
                return input / sqrSum.mul(alphaScalar).add(kScalar, Scalars.One).pow(betaScalar);
            }
            CheckAgainstReference(lrn, x, Direct);
        }
    }

    [Fact]
    public void RescalingAndActivationLayers()
    {
        using var _ = Backend.NameScope();
        using var x = randn(3, 4);
        using var maxPixel = 255.ToScalar();
        using var half = 0.5.ToScalar();
        using var leak = 0.3.ToScalar();
        using var eluAlpha = 0.7.ToScalar();
        CheckAgainstReference(new Rescaling(1 / 255.0, offset: -0.5), x, input => input.div(maxPixel).sub(half));
        CheckAgainstReference(new LeakyReLU(), x, input => where(input.ge(Scalars.Zero), input, input.mul(leak)));
        CheckAgainstReference(new ELU(0.7), x, input => where(input.gt(Scalars.Zero), input, input.exp().sub(Scalars.One).mul(eluAlpha)));
        CheckAgainstReference(new Softmax(), x, input => input.exp() / input.exp().sum(1, keepdim: true));
        using var image = randn(2, 3, 4, 4);
        using var s = new Softmax().Apply(image);
        using (var sums = s.sum(1)) Close(ones(2, 4, 4), sums, 1e-5, "softmax over channels");
    }

    /// <summary>
    /// Averaging matrix of one adaptive pooling axis, written from torch's definition (windows
    /// [floor(i·n/o), ceil((i+1)·n/o))) rather than taken from ConvArithmetic: (o, n), rows summing to 1.
    /// </summary>
    static Tensor AdaptiveMatrix(int n, int o)
    {
        var m = zeros(o, n, dtype: float64);
        for (int i = 0; i < o; i++)
        {
            int start = (int)Math.Floor(i * n / (double)o), end = (int)Math.Ceiling((i + 1) * n / (double)o);
            for (int j = start; j < end; j++) m[i, j] = 1.0 / (end - start);
        }
        return m;
    }

    [Theory]
    [InlineData(13, 11, 6, 6)]  // overlapping windows (AlexNet at 300x300)
    [InlineData(1, 1, 6, 6)]    // one cell repeated (AlexNet at its 63x63 minimum)
    [InlineData(14, 7, 7, 7)]   // 2x1 windows along height, identity along width
    [InlineData(7, 7, 7, 7)]    // the identity (VGG at 224)
    [InlineData(5, 9, 3, 2)]
    public void AdaptiveAveragePooling2DAveragesTorchsWindows(int h, int w, int oh, int ow)
    {
        using var _ = Backend.NameScope();
        using var scope = NewDisposeScope();
        manual_seed(h * 100 + w);
        var layer = new AdaptiveAveragePooling2D((oh, ow));
        Assert.Equal(new Shape(oh, ow, 3), layer.ComputeOutputShape(new Shape(h, w, 3)));
        var ah = AdaptiveMatrix(h, oh).to(float32);
        var aw = AdaptiveMatrix(w, ow).to(float32);
        // y = A_h · x · A_wᵀ on each (h, w) map; on channels-last memory, as ConvKit's convolutions leave their outputs.
        var x = Ops.ToChannelsLast(randn(2, 3, h, w));
        CheckAgainstReference(layer, x, input => matmul(matmul(ah, input), aw.t()));
        // The same through a float64 loop over the windows.
        var y = layer.Apply(x).to(float64);
        var x64 = x.to(float64);
        for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++)
        {
            var (t, b) = ConvArithmetic.AdaptiveWindow(h, oh, i);
            var (l, r) = ConvArithmetic.AdaptiveWindow(w, ow, j);
            var mean = x64[.., .., t..b, l..r].mean([2, 3]);
            double diff = (mean - y[.., .., i, j]).abs().max().item<double>();
            Assert.True(diff < 1e-6, $"cell ({i}, {j}): max difference {diff}");
        }
    }

    /// <summary>
    /// The layers' float32 gradients against central finite differences of the same computation in float64. The layers
    /// themselves stay float32 (Module.to(float64) swaps the parameter handles the layers hold), so the float64 side
    /// runs Ops.Conv2D and F.linear on float64 copies of the layers' weights.
    /// </summary>
    [Fact]
    public void GradientsMatchFloat64FiniteDifferences()
    {
        using var _ = Backend.NameScope();
        manual_seed(3);
        var conv = new Conv2D(2, 3, strides: 2, padding: Padding.Same, activation: "tanh", biasInitializer: Initializers.RandomNormal);
        var dense = new Dense(3, activation: "sigmoid", biasInitializer: Initializers.RandomNormal);
        var model = new Sequential([new Input(shape: (6, 6, 2)), conv, new Flatten(), dense]);
        using var x = randn(1, 2, 6, 6).requires_grad_();
        using (var y = model.Apply(x)) using (var l = y.pow(Scalars.Two).sum()) l.backward();

        var x64 = x.detach().to(float64);
        var k64 = conv.Kernel!.detach().to(float64);
        var b64 = conv.Bias!.detach().to(float64);
        var dk64 = dense.Kernel!.detach().to(float64);
        var db64 = dense.Bias!.detach().to(float64);
        double Loss()
        {
            using var scope = NewDisposeScope();
            var h1 = Ops.Conv2D(x64, k64, [2], "SAME", bias: b64).tanh().flatten(1);
            return F.linear(h1, dk64, db64).sigmoid().pow(Scalars.Two).sum().item<double>();
        }
        var checks = new (Tensor Value64, Tensor Grad, string Name)[]
        {
            (x64, x.grad!, "input"), (k64, conv.Kernel!.grad!, "conv kernel"), (b64, conv.Bias!.grad!, "conv bias"),
            (dk64, dense.Kernel!.grad!, "dense kernel"), (db64, dense.Bias!.grad!, "dense bias"),
        };
        const double h = 1e-6;
        int compared = 0;
        foreach (var (value, grad, name) in checks)
        {
            using var flat = value.view(-1);
            using var g = grad.reshape(-1);
            for (long i = 0; i < flat.numel(); i += 2)
            {
                double orig = flat[i].item<double>();
                flat[i] = orig + h;
                double up = Loss();
                flat[i] = orig - h;
                double down = Loss();
                flat[i] = orig;
                double numeric = (up - down) / (2 * h), analytic = g[i].item<float>();
                Assert.True(Math.Abs(numeric - analytic) <= 1e-4 + 1e-3 * Math.Abs(numeric), $"{name}[{i}]: numeric {numeric}, analytic {analytic}");
                compared++;
            }
        }
        Assert.True(compared > 50);
    }

    static double Std(Tensor w)
    {
        using var centered = w - w.mean();
        return Math.Sqrt(centered.pow(Scalars.Two).mean().item<float>());
    }

    [Fact]
    public void InitializerStatisticsFollowKeras()
    {
        manual_seed(7);
        using var w = empty(256, 128, 3, 3);
        long fanIn = 128 * 9, fanOut = 256 * 9;
        Initializers.GlorotUniform.Fill(w, fanIn, fanOut);
        double limit = Math.Sqrt(6.0 / (fanIn + fanOut));
        Assert.True(w.abs().max().item<float>() <= limit);
        Assert.True(w.abs().max().item<float>() > 0.99 * limit);
        Assert.InRange(Std(w), limit / Math.Sqrt(3) * 0.98, limit / Math.Sqrt(3) * 1.02);
        Initializers.HeNormal.Fill(w, fanIn, fanOut);
        double std = Math.Sqrt(2.0 / fanIn);
        Assert.InRange(Std(w), std * 0.98, std * 1.02); // truncated normal rescaled to the target std
        Assert.True(w.abs().max().item<float>() <= 2 * std / 0.87962566103423978 + 1e-6);
        Assert.InRange(w.mean().item<float>(), -0.01 * std, 0.01 * std);
        Initializers.TruncatedNormal.Fill(w, fanIn, fanOut);
        Assert.InRange(Std(w), 0.05 * 0.87962566103423978 * 0.98, 0.05 * 0.87962566103423978 * 1.02); // N(0, 0.05) cut at ±2σ
        Assert.True(w.abs().max().item<float>() <= 0.1 + 1e-6);
    }

    [Fact]
    public void AutomaticNamesFollowKeras()
    {
        using var _ = Backend.NameScope();
        Assert.Equal("conv2d", new Conv2D(1, 1).Name);
        Assert.Equal("conv2d_1", new Conv2D(1, 1).Name);
        Assert.Equal("max_pooling2d", new MaxPooling2D().Name);
        Assert.Equal("max_pooling2d_1", new MaxPool2D().Name);
        Assert.Equal("re_lu", new ReLU().Name);
        Assert.Equal("leaky_re_lu", new LeakyReLU().Name);
        Assert.Equal("local_response_normalization", new LocalResponseNormalization().Name);
        Assert.Equal("input_1", new Input(shape: 3).Layer.Name);
        Assert.Equal("input_2", new Input(shape: 3).Layer.Name);
    }
}
