using System.Text.RegularExpressions;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Saving;

namespace ConvKit.Applications;

/// <summary>A published result for a model: accuracy on a dataset, and who reports it.</summary>
/// <param name="Dataset">ImageNet-1k, CIFAR-10, MNIST.</param>
/// <param name="Top1">Top-1 accuracy in percent.</param>
/// <param name="Top5">Top-5 accuracy in percent, where reported.</param>
/// <param name="Source">Where the number comes from, and for which variant of the architecture.</param>
public sealed record ReferenceAccuracy(string Dataset, double Top1, double? Top5, string Source)
{
    /// <summary>Short form for tables: <c>ImageNet 76.1/92.9</c>, <c>CIFAR-10 91.25</c>.</summary>
    public override string ToString() => Top5 is { } t5
        ? FormattableString.Invariant($"{Dataset} {Top1:0.0#}/{t5:0.0#}")
        : FormattableString.Invariant($"{Dataset} {Top1:0.0#}");
}

/// <summary>
/// What the registry knows about a model: where it comes from, its defaults, and its size. The parameter count is the
/// published (or seed-computed) number, checked against the built model by tests; MACs are computed from the model.
/// </summary>
/// <param name="Name">Registry name, e.g. <c>resnet50</c>.</param>
/// <param name="Family">Architecture family, e.g. <c>ResNet</c>.</param>
/// <param name="Paper">The paper that introduced the architecture.</param>
/// <param name="Year">Publication year; null for models without a paper.</param>
/// <param name="Source">Which code the layer structure follows: keras.applications, a seed notebook, the paper.</param>
/// <param name="DefaultInputShape">The input shape (height, width, channels) the model is published for.</param>
/// <param name="MinInputSize">The smallest height and width the model accepts.</param>
/// <param name="DefaultClasses">Classes of the classifier by default.</param>
/// <param name="Preprocessing">How inputs are prepared.</param>
/// <param name="ParamCount">Parameters at the default options, counted as Keras does (moving statistics included).</param>
/// <param name="Accuracy">A reference accuracy, where the paper or torchvision gives one.</param>
public sealed record ModelInfo(string Name, string Family, string Paper, int? Year, string Source, Shape DefaultInputShape,
    int MinInputSize, int DefaultClasses, Preprocessing Preprocessing, long ParamCount, ReferenceAccuracy? Accuracy)
{
    internal Func<ResolvedOptions, Model> Builder { get; init; } = null!;

    /// <summary>
    /// For models built after a PyTorch module (<c>*_tv</c>): where each layer's tensors are in the state dict, and which
    /// modules of published files the model leaves out. Null for the others, whose .safetensors weights load with
    /// <see cref="StateDictMapping.Default"/>.
    /// </summary>
    public StateDictMapping? StateDict { get; init; }

    Lazy<long> MacsAtDefaults { get; init; } = null!;

    /// <summary>
    /// Multiply-accumulates per sample at the default options: read from the generated table
    /// (<c>ModelRegistry.Macs.g.cs</c>, checked against the built models by the registry convention tests), so listing
    /// the zoo builds nothing; computed from the built model (and cached) for an entry the table lacks.
    /// </summary>
    public long Macs => MacsAtDefaults.Value;

    /// <summary>MACs per sample of the model built at the default options (what the table holds).</summary>
    internal long ComputeMacs()
    {
        using var model = ModelRegistry.Create(Name);
        return ModelSummary.Of(model).TotalMacs;
    }

    internal ModelInfo WithBuilder(Func<ResolvedOptions, Model> builder) => this with
    {
        Builder = builder,
        MacsAtDefaults = ModelMacsTable.Values.TryGetValue(Name, out var macs) ? new Lazy<long>(macs) : new Lazy<long>(ComputeMacs),
    };

    /// <summary>Completes and validates options for this model, as keras.applications does before building.</summary>
    /// <exception cref="LayerArgumentException">An option is invalid for this model (the message names it).</exception>
    public ResolvedOptions Resolve(ModelOptions? options)
    {
        options ??= ModelOptions.Default;
        string who = $"model '{Name}'";
        if (options.IncludeTop && options.Pooling != PoolingMode.None)
            throw new LayerArgumentException(who, "pooling",
                $"pooling='{options.Pooling.ToString().ToLowerInvariant()}' only applies when include_top is false; with include_top=true the classifier decides the output. Received include_top=true, pooling='{options.Pooling.ToString().ToLowerInvariant()}'.");
        if (options.Classes is <= 0)
            throw new LayerArgumentException(who, "classes", $"must be a positive integer; received classes={options.Classes}.");
        var shape = options.InputShape ?? DefaultInputShape;
        if (shape.Rank != 3 || !shape.IsFullyDefined)
            throw new LayerArgumentException(who, "input_shape", $"must be (height, width, channels) with known sizes; received {shape}.");
        if (shape[0] < MinInputSize || shape[1] < MinInputSize)
            throw new LayerArgumentException(who, "input_shape",
                $"input size must be at least {MinInputSize}x{MinInputSize}; received input_shape={shape}.");
        ActivationFunction activation;
        try
        {
            activation = Activations.Get(options.ClassifierActivation);
        }
        catch (LayerArgumentException e)
        {
            throw new LayerArgumentException(who, "classifier_activation", $"unknown activation '{options.ClassifierActivation}' ({e.Message})");
        }
        return new ResolvedOptions(options.IncludeTop, shape, options.Pooling, options.Classes ?? DefaultClasses, activation);
    }
}

/// <summary>
/// The model zoo: named builders with metadata, timm's <c>list_models</c>/<c>create_model</c>. The CLI, the docs and the
/// convention tests all read this one list.
/// </summary>
public static class ModelRegistry
{
    /// <summary>Every registered model, in registration order.</summary>
    public static IReadOnlyList<ModelInfo> All { get; } = Register().ToArray();

    static readonly Dictionary<string, ModelInfo> Entries = All.ToDictionary(e => e.Name, StringComparer.OrdinalIgnoreCase);

    /// <summary>Models whose name matches a wildcard pattern (<c>*</c>, <c>?</c>; case-insensitive); null lists all.</summary>
    public static IReadOnlyList<ModelInfo> List(string? pattern = null)
    {
        if (string.IsNullOrWhiteSpace(pattern)) return All;
        var regex = new Regex("^" + Regex.Escape(pattern.Trim()).Replace("\\*", ".*").Replace("\\?", ".") + "$",
            RegexOptions.IgnoreCase | RegexOptions.CultureInvariant);
        return All.Where(e => regex.IsMatch(e.Name)).ToArray();
    }

    /// <summary>The metadata of a model.</summary>
    /// <exception cref="ConvKitException">No model has that name (the message lists close names).</exception>
    public static ModelInfo Get(string name) =>
        Entries.TryGetValue(name ?? "", out var info) ? info : throw UnknownModel(name);

    /// <summary>
    /// Builds a registered model, as keras.applications' constructors do: random weights, or those named by
    /// <see cref="ModelOptions.Weights"/>.
    /// </summary>
    /// <exception cref="ConvKitException">Unknown name, or the weights cannot be found, downloaded or verified.</exception>
    /// <exception cref="LayerArgumentException">An option is invalid for this model.</exception>
    /// <exception cref="ConvKit.Saving.WeightsMismatchException">The weights file does not fit the model.</exception>
    public static Model Create(string name, ModelOptions? options = null)
    {
        var info = Get(name);
        var resolved = info.Resolve(options);
        Model model;
        // A private naming scope: auto names (conv2d, activation_3, input_1) are the same on every build.
        using (Backend.NameScope())
            model = info.Builder(resolved);
        if (options?.Weights is { } weights)
        {
            try
            {
                WeightsOption.Apply(model, info, resolved, weights, options.WeightsCache);
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        return model;
    }

    static ConvKitException UnknownModel(string? name)
    {
        var close = All.Where(e => name is not null && name.Length >= 3 &&
            (e.Name.Contains(name, StringComparison.OrdinalIgnoreCase) || name.Contains(e.Name, StringComparison.OrdinalIgnoreCase)))
            .Select(e => e.Name).ToArray();
        return new ConvKitException($"unknown model '{name}'." + (close.Length > 0
            ? $" Did you mean: {string.Join(", ", close)}?"
            : $" Known models: {string.Join(", ", All.Select(e => e.Name))}."));
    }

    const string KerasApps = "keras.applications";
    const string TorchvisionNote = "torchvision (its own variant of the architecture)";

    static ReferenceAccuracy ImageNet(double top1, double top5, string source) => new("ImageNet", top1, top5, source);

    static ReferenceAccuracy Cifar10Error(double errorPercent) =>
        new("CIFAR-10", Math.Round(100 - errorPercent, 2), null, "He et al. 2016, Table 6 (error " + errorPercent.ToString(System.Globalization.CultureInfo.InvariantCulture) + "%)");

    static IEnumerable<ModelInfo> Register()
    {
        const string lenetPaper = "Gradient-Based Learning Applied to Document Recognition (LeCun et al.)";
        const string alexPaper = "ImageNet Classification with Deep Convolutional Neural Networks (Krizhevsky et al.)";
        const string vggPaper = "Very Deep Convolutional Networks for Large-Scale Image Recognition (Simonyan & Zisserman)";
        const string googPaper = "Going Deeper with Convolutions (Szegedy et al.)";
        const string v3Paper = "Rethinking the Inception Architecture for Computer Vision (Szegedy et al.)";
        const string resPaper = "Deep Residual Learning for Image Recognition (He et al.)";
        Shape mnist = (28, 28, 1), cifar = (32, 32, 3), imagenet = (224, 224, 3);

        yield return new ModelInfo("lenet5", "LeNet", lenetPaper, 1998, "seed 001 (ReLU, max pooling)", mnist, 12, 10,
            Preprocessing.None, 61_706, null).WithBuilder(LeNet.Build(LeNet.Seed001));
        yield return new ModelInfo("lenet5_classic", "LeNet", lenetPaper, 1998, "seed 002 (tanh, average pooling, 120-filter conv3)", mnist, 4, 10,
            Preprocessing.None, 545_546, new ReferenceAccuracy("MNIST", 99.05, null, "LeCun et al. 1998 (0.95% error)")).WithBuilder(LeNet.Build(LeNet.Classic));

        yield return new ModelInfo("alexnet", "AlexNet", alexPaper, 2012, "seed 002 (batch norm, L2 5e-4 on conv2-5)", (227, 227, 3), 67, 1000,
            Preprocessing.Torch, 62_383_848, ImageNet(56.5, 79.1, TorchvisionNote)).WithBuilder(AlexNet.Build(AlexNet.Seed002));
        yield return new ModelInfo("alexnet_plain", "AlexNet", alexPaper, 2012, "seed 003 (no normalization)", (227, 227, 3), 67, 1000,
            Preprocessing.Torch, 62_378_344, null).WithBuilder(AlexNet.Build(AlexNet.Seed003));

        // VGG: Keras' vgg16/vgg19 counts; 11/13 and the _bn variants are torchvision's counts plus the BN moving statistics Keras counts.
        foreach (var (name, cfg, bn, pars, acc) in new (string, Vgg.Config, bool, long, ReferenceAccuracy?)[]
        {
            ("vgg11", Vgg.A, false, 132_863_336, null),
            ("vgg13", Vgg.B, false, 133_047_848, null),
            ("vgg16", Vgg.D, false, 138_357_544, ImageNet(71.6, 90.4, "torchvision")),
            ("vgg19", Vgg.E, false, 143_667_240, null),
            ("vgg11_bn", Vgg.A, true, 132_874_344, null),
            ("vgg13_bn", Vgg.B, true, 133_059_624, null),
            ("vgg16_bn", Vgg.D, true, 138_374_440, null),
            ("vgg19_bn", Vgg.E, true, 143_689_256, null),
        })
        {
            yield return new ModelInfo(name, "VGG", vggPaper, 2014, bn ? "keras.applications naming, batch norm as torchvision" : KerasApps,
                imagenet, 32, 1000, Preprocessing.Caffe, pars, acc).WithBuilder(Vgg.Build(cfg, bn, name));
        }
        yield return new ModelInfo("vgg16_cifar", "VGG", vggPaper, 2014, "seed 001 (VGG16 on 32x32 CIFAR-10)", cifar, 32, 10,
            Preprocessing.None, 33_638_218, null).WithBuilder(Vgg.Build(Vgg.D, false, "vgg16_cifar"));

        yield return new ModelInfo("googlenet", "GoogLeNet", googPaper, 2014, "seed 002 (inception_v1, no batch norm)", imagenet, 32, 1000,
            Preprocessing.Torch, 6_994_392, ImageNet(69.8, 89.5, TorchvisionNote)).WithBuilder(GoogLeNet.Build(GoogLeNet.Seed002));
        yield return new ModelInfo("googlenet_cifar", "GoogLeNet", googPaper, 2014, "seed 001 (32x32, Dense 1024)", cifar, 32, 10,
            Preprocessing.None, 7_033_402, null).WithBuilder(GoogLeNet.Build(GoogLeNet.Seed001Cifar));

        yield return new ModelInfo("inception_v3", "Inception", v3Paper, 2016, KerasApps, (299, 299, 3), 75, 1000,
            Preprocessing.TF, 23_851_784, ImageNet(77.3, 93.5, TorchvisionNote)).WithBuilder(InceptionV3.Build);

        // ResNet-18/34 in Keras' v1 style: torchvision's counts plus conv biases and BN moving statistics.
        foreach (var (name, spec, pars, acc) in new (string, ResNet.Spec, long, ReferenceAccuracy?)[]
        {
            ("resnet18", ResNet.ResNet18, 11_703_912, null),
            ("resnet34", ResNet.ResNet34, 21_823_208, null),
            ("resnet50", ResNet.ResNet50, 25_636_712, ImageNet(76.1, 92.9, "torchvision (ResNet v1.5; Keras' is v1)")),
            ("resnet101", ResNet.ResNet101, 44_707_176, null),
            ("resnet152", ResNet.ResNet152, 60_419_944, null),
        })
        {
            yield return new ModelInfo(name, "ResNet", resPaper, 2016, spec.Block == ResNet.BlockKind.Bottleneck ? KerasApps : "keras.applications style (basic blocks)",
                imagenet, 32, 1000, Preprocessing.Caffe, pars, acc).WithBuilder(ResNet.Build(spec, name));
        }
        // torchvision's v1.5 variant, named after its state-dict keys (weights load from safetensors).
        foreach (var (name, spec, pars, acc) in new (string, ResNet.Spec, long, ReferenceAccuracy?)[]
        {
            ("resnet18_tv", ResNet.ResNet18, 11_699_112, ImageNet(69.758, 89.078, "torchvision IMAGENET1K_V1")),
            ("resnet50_tv", ResNet.ResNet50, 25_610_152, ImageNet(76.13, 92.862, "torchvision IMAGENET1K_V1")),
        })
        {
            yield return new ModelInfo(name, "ResNet", resPaper, 2016, "torchvision (v1.5: stride in the 3x3 convolution, no conv bias)",
                imagenet, 32, 1000, Preprocessing.Torch, pars, acc).WithBuilder(TorchvisionResNet.Build(spec, name));
        }
        // torchvision's AlexNet, VGG, GoogLeNet and Inception v3, named after their state-dict keys. Counts are torchvision's
        // num_params plus the BN moving statistics ConvKit counts (GoogLeNet 6,624,904 + 14,560; Inception v3 23,834,568 + 34,432).
        const string tvWeights = "torchvision IMAGENET1K_V1";
        yield return new ModelInfo("alexnet_tv", "AlexNet", alexPaper, 2012, "torchvision (One weird trick variant: 64-192-384-256-256 filters, adaptive 6x6 pooling)",
            imagenet, 63, 1000, Preprocessing.Torch, 61_100_840, ImageNet(56.522, 79.066, tvWeights)).WithBuilder(TorchvisionAlexNet.Build);
        yield return new ModelInfo("vgg16_tv", "VGG", vggPaper, 2014, "torchvision (adaptive 7x7 pooling before the classifier)",
            imagenet, 32, 1000, Preprocessing.Torch, 138_357_544, ImageNet(71.592, 90.382, tvWeights)).WithBuilder(TorchvisionVgg.Build(Vgg.D, "vgg16_tv"));
        yield return new ModelInfo("vgg19_tv", "VGG", vggPaper, 2014, "torchvision (adaptive 7x7 pooling before the classifier)",
            imagenet, 32, 1000, Preprocessing.Torch, 143_667_240, ImageNet(72.376, 90.876, tvWeights)).WithBuilder(TorchvisionVgg.Build(Vgg.E, "vgg19_tv"));
        // torchvision runs these two with transform_input=True, which maps torch-normalized input to [-1, 1]: 'tf' here.
        yield return new ModelInfo("googlenet_tv", "GoogLeNet", googPaper, 2014, "torchvision (batch norm, 3x3 in the '5x5' branch, ceil-mode pooling)",
            imagenet, 15, 1000, Preprocessing.TF, 6_639_464, ImageNet(69.778, 89.53, tvWeights)).WithBuilder(TorchvisionGoogLeNet.Build)
            with { StateDict = TorchvisionGoogLeNet.StateDict };
        yield return new ModelInfo("inception_v3_tv", "Inception", v3Paper, 2016, "torchvision (batch norm with scale, count-include-pad average pooling)",
            (299, 299, 3), 75, 1000, Preprocessing.TF, 23_869_000, ImageNet(77.294, 93.45, tvWeights)).WithBuilder(TorchvisionInceptionV3.Build)
            with { StateDict = TorchvisionInceptionV3.StateDict };
        yield return new ModelInfo("resnet_cifar", "ResNet", resPaper, 2016, "seed 001 (CIFAR ResNet, 64-512 filters)", cifar, 8, 10,
            Preprocessing.None, 11_188_362, null).WithBuilder(ResNet.BuildSeed001Cifar);

        // He et al. 2016 section 4.2: 6n + 2 layers; counts follow 97,664·n - 18,950 (1x1 projection shortcuts, BN statistics counted).
        foreach (var (depth, error) in new (int, double?)[] { (20, 8.75), (32, null), (44, null), (56, 6.97), (110, 6.43) })
        {
            int n = (depth - 2) / 6;
            yield return new ModelInfo($"resnet{depth}", "ResNet (CIFAR)", resPaper, 2016, "He et al. 2016 section 4.2 (projection shortcuts)", cifar, 4, 10,
                Preprocessing.None, 97_664L * n - 18_950, error is { } e ? Cifar10Error(e) : null).WithBuilder(CifarResNet.Build(depth));
        }

        yield return new ModelInfo("cifar100_cnn", "Small CNN", "none (a small CNN from the seed 004 tutorial)", null, "seed 004", cifar, 10, 100,
            Preprocessing.None, 325_956, null).WithBuilder(Cifar100Cnn.Build);
        yield return new ModelInfo("fmnist_resnet", "ResNet (small)", resPaper, 2016, "ConvKit's Fashion-MNIST recipe (three stride-2 basic blocks, 32/64/128 filters)", mnist, 8, 10,
            Preprocessing.None, 310_570, null).WithBuilder(FashionResNet.Build);
    }
}
