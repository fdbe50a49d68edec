using ConvKit.Layers;
using ConvKit.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Layers;

/// <summary>Conv2D and Dense share their options and weights through KernelLayer.</summary>
public class KernelLayerTests
{
    public static TheoryData<string> Kinds => ["conv2d", "dense"];

    static KernelLayer Built(string kind)
    {
        KernelLayer layer = kind == "conv2d" ? new Conv2D(2, 3) : new Dense(2);
        layer.Apply(new Input(kind == "conv2d" ? (5, 5, 3) : 3));
        return layer;
    }

    [Theory, MemberData(nameof(Kinds))]
    public void DefaultsAreKeras(string kind)
    {
        KernelLayer layer = kind == "conv2d" ? new Conv2D(2, 3) : new Dense(2);
        Assert.Equal(("glorot_uniform", "zeros", true, true), (layer.KernelInitializer.Name, layer.BiasInitializer.Name, layer.UseBias, layer.Activation.IsLinear));
        Assert.Null(layer.KernelRegularizer);
        Assert.Null(layer.Kernel);
        Assert.Null(layer.Bias);
    }

    [Theory, MemberData(nameof(Kinds))]
    public void BuildsKernelAndBiasInKerasOrder(string kind)
    {
        var layer = Built(kind);
        Assert.Equal(new[] { "kernel", "bias" }, layer.OwnWeights.Select(w => w.Name));
        Assert.Same(layer.OwnWeights[0].Value, layer.Kernel);
        Assert.Same(layer.OwnWeights[1].Value, layer.Bias);
        Assert.Equal(new[] { 2L }, layer.Bias!.shape);
        Assert.Equal(2L, layer.Kernel!.shape[0]);
    }

    [Theory, MemberData(nameof(Kinds))]
    public void ConvertedFrozenLayerStaysFrozenAndHoldsItsNewWeights(string kind)
    {
        var layer = Built(kind);
        layer.Trainable = false;
        layer.to(float64);
        Assert.Same(layer.OwnWeights[0].Value, layer.Kernel);
        Assert.Same(layer.OwnWeights[1].Value, layer.Bias);
        foreach (var w in new[] { layer.Kernel!, layer.Bias! })
        {
            Assert.Equal(ScalarType.Float64, w.dtype);
            Assert.False(w.requires_grad);
        }
    }
}
