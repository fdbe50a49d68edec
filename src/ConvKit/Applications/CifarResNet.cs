// CIFAR-10 ResNets of He et al. 2016, section 4.2 (6n+2 layers, 16/32/64 filters); no seed: the paper's recipe, with 1x1 projection shortcuts (option B).
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>
/// He et al.'s CIFAR ResNets (ResNet-20/32/44/56/110): a 3x3 16-filter convolution, three stages of n basic blocks with
/// 16, 32 and 64 filters (the first block of stages 2 and 3 halves the size), global average pooling, Dense. Convolutions
/// have no bias (BN follows); shortcuts are 1x1 conv + BN where the shape changes. Names follow keras.applications' ResNet.
/// </summary>
public static class CifarResNet
{
    static readonly int[] StageFilters = [16, 32, 64];

    internal static Func<ResolvedOptions, Model> Build(int depth) => o => Build(depth, o);

    /// <summary>Builds the ResNet of <paramref name="depth"/> = 6n + 2 layers.</summary>
    /// <exception cref="LayerArgumentException">The depth is not 6n + 2.</exception>
    public static Model Build(int depth, ResolvedOptions o)
    {
        if (depth < 8 || (depth - 2) % 6 != 0)
            throw new LayerArgumentException($"model 'resnet{depth}'", "depth", $"must be 6n + 2 (20, 32, 44, 56, 110, ...); received depth={depth}.");
        int n = (depth - 2) / 6;
        var inputs = Heads.Input(o);
        var x = new Conv2D(16, 3, padding: Padding.Same, useBias: false, name: "conv1_conv").Apply(inputs);
        x = new BatchNormalization(name: "conv1_bn").Apply(x);
        x = new Activation("relu", name: "conv1_relu").Apply(x);
        for (int s = 0; s < StageFilters.Length; s++)
        {
            for (int b = 1; b <= n; b++)
            {
                int filters = StageFilters[s];
                int stride = b == 1 && s > 0 ? 2 : 1;
                x = Block(x, filters, stride, project: stride != 1 || x.Shape[-1] != filters, $"conv{s + 2}_block{b}");
            }
        }
        if (o.IncludeTop)
        {
            x = new GlobalAveragePooling2D(name: "avg_pool").Apply(x);
            x = new Dense(o.Classes, activation: o.ClassifierActivation, name: "predictions").Apply(x);
        }
        else x = Heads.Pool(x, o.Pooling, "avg_pool", "max_pool");
        return new Model(inputs, x, $"resnet{depth}");
    }

    /// <summary>He et al.'s basic block (two 3x3 convolutions with batch normalization, identity or 1x1 projection
    /// shortcut); also <see cref="FashionResNet"/>'s.</summary>
    internal static SymbolicTensor Block(SymbolicTensor x, int filters, int stride, bool project, string name)
    {
        var shortcut = x;
        if (project)
        {
            shortcut = new Conv2D(filters, 1, strides: stride, useBias: false, name: name + "_0_conv").Apply(x);
            shortcut = new BatchNormalization(name: name + "_0_bn").Apply(shortcut);
        }
        x = new Conv2D(filters, 3, strides: stride, padding: Padding.Same, useBias: false, name: name + "_1_conv").Apply(x);
        x = new BatchNormalization(name: name + "_1_bn").Apply(x);
        x = new Activation("relu", name: name + "_1_relu").Apply(x);
        x = new Conv2D(filters, 3, padding: Padding.Same, useBias: false, name: name + "_2_conv").Apply(x);
        x = new BatchNormalization(name: name + "_2_bn").Apply(x);
        x = new Add(name: name + "_add").Apply(shortcut, x);
        return new Activation("relu", name: name + "_out").Apply(x);
    }
}
