using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace ConvKit.Native;

/// <summary>
/// Makes TorchSharp's native shim (<c>libLibTorchSharp.so</c>) loadable on Linux systems whose libstdc++ predates
/// GCC 13 (Debian 12 and the like).
/// </summary>
/// <remarks>
/// The shim declares a need for the symbol version <c>GLIBCXX_3.4.32</c>, although no relocation uses a symbol of
/// that version. When the process's libstdc++ lacks that version, ConvKit registers a DllImport resolver on the
/// TorchSharp assembly that loads an in-memory copy of the shim (a memfd, nothing written to disk, the NuGet cache
/// and the application folder untouched) whose requirement is marked weak (<c>VER_FLG_WEAK</c>). libtorch itself is
/// loaded first from the same folder TorchSharp uses, so the copy binds to the very same libtorch files.
/// Where libstdc++ already provides the version, or on other operating systems, nothing is done.
/// Runs automatically when ConvKit is first used; call <see cref="Initialize"/> before touching TorchSharp directly.
/// </remarks>
public static class TorchNative
{
    const string ShimName = "LibTorchSharp";
    const string ShimFile = "libLibTorchSharp.so";
    const string MissingVersion = "GLIBCXX_3.4.32";

    static readonly object Gate = new();
    static bool initialized;

    /// <summary>What <see cref="Initialize"/> decided, for diagnostics.</summary>
    public static string Status { get; private set; } = "not initialized";

    /// <summary>True when ConvKit serves a patched copy of the shim to TorchSharp.</summary>
    public static bool UsesPatchedShim { get; private set; }

#pragma warning disable CA2255 // A module initializer is the one hook that runs before any ConvKit code touches TorchSharp.
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void ModuleInit() => Initialize();

    /// <summary>Installs the loader fix when this system needs it, then ConvKit's CPU tensor pool
    /// (<see cref="CpuMemoryPool"/>). Idempotent and thread-safe.</summary>
    public static void Initialize()
    {
        InitializeLoader();
        CpuMemoryPool.Install();
    }

    static void InitializeLoader()
    {
        lock (Gate)
        {
            if (initialized) return;
            initialized = true;
            if (OperatingSystem.IsLinux())
            {
                TuneMalloc();
                TuneOpenMp();
            }
            if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            {
                Status = "not Linux x64: nothing to do";
                return;
            }
            if (SystemHasVersion())
            {
                Status = $"libstdc++ provides {MissingVersion}: nothing to do";
                return;
            }
            var torchSharp = typeof(TorchSharp.torch).Assembly;
            // TorchSharp first loads the shim with NativeLibrary.Load(name, assembly, ...), which skips per-assembly
            // resolvers but raises ResolvingUnmanagedDll once its own probing has failed; its DllImports then go
            // through the resolver. Both hand out the same handle.
            System.Runtime.Loader.AssemblyLoadContext.GetLoadContext(torchSharp)!.ResolvingUnmanagedDll += (asm, name) =>
                asm == torchSharp ? Resolve(name, asm, null) : IntPtr.Zero;
            try
            {
                NativeLibrary.SetDllImportResolver(torchSharp, Resolve);
            }
            catch (InvalidOperationException)
            {
                // Someone else owns TorchSharp's DllImport resolver; the ResolvingUnmanagedDll hook still applies.
            }
            Status = $"libstdc++ lacks {MissingVersion}: serving a weak-versioned copy of {ShimFile}";
        }
    }

    /// <summary>The glibc malloc settings ConvKit applied (for diagnostics), or null when it left malloc alone.</summary>
    public static string? MallocTuning { get; private set; }

    /// <summary>Largest allocation glibc serves from its heap instead of a fresh mmap (glibc's own ceiling for the knob).</summary>
    internal const int MmapThresholdBytes = 32 << 20;

    /// <summary>Free memory glibc keeps at the top of its heap instead of returning it to the kernel.</summary>
    internal const int TrimThresholdBytes = 256 << 20;

    /// <summary>
    /// libtorch allocates every activation and gradient with malloc and frees it within the same batch. With glibc's
    /// defaults, blocks of a few hundred KiB to a few MiB are served by fresh mmaps, or come from heap memory that the
    /// next free trims back to the kernel, so every batch pays page faults and zeroing for its whole working set
    /// (measured: LeNet-5 batch-128 training 460,000 minor faults and 3.2 s of system time in a 5.6 s run; with the
    /// settings below 48,000 faults, 0.4 s, and 2.7x the images/s). ConvKit therefore fixes the mmap threshold at
    /// 32 MiB and keeps up to 256 MiB of freed heap, the standard tuning for allocation-heavy numeric code. The cost is
    /// resident memory that stays at its peak between batches instead of falling back. Nothing is changed when the
    /// C library is not glibc, when the user already tuned malloc (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_,
    /// MALLOC_TOP_PAD_ or glibc.malloc tunables in GLIBC_TUNABLES), or when CONVKIT_MALLOC_TUNING=0.
    /// </summary>
    static void TuneMalloc()
    {
        if (MallocTuningDeclined()) return;
        try
        {
            if (gnu_get_libc_version() == IntPtr.Zero) return;
        }
        catch (EntryPointNotFoundException)
        {
            return; // not glibc (musl has no such tuning)
        }
        // M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3; mallopt returns 1 on success.
        if (mallopt(-3, MmapThresholdBytes) == 1 && mallopt(-1, TrimThresholdBytes) == 1)
            MallocTuning = $"glibc malloc: mmap threshold {MmapThresholdBytes >> 20} MiB, trim threshold {TrimThresholdBytes >> 20} MiB";
    }

    /// <summary>The OpenMP setting ConvKit applied to libtorch's worker threads (for diagnostics), or null when it left
    /// OpenMP alone.</summary>
    public static string? OpenMpTuning { get; private set; }

    /// <summary>Spin iterations of an idle libtorch (libgomp) thread before it sleeps; see <see cref="TuneOpenMp"/>.</summary>
    internal const string GompSpinCount = "1000";

    /// <summary>
    /// libtorch runs each operation's parallel loop on libgomp threads that, by default, spin for 300,000 iterations at
    /// every barrier before sleeping. On a machine whose cores are shared (other processes, or ConvKit's own image
    /// decoding workers beside the training step) a spinning thread burns the time slice its descheduled peer needs to
    /// reach the barrier, and every operation waits for the scheduler: on 2 cores with other processes busy (load
    /// average 25), LeNet-5 training from an image folder ran at 2 s per step with the default and at 0.1-0.2 s with
    /// 1,000 spins, bit for bit the same result. Measured alternating on the quiet machine, 1,000 spins keep the
    /// default's speed (LeNet-5 b32 training 9,061/6,655 vs 7,534/7,888 images/s; ResNet-20 b128 inference 2,011/1,665
    /// vs 1,925/1,703), while no spinning at all cost a third on LeNet-5's small steps; with one core busy
    /// (`yes`), ResNet-20 inference ran at 1,102/1,070 vs 673/863 images/s, LeNet-5 training at 2,231/2,080 vs
    /// 2,487/3,692 (docs/performance.md). ConvKit therefore sets GOMP_SPINCOUNT=1000 before libtorch is loaded. Nothing
    /// is changed when the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT, when CONVKIT_OMP_TUNING=0, or when libgomp is
    /// already loaded (TorchSharp was used before ConvKit: call <see cref="Initialize"/> first).
    /// </summary>
    static void TuneOpenMp()
    {
        if (OpenMpTuningDeclined() || LibgompLoaded()) return;
        // setenv changes the C environment libgomp reads when it loads; .NET's Environment only keeps a managed copy.
        if (setenv("GOMP_SPINCOUNT", GompSpinCount, 0) == 0)
            OpenMpTuning = $"libgomp: GOMP_SPINCOUNT={GompSpinCount} (idle threads sleep soon instead of spinning)";
    }

    /// <summary>True when the environment asks ConvKit to leave OpenMP alone: CONVKIT_OMP_TUNING=0, or the user's own
    /// OMP_WAIT_POLICY or GOMP_SPINCOUNT.</summary>
    internal static bool OpenMpTuningDeclined() =>
        Environment.GetEnvironmentVariable("CONVKIT_OMP_TUNING") is "0" or "false" or "off"
        || Environment.GetEnvironmentVariable("OMP_WAIT_POLICY") is not null
        || Environment.GetEnvironmentVariable("GOMP_SPINCOUNT") is not null;

    static bool LibgompLoaded()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/maps"))
                if (line.Contains("/libgomp", StringComparison.Ordinal)) return true;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return false;
    }

    /// <summary>True when the environment asks ConvKit to leave malloc alone: CONVKIT_MALLOC_TUNING=0, or the user's own
    /// MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_ or glibc.malloc tunables.</summary>
    internal static bool MallocTuningDeclined() =>
        Environment.GetEnvironmentVariable("CONVKIT_MALLOC_TUNING") is "0" or "false" or "off"
        || Environment.GetEnvironmentVariable("MALLOC_MMAP_THRESHOLD_") is not null
        || Environment.GetEnvironmentVariable("MALLOC_TRIM_THRESHOLD_") is not null
        || Environment.GetEnvironmentVariable("MALLOC_TOP_PAD_") is not null
        || Environment.GetEnvironmentVariable("GLIBC_TUNABLES")?.Contains("glibc.malloc.", StringComparison.Ordinal) == true;

    static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (libraryName != ShimName) return IntPtr.Zero;
        lock (Gate)
        {
            if (shimHandle != IntPtr.Zero) return shimHandle;
            var original = FindShim(assembly);
            if (original is null) return IntPtr.Zero; // let TorchSharp report its own "not found" error
            shimHandle = LoadPatched(original);
            UsesPatchedShim = shimHandle != IntPtr.Zero;
            return shimHandle;
        }
    }

    static IntPtr shimHandle;

    static IntPtr LoadPatched(string original)
    {
        var dir = Path.GetDirectoryName(original)!;
        // Bind the copy's DT_NEEDED entries (libc10, libtorch_cpu, libtorch) to the files beside the original:
        // loading libtorch twice from two folders aborts the process.
        foreach (var dep in new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" })
        {
            var p = Path.Combine(dir, dep);
            if (File.Exists(p)) NativeLibrary.Load(p);
        }
        var bytes = File.ReadAllBytes(original);
        if (!ElfVersionPatcher.MakeVersionNeedWeak(bytes, MissingVersion))
            return IntPtr.Zero; // the shim does not ask for that version: load normally
        int fd = memfd_create("LibTorchSharp-convkit", 0);
        if (fd < 0)
        {
            // No memfd (very old kernel): fall back to a private temporary copy.
            var tmp = Path.Combine(Path.GetTempPath(), $"convkit-native-{Environment.ProcessId}");
            Directory.CreateDirectory(tmp);
            var path = Path.Combine(tmp, ShimFile);
            File.WriteAllBytes(path, bytes);
            return NativeLibrary.Load(path);
        }
        var memPath = $"/proc/self/fd/{fd}";
        using (var fs = new FileStream(memPath, FileMode.Open, FileAccess.Write)) fs.Write(bytes);
        return NativeLibrary.Load(memPath);
    }

    static string? FindShim(Assembly assembly)
    {
        var dirs = new List<string>();
        if (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") is string probe)
            dirs.AddRange(probe.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        var asmDir = Path.GetDirectoryName(assembly.Location);
        foreach (var baseDir in new[] { asmDir, AppContext.BaseDirectory })
        {
            if (string.IsNullOrEmpty(baseDir)) continue;
            dirs.Add(Path.Combine(baseDir, "runtimes", "linux-x64", "native"));
            dirs.Add(baseDir);
        }
        foreach (var d in dirs)
        {
            var p = Path.Combine(d, ShimFile);
            if (File.Exists(p) && File.Exists(Path.Combine(d, "libtorch_cpu.so"))) return p;
        }
        foreach (var d in dirs)
        {
            var p = Path.Combine(d, ShimFile);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    /// <summary>Asks the dynamic linker whether the process's libstdc++ defines the version.</summary>
    static bool SystemHasVersion()
    {
        IntPtr h = dlopen("libstdc++.so.6", RTLD_NOW);
        if (h == IntPtr.Zero) return false;
        try
        {
            return dlvsym(h, "_ZSt21ios_base_library_initv", MissingVersion) != IntPtr.Zero;
        }
        finally { dlclose(h); }
    }

    /// <summary>
    /// The dynamic linker's handle of <paramref name="library"/> (e.g. "libtorch_cpu.so") when the process has already
    /// loaded it, else zero; for resolving libtorch exports TorchSharp does not wrap. Loads nothing.
    /// </summary>
    internal static IntPtr LoadedLibrary(string library) => dlopen(library, RTLD_NOW | RTLD_NOLOAD);

    const int RTLD_NOW = 2, RTLD_NOLOAD = 4;

    [DllImport("libc", EntryPoint = "dlopen")] static extern IntPtr dlopen(string file, int mode);
    [DllImport("libc", EntryPoint = "dlvsym")] static extern IntPtr dlvsym(IntPtr handle, string symbol, string version);
    [DllImport("libc", EntryPoint = "dlclose")] static extern int dlclose(IntPtr handle);
    [DllImport("libc", EntryPoint = "mallopt")] static extern int mallopt(int param, int value);
    [DllImport("libc", EntryPoint = "setenv")] static extern int setenv(string name, string value, int overwrite);
    [DllImport("libc", EntryPoint = "gnu_get_libc_version")] static extern IntPtr gnu_get_libc_version();
    [DllImport("libc", EntryPoint = "memfd_create", SetLastError = true)] static extern int memfd_create(string name, uint flags);
}

/// <summary>Edits the version-needs table (<c>.gnu.version_r</c>) of a 64-bit little-endian ELF image in memory.</summary>
internal static class ElfVersionPatcher
{
    const uint SHT_GNU_verneed = 0x6ffffffe;
    const ushort VER_FLG_WEAK = 0x2;

    /// <summary>
    /// Sets <c>VER_FLG_WEAK</c> on every <c>Vernaux</c> entry named <paramref name="version"/>.
    /// Returns false when the image has no such entry. Throws <see cref="BadImageFormatException"/> on a malformed image.
    /// </summary>
    public static bool MakeVersionNeedWeak(byte[] elf, string version)
    {
        var span = elf.AsSpan();
        if (span.Length < 64 || span[0] != 0x7f || span[1] != (byte)'E' || span[2] != (byte)'L' || span[3] != (byte)'F')
            throw new BadImageFormatException("not an ELF file");
        if (span[4] != 2 || span[5] != 1) throw new BadImageFormatException("not a 64-bit little-endian ELF file");
        ulong shoff = U64(span, 0x28);
        int shentsize = U16(span, 0x3A), shnum = U16(span, 0x3C);
        bool found = false;
        for (int i = 0; i < shnum; i++)
        {
            int sh = Checked(shoff + (ulong)(i * shentsize), 64, span.Length);
            if (U32(span, sh + 4) != SHT_GNU_verneed) continue;
            int secOff = Checked(U64(span, sh + 0x18), 0, span.Length);
            int link = (int)U32(span, sh + 0x28);
            int strSh = Checked(shoff + (ulong)(link * shentsize), 64, span.Length);
            int strOff = Checked(U64(span, strSh + 0x18), 0, span.Length);
            int need = secOff;
            while (true)
            {
                Checked((ulong)need, 16, span.Length);
                int cnt = U16(span, need + 2);
                int aux = need + (int)U32(span, need + 8);
                for (int a = 0; a < cnt; a++)
                {
                    Checked((ulong)aux, 16, span.Length);
                    int nameOff = Checked((ulong)strOff + U32(span, aux + 8), 1, span.Length);
                    if (CStr(span, nameOff) == version)
                    {
                        ushort flags = U16(span, aux + 4);
                        BitConverterLE(span, aux + 4, (ushort)(flags | VER_FLG_WEAK));
                        found = true;
                    }
                    uint nextAux = U32(span, aux + 12);
                    if (nextAux == 0) break;
                    aux += (int)nextAux;
                }
                uint next = U32(span, need + 12);
                if (next == 0) break;
                need += (int)next;
            }
        }
        return found;
    }

    static int Checked(ulong off, int size, int length)
    {
        if (off > (ulong)length || (ulong)length - off < (ulong)size)
            throw new BadImageFormatException($"ELF offset {off} out of range");
        return (int)off;
    }

    static ushort U16(ReadOnlySpan<byte> s, int o) => System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(s[o..]);
    static uint U32(ReadOnlySpan<byte> s, int o) => System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(s[o..]);
    static ulong U64(ReadOnlySpan<byte> s, int o) => System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(s[o..]);
    static void BitConverterLE(Span<byte> s, int o, ushort v) => System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(s[o..], v);

    static string CStr(ReadOnlySpan<byte> s, int o)
    {
        int end = s[o..].IndexOf((byte)0);
        if (end < 0) throw new BadImageFormatException("unterminated string in ELF string table");
        return System.Text.Encoding.ASCII.GetString(s.Slice(o, end));
    }
}
