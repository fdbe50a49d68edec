using ConvKit.Native;
using static TorchSharp.torch;

namespace ConvKit.Tests.Native;

public class TorchNativeTests
{
    [Fact]
    public void TensorOpAndBackwardRunInTheTestProcess()
    {
        var x = tensor(new float[] { 1, -2, 3 }, requires_grad: true);
        var y = (x * x).sum();
        y.backward();
        Assert.Equal(new float[] { 2, -4, 6 }, x.grad!.data<float>().ToArray());
        Assert.DoesNotContain("not initialized", TorchNative.Status);
    }

    [Fact]
    public void PatcherMarksOnlyTheNamedVersionWeak()
    {
        var shim = FindShipped();
        var bytes = File.ReadAllBytes(shim);
        var copy = (byte[])bytes.Clone();
        bool needsIt = ElfVersionPatcher.MakeVersionNeedWeak(copy, "GLIBCXX_3.4.32");
        Assert.True(needsIt, "TorchSharp 0.107's shim asks for GLIBCXX_3.4.32");
        int changed = bytes.Zip(copy).Count(p => p.First != p.Second);
        Assert.Equal(1, changed); // one flags byte
        Assert.False(ElfVersionPatcher.MakeVersionNeedWeak((byte[])bytes.Clone(), "GLIBCXX_9.9.99"));
    }

    [Fact]
    public void PatcherRejectsNonElfInput()
    {
        Assert.Throws<BadImageFormatException>(() => ElfVersionPatcher.MakeVersionNeedWeak(new byte[100], "X"));
        var truncated = File.ReadAllBytes(FindShipped())[..4096];
        Assert.Throws<BadImageFormatException>(() => ElfVersionPatcher.MakeVersionNeedWeak(truncated, "GLIBCXX_3.4.32"));
    }

    static string FindShipped() =>
        Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
}
