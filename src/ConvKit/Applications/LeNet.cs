// LeNet-5 (LeCun et al. 1998), as the seeds write it: seed 001's ReLU/max-pool variant and seed 002's classic one.
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>The LeNet-5 family: convolutions each followed by pooling, then dense layers.</summary>
public static class LeNet
{
    /// <summary>One convolution of the feature extractor.</summary>
    /// <param name="Filters">Output channels.</param>
    /// <param name="Kernel">Square kernel size.</param>
    /// <param name="Padding">Keras padding.</param>
    /// <param name="PoolAfter">Whether a 2x2 pooling (stride 2) follows.</param>
    public sealed record Conv(int Filters, int Kernel, Padding Padding, bool PoolAfter);

    /// <summary>A LeNet variant as data.</summary>
    /// <param name="Name">Model name.</param>
    /// <param name="Activation">Activation of the hidden layers.</param>
    /// <param name="AveragePooling">Average pooling (the paper's subsampling) instead of max pooling.</param>
    /// <param name="Convs">The convolutions.</param>
    /// <param name="Hidden">Units of the hidden dense layers.</param>
    public sealed record Config(string Name, string Activation, bool AveragePooling, IReadOnlyList<Conv> Convs, IReadOnlyList<int> Hidden);

    /// <summary>Seed 001: ReLU, max pooling, conv1 6@5x5 'same', conv2 16@5x5 'valid', dense 120/84.</summary>
    public static Config Seed001 { get; } = new("lenet5", "relu", false,
        [new(6, 5, Padding.Same, true), new(16, 5, Padding.Valid, true)], [120, 84]);

    /// <summary>Seed 002: tanh, average pooling, a third 120-filter convolution, all 'same', dense 84.</summary>
    public static Config Classic { get; } = new("lenet5_classic", "tanh", true,
        [new(6, 5, Padding.Same, true), new(16, 5, Padding.Same, true), new(120, 5, Padding.Same, false)], [84]);

    internal static Func<ResolvedOptions, Model> Build(Config c) => o => Build(c, o);

    /// <summary>Builds a LeNet variant.</summary>
    public static Model Build(Config c, ResolvedOptions o)
    {
        var inputs = Heads.Input(o);
        SymbolicTensor x = inputs;
        foreach (var conv in c.Convs)
        {
            x = new Conv2D(conv.Filters, conv.Kernel, padding: conv.Padding, activation: c.Activation).Apply(x);
            if (conv.PoolAfter)
                x = (c.AveragePooling ? new AveragePooling2D(2, strides: 2) : (Layer)new MaxPooling2D(2, strides: 2)).Apply(x);
        }
        if (o.IncludeTop)
        {
            x = new Flatten().Apply(x);
            foreach (var units in c.Hidden) x = new Dense(units, activation: c.Activation).Apply(x);
            x = new Dense(o.Classes, activation: o.ClassifierActivation).Apply(x);
        }
        else x = Heads.Pool(x, o.Pooling);
        return new Model(inputs, x, c.Name);
    }
}
