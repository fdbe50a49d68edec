using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Layers;

/// <summary>Where a functional graph starts. Create it through <see cref="Input"/>.</summary>
public sealed class InputLayer : Layer
{
    Node? node;

    /// <summary>
    /// Creates an input layer for samples of <paramref name="shape"/>, given in <paramref name="dataFormat"/>'s layout:
    /// (H, W, C) for <see cref="DataFormat.ChannelsLast"/> (the default, Keras'), (C, H, W) for
    /// <see cref="DataFormat.ChannelsFirst"/>. Fit, Evaluate and Predict take a model's data in its input's layout.
    /// </summary>
    /// <exception cref="LayerArgumentException">The shape has no dimension, or the data format is not a defined value.</exception>
    public InputLayer(Shape shape, string? name = null, DataFormat dataFormat = DataFormat.ChannelsLast)
        : base(name ?? Backend.UniqueName("input", zeroBased: false))
    {
        if (shape.Rank == 0) throw ArgumentError("shape", "an input needs at least one dimension.");
        if (dataFormat is not (DataFormat.ChannelsLast or DataFormat.ChannelsFirst))
            throw ArgumentError("data_format", $"must be ChannelsLast or ChannelsFirst; received {(int)dataFormat}.");
        DataFormat = dataFormat;
        DeclaredShape = shape;
        // The graph holds every sample shape channels-last (H, W, C), as Keras does by default.
        if (dataFormat == DataFormat.ChannelsFirst && shape.Rank == 3) shape = new Shape(shape[1], shape[2], shape[0]);
        Shape = shape;
        InputShape = shape;
        SetBuilt([shape]);
    }

    /// <summary>The sample shape, channels-last ((H, W, C) for images) whatever <see cref="DataFormat"/> is.</summary>
    public Shape Shape { get; }

    /// <summary>The layout in which the model takes this input's data (Fit, Evaluate, Predict); channels-last by default.</summary>
    public DataFormat DataFormat { get; }

    /// <summary>The sample shape as declared, in <see cref="DataFormat"/>'s layout ((C, H, W) when channels-first).</summary>
    public Shape DeclaredShape { get; }

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
