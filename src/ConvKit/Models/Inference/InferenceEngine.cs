namespace ConvKit.Models.Inference;

/// <summary>
/// Which engine an <see cref="InferenceModel"/> computes with (<see cref="Model.InferenceEngine"/>,
/// <see cref="Model.AsInferenceModel(InferenceEngine)"/>).
/// </summary>
public enum InferenceEngine
{
    /// <summary>
    /// Measure, then keep the faster: the first two batches run on <see cref="TorchSharp"/>; the third runs on both
    /// engines twice, alternating, and the engine with the shorter time serves every later batch of that inference
    /// model (that is, until the weights change or <see cref="Backend.Threads"/> changes, when Predict makes a new
    /// one). When the ONNX Runtime session cannot be made, <see cref="TorchSharp"/> serves and
    /// <see cref="InferenceModel.EngineFallbackReason"/> says why.
    /// </summary>
    Auto,

    /// <summary>ConvKit's own inference plan on libtorch (folded batch normalization, packed oneDNN kernels).</summary>
    TorchSharp,

    /// <summary>
    /// An ONNX Runtime session built from ConvKit's own ONNX export of the model (NCHW, the weights as they were when
    /// the inference model was made), with <see cref="Backend.Threads"/> intra-op threads. CPU float32 models only;
    /// when the export or the session fails, the TorchSharp plan serves and
    /// <see cref="InferenceModel.EngineFallbackReason"/> says why.
    /// </summary>
    OnnxRuntime,
}
