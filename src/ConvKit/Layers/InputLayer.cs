using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Layers;

/// <summary>Where a functional graph starts. Create it through <see cref="Input"/>.</summary>
public sealed class InputLayer : Layer
{
    Node? node;

    /// <summary>Creates an input layer for samples of <paramref name="shape"/>.</summary>
    public InputLayer(Shape shape, string? name = null) : base(name ?? Backend.UniqueName("input", zeroBased: false))
    {
        if (shape.Rank == 0) throw ArgumentError("shape", "an input needs at least one dimension.");
        Shape = shape;
        InputShape = shape;
        SetBuilt([shape]);
    }

    /// <summary>The sample shape.</summary>
    public Shape Shape { get; }

    internal Node CreateNode()
    {
        if (node is not null) return node;
        node = new Node(this, [], Shape, 0);
        inboundNodes.Add(node);
        return node;
    }

    /// <summary>The graph input tensor of this layer.</summary>
    public SymbolicTensor Output => CreateNode().Output;

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape) => Shape;

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => inputs;
}
