using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests;

/// <summary>
/// <c>torch.arange</c> as the tests write it, with every Scalar alive until libtorch has read it: TorchSharp's
/// <c>arange(stop)</c> and <c>arange(start, stop)</c> make their int 0 start and int 1 step themselves and leave them to
/// the finalizer (see ConvKit.Native.Scalars and ScalarIlTests). Same ints, same tensor.
/// </summary>
static class Ranges
{
    /// <summary><c>arange(stop, dtype)</c>.</summary>
    public static Tensor Arange(int stop, ScalarType? dtype = null)
    {
        using var end = stop.ToScalar();
        return arange(Scalars.Zero, end, Scalars.One, dtype);
    }

    /// <summary><c>arange(start, stop, dtype)</c>.</summary>
    public static Tensor Arange(int start, int stop, ScalarType? dtype = null)
    {
        using var first = start.ToScalar();
        using var end = stop.ToScalar();
        return arange(first, end, Scalars.One, dtype);
    }
}
