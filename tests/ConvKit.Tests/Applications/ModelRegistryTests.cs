using ConvKit.Applications;
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Tests.Applications;

public class ModelRegistryTests
{
    [Fact]
    public void ListsByWildcard()
    {
        Assert.Equal(["resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet18_tv", "resnet50_tv", "resnet_cifar", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"],
            ModelRegistry.List("resnet*").Select(e => e.Name));
        Assert.Equal(["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"], ModelRegistry.List("VGG??_bn").Select(e => e.Name));
        Assert.Equal(ModelRegistry.All.Count, ModelRegistry.List(null).Count);
        Assert.Empty(ModelRegistry.List("nothing*"));
    }

    [Fact]
    public void RegistryHasEveryRequestedModelOnce()
    {
        string[] expected = ["lenet5", "lenet5_classic", "alexnet", "alexnet_plain", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn",
            "vgg16_bn", "vgg19_bn", "vgg16_cifar", "googlenet", "googlenet_cifar", "inception_v3", "resnet18", "resnet34", "resnet50",
            "resnet101", "resnet152", "resnet18_tv", "resnet50_tv", "alexnet_tv", "vgg16_tv", "vgg19_tv", "googlenet_tv", "inception_v3_tv", "resnet_cifar", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "cifar100_cnn", "fmnist_resnet"];
        Assert.Equal(expected.Order(), ModelRegistry.All.Select(e => e.Name).Order());
    }

    [Fact]
    public void UnknownNameSuggestsCloseOnes()
    {
        var e = Assert.Throws<ConvKitException>(() => ModelRegistry.Create("resnet5"));
        Assert.Contains("unknown model 'resnet5'", e.Message);
        Assert.Contains("resnet50", e.Message);
    }

    [Fact]
    public void ReferenceAccuraciesAreThePublishedOnes()
    {
        Assert.Equal((76.1, 92.9), (ModelRegistry.Get("resnet50").Accuracy!.Top1, ModelRegistry.Get("resnet50").Accuracy!.Top5!.Value));
        Assert.Equal(91.25, ModelRegistry.Get("resnet20").Accuracy!.Top1);
        Assert.Equal(93.57, ModelRegistry.Get("resnet110").Accuracy!.Top1);
        Assert.Equal(99.05, ModelRegistry.Get("lenet5_classic").Accuracy!.Top1);
        Assert.Equal("ImageNet 56.5/79.1", ModelRegistry.Get("alexnet").Accuracy!.ToString());
        Assert.Null(ModelRegistry.Get("resnet32").Accuracy);
    }

    [Fact]
    public void MacsAreComputedFromTheModel()
    {
        // LeNet-5 (seed 001) by hand: conv1 28·28·6·25, conv2 10·10·16·150, dense 400·120 + 120·84 + 84·10.
        long expected = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10;
        Assert.Equal(expected, ModelRegistry.Get("lenet5").Macs);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void BuildsAreDeterministicInNames()
    {
        using var a = Zoo.InceptionV3(new ModelOptions { InputShape = (75, 75, 3) });
        using var b = Zoo.InceptionV3(new ModelOptions { InputShape = (75, 75, 3) });
        Assert.Equal(a.Layers.Select(l => l.Name), b.Layers.Select(l => l.Name));
        Assert.Equal("input_1", a.Layers[0].Name);
        Assert.Equal("conv2d", a.Layers[1].Name);
        Assert.Contains(a.Layers, l => l.Name == "conv2d_93"); // Keras' InceptionV3 has 94 conv2d_bn blocks
        Assert.DoesNotContain(a.Layers, l => l.Name == "conv2d_94");
        Assert.Equal(["mixed0", "mixed1", "mixed2", "mixed3", "mixed4", "mixed5", "mixed6", "mixed7", "mixed8", "mixed9_0", "mixed9", "mixed9_1", "mixed10"],
            a.Layers.Where(l => l.Name.StartsWith("mixed")).Select(l => l.Name));
    }

    [Fact]
    public void GoogLeNetAuxiliaryClassifiersAreExtraOutputs()
    {
        using var model = Zoo.GoogLeNet(auxClassifiers: true);
        Assert.Equal(3, model.Outputs.Count);
        Assert.Equal(["dense", "aux1_predictions", "aux2_predictions"], model.Outputs.Select(o => o.Layer.Name));
        // Each auxiliary head: 1x1 conv to 128 (on 512 / 528 channels), Dense 2048->1024, Dense 1024->1000.
        long aux1 = 512 * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000;
        long aux2 = 528 * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000;
        Assert.Equal(6_994_392 + aux1 + aux2, model.CountParams());
        Assert.Equal(new Shape(4, 4, 512), model.GetLayer("aux1_pool").InboundNodes[0].Output.Shape);
        Assert.Throws<LayerArgumentException>(() => Zoo.GoogLeNet(new ModelOptions { IncludeTop = false }, auxClassifiers: true));
    }

    [Fact]
    public void InceptionModulesAreNamedAndNaiveBlockConcatenates()
    {
        using var model = Zoo.GoogLeNet();
        Assert.Equal(new Shape(28, 28, 256), model.GetLayer("inception3a").InboundNodes[0].Output.Shape);
        Assert.Equal(new Shape(7, 7, 1024), model.GetLayer("inception5b").InboundNodes[0].Output.Shape);

        using var _ = Backend.NameScope();
        var input = new Input((28, 28, 3));
        var y = GoogLeNet.NaiveInceptionBlock(input, name: "naive");
        Assert.Equal(new Shape(28, 28, 64 + 128 + 32 + 3), y.Shape);
    }

    [Fact]
    public void VggTopFollowsTheInputSize()
    {
        using var model = Zoo.VGG16(new ModelOptions { InputShape = (64, 64, 3), Classes = 5 });
        Assert.Equal(new Shape(2 * 2 * 512), model.GetLayer("flatten").InboundNodes[0].Output.Shape);
        Assert.Equal(2 * 2 * 512 * 4096 + 4096, model.GetLayer("fc1").CountParams());
        using var noTop = Zoo.VGG16(new ModelOptions { IncludeTop = false });
        Assert.Equal(14_714_688, noTop.CountParams());
        Assert.Equal(new Shape(7, 7, 512), noTop.ModelOutputShape);
    }
}
