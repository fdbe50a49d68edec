// torchvision's GoogLeNet (torchvision/models/googlenet.py; Szegedy et al. 2014) with batch norm, as its eval model (no aux1/aux2, no transform_input).
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Saving;

namespace ConvKit.Applications;

/// <summary>
/// torchvision's GoogLeNet (<c>googlenet_tv</c>): BasicConv2d (convolution without bias, batch norm with epsilon 0.001,
/// ReLU) everywhere, max poolings with <c>ceil_mode=True</c>, and, as torchvision's known deviation from the paper
/// (pytorch/vision#906), a 3x3 rather than 5x5 convolution in each module's third branch. Layers are named after the
/// state-dict module paths (<c>conv1_conv</c>, <c>inception3a_branch2_1_bn</c>, <c>fc</c>).
/// </summary>
/// <remarks>
/// torchvision's published weights hold the auxiliary classifiers <c>aux1</c> and <c>aux2</c>, which its eval model
/// drops: the registry tells the loader to ignore them (<see cref="StateDict"/>). Built with those weights, torchvision
/// sets <c>transform_input=True</c>, which turns torch-normalized input back into (pixel - 0.5) / 0.5; this model has no
/// such step, so it takes that [-1, 1] input directly: the registry's preprocessing is 'tf'.
/// </remarks>
public static class TorchvisionGoogLeNet
{
    /// <summary>How torchvision's GoogLeNet state dict maps onto this model: '_' to '.', auxiliary heads ignored.</summary>
    public static StateDictMapping StateDict { get; } = StateDictMapping.Default with { IgnoredModules = ["aux1", "aux2"] };

    // The max poolings between stages: before which module, torch's name, window.
    static readonly Dictionary<string, (string Name, int Kernel)> PoolBefore = new()
    {
        ["inception4a"] = ("maxpool3", 3),
        ["inception5a"] = ("maxpool4", 2),
    };

    /// <summary>torchvision's <c>Inception</c> module: four BasicConv2d branches concatenated under <paramref name="name"/>.</summary>
    static SymbolicTensor Inception(SymbolicTensor x, GoogLeNet.Module m, string name)
    {
        var b1 = Torchvision.BasicConv2d(x, m.F1x1, 1, name + "_branch1");
        var b2 = Torchvision.BasicConv2d(x, m.F3x3Reduce, 1, name + "_branch2_0");
        b2 = Torchvision.BasicConv2d(b2, m.F3x3, 3, name + "_branch2_1", padding: 1);
        var b3 = Torchvision.BasicConv2d(x, m.F5x5Reduce, 1, name + "_branch3_0");
        b3 = Torchvision.BasicConv2d(b3, m.F5x5, 3, name + "_branch3_1", padding: 1); // 3x3: torchvision's, not the paper's 5x5
        // MaxPool2d(3, stride 1, padding 1, ceil_mode=True): at stride 1 ceil_mode changes nothing, and 'same' pads with -inf.
        var b4 = new MaxPooling2D(3, strides: 1, padding: Padding.Same, name: name + "_branch4_0").Apply(x);
        b4 = Torchvision.BasicConv2d(b4, m.PoolProj, 1, name + "_branch4_1");
        return new Concatenate(axis: -1, name: name).Apply(b1, b2, b3, b4);
    }

    /// <summary>Builds the model.</summary>
    public static Model Build(ResolvedOptions o)
    {
        var inputs = Heads.Input(o);
        var x = Torchvision.BasicConv2d(inputs, 64, 7, "conv1", stride: 2, padding: 3);
        x = Torchvision.CeilModeMaxPool(x, 3, 2, "maxpool1");
        x = Torchvision.BasicConv2d(x, 64, 1, "conv2");
        x = Torchvision.BasicConv2d(x, 192, 3, "conv3", padding: 1);
        x = Torchvision.CeilModeMaxPool(x, 3, 2, "maxpool2");
        foreach (var m in GoogLeNet.Modules)
        {
            if (PoolBefore.TryGetValue(m.Name, out var pool)) x = Torchvision.CeilModeMaxPool(x, pool.Kernel, 2, pool.Name);
            x = Inception(x, m, m.Name);
        }
        if (!o.IncludeTop) return new Model(inputs, Heads.Pool(x, o.Pooling, "avgpool", "maxpool_global"), "googlenet_tv");
        x = new GlobalAveragePooling2D(name: "avgpool").Apply(x); // AdaptiveAvgPool2d((1, 1)) and flatten
        x = new Dropout(0.2, name: "dropout").Apply(x);
        x = new Dense(o.Classes, activation: o.ClassifierActivation, name: "fc").Apply(x);
        return new Model(inputs, x, "googlenet_tv");
    }
}
