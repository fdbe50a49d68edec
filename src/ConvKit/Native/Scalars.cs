// TorchSharp 0.107 turns a .NET number into a TorchSharp.Scalar implicitly (t * 0.5, t.add_(1e-3), clamp(t, 1e-7)), and
// some of its overloads make one of their own (a.add(b) passes alpha = 1, square() is pow(2), arange(n) starts at 0
// with step 1). Such a Scalar owns a native at::Scalar, and nothing keeps it alive once its handle has been read: a GC
// started by another thread during the native call can run its finalizer, which frees the at::Scalar while libtorch
// still reads it ("Unknown scalar type" from at::native::mul; dotnet/TorchSharp PRs #1434 and #1496).
//
// ConvKit therefore hands TorchSharp only Scalars that stay reachable until the call has returned: the constants
// below, rooted by static fields for the life of the process and never disposed, or a `using var s = x.ToScalar();`
// around the calls that read it. ScalarIlTests reads ConvKit's IL and fails on any call that would make a Scalar behind
// the caller's back; ScalarLifetimeTests counts the Scalars that reach the finalizer on ConvKit's main paths.
// TorchSharp's optimizers made their own in every step (per parameter: SGD 1, with momentum 3, Adam 8, AdamW 9,
// RMSprop 5); ConvKit steps them with ScalarSafe's overrides instead. Out of ConvKit's reach: softplus, two per call.
using TorchSharp;

namespace ConvKit.Native;

/// <summary>Scalars of the small integer constants ConvKit passes to TorchSharp, never collected.</summary>
internal static class Scalars
{
    /// <summary>The int 1 of <c>add(other, alpha: 1)</c>, what TorchSharp's <c>a.add(b)</c> and <c>a + b</c> pass.</summary>
    public static readonly Scalar One = 1.ToScalar();

    /// <summary>The int 0, the default start of <c>arange</c>.</summary>
    public static readonly Scalar Zero = 0.ToScalar();

    /// <summary>The int 2 of <c>pow(2)</c>, what TorchSharp's <c>square()</c> computes.</summary>
    public static readonly Scalar Two = 2.ToScalar();

    /// <summary>The int -1 TorchSharp's centered RMSprop passes to <c>addcmul</c>.</summary>
    public static readonly Scalar MinusOne = (-1).ToScalar();
}
