using System.Runtime.InteropServices;
using ConvKit.Saving;
using Microsoft.ML.OnnxRuntime;
using TensorElementType = Microsoft.ML.OnnxRuntime.Tensors.TensorElementType;
using static TorchSharp.torch;

namespace ConvKit.Models.Inference;

/// <summary>
/// An ONNX Runtime session over ConvKit's own export of a model, run on libtorch tensors. The export's image inputs and
/// outputs are in the model's <see cref="Model.InputDataFormat"/>: for a Keras-layout model (N, H, W, C), so that the
/// batch Predict hands over (the user's (N, H, W, C) tensor seen in the internal layout through a permute) is read by
/// ORT in place, with no copy and no libtorch call; an input whose memory is not laid out that way is copied once into
/// a contiguous float32 tensor. Each output is copied into a new tensor (image outputs returned as internal-layout views). <see cref="InferenceSession.Run(RunOptions, IReadOnlyCollection{string}, IReadOnlyCollection{OrtValue}, IReadOnlyCollection{string})"/>
/// is safe to call from many threads at once, and so is <see cref="TryRun"/>.
/// </summary>
internal sealed unsafe class OrtSession : IDisposable
{
    readonly InferenceSession session;
    readonly string[] inputNames;
    readonly string[] outputNames;
    readonly RunOptions runOptions = new();

    // Whether the export's image inputs and outputs are (N, H, W, C).
    readonly bool channelsLast;

    OrtSession(InferenceSession session, int threads, bool channelsLast)
    {
        this.session = session;
        this.channelsLast = channelsLast;
        Threads = threads;
        inputNames = [.. session.InputNames];
        outputNames = [.. session.OutputNames];
    }

    /// <summary>The intra-op threads the session was made with.</summary>
    public int Threads { get; }

    /// <summary>
    /// A session for <paramref name="model"/> with <paramref name="threads"/> intra-op threads, or null with the reason
    /// (a CPU float32 model is needed; the export or ORT may refuse).
    /// </summary>
    public static OrtSession? TryCreate(Model model, int threads, out string? reason)
    {
        reason = null;
        var weights = model.Weights.Select(w => w.Value).ToArray();
        if (weights.Any(w => w.device_type != TorchSharp.DeviceType.CPU))
        {
            reason = $"model '{model.Name}' is not on the CPU; the ONNX Runtime engine runs CPU models only.";
            return null;
        }
        if (weights.Any(w => w.is_floating_point() && w.dtype != ScalarType.Float32))
        {
            reason = $"model '{model.Name}' has weights of a floating type other than float32; the ONNX Runtime engine runs float32 models only.";
            return null;
        }
        byte[] bytes;
        bool channelsLast = model.InputDataFormat == DataFormat.ChannelsLast;
        try
        {
            bytes = OnnxExport.ToBytes(model, new OnnxExportOptions { ChannelsLast = channelsLast });
        }
        catch (ConvKitException e)
        {
            reason = $"the ONNX export of model '{model.Name}' failed: {e.Message}";
            return null;
        }
        try
        {
            using var options = new SessionOptions
            {
                IntraOpNumThreads = threads,
                InterOpNumThreads = 1,
                ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
                GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            };
            var session = new InferenceSession(bytes, options);
            if (session.InputNames.Count != model.Inputs.Count || session.OutputNames.Count != model.Outputs.Count
                || session.InputMetadata.Values.Any(m => m.ElementDataType != TensorElementType.Float))
            {
                session.Dispose();
                reason = $"the ONNX export of model '{model.Name}' does not take and give the model's float inputs and outputs one to one.";
                return null;
            }
            return new OrtSession(session, threads, channelsLast);
        }
        catch (Exception e) when (e is OnnxRuntimeException or DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
        {
            reason = $"ONNX Runtime could not load model '{model.Name}': {e.Message}";
            return null;
        }
    }

    /// <summary>
    /// Runs one batch of internal-layout inputs; returns new float32 CPU tensors in the internal layout, or null when an
    /// input or an output holds NaN or an infinity (the caller then runs the exact path). The finiteness checks are
    /// managed scans of memory already at hand, not libtorch reductions (whose thread-pool hand-offs cost more than
    /// LeNet-5's whole forward pass on a busy machine).
    /// </summary>
    public Tensor[]? TryRun(IReadOnlyList<Tensor> inputs)
    {
        var views = new Tensor[inputs.Count];
        var copies = new Tensor?[inputs.Count];
        var values = new OrtValue[inputs.Count];
        try
        {
            for (int i = 0; i < inputs.Count; i++)
            {
                var x = inputs[i];
                views[i] = channelsLast && x.dim() == 4 ? x.permute(0, 2, 3, 1) : x.alias();
                var data = views[i];
                if (data.dtype != ScalarType.Float32 || data.device_type != TorchSharp.DeviceType.CPU || !data.is_contiguous())
                {
                    copies[i] = empty(data.shape, ScalarType.Float32);
                    copies[i]!.copy_(data);
                    data = copies[i]!;
                }
                var pointer = TensorData(data.Handle);
                if (!AllFinite(new ReadOnlySpan<float>((void*)pointer, checked((int)data.numel())))) return null;
                values[i] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float, data.shape,
                    pointer, data.numel() * sizeof(float));
            }
            using var outputs = session.Run(runOptions, inputNames, values, outputNames);
            for (int i = 0; i < outputs.Count; i++)
                if (!AllFinite(outputs[i].GetTensorDataAsSpan<float>())) return null;
            var result = new Tensor[outputs.Count];
            for (int i = 0; i < outputs.Count; i++)
            {
                var info = outputs[i].GetTensorTypeAndShape();
                var data = outputs[i].GetTensorDataAsSpan<float>();
                var t = empty(info.Shape, ScalarType.Float32);
                data.CopyTo(new Span<float>((void*)TensorData(t.Handle), checked((int)info.ElementCount)));
                if (channelsLast && t.dim() == 4)
                    using (t) result[i] = t.permute(0, 3, 1, 2);
                else result[i] = t;
            }
            return result;
        }
        finally
        {
            foreach (var v in values) v?.Dispose();
            foreach (var c in copies) c?.Dispose();
            foreach (var v in views) v?.Dispose();
        }
    }

    /// <summary>Whether every value is finite: v - v is 0 for finite v and NaN otherwise, and NaN sticks in the sum.</summary>
    internal static bool AllFinite(ReadOnlySpan<float> values)
    {
        var acc = System.Numerics.Vector<float>.Zero;
        int i = 0, width = System.Numerics.Vector<float>.Count;
        for (; i + width <= values.Length; i += width)
        {
            var v = new System.Numerics.Vector<float>(values[i..]);
            acc += v - v;
        }
        float tail = 0;
        for (; i < values.Length; i++) tail += values[i] - values[i];
        return System.Numerics.Vector.Sum(acc) + tail == 0;
    }

    // The address of a tensor's first element (storage offset included). TorchSharp's Storage.data_ptr() keeps a second
    // handle on the storage alive until a GC; the native entry point called directly does not.
    static readonly delegate* unmanaged<IntPtr, IntPtr> TensorData = (delegate* unmanaged<IntPtr, IntPtr>)NativeLibrary.GetExport(
        NativeLibrary.Load("LibTorchSharp", typeof(TorchSharp.torch).Assembly, null), "THSTensor_data");

    public void Dispose()
    {
        session.Dispose();
        runOptions.Dispose();
    }
}
