// libtorch counts every in-place write to a tensor (Python's tensor._version); TorchSharp does not expose the counter,
// so ConvKit calls the operator's exported entry point. Caches derived from weights (folded convolution kernels) are
// keyed by it: an optimizer step, copy_, a load or a user's in-place edit all bump it, so no write can go unnoticed.
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Native;

/// <summary>Reads libtorch's per-tensor version counter.</summary>
internal static unsafe class TensorVersion
{
    // at::_ops::_version::call(at::Tensor const&) and at::_ops::is_inference::call(at::Tensor const&); a TorchSharp
    // handle is an at::Tensor*, which is how the SysV ABI passes a const reference.
    const string VersionSymbol = "_ZN2at4_ops8_version4callERKNS_6TensorE";
    const string IsInferenceSymbol = "_ZN2at4_ops12is_inference4callERKNS_6TensorE";

    static readonly delegate* unmanaged<IntPtr, long> version;
    static readonly delegate* unmanaged<IntPtr, byte> isInference;

    static TensorVersion()
    {
        TorchNative.Initialize();
        // Loads libtorch (TorchSharp does so lazily) before asking the dynamic linker for it.
        using (zeros(1)) { }
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) return;
        IntPtr lib = TorchNative.LoadedLibrary("libtorch_cpu.so");
        if (lib == IntPtr.Zero) return;
        if (!NativeLibrary.TryGetExport(lib, VersionSymbol, out var v) || !NativeLibrary.TryGetExport(lib, IsInferenceSymbol, out var i)) return;
        var candidateVersion = (delegate* unmanaged<IntPtr, long>)v;
        var candidateIsInference = (delegate* unmanaged<IntPtr, byte>)i;
        // Proves the calling convention on this build before anything relies on it: a write must move the counter.
        // (The first use may come from inside Predict's inference mode, whose tensors have no counter.)
        using var normal = inference_mode(false);
        using var probe = zeros(1);
        if (candidateIsInference(probe.Handle) != 0) return;
        long before = candidateVersion(probe.Handle);
        using (no_grad()) probe.add_(Scalars.One, Scalars.One);
        if (candidateVersion(probe.Handle) != before + 1) return;
        version = candidateVersion;
        isInference = candidateIsInference;
    }

    /// <summary>False on platforms or libtorch builds where the counter cannot be read; callers then cache nothing.</summary>
    public static bool Available => version != null;

    /// <summary>
    /// The tensor's version, or null when it cannot be known: counter not available, or an inference tensor (created
    /// under inference mode: libtorch does not track those, and asking would throw inside native code).
    /// </summary>
    public static long? Of(Tensor t)
    {
        if (version == null || t.IsInvalid) return null;
        if (isInference(t.Handle) != 0) return null;
        return version(t.Handle);
    }
}
