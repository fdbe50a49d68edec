using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>
/// One-line builders of the model zoo, like <c>keras.applications.VGG16(...)</c> (<c>Zoo.VGG16(...)</c>; formerly the
/// class <c>Applications</c>, renamed so that no class is named like its namespace). Each is
/// <see cref="ModelRegistry.Create(string, ModelOptions?)"/> with the model's registry name.
/// </summary>
/// <remarks>Every builder throws <see cref="LayerArgumentException"/> for invalid options (the message names the option).</remarks>
public static class Zoo
{
    /// <summary>Seed 001's LeNet-5 (ReLU, max pooling), 28x28x1, 10 classes.</summary>
    public static Model LeNet5(ModelOptions? options = null) => ModelRegistry.Create("lenet5", options);

    /// <summary>Seed 002's classic LeNet-5 (tanh, average pooling).</summary>
    public static Model LeNet5Classic(ModelOptions? options = null) => ModelRegistry.Create("lenet5_classic", options);

    /// <summary>Seed 002's AlexNet (batch norm, L2), 227x227.</summary>
    public static Model AlexNet(ModelOptions? options = null) => ModelRegistry.Create("alexnet", options);

    /// <summary>Seed 003's plain AlexNet.</summary>
    public static Model AlexNetPlain(ModelOptions? options = null) => ModelRegistry.Create("alexnet_plain", options);

    /// <summary>VGG-11, optionally with batch norm.</summary>
    public static Model VGG11(ModelOptions? options = null, bool batchNorm = false) => ModelRegistry.Create(batchNorm ? "vgg11_bn" : "vgg11", options);

    /// <summary>VGG-13, optionally with batch norm.</summary>
    public static Model VGG13(ModelOptions? options = null, bool batchNorm = false) => ModelRegistry.Create(batchNorm ? "vgg13_bn" : "vgg13", options);

    /// <summary>keras.applications.VGG16 (optionally with batch norm).</summary>
    public static Model VGG16(ModelOptions? options = null, bool batchNorm = false) => ModelRegistry.Create(batchNorm ? "vgg16_bn" : "vgg16", options);

    /// <summary>keras.applications.VGG19 (optionally with batch norm).</summary>
    public static Model VGG19(ModelOptions? options = null, bool batchNorm = false) => ModelRegistry.Create(batchNorm ? "vgg19_bn" : "vgg19", options);

    /// <summary>Seed 002's GoogLeNet (inception_v1); <paramref name="auxClassifiers"/> adds the paper's two auxiliary outputs.</summary>
    /// <exception cref="LayerArgumentException">Invalid options, or auxiliary classifiers without the top.</exception>
    public static Model GoogLeNet(ModelOptions? options = null, bool auxClassifiers = false)
    {
        if (!auxClassifiers) return ModelRegistry.Create("googlenet", options);
        var resolved = ModelRegistry.Get("googlenet").Resolve(options);
        using var _ = Backend.NameScope();
        return ConvKit.Applications.GoogLeNet.Build(ConvKit.Applications.GoogLeNet.Seed002, resolved, auxClassifiers: true);
    }

    /// <summary>keras.applications.InceptionV3, 299x299.</summary>
    public static Model InceptionV3(ModelOptions? options = null) => ModelRegistry.Create("inception_v3", options);

    /// <summary>ResNet-18 (basic blocks, Keras naming).</summary>
    public static Model ResNet18(ModelOptions? options = null) => ModelRegistry.Create("resnet18", options);

    /// <summary>ResNet-34 (basic blocks, Keras naming).</summary>
    public static Model ResNet34(ModelOptions? options = null) => ModelRegistry.Create("resnet34", options);

    /// <summary>keras.applications.ResNet50.</summary>
    public static Model ResNet50(ModelOptions? options = null) => ModelRegistry.Create("resnet50", options);

    /// <summary>keras.applications.ResNet101.</summary>
    public static Model ResNet101(ModelOptions? options = null) => ModelRegistry.Create("resnet101", options);

    /// <summary>keras.applications.ResNet152.</summary>
    public static Model ResNet152(ModelOptions? options = null) => ModelRegistry.Create("resnet152", options);

    /// <summary>He et al.'s CIFAR-10 ResNet-20.</summary>
    public static Model ResNet20(ModelOptions? options = null) => ModelRegistry.Create("resnet20", options);

    /// <summary>He et al.'s CIFAR-10 ResNet-56.</summary>
    public static Model ResNet56(ModelOptions? options = null) => ModelRegistry.Create("resnet56", options);

    /// <summary>He et al.'s CIFAR-10 ResNet-110.</summary>
    public static Model ResNet110(ModelOptions? options = null) => ModelRegistry.Create("resnet110", options);

    /// <summary>Seed 004's small CIFAR-100 CNN.</summary>
    public static Model Cifar100Cnn(ModelOptions? options = null) => ModelRegistry.Create("cifar100_cnn", options);

    /// <summary>ConvKit's small Fashion-MNIST ResNet, the model of the time-to-accuracy recipe.</summary>
    public static Model FashionResNet(ModelOptions? options = null) => ModelRegistry.Create("fmnist_resnet", options);
}
