// AlexNet (Krizhevsky et al. 2012), as seeds 002 (batch norm, L2) and 003 (plain) write it; no LRN.
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>The AlexNet family: five convolutions with overlapping max pooling, then two 4096-unit dense layers.</summary>
public static class AlexNet
{
    /// <summary>One convolution of the feature extractor.</summary>
    /// <param name="Filters">Output channels.</param>
    /// <param name="Kernel">Square kernel size.</param>
    /// <param name="Stride">Stride.</param>
    /// <param name="Padding">Keras padding.</param>
    /// <param name="Pool">Whether a 3x3 stride-2 max pooling follows.</param>
    /// <param name="NormBeforePool">With batch norm: normalise before the pooling (seed 002's conv5) rather than after.</param>
    public sealed record Conv(int Filters, int Kernel, int Stride, Padding Padding, bool Pool, bool NormBeforePool = false);

    /// <summary>An AlexNet variant as data.</summary>
    /// <param name="Name">Model name.</param>
    /// <param name="BatchNorm">BatchNormalization after each convolution block (seed 002).</param>
    /// <param name="ConvL2">L2 factor on the kernels of conv2-5, or null.</param>
    /// <param name="Convs">The five convolutions.</param>
    public sealed record Config(string Name, bool BatchNorm, double? ConvL2, IReadOnlyList<Conv> Convs);

    static readonly Conv[] Paper =
    [
        new(96, 11, 4, Padding.Valid, true), new(256, 5, 1, Padding.Same, true), new(384, 3, 1, Padding.Same, false),
        new(384, 3, 1, Padding.Same, false), new(256, 3, 1, Padding.Same, true, NormBeforePool: true),
    ];

    /// <summary>Seed 002: Conv, Activation('relu'), pool, BatchNormalization; L2 5e-4 on conv2-5; 227x227.</summary>
    public static Config Seed002 { get; } = new("alexnet", true, 0.0005, Paper);

    /// <summary>Seed 003: convolutions with ReLU and pooling only.</summary>
    public static Config Seed003 { get; } = new("alexnet_plain", false, null, Paper);

    internal static Func<ResolvedOptions, Model> Build(Config c) => o => Build(c, o);

    /// <summary>Builds an AlexNet variant.</summary>
    public static Model Build(Config c, ResolvedOptions o)
    {
        var inputs = Heads.Input(o);
        SymbolicTensor x = inputs;
        for (int i = 0; i < c.Convs.Count; i++)
        {
            var conv = c.Convs[i];
            var l2 = i > 0 && c.ConvL2 is { } f ? new L2(f) : null;
            if (c.BatchNorm)
            {
                x = new Conv2D(conv.Filters, conv.Kernel, strides: conv.Stride, padding: conv.Padding, kernelRegularizer: l2).Apply(x);
                x = new Activation("relu").Apply(x);
                if (conv.Pool && !conv.NormBeforePool) x = new MaxPool2D(3, strides: 2).Apply(x);
                x = new BatchNormalization().Apply(x);
                if (conv.Pool && conv.NormBeforePool) x = new MaxPool2D(3, strides: 2).Apply(x);
            }
            else
            {
                x = new Conv2D(conv.Filters, conv.Kernel, strides: conv.Stride, padding: conv.Padding, activation: "relu", kernelRegularizer: l2).Apply(x);
                if (conv.Pool) x = new MaxPooling2D(3, strides: 2).Apply(x);
            }
        }
        if (o.IncludeTop)
        {
            x = new Flatten().Apply(x);
            x = new Dense(4096, activation: "relu").Apply(x);
            x = new Dropout(0.5).Apply(x);
            x = new Dense(4096, activation: "relu").Apply(x);
            x = new Dropout(0.5).Apply(x);
            x = new Dense(o.Classes, activation: o.ClassifierActivation).Apply(x);
        }
        else x = Heads.Pool(x, o.Pooling);
        return new Model(inputs, x, c.Name);
    }
}
