// GoogLeNet / Inception v1 (Szegedy et al. 2014): seed 002's inception_v1 (224, no batch norm, optional paper auxiliary classifiers) and seed 001's CIFAR variant.
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>The GoogLeNet family, and the inception blocks it is made of.</summary>
public static class GoogLeNet
{
    /// <summary>The filters of one inception module (the paper's Table 1 columns).</summary>
    /// <param name="F1x1">1x1 branch.</param>
    /// <param name="F3x3Reduce">1x1 reduction before the 3x3 branch.</param>
    /// <param name="F3x3">3x3 branch.</param>
    /// <param name="F5x5Reduce">1x1 reduction before the 5x5 branch.</param>
    /// <param name="F5x5">5x5 branch.</param>
    /// <param name="PoolProj">1x1 projection after the 3x3 max pooling.</param>
    /// <param name="Name">The paper's name (inception3a ...), given to the concatenation.</param>
    /// <param name="PoolBefore">Whether a 3x3 stride-2 max pooling comes before the module.</param>
    public sealed record Module(int F1x1, int F3x3Reduce, int F3x3, int F5x5Reduce, int F5x5, int PoolProj, string Name, bool PoolBefore = false);

    /// <summary>The paper's nine modules, 3a to 5b.</summary>
    public static IReadOnlyList<Module> Modules { get; } =
    [
        new(64, 96, 128, 16, 32, 32, "inception3a"),
        new(128, 128, 192, 32, 96, 64, "inception3b"),
        new(192, 96, 208, 16, 48, 64, "inception4a", PoolBefore: true),
        new(160, 112, 224, 24, 64, 64, "inception4b"),
        new(128, 128, 256, 24, 64, 64, "inception4c"),
        new(112, 144, 288, 32, 64, 64, "inception4d"),
        new(256, 160, 320, 32, 128, 128, "inception4e"),
        new(256, 160, 320, 32, 128, 128, "inception5a", PoolBefore: true),
        new(384, 192, 384, 48, 128, 128, "inception5b"),
    ];

    /// <summary>A GoogLeNet variant as data.</summary>
    /// <param name="Name">Model name.</param>
    /// <param name="StemReduce">A 1x1 64-filter convolution before the 3x3 192 one (the paper's; seed 001 has it, seed 002 not).</param>
    /// <param name="NameModules">Name the concatenations inception3a ... (seed 002) or leave Keras' automatic names (seed 001).</param>
    /// <param name="CifarHead">Seed 001's head: AveragePooling2D(4, 'same'), Flatten, Dense 1024; otherwise GAP, Dropout 0.4.</param>
    /// <param name="BiasInit">Bias initializer of the convolutions (seed 002 uses Constant(0.2) as the tutorial it copies).</param>
    public sealed record Config(string Name, bool StemReduce, bool NameModules, bool CifarHead, Initializer BiasInit);

    /// <summary>Seed 002's inception_v1 at 224x224.</summary>
    public static Config Seed002 { get; } = new("inception_v1", false, true, false, Initializers.Constant(0.2));

    /// <summary>Seed 001's googlenet for 32x32 CIFAR-10.</summary>
    public static Config Seed001Cifar { get; } = new("GoogLeNet", true, false, true, Initializers.Zeros);

    /// <summary>
    /// Seed 002's inception module: 1x1, 1x1→3x3, 1x1→5x5 and 3x3 max pool→1x1 branches (all ReLU, 'same'),
    /// concatenated on channels under <paramref name="name"/>.
    /// </summary>
    public static SymbolicTensor InceptionModule(SymbolicTensor x, int filters1x1, int filters3x3Reduce, int filters3x3,
        int filters5x5Reduce, int filters5x5, int filtersPoolProj, string? name = null, Initializer? biasInitializer = null)
    {
        Conv2D Conv(int filters, int kernel) =>
            new(filters, kernel, padding: Padding.Same, activation: "relu", biasInitializer: biasInitializer);
        var conv1x1 = Conv(filters1x1, 1).Apply(x);
        var conv3x3 = Conv(filters3x3, 3).Apply(Conv(filters3x3Reduce, 1).Apply(x));
        var conv5x5 = Conv(filters5x5, 5).Apply(Conv(filters5x5Reduce, 1).Apply(x));
        var poolProj = Conv(filtersPoolProj, 1).Apply(new MaxPool2D(3, strides: 1, padding: Padding.Same).Apply(x));
        return new Concatenate(axis: -1, name: name).Apply(conv1x1, conv3x3, conv5x5, poolProj);
    }

    /// <summary>
    /// Seed 001's naive inception block: 1x1, 3x3 and 5x5 convolutions and a 3x3 max pooling side by side on the same
    /// input, concatenated (no 1x1 reductions, so the channels grow by the input's).
    /// </summary>
    public static SymbolicTensor NaiveInceptionBlock(SymbolicTensor x, int filters1x1 = 64, int filters3x3 = 128, int filters5x5 = 32, string? name = null)
    {
        var conv1x1 = new Conv2D(filters1x1, 1, padding: Padding.Same, activation: "relu").Apply(x);
        var conv3x3 = new Conv2D(filters3x3, 3, padding: Padding.Same, activation: "relu").Apply(x);
        var conv5x5 = new Conv2D(filters5x5, 5, padding: Padding.Same, activation: "relu").Apply(x);
        var pool = new MaxPool2D(3, strides: 1, padding: Padding.Same).Apply(x);
        return new Concatenate(axis: -1, name: name).Apply(conv1x1, conv3x3, conv5x5, pool);
    }

    internal static Func<ResolvedOptions, Model> Build(Config c) => o => Build(c, o, auxClassifiers: false);

    /// <summary>
    /// Builds a GoogLeNet variant. With <paramref name="auxClassifiers"/> (seed 002 only, with the top) the model has
    /// three outputs, main first, then the paper's auxiliary classifiers on inception4a and inception4d (5x5/3 average
    /// pooling, 1x1 conv 128, Dense 1024, Dropout 0.7, classifier), whose losses the paper weights by 0.3.
    /// </summary>
    /// <exception cref="LayerArgumentException">Auxiliary classifiers requested without the top or for the CIFAR variant.</exception>
    public static Model Build(Config c, ResolvedOptions o, bool auxClassifiers)
    {
        if (auxClassifiers && (!o.IncludeTop || c.CifarHead))
            throw new LayerArgumentException($"model '{c.Name}'", "aux_classifiers", "the auxiliary classifiers need include_top=true and the ImageNet variant (seed 002).");
        var bias = c.BiasInit;
        var inputs = Heads.Input(o);
        var x = new Conv2D(64, 7, strides: 2, padding: Padding.Same, activation: "relu", biasInitializer: bias).Apply(inputs);
        x = new MaxPool2D(3, strides: 2, padding: Padding.Same).Apply(x);
        if (c.StemReduce) x = new Conv2D(64, 1, padding: Padding.Same, activation: "relu", biasInitializer: bias).Apply(x);
        x = new Conv2D(192, 3, padding: Padding.Same, activation: "relu", biasInitializer: bias).Apply(x);
        x = new MaxPool2D(3, strides: 2, padding: Padding.Same).Apply(x);
        var aux = new List<SymbolicTensor>();
        foreach (var m in Modules)
        {
            if (m.PoolBefore) x = new MaxPool2D(3, strides: 2, padding: Padding.Same).Apply(x);
            x = InceptionModule(x, m.F1x1, m.F3x3Reduce, m.F3x3, m.F5x5Reduce, m.F5x5, m.PoolProj, c.NameModules ? m.Name : null, bias);
            if (auxClassifiers && m.Name is "inception4a" or "inception4d")
                aux.Add(AuxClassifier(x, $"aux{aux.Count + 1}", o));
        }
        if (!o.IncludeTop) return new Model(inputs, Heads.Pool(x, o.Pooling), c.Name);
        if (c.CifarHead)
        {
            x = new AveragePooling2D(4, padding: Padding.Same).Apply(x);
            x = new Flatten().Apply(x);
            x = new Dense(1024, activation: "relu").Apply(x);
        }
        else
        {
            x = new GlobalAveragePooling2D().Apply(x);
            x = new Dropout(0.4).Apply(x);
        }
        x = new Dense(o.Classes, activation: o.ClassifierActivation).Apply(x);
        return aux.Count == 0 ? new Model(inputs, x, c.Name) : new Model([inputs], [x, .. aux], c.Name);
    }

    static SymbolicTensor AuxClassifier(SymbolicTensor x, string name, ResolvedOptions o)
    {
        // The paper's head pools 14x14 to 4x4; smaller inputs pool what they have ('same' keeps at least one cell).
        var padding = x.Shape[0] >= 5 && x.Shape[1] >= 5 ? Padding.Valid : Padding.Same;
        x = new AveragePooling2D(5, strides: 3, padding: padding, name: name + "_pool").Apply(x);
        x = new Conv2D(128, 1, padding: Padding.Same, activation: "relu", name: name + "_conv").Apply(x);
        x = new Flatten(name: name + "_flatten").Apply(x);
        x = new Dense(1024, activation: "relu", name: name + "_fc").Apply(x);
        x = new Dropout(0.7, name: name + "_dropout").Apply(x);
        return new Dense(o.Classes, activation: o.ClassifierActivation, name: name + "_predictions").Apply(x);
    }
}
