using System.Text.Json.Nodes;
using ConvKit.Applications;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Saving;
using TorchSharp;
using Padding = ConvKit.Padding;
using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

public class ModelFormatTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-format-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    string PathOf(string name) => Path.Combine(dir, name);

    // Big weight tensors (VGG/AlexNet classifiers, deep ResNets, Inception) make a round trip take seconds.
    static readonly string[] BigModels = ["alexnet", "alexnet_plain", "vgg", "resnet50", "resnet101", "resnet152", "inception_v3", "googlenet", "resnet34", "resnet110", "alexnet_tv"];

    static bool IsBig(string name) => BigModels.Any(b => name == b || (b == "vgg" && name.StartsWith("vgg", StringComparison.Ordinal)));

    public static TheoryData<string> SmallRegistryModels() => [.. ModelRegistry.All.Select(m => m.Name).Where(n => !IsBig(n))];

    public static TheoryData<string> BigRegistryModels() => [.. ModelRegistry.All.Select(m => m.Name).Where(IsBig)];

    [Theory]
    [MemberData(nameof(SmallRegistryModels))]
    public void SmallRegistryModelsRoundTrip(string name) => RegistryRoundTrip(name);

    [Theory]
    [Trait("Category", "Slow")]
    [MemberData(nameof(BigRegistryModels))]
    public void BigRegistryModelsRoundTrip(string name) => RegistryRoundTrip(name);

    void RegistryRoundTrip(string name)
    {
        var info = ModelRegistry.Get(name);
        var shape = new Shape(info.MinInputSize, info.MinInputSize, info.DefaultInputShape[2]);
        using var model = ModelRegistry.Create(name, new ModelOptions { InputShape = shape, Classes = 5 });
        AssertRoundTrip(model, [shape]);
    }

    void AssertRoundTrip(Model model, IReadOnlyList<Shape> inputShapes)
    {
        var path = PathOf(model.Name + ".safetensors");
        model.Save(path);
        using var loaded = Model.Load(path);
        Assert.Equal(model.GetType(), loaded.GetType());
        Assert.Equal(model.Summary(), loaded.Summary());
        Assert.Equal(ModelFormat.ToJson(model), ModelFormat.ToJson(loaded));
        var a = ModelFormat.NamedWeights(model);
        var b = ModelFormat.NamedWeights(loaded);
        Assert.Equal(a.Select(w => w.Key), b.Select(w => w.Key));
        for (int i = 0; i < a.Count; i++) Assert.True(Same(a[i].Weight.Value, b[i].Weight.Value), a[i].Key);

        using var g = new Generator(7);
        using var scope = NewDisposeScope();
        var xs = inputShapes.Select(s => Layout.FromKeras(randn([2, .. s.ToArray().Select(d => (long)d)], generator: g))).ToArray();
        model.eval();
        loaded.eval();
        using var _ = no_grad();
        var ya = model.Forward(xs);
        var yb = loaded.Forward(xs);
        Assert.Equal(ya.Count, yb.Count);
        for (int i = 0; i < ya.Count; i++) Assert.True(Same(ya[i], yb[i]), $"output {i} differs");
    }

    static Model MultiInputMultiOutput()
    {
        using var _ = Backend.NameScope();
        var image = new Input((8, 8, 3), name: "image");
        var meta = new Input(5, name: "meta");
        var x = new Conv2D(4, 3, padding: Padding.Same, activation: "relu").Apply(image);
        x = new BatchNormalization().Apply(x);
        var shared = new Conv2D(4, 1, name: "shared");
        var y1 = shared.Apply(x);
        var y2 = shared.Apply(new ZeroPadding2D(((0, 0), (0, 0)).Item1, (0, 0)).Apply(x)); // the shared layer is called twice
        x = Add.Of(y1, y2);
        x = new LeakyReLU(0.1).Apply(x);
        x = new MaxPooling2D(2).Apply(x);
        x = new GlobalAveragePooling2D().Apply(x);
        var m = new Dense(6, activation: "elu").Apply(meta);
        var merged = Concatenate.Of([x, m]);
        var classes = new Dense(3, activation: "softmax", name: "classes").Apply(merged);
        var score = new Dense(1, name: "score").Apply(new Dropout(0.5).Apply(merged));
        return new Model([image, meta], [classes, score], name: "two_heads");
    }

    [Fact]
    public void FunctionalMultiInputMultiOutputWithASharedLayerRoundTrips()
    {
        using var model = MultiInputMultiOutput();
        AssertRoundTrip(model, [(8, 8, 3), 5]);
        var json = JsonNode.Parse(ModelFormat.ToJson(model))!;
        var shared = json["config"]!["layers"]!.AsArray().Single(l => (string)l!["name"]! == "shared");
        Assert.Equal(2, shared!["inbound_nodes"]!.AsArray().Count);
    }

    [Fact]
    public void SequentialWithEveryBuiltInLayerRoundTrips()
    {
        using var _ = Backend.NameScope();
        var seq = new Sequential([
            new Rescaling(1 / 255.0, inputShape: (12, 12, 2)),
            new Conv2D(4, (3, 2), strides: 1, padding: Padding.Same, dilationRate: 2, groups: 2, activation: "relu", kernelInitializer: "he_normal", kernelRegularizer: new L2(0.001)),
            new LocalResponseNormalization(2, 2, 1e-4, 0.75),
            new AvgPool2D(2, padding: Padding.Same),
            new AveragePooling2D(1),
            new MaxPool2D((2, 1), strides: 1),
            new ELU(0.5),
            new ReLU(),
            new Activation("tanh"),
            new BatchNormalization(momentum: 0.9, epsilon: 1e-5, center: false),
            new ZeroPadding2D(((1, 0), (0, 2)).Item1, (0, 2)),
            new AdaptiveAveragePooling2D((5, 3)),
            new GlobalMaxPooling2D(keepDims: true),
            new Flatten(),
            new Dense(5, useBias: false),
            new Softmax(),
        ], name: "everything");
        seq.Layers[1].Trainable = false;
        AssertRoundTrip(seq, [(12, 12, 2)]);
        using var loaded = Model.Load(PathOf("everything.safetensors"));
        Assert.False(loaded.Layers[1].Trainable);
        var conv = (Conv2D)loaded.Layers[1];
        Assert.Equal((new Size2(3, 2), 2, 2, "he_normal", 0.001), (conv.KernelSize, conv.DilationRate.Height, conv.Groups, conv.KernelInitializer.Name, conv.KernelRegularizer!.Factor));
    }

    [Fact]
    public void SequentialBuiltLaterAndNestedModelsRoundTrip()
    {
        using var _ = Backend.NameScope();
        var lazy = new Sequential([new Dense(4, activation: "relu"), new Dense(2)], name: "lazy");
        lazy.Build(3);
        AssertRoundTrip(lazy, [3]);

        var inner = new Sequential([new Dense(4, inputShape: 3, name: "inner_dense")], name: "inner");
        var input = new Input(3, name: "outer_in");
        var outer = new Model(input, new Dense(2, name: "head").Apply(inner.Apply(input)), name: "outer");
        AssertRoundTrip(outer, [3]);
        Assert.Contains("inner/inner_dense/kernel", ModelFormat.NamedWeights(outer).Select(w => w.Key));
    }

    sealed class Scale : Layer, IConfigurableLayer<Scale>
    {
        public Scale(double factor, string? name = null) : base(name) => Factor = factor;

        public double Factor { get; }

        public override Shape ComputeOutputShape(Shape inputShape) => inputShape;

        public override Tensor Call(Tensor inputs)
        {
            using var factor = Factor.ToScalar();
            return inputs.mul(factor);
        }

        public JsonObject GetConfig() => new() { ["factor"] = Factor };

        public static Scale FromConfig(JsonObject config, string name) => new((double)config["factor"]!, name);
    }

    sealed class Unregistered(string? name = null) : Layer(name)
    {
        public override Shape ComputeOutputShape(Shape inputShape) => inputShape;

        public override Tensor Call(Tensor inputs) => inputs;
    }

    [Fact]
    public void CustomLayersNeedARegistration()
    {
        LayerRegistry.Register<Scale>();
        using var _ = Backend.NameScope();
        var model = new Sequential([new Dense(3, inputShape: 2), new Scale(2.5, name: "scale")], name: "custom");
        AssertRoundTrip(model, [2]);
        Assert.Equal(2.5, ((Scale)Model.Load(PathOf("custom.safetensors")).Layers[1]).Factor);

        var bad = new Sequential([new Dense(3, inputShape: 2), new Unregistered(name: "mystery")], name: "bad");
        var e = Assert.Throws<UnsupportedException>(() => bad.Save(PathOf("bad.safetensors")));
        Assert.Contains("mystery", e.Message);
        Assert.Contains("LayerRegistry.Register", e.Message);
        Assert.False(File.Exists(PathOf("bad.safetensors")));
    }

    sealed class TinyNet : Model
    {
        readonly Dense hidden = new(4, activation: "relu", name: "hidden");
        readonly Dense output = new(2, name: "out");

        public TinyNet() : base("tiny") { }

        public override Tensor Call(Tensor inputs) => output.Apply(hidden.Apply(inputs));
    }

    [Fact]
    public void SubclassedModelsLoadWeightsOnlyAndSaySoOnLoad()
    {
        using var a = new TinyNet();
        a.Build(3);
        var path = PathOf("tiny.safetensors");
        a.Save(path);
        var e = Assert.Throws<UnsupportedException>(() => Model.Load(path));
        Assert.Contains("subclassed", e.Message);
        Assert.Contains("LoadWeights", e.Message);

        using var b = new TinyNet();
        b.Build(3);
        var report = b.LoadWeights(path);
        Assert.Equal(["hidden/kernel", "hidden/bias", "out/kernel", "out/bias"], report.Loaded);
        Assert.True(Same(a.GetWeights()[0], b.GetWeights()[0]));
    }

    static Sequential Classifier(int classes, string head = "predictions")
    {
        using var _ = Backend.NameScope();
        return new Sequential([
            new Conv2D(3, 3, inputShape: (6, 6, 1), name: "conv"),
            new Flatten(name: "flatten"),
            new Dense(8, activation: "relu", name: "fc"),
            new Dense(classes, activation: "softmax", name: head),
        ], name: "clf");
    }

    [Fact]
    public void LoadWeightsReportsMissingUnexpectedAndMisShapedTensors()
    {
        using var source = Classifier(10);
        var path = PathOf("w.safetensors");
        source.SaveWeights(path);

        using var other = Classifier(4, head: "logits");
        ConvKitException e = Assert.Throws<WeightsMismatchException>(() => other.LoadWeights(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("missing: layer 'logits' weight 'kernel' (logits/kernel, shape [4, 8])", e.Message);
        Assert.Contains("unexpected: 'predictions/kernel' [10, 8]", e.Message);

        using var fewer = Classifier(4);
        var before = fewer.GetWeights();
        e = Assert.Throws<WeightsMismatchException>(() => fewer.LoadWeights(path));
        Assert.Contains("shape mismatch: layer 'predictions' weight 'kernel' expects [4, 8], the file has [10, 8]", e.Message);
        Assert.True(Same(before[0], fewer.GetWeights()[0]), "a failed load must not change any weight");

        // Fine-tuning: keep the new classifier, load the rest.
        var report = fewer.LoadWeights(path, options: new LoadWeightsOptions { SkipClassifier = true });
        Assert.Equal(["conv/kernel", "conv/bias", "fc/kernel", "fc/bias"], report.Loaded);
        Assert.True(Same(source.GetWeights()[0], fewer.GetWeights()[0]));
        Assert.True(Same(before[^1], fewer.GetWeights()[^1]));
        Assert.Equal(2, other.LoadWeights(path, options: new LoadWeightsOptions { SkipLayers = ["logits", "predictions"] }).Loaded.Count / 2);
        Assert.Equal(2, fewer.LoadWeights(path, options: new LoadWeightsOptions { SkipMismatched = true }).Skipped.Count);

        e = Assert.Throws<InvalidFileException>(() => Model.Load(path));
        Assert.Contains("weights only", e.Message);
    }

    [Fact]
    public void ForeignAndMissingFilesGiveConvKitErrors()
    {
        var foreign = PathOf("foreign.safetensors");
        using (var t = zeros(2))
            SafeTensors.Write(foreign, new Dictionary<string, Tensor> { ["x"] = t });
        Assert.Contains("not a ConvKit model file", Assert.Throws<InvalidFileException>(() => Model.Load(foreign)).Message);
        Assert.Contains("does not exist", Assert.Throws<ConvKitException>(() => Model.Load(PathOf("nope.safetensors"))).Message);
        File.WriteAllText(PathOf("junk.safetensors"), "not safetensors at all");
        Assert.ThrowsAny<ConvKitException>(() => Model.Load(PathOf("junk.safetensors")));
    }
}
