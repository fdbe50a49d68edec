using ConvKit.Callbacks;
using ConvKit.Data;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Tests.Data;
using TorchSharp;
using static TorchSharp.torch;
using Padding = ConvKit.Padding;

namespace ConvKit.Tests;

/// <summary>The examples of the README and docs/defining-models.md, compiled and run, so the documentation cannot drift from the API.</summary>
[Collection(nameof(ConvKit.Tests.Training.GlobalRandomCollection))]
public class ReadmeExamplesTests
{
    static Model BuildModel()
    {
        var inputs = new Input(shape: (28, 28, 3));
        var conv1 = new Conv2D(32, kernelSize: (5, 5)).Apply(inputs);
        var maxpool1 = new MaxPooling2D(poolSize: (2, 2)).Apply(conv1);
        var predictions = new Dense(10, activation: "softmax").Apply(new Flatten().Apply(maxpool1));
        return new Model(inputs: inputs, outputs: predictions);
    }

    static SymbolicTensor NaiveInceptionBlock(SymbolicTensor prevLayer, int[] filters)
    {
        var conv1x1 = new Conv2D(filters[0], kernelSize: (1, 1), padding: Padding.Same, activation: "relu").Apply(prevLayer);
        var conv3x3 = new Conv2D(filters[1], kernelSize: (3, 3), padding: Padding.Same, activation: "relu").Apply(prevLayer);
        var conv5x5 = new Conv2D(filters[2], kernelSize: (5, 5), padding: Padding.Same, activation: "relu").Apply(prevLayer);
        var maxPool = new MaxPool2D((3, 3), strides: (1, 1), padding: Padding.Same).Apply(prevLayer);
        return Concatenate.Of([conv1x1, conv3x3, conv5x5, maxPool], axis: -1);
    }

    static SymbolicTensor ResidualBlock(SymbolicTensor x, int filters, int strides = 1)
    {
        var shortcut = x;
        x = new Conv2D(filters, 3, strides: strides, padding: Padding.Same, activation: "relu").Apply(x);
        x = new BatchNormalization().Apply(x);
        x = new Conv2D(filters, 3, padding: Padding.Same).Apply(x);
        x = new BatchNormalization().Apply(x);
        if (strides != 1 || x.Shape[-1] != shortcut.Shape[-1])
        {
            shortcut = new Conv2D(filters, 1, strides: strides, padding: Padding.Same).Apply(shortcut);
            shortcut = new BatchNormalization().Apply(shortcut);
        }
        return new Activation("relu").Apply(Add.Of(x, shortcut));
    }

    /// <summary>Seed 001's LeNet5, subclassed, exactly as the README shows it (also used by SeedModelTests).</summary>
    internal sealed class LeNet5 : Model
    {
        readonly Conv2D conv1 = new(6, kernelSize: (5, 5), padding: Padding.Same, activation: "relu");
        readonly Conv2D conv2 = new(16, kernelSize: (5, 5), activation: "relu");
        readonly MaxPooling2D maxPool = new(poolSize: (2, 2));
        readonly Flatten flatten = new();
        readonly Dense dense1 = new(120, activation: "relu");
        readonly Dense dense2 = new(84, activation: "relu");
        readonly Dense dense3;

        public LeNet5(int numClasses) => dense3 = new Dense(numClasses, activation: "softmax");

        public override Tensor Call(Tensor inputData)
        {
            var x = maxPool.Apply(conv1.Apply(inputData));
            x = maxPool.Apply(conv2.Apply(x));
            x = flatten.Apply(x);
            return dense3.Apply(dense2.Apply(dense1.Apply(x)));
        }
    }

    [Fact]
    public void ModelDefinitionsBuildWithTheDocumentedShapes()
    {
        using var _ = Backend.NameScope();
        var functional = BuildModel();
        Assert.Equal(48522, functional.CountParams());
        var input = new Input((32, 32, 192));
        var block = new Model(input, ResidualBlock(NaiveInceptionBlock(input, [64, 128, 32]), 64, strides: 2));
        Assert.Equal(new Shape(32, 32, 416), block.GetLayer("concatenate").InboundNodes[0].Output.Shape);
        Assert.Equal(new Shape(16, 16, 64), block.ModelOutputShape);
        Assert.Contains("Connected to", block.Summary());
        var lenet = new LeNet5(numClasses: 10);
        lenet.Build((28, 28, 1));
        Assert.Equal(61706, lenet.CountParams());
        var rows = ConvArithmetic.Trace(32, new ConvStep(3, Padding: Padding.Same), new ConvStep(3, Padding: Padding.Same));
        Assert.Equal(5, rows[^1].Field.Size);
    }

    [Fact]
    public void TrainingExampleRuns()
    {
        // The README loads the real MNIST; here a small MNIST-format folder stands in (MNIST itself is not installable here).
        var folder = Directory.CreateTempSubdirectory("convkit-readme-").FullName;
        try
        {
            DataFiles.WriteIdxDataset(folder, trainCount: 64, testCount: 16);
            var (train, test) = Datasets.Mnist.Load(folder);
            using var maxPixel = 255f.ToScalar(); // the README divides by 255f: the same float, kept alive
            using var xTrain = train.Images.to(float32).div(maxPixel);
            using var xTest = test.Images.to(float32).div(maxPixel);

            var model = new LeNet5(numClasses: 10);
            model.Compile(optimizer: "sgd", loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
            var callbacks = new Callback[]
            {
                new EarlyStopping(patience: 3, monitor: "val_loss"),
                new TensorBoard(logDir: Path.Combine(folder, "logs"), histogramFreq: 1),
                new LearningRateScheduler(epoch => epoch <= 2 ? 0.0005 : epoch <= 5 ? 0.0002 : epoch <= 9 ? 0.00005 : 0.00001),
            };
            var history = model.Fit(xTrain, train.Labels, batchSize: 32, epochs: 2, verbose: 0,
                validationData: (xTest, test.Labels), callbacks: callbacks);
            var scores = model.Evaluate(xTest, test.Labels, verbose: 0);
            Assert.Equal(2, history.Epoch.Count);
            Assert.True(scores.ContainsKey("loss") && scores.ContainsKey("accuracy"));
            Assert.Equal(0.0005, history["lr"][1], 12);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
