using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Tests.Native;

/// <summary>
/// PackedConvolution: libtorch's oneDNN convolution on a kernel packed once, with the ReLU fused, reached through
/// exported libtorch symbols that TorchSharp does not wrap. Compared with libtorch's float64 convolution, which never
/// runs on oneDNN.
/// </summary>
public class PackedConvolutionTests
{
    [Fact]
    public void TheStartUpProbePassesOnLinuxX64()
    {
        if (!OperatingSystem.IsLinux() || System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64)
            return; // elsewhere the packed path is off by design, and ConvKit runs its ordinary convolutions
        Assert.True(PackedConvolution.Available, PackedConvolution.Unavailable);
    }

    static Tensor Expected(Tensor x, Tensor w, Tensor b, long[] stride, long[] padding, long[] dilation, long groups, bool relu)
    {
        var y = F.conv2d(x.to_type(ScalarType.Float64), w.to_type(ScalarType.Float64), b.to_type(ScalarType.Float64), stride, padding, dilation, groups);
        return relu ? y.relu() : y;
    }

    static void AssertClose(Tensor actual, Tensor expected, string what)
    {
        Assert.Equal(expected.shape, actual.shape);
        double scale = expected.abs().max().item<double>();
        double err = actual.to_type(ScalarType.Float64).sub(expected).abs().max().item<double>();
        Assert.True(err <= 1e-5 * Math.Max(scale, 1), $"{what}: max error {err:g3} of a range {scale:g3}");
    }

    // batch, in, out, kernel h/w, stride, padding, dilation, groups, relu, H/W
    [Theory]
    [InlineData(2, 3, 64, 7, 7, 2, 3, 1, 1, true, 23)]     // a ResNet stem
    [InlineData(1, 64, 256, 1, 1, 1, 0, 1, 1, false, 14)]  // a bottleneck expansion
    [InlineData(3, 256, 64, 1, 1, 1, 0, 1, 1, true, 7)]
    [InlineData(4, 32, 48, 3, 3, 1, 1, 1, 1, true, 9)]
    [InlineData(2, 16, 16, 3, 3, 2, 1, 1, 1, true, 11)]    // strided, odd size
    [InlineData(2, 24, 40, 1, 7, 1, 0, 1, 1, true, 8)]     // Inception v3's 1x7 (asymmetric kernel, no padding)
    [InlineData(2, 16, 32, 3, 3, 1, 2, 2, 1, false, 12)]   // dilated
    [InlineData(2, 8, 16, 3, 3, 1, 1, 1, 2, true, 10)]     // grouped
    [InlineData(5, 37, 41, 1, 1, 1, 0, 1, 1, true, 5)]     // filter counts oneDNN's channels-last 1x1 got wrong
    public void MatchesTheFloat64Convolution(int n, int cin, int cout, int kh, int kw, int s, int p, int d, int groups, bool relu, int size)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var gen = new Generator(17);
        long[] stride = [s, s], padding = [kh == 1 && kw > 1 ? 0 : p, kw == 1 && kh > 1 ? 0 : p], dilation = [d, d];
        var x = Ops.ToChannelsLast(randn([n, cin, size, size], generator: gen));
        var w = randn([cout, cin / groups, kh, kw], generator: gen);
        var b = randn([cout], generator: gen);
        using var packed = PackedConvolution.Pack(w, padding, stride, dilation, groups, x.shape);
        var y = PackedConvolution.Run(x, packed, b, padding, stride, dilation, groups, relu);
        AssertClose(y, Expected(x, w, b, stride, padding, dilation, groups, relu), "packed");
        Assert.Equal(1, y.stride(1)); // channels-last out, as ConvKit's convolutions return
    }

    [Fact]
    public void AKernelPackedForOneShapeServesOthers()
    {
        // FusedConvolution keeps one packed kernel per convolution and uses it for every input shape (an epoch's last,
        // smaller batch; another image size): oneDNN must reorder it when its kernel for that shape wants another layout.
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var gen = new Generator(23);
        long[] stride = [1, 1], padding = [1, 1], dilation = [1, 1];
        var w = randn([64, 32, 3, 3], generator: gen);
        var b = randn([64], generator: gen);
        using var packed = PackedConvolution.Pack(w, padding, stride, dilation, 1, [16, 32, 28, 28]);
        foreach (var (n, size) in new[] { (16, 28), (1, 28), (3, 7), (2, 56) })
        {
            var x = Ops.ToChannelsLast(randn([n, 32, size, size], generator: gen));
            var y = PackedConvolution.Run(x, packed, b, padding, stride, dilation, 1, relu: true);
            AssertClose(y, Expected(x, w, b, stride, padding, dilation, 1, relu: true), $"batch {n}, {size}x{size}");
        }
    }

    [Fact]
    public void NCHWInputIsAcceptedAndTheResultStillRight()
    {
        // ConvKit hands channels-last tensors, but the entry point must not misread a plain NCHW one.
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var gen = new Generator(29);
        long[] stride = [1, 1], padding = [1, 1], dilation = [1, 1];
        var x = randn([2, 16, 9, 9], generator: gen);
        var w = randn([32, 16, 3, 3], generator: gen);
        var b = randn([32], generator: gen);
        using var packed = PackedConvolution.Pack(w, padding, stride, dilation, 1, x.shape);
        AssertClose(PackedConvolution.Run(x, packed, b, padding, stride, dilation, 1, relu: false), Expected(x, w, b, stride, padding, dilation, 1, false), "NCHW input");
    }
}
