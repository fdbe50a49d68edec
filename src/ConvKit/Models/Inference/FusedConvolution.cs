using ConvKit.Layers;
using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Models.Inference;

/// <summary>
/// A convolution step of the inference plan: the Conv2D, with the BatchNormalization it feeds folded in
/// (<see cref="BatchNorm"/>), the ZeroPadding2D in front of it taken as its own padding, and the ReLU after it
/// (<see cref="Relu"/>) applied in place or, on packed weights, by the convolution's kernel. Immutable: the kernels come
/// from the running <see cref="InferenceModel"/>, so one step serves any number of concurrent calls.
/// </summary>
internal sealed record FusedConvolution(Conv2D Conv, BatchNormalization? BatchNorm, (int Top, int Bottom, int Left, int Right)? ZeroPadding,
    bool Packable, bool Relu = false)
{
    /// <summary>The step's result for input <paramref name="x"/>, with <paramref name="kernels"/> made for this step.</summary>
    /// <param name="x">The step's input (NCHW shape).</param>
    /// <param name="kernels">This step's kernels.</param>
    /// <param name="fuseRelu">Whether a ReLU may run inside oneDNN's kernel: false when the call must propagate NaN
    /// exactly (oneDNN's ReLU post-op maps NaN to 0, torch's relu keeps it).</param>
    public Tensor Run(Tensor x, ConvolutionKernels kernels, bool fuseRelu)
    {
        var conv = Conv;
        bool convRelu = ReferenceEquals(conv.Activation, Activations.ReLU);
        bool packable = Packable && (conv.Activation.IsLinear || convRelu) && PackedApplies(x, conv.Kernel!);
        bool relu = Relu || convRelu;
        bool reluInKernel = relu && fuseRelu;
        var pads = ZeroPadding ?? Ops.Pads(x, conv.KernelSize, conv.Strides, conv.Padding, conv.DilationRate, conv.Describe);
        long[] dilation = [conv.DilationRate.Height, conv.DilationRate.Width];
        bool ranPacked = false;
        Tensor y;
        if (packable)
        {
            // The kernel passed to Conv2DPadded is a placeholder: the packed run below never hands the convolution back.
            y = Ops.Conv2DPadded(x, conv.Kernel!, kernels.Bias, conv.KernelSize, conv.Strides, pads, conv.DilationRate, conv.Groups, conv.Describe,
                (input, stride, padding) =>
                {
                    if (!VerifiedConvolution.PackedIsRight(input, conv.Kernel!, stride, padding, dilation, conv.Groups, reluInKernel))
                    {
                        using var lease = kernels.LeaseKernel(channelsFirst: false);
                        return VerifiedConvolution.Conv2D(input, lease.Kernel, kernels.Bias, stride, padding, dilation, conv.Groups);
                    }
                    var packedKernel = kernels.Packed(padding, stride, dilation, input.shape);
                    using var cl = Ops.ToChannelsLast(input);
                    var result = PackedConvolution.Run(cl, packedKernel, kernels.Bias, padding, stride, dilation, conv.Groups, reluInKernel);
                    ranPacked = true;
                    return result;
                });
        }
        else
        {
            using var lease = kernels.LeaseKernel(VerifiedConvolution.RunsChannelsFirst(conv.Kernel!));
            y = Ops.Conv2DPadded(x, lease.Kernel, kernels.Bias, conv.KernelSize, conv.Strides, pads, conv.DilationRate, conv.Groups, conv.Describe);
        }
        if (ranPacked && (reluInKernel || !relu)) return y;
        // The ordinary path: in place on the convolution's fresh output.
        if (!conv.Activation.IsLinear) y = conv.Activation.ApplyInPlace(y);
        return Relu ? Activations.ReLU.ApplyInPlace(y) : y;
    }

    static bool PackedApplies(Tensor x, Tensor kernel) =>
        PackedConvolution.Available && x.device_type == DeviceType.CPU && x.dtype == ScalarType.Float32
        && kernel.dtype == ScalarType.Float32 && kernel.device_type == DeviceType.CPU && !is_grad_enabled();
}
