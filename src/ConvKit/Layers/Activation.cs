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
