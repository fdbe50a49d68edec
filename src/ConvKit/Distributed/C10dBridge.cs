// Loads libconvkit_c10d.so (built from Native/convkit_c10d.cpp by the project's build) and proves it usable before
// anything relies on it: every libtorch symbol it binds must be exported by the libtorch_cpu this process loaded
// (checked by name first: the bridge is linked with -z now, so a missing symbol would fail its load anyway, but the
// message here names the symbol), and the bridge's own probe checks the refcount layout on an object libtorch made.
using System.Runtime.InteropServices;
using System.Text;
using ConvKit.Native;

namespace ConvKit.Distributed;

internal static unsafe class C10dBridge
{
    internal const string FileName = "libconvkit_c10d.so";

    /// <summary>The libtorch 2.10 entry points the bridge calls (mangled), by the name a reader knows.</summary>
    internal static readonly (string Name, string Symbol)[] RequiredSymbols =
    [
        ("c10d::TCPStore::TCPStore", "_ZN4c10d8TCPStoreC1ENSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEERKNS_15TCPStoreOptionsE"),
        ("c10d::TCPStore::get", "_ZN4c10d8TCPStore3getERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE"),
        ("c10d::TCPStore::set", "_ZN4c10d8TCPStore3setERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEERKSt6vectorIhSaIhEE"),
        ("c10d::ProcessGroupGloo::Options::create_default", "_ZN4c10d16ProcessGroupGloo7Options14create_defaultENSt6chrono8durationIlSt5ratioILl1ELl1000EEEE"),
        ("c10d::ProcessGroupGloo::ProcessGroupGloo", "_ZN4c10d16ProcessGroupGlooC1ERKN3c1013intrusive_ptrINS_5StoreENS1_6detail34intrusive_target_default_null_typeIS3_EEEEiiNS2_INS0_7OptionsENS5_ISA_EEEE"),
        ("c10d::ProcessGroupGloo::allreduce", "_ZN4c10d16ProcessGroupGloo9allreduceERSt6vectorIN2at6TensorESaIS3_EERKNS_16AllreduceOptionsE"),
        ("c10d::ProcessGroupGloo::broadcast", "_ZN4c10d16ProcessGroupGloo9broadcastERSt6vectorIN2at6TensorESaIS3_EERKNS_16BroadcastOptionsE"),
        ("c10d::Work::wait", "_ZN4c10d4Work4waitENSt6chrono8durationIlSt5ratioILl1ELl1000EEEE"),
        ("vtable for c10d::ReduceOp", "_ZTVN4c10d8ReduceOpE"),
    ];

    internal const int ErrorCapacity = 2048;

    internal static delegate* unmanaged<byte*, int, int> Probe;
    internal static delegate* unmanaged<byte*, int, int, int, int, byte*, int, IntPtr> Init;
    internal static delegate* unmanaged<IntPtr, IntPtr, byte*, int, int> AllReduceSum;
    internal static delegate* unmanaged<IntPtr, IntPtr, int, byte*, int, int> Broadcast;
    internal static delegate* unmanaged<IntPtr, byte*, int, int> Destroy;

    static readonly object Gate = new();
    static bool probed;
    static string? unavailable;

    /// <summary>Why the bridge cannot be used, or null when it can. Probes once.</summary>
    internal static string? Unavailable
    {
        get
        {
            lock (Gate)
            {
                if (!probed)
                {
                    unavailable = Load();
                    probed = true;
                }
                return unavailable;
            }
        }
    }

    /// <summary>Throws <see cref="DistributedUnavailableException"/> when the bridge cannot be used.</summary>
    internal static void Require()
    {
        if (Unavailable is { } why) throw new DistributedUnavailableException(why);
    }

    /// <summary>The first required symbol <paramref name="library"/> does not export, or null when it exports them all.</summary>
    internal static string? MissingSymbol(IntPtr library)
    {
        foreach (var (name, symbol) in RequiredSymbols)
            if (!NativeLibrary.TryGetExport(library, symbol, out _)) return name;
        return null;
    }

    /// <summary>Checks a libtorch library against the bridge: null when usable, else the reason (names the library and the symbol).</summary>
    internal static string? CheckLibTorch(IntPtr library, string libraryName)
    {
        if (library == IntPtr.Zero) return $"{libraryName} is not loaded in this process.";
        return MissingSymbol(library) is { } missing
            ? $"{libraryName} does not export {missing}: this libtorch is not the 2.10 build the c10d bridge was written for."
            : null;
    }

    static string? Load()
    {
        TorchNative.Initialize();
        if (Environment.GetEnvironmentVariable("CONVKIT_DISTRIBUTED") is "0" or "false" or "off") return "CONVKIT_DISTRIBUTED=0.";
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return "the c10d bridge is built for Linux x64 only.";
        using (TorchSharp.torch.zeros(1)) { } // loads libtorch
        if (CheckLibTorch(TorchNative.LoadedLibrary("libtorch_cpu.so"), "libtorch_cpu.so") is { } bad) return bad;
        string path = Path.Combine(Path.GetDirectoryName(typeof(C10dBridge).Assembly.Location) ?? AppContext.BaseDirectory, FileName);
        if (!File.Exists(path)) path = Path.Combine(AppContext.BaseDirectory, FileName);
        if (!File.Exists(path))
            return $"{FileName} was not found next to ConvKit.dll (it is built by ConvKit's build with g++; install g++ and rebuild).";
        IntPtr lib;
        try
        {
            lib = NativeLibrary.Load(path);
        }
        catch (DllNotFoundException e)
        {
            return $"{FileName} could not be loaded against this libtorch ({FirstLine(e.Message)}).";
        }
        catch (BadImageFormatException)
        {
            return $"{path} is not a loadable library for this process.";
        }
        Probe = (delegate* unmanaged<byte*, int, int>)NativeLibrary.GetExport(lib, "ck_c10d_probe");
        Init = (delegate* unmanaged<byte*, int, int, int, int, byte*, int, IntPtr>)NativeLibrary.GetExport(lib, "ck_c10d_init");
        AllReduceSum = (delegate* unmanaged<IntPtr, IntPtr, byte*, int, int>)NativeLibrary.GetExport(lib, "ck_c10d_allreduce_sum");
        Broadcast = (delegate* unmanaged<IntPtr, IntPtr, int, byte*, int, int>)NativeLibrary.GetExport(lib, "ck_c10d_broadcast");
        Destroy = (delegate* unmanaged<IntPtr, byte*, int, int>)NativeLibrary.GetExport(lib, "ck_c10d_destroy");
        var err = new byte[ErrorCapacity];
        fixed (byte* e = err)
        {
            if (Probe(e, err.Length) != 0) return $"the c10d bridge's probe failed: {Text(err)}.";
        }
        return null;
    }

    internal static string Text(byte[] buffer)
    {
        int n = Array.IndexOf(buffer, (byte)0);
        return Encoding.UTF8.GetString(buffer, 0, n < 0 ? buffer.Length : n).Trim();
    }

    static string FirstLine(string s) => s.Split('\n')[0].Trim();
}
