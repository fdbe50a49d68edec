using ConvKit.Models.Inference;
using static TorchSharp.torch;

namespace ConvKit.Models;

public partial class Model : IPredictor
{
    string IPredictor.Name => Name;

    Shape IPredictor.InputShape => ModelInputShape;

    Shape IPredictor.OutputShape => ModelOutputShape;

    Tensor IPredictor.Predict(Tensor x, int batchSize) => Predict(x, batchSize);

    /// <summary>
    /// The engine Predict and Evaluate compute with (and <see cref="AsInferenceModel()"/>'s default):
    /// <see cref="Inference.InferenceEngine.TorchSharp"/> (the default: ConvKit's inference plan on libtorch),
    /// <see cref="Inference.InferenceEngine.OnnxRuntime"/> (a session built from ConvKit's own ONNX export, rebuilt with
    /// the inference model after any write to the weights or a change of <see cref="Backend.Threads"/>), or
    /// <see cref="Inference.InferenceEngine.Auto"/> (measures both on the third batch and keeps the faster). Outputs of
    /// the two engines agree within 1e-5 relative; NaN and infinities come out as layer by layer on both.
    /// </summary>
    public InferenceEngine InferenceEngine { get; set; } = InferenceEngine.TorchSharp;

    /// <summary>
    /// <see cref="AsInferenceModel()"/> with the engine given here instead of <see cref="InferenceEngine"/>. With
    /// <see cref="Inference.InferenceEngine.OnnxRuntime"/> the session is built now; when it cannot be (a model that is
    /// not CPU float32, a layer without an ONNX lowering), the TorchSharp plan serves and
    /// <see cref="InferenceModel.EngineFallbackReason"/> says why.
    /// </summary>
    /// <param name="engine">The engine to compute with.</param>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    /// <exception cref="GraphException">The model is not built yet.</exception>
    public InferenceModel AsInferenceModel(InferenceEngine engine)
    {
        ThrowIfDisposed();
        if (!IsBuilt) throw NotBuilt();
        return new InferenceModel(this, graph, InferenceOptimizations, engine);
    }

    /// <summary>
    /// <see cref="AsInferenceModel(Inference.InferenceEngine)"/>, optionally batch-invariant: with
    /// <paramref name="batchInvariant"/> each sample's output does not depend on the batch it runs in (Dense layers run
    /// sample by sample; see <see cref="InferenceModel.BatchInvariant"/>), so a server that batches requests answers
    /// each bit for bit as <c>Predict</c> on that input alone would. A
    /// batch-invariant inference model computes on ConvKit's plan (TorchSharp engine) whatever
    /// <paramref name="engine"/> says (<see cref="InferenceModel.EngineFallbackReason"/> tells).
    /// </summary>
    /// <param name="engine">The engine to compute with.</param>
    /// <param name="batchInvariant">Whether outputs must not depend on the batch size.</param>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    /// <exception cref="GraphException">The model is not built yet.</exception>
    public InferenceModel AsInferenceModel(InferenceEngine engine, bool batchInvariant)
    {
        ThrowIfDisposed();
        if (!IsBuilt) throw NotBuilt();
        return new InferenceModel(this, graph, InferenceOptimizations, engine, batchInvariant);
    }
}
