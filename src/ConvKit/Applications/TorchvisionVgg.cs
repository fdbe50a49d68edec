// torchvision's VGG (torchvision/models/vgg.py; Simonyan & Zisserman 2014), configurations A/B/D/E without batch norm.
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>
/// torchvision's VGG (<c>vgg16_tv</c>, <c>vgg19_tv</c>): <c>features</c> (3x3 convolutions with ReLU, 2x2 max pooling
/// after each block), <c>avgpool</c> (AdaptiveAvgPool2d to 7x7), <c>classifier</c> (4096, dropout, 4096, dropout,
/// classes). Layers are named after the state-dict module paths (<c>features_0</c>, <c>classifier_6</c>).
/// </summary>
public static class TorchvisionVgg
{
    internal static Func<ResolvedOptions, Model> Build(Vgg.Config c, string name) => o => Build(c, name, o);

    /// <summary>Builds a VGG configuration (<see cref="Vgg.D"/> for VGG-16, <see cref="Vgg.E"/> for VGG-19).</summary>
    public static Model Build(Vgg.Config c, string name, ResolvedOptions o)
    {
        var inputs = Heads.Input(o);
        SymbolicTensor x = inputs;
        int index = 0; // position in torchvision's nn.Sequential: conv, ReLU per convolution, MaxPool2d per block
        for (int b = 0; b < Vgg.BlockFilters.Count; b++)
        {
            for (int i = 0; i < c.ConvsPerBlock[b]; i++)
            {
                x = new Conv2D(Vgg.BlockFilters[b], 3, padding: Padding.Same, name: $"features_{index++}").Apply(x);
                x = Torchvision.Relu(x, $"features_{index++}");
            }
            x = new MaxPooling2D(2, strides: 2, name: $"features_{index++}").Apply(x);
        }
        if (!o.IncludeTop) return new Model(inputs, Heads.Pool(x, o.Pooling), name);
        x = new AdaptiveAveragePooling2D(7, name: "avgpool").Apply(x);
        x = new Flatten(name: "flatten").Apply(x); // (C, H, W) order, as torch.flatten: classifier_0 loads unchanged
        x = new Dense(4096, name: "classifier_0").Apply(x);
        x = Torchvision.Relu(x, "classifier_1");
        x = new Dropout(0.5, name: "classifier_2").Apply(x);
        x = new Dense(4096, name: "classifier_3").Apply(x);
        x = Torchvision.Relu(x, "classifier_4");
        x = new Dropout(0.5, name: "classifier_5").Apply(x);
        x = new Dense(o.Classes, activation: o.ClassifierActivation, name: "classifier_6").Apply(x);
        return new Model(inputs, x, name);
    }
}
