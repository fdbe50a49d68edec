using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>Pieces every family shares: the input, and keras.applications' pooling when the top is left out.</summary>
internal static class Heads
{
    public static Input Input(ResolvedOptions o) => new(o.InputShape);

    /// <summary>
    /// keras.applications' <c>pooling</c> argument without the top: a global pooling layer, named as the family names
    /// it (ResNet names them avg_pool / max_pool; VGG and Inception leave the automatic names).
    /// </summary>
    public static SymbolicTensor Pool(SymbolicTensor x, PoolingMode pooling, string? avgName = null, string? maxName = null) => pooling switch
    {
        PoolingMode.Avg => new GlobalAveragePooling2D(name: avgName).Apply(x),
        PoolingMode.Max => new GlobalMaxPooling2D(name: maxName).Apply(x),
        _ => x,
    };
}
