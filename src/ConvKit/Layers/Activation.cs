using static TorchSharp.torch;

namespace ConvKit.Layers;

/// <summary>Applies an activation function, Keras' <c>Activation('relu')</c>.</summary>
public class Activation : Layer
{
    /// <summary>Creates the layer.</summary>
    public Activation(ActivationFunction activation, string? name = null) : base(name) =>
        Function = activation ?? throw new ArgumentNullException(nameof(activation));

    /// <summary>The function.</summary>
    public ActivationFunction Function { get; }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape) => inputShape;

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => Function.Apply(inputs);

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => false;
}

/// <summary>Keras' <c>ReLU</c> layer (max(x, 0)).</summary>
public class ReLU : Activation
{
    /// <summary>Creates the layer.</summary>
    public ReLU(string? name = null) : base(Activations.ReLU, name) { }
}

/// <summary>Keras' <c>LeakyReLU</c> layer: x for x ≥ 0, alpha·x otherwise (Keras 2's layer default alpha = 0.3).</summary>
public class LeakyReLU : Activation
{
    /// <summary>Creates the layer.</summary>
    /// <exception cref="LayerArgumentException">alpha is negative or not finite.</exception>
    public LeakyReLU(double alpha = 0.3, string? name = null) : base(Activations.LeakyReLUWith(alpha), name)
    {
        if (!(alpha >= 0) || double.IsInfinity(alpha)) throw ArgumentError("alpha", $"must be a finite number >= 0; received alpha={alpha}.");
        Alpha = alpha;
    }

    /// <summary>Slope for negative inputs.</summary>
    public double Alpha { get; }
}

/// <summary>Keras' <c>ELU</c> layer: x for x &gt; 0, alpha·(eˣ - 1) otherwise.</summary>
public class ELU : Activation
{
    /// <summary>Creates the layer.</summary>
    /// <exception cref="LayerArgumentException">alpha is not finite.</exception>
    public ELU(double alpha = 1.0, string? name = null)
        : base(new ActivationFunction("elu", x => Activations.EluOf(x, alpha)), name)
    {
        if (!double.IsFinite(alpha)) throw ArgumentError("alpha", $"must be finite; received alpha={alpha}.");
        Alpha = alpha;
    }

    /// <summary>Scale of the negative part.</summary>
    public double Alpha { get; }
}

/// <summary>Keras' <c>Softmax</c> layer over the channel/feature axis (Keras' axis -1).</summary>
public class Softmax : Activation
{
    /// <summary>Creates the layer.</summary>
    public Softmax(string? name = null) : base(Activations.Softmax, name) { }
}
