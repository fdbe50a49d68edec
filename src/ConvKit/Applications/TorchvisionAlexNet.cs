// torchvision's AlexNet (torchvision/models/alexnet.py), the "One weird trick" variant (Krizhevsky 2014: 64-192-384-256-256 filters, no LRN).
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>
/// torchvision's AlexNet (<c>alexnet_tv</c>): <c>features</c> (five convolutions, three 3x3/2 max poolings),
/// <c>avgpool</c> (AdaptiveAvgPool2d to 6x6), <c>classifier</c> (dropout, 4096, dropout, 4096, classes). Layers are named
/// after the state-dict module paths (<c>features_0</c>, <c>classifier_1</c>), so torchvision's weights load with
/// LoadTorchvisionWeights.
/// </summary>
public static class TorchvisionAlexNet
{
    /// <summary>One convolution of <c>features</c>.</summary>
    /// <param name="Filters">Output channels.</param>
    /// <param name="Kernel">Square kernel size.</param>
    /// <param name="Stride">Stride.</param>
    /// <param name="Padding">torch's symmetric padding.</param>
    /// <param name="PoolAfter">Whether a 3x3 stride-2 max pooling follows the ReLU.</param>
    public sealed record Conv(int Filters, int Kernel, int Stride, int Padding, bool PoolAfter);

    /// <summary>The convolutions of torchvision's <c>AlexNet.features</c>.</summary>
    public static IReadOnlyList<Conv> Features { get; } =
    [
        new(64, 11, 4, 2, true), new(192, 5, 1, 2, true), new(384, 3, 1, 1, false), new(256, 3, 1, 1, false), new(256, 3, 1, 1, true),
    ];

    /// <summary>Builds the model.</summary>
    public static Model Build(ResolvedOptions o)
    {
        var inputs = Heads.Input(o);
        SymbolicTensor x = inputs;
        int index = 0; // position in nn.Sequential: conv, ReLU, [MaxPool2d]
        foreach (var c in Features)
        {
            x = Torchvision.Conv(x, c.Filters, c.Kernel, c.Stride, c.Padding, useBias: true, $"features_{index++}");
            x = Torchvision.Relu(x, $"features_{index++}");
            if (c.PoolAfter) x = new MaxPooling2D(3, strides: 2, name: $"features_{index++}").Apply(x);
        }
        if (!o.IncludeTop) return new Model(inputs, Heads.Pool(x, o.Pooling), "alexnet_tv");
        x = new AdaptiveAveragePooling2D(6, name: "avgpool").Apply(x);
        x = new Flatten(name: "flatten").Apply(x); // (C, H, W) order, as torch.flatten: classifier_1 loads unchanged
        x = new Dropout(0.5, name: "classifier_0").Apply(x);
        x = new Dense(4096, name: "classifier_1").Apply(x);
        x = Torchvision.Relu(x, "classifier_2");
        x = new Dropout(0.5, name: "classifier_3").Apply(x);
        x = new Dense(4096, name: "classifier_4").Apply(x);
        x = Torchvision.Relu(x, "classifier_5");
        x = new Dense(o.Classes, activation: o.ClassifierActivation, name: "classifier_6").Apply(x);
        return new Model(inputs, x, "alexnet_tv");
    }
}
