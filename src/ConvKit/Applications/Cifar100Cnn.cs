// No paper: the small CIFAR-100 CNN of seed 004 (two conv/pool stages, Dense 256).
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>Seed 004's CIFAR-100 baseline: Conv 16 and 32 (3x3, 'valid') each with 2x2 max pooling, Dense 256.</summary>
public static class Cifar100Cnn
{
    /// <summary>Builds the model.</summary>
    public static Model Build(ResolvedOptions o)
    {
        var inputs = Heads.Input(o);
        var x = new Conv2D(16, 3, activation: "relu").Apply(inputs);
        x = new MaxPool2D((2, 2)).Apply(x);
        x = new Conv2D(32, 3, activation: "relu").Apply(x);
        x = new MaxPool2D((2, 2)).Apply(x);
        if (o.IncludeTop)
        {
            x = new Flatten().Apply(x);
            x = new Dense(256, activation: "relu").Apply(x);
            x = new Dense(o.Classes, activation: o.ClassifierActivation).Apply(x);
        }
        else x = Heads.Pool(x, o.Pooling);
        return new Model(inputs, x, "cifar100_cnn");
    }
}
