using ConvKit.Applications;
using ConvKit.Layers;
using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Tests.Applications;

/// <summary>Convention tests over the whole registry: every entry builds, runs forward and backward, and has its metadata's size.</summary>
public class RegistryConventionTests
{
    public static TheoryData<string> Names()
    {
        var data = new TheoryData<string>();
        foreach (var e in ModelRegistry.All) data.Add(e.Name);
        return data;
    }

    // torchvision's VGG keeps its 25088x4096 first dense layer at any input size (the adaptive pooling hands it 7x7
    // maps): building it and a training pass take ~10 s on 2 cores even at 32x32, so these run with the Slow tests.
    static bool HeavyAtAnySize(string name) => name is "vgg16_tv" or "vgg19_tv";

    public static TheoryData<string> LightNames() => [.. ModelRegistry.All.Select(e => e.Name).Where(n => !HeavyAtAnySize(n))];

    public static TheoryData<string> HeavyNames() => [.. ModelRegistry.All.Select(e => e.Name).Where(HeavyAtAnySize)];

    // The published or seed-computed counts, written independently of the registry's metadata.
    static readonly Dictionary<string, long> Facts = new()
    {
        ["lenet5"] = 61_706, ["lenet5_classic"] = 545_546, ["alexnet"] = 62_383_848, ["alexnet_plain"] = 62_378_344,
        ["vgg16"] = 138_357_544, ["vgg19"] = 143_667_240, ["vgg16_cifar"] = 33_638_218, ["googlenet"] = 6_994_392,
        ["googlenet_cifar"] = 7_033_402, ["inception_v3"] = 23_851_784, ["resnet50"] = 25_636_712, ["resnet101"] = 44_707_176,
        ["resnet152"] = 60_419_944, ["resnet_cifar"] = 11_188_362, ["resnet20"] = 274_042, ["cifar100_cnn"] = 325_956,
        ["fmnist_resnet"] = 288 + 128 + (1_024 + 2 * 9_216 + 3 * 128) + (2_048 + 18_432 + 36_864 + 3 * 256) + (8_192 + 73_728 + 147_456 + 3 * 512) + 1_290, // by hand: stem, blocks 1-3, Dense
        // torchvision's num_params (eval models, no auxiliary heads) plus the BN moving statistics (non-trainable, below).
        ["alexnet_tv"] = 61_100_840, ["vgg16_tv"] = 138_357_544, ["vgg19_tv"] = 143_667_240,
        ["googlenet_tv"] = 6_624_904 + 14_560, ["inception_v3_tv"] = 23_834_568 + 34_432,
    };

    static readonly Dictionary<string, long> NonTrainableFacts = new()
    {
        ["alexnet"] = 2_752, ["inception_v3"] = 34_432, ["resnet50"] = 53_120,
        ["alexnet_tv"] = 0, ["vgg16_tv"] = 0, ["fmnist_resnet"] = 2 * (32 + 3 * 32 + 3 * 64 + 3 * 128), ["googlenet_tv"] = 14_560, ["inception_v3_tv"] = 34_432,
    };

    /// <summary>The smallest cheap options for a forward/backward pass: the minimum input, with the top.</summary>
    static ModelOptions Small(ModelInfo info) => new()
    {
        InputShape = new Shape(info.MinInputSize, info.MinInputSize, info.DefaultInputShape[2]),
        Classes = 7,
    };

    [Theory]
    [Trait("Category", "Slow")] // builds every model at its full default size (VGG-19: 143M weights)
    [MemberData(nameof(Names))]
    public void ParameterCountAtDefaultsMatchesMetadataAndFacts(string name)
    {
        var info = ModelRegistry.Get(name);
        using var model = ModelRegistry.Create(name);
        Assert.Equal(info.ParamCount, model.CountParams());
        if (Facts.TryGetValue(name, out var fact)) Assert.Equal(fact, model.CountParams());
        if (NonTrainableFacts.TryGetValue(name, out var frozen)) Assert.Equal(frozen, model.NonTrainableWeights.Sum(w => w.Count));
        Assert.Equal(info.DefaultInputShape, model.ModelInputShape);
        Assert.Equal(new Shape(info.DefaultClasses), model.ModelOutputShape);
    }

    [Theory]
    [MemberData(nameof(LightNames))]
    public void ForwardAndBackwardAtTheSmallestInputAreFinite(string name) => CheckForwardAndBackward(name);

    [Theory]
    [Trait("Category", "Slow")]
    [MemberData(nameof(HeavyNames))]
    public void ForwardAndBackwardOfHeavyModelsAtTheSmallestInputAreFinite(string name) => CheckForwardAndBackward(name);

    static void CheckForwardAndBackward(string name)
    {
        var info = ModelRegistry.Get(name);
        var options = Small(info);
        using var model = ModelRegistry.Create(name, options);
        Assert.Equal(new Shape(7), model.ModelOutputShape);
        using var scope = NewDisposeScope();
        model.train();
        manual_seed(1);
        var x = randn(Layout.ToInternal(options.InputShape!.Value, 2));
        var y = model.Apply(x);
        Assert.Equal(new long[] { 2, 7 }, y.shape);
        Assert.True(isfinite(y).all().item<bool>(), "forward produced NaN/Inf");
        using (no_grad()) Assert.Equal(1.0, y.sum(1)[0].item<float>(), 3); // softmax by default
        var loss = y.log().neg().mean();
        loss.backward();
        var grads = model.TrainableWeights.Select(w => w.Value.grad).ToArray();
        Assert.All(grads, g => Assert.NotNull(g));
        Assert.All(grads, g => Assert.True(isfinite(g!).all().item<bool>(), "gradient has NaN/Inf"));
        Assert.Contains(grads, g => g!.abs().sum().item<float>() > 0);
    }

    [Theory]
    [MemberData(nameof(LightNames))]
    public void NoTopWithPoolingAndCustomShapeAndClasses(string name) => CheckNoTopAndCustomTop(name);

    [Theory]
    [Trait("Category", "Slow")]
    [MemberData(nameof(HeavyNames))]
    public void NoTopWithPoolingAndCustomShapeAndClassesOfHeavyModels(string name) => CheckNoTopAndCustomTop(name);

    static void CheckNoTopAndCustomTop(string name)
    {
        var info = ModelRegistry.Get(name);
        int size = info.MinInputSize + 3, channels = info.DefaultInputShape[2] == 1 ? 2 : 4;
        Shape shape = (size, size + 1, channels);
        foreach (var pooling in new[] { PoolingMode.Avg, PoolingMode.Max })
        {
            using var model = ModelRegistry.Create(name, new ModelOptions { IncludeTop = false, Pooling = pooling, InputShape = shape });
            Assert.Equal(1, model.ModelOutputShape.Rank);
            Assert.Contains(model.Layers, l => pooling == PoolingMode.Avg ? l is GlobalAveragePooling2D : l is GlobalMaxPooling2D);
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            model.eval();
            var y = model.Apply(randn(Layout.ToInternal(shape, 2)));
            Assert.Equal(new long[] { 2, model.ModelOutputShape[0] }, y.shape);
            Assert.True(isfinite(y).all().item<bool>());
        }
        using (var features = ModelRegistry.Create(name, new ModelOptions { IncludeTop = false, InputShape = shape }))
            Assert.Equal(3, features.ModelOutputShape.Rank);
        using var logits = ModelRegistry.Create(name, new ModelOptions { InputShape = shape, Classes = 3, ClassifierActivation = null });
        Assert.Equal(new Shape(3), logits.ModelOutputShape);
        Assert.Equal(shape, logits.ModelInputShape);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void InvalidOptionsFailWithClearMessages(string name)
    {
        var info = ModelRegistry.Get(name);
        var e = Assert.Throws<LayerArgumentException>(() => ModelRegistry.Create(name, new ModelOptions { Pooling = PoolingMode.Avg }));
        Assert.Contains("pooling", e.Message);
        Assert.Contains(name, e.Message);

        int tooSmall = info.MinInputSize - 1;
        e = Assert.Throws<LayerArgumentException>(() => ModelRegistry.Create(name, new ModelOptions { InputShape = (tooSmall, info.MinInputSize, 3) }));
        Assert.Contains($"at least {info.MinInputSize}x{info.MinInputSize}", e.Message);

        e = Assert.Throws<LayerArgumentException>(() => ModelRegistry.Create(name, new ModelOptions { Classes = 0 }));
        Assert.Equal("classes", e.Argument);
        e = Assert.Throws<LayerArgumentException>(() => ModelRegistry.Create(name, new ModelOptions { ClassifierActivation = "softmaxx" }));
        Assert.Equal("classifier_activation", e.Argument);
        e = Assert.Throws<LayerArgumentException>(() => ModelRegistry.Create(name, new ModelOptions { InputShape = new Shape(32, 32) }));
        Assert.Equal("input_shape", e.Argument);
    }
}

/// <summary>The MACs table that <c>convkit models</c> lists from, against the built models (so it cannot rot).</summary>
public class RegistryMacsTableTests
{
    // Building a model at its default size allocates its weights: the big ones (VGG, AlexNet: 60-144M weights) are Slow.
    static bool Big(ModelInfo info) => info.ParamCount > 30_000_000;

    public static TheoryData<string> SmallModels() => [.. ModelRegistry.All.Where(e => !Big(e)).Select(e => e.Name)];

    public static TheoryData<string> BigModels() => [.. ModelRegistry.All.Where(Big).Select(e => e.Name)];

    [Theory]
    [MemberData(nameof(SmallModels))]
    public void TheTableHoldsTheMacsOfTheBuiltModel(string name) => Check(name);

    [Theory]
    [Trait("Category", "Slow")]
    [MemberData(nameof(BigModels))]
    public void TheTableHoldsTheMacsOfTheBuiltBigModel(string name) => Check(name);

    static void Check(string name)
    {
        var info = ModelRegistry.Get(name);
        Assert.True(ModelMacsTable.Values.ContainsKey(name), $"{name} is missing from ModelRegistry.Macs.g.cs; run MacsTableMatchesTheBuiltModels to regenerate it.");
        Assert.Equal(info.ComputeMacs(), ModelMacsTable.Values[name]);
        Assert.Equal(ModelMacsTable.Values[name], info.Macs);
    }

    [Fact]
    public void TheTableListsExactlyTheRegistry() =>
        Assert.Equal(ModelRegistry.All.Select(e => e.Name).Order(StringComparer.Ordinal), ModelMacsTable.Values.Keys.Order(StringComparer.Ordinal));

    /// <summary>Regenerates the table (all models, ~20 s): the file is written to the temp folder when it differs.</summary>
    [Fact]
    [Trait("Category", "Slow")]
    public void MacsTableMatchesTheBuiltModels()
    {
        var computed = ModelRegistry.All.Select(e => (e.Name, Macs: e.ComputeMacs())).ToArray();
        if (computed.All(c => ModelMacsTable.Values.TryGetValue(c.Name, out var m) && m == c.Macs) && computed.Length == ModelMacsTable.Values.Count) return;
        var lines = computed.Select(c => $"        [\"{c.Name}\"] = {c.Macs.ToString("N0", System.Globalization.CultureInfo.InvariantCulture).Replace(',', '_')},");
        var text = File.ReadAllText(FindSource()).Split('\n');
        int open = Array.FindIndex(text, l => l.TrimEnd() == "    {"), close = Array.FindIndex(text, l => l.TrimEnd() == "    };");
        var regenerated = string.Join('\n', [.. text[..(open + 1)], .. lines, .. text[close..]]);
        var path = Path.Combine(Path.GetTempPath(), "ModelRegistry.Macs.g.cs");
        File.WriteAllText(path, regenerated);
        Assert.Fail($"ModelRegistry.Macs.g.cs is out of date; the regenerated file is {path}.");
    }

    static string FindSource()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            var candidate = Path.Combine(d.FullName, "src", "ConvKit", "Applications", "ModelRegistry.Macs.g.cs");
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException("src/ConvKit/Applications/ModelRegistry.Macs.g.cs not found above " + AppContext.BaseDirectory);
    }
}
