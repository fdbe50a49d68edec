using TorchSharp;
using ConvKit.Applications;
using ConvKit.Data;
using ConvKit.Formats.Onnx;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Quantization;
using ConvKit.Tests.Models;
using ConvKit.Tests.Training;
using Microsoft.ML.OnnxRuntime;
using static TorchSharp.torch;

namespace ConvKit.Tests.Quantization;

/// <summary>
/// Post-training static int8 quantization (issue 17, goal 3): the QDQ graph loads in ONNX Runtime and runs on its
/// integer kernels, LeNet-5 trained on real Fashion-MNIST keeps its predictions, per-channel weight scales and
/// activation parameters are the hand-computed ones, errors are named, threads agree with one thread.
/// </summary>
[Collection(nameof(GlobalRandomCollection))]
public class QuantizerTests
{
    static Model ResNet20(int seed)
    {
        manual_seed(seed);
        var model = ModelRegistry.Create("resnet20", new ModelOptions { InputShape = (32, 32, 3), Classes = 10 });
        ConcurrentInferenceTests.Randomize(model, seed + 1);
        return model;
    }

    /// <summary>Op types of the graph ONNX Runtime runs after its optimizations (its optimized-model dump).</summary>
    static List<string> OptimizedOps(QuantizedModel q)
    {
        var dir = Directory.CreateTempSubdirectory("convkit-q8-test-");
        try
        {
            var path = Path.Combine(dir.FullName, "int8.onnx");
            q.Save(path);
            var optimized = Path.Combine(dir.FullName, "optimized.onnx");
            using (var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, OptimizedModelFilePath = optimized })
            using (new InferenceSession(path, options)) { }
            return [.. OnnxReader.Read(optimized).Graph.Nodes.Select(n => n.OpType)];
        }
        finally { dir.Delete(recursive: true); }
    }

    [Fact]
    public void ResNet20QdqGraphRunsOnOrtIntegerKernels()
    {
        using var model = ResNet20(3);
        manual_seed(4);
        using var calibration = randn(64, 32, 32, 3);
        using var q = Quantizer.Quantize(model, calibration, new QuantizationOptions { Samples = 64, BatchSize = 32 });
        var ops = OptimizedOps(q);
        Assert.Contains("QLinearConv", ops);
        Assert.Contains("QLinearAdd", ops);
        Assert.DoesNotContain("Conv", ops);     // every convolution is an integer one
        Assert.DoesNotContain("Add", ops);      // and every residual addition
        Assert.True(ops.Count(o => o == "QLinearConv") >= 19, string.Join(",", ops));
        using var x = randn(3, 32, 32, 3);
        using var y = q.Predict(x);
        Assert.Equal(new long[] { 3, 10 }, y.shape);
    }

    [Fact]
    public void LeNet5TrainedOnFashionMnistKeepsItsPredictionsAndAccuracy()
    {
        var (train, test) = Datasets.FashionMnist.Load();
        manual_seed(7);
        using var model = ModelRegistry.Create("lenet5", new ModelOptions());
        model.Compile(optimizer: "adam", loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
        using var maxPixel = 255f.ToScalar();
        using var xTrain = train.Images.narrow(0, 0, 4000).to(float32).div(maxPixel);
        using var yTrain = train.Labels.narrow(0, 0, 4000);
        model.Fit(xTrain, yTrain, batchSize: 64, epochs: 2, verbose: 0);
        using var xTest = test.Images.narrow(0, 0, 1000).to(float32).div(maxPixel);
        using var yTest = test.Labels.narrow(0, 0, 1000);
        using var q = Quantizer.Quantize(model, xTrain, new QuantizationOptions { Samples = 300 });
        Assert.Equal("MinMax on 300 samples", q.Calibration);
        using var fp32 = model.Predict(xTest, batchSize: 256);
        using var int8 = q.Predict(xTest, batchSize: 100);
        using var agree = fp32.argmax(1).eq(int8.argmax(1)).to(float32).mean();
        Assert.True(agree.item<float>() >= 0.97f, $"top-1 agreement {agree.item<float>():P1}");
        double a32 = model.Evaluate(xTest, yTest, batchSize: 256, verbose: 0)["accuracy"];
        double a8 = q.Evaluate(xTest, yTest)["accuracy"];
        Assert.True(a32 > 0.7, $"FP32 accuracy {a32:P1}: training failed");
        Assert.True(Math.Abs(a32 - a8) <= 0.015, $"FP32 {a32:P2} vs int8 {a8:P2}");
        Assert.Contains("QLinearConv", OptimizedOps(q));
    }

    [Fact]
    public void PerChannelWeightScalesAndActivationParametersAreTheHandComputedOnes()
    {
        // 1x1 convolution, 2 input and 2 output channels (ConvKit keeps kernels OIHW, as ONNX does).
        var inputs = new Input(new Shape(3, 3, 2), name: "x");
        var conv = new Conv2D(2, kernelSize: (1, 1), name: "c");
        using var model = new Model(inputs, conv.Apply(inputs));
        model.Build((3, 3, 2));
        using (no_grad())
        {
            // out channel 0: w = (0.254, -0.127) -> scale 0.002, int8 (127, -64); out 1: (0.5, 1.27) -> 0.01, (50, 127).
            using var k = tensor(new float[] { 0.254f, -0.127f, 0.5f, 1.27f }).reshape(2, 2, 1, 1);
            conv.Kernel!.copy_(k);
            conv.Bias!.copy_(tensor(new float[] { 0.1f, -0.2f }));
        }
        // Inputs in [-0.51, 2.04]: scale 2.55 / 255 = 0.01, zero point 51.
        using var x = linspace(-0.51, 2.04, 18).reshape(1, 3, 3, 2).to(float32);
        using var q = Quantizer.Quantize(model, x);
        var dir = Directory.CreateTempSubdirectory("convkit-q8-test-");
        try
        {
            var path = Path.Combine(dir.FullName, "c.onnx");
            q.Save(path);
            var init = OnnxReader.Read(path).Graph.Initializers;
            var wName = init.Keys.Single(n => n.EndsWith("/int8", StringComparison.Ordinal));
            using var scale = init[wName + "/scale"].ToTensor();
            Assert.Equal(0.002f, scale[0].item<float>(), 1e-7f);
            Assert.Equal(0.01f, scale[1].item<float>(), 1e-7f);
            using var w = init[wName].ToTensor();   // OIHW: [[127, -64], [50, 127]]
            Assert.Equal(new long[] { 127, -64, 50, 127 }, w.flatten().data<long>().ToArray());
            using var xScale = init["x/scale"].ToTensor();
            using var xZero = init["x/zero_point"].ToTensor();
            Assert.Equal(0.01f, xScale.item<float>(), 1e-7f);
            Assert.Equal(51L, xZero.item<long>());
            var bName = init.Keys.Single(n => n.EndsWith("/int32", StringComparison.Ordinal));
            using var b = init[bName].ToTensor();   // 0.1 / (0.01 * 0.002) = 5000, -0.2 / (0.01 * 0.01) = -2000
            Assert.Equal(new long[] { 5000, -2000 }, b.data<long>().ToArray());
        }
        finally { dir.Delete(recursive: true); }
        using var fp32 = model.Predict(x);
        using var int8 = q.Predict(x);
        using var diff = (fp32 - int8).abs().max();
        Assert.True(diff.item<float>() < 0.05f, $"largest difference {diff.item<float>()}");
    }

    [Fact]
    public void ActivationParametersHoldZeroAndSpanTheRange()
    {
        Assert.Equal((0.01f, (byte)0), QdqGraph.ActivationParameters(0.5f, 2.55f));   // widened to hold 0
        var (s, z) = QdqGraph.ActivationParameters(-1f, 1.55f);
        Assert.Equal(0.01f, s, 1e-7f);
        Assert.Equal((byte)100, z);
        Assert.Equal((1f, (byte)0), QdqGraph.ActivationParameters(0f, 0f));
    }

    [Fact]
    public void ErrorsAreNamed()
    {
        using var model = ModelRegistry.Create("lenet5", new ModelOptions());
        using var empty = zeros(0, 28, 28, 1);
        var e = Assert.Throws<InvalidOptionException>(() => Quantizer.Quantize(model, empty));
        Assert.Equal("calibration_images", e.Option);
        using var wrong = zeros(4, 32, 32, 3);
        var s = Assert.Throws<ShapeException>(() => Quantizer.Quantize(model, wrong));
        Assert.Contains("(None, 28, 28, 1)", s.Message);
        using var x = zeros(4, 28, 28, 1);
        Assert.Equal("samples", Assert.Throws<InvalidOptionException>(() => Quantizer.Quantize(model, x, new QuantizationOptions { Samples = -1 })).Option);
        Assert.Equal("percentile", Assert.Throws<InvalidOptionException>(() => Quantizer.Quantize(model, x, new QuantizationOptions { Percentile = 20 })).Option);

        // A layer the exporter has no lowering for is named.
        var inputs = new Input(new Shape(28, 28, 1));
        using var odd = new Model(inputs, new Dense(3).Apply(new Flatten().Apply(new NoLowering(name: "mystery").Apply(inputs))));
        var u = Assert.Throws<UnsupportedException>(() => Quantizer.Quantize(odd, x));
        Assert.Contains("mystery", u.Message);

        // Nothing to quantize.
        var i2 = new Input(new Shape(28, 28, 1));
        using var pool = new Model(i2, new MaxPooling2D(poolSize: (2, 2)).Apply(i2));
        var n = Assert.Throws<UnsupportedException>(() => Quantizer.Quantize(pool, x));
        Assert.Contains("no convolution or dense layer", n.Message);

        using var q = Quantizer.Quantize(model, x);
        using var bad = zeros(2, 28, 28, 3);
        Assert.Throws<ShapeException>(() => q.Predict(bad));
        Assert.Equal("path", Assert.Throws<InvalidOptionException>(() => QuantizedModel.Load("/nonexistent/q.onnx")).Option);
        var junk = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(junk, [1, 2, 3, 4, 5]);
            Assert.Throws<InvalidFileException>(() => QuantizedModel.Load(junk));
        }
        finally { File.Delete(junk); }
    }

    sealed class NoLowering(string? name = null) : Layer(name)
    {
        public override Shape ComputeOutputShape(Shape inputShape) => inputShape;

        public override Tensor Call(Tensor inputs) => inputs.alias();
    }

    [Fact]
    public void ManyThreadsGiveWhatOneThreadGivesAndSaveLoadKeepsIt()
    {
        using var model = ResNet20(11);
        manual_seed(12);
        using var calibration = randn(32, 32, 32, 3);
        using var q = Quantizer.Quantize(model, calibration, new QuantizationOptions { Method = CalibrationMethod.Percentile });
        Assert.StartsWith("Percentile 99.999 on 32 samples", q.Calibration);
        var batches = Enumerable.Range(0, 4).Select(i => randn(4 + i, 32, 32, 3)).ToArray();
        try
        {
            var alone = batches.Select(b => q.Predict(b).data<float>().ToArray()).ToArray();
            var results = new float[4 * 6][];
            Parallel.For(0, results.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
            {
                using var y = q.Predict(batches[i % 4]);
                results[i] = y.data<float>().ToArray();
            });
            for (int i = 0; i < results.Length; i++) Assert.Equal(alone[i % 4], results[i]);

            var path = Path.Combine(Path.GetTempPath(), $"convkit-q8-{Guid.NewGuid():N}.onnx");
            try
            {
                q.Save(path);
                using var back = QuantizedModel.Load(path, threads: 1);
                Assert.Equal(model.Name, back.ModelName);
                Assert.Equal(new Shape(32, 32, 3), back.InputShape);
                using var y0 = back.Predict(batches[0]);
                Assert.Equal(alone[0], y0.data<float>().ToArray());
            }
            finally { File.Delete(path); }
        }
        finally { foreach (var b in batches) b.Dispose(); }
    }

    /// <summary>What <c>convkit predict|serve</c> need of an int8 file: the preprocessing and class names stored at
    /// quantization come back from the file, and a quantized file is told from every other file by its metadata.</summary>
    [Fact]
    public void PreprocessingAndClassNamesRoundTripAndQuantizedFilesAreRecognised()
    {
        using var model = ModelRegistry.Create("lenet5", new ModelOptions());
        using var x = rand(8, 28, 28, 1);
        string[] names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
        var dir = Directory.CreateTempSubdirectory("convkit-q8-meta-").FullName;
        try
        {
            using (var bare = Quantizer.Quantize(model, x))
            {
                Assert.Null(bare.Preprocessing);
                Assert.Null(bare.ClassNames);
                Assert.Equal(new Shape(10), bare.OutputShape);
            }
            var path = Path.Combine(dir, "m.onnx");
            using (var q = Quantizer.Quantize(model, x, new QuantizationOptions { Preprocessing = Preprocessing.Torch, ClassNames = names }))
                q.Save(path);
            using (var back = QuantizedModel.Load(path))
            {
                Assert.Equal(Preprocessing.Torch, back.Preprocessing);
                Assert.Equal(names, back.ClassNames);
                Assert.Equal(new Shape(10), back.OutputShape);
                // The image classifier takes it as it takes a model: top-1 is the argmax of Predict.
                var png = Path.Combine(dir, "x.png");
                Cli.TrainedRun.WritePng(png, 40, 30);
                using var classifier = new ImageClassifier(back, back.Preprocessing!.Value, back.ClassNames);
                var top = classifier.Predict([png], top: 3)[0].Top;
                using var pixels = ImageClassifier.LoadImages([png], back.InputShape, Preprocessing.Torch);
                using var y = back.Predict(pixels);
                using var best = y.argmax(1);
                Assert.Equal(best.item<long>(), top[0].Index);
                Assert.Equal(names[top[0].Index], top[0].Name);
            }
            Assert.True(QuantizedModel.IsQuantizedModelFile(path));

            var fp32 = Path.Combine(dir, "fp32.onnx");
            model.ExportOnnx(fp32);
            Assert.False(QuantizedModel.IsQuantizedModelFile(fp32));
            var weights = Path.Combine(dir, "w.safetensors");
            model.SaveWeights(weights);
            Assert.False(QuantizedModel.IsQuantizedModelFile(weights));
            Assert.False(QuantizedModel.IsQuantizedModelFile(dir));
            Assert.False(QuantizedModel.IsQuantizedModelFile(Path.Combine(dir, "missing.onnx")));
            var bytes = File.ReadAllBytes(path);
            var truncated = Path.Combine(dir, "truncated.onnx");
            File.WriteAllBytes(truncated, bytes[..(bytes.Length / 2)]);
            Assert.False(QuantizedModel.IsQuantizedModelFile(truncated)); // its metadata follows the graph, which runs past the end
            Assert.Throws<InvalidFileException>(() => QuantizedModel.Load(truncated));

            var e = Assert.Throws<InvalidOptionException>(() => Quantizer.Quantize(model, x, new QuantizationOptions { ClassNames = ["a", "b"] }));
            Assert.Equal("class_names", e.Option);
            Assert.Contains("2 names", e.Message);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
