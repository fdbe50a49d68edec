// Seed 002: LeNet-5, AlexNet, GoogLeNet (Inception v1) and ResNet's residual blocks, in Keras.
// LeNet-5 is trained as in the seed, with its step learning-rate schedule and a checkpoint of the best model, on
// Fashion-MNIST (the seed uses MNIST: same shapes). The seed's AlexNet and GoogLeNet are ImageNet-sized: built and
// summarized. `--smoke` trains LeNet-5 on 512 images for 2 epochs instead of 60,000 for 20.
using TorchSharp;
using static TorchSharp.torch;

var smoke = args.Contains("--smoke");

// ---------------------------------------------------------------- LeNet-5
var model = new Sequential();
// conv1
model.Add(new Conv2D(filters: 6, kernelSize: 5, strides: 1, activation: "tanh", inputShape: (28, 28, 1), padding: "same"));
model.Add(new AveragePooling2D(poolSize: 2, strides: 2, padding: "valid"));
// conv2
model.Add(new Conv2D(filters: 16, kernelSize: 5, strides: 1, activation: "tanh", padding: "same"));
model.Add(new AveragePooling2D(poolSize: 2, strides: 2, padding: "valid"));
// conv3
model.Add(new Conv2D(filters: 120, kernelSize: 5, strides: 1, activation: "tanh", padding: "same"));
model.Add(new Flatten());
model.Add(new Dense(units: 84, activation: "tanh"));
model.Add(new Dense(units: 10, activation: "softmax"));
model.PrintSummary();

// LeNet-5 uses scheduled decay learning.
static double LrSchedule(int epoch) =>
    epoch <= 2 ? 0.0005
    : epoch <= 5 ? 0.0002
    : epoch <= 9 ? 0.00005
    : 0.00001;

var (train, test) = Datasets.FashionMnist.Load();
int nTrain = smoke ? 512 : train.Count, nTest = smoke ? 256 : test.Count;
using var maxPixel = 255f.ToScalar();
using var xTrain = train.Images.narrow(0, 0, nTrain).to(float32).div(maxPixel);
using var xTest = test.Images.narrow(0, 0, nTest).to(float32).div(maxPixel);
using var yTrain = DataUtils.ToCategorical(train.Labels.narrow(0, 0, nTrain), 10);   // to_categorical: one-hot
using var yTest = DataUtils.ToCategorical(test.Labels.narrow(0, 0, nTest), 10);

var lrScheduler = new LearningRateScheduler(LrSchedule);
// The seed writes 'file.hdf5'; ConvKit's native format is safetensors.
var checkpointDir = Directory.CreateTempSubdirectory("seed002-").FullName;
var checkpoint = new ModelCheckpoint(filepath: Path.Combine(checkpointDir, "file.safetensors"),
                                     monitor: "val_accuracy", verbose: 1, saveBestOnly: true);
// The seed names an undefined lr_reducer here and monitors Keras 1's 'val_acc': the scheduler above, and 'val_accuracy'.
var callbacks = new Callback[] { checkpoint, lrScheduler };
model.Compile(loss: "categorical_crossentropy", optimizer: "sgd", metrics: ["accuracy"]);
var hist = model.Fit(xTrain, yTrain, batchSize: 32, epochs: smoke ? 2 : 20,
                     validationData: (xTest, yTest), callbacks: callbacks,
                     verbose: 2, shuffle: true);

var score = model.Evaluate(xTest, yTest, verbose: 0);
var accuracy = 100 * score["accuracy"];
Console.WriteLine($"test accuracy: {accuracy:F4}%");
Directory.Delete(checkpointDir, recursive: true);

// ---------------------------------------------------------------- AlexNet (with batch normalization)
var alexnet = new Sequential();
// 1st layer
alexnet.Add(new Conv2D(filters: 96, kernelSize: (11, 11), strides: (4, 4), padding: "valid", inputShape: (227, 227, 3)));
alexnet.Add(new Activation("relu"));
alexnet.Add(new MaxPool2D(poolSize: (3, 3), strides: (2, 2)));
alexnet.Add(new BatchNormalization());
// 2nd layer
alexnet.Add(new Conv2D(filters: 256, kernelSize: (5, 5), strides: (1, 1), padding: "same", kernelRegularizer: new L2(0.0005)));
alexnet.Add(new Activation("relu"));
alexnet.Add(new MaxPool2D(poolSize: (3, 3), strides: (2, 2), padding: "valid"));
alexnet.Add(new BatchNormalization());
// 3rd, 4th and 5th layers
foreach (var filters in new[] { 384, 384, 256 })
{
    alexnet.Add(new Conv2D(filters: filters, kernelSize: (3, 3), strides: (1, 1), padding: "same", kernelRegularizer: new L2(0.0005)));
    alexnet.Add(new Activation("relu"));
    alexnet.Add(new BatchNormalization());
}
alexnet.Add(new MaxPool2D(poolSize: (3, 3), strides: (2, 2), padding: "valid"));
alexnet.Add(new Flatten());
// 6th and 7th layers
alexnet.Add(new Dense(units: 4096, activation: "relu"));
alexnet.Add(new Dropout(0.5));
alexnet.Add(new Dense(units: 4096, activation: "relu"));
alexnet.Add(new Dropout(0.5));
// 8th layer
alexnet.Add(new Dense(units: 1000, activation: "softmax"));
alexnet.PrintSummary();
alexnet.Dispose();

// ---------------------------------------------------------------- GoogLeNet (Inception v1)
var kernelInit = Initializers.GlorotUniform;
var biasInit = Initializers.Constant(0.2);

SymbolicTensor InceptionModule(SymbolicTensor x, int filters1x1, int filters3x3Reduce, int filters3x3,
                               int filters5x5Reduce, int filters5x5, int filtersPoolProj, string? name = null)
{
    var conv1x1 = new Conv2D(filters1x1, kernelSize: (1, 1), padding: "same", activation: "relu", kernelInitializer: kernelInit, biasInitializer: biasInit).Apply(x);
    // 3x3 route
    var preConv3x3 = new Conv2D(filters3x3Reduce, kernelSize: (1, 1), padding: "same", activation: "relu", kernelInitializer: kernelInit, biasInitializer: biasInit).Apply(x);
    var conv3x3 = new Conv2D(filters3x3, kernelSize: (3, 3), padding: "same", activation: "relu", kernelInitializer: kernelInit, biasInitializer: biasInit).Apply(preConv3x3);
    // 5x5 route
    var preConv5x5 = new Conv2D(filters5x5Reduce, kernelSize: (1, 1), padding: "same", activation: "relu", kernelInitializer: kernelInit, biasInitializer: biasInit).Apply(x);
    var conv5x5 = new Conv2D(filters5x5, kernelSize: (5, 5), padding: "same", activation: "relu", kernelInitializer: kernelInit, biasInitializer: biasInit).Apply(preConv5x5);
    // pool route
    var poolProj = new MaxPool2D((3, 3), strides: (1, 1), padding: "same").Apply(x);
    poolProj = new Conv2D(filtersPoolProj, kernelSize: (1, 1), padding: "same", activation: "relu", kernelInitializer: kernelInit, biasInitializer: biasInit).Apply(poolProj);
    return new Concatenate(axis: 3, name: name).Apply(conv1x1, conv3x3, conv5x5, poolProj);
}

var inputLayer = new Input(shape: (224, 224, 3));
var g = new Conv2D(64, (7, 7), strides: 2, padding: "same", activation: "relu", kernelInitializer: kernelInit, biasInitializer: biasInit).Apply(inputLayer);
g = new MaxPool2D((3, 3), strides: 2, padding: "same").Apply(g);
g = new Conv2D(192, (3, 3), strides: 1, padding: "same", activation: "relu", kernelInitializer: kernelInit, biasInitializer: biasInit).Apply(g);
g = new MaxPool2D((3, 3), strides: 2, padding: "same").Apply(g);
g = InceptionModule(g, 64, 96, 128, 16, 32, 32, "inception3a");
g = InceptionModule(g, 128, 128, 192, 32, 96, 64, "inception3b");
g = new MaxPool2D((3, 3), strides: 2, padding: "same").Apply(g);
g = InceptionModule(g, 192, 96, 208, 16, 48, 64, "inception4a");
g = InceptionModule(g, 160, 112, 224, 24, 64, 64, "inception4b");
g = InceptionModule(g, 128, 128, 256, 24, 64, 64, "inception4c");
g = InceptionModule(g, 112, 144, 288, 32, 64, 64, "inception4d");
g = InceptionModule(g, 256, 160, 320, 32, 128, 128, "inception4e");
g = new MaxPool2D((3, 3), strides: 2, padding: "same").Apply(g);
g = InceptionModule(g, 256, 160, 320, 32, 128, 128, "inception5a");
g = InceptionModule(g, 384, 192, 384, 48, 128, 128, "inception5b");
g = new GlobalAveragePooling2D().Apply(g);
g = new Dropout(0.4).Apply(g);
g = new Dense(1000, activation: "softmax").Apply(g);
var googlenet = new Model(inputLayer, g, name: "inception_v1");
googlenet.PrintSummary(new SummaryOptions { LineLength = 140 });
googlenet.Dispose();

// ---------------------------------------------------------------- ResNet: the bottleneck residual block
SymbolicTensor BottleneckResidualBlock(SymbolicTensor x, int kernelSize, (int F1, int F2, int F3) filters, bool reduce = false, int s = 2)
{
    var (f1, f2, f3) = filters;
    var xShortcut = x;
    if (reduce)
    {
        xShortcut = new Conv2D(filters: f3, kernelSize: (1, 1), strides: (s, s)).Apply(x);
        x = new Conv2D(filters: f1, kernelSize: (1, 1), strides: (s, s), padding: "valid").Apply(x);
    }
    else
    {
        x = new Conv2D(filters: f1, kernelSize: (1, 1), strides: (1, 1), padding: "valid").Apply(x);
    }
    x = new BatchNormalization(axis: 3).Apply(x);
    x = new Activation("relu").Apply(x);
    // The seed writes kernel_size=(1, 1) here and ignores its kernel_size argument; ResNet's middle convolution is 3x3.
    x = new Conv2D(filters: f2, kernelSize: kernelSize, strides: (1, 1), padding: "same").Apply(x);
    x = new BatchNormalization(axis: 3).Apply(x);
    x = new Activation("relu").Apply(x);
    x = new Conv2D(filters: f3, kernelSize: (1, 1), strides: (1, 1), padding: "valid").Apply(x);
    x = new BatchNormalization(axis: 3).Apply(x);
    x = new Activation("relu").Apply(x);
    x = new Add().Apply(x, xShortcut);
    return new Activation("relu").Apply(x);
}

var blockInput = new Input(shape: (56, 56, 64));
var block = new Model(blockInput, BottleneckResidualBlock(blockInput, 3, (64, 64, 256), reduce: true, s: 1), name: "bottleneck_residual_block");
block.PrintSummary();
return 0;
