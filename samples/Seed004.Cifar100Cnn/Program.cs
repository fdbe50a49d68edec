// Seed 004: a small CNN for CIFAR-100, functional API, trained one epoch with Adam.
// CIFAR-100 is replaced by Fashion-MNIST brought to CIFAR's shape (padded to 32x32, grey copied to 3 channels), so the
// model is the seed's own (325,956 parameters, 100 outputs) and training means something; its 10 classes are
// labels 0-9 of the 100. `--smoke` trains on 512 images and tests on 256 (seconds).
using TorchSharp;
using static TorchSharp.torch;

var smoke = args.Contains("--smoke");

// (x_train, y_train), (x_test, y_test) = cifar100.load_data(); x_train, x_test = x_train/255.0, x_test/255.0
var (train, test) = Datasets.FashionMnist.Load();
var (xTrain, yTrain) = CifarShaped(train, smoke ? 512 : train.Count);
var (xTest, yTest) = CifarShaped(test, smoke ? 256 : test.Count);

Console.WriteLine($"입력데이터 크기 :  ({string.Join(", ", xTrain.shape)})"); // input data size
Console.WriteLine($"정답데이터 크기 :  ({string.Join(", ", yTrain.shape)})"); // label size

var imgInput = new Input(shape: (32, 32, 3));   // keras.Input(shape=x_train.shape[1:])
var x = new Conv2D(16, 3, activation: "relu").Apply(imgInput);
x = new MaxPool2D((2, 2)).Apply(x);
x = new Conv2D(32, 3, activation: "relu").Apply(x);
x = new MaxPool2D((2, 2)).Apply(x);
x = new Flatten().Apply(x);
x = new Dense(256, activation: "relu").Apply(x);
var predictions = new Dense(100, activation: "softmax").Apply(x);
var model = new Model(inputs: imgInput, outputs: predictions);
model.PrintSummary();

// 모델 학습 (train the model)
model.Compile(optimizer: "adam", loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
model.Fit(xTrain, yTrain, epochs: 1, verbose: smoke ? 2 : 1);
var scores = model.Evaluate(xTest, yTest, verbose: 0);
Console.WriteLine($"test loss: {scores["loss"]:F4} - test accuracy: {scores["accuracy"]:F4}");
return 0;

// Fashion-MNIST (N, 28, 28, 1) uint8 -> (N, 32, 32, 3) float in [0, 1], the shape of CIFAR-100's images.
static (Tensor X, Tensor Y) CifarShaped(ImageDataset split, int count)
{
    using var scale = (1.0 / 255.0).ToScalar();
    using var images = split.Images.narrow(0, 0, count).to(float32).mul(scale);
    using var padded = nn.functional.pad(images, [0, 0, 2, 2, 2, 2]); // (C: 0, 0), (W: 2, 2), (H: 2, 2)
    return (padded.repeat(1, 1, 1, 3), split.Labels.narrow(0, 0, count).clone());
}
