// Seed 001: the building blocks of CNNs (convolution, pooling, dense layers, receptive fields), LeNet-5 trained on
// MNIST, VGG-16, the Sequential / functional / subclassed ways to define a model, inception and residual blocks,
// GoogLeNet and ResNet for CIFAR-10. Here Fashion-MNIST replaces MNIST (same shapes), and Fashion-MNIST padded to
// 32x32 with its grey copied to 3 channels replaces CIFAR-10 (same shapes, 10 classes).
// `--smoke` trains LeNet-5 on 512 images for 2 epochs, only builds the CIFAR-sized VGG16 and ResNet, and leaves out
// the keras.applications models (see Seed000).
using System.Reflection;
using TorchSharp;
using static TorchSharp.torch;

var smoke = args.Contains("--smoke");
var logs = Directory.CreateTempSubdirectory("seed001-logs-").FullName;

// print("TensorFlow version:", tf.__version__)
Console.WriteLine($"ConvKit version: {typeof(Model).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]}");
Console.WriteLine($"TorchSharp version: {typeof(torch).Assembly.GetName().Version}");

// ---------------------------------------------------------------- convolution, the low-level way
var glorotInitializer = Initializers.GlorotUniform;
var (k, D, N) = (3, 16, 32);
long[] kernelSize = [k, k, D, N];
using var kernels = empty(kernelSize);
glorotInitializer.Fill(kernels, fanIn: k * k * D, fanOut: k * k * N);   // Keras' fans of a (k, k, D, N) kernel
using var bias = zeros(N);

// tf.nn.conv2d(x, kernels, strides=[1, s, s, 1], padding='VALID') on NHWC data, then ReLU
static Tensor ConvLayer(Tensor x, Tensor kernels, Tensor bias, int s) =>
    nn.functional.relu(Ops.Conv2D(x, kernels, [1, s, s, 1], "VALID", DataFormat.ChannelsLast, bias: bias));

using (var x = rand(1, 28, 28, D))
using (var y = ConvLayer(x, kernels, bias, 1))
    Console.WriteLine($"conv_layer: ({string.Join(", ", x.shape)}) -> ({string.Join(", ", y.shape)})");

// A layer written with the low-level API: SimpleCNN (see the class at the end of the file).
using (var simple = new SimpleCNN(numKernels: 32, kernelSize: (3, 3), stride: 1))
using (var x = rand(1, 28, 28, 1))
using (var y = new Sequential([simple]).Predict(x))
    Console.WriteLine($"SimpleCNN: ({string.Join(", ", x.shape)}) -> ({string.Join(", ", y.shape)}), {simple.CountParams()} params");

// ---------------------------------------------------------------- the same with the Keras API
var s = 1;
var conv = new Conv2D(filters: N, kernelSize: (k, k), strides: s, padding: "valid", activation: "relu");

// Pooling: OH = (H + 2P - FH) / S + 1
(k, s) = (3, 1);
var avgPool = new AvgPool2D(poolSize: k, strides: (s, s), padding: "valid");
var maxPool = new MaxPool2D(poolSize: k, strides: (s, s), padding: "valid");

// Fully connected
var outputSize = 64;
var fc = new Dense(units: outputSize, activation: "relu");

var layersModel = new Sequential([new InputLayer((28, 28, D)), conv, avgPool, maxPool, new Flatten(), fc]);
layersModel.PrintSummary();

// Effective receptive field: two stacked 3x3 convolutions see 5x5 pixels, three see 7x7 (VGG's argument).
var trace = ConvArithmetic.Trace(32, new ConvStep(3, Padding: "same"), new ConvStep(3, Padding: "same"), new ConvStep(3, Padding: "same"));
Console.WriteLine($"receptive field of 2 stacked 3x3 convolutions: {trace[1].Field.Size}x{trace[1].Field.Size}, of 3: {trace[2].Field.Size}x{trace[2].Field.Size}");

// ---------------------------------------------------------------- LeNet-5 on (Fashion-)MNIST
var (train, test) = Datasets.FashionMnist.Load();     // (x_train, y_train), (x_test, y_test) = mnist.load_data()
int nTrain = smoke ? 512 : train.Count, nTest = smoke ? 256 : test.Count;
using var xTrainBytes = train.Images.narrow(0, 0, nTrain);   // already (N, 28, 28, 1): x_train[..., np.newaxis]
using var yTrain = train.Labels.narrow(0, 0, nTrain);
using var xTestBytes = test.Images.narrow(0, 0, nTest);
using var yTest = test.Labels.narrow(0, 0, nTest);
Console.WriteLine($"({string.Join(", ", xTrainBytes.shape)})");
Console.WriteLine($"({string.Join(", ", yTrain.shape)})");
Console.WriteLine($"({string.Join(", ", xTestBytes.shape)})");
Console.WriteLine($"({string.Join(", ", yTest.shape)})");
PrintImage(xTrainBytes[0, .., .., 0]);                  // print(x_train[0, :, :, 0]): 0 is black, 255 white

using var maxPixel = 255f.ToScalar();
using var xTrain = xTrainBytes.to(float32).div(maxPixel);   // x_train / 255.0: values between 0 and 1
using var xTest = xTestBytes.to(float32).div(maxPixel);

var numClasses = 10;
var epochs = smoke ? 2 : 100;
var batchSize = 32;

var model = new LeNet5(numClasses);
model.Compile(optimizer: "sgd", loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
var callbacks = new Callback[]
{
    new EarlyStopping(patience: 3, monitor: "val_loss"),
    new TensorBoard(logDir: Path.Combine(logs, "lenet5"), histogramFreq: 1),
};
model.Fit(xTrain, yTrain, batchSize: batchSize, epochs: epochs, validationData: (xTest, yTest), callbacks: callbacks,
          verbose: smoke ? 2 : 1);
model.PrintSummary();
var lenetScores = model.Evaluate(xTest, yTest, verbose: 0);
Console.WriteLine($"LeNet-5 test accuracy: {lenetScores["accuracy"]:F4}");

// ---------------------------------------------------------------- VGG-16
if (!smoke)
{
    using var vggNet = Zoo.VGG16(new ModelOptions { IncludeTop = true, Weights = null, InputShape = null,
                                                             Pooling = PoolingMode.None, Classes = 1000 });
    vggNet.PrintSummary();
}

// CIFAR-10 stand-in: Fashion-MNIST in CIFAR's shape, one-hot labels (to_categorical).
int nCifar = smoke ? 64 : train.Count, nCifarTest = smoke ? 64 : test.Count;
var (cifarTrain, cifarTrainLabels) = CifarShaped(train, nCifar);
var (cifarTest, cifarTestLabels) = CifarShaped(test, nCifarTest);

var vgg16 = new VGG16(numClasses: 10);
vgg16.Compile(optimizer: "adam", loss: "categorical_crossentropy", metrics: ["accuracy"]);
if (smoke)
    vgg16.Build((32, 32, 3));   // the smoke run builds it; a training step checks 13 new convolution shapes (seconds)
else
    vgg16.Fit(cifarTrain, cifarTrainLabels, batchSize: 64, epochs: 20, validationData: (cifarTest, cifarTestLabels));
Console.WriteLine($"VGG16 (subclassed, CIFAR-10 shape): {vgg16.CountParams()} params");
vgg16.Dispose();

// ---------------------------------------------------------------- Sequential, functional
var inputShape = (28, 28, 3);
var sequential = new Sequential();
sequential.Add(new Conv2D(32, kernelSize: (5, 5), inputShape: inputShape));
sequential.Add(new MaxPool2D(poolSize: (2, 2)));
sequential.Add(new Flatten());
sequential.Add(new Dense(10, activation: "softmax"));
sequential.PrintSummary();

Model BuildModel()
{
    var inputs = new Input(shape: inputShape);
    var conv1 = new Conv2D(32, kernelSize: (5, 5)).Apply(inputs);
    var maxpool1 = new MaxPooling2D(poolSize: (2, 2)).Apply(conv1);
    var predictions = new Dense(10, activation: "softmax").Apply(new Flatten().Apply(maxpool1));
    return new Model(inputs: inputs, outputs: predictions);
}
BuildModel().PrintSummary();

// ---------------------------------------------------------------- inception
SymbolicTensor NaiveInceptionBlock(SymbolicTensor prevLayer, int[]? filters = null)
{
    filters ??= [64, 128, 32];
    var conv1x1 = new Conv2D(filters[0], kernelSize: (1, 1), padding: "same", activation: "relu").Apply(prevLayer);
    var conv3x3 = new Conv2D(filters[1], kernelSize: (3, 3), padding: "same", activation: "relu").Apply(prevLayer);
    var conv5x5 = new Conv2D(filters[2], kernelSize: (5, 5), padding: "same", activation: "relu").Apply(prevLayer);
    var maxPool = new MaxPool2D((3, 3), strides: (1, 1), padding: "same").Apply(prevLayer);
    return Concatenate.Of([conv1x1, conv3x3, conv5x5, maxPool], axis: -1);
}
var inceptionInput = new Input(shape: (32, 32, 192));
new Model(inceptionInput, NaiveInceptionBlock(inceptionInput), name: "naive_inception_block").PrintSummary();

if (!smoke)
{
    using var inceptionV3 = Zoo.InceptionV3(new ModelOptions { IncludeTop = true, Weights = null, Classes = 1000 });
    inceptionV3.PrintSummary();
}

SymbolicTensor InceptionModule(SymbolicTensor x, int f1x1, int f3x3Reduce, int f3x3, int f5x5Reduce, int f5x5, int fPoolProj)
{
    var conv1x1 = new Conv2D(f1x1, (1, 1), padding: "same", activation: "relu").Apply(x);
    var conv3x3 = new Conv2D(f3x3Reduce, (1, 1), padding: "same", activation: "relu").Apply(x);
    conv3x3 = new Conv2D(f3x3, (3, 3), padding: "same", activation: "relu").Apply(conv3x3);
    var conv5x5 = new Conv2D(f5x5Reduce, (1, 1), padding: "same", activation: "relu").Apply(x);
    conv5x5 = new Conv2D(f5x5, (5, 5), padding: "same", activation: "relu").Apply(conv5x5);
    var pool = new MaxPooling2D((3, 3), strides: (1, 1), padding: "same").Apply(x);
    pool = new Conv2D(fPoolProj, (1, 1), padding: "same", activation: "relu").Apply(pool);
    return Concatenate.Of([conv1x1, conv3x3, conv5x5, pool], axis: -1);
}

Model GoogLeNet((int, int, int) inputShape, int numClasses)
{
    var inputLayer = new Input(shape: inputShape);
    // 초기 합성곱 및 풀링 레이어 (stem)
    var x = new Conv2D(64, (7, 7), strides: (2, 2), padding: "same", activation: "relu").Apply(inputLayer);
    x = new MaxPooling2D((3, 3), strides: (2, 2), padding: "same").Apply(x);
    x = new Conv2D(64, (1, 1), padding: "same", activation: "relu").Apply(x);
    x = new Conv2D(192, (3, 3), padding: "same", activation: "relu").Apply(x);
    x = new MaxPooling2D((3, 3), strides: (2, 2), padding: "same").Apply(x);
    // Inception 모듈 쌓기 (stacked inception modules)
    x = InceptionModule(x, 64, 96, 128, 16, 32, 32);
    x = InceptionModule(x, 128, 128, 192, 32, 96, 64);
    x = new MaxPooling2D((3, 3), strides: (2, 2), padding: "same").Apply(x);
    x = InceptionModule(x, 192, 96, 208, 16, 48, 64);
    x = InceptionModule(x, 160, 112, 224, 24, 64, 64);
    x = InceptionModule(x, 128, 128, 256, 24, 64, 64);
    x = InceptionModule(x, 112, 144, 288, 32, 64, 64);
    x = InceptionModule(x, 256, 160, 320, 32, 128, 128);
    x = new MaxPooling2D((3, 3), strides: (2, 2), padding: "same").Apply(x);
    x = InceptionModule(x, 256, 160, 320, 32, 128, 128);
    x = InceptionModule(x, 384, 192, 384, 48, 128, 128);
    // 완전 연결 레이어 (classifier)
    x = new AveragePooling2D((4, 4), padding: "same").Apply(x);
    x = new Flatten().Apply(x);
    x = new Dense(1024, activation: "relu").Apply(x);
    x = new Dense(numClasses, activation: "softmax").Apply(x);
    return new Model(inputLayer, x, name: "GoogLeNet");
}
using (var googlenet = GoogLeNet(inputShape: (32, 32, 3), numClasses: 10))
    Console.WriteLine($"GoogLeNet (CIFAR-10 shape): {googlenet.CountParams()} params");

// ---------------------------------------------------------------- residual blocks and ResNet
SymbolicTensor ResidualBlockBasic(SymbolicTensor x, int filters, int kernelSize = 3, int strides = 1)
{
    var conv1 = new Conv2D(filters: filters, kernelSize: kernelSize, padding: "same", strides: strides).Apply(x);
    var bn1 = new BatchNormalization(axis: -1).Apply(conv1);   // the seed writes axis=1, which is not the channel axis
    var act1 = new Activation("relu").Apply(bn1);
    var conv2 = new Conv2D(filters: filters, kernelSize: kernelSize, padding: "same", strides: 1).Apply(act1);
    var residual = new BatchNormalization(axis: -1).Apply(conv2);
    var shortcut = strides == 1 ? x : new Conv2D(filters, kernelSize: 1, padding: "valid", strides: strides).Apply(x);
    return new Activation("relu").Apply(Add.Of(shortcut, residual));
}
var basicInput = new Input(shape: (32, 32, 64));
new Model(basicInput, ResidualBlockBasic(basicInput, 64), name: "residual_block_basic").PrintSummary();

if (!smoke)
{
    using var resnet50 = Zoo.ResNet50(new ModelOptions { IncludeTop = true, Weights = null, Classes = 1000 });
    resnet50.PrintSummary();
}

SymbolicTensor ResidualBlock(SymbolicTensor x, int filters, int kernelSize = 3, int stride = 1)
{
    // 잔차 연결에 사용될 입력 (the input, kept for the skip connection)
    var shortcut = x;
    x = new Conv2D(filters, kernelSize: kernelSize, strides: stride, padding: "same", activation: "relu").Apply(x);
    x = new BatchNormalization().Apply(x);
    x = new Conv2D(filters, kernelSize: kernelSize, padding: "same", activation: null).Apply(x);
    x = new BatchNormalization().Apply(x);
    // 스킵 연결이 필요할 경우 (a projection when the shape changes)
    if (stride != 1 || x.Shape[-1] != shortcut.Shape[-1])
    {
        shortcut = new Conv2D(filters, kernelSize: 1, strides: stride, padding: "same").Apply(shortcut);
        shortcut = new BatchNormalization().Apply(shortcut);
    }
    x = Add.Of(x, shortcut);
    return new Activation("relu").Apply(x);
}

Model ResNet((int, int, int) inputShape, int numClasses)
{
    var inputLayer = new Input(shape: inputShape);
    var x = new Conv2D(64, (3, 3), padding: "same", activation: "relu").Apply(inputLayer);
    x = new BatchNormalization().Apply(x);
    x = ResidualBlock(x, filters: 64, stride: 1);
    x = ResidualBlock(x, filters: 64, stride: 1);
    x = ResidualBlock(x, filters: 128, stride: 2);   // 공간 크기 감소 (halves the spatial size)
    x = ResidualBlock(x, filters: 128, stride: 1);
    x = ResidualBlock(x, filters: 256, stride: 2);
    x = ResidualBlock(x, filters: 256, stride: 1);
    x = ResidualBlock(x, filters: 512, stride: 2);
    x = ResidualBlock(x, filters: 512, stride: 1);
    x = new GlobalAveragePooling2D().Apply(x);
    x = new Dense(numClasses, activation: "softmax").Apply(x);
    return new Model(inputLayer, x, name: "ResNet");
}

var resnet = ResNet(inputShape: (32, 32, 3), numClasses: 10);
resnet.Compile(optimizer: "adam", loss: "categorical_crossentropy", metrics: ["accuracy"]);
if (!smoke) // the smoke run only builds it, as VGG16 above
    resnet.Fit(cifarTrain, cifarTrainLabels, batchSize: 128, epochs: 10, validationData: (cifarTest, cifarTestLabels));
Console.WriteLine($"ResNet (CIFAR-10 shape): {resnet.CountParams()} params");
Directory.Delete(logs, recursive: true);
return 0;

static void PrintImage(Tensor image)
{
    for (var r = 0; r < image.shape[0]; r++)
    {
        using var row = image[r];
        Console.WriteLine(string.Join(" ", row.data<byte>().ToArray().Select(v => v.ToString().PadLeft(3))));
    }
}

// Fashion-MNIST (N, 28, 28, 1) uint8 -> (N, 32, 32, 3) float in [0, 1] and one-hot labels, CIFAR-10's shapes.
static (Tensor X, Tensor Y) CifarShaped(ImageDataset split, int count)
{
    using var scale = (1.0 / 255.0).ToScalar();
    using var images = split.Images.narrow(0, 0, count).to(float32).mul(scale);
    using var padded = nn.functional.pad(images, [0, 0, 2, 2, 2, 2]);
    using var labels = split.Labels.narrow(0, 0, count);
    return (padded.repeat(1, 1, 1, 3), DataUtils.ToCategorical(labels, 10));
}

/// <summary>Seed 001's SimpleCNN: a convolution written with the low-level API, as a custom layer.</summary>
sealed class SimpleCNN : Layer
{
    readonly int numKernels;
    readonly Size2 kernelSize;
    readonly int stride;
    Tensor? kernels, bias;

    public SimpleCNN(int numKernels = 32, Size2? kernelSize = null, int stride = 1, string? name = null) : base(name)
    {
        this.numKernels = numKernels;
        this.kernelSize = kernelSize ?? (3, 3);
        this.stride = stride;
    }

    protected override void Build(Shape inputShape)
    {
        var inputChannels = inputShape[-1];
        long[] kernelsShape = [kernelSize.Height, kernelSize.Width, inputChannels, numKernels];
        long receptive = (long)kernelSize.Height * kernelSize.Width;
        kernels = AddWeight("kernels", kernelsShape, Initializers.GlorotUniform, receptive * inputChannels, receptive * numKernels);
        bias = AddWeight("bias", [numKernels], Initializers.RandomNormal, 1, 1);
    }

    public override Tensor Call(Tensor inputs) =>
        // Inside a layer, images are NCHW; the kernel is kept in TF's (kh, kw, in, out) layout, as the seed keeps it.
        nn.functional.relu(Ops.Conv2D(inputs, kernels!.permute(3, 2, 0, 1), [stride], "VALID", DataFormat.ChannelsFirst, bias: bias));
}

/// <summary>Seed 001's subclassed LeNet-5.</summary>
sealed class LeNet5 : Model
{
    readonly Conv2D conv1 = new(6, kernelSize: (5, 5), padding: "same", activation: "relu");
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

/// <summary>Seed 001's subclassed VGG16 for CIFAR-10.</summary>
sealed class VGG16 : Model
{
    // 1~2단계 합성곱과 풀링
    readonly Conv2D conv1_1 = new(64, (3, 3), padding: "same", activation: "relu");
    readonly Conv2D conv1_2 = new(64, (3, 3), padding: "same", activation: "relu");
    readonly MaxPooling2D pool1 = new((2, 2), strides: (2, 2));
    // 3~4단계
    readonly Conv2D conv2_1 = new(128, (3, 3), padding: "same", activation: "relu");
    readonly Conv2D conv2_2 = new(128, (3, 3), padding: "same", activation: "relu");
    readonly MaxPooling2D pool2 = new((2, 2), strides: (2, 2));
    // 5~7단계
    readonly Conv2D conv3_1 = new(256, (3, 3), padding: "same", activation: "relu");
    readonly Conv2D conv3_2 = new(256, (3, 3), padding: "same", activation: "relu");
    readonly Conv2D conv3_3 = new(256, (3, 3), padding: "same", activation: "relu");
    readonly MaxPooling2D pool3 = new((2, 2), strides: (2, 2));
    // 8~10단계
    readonly Conv2D conv4_1 = new(512, (3, 3), padding: "same", activation: "relu");
    readonly Conv2D conv4_2 = new(512, (3, 3), padding: "same", activation: "relu");
    readonly Conv2D conv4_3 = new(512, (3, 3), padding: "same", activation: "relu");
    readonly MaxPooling2D pool4 = new((2, 2), strides: (2, 2));
    // 11~13단계
    readonly Conv2D conv5_1 = new(512, (3, 3), padding: "same", activation: "relu");
    readonly Conv2D conv5_2 = new(512, (3, 3), padding: "same", activation: "relu");
    readonly Conv2D conv5_3 = new(512, (3, 3), padding: "same", activation: "relu");
    readonly MaxPooling2D pool5 = new((2, 2), strides: (2, 2));
    // 완전 연결 레이어
    readonly Flatten flatten = new();
    readonly Dense fc1 = new(4096, activation: "relu");
    readonly Dense fc2 = new(4096, activation: "relu");
    readonly Dense outputLayer;

    public VGG16(int numClasses) => outputLayer = new Dense(numClasses, activation: "softmax");

    public override Tensor Call(Tensor inputs)
    {
        var x = pool1.Apply(conv1_2.Apply(conv1_1.Apply(inputs)));
        x = pool2.Apply(conv2_2.Apply(conv2_1.Apply(x)));
        x = pool3.Apply(conv3_3.Apply(conv3_2.Apply(conv3_1.Apply(x))));
        x = pool4.Apply(conv4_3.Apply(conv4_2.Apply(conv4_1.Apply(x))));
        x = pool5.Apply(conv5_3.Apply(conv5_2.Apply(conv5_1.Apply(x))));
        x = flatten.Apply(x);
        x = fc2.Apply(fc1.Apply(x));
        return outputLayer.Apply(x);
    }
}
