// A small ResNet for 28x28 images, after He et al. 2016's basic block (section 4.2's CIFAR layout, narrowed to fit ConvKit's 10-minute Fashion-MNIST recipe).
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>
/// <c>fmnist_resnet</c>: a 3x3 32-filter stem, then two basic residual blocks that each halve the size (32 filters at
/// 14x14, 64 at 7x7, 1x1 projection shortcuts), global average pooling and Dense. Convolutions have no bias (BN follows).
/// About 7 million multiply-accumulates per 28x28 image, so that a 2-core CPU trains it to Fashion-MNIST's 93% within
/// the recipe's time budget (see docs/zoo.md).
/// </summary>
public static class FashionResNet
{
    static readonly int[] StageFilters = [32, 64];

    /// <summary>Builds the model.</summary>
    public static Model Build(ResolvedOptions o)
    {
        var inputs = Heads.Input(o);
        var x = new Conv2D(32, 3, padding: Padding.Same, useBias: false, name: "conv1_conv").Apply(inputs);
        x = new BatchNormalization(name: "conv1_bn").Apply(x);
        x = new Activation("relu", name: "conv1_relu").Apply(x);
        for (int s = 0; s < StageFilters.Length; s++)
            x = Block(x, StageFilters[s], $"conv{s + 2}_block1");
        if (o.IncludeTop)
        {
            x = new GlobalAveragePooling2D(name: "avg_pool").Apply(x);
            x = new Dense(o.Classes, activation: o.ClassifierActivation, name: "predictions").Apply(x);
        }
        else x = Heads.Pool(x, o.Pooling, "avg_pool", "max_pool");
        return new Model(inputs, x, "fmnist_resnet");
    }

    // A basic block with stride 2 and a 1x1 projection shortcut, as CifarResNet's first block of a stage.
    static SymbolicTensor Block(SymbolicTensor x, int filters, string name)
    {
        var shortcut = new Conv2D(filters, 1, strides: 2, useBias: false, name: name + "_0_conv").Apply(x);
        shortcut = new BatchNormalization(name: name + "_0_bn").Apply(shortcut);
        x = new Conv2D(filters, 3, strides: 2, padding: Padding.Same, useBias: false, name: name + "_1_conv").Apply(x);
        x = new BatchNormalization(name: name + "_1_bn").Apply(x);
        x = new Activation("relu", name: name + "_1_relu").Apply(x);
        x = new Conv2D(filters, 3, padding: Padding.Same, useBias: false, name: name + "_2_conv").Apply(x);
        x = new BatchNormalization(name: name + "_2_bn").Apply(x);
        x = new Add(name: name + "_add").Apply(shortcut, x);
        return new Activation("relu", name: name + "_out").Apply(x);
    }
}
