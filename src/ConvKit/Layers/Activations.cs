using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Layers;

/// <summary>
/// An activation function, named as in Keras. Converts from Keras' names, so <c>activation: "relu"</c> works wherever
/// a layer takes one. Inputs are in ConvKit's internal layout: softmax normalises over the channel/feature axis,
/// which is Keras' last axis.
/// </summary>
public sealed class ActivationFunction
{
    readonly Func<Tensor, Tensor> apply;
    readonly Func<Tensor, Tensor>? applyInPlace;

    /// <summary>Creates an activation from a function; <paramref name="inPlace"/> optionally overwrites its input.</summary>
    public ActivationFunction(string name, Func<Tensor, Tensor> apply, Func<Tensor, Tensor>? inPlace = null)
    {
        Name = name;
        this.apply = apply;
        applyInPlace = inPlace;
    }

    /// <summary>Keras' name.</summary>
    public string Name { get; }

    /// <summary>True for the identity (Keras' <c>linear</c>).</summary>
    public bool IsLinear => Name == "linear";

    /// <summary>Whether an in-place form exists (used by the graph executor when the input has no other consumer).</summary>
    public bool SupportsInPlace => applyInPlace is not null;

    /// <summary>Applies the function, returning a new tensor (or the input itself for <c>linear</c>).</summary>
    public Tensor Apply(Tensor x) => apply(x);

    /// <summary>Applies the function in place where possible, otherwise out of place.</summary>
    public Tensor ApplyInPlace(Tensor x) => applyInPlace is null ? apply(x) : applyInPlace(x);

    /// <summary>By Keras' name.</summary>
    /// <exception cref="LayerArgumentException">Unknown name.</exception>
    public static implicit operator ActivationFunction(string name) => Activations.Get(name);

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>Keras' activation functions.</summary>
public static class Activations
{
    static int ChannelAxis(Tensor x) => x.dim() == 4 ? 1 : -1;

    /// <summary>max(x, 0).</summary>
    public static ActivationFunction ReLU { get; } = new("relu", x => F.relu(x), x => x.relu_());

    /// <summary>Hyperbolic tangent.</summary>
    public static ActivationFunction Tanh { get; } = new("tanh", x => x.tanh(), x => x.tanh_());

    /// <summary>Logistic sigmoid.</summary>
    public static ActivationFunction Sigmoid { get; } = new("sigmoid", x => x.sigmoid(), x => x.sigmoid_());

    /// <summary>Softmax over the channel (Keras' last) axis.</summary>
    public static ActivationFunction Softmax { get; } = new("softmax", x => x.softmax(ChannelAxis(x)));

    /// <summary>Identity.</summary>
    public static ActivationFunction Linear { get; } = new("linear", x => x);

    /// <summary>Exponential linear unit (alpha 1).</summary>
    // The "in-place" form computes out of place, as F.elu(inplace: true) does in TorchSharp 0.107 (its elu_(double)
    // calls elu): a true elu_ would make backward work from the result, exp(x) as (e^x - 1) + 1, changing gradients.
    public static ActivationFunction Elu { get; } = new("elu", x => EluOf(x, 1.0), x => EluOf(x, 1.0));

    /// <summary>Scaled ELU.</summary>
    public static ActivationFunction Selu { get; } = new("selu", x => F.selu(x), x => F.selu(x, inplace: true));

    /// <summary>Gaussian error linear unit (exact, Keras' default approximate=False).</summary>
    public static ActivationFunction Gelu { get; } = new("gelu", x => F.gelu(x));

    /// <summary>x · sigmoid(x), also called SiLU.</summary>
    public static ActivationFunction Swish { get; } = new("swish", x => F.silu(x), x => F.silu(x, inplace: true));

    /// <summary>Leaky ReLU with Keras' activation default slope 0.2.</summary>
    public static ActivationFunction LeakyReLU { get; } = LeakyReLUWith(0.2);

    /// <summary>Leaky ReLU with a given negative slope.</summary>
    public static ActivationFunction LeakyReLUWith(double negativeSlope) =>
        new("leaky_relu", x => LeakyReLUOf(x, negativeSlope, inPlace: false), x => LeakyReLUOf(x, negativeSlope, inPlace: true));

    /// <summary>softplus(x) = log(1 + e^x).</summary>
    // TorchSharp 0.107 turns beta and threshold into Scalars inside softplus and has no overload taking them, so this
    // one call still leaves two Scalars to the finalizer (see ConvKit.Native.Scalars).
    public static ActivationFunction Softplus { get; } = new("softplus", x => F.softplus(x));

    /// <summary>Hard sigmoid (Keras 3: relu6(x + 3) / 6).</summary>
    public static ActivationFunction HardSigmoid { get; } = new("hard_sigmoid", x => F.hardsigmoid(x));

    /// <summary>min(max(x, 0), 6).</summary>
    public static ActivationFunction ReLU6 { get; } = new("relu6", x => F.relu6(x), x => F.relu6(x, inplace: true));

    // F.elu and F.leaky_relu with their Scalars alive until the call returns (ConvKit.Native.Scalars says why).
    internal static Tensor EluOf(Tensor x, double alpha)
    {
        using var a = alpha.ToScalar();
        using var unit = 1.0.ToScalar(); // scale and input scale
        return x.elu(a, unit, unit);
    }

    static Tensor LeakyReLUOf(Tensor x, double negativeSlope, bool inPlace)
    {
        using var slope = negativeSlope.ToScalar();
        return inPlace ? x.leaky_relu_(slope).alias() : x.leaky_relu(slope);
    }

    /// <summary>x · relu6(x + 3) / 6, MobileNetV3's h-swish (Keras' <c>hard_swish</c>, ONNX's HardSwish).</summary>
    public static ActivationFunction HardSwish { get; } = new("hard_swish", x => F.hardswish(x));

    /// <summary>Looks an activation up by Keras' name; null or empty means linear.</summary>
    /// <exception cref="LayerArgumentException">Unknown name.</exception>
    public static ActivationFunction Get(string? name) => (name ?? "linear").ToLowerInvariant() switch
    {
        "relu" => ReLU,
        "tanh" => Tanh,
        "sigmoid" => Sigmoid,
        "softmax" => Softmax,
        "linear" or "" or "none" => Linear,
        "elu" => Elu,
        "selu" => Selu,
        "gelu" => Gelu,
        "swish" or "silu" => Swish,
        "leaky_relu" or "leakyrelu" => LeakyReLU,
        "softplus" => Softplus,
        "hard_sigmoid" => HardSigmoid,
        "relu6" => ReLU6,
        "hard_swish" or "hardswish" => HardSwish,
        _ => throw new LayerArgumentException("Activations", "activation", $"unknown activation '{name}'; known: relu, tanh, sigmoid, softmax, linear, elu, selu, gelu, swish/silu, leaky_relu, softplus, hard_sigmoid, relu6, hard_swish"),
    };
}
