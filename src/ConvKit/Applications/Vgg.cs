// VGG (Simonyan & Zisserman 2014) as keras.applications.VGG16/VGG19 (layer names); configurations A/B/D/E as torchvision's cfgs; seed 001 runs D on CIFAR-10.
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>The VGG family: five blocks of 3x3 convolutions each closed by 2x2 max pooling, then fc1, fc2, predictions.</summary>
public static class Vgg
{
    /// <summary>A VGG configuration: convolutions per block; the blocks have 64, 128, 256, 512, 512 filters.</summary>
    /// <param name="Letter">The paper's column (A, B, D, E).</param>
    /// <param name="ConvsPerBlock">Number of convolutions in each of the five blocks.</param>
    public sealed record Config(char Letter, IReadOnlyList<int> ConvsPerBlock);

    /// <summary>Filters of the five blocks.</summary>
    internal static IReadOnlyList<int> BlockFilters { get; } = [64, 128, 256, 512, 512];

    /// <summary>VGG-11.</summary>
    public static Config A { get; } = new('A', [1, 1, 2, 2, 2]);

    /// <summary>VGG-13.</summary>
    public static Config B { get; } = new('B', [2, 2, 2, 2, 2]);

    /// <summary>VGG-16.</summary>
    public static Config D { get; } = new('D', [2, 2, 3, 3, 3]);

    /// <summary>VGG-19.</summary>
    public static Config E { get; } = new('E', [2, 2, 4, 4, 4]);

    internal static Func<ResolvedOptions, Model> Build(Config c, bool batchNorm, string name) => o => Build(c, batchNorm, name, o);

    /// <summary>
    /// Builds a VGG. Names as Keras: block1_conv1 ... block5_pool, flatten, fc1, fc2, predictions. With batch norm each
    /// convolution (biased, as torchvision's vgg*_bn) is followed by blockN_convM_bn and blockN_convM_relu.
    /// </summary>
    public static Model Build(Config c, bool batchNorm, string name, ResolvedOptions o)
    {
        var inputs = Heads.Input(o);
        SymbolicTensor x = inputs;
        for (int b = 0; b < BlockFilters.Count; b++)
        {
            for (int i = 1; i <= c.ConvsPerBlock[b]; i++)
            {
                string conv = $"block{b + 1}_conv{i}";
                if (batchNorm)
                {
                    x = new Conv2D(BlockFilters[b], 3, padding: Padding.Same, name: conv).Apply(x);
                    x = new BatchNormalization(name: conv + "_bn").Apply(x);
                    x = new Activation("relu", name: conv + "_relu").Apply(x);
                }
                else x = new Conv2D(BlockFilters[b], 3, padding: Padding.Same, activation: "relu", name: conv).Apply(x);
            }
            x = new MaxPooling2D(2, strides: 2, name: $"block{b + 1}_pool").Apply(x);
        }
        if (o.IncludeTop)
        {
            x = new Flatten(name: "flatten").Apply(x);
            x = new Dense(4096, activation: "relu", name: "fc1").Apply(x);
            x = new Dense(4096, activation: "relu", name: "fc2").Apply(x);
            x = new Dense(o.Classes, activation: o.ClassifierActivation, name: "predictions").Apply(x);
        }
        else x = Heads.Pool(x, o.Pooling);
        return new Model(inputs, x, name);
    }
}
