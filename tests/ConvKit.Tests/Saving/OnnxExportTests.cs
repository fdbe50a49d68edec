using ConvKit.Applications;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Native;
using ConvKit.Saving;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;
using Padding = ConvKit.Padding;
using Xunit.Abstractions;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace ConvKit.Tests.Saving;

public class OnnxExportTests(ITestOutputHelper log)
{
    const double Tolerance = 1e-4;

    // Over ~5 s even at their smallest input (tens of millions of weights to build and serialize, or hundreds of layers).
    static bool IsBig(string name) =>
        name.StartsWith("vgg", StringComparison.Ordinal) || name.StartsWith("alexnet", StringComparison.Ordinal)
        || name is "resnet18" or "resnet34" or "resnet50" or "resnet101" or "resnet152" or "resnet_cifar" or "inception_v3" or "inception_v3_tv";

    public static TheoryData<string> FastModels() => Names(big: false);

    public static TheoryData<string> BigModels() => Names(big: true);

    static TheoryData<string> Names(bool big)
    {
        var data = new TheoryData<string>();
        foreach (var e in ModelRegistry.List()) if (IsBig(e.Name) == big) data.Add(e.Name);
        return data;
    }

    /// <summary>
    /// Every zoo model at its smallest input, with its classifier (7 classes) giving logits: a softmax of large random
    /// logits saturates to one-hot and would hide differences in the features.
    /// </summary>
    static ModelOptions Small(string name)
    {
        var info = ModelRegistry.Get(name);
        return new ModelOptions
        {
            InputShape = new Shape(info.MinInputSize, info.MinInputSize, info.DefaultInputShape[2]), Classes = 7, ClassifierActivation = "linear",
        };
    }

    [Theory]
    [MemberData(nameof(FastModels))]
    public void OnnxRuntimeReproducesEveryZooModel(string name) => CheckZooModel(name, Small(name));

    [Theory]
    [Trait("Category", "Slow")]
    [MemberData(nameof(BigModels))]
    public void OnnxRuntimeReproducesEveryBigZooModel(string name) => CheckZooModel(name, Small(name));

    [Theory]
    [InlineData("googlenet", PoolingMode.None)] // a 4-D feature map comes out NHWC
    [InlineData("resnet20", PoolingMode.Avg)]
    [InlineData("lenet5", PoolingMode.Max)]
    public void OnnxRuntimeReproducesZooModelsWithoutTheirTop(string name, PoolingMode pooling) =>
        CheckZooModel(name, Small(name) with { IncludeTop = false, Pooling = pooling, Classes = null, ClassifierActivation = "softmax" });

    void CheckZooModel(string name, ModelOptions options)
    {
        using var model = ModelRegistry.Create(name, options);
        var (abs, rel) = CheckAgainstOnnxRuntime(model, seed: (ulong)name.Length);
        log.WriteLine($"{name}: max |ConvKit - ONNX Runtime| = {abs:E2} (relative to the output scale: {rel:E2})");
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void GoogLeNetWithAuxiliaryClassifiersExportsThreeOutputs()
    {
        var info = ModelRegistry.Get("googlenet");
        var options = info.Resolve(new ModelOptions { InputShape = (32, 32, 3), Classes = 5, ClassifierActivation = "linear" });
        Model model;
        using (Backend.NameScope()) model = GoogLeNet.Build(GoogLeNet.Seed002, options, auxClassifiers: true);
        using (model)
        {
            Assert.Equal(3, model.Outputs.Count);
            var bytes = model.ToOnnx();
            using var session = new InferenceSession(bytes);
            Assert.Equal(model.Outputs.Select(o => o.Layer.Name), session.OutputNames);
            log.WriteLine($"googlenet+aux: {CheckAgainstOnnxRuntime(model, seed: 3)}");
        }
    }

    // ------------------------------------------------------------------ layer-level cases

    static Model Functional(Shape inputShape, Func<SymbolicTensor, SymbolicTensor> body)
    {
        using var _ = Backend.NameScope();
        var x = new Input(inputShape);
        return new Model(x, body(x));
    }

    [Theory]
    // 'same' with an odd total padding: Keras puts the extra row/column bottom/right.
    [InlineData(7, 8, 3, 2, 1)]
    [InlineData(8, 8, 3, 2, 1)]
    [InlineData(9, 6, 2, 1, 3)] // dilation 3
    [InlineData(6, 7, 2, 3, 1)]
    public void AsymmetricSameConvolutionAndPoolingMatch(int h, int w, int kernel, int stride, int dilation)
    {
        Model model;
        using (Backend.NameScope())
        {
            var x = new Input((h, w, 3));
            var a = new Conv2D(4, kernel, strides: stride, padding: Padding.Same, dilationRate: dilation, activation: "relu").Apply(x);
            // Pooling reads the input directly, so its own padding is visible; every stage is an output.
            var m = new MaxPooling2D(kernel, strides: stride, padding: Padding.Same).Apply(x);
            var v = new AveragePooling2D(kernel, strides: stride, padding: Padding.Same).Apply(x);
            model = new Model([x], [a, m, v]);
        }
        using var _ = model;
        // The pads really are asymmetric for at least one axis of the first window.
        Assert.True((ConvArithmetic.SamePadding(h, kernel, stride, dilation) is var (t, b) && t != b)
                    || (ConvArithmetic.SamePadding(w, kernel, stride, dilation) is var (l, r) && l != r));
        CheckAgainstOnnxRuntime(model, seed: 11);
    }

    [Fact]
    public void AveragePoolingSameDividesByTheCellsInsideTheInput()
    {
        // A constant image: Keras' 'same' average is the constant everywhere (padding not counted), including the
        // bottom-right windows that hang over the edge. A count-including-pad average would give less there.
        using var model = Functional((5, 5, 1), x => new AveragePooling2D(2, strides: 2, padding: Padding.Same).Apply(x));
        using var session = new InferenceSession(model.ToOnnx());
        var input = new DenseTensor<float>(Enumerable.Repeat(3f, 2 * 5 * 5).ToArray(), [2, 5, 5, 1]);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(model.Inputs[0].Layer.Name, input)]);
        var y = results.Single().AsTensor<float>();
        Assert.Equal([2, 3, 3, 1], y.Dimensions.ToArray());
        Assert.All(y.ToArray(), v => Assert.Equal(3f, v, 5));
    }

    [Fact]
    public void AdaptiveAveragePoolingLowersToAveragingMatMuls()
    {
        // Overlapping windows, one cell repeated (AlexNet at its minimum input), one axis unchanged, the identity.
        Model model;
        using (Backend.NameScope())
        {
            var x = new Input((13, 11, 3));
            var a = new AdaptiveAveragePooling2D((6, 6)).Apply(x);
            var b = new AdaptiveAveragePooling2D((13, 4)).Apply(x);
            var same = new AdaptiveAveragePooling2D((13, 11)).Apply(x);
            var cell = new GlobalMaxPooling2D(keepDims: true).Apply(x);
            var repeated = new AdaptiveAveragePooling2D((6, 6)).Apply(cell);
            model = new Model([x], [a, b, same, repeated]);
        }
        using (model)
        {
            Assert.Equal(5, OpCount(model.ToOnnx(), "MatMul")); // 2 + 1 (width only) + 0 (identity) + 2
            log.WriteLine($"adaptive average pooling: {CheckAgainstOnnxRuntime(model, seed: 13)}");
        }
        // Unknown spatial sizes: only the global case (output 1x1) has a lowering.
        using (Backend.NameScope())
        {
            var x = new Input((-1, -1, 3));
            using var global = new Model(x, new AdaptiveAveragePooling2D(1).Apply(new Conv2D(2, 3).Apply(x)));
            Assert.Equal(1, OpCount(global.ToOnnx(), "GlobalAveragePool"));
            using var six = new Model(x, new AdaptiveAveragePooling2D(6, name: "to_six").Apply(x));
            var e = Assert.Throws<UnsupportedException>(() => six.ToOnnx());
            Assert.Contains("'to_six'", e.Message);
            Assert.Contains("fixed input shape", e.Message);
        }
    }

    /// <summary>Nodes of an op type in a serialized model: NodeProto's op_type is field 4 (tag 0x22), length-prefixed.</summary>
    static int OpCount(byte[] onnx, string op) => Occurrences(onnx, [0x22, (byte)op.Length, .. System.Text.Encoding.ASCII.GetBytes(op)]);

    [Fact]
    public void EveryOtherBuiltInLayerMatches()
    {
        Model model;
        using (Backend.NameScope())
        {
            var x = new Input((9, 10, 3));
            var y = new Rescaling(1 / 2.0, offset: -0.25).Apply(x);
            y = new ZeroPadding2D((1, 2), (0, 1)).Apply(y);
            y = new Conv2D(6, 3, groups: 3, useBias: false, activation: "swish").Apply(y);
            y = new BatchNormalization(scale: false).Apply(y);
            y = new LocalResponseNormalization(depthRadius: 2, bias: 1.5, alpha: 0.1, beta: 0.75).Apply(y);
            y = new LeakyReLU(0.1).Apply(y);
            var branch = new Conv2D(6, 1, activation: Activations.LeakyReLUWith(0.05)).Apply(y);
            branch = new ELU(0.7).Apply(branch);
            y = Add.Of(y, branch, new Activation("gelu").Apply(y));
            var features = new BatchNormalization(axis: 1, center: false).Apply(y); // normalizes along height, not channels
            var g = new GlobalMaxPooling2D().Apply(features);
            var a = new GlobalAveragePooling2D(keepDims: true).Apply(features);
            a = new Flatten().Apply(new Activation("selu").Apply(a));
            var d = new Dense(8, activation: "relu6").Apply(Concatenate.Of([g, a]));
            d = new BatchNormalization().Apply(new Dropout(0.5).Apply(d));
            var logits = new Dense(5, activation: "elu").Apply(new Activation("softplus").Apply(d));
            var probabilities = new Softmax().Apply(new Activation("tanh").Apply(new Dense(4, activation: "hard_sigmoid").Apply(logits)));
            // Intermediate values are outputs too: the saturating tail alone would hide differences upstream.
            model = new Model([x], [features, logits, probabilities]);
        }
        using (model) log.WriteLine($"all layers: {CheckAgainstOnnxRuntime(model, seed: 5)}");
    }

    [Fact]
    public void ChannelsFirstExportTakesNchwAndRank3DenseUsesMatMul()
    {
        using var model = Functional((6, 4), x =>
        {
            var y = new Dense(5, activation: "elu").Apply(x);
            y = new Dense(3, useBias: false, activation: "softmax").Apply(y); // softmax over the last axis of (N, 6, 3)
            return y;
        });
        CheckAgainstOnnxRuntime(model, seed: 9, channelsLast: false);

        using var image = Functional((8, 8, 2), x => new Conv2D(3, 3, padding: Padding.Same).Apply(x));
        using var session = new InferenceSession(image.ToOnnx(channelsLast: false));
        Assert.Equal([-1, 2, 8, 8], session.InputMetadata.Values.Single().Dimensions);
        Assert.Equal([-1, 3, 8, 8], session.OutputMetadata.Values.Single().Dimensions);
        CheckAgainstOnnxRuntime(image, seed: 10, channelsLast: false);
    }

    [Fact]
    public void UnknownSpatialSizesUseSameUpperPadding()
    {
        using var model = Functional((-1, -1, 2), x =>
        {
            var y = new Conv2D(3, 3, strides: 2, padding: Padding.Same, activation: "relu").Apply(x);
            y = new MaxPooling2D(2, strides: 2, padding: Padding.Same).Apply(y);
            y = new AveragePooling2D(3, strides: 2, padding: Padding.Same).Apply(y);
            return new Dense(2).Apply(new GlobalAveragePooling2D().Apply(y));
        });
        using var session = new InferenceSession(model.ToOnnx());
        Assert.Equal([-1, -1, -1, 2], session.InputMetadata.Values.Single().Dimensions);
        foreach (var (h, w) in new[] { (7, 9), (10, 5) })
        {
            var gen = new TorchSharp.torch.Generator((ulong)(h * w));
            using var x = randn([2, 2, h, w], generator: gen);
            model.eval();
            using var expected = model.Forward([x])[0];
            using var nhwc = Layout.ToKeras(x);
            var feed = new DenseTensor<float>(nhwc.data<float>().ToArray(), [2, h, w, 2]);
            using var results = session.Run([NamedOnnxValue.CreateFromTensor(model.Inputs[0].Layer.Name, feed)]);
            var got = results.Single().AsTensor<float>().ToArray();
            var want = expected.data<float>().ToArray();
            for (int i = 0; i < want.Length; i++) Assert.True(Math.Abs(want[i] - got[i]) <= Tolerance, $"{h}x{w} [{i}]: {want[i]} vs {got[i]}");
        }
    }

    [Fact]
    public void NestedModelsAreInlinedAndSharedWeightsStoredOnce()
    {
        Model inner;
        using (Backend.NameScope())
            inner = new Sequential([new Input((8, 8, 3)), new Conv2D(4, 3, padding: Padding.Same, activation: "relu"), new MaxPooling2D(2)], name: "block");
        using var model = Functional((8, 8, 3), x =>
        {
            var a = inner.Apply(x);
            var b = inner.Apply(new Rescaling(2.0).Apply(x)); // the same nested model twice
            return new Dense(3).Apply(new Flatten().Apply(Add.Of(a, b)));
        });
        var bytes = model.ToOnnx();
        // The block's kernel is stored once although the block runs twice.
        var kernel = ((Conv2D)inner.Layers[0]).Kernel!.contiguous().bytes.ToArray();
        Assert.Equal(1, Occurrences(bytes, kernel));
        CheckAgainstOnnxRuntime(model, seed: 12);
    }

    [Fact]
    public void OpsetsAboveThirteenAreWrittenWithTheirIrVersion()
    {
        using var model = ModelRegistry.Create("lenet5", Small("lenet5"));
        foreach (int opset in new[] { 17, 21 })
            CheckAgainstOnnxRuntime(model, seed: 2, opset: opset);
        var e = Assert.Throws<ConvKitException>(() => model.ToOnnx(opset: 11));
        Assert.Contains("opset 11", e.Message);
    }

    [Fact]
    public void AFloat64ModelIsExportedWithFloat32Weights()
    {
        using var model = Functional((6, 6, 2), x => new Dense(3).Apply(new Flatten().Apply(new Conv2D(2, 3).Apply(x))));
        var float32 = model.ToOnnx();
        model.to(float64);
        Assert.Equal(float32, model.ToOnnx());
    }

    [Fact]
    public void ExportOnnxWritesAFile()
    {
        using var model = ModelRegistry.Create("lenet5", Small("lenet5"));
        var path = Path.Combine(Path.GetTempPath(), $"convkit-onnx-{Guid.NewGuid():N}.onnx");
        try
        {
            model.ExportOnnx(path);
            Assert.Equal(model.ToOnnx(), File.ReadAllBytes(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    static int Occurrences(byte[] haystack, byte[] needle)
    {
        int count = 0;
        for (int i = haystack.AsSpan().IndexOf(needle); i >= 0; i = haystack.AsSpan(i + 1).IndexOf(needle) is var j && j >= 0 ? i + 1 + j : -1) count++;
        return count;
    }

    // ------------------------------------------------------------------ errors and registration

    sealed class Cube(string? name = null) : Layer(name)
    {
        public override Shape ComputeOutputShape(Shape inputShape) => inputShape;

        public override Tensor Call(Tensor inputs)
        {
            using var three = 3.ToScalar();
            return inputs.pow(three);
        }
    }

    sealed class Doubled(string? name = null) : Layer(name)
    {
        public override Shape ComputeOutputShape(Shape inputShape) => inputShape;

        public override Tensor Call(Tensor inputs) => inputs.mul(Scalars.Two);
    }

    sealed class MyConv(int filters) : Conv2D(filters, 3);

    [Fact]
    public void ACustomLayerWithoutALoweringIsNamedInTheError()
    {
        using var model = Functional((4, 4, 2), x => new Dense(2).Apply(new Flatten().Apply(new Cube(name: "cube").Apply(x))));
        var e = Assert.Throws<ConvKitException>(() => model.ToOnnx());
        Assert.Contains("Cube 'cube'", e.Message);
        Assert.Contains("OnnxExport.Register<Cube>", e.Message);

        // A subclass of a built-in layer may compute something else: it is not exported as its base.
        using var sub = Functional((6, 6, 1), x => new MyConv(2).Apply(x));
        e = Assert.Throws<ConvKitException>(() => sub.ToOnnx());
        Assert.Contains("derives from Conv2D", e.Message);
    }

    [Fact]
    public void ARegisteredLoweringIsUsed()
    {
        OnnxExport.Register<Doubled>((ctx, layer) =>
            ctx.Graph.AddNode("Mul", [ctx.Inputs[0], ctx.Constant([2f])], [ctx.Output], name: ctx.Output));
        using var model = Functional((5, 5, 2), x => new Conv2D(3, 3).Apply(new Doubled().Apply(x)));
        CheckAgainstOnnxRuntime(model, seed: 4);
    }

    sealed class Subclassed : Model
    {
        readonly Dense dense = new(3);

        public override Tensor Call(Tensor inputs) => dense.Apply(inputs);
    }

    [Fact]
    public void SubclassedAndUnbuiltModelsGiveClearErrors()
    {
        using var subclassed = new Subclassed();
        subclassed.Build(4);
        var e = Assert.Throws<ConvKitException>(() => subclassed.ToOnnx());
        Assert.Contains("subclassed", e.Message);
        Assert.Contains("functional API", e.Message);

        using var unbuilt = new Sequential([new Dense(3)]);
        e = Assert.Throws<ConvKitException>(() => unbuilt.ToOnnx());
        Assert.Contains("not been built", e.Message);
    }

    // ------------------------------------------------------------------ the comparison

    /// <summary>
    /// Exports the model, runs it in ONNX Runtime and in ConvKit (inference mode) on the same random batch of 2, and
    /// asserts every output agrees within <see cref="Tolerance"/> (relative to the output's scale when above 1).
    /// Batch normalization statistics are randomized first so that the folded inference transform is exercised.
    /// </summary>
    internal static (double Abs, double Relative) CheckAgainstOnnxRuntime(Model model, ulong seed, bool channelsLast = true, int opset = 13)
    {
        var gen = new TorchSharp.torch.Generator(seed);
        // Explicit scalars, alive (using) until the end: TorchSharp 0.107 passes an implicit Scalar's handle to native code
        // without keeping the Scalar alive, so a GC on another test thread can finalize it mid-call ("Unknown scalar
        // type"; seen here once in a full run).
        using var half = 0.5.ToScalar();
        using var spread = 0.2.ToScalar();
        using var one = 1.0.ToScalar();
        using var zero = 0.0.ToScalar();
        using (no_grad())
            foreach (var w in model.Weights.Where(w => w.Owner is BatchNormalization))
            {
                using var r = w.Name is "moving_variance" ? rand(w.Value.shape, generator: gen) : randn(w.Value.shape, generator: gen);
                if (w.Name is "moving_variance") r.add_(half, Scalars.One);
                else r.mul_(spread).add_(w.Name == "gamma" ? one : zero, Scalars.One);
                w.Value.copy_(r);
            }
        model.eval();
        var bytes = model.ToOnnx(opset, channelsLast);
        using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        using var session = new InferenceSession(bytes, options);

        using var scope = NewDisposeScope();
        var inputs = model.Inputs.Select(i => randn(Layout.ToInternal(i.Shape, 2), generator: gen)).ToArray();
        Tensor[] expected;
        using (no_grad()) expected = model.Forward(inputs).ToArray();

        var feeds = new List<NamedOnnxValue>();
        for (int i = 0; i < inputs.Length; i++)
        {
            var x = channelsLast ? Layout.ToKeras(inputs[i]) : inputs[i];
            feeds.Add(NamedOnnxValue.CreateFromTensor(model.Inputs[i].Layer.Name,
                new DenseTensor<float>(x.contiguous().data<float>().ToArray(), x.shape.Select(d => (int)d).ToArray())));
        }
        using var results = session.Run(feeds);
        Assert.Equal(expected.Length, results.Count);
        double worst = 0, worstAbs = 0;
        for (int o = 0; o < expected.Length; o++)
        {
            var want = channelsLast ? Layout.ToKeras(expected[o]) : expected[o];
            var got = results[o].AsTensor<float>();
            Assert.Equal(want.shape, got.Dimensions.ToArray().Select(d => (long)d).ToArray());
            var w = want.contiguous().data<float>().ToArray();
            var g = got.ToArray();
            double scale = Math.Max(1, w.Max(Math.Abs));
            Assert.All(w, v => Assert.True(float.IsFinite(v)));
            for (int i = 0; i < w.Length; i++)
            {
                double d = Math.Abs(w[i] - g[i]);
                worst = Math.Max(worst, d / scale);
                worstAbs = Math.Max(worstAbs, d);
                Assert.True(d <= Tolerance * scale, $"{model.Name} output {o} [{i}]: ConvKit {w[i]} vs ONNX Runtime {g[i]} (scale {scale})");
            }
        }
        return (worstAbs, worst);
    }
}
