// libtorch allocates every CPU tensor through one process-wide c10::Allocator. Its default hands large blocks to
// malloc, and glibc's heap fragments under a training loop's pattern (the same few large sizes allocated and freed in
// waves): ResNet-20 batch-128 training needs under 300 MB of live tensors but grows glibc's heap to 560-680 MB, and
// no malloc setting fixes it without paying a page fault per page per batch. This pool keeps large blocks for reuse
// by size, the way PyTorch's CUDA caching allocator does, so resident memory stays near the live peak and a batch
// reuses the previous batch's pages.
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace ConvKit.Native;

/// <summary>A snapshot of <see cref="CpuMemoryPool"/>'s counters.</summary>
/// <param name="ReservedBytes">Bytes the pool holds from the kernel (in use plus idle).</param>
/// <param name="InUseBytes">Bytes of pooled blocks that tensors own now.</param>
/// <param name="PeakReservedBytes">Largest <paramref name="ReservedBytes"/> so far.</param>
/// <param name="Hits">Large allocations served from an idle block.</param>
/// <param name="Misses">Large allocations that mapped a new block.</param>
/// <param name="Released">Idle blocks given back to the kernel (to make room, or by <see cref="CpuMemoryPool.EmptyCache"/>).</param>
public readonly record struct CpuMemoryPoolStatistics(
    long ReservedBytes, long InUseBytes, long PeakReservedBytes, long Hits, long Misses, long Released)
{
    /// <summary>Bytes the pool holds that no tensor uses.</summary>
    public long IdleBytes => ReservedBytes - InUseBytes;
}

/// <summary>
/// A caching allocator for libtorch's CPU tensors, installed with <c>c10::SetCPUAllocator</c> when ConvKit
/// initializes.
/// </summary>
/// <remarks>
/// <para>Allocations of at least <see cref="MinPooledBytes"/> come from blocks the pool maps from the kernel, rounded
/// up to one eighth of their power of two. A freed block is kept idle and serves the next request of its size class,
/// or of a class at most twice as small. A request that finds no idle block first returns idle blocks to the kernel
/// (least recently freed first) when they add up to at least its size, then maps a new block: the pool grows only
/// when the memory it holds idle could not cover the request. Smaller allocations go to malloc, 64-byte aligned, as
/// libtorch's own allocator does.</para>
/// <para>Only this libtorch build's allocator layout is used (the object, its virtual table and <c>DataPtr</c> are
/// checked against libtorch's own default allocator first, and a probe allocation must come back through the pool);
/// otherwise, on other platforms, when another allocator was already installed, or when the environment variable
/// <c>CONVKIT_CPU_POOL=0</c> is set, libtorch's allocator is left in place. <see cref="Status"/> says which.
/// The pool serves every CPU tensor of the process, including those made with TorchSharp directly.</para>
/// <para>Not seen by libtorch's memory profiler (the default allocator reports to it, this one does not). If the
/// kernel refuses memory even after the idle blocks are released, the allocation falls back to libtorch's own
/// allocator, whose out-of-memory error cannot cross the managed frame and terminates the process with libtorch's
/// message.</para>
/// </remarks>
public static unsafe class CpuMemoryPool
{
    /// <summary>Smallest allocation the pool serves; smaller ones go to malloc.</summary>
    public const long MinPooledBytes = 256 << 10;

    const int Alignment = 64; // c10::gAlignment
    const long MaxClassStep = 2 << 20;

    // c10 symbols (libc10.so, Itanium C++ ABI).
    const string SetCpuAllocatorSymbol = "_ZN3c1015SetCPUAllocatorEPNS_9AllocatorEh";
    const string GetCpuAllocatorSymbol = "_ZN3c1015GetCPUAllocatorEv";
    const string GetDefaultCpuAllocatorSymbol = "_ZN3c1022GetDefaultCPUAllocatorEv";
    const string DefaultVtableSymbol = "_ZTVN3c1019DefaultCPUAllocatorE";
    const string AllocCpuSymbol = "_ZN3c109alloc_cpuEm";

    // c10::Allocator's virtual table (offset to top, typeinfo, then the slots): ~Allocator (complete), ~Allocator
    // (deleting), allocate, is_simple_data_ptr, raw_deleter, copy_data.
    const int VtableEntries = 8;
    const int AllocateEntry = 4;
    const int RawDeleterEntry = 6;

    static readonly object Gate = new();
    static bool attempted;
    static IntPtr defaultAllocator;
    static delegate* unmanaged<IntPtr, byte, void> setCpuAllocator;
    static delegate* unmanaged<nuint, IntPtr> allocCpu;
    static IntPtr libcFree;
    static IntPtr pooledDeleter;

    // Pool state, guarded by Gate. The callbacks run inside libtorch operators, where a GC started by a managed
    // allocation could finalize TorchSharp objects that the operator still reads (TorchSharp 0.107 leaves some
    // temporaries to the finalizer); in steady state they allocate nothing: a Block and its list nodes are made once,
    // when it is mapped, and a size class's list stays once made.
    static readonly Dictionary<IntPtr, Block> inUse = new();
    static readonly SortedList<long, LinkedList<Block>> idleByClass = new();
    static readonly LinkedList<Block> idleByAge = new();
    static long reserved, inUseBytes, peakReserved, hits, misses, released, served;
    static IntPtr lastTaken;

    /// <summary>An idle block that this many pooled allocations went by without is returned to the kernel at the next
    /// miss. A training step reuses its blocks within a few hundred allocations.</summary>
    internal const long ReleaseAfterAllocations = 4096;

    sealed class Block
    {
        public readonly IntPtr Address;
        public readonly long Size;
        public long FreedAt;
        public readonly bool Transient;
        public readonly LinkedListNode<Block> ClassNode, AgeNode;

        public Block(IntPtr address, long size, bool transient)
        {
            Address = address;
            Size = size;
            Transient = transient;
            ClassNode = new(this);
            AgeNode = new(this);
        }
    }

    /// <summary>True when libtorch allocates CPU tensors through the pool.</summary>
    public static bool IsInstalled { get; private set; }

    /// <summary>What installation decided, for diagnostics.</summary>
    public static string Status { get; private set; } = "not initialized";

    /// <summary>The pool's counters now.</summary>
    public static CpuMemoryPoolStatistics Statistics
    {
        get
        {
            lock (Gate) return new(reserved, inUseBytes, peakReserved, hits, misses, released);
        }
    }

    /// <summary>
    /// Until disposed, blocks that the pool has to map for allocations on this thread go back to the kernel when their
    /// tensor is freed instead of staying idle: for one-off work whose sizes will not recur (ConvKit's check of a new
    /// convolution configuration), which would otherwise add its peak to the pool's for good.
    /// </summary>
    internal static TransientScope Transient()
    {
        transientDepth++;
        return default;
    }

    internal readonly struct TransientScope : IDisposable
    {
        public void Dispose() => transientDepth--;
    }

    [ThreadStatic] static int transientDepth;

    /// <summary>Returns every idle block to the kernel (blocks that tensors own stay). Returns the bytes released.</summary>
    public static long EmptyCache()
    {
        lock (Gate)
        {
            long before = reserved;
            while (idleByAge.First is { } oldest) ReleaseIdle(oldest.Value);
            return before - reserved;
        }
    }

    /// <summary>Installs the pool unless the environment or platform declines it. Called by
    /// <see cref="TorchNative.Initialize"/>; idempotent.</summary>
    internal static void Install()
    {
        lock (Gate)
        {
            if (attempted) return;
            attempted = true;
            if (Environment.GetEnvironmentVariable("CONVKIT_CPU_POOL") is "0" or "false" or "off")
            {
                Status = "declined by CONVKIT_CPU_POOL";
                return;
            }
            if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            {
                Status = "not Linux x64: libtorch's allocator left in place";
                return;
            }
            try
            {
                Status = TryInstall();
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException or ExternalException)
            {
                Status = $"libtorch's allocator left in place: {e.Message}";
            }
        }
    }

    static string TryInstall()
    {
        // TorchSharp loads libtorch lazily; an allocation loads it.
        using (empty(1)) { }
        IntPtr c10 = TorchNative.LoadedLibrary("libc10.so");
        if (c10 == IntPtr.Zero) return "libc10.so not found among loaded libraries: libtorch's allocator left in place";
        if (!NativeLibrary.TryGetExport(c10, SetCpuAllocatorSymbol, out var set)
            || !NativeLibrary.TryGetExport(c10, GetCpuAllocatorSymbol, out var get)
            || !NativeLibrary.TryGetExport(c10, GetDefaultCpuAllocatorSymbol, out var getDefault)
            || !NativeLibrary.TryGetExport(c10, DefaultVtableSymbol, out var defaultVtable)
            || !NativeLibrary.TryGetExport(c10, AllocCpuSymbol, out var alloc))
            return "this libtorch does not export the allocator entry points: libtorch's allocator left in place";
        IntPtr libc = NativeLibrary.Load("libc.so.6");
        libcFree = NativeLibrary.GetExport(libc, "free");

        IntPtr current = ((delegate* unmanaged<IntPtr>)get)();
        defaultAllocator = ((delegate* unmanaged<IntPtr>)getDefault)();
        if (current != defaultAllocator) return "another CPU allocator is installed: left in place";
        // The default allocator object is one pointer to its class's virtual table, two entries into the table.
        if (*(IntPtr*)defaultAllocator != defaultVtable + 2 * sizeof(IntPtr))
            return "libtorch's allocator has an unexpected layout: left in place";

        // Our allocator object: a copy of the default allocator's virtual table with allocate and raw_deleter replaced
        // (destructors are never called on a process-wide allocator; is_simple_data_ptr and copy_data stay libtorch's).
        var table = (IntPtr*)NativeMemory.AlignedAlloc((nuint)(VtableEntries * sizeof(IntPtr)), 64);
        for (int i = 0; i < VtableEntries; i++) table[i] = ((IntPtr*)defaultVtable)[i];
        table[AllocateEntry] = (IntPtr)(delegate* unmanaged<IntPtr, IntPtr, nuint, IntPtr>)&Allocate;
        table[RawDeleterEntry] = (IntPtr)(delegate* unmanaged<IntPtr, IntPtr>)&RawDeleter;
        var self = (IntPtr*)NativeMemory.AlignedAlloc((nuint)sizeof(IntPtr), 64);
        *self = (IntPtr)(table + 2);
        pooledDeleter = (IntPtr)(delegate* unmanaged<IntPtr, void>)&Free;
        allocCpu = (delegate* unmanaged<nuint, IntPtr>)alloc;
        setCpuAllocator = (delegate* unmanaged<IntPtr, byte, void>)set;

        // Priority 0, libtorch's own: a later SetCPUAllocator by someone else still wins.
        setCpuAllocator((IntPtr)self, 0);
        if (!Probe())
        {
            setCpuAllocator(defaultAllocator, 0);
            return "the probe allocation did not come back through the pool: libtorch's allocator restored";
        }
        IsInstalled = true;
        return $"installed: CPU tensors of {MinPooledBytes >> 10} KiB and more are pooled";
    }

    /// <summary>A tensor's storage must come from the pool and return to it.</summary>
    static bool Probe()
    {
        long bytes = 2 * MinPooledBytes;
        IntPtr address;
        lock (Gate) lastTaken = IntPtr.Zero;
        using (empty(bytes / sizeof(float)))
        {
            lock (Gate)
            {
                address = lastTaken;
                if (address == IntPtr.Zero || !inUse.ContainsKey(address)) return false;
            }
        }
        lock (Gate) return !inUse.ContainsKey(address) && idleByAge.Last?.Value.Address == address;
    }

    /// <summary>Size class of a pooled request: rounded up to an eighth of its power of two (at most 12.5% over), in
    /// steps of at most 2 MiB (a 400 MB weight matrix wastes no more than that).</summary>
    internal static long ClassOf(long bytes)
    {
        int log = 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)bytes);
        long step = Math.Clamp(1L << (log - 3), 4096L, MaxClassStep);
        return (bytes + step - 1) / step * step;
    }

    // c10::DataPtr as libtorch 2.10 lays it out (checked against DefaultCPUAllocator::allocate): data, then the
    // context's unique_ptr<void, DeleterFnPtr> (libstdc++ stores the deleter first, then the pointer), then the
    // c10::Device (type int8, index int8). Returned through the hidden result pointer (first argument).
    [UnmanagedCallersOnly]
    static IntPtr Allocate(IntPtr result, IntPtr self, nuint n)
    {
        IntPtr p = IntPtr.Zero, deleter = libcFree;
        try
        {
            if (n >= (nuint)MinPooledBytes)
            {
                p = Take((long)n);
                deleter = pooledDeleter;
            }
            else if (n > 0 && posix_memalign(out p, Alignment, n) != 0)
            {
                p = IntPtr.Zero;
            }
        }
        catch
        {
            p = IntPtr.Zero; // never let a managed exception reach libtorch
        }
        if (p == IntPtr.Zero && n > 0)
        {
            // Out of memory even after releasing idle blocks: libtorch's allocator raises its own error.
            p = allocCpu(n);
            deleter = libcFree;
        }
        var d = (IntPtr*)result;
        d[0] = p;
        d[1] = deleter;
        d[2] = p;
        ((sbyte*)result)[24] = 0;  // DeviceType::CPU
        ((sbyte*)result)[25] = -1; // device index
        return result;
    }

    // raw_allocate hands out allocate's context, raw_deallocate frees it with this deleter: any pointer we made.
    [UnmanagedCallersOnly]
    static IntPtr RawDeleter(IntPtr self) => (IntPtr)(delegate* unmanaged<IntPtr, void>)&FreeAny;

    [UnmanagedCallersOnly]
    static void Free(IntPtr p) => Return(p);

    [UnmanagedCallersOnly]
    static void FreeAny(IntPtr p)
    {
        if (p == IntPtr.Zero) return;
        if (!Return(p)) free(p);
    }

    static IntPtr Take(long n)
    {
        long size = ClassOf(n);
        lock (Gate)
        {
            // Its own class first, then classes up to twice its size (their pages are resident already); the most
            // recently freed block of a class. A larger block would stay with a small tensor that may live long.
            var classes = idleByClass.Keys;
            int lo = 0, hi = classes.Count;
            while (lo < hi)
            {
                int mid = (lo + hi) / 2;
                if (classes[mid] < size) lo = mid + 1; else hi = mid;
            }
            for (int i = lo; i < classes.Count && classes[i] <= 2 * size; i++)
            {
                if (idleByClass.Values[i].Last is not { } newest) continue;
                var block = newest.Value;
                TakeIdle(block);
                hits++;
                return Lend(block);
            }
            misses++;
            // Blocks nobody asked for during the last ReleaseAfterAllocations pooled allocations belong to shapes that
            // are gone (an earlier model, another batch size): the kernel gets them back now.
            while (idleByAge.First is { } oldest && oldest.Value.FreedAt < served - ReleaseAfterAllocations)
                ReleaseIdle(oldest.Value);
            IntPtr p = Map(size);
            if (p == IntPtr.Zero)
            {
                while (idleByAge.First is { } oldest) ReleaseIdle(oldest.Value);
                p = Map(size);
                if (p == IntPtr.Zero) return IntPtr.Zero;
            }
            reserved += size;
            peakReserved = Math.Max(peakReserved, reserved);
            if (!idleByClass.ContainsKey(size)) idleByClass.Add(size, new LinkedList<Block>());
            return Lend(new Block(p, size, transientDepth > 0));
        }
    }

    /// <summary>Tests: fill every block with NaN bytes when it is lent, so that a kernel reading memory libtorch left
    /// uninitialized shows it.</summary>
    internal static volatile bool PoisonLentBlocks;

    static IntPtr Lend(Block block)
    {
        if (PoisonLentBlocks) NativeMemory.Fill((void*)block.Address, (nuint)block.Size, 0xFF);
        served++;
        lastTaken = block.Address;
        inUse.Add(block.Address, block);
        inUseBytes += block.Size;
        return block.Address;
    }

    /// <summary>Takes a block back from a tensor; false when the pointer is not a pooled block.</summary>
    static bool Return(IntPtr p)
    {
        lock (Gate)
        {
            if (!inUse.Remove(p, out var block)) return false;
            inUseBytes -= block.Size;
            if (block.Transient)
            {
                Unmap(block);
                return true;
            }
            block.FreedAt = served;
            idleByClass[block.Size].AddLast(block.ClassNode);
            idleByAge.AddLast(block.AgeNode);
            return true;
        }
    }

    static void TakeIdle(Block block)
    {
        block.ClassNode.List!.Remove(block.ClassNode);
        idleByAge.Remove(block.AgeNode);
    }

    static void ReleaseIdle(Block block)
    {
        TakeIdle(block);
        Unmap(block);
    }

    static void Unmap(Block block)
    {
        munmap(block.Address, (nuint)block.Size);
        reserved -= block.Size;
        released++;
    }

    static IntPtr Map(long size)
    {
        IntPtr p = mmap(IntPtr.Zero, (nuint)size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? IntPtr.Zero : p;
    }

    const int PROT_READ = 1, PROT_WRITE = 2, MAP_PRIVATE = 2, MAP_ANONYMOUS = 0x20;
    static readonly IntPtr MAP_FAILED = new(-1);

    [DllImport("libc", EntryPoint = "mmap")] static extern IntPtr mmap(IntPtr addr, nuint length, int prot, int flags, int fd, nint offset);
    [DllImport("libc", EntryPoint = "munmap")] static extern int munmap(IntPtr addr, nuint length);
    [DllImport("libc", EntryPoint = "posix_memalign")] static extern int posix_memalign(out IntPtr p, nuint alignment, nuint size);
    [DllImport("libc", EntryPoint = "free")] static extern void free(IntPtr p);
}
