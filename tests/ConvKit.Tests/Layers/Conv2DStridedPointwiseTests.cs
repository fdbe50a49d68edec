using ConvKit.Layers;
using static TorchSharp.torch;

namespace ConvKit.Tests.Layers;

public class Conv2DStridedPointwiseTests
{
    [Theory]
    [InlineData(512, 1024, 4, "valid")] // ResNet-50 conv4_block1_0_conv at 32x32: crashed libtorch's backward (SIGFPE)
    [InlineData(1024, 2048, 5, "same")]
    [InlineData(3, 4, 7, "SAME")]
    public void StridedOneByOneMatchesLibtorchAndHasGradients(int cin, int cout, int size, string padding)
    {
        using var scope = NewDisposeScope();
        var conv = new Conv2D(cout, 1, strides: 2, padding: padding);
        var x = randn(2, cin, size, size, requires_grad: true);
        var y = conv.Apply(x);
        using (no_grad())
        {
            var reference = nn.functional.conv2d(x, conv.Kernel!, conv.Bias, strides: [2, 2]);
            Assert.Equal(reference.shape, y.shape);
            Assert.True(allclose(y, reference, rtol: 1e-4, atol: 1e-4));
        }
        y.sum().backward();
        Assert.True(isfinite(x.grad!).all().item<bool>());
        Assert.Equal(new long[] { 2, cin, size, size }, x.grad!.shape);
    }
}
