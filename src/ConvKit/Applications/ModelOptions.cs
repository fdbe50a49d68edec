using ConvKit.Layers;

namespace ConvKit.Applications;

/// <summary>Global pooling applied to the last feature map when a model is built without its classifier.</summary>
public enum PoolingMode
{
    /// <summary>Keep the feature map: the output is (height, width, channels).</summary>
    None,

    /// <summary>GlobalAveragePooling2D: the output is (channels,).</summary>
    Avg,

    /// <summary>GlobalMaxPooling2D: the output is (channels,).</summary>
    Max,
}

/// <summary>How inputs must be prepared for a model, as keras.applications' <c>preprocess_input</c> modes.</summary>
public enum Preprocessing
{
    /// <summary>Use the pixels as the caller provides them (the seeds' CIFAR/MNIST models scale to [0, 1]).</summary>
    None,

    /// <summary>RGB to BGR, subtract the ImageNet channel means, no scaling (VGG, ResNet v1).</summary>
    Caffe,

    /// <summary>Scale to [-1, 1] (Inception v3).</summary>
    TF,

    /// <summary>Scale to [0, 1], then normalise with the ImageNet mean and standard deviation.</summary>
    Torch,
}

/// <summary>
/// Options of <see cref="ModelRegistry.Create(string, ModelOptions?)"/>, keras.applications' arguments:
/// <c>include_top</c>, <c>input_shape</c>, <c>pooling</c>, <c>classes</c>, <c>classifier_activation</c>.
/// </summary>
public sealed record ModelOptions
{
    /// <summary>Whether to include the classifier (the layers after the last feature map). Default true.</summary>
    public bool IncludeTop { get; init; } = true;

    /// <summary>The sample shape (height, width, channels); null for the model's default.</summary>
    public Shape? InputShape { get; init; }

    /// <summary>Global pooling after the last feature map; only allowed without the top.</summary>
    public PoolingMode Pooling { get; init; } = PoolingMode.None;

    /// <summary>Number of classes of the classifier; null for the model's default.</summary>
    public int? Classes { get; init; }

    /// <summary>Activation of the last layer: "softmax" (default), or null / "linear" for logits.</summary>
    public string? ClassifierActivation { get; init; } = "softmax";

    /// <summary>
    /// Weights to load after building: null (random, the default), <c>"imagenet"</c> (keras.applications' published
    /// file for this model, from <see cref="WeightsCache"/>), or the path of a Keras .h5 file or, for the <c>*_tv</c>
    /// models, a torchvision .safetensors state dict.
    /// </summary>
    public string? Weights { get; init; }

    /// <summary>Where <c>Weights = "imagenet"</c> looks for (and downloads) files; null for <c>WeightsCache.Default</c>.</summary>
    public WeightsCache? WeightsCache { get; init; }

    /// <summary>The defaults: the model as published, with its classifier.</summary>
    public static ModelOptions Default { get; } = new();
}

/// <summary>The options of one build, validated and completed with the model's defaults.</summary>
/// <param name="IncludeTop">Whether the classifier is built.</param>
/// <param name="InputShape">The sample shape.</param>
/// <param name="Pooling">Pooling after the features when there is no top.</param>
/// <param name="Classes">Classes of the classifier.</param>
/// <param name="ClassifierActivation">Activation of the last layer.</param>
public sealed record ResolvedOptions(bool IncludeTop, Shape InputShape, PoolingMode Pooling, int Classes, ActivationFunction ClassifierActivation);
