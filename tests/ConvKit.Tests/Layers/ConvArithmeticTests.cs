using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Native;
using static TorchSharp.torch;

namespace ConvKit.Tests.Layers;

/// <summary>ConvArithmetic against Keras' formulas for every small case; layer shapes; receptive fields and MACs.</summary>
public class ConvArithmeticTests
{
    static IEnumerable<(int N, int K, int S, int D, Padding P)> AllCases()
    {
        for (int n = 1; n <= 12; n++)
        for (int k = 1; k <= 7; k++)
        for (int s = 1; s <= 4; s++)
        for (int d = 1; d <= 2; d++)
        {
            if (s > 1 && d > 1) continue; // Keras rejects strides > 1 with dilation > 1
            yield return (n, k, s, d, Padding.Same);
            yield return (n, k, s, d, Padding.Valid);
        }
    }

    // Keras' formulas, written out here rather than taken from ConvArithmetic.
    static int KerasOutput(int n, int k, int s, int d, Padding p) =>
        p == Padding.Same ? (int)Math.Ceiling(n / (double)s) : (int)Math.Floor((n - (k - 1) * d - 1) / (double)s) + 1;

    static (int, int) KerasPads(int n, int k, int s, int d)
    {
        int output = (int)Math.Ceiling(n / (double)s);
        int total = Math.Max(0, (output - 1) * s + (k - 1) * d + 1 - n);
        return (total / 2, total - total / 2);
    }

    [Fact]
    public void OutputLengthPaddingAndComputeOutputShapeFollowKerasForEveryCase()
    {
        using var _ = Backend.NameScope();
        int checkedCases = 0;
        foreach (var (n, k, s, d, p) in AllCases())
        {
            int expected = KerasOutput(n, k, s, d, p);
            var conv = new Conv2D(2, kernelSize: (k, k), strides: (s, s), padding: p, dilationRate: (d, d), name: "c");
            if (expected < 1)
            {
                Assert.True(ConvArithmetic.OutputLength(n, k, s, p, d) < 1, $"{(n, k, s, d, p)}");
                var e = Assert.Throws<ShapeException>(() => conv.ComputeOutputShape(new Shape(n, n, 1)));
                Assert.Contains("'c'", e.Message);
                Assert.Throws<ShapeException>(() => ConvArithmetic.Trace(n, new ConvStep(k, s, p, d)));
                continue;
            }
            Assert.Equal(expected, ConvArithmetic.OutputLength(n, k, s, p, d));
            Assert.Equal(p == Padding.Same ? KerasPads(n, k, s, d) : (0, 0), ConvArithmetic.Pads(n, k, s, p, d));
            Assert.Equal(new Shape(expected, expected, 2), conv.ComputeOutputShape(new Shape(n, n, 1)));
            // Non-square input: the axes are computed independently.
            int wide = KerasOutput(12, k, s, d, p);
            if (wide >= 1) Assert.Equal(new Shape(expected, wide, 2), conv.ComputeOutputShape(new Shape(n, 12, 1)));
            checkedCases++;
        }
        Assert.True(checkedCases > 700, $"only {checkedCases} cases ran");
    }

    [Fact]
    public void TensorShapesOfConvAndPoolingAgreeWithTheArithmetic()
    {
        using var _ = Backend.NameScope();
        using var noGrad = no_grad();
        int runs = 0;
        foreach (var (n, k, s, d, p) in AllCases())
        {
            // A third of the cases, every (n, k) pairing still covered across strides: the runs stay under a second.
            if ((n + k + s) % 3 != 0) continue;
            int expected = KerasOutput(n, k, s, d, p);
            if (expected < 1) continue;
            using var x = ones(1, 1, n, n);
            using (var y = new Conv2D(1, k, s, p, d).Apply(x)) Assert.Equal(new long[] { 1, 1, expected, expected }, y.shape);
            if (d == 1)
            {
                using (var y = new MaxPooling2D(k, s, p).Apply(x)) Assert.Equal(new long[] { 1, 1, expected, expected }, y.shape);
                using (var y = new AveragePooling2D(k, s, p).Apply(x))
                {
                    Assert.Equal(new long[] { 1, 1, expected, expected }, y.shape);
                    Assert.True(y.eq(Scalars.One).all().item<bool>(), $"average of ones must be 1 for {(n, k, s, p)}"); // padding never counted
                }
            }
            runs++;
        }
        Assert.True(runs > 200, $"only {runs} runs");
    }

    [Fact]
    public void StackedThreeByThreeConvolutionsSeeLikeOneLargerKernel()
    {
        // Seeds 000/001 (VGG): two 3x3 convolutions cover a 5x5 field, three cover 7x7, with fewer weights.
        var two = ConvArithmetic.Trace(32, new ConvStep(3, Padding: Padding.Same), new ConvStep(3, Padding: Padding.Same));
        Assert.Equal(5, two[^1].Field.Size);
        Assert.Equal(ConvArithmetic.Trace(32, new ConvStep(5, Padding: Padding.Same))[0].Field.Size, two[^1].Field.Size);
        var three = ConvArithmetic.Trace(32, new ConvStep(3), new ConvStep(3), new ConvStep(3));
        Assert.Equal(7, three[^1].Field.Size);
        Assert.Equal(26, three[^1].OutputSize);
        Assert.Equal(ConvArithmetic.Trace(32, new ConvStep(7))[0].OutputSize, three[^1].OutputSize);
        // A 2x2/2 pool doubles the jump: the next 3x3 adds 2·2 pixels.
        var pooled = ConvArithmetic.Trace(32, new ConvStep(3), new ConvStep(2, 2), new ConvStep(3));
        Assert.Equal(new[] { 3L, 4L, 8L }, pooled.Select(r => r.Field.Size));
        Assert.Equal(new[] { 1L, 2L, 2L }, pooled.Select(r => r.Field.Jump));
    }

    [Fact]
    public void SummaryShowsReceptiveFieldAndHandComputedMacs()
    {
        using var _ = Backend.NameScope();
        var model = new Sequential([
            new Conv2D(4, 3, padding: Padding.Same, inputShape: (8, 8, 2)),
            new Conv2D(6, 3, padding: Padding.Same),
            new Conv2D(6, 3),
            new Flatten(),
            new Dense(5),
        ]);
        var text = model.Summary(new SummaryOptions { ShowMacs = true, ShowReceptiveField = true });
        var rows = text.Split('\n');
        string Row(string name) => rows.Single(l => l.StartsWith($" {name} ("));
        // MACs = output positions x kernel taps x input channels (conv); inputs x units (dense).
        long conv0 = 8 * 8 * 4 * (3 * 3 * 2), conv1 = 8 * 8 * 6 * (3 * 3 * 4), conv2 = 6 * 6 * 6 * (3 * 3 * 6), dense = 216 * 5;
        Assert.Contains(conv0.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), Row("conv2d"));
        Assert.Contains(conv1.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), Row("conv2d_1"));
        Assert.Contains(conv2.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), Row("conv2d_2"));
        Assert.Contains(dense.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), Row("dense"));
        Assert.Contains($"Total MACs per sample: {(conv0 + conv1 + conv2 + dense).ToString("N0", System.Globalization.CultureInfo.InvariantCulture)}", text);
        // Size/jump/start: 3x3 -> 3, two stacked -> 5 (= one 5x5), three -> 7; 'same' pads shift the start.
        Assert.Contains("3/1/0", Row("conv2d"));
        Assert.Contains("5/1/0", Row("conv2d_1"));
        Assert.Contains("7/1/1", Row("conv2d_2"));
        Assert.Contains("global", Row("flatten"));
    }

    [Theory]
    // torch.nn.functional.max_pool2d(zeros(1, 1, n, n), k, s, ceil_mode=True).shape[-1] for n = 1..19 (0: torch refuses).
    [InlineData(3, 2, new[] { 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9 })]
    [InlineData(2, 2, new[] { 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10 })]
    [InlineData(3, 1, new[] { 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17 })]
    [InlineData(5, 3, new[] { 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6 })]
    public void CeilModePoolingMatchesTorch(int kernel, int stride, int[] torchOutputs)
    {
        for (int n = 1; n <= torchOutputs.Length; n++)
        {
            var (output, pad) = ConvArithmetic.CeilModePooling(n, kernel, stride);
            Assert.Equal(torchOutputs[n - 1], output);
            if (output == 0) continue;
            // A 'valid' pooling of the padded input has torch's length, and its last window starts inside the input.
            Assert.Equal(output, ConvArithmetic.OutputLength(n + pad, kernel, stride, Padding.Valid));
            Assert.True((output - 1) * stride < n);
            Assert.True(pad < kernel);
        }
    }

    [Fact]
    public void AdaptiveWindowsAreTorchs()
    {
        // torch's adaptive_avg_pool2d start_index / end_index: floor(i * n / o), ceil((i + 1) * n / o).
        (int, int)[] Windows(int n, int o) => Enumerable.Range(0, o).Select(i => ConvArithmetic.AdaptiveWindow(n, o, i)).ToArray();
        Assert.Equal([(0, 3), (2, 5), (4, 7)], Windows(7, 3));
        Assert.Equal([(0, 2), (2, 4), (4, 6)], Windows(6, 3));
        Assert.Equal([(0, 1), (0, 1), (0, 1)], Windows(1, 3));
        Assert.Equal([(0, 1), (0, 2), (1, 2)], Windows(2, 3));
        for (int n = 1; n <= 20; n++)
        for (int o = 1; o <= 8; o++)
        {
            var w = Windows(n, o);
            Assert.Equal(0, w[0].Item1);
            Assert.Equal(n, w[^1].Item2);
            Assert.All(w, x => Assert.True(x.Item2 > x.Item1 && x.Item2 - x.Item1 <= (n + o - 1) / o + 1));
        }
    }
}
