using ConvKit.Layers;
using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Tests.Training;

/// <summary>Tiny synthetic problems that train in milliseconds.</summary>
static class TestData
{
    /// <summary>n samples of 4 features, 3 classes separated by which of the first three features is largest.</summary>
    public static (Tensor X, Tensor Y) Separable(int n = 96, long seed = 1)
    {
        using var g = new Generator((ulong)seed);
        var x = randn([n, 4], generator: g);
        var y = x.narrow(1, 0, 3).argmax(1);
        return (x, y);
    }

    public static Sequential Mlp(string finalActivation = "softmax", int classes = 3, L2? l2 = null)
    {
        using var _ = Backend.NameScope();
        return new Sequential([
            new Dense(16, activation: "relu", inputShape: 4, kernelRegularizer: l2),
            new Dense(classes, activation: finalActivation),
        ]);
    }

    public static Tensor OneHot(Tensor labels, int classes) => nn.functional.one_hot(labels, classes).to_type(float32);
}
