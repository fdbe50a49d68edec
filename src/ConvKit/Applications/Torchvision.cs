// Pieces shared by the torchvision zoo files (TorchvisionAlexNet, TorchvisionVgg, TorchvisionGoogLeNet,
// TorchvisionInceptionV3): torch's explicit convolution padding, BasicConv2d and ceil_mode max pooling in ConvKit layers,
// named after torchvision's state-dict module paths with '.' replaced by '_'.
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>Building blocks of the <c>*_tv</c> registry models.</summary>
internal static class Torchvision
{
    /// <summary>torchvision's BatchNorm2d momentum 0.1 in Keras' convention (the weight of the old statistic).</summary>
    public const double BatchNormMomentum = 0.9;

    /// <summary>
    /// <c>nn.Conv2d(kernel_size, stride, padding)</c>: torch pads symmetrically. At stride 1 with padding (k - 1) / 2 that
    /// is Keras' 'same'; otherwise an explicit <c>{name}_pad</c> ZeroPadding2D precedes a 'valid' convolution.
    /// </summary>
    public static SymbolicTensor Conv(SymbolicTensor x, int filters, Size2 kernel, int stride, Size2 padding, bool useBias, string name)
    {
        var mode = Padding.Valid;
        if (stride == 1 && kernel.Height == 2 * padding.Height + 1 && kernel.Width == 2 * padding.Width + 1)
            mode = Padding.Same;
        else if (padding.Height > 0 || padding.Width > 0)
            x = new ZeroPadding2D(padding, name: name + "_pad").Apply(x);
        return new Conv2D(filters, kernel, strides: stride, padding: mode, useBias: useBias, name: name).Apply(x);
    }

    /// <summary>
    /// GoogLeNet's and Inception v3's <c>BasicConv2d</c>: convolution without bias (<c>{name}_conv</c>), batch norm with
    /// epsilon 0.001 and a learned scale (<c>{name}_bn</c>), ReLU (<c>{name}_relu</c>).
    /// </summary>
    public static SymbolicTensor BasicConv2d(SymbolicTensor x, int filters, Size2 kernel, string name, int stride = 1, Size2 padding = default)
    {
        x = Conv(x, filters, kernel, stride, padding, useBias: false, name + "_conv");
        x = new BatchNormalization(momentum: BatchNormMomentum, epsilon: 1e-3, name: name + "_bn").Apply(x);
        return Relu(x, name + "_relu");
    }

    public static SymbolicTensor Relu(SymbolicTensor x, string name) => new Activation("relu", name: name).Apply(x);

    /// <summary>
    /// <c>nn.MaxPool2d(kernel, stride, ceil_mode=True)</c>: torch's output size (<see cref="ConvArithmetic.CeilModePooling"/>)
    /// from the known input size, reached by zero rows/columns after the input (<c>{name}_pad</c>) and a 'valid' pooling.
    /// Torch ignores the cells past the edge; zeros are the same only because the input is non-negative (checked here:
    /// it comes from ReLUs) and every window holds at least one real cell, so a zero never exceeds the window's maximum.
    /// </summary>
    /// <exception cref="UnsupportedException">The input is not known to be non-negative, or its size is unknown.</exception>
    public static SymbolicTensor CeilModeMaxPool(SymbolicTensor x, int kernel, int stride, string name)
    {
        if (!NonNegative(x))
            throw new UnsupportedException($"ceil-mode max pooling '{name}' pads with zeros, which is exact only after a ReLU; its input comes from {x.Layer.Describe}.");
        if (x.Shape[0] == Shape.Unknown || x.Shape[1] == Shape.Unknown)
            throw new ShapeException($"ceil-mode max pooling '{name}' needs the input's height and width; received {x.Shape.ToBatchString()}.");
        var (_, padH) = ConvArithmetic.CeilModePooling(x.Shape[0], kernel, stride);
        var (_, padW) = ConvArithmetic.CeilModePooling(x.Shape[1], kernel, stride);
        if (padH > 0 || padW > 0) x = new ZeroPadding2D((0, padH), (0, padW), name: name + "_pad").Apply(x);
        return new MaxPooling2D(kernel, strides: stride, name: name).Apply(x);
    }

    /// <summary>Whether a tensor is a ReLU output, or concatenated, padded or max-pooled ReLU outputs.</summary>
    static bool NonNegative(SymbolicTensor t) => t.Layer switch
    {
        Activation a => ReferenceEquals(a.Function, Activations.ReLU),
        Concatenate or MaxPooling2D or ZeroPadding2D => t.Node.Inputs.All(NonNegative),
        _ => false,
    };
}
