using static TorchSharp.torch;

namespace ConvKit.Models.Inference;

/// <summary>
/// What turns a batch of samples into outputs: a <see cref="Model"/>, its <see cref="InferenceModel"/>, or an int8
/// <see cref="Quantization.QuantizedModel"/>. <see cref="Applications.ImageClassifier"/> and the server take any of them.
/// Every implementation in ConvKit may be called from several threads at once; each call gives what it gives alone.
/// </summary>
public interface IPredictor
{
    /// <summary>The model's name.</summary>
    string Name { get; }

    /// <summary>One sample's input shape (Keras layout, without the batch axis).</summary>
    Shape InputShape { get; }

    /// <summary>One sample's output shape.</summary>
    Shape OutputShape { get; }

    /// <summary>The outputs for the samples of <paramref name="x"/> (N, ...), <paramref name="batchSize"/> at a time.</summary>
    /// <param name="x">Float32 samples, preprocessed as the model was trained.</param>
    /// <param name="batchSize">Samples per forward pass.</param>
    /// <returns>A new tensor (N, ...), owned by the caller.</returns>
    Tensor Predict(Tensor x, int batchSize);
}
