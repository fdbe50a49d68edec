// ResNet v1 (He et al. 2016) as keras.applications.ResNet50/101/152 (keras/src/applications/resnet.py), basic-block ResNet-18/34 in the same naming, and seed 001's CIFAR ResNet.
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>
/// The ResNet family in keras.applications' form (v1: stride in the first 1x1 convolution, biased convolutions, BN
/// epsilon 1.001e-5), one builder for every depth from <c>(block, [3, 4, 6, 3])</c>.
/// </summary>
public static class ResNet
{
    /// <summary>Residual block type.</summary>
    public enum BlockKind
    {
        /// <summary>Two 3x3 convolutions (ResNet-18/34); expansion 1.</summary>
        Basic,

        /// <summary>1x1, 3x3, 1x1 with 4x expansion (ResNet-50 and deeper).</summary>
        Bottleneck,
    }

    /// <summary>A ResNet depth as data.</summary>
    /// <param name="Block">Block type.</param>
    /// <param name="Blocks">Blocks in stages conv2 to conv5.</param>
    public sealed record Spec(BlockKind Block, IReadOnlyList<int> Blocks)
    {
        /// <summary>Output channels of a block over its width: 1 for basic, 4 for bottleneck blocks.</summary>
        public int Expansion => Block == BlockKind.Basic ? 1 : 4;
    }

    /// <summary>ResNet-18.</summary>
    public static Spec ResNet18 { get; } = new(BlockKind.Basic, [2, 2, 2, 2]);

    /// <summary>ResNet-34.</summary>
    public static Spec ResNet34 { get; } = new(BlockKind.Basic, [3, 4, 6, 3]);

    /// <summary>ResNet-50.</summary>
    public static Spec ResNet50 { get; } = new(BlockKind.Bottleneck, [3, 4, 6, 3]);

    /// <summary>ResNet-101.</summary>
    public static Spec ResNet101 { get; } = new(BlockKind.Bottleneck, [3, 4, 23, 3]);

    /// <summary>ResNet-152.</summary>
    public static Spec ResNet152 { get; } = new(BlockKind.Bottleneck, [3, 8, 36, 3]);

    const double Epsilon = 1.001e-5;

    static SymbolicTensor Bn(SymbolicTensor x, string name) => new BatchNormalization(epsilon: Epsilon, name: name).Apply(x);

    /// <summary>Keras' block1: bottleneck residual block; the shortcut is projected (name_0_conv/_0_bn) when asked.</summary>
    public static SymbolicTensor BottleneckBlock(SymbolicTensor x, int filters, int stride, bool convShortcut, string name)
    {
        var shortcut = x;
        if (convShortcut)
            shortcut = Bn(new Conv2D(4 * filters, 1, strides: stride, name: name + "_0_conv").Apply(x), name + "_0_bn");
        x = new Conv2D(filters, 1, strides: stride, name: name + "_1_conv").Apply(x);
        x = new Activation("relu", name: name + "_1_relu").Apply(Bn(x, name + "_1_bn"));
        x = new Conv2D(filters, 3, padding: Padding.Same, name: name + "_2_conv").Apply(x);
        x = new Activation("relu", name: name + "_2_relu").Apply(Bn(x, name + "_2_bn"));
        x = Bn(new Conv2D(4 * filters, 1, name: name + "_3_conv").Apply(x), name + "_3_bn");
        x = new Add(name: name + "_add").Apply(shortcut, x);
        return new Activation("relu", name: name + "_out").Apply(x);
    }

    /// <summary>Basic residual block (two 3x3 convolutions) in the same naming; stride in the first convolution.</summary>
    public static SymbolicTensor BasicBlock(SymbolicTensor x, int filters, int stride, bool convShortcut, string name)
    {
        var shortcut = x;
        if (convShortcut)
            shortcut = Bn(new Conv2D(filters, 1, strides: stride, name: name + "_0_conv").Apply(x), name + "_0_bn");
        x = new Conv2D(filters, 3, strides: stride, padding: Padding.Same, name: name + "_1_conv").Apply(x);
        x = new Activation("relu", name: name + "_1_relu").Apply(Bn(x, name + "_1_bn"));
        x = Bn(new Conv2D(filters, 3, padding: Padding.Same, name: name + "_2_conv").Apply(x), name + "_2_bn");
        x = new Add(name: name + "_add").Apply(shortcut, x);
        return new Activation("relu", name: name + "_out").Apply(x);
    }

    internal static Func<ResolvedOptions, Model> Build(Spec spec, string name) => o => Build(spec, name, o);

    /// <summary>Builds a ResNet: conv1 (7x7/2), pool1 (3x3/2), stages conv2-conv5, avg_pool, predictions.</summary>
    public static Model Build(Spec spec, string name, ResolvedOptions o)
    {
        var inputs = Heads.Input(o);
        var x = new ZeroPadding2D(3, name: "conv1_pad").Apply(inputs);
        x = new Conv2D(64, 7, strides: 2, name: "conv1_conv").Apply(x);
        x = new Activation("relu", name: "conv1_relu").Apply(Bn(x, "conv1_bn"));
        x = new ZeroPadding2D(1, name: "pool1_pad").Apply(x);
        x = new MaxPooling2D(3, strides: 2, name: "pool1_pool").Apply(x);
        int channels = 64;
        for (int s = 0; s < spec.Blocks.Count; s++)
        {
            int filters = 64 << s;
            for (int b = 1; b <= spec.Blocks[s]; b++)
            {
                int stride = b == 1 && s > 0 ? 2 : 1;
                // Keras projects the first shortcut of every bottleneck stage; basic blocks only where the shape changes.
                bool project = b == 1 && (spec.Block == BlockKind.Bottleneck || stride != 1 || channels != filters * spec.Expansion);
                string blockName = $"conv{s + 2}_block{b}";
                x = spec.Block == BlockKind.Bottleneck
                    ? BottleneckBlock(x, filters, stride, project, blockName)
                    : BasicBlock(x, filters, stride, project, blockName);
                channels = filters * spec.Expansion;
            }
        }
        if (o.IncludeTop)
        {
            x = new GlobalAveragePooling2D(name: "avg_pool").Apply(x);
            x = new Dense(o.Classes, activation: o.ClassifierActivation, name: "predictions").Apply(x);
        }
        else x = Heads.Pool(x, o.Pooling, "avg_pool", "max_pool");
        return new Model(inputs, x, name);
    }

    /// <summary>
    /// Seed 001's CIFAR ResNet: Conv 64 3x3 ReLU + BN, residual blocks of 64/128/256/512 filters (two each, stride 2 at
    /// each widening) with a 1x1 conv + BN shortcut where the shape changes, global average pooling, Dense.
    /// </summary>
    public static Model BuildSeed001Cifar(ResolvedOptions o)
    {
        var inputs = Heads.Input(o);
        var x = new Conv2D(64, 3, padding: Padding.Same, activation: "relu").Apply(inputs);
        x = new BatchNormalization().Apply(x);
        foreach (var (filters, stride) in new[] { (64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1) })
            x = Seed001Block(x, filters, stride);
        if (o.IncludeTop)
        {
            x = new GlobalAveragePooling2D().Apply(x);
            x = new Dense(o.Classes, activation: o.ClassifierActivation).Apply(x);
        }
        else x = Heads.Pool(x, o.Pooling);
        return new Model(inputs, x, "ResNet");
    }

    static SymbolicTensor Seed001Block(SymbolicTensor x, int filters, int stride)
    {
        var shortcut = x;
        x = new Conv2D(filters, 3, strides: stride, padding: Padding.Same, activation: "relu").Apply(x);
        x = new BatchNormalization().Apply(x);
        x = new Conv2D(filters, 3, padding: Padding.Same).Apply(x);
        x = new BatchNormalization().Apply(x);
        if (stride != 1 || x.Shape[-1] != shortcut.Shape[-1])
        {
            shortcut = new Conv2D(filters, 1, strides: stride, padding: Padding.Same).Apply(shortcut);
            shortcut = new BatchNormalization().Apply(shortcut);
        }
        x = Add.Of(x, shortcut);
        return new Activation("relu").Apply(x);
    }
}
