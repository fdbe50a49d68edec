using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Layers;

/// <summary>
/// Local response normalization across channels (AlexNet, Krizhevsky et al. 2012, section 3.3), with the semantics
/// of <c>tf.nn.local_response_normalization</c>: for channel c,
/// <c>sqr_sum[c] = Σ x[c']²</c> over c' in [c - depthRadius, c + depthRadius] (clipped to the existing channels) and
/// <c>out[c] = x[c] / (bias + alpha · sqr_sum[c]) ^ beta</c>. Defaults are TF's (5, 1, 1, 0.5); the paper's setting
/// is <c>depthRadius: 2, bias: 2, alpha: 1e-4, beta: 0.75</c> (n = 5 = 2·depthRadius + 1).
/// </summary>
/// <remarks>
/// libtorch's <c>local_response_norm(size, alpha', beta, k)</c> averages the squares over the window instead of
/// summing them (alpha' / size · Σ), so it is called with size = 2·depthRadius + 1 and alpha' = alpha · size.
/// </remarks>
public class LocalResponseNormalization : Layer
{
    /// <summary>Creates the layer.</summary>
    /// <exception cref="LayerArgumentException">depthRadius is negative, or bias, alpha or beta is negative.</exception>
    public LocalResponseNormalization(int depthRadius = 5, double bias = 1, double alpha = 1, double beta = 0.5, string? name = null) : base(name)
    {
        if (depthRadius < 0) throw ArgumentError("depth_radius", $"must be >= 0; received depth_radius={depthRadius}.");
        if (bias < 0) throw ArgumentError("bias", $"must be >= 0; received bias={bias}.");
        if (alpha < 0) throw ArgumentError("alpha", $"must be >= 0; received alpha={alpha}.");
        if (beta < 0) throw ArgumentError("beta", $"must be >= 0; received beta={beta}.");
        if (bias == 0 && alpha == 0) throw ArgumentError("bias", "bias and alpha cannot both be 0 (the denominator would be 0).");
        DepthRadius = depthRadius;
        Bias = bias;
        Alpha = alpha;
        Beta = beta;
    }

    /// <summary>Half-width of the channel window (the paper's n = 2·depthRadius + 1).</summary>
    public int DepthRadius { get; }

    /// <summary>The offset k.</summary>
    public double Bias { get; }

    /// <summary>The scale of the sum of squares.</summary>
    public double Alpha { get; }

    /// <summary>The exponent.</summary>
    public double Beta { get; }

    /// <summary>The window size n = 2·depthRadius + 1 (PyTorch's <c>size</c>).</summary>
    public int Size => 2 * DepthRadius + 1;

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        if (inputShape.Rank != 3)
            throw new ShapeException($"{Describe} expects inputs of shape (height, width, channels); received {inputShape.ToBatchString()}.");
        return inputShape;
    }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => F.local_response_norm(inputs, Size, Alpha * Size, Beta, Bias);

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => false;
}

/// <summary>Multiplies inputs by <c>scale</c> and adds <c>offset</c>, Keras' <c>Rescaling</c> (e.g. 1/255 for pixels).</summary>
public class Rescaling : Layer
{
    /// <summary>Creates the layer.</summary>
    /// <exception cref="LayerArgumentException">scale or offset is not finite.</exception>
    public Rescaling(double scale, double offset = 0, Shape? inputShape = null, string? name = null) : base(name)
    {
        if (!double.IsFinite(scale)) throw ArgumentError("scale", $"must be finite; received scale={scale}.");
        if (!double.IsFinite(offset)) throw ArgumentError("offset", $"must be finite; received offset={offset}.");
        Scale = scale;
        Offset = offset;
        InputShape = inputShape;
    }

    /// <summary>The factor.</summary>
    public double Scale { get; }

    /// <summary>Added after scaling.</summary>
    public double Offset { get; }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape) => inputShape;

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs)
    {
        using var scale = Scale.ToScalar();
        var y = inputs.mul(scale);
        if (Offset == 0) return y;
        using var offset = Offset.ToScalar();
        return y.add_(offset, Scalars.One);
    }

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => false;
}
