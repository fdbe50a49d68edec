using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Native;
using static TorchSharp.torch;

namespace ConvKit.Tests.Layers;

/// <summary>Ops.Conv2D / MaxPool2D / AvgPool2D and the layers built on them, against loop-by-loop reference computations.</summary>
public class OpsTests
{
    // Keras' 'same' padding, written out independently of ConvArithmetic.
    static (int Before, int Out) SamePad(int n, int k, int s, int d)
    {
        int o = (n + s - 1) / s;
        int total = Math.Max(0, (o - 1) * s + (k - 1) * d + 1 - n);
        return (total / 2, o);
    }

    /// <summary>Direct convolution over explicitly zero-padded input, one multiply-add at a time.</summary>
    static float[,,,] ReferenceConv(float[,,,] x, float[,,,] w, int s, int d, bool same)
    {
        int n = x.GetLength(0), c = x.GetLength(1), h = x.GetLength(2), wd = x.GetLength(3);
        int o = w.GetLength(0), k = w.GetLength(2);
        var (pt, oh) = same ? SamePad(h, k, s, d) : (0, (h - (k - 1) * d - 1) / s + 1);
        var (pl, ow) = same ? SamePad(wd, k, s, d) : (0, (wd - (k - 1) * d - 1) / s + 1);
        var y = new float[n, o, oh, ow];
        for (int b = 0; b < n; b++)
        for (int f = 0; f < o; f++)
        for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++)
        {
            double acc = 0;
            for (int ch = 0; ch < c; ch++)
            for (int u = 0; u < k; u++)
            for (int v = 0; v < k; v++)
            {
                int r = i * s - pt + u * d, q = j * s - pl + v * d;
                if (r >= 0 && r < h && q >= 0 && q < wd) acc += x[b, ch, r, q] * w[f, ch, u, v];
            }
            y[b, f, i, j] = (float)acc;
        }
        return y;
    }

    /// <summary>Max (padding = -inf) or average (divided by the real cells counted here) pooling, loop by loop.</summary>
    static float[,,,] ReferencePool(float[,,,] x, int k, int s, bool same, bool max)
    {
        int n = x.GetLength(0), c = x.GetLength(1), h = x.GetLength(2), wd = x.GetLength(3);
        var (pt, oh) = same ? SamePad(h, k, s, 1) : (0, (h - k) / s + 1);
        var (pl, ow) = same ? SamePad(wd, k, s, 1) : (0, (wd - k) / s + 1);
        var y = new float[n, c, oh, ow];
        for (int b = 0; b < n; b++)
        for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < oh; i++)
        for (int j = 0; j < ow; j++)
        {
            double best = double.NegativeInfinity, sum = 0;
            int count = 0;
            for (int u = 0; u < k; u++)
            for (int v = 0; v < k; v++)
            {
                int r = i * s - pt + u, q = j * s - pl + v;
                if (r < 0 || r >= h || q < 0 || q >= wd) continue;
                best = Math.Max(best, x[b, ch, r, q]);
                sum += x[b, ch, r, q];
                count++;
            }
            y[b, ch, i, j] = (float)(max ? best : sum / count);
        }
        return y;
    }

    static float[,,,] ToArray(Tensor t)
    {
        var s = t.shape;
        var data = t.contiguous().data<float>().ToArray();
        var a = new float[s[0], s[1], s[2], s[3]];
        Buffer.BlockCopy(data, 0, a, 0, data.Length * sizeof(float));
        return a;
    }

    static void AssertClose(float[,,,] expected, Tensor actual, double tol = 1e-4)
    {
        Assert.Equal(new long[] { expected.GetLength(0), expected.GetLength(1), expected.GetLength(2), expected.GetLength(3) }, actual.shape);
        var a = ToArray(actual);
        for (int i0 = 0; i0 < expected.GetLength(0); i0++)
        for (int i1 = 0; i1 < expected.GetLength(1); i1++)
        for (int i2 = 0; i2 < expected.GetLength(2); i2++)
        for (int i3 = 0; i3 < expected.GetLength(3); i3++)
            Assert.True(Math.Abs(expected[i0, i1, i2, i3] - a[i0, i1, i2, i3]) <= tol,
                $"at [{i0},{i1},{i2},{i3}]: expected {expected[i0, i1, i2, i3]}, got {a[i0, i1, i2, i3]}");
    }

    // (size, kernel, stride, dilation): asymmetric 'same' cases (even total padding is symmetric, odd is not) and symmetric ones.
    [Theory]
    [InlineData(6, 2, 1, 1)] // total 1: all of it bottom/right
    [InlineData(7, 4, 2, 1)] // total 3: 1 before, 2 after
    [InlineData(5, 3, 2, 1)] // total 2: symmetric
    [InlineData(6, 3, 2, 1)] // total 1
    [InlineData(5, 3, 1, 1)] // symmetric, libtorch's implicit padding path
    [InlineData(6, 2, 1, 2)] // dilated: effective 3, symmetric
    [InlineData(7, 3, 1, 2)] // dilated: effective 5, symmetric
    [InlineData(5, 4, 3, 1)] // total 2, stride 3
    public void ConvAndPoolMatchTheReference(int n, int k, int s, int d)
    {
        manual_seed(n * 100 + k * 10 + s);
        using var x = randn(2, 3, n, n);
        var xa = ToArray(x);
        foreach (bool same in new[] { true, false })
        {
            var padding = same ? Padding.Same : Padding.Valid;
            if (!same && (k - 1) * d + 1 > n) continue;
            using var w = randn(4, 3, k, k);
            using (var y = Ops.Conv2D(x, w, [s], padding, dilations: [d])) AssertClose(ReferenceConv(xa, ToArray(w), s, d, same), y);
            if (d != 1) continue;
            using (var y = Ops.MaxPool2D(x, [k], [s], padding)) AssertClose(ReferencePool(xa, k, s, same, max: true), y);
            using (var y = Ops.AvgPool2D(x, [k], [s], padding)) AssertClose(ReferencePool(xa, k, s, same, max: false), y);
            // The layers run the same cores.
            using var _ = Backend.NameScope();
            using (var y = new MaxPooling2D(k, s, padding).Apply(x)) AssertClose(ReferencePool(xa, k, s, same, max: true), y);
            var avg = new AveragePooling2D(k, s, padding);
            using (var y = avg.Apply(x)) AssertClose(ReferencePool(xa, k, s, same, max: false), y);
            using (var y = avg.Apply(x)) AssertClose(ReferencePool(xa, k, s, same, max: false), y); // cached divisor
        }
    }

    [Fact]
    public void Conv2DLayerMatchesReferenceWithAsymmetricSamePadding()
    {
        using var _ = Backend.NameScope();
        manual_seed(1);
        var conv = new Conv2D(3, kernelSize: 4, strides: 2, padding: Padding.Same, useBias: false);
        using var x = randn(1, 2, 7, 7);
        using var y = conv.Apply(x);
        AssertClose(ReferenceConv(ToArray(x), ToArray(conv.Kernel!), 2, 1, same: true), y);
    }

    [Fact]
    public void ChannelsLastTakesTensorFlowLayouts()
    {
        manual_seed(2);
        using var xNchw = randn(2, 3, 7, 6);
        using var wOihw = randn(5, 3, 3, 3);
        using var bias = randn(5);
        using var xNhwc = xNchw.permute(0, 2, 3, 1).contiguous();
        using var wHwio = wOihw.permute(2, 3, 1, 0).contiguous(); // TF: (kh, kw, in, out)
        using var first = Ops.Conv2D(xNchw, wOihw, [2], "SAME", bias: bias);
        using var last = Ops.Conv2D(xNhwc, wHwio, [1, 2, 2, 1], "SAME", DataFormat.ChannelsLast, bias: bias);
        Assert.Equal(new long[] { 2, 4, 3, 5 }, last.shape);
        using (var back = last.permute(0, 3, 1, 2)) Assert.True(back.allclose(first, 1e-4, 1e-5));
        using var mpFirst = Ops.MaxPool2D(xNchw, [1, 1, 3, 3], [1, 1, 2, 2], "same");
        using var mpLast = Ops.MaxPool2D(xNhwc, [1, 3, 3, 1], [1, 2, 2, 1], "SAME", DataFormat.ChannelsLast);
        using (var back = mpLast.permute(0, 3, 1, 2)) Assert.True(back.allclose(mpFirst, 0, 0));
        using var apFirst = Ops.AvgPool2D(xNchw, [2], [2], "VALID");
        using var apLast = Ops.AvgPool2D(xNhwc, [1, 2, 2, 1], [1, 2, 2, 1], "VALID", DataFormat.ChannelsLast);
        using (var back = apLast.permute(0, 3, 1, 2)) Assert.True(back.allclose(apFirst, 1e-5, 1e-6));
    }

    /// <summary>Seed 001's SimpleCNN, a layer written against the low-level API: Build adds the weights, Call convolves.</summary>
    sealed class SimpleCNN(int numKernels = 32, int kernelSize = 3, int stride = 1) : Layer(null)
    {
        Tensor? kernels, bias;

        protected override void Build(Shape inputShape)
        {
            long inputChannels = inputShape[-1];
            long receptive = (long)kernelSize * kernelSize;
            // ChannelsFirst filters (out, in, kh, kw); Keras' fans: receptive field x channels.
            kernels = AddWeight("kernels", [numKernels, inputChannels, kernelSize, kernelSize], "glorot_uniform",
                receptive * inputChannels, receptive * numKernels);
            bias = AddWeight("bias", [numKernels], "random_normal", inputChannels, numKernels);
        }

        public override Tensor Call(Tensor inputs)
        {
            using var z = Ops.Conv2D(inputs, kernels!, [1, 1, stride, stride], "VALID");
            using var b = bias!.view(1, -1, 1, 1);
            return z.add(b, Scalars.One).relu_();
        }
    }

    [Fact]
    public void Seed001SimpleCnnCustomLayerWorksInSequential()
    {
        using var _ = Backend.NameScope();
        var model = new Sequential([new Input(shape: (28, 28, 16)), new SimpleCNN(32, 3, 1), new Flatten(), new Dense(10, activation: "softmax")]);
        Assert.Equal("simple_cnn", model.Layers[0].Name);
        Assert.Equal(new Shape(26, 26, 32), model.Layers[1].BuiltInputShapes![0]);
        Assert.Equal(3 * 3 * 16 * 32 + 32, model.Layers[0].CountParams()); // k, D, N = 3, 16, 32 as in the seed
        using var x = randn(2, 16, 28, 28).requires_grad_();
        using var y = model.Apply(x);
        Assert.Equal(new long[] { 2, 10 }, y.shape);
        using var loss = y.log().mean().neg();
        loss.backward();
        Assert.All(model.TrainableWeights, w => Assert.NotNull(w.Value.grad));
        Assert.Contains(" simple_cnn (SimpleCNN)      (None, 26, 26, 32)        4640", model.Summary());
    }
}
