using System.Runtime.InteropServices;
using ConvKit.Applications;
using ConvKit.Models;
using ConvKit.Native;
using ConvKit.Tests.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Native;

/// <summary>
/// ConvKit's CPU tensor pool (libtorch's process-wide allocator). Run alone (a non-parallel collection): the counters
/// and the reuse of a freed block are process-wide.
/// </summary>
[Collection(nameof(GlobalRandomCollection))]
public unsafe class CpuMemoryPoolTests
{
    static bool Supported => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64;

    // TorchSharp's own Storage.data_ptr() keeps a second handle on the storage alive until a GC; its native entry
    // point called directly does not.
    static readonly delegate* unmanaged<IntPtr, IntPtr> StorageDataPtr = (delegate* unmanaged<IntPtr, IntPtr>)NativeLibrary.GetExport(
        NativeLibrary.Load("LibTorchSharp", typeof(TorchSharp.torch).Assembly, null), "THSStorage_data_ptr");

    static IntPtr Address(Tensor t) => StorageDataPtr(t.Handle);

    /// <summary>Lets earlier tests' garbage reach the pool and empties it, so that a test sees only its own blocks.</summary>
    static void Settle()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        CpuMemoryPool.EmptyCache();
    }

    /// <summary>The installed c10::Allocator: its allocate and the deleter its raw_deleter hands out.</summary>
    struct Allocator
    {
        public IntPtr Self;
        public delegate* unmanaged<IntPtr, IntPtr, nuint, IntPtr> Allocate;
        public delegate* unmanaged<IntPtr, void> DeleteAny;
    }

    static Allocator Installed()
    {
        using (empty(1)) { }
        IntPtr c10 = NativeLibrary.Load("libc10.so", typeof(TorchSharp.torch).Assembly, null);
        var get = (delegate* unmanaged<IntPtr>)NativeLibrary.GetExport(c10, "_ZN3c1015GetCPUAllocatorEv");
        IntPtr allocator = get();
        // The object's first word points at its virtual table's slots: destructors, allocate, is_simple_data_ptr,
        // raw_deleter, copy_data.
        var vtable = *(IntPtr**)allocator;
        var rawDeleter = (delegate* unmanaged<IntPtr, IntPtr>)vtable[4];
        return new Allocator
        {
            Self = allocator,
            Allocate = (delegate* unmanaged<IntPtr, IntPtr, nuint, IntPtr>)vtable[2],
            DeleteAny = (delegate* unmanaged<IntPtr, void>)rawDeleter(allocator),
        };
    }

    [Fact]
    public void InstalledOnLinuxX64()
    {
        Assert.True(Supported == CpuMemoryPool.IsInstalled, CpuMemoryPool.Status);
        if (Supported) Assert.StartsWith("installed", CpuMemoryPool.Status);
    }

    [Fact]
    public void LargeTensorsComeFromThePoolAndReuseAFreedBlock()
    {
        if (!Supported) return;
        Settle();
        const long elements = 777_777; // 3,111,108 bytes: the 3 MiB class
        var before = CpuMemoryPool.Statistics;
        IntPtr first;
        using (var a = empty(elements))
        {
            first = Address(a);
            var during = CpuMemoryPool.Statistics;
            Assert.Equal(before.Hits + before.Misses + 1, during.Hits + during.Misses);
            Assert.Equal(before.InUseBytes + CpuMemoryPool.ClassOf(elements * sizeof(float)), during.InUseBytes);
        }
        Assert.Equal(before.InUseBytes, CpuMemoryPool.Statistics.InUseBytes);
        long hits = CpuMemoryPool.Statistics.Hits;
        using var value = 2.5f.ToScalar();
        using var b = full(elements, value);
        Assert.Equal(first, Address(b));
        Assert.Equal(hits + 1, CpuMemoryPool.Statistics.Hits);
        Assert.Equal(2.5f * elements, b.sum().item<float>());
    }

    [Fact]
    public void SmallTensorsBypassThePool()
    {
        if (!Supported) return;
        var before = CpuMemoryPool.Statistics;
        using (var t = ones(1000)) Assert.Equal(1000f, t.sum().item<float>());
        var after = CpuMemoryPool.Statistics;
        Assert.Equal(before.Hits + before.Misses, after.Hits + after.Misses);
    }

    [Fact]
    public void ClassesRoundUpToAnEighthOfThePowerOfTwo()
    {
        Assert.Equal(256L << 10, CpuMemoryPool.ClassOf(256 << 10));
        Assert.Equal((256L << 10) + (32 << 10), CpuMemoryPool.ClassOf((256 << 10) + 1));
        Assert.Equal(3L << 20, CpuMemoryPool.ClassOf(3_111_108));
        Assert.Equal(8L << 20, CpuMemoryPool.ClassOf(8 << 20));
        Assert.Equal(394L << 20, CpuMemoryPool.ClassOf(411_041_793)); // just over 392 MiB (VGG-16 fc1), in 2 MiB steps
        for (long n = 256 << 10; n < 1L << 32; n = n * 7 / 5 + 12345)
        {
            long c = CpuMemoryPool.ClassOf(n);
            Assert.InRange(c, n, n + Math.Min(n / 8, 2 << 20));
            Assert.Equal(0, c % 4096);
        }
    }

    [Fact]
    public void ARepeatedPatternStopsMissingAfterItsFirstRound()
    {
        if (!Supported) return;
        Settle();
        long[] sizes = [300_000, 1_000_000, 2_000_000, 50_000, 1_500_000, 4_000_000];
        void Round()
        {
            var live = new List<Tensor>();
            for (int i = 0; i < sizes.Length; i++)
            {
                live.Add(empty(sizes[i]));
                if (i % 2 == 1) { live[0].Dispose(); live.RemoveAt(0); }
            }
            foreach (var t in live) t.Dispose();
        }
        Round();
        Round();
        var before = CpuMemoryPool.Statistics;
        for (int r = 0; r < 20; r++) Round();
        var after = CpuMemoryPool.Statistics;
        Assert.Equal(before.Misses, after.Misses);
        Assert.Equal(before.ReservedBytes, after.ReservedBytes);
        Assert.Equal(before.Hits + 20 * 5, after.Hits); // 50,000 floats (200 KB) go to malloc
    }

    [Fact]
    public void AnIdleBlockServesRequestsDownToHalfItsSizeAndNoSmaller()
    {
        if (!Supported) return;
        Settle();
        IntPtr block;
        using (var t = empty(1 << 20)) block = Address(t); // 4 MiB
        using (var half = empty(1 << 19)) Assert.Equal(block, Address(half)); // 2 MiB: the idle 4 MiB block
        using var quarter = empty(1 << 18); // 1 MiB would keep 3 MiB idle: a block of its own
        Assert.NotEqual(block, Address(quarter));
    }

    [Fact]
    public void BlocksMappedInATransientScopeGoBackToTheKernelWhenFreed()
    {
        if (!Supported) return;
        Settle();
        var before = CpuMemoryPool.Statistics;
        using (CpuMemoryPool.Transient())
        using (var t = ones(3_333_333)) // a miss: a new block
            Assert.Equal(3_333_333f, t.sum().item<float>());
        var after = CpuMemoryPool.Statistics;
        Assert.Equal(before.Misses + 1, after.Misses);
        Assert.Equal(before.Released + 1, after.Released);
        Assert.Equal(before.ReservedBytes, after.ReservedBytes);
        using (var t = empty(3_333_333)) { } // outside the scope: kept
        Assert.Equal(before.ReservedBytes + CpuMemoryPool.ClassOf(3_333_333 * sizeof(float)), CpuMemoryPool.Statistics.ReservedBytes);
    }

    /// <summary>
    /// Pooled memory is reused dirty, as malloc's is: no kernel may read what it did not write. On NaN-filled blocks,
    /// torchvision's GoogLeNet gave non-finite outputs (and, on ordinary reused memory, outputs that differed between
    /// two models with the same weights: a CI failure of ModelFormatTests) while the inference plan ran its 24-channel
    /// convolutions, off oneDNN's 16-channel block, on NCHW memory; those run channels-last now.
    /// </summary>
    [Theory]
    [InlineData("googlenet_tv")]
    [InlineData("resnet50")]
    [InlineData("inception_v3")]
    public void InferenceReadsNoUninitializedMemory(string name)
    {
        if (!Supported) return;
        Settle();
        var info = ModelRegistry.Get(name);
        manual_seed(3);
        CpuMemoryPool.PoisonLentBlocks = true;
        try
        {
            using var model = ModelRegistry.Create(name, new ModelOptions { InputShape = (info.MinInputSize, info.MinInputSize, 3), Classes = 5 });
            var path = Path.Combine(Path.GetTempPath(), $"convkit-pool-{Guid.NewGuid():N}.safetensors");
            model.Save(path);
            using var loaded = Model.Load(path);
            File.Delete(path);
            using var g = new Generator(7);
            using var x = Layout.FromKeras(randn([2, info.MinInputSize, info.MinInputSize, 3], generator: g));
            model.eval();
            loaded.eval();
            using var noGrad = no_grad();
            for (int round = 0; round < 2; round++)
            {
                using var scope = NewDisposeScope();
                var a = model.Forward([x])[0];
                var b = loaded.Forward([x])[0];
                using var finite = a.isfinite().all();
                Assert.True(finite.item<bool>(), $"{name}, round {round}: non-finite outputs");
                Assert.True(a.allclose(b, rtol: 0, atol: 0), $"{name}, round {round}: two models with the same weights differ");
            }
        }
        finally
        {
            CpuMemoryPool.PoisonLentBlocks = false;
        }
    }

    [Fact]
    public void BlocksIdleForLongAreReleasedAtTheNextMissAndEmptyCacheReleasesTheRest()
    {
        if (!Supported) return;
        Settle();
        using (empty(300_000)) { } // an idle 1.25 MiB block, too small for what follows
        for (long i = 0; i <= CpuMemoryPool.ReleaseAfterAllocations; i++)
            using (empty(1_000_000)) { }
        var before = CpuMemoryPool.Statistics;
        using (empty(5_555_555)) { } // a class never used before: a miss
        var after = CpuMemoryPool.Statistics;
        Assert.Equal(before.Misses + 1, after.Misses);
        Assert.True(after.Released > before.Released, $"released {before.Released} -> {after.Released}");

        long released = CpuMemoryPool.EmptyCache();
        var emptied = CpuMemoryPool.Statistics;
        Assert.Equal(0, emptied.IdleBytes);
        Assert.True(released >= CpuMemoryPool.ClassOf(5_555_555 * sizeof(float)), $"released {released}");
    }

    [Fact]
    public void ConcurrentAllocationNeverHandsOutABlockTwice()
    {
        if (!Supported) return;
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var threads = Enumerable.Range(0, 4).Select(id => new Thread(() =>
        {
            var rng = new Random(id);
            for (int i = 0; i < 300; i++)
            {
                long n = rng.Next(60_000, 1_200_000);
                using var value = ((float)id).ToScalar();
                using var t = full(n, value);
                if (i % 50 == 0) GC.Collect();
                Thread.Yield();
                float lo = t.min().item<float>(), hi = t.max().item<float>();
                if (lo != id || hi != id) errors.Enqueue($"thread {id}, round {i}: saw values {lo}..{hi}");
            }
        })).ToList();
        long inUseBefore = CpuMemoryPool.Statistics.InUseBytes;
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Empty(errors);
        Assert.True(CpuMemoryPool.Statistics.InUseBytes <= inUseBefore);
    }

    /// <summary>Calls the installed allocator the way libtorch does: allocate through its virtual table into a
    /// DataPtr, the DataPtr's deleter, and raw_deleter on what raw_allocate would have handed out.</summary>
    [Fact]
    public void TheAllocatorObjectHonoursLibtorchsCallingConvention()
    {
        if (!Supported) return;
        Settle();
        var a = Installed();
        var dataPtr = stackalloc IntPtr[4];
        foreach (nuint n in new nuint[] { 0, 100, (nuint)CpuMemoryPool.MinPooledBytes, 3 << 20 })
        {
            var inUse = CpuMemoryPool.Statistics.InUseBytes;
            Assert.Equal((IntPtr)dataPtr, a.Allocate((IntPtr)dataPtr, a.Self, n));
            IntPtr data = dataPtr[0], context = dataPtr[2];
            Assert.Equal(data, context); // raw_allocate requires a simple DataPtr
            Assert.Equal(0, ((sbyte*)dataPtr)[24]); // DeviceType::CPU
            Assert.Equal(-1, ((sbyte*)dataPtr)[25]);
            if (n == 0) { Assert.Equal(IntPtr.Zero, data); continue; }
            Assert.Equal(0, data % 64);
            new Span<byte>((void*)data, (int)n).Fill(0xA5); // writable across its whole length
            bool pooled = (long)n >= CpuMemoryPool.MinPooledBytes;
            Assert.Equal(pooled ? inUse + CpuMemoryPool.ClassOf((long)n) : inUse, CpuMemoryPool.Statistics.InUseBytes);
            if (n == 100) ((delegate* unmanaged<IntPtr, void>)dataPtr[1])(context); // the DataPtr's own deleter
            else a.DeleteAny(data); // raw_deallocate
            Assert.Equal(inUse, CpuMemoryPool.Statistics.InUseBytes);
        }
    }

    /// <summary>A managed allocation inside the callbacks could start a GC in the middle of a libtorch operator.</summary>
    [Fact]
    public void CallbacksAllocateNoManagedMemoryOnceWarm()
    {
        if (!Supported) return;
        Settle();
        var a = Installed();
        var dataPtr = stackalloc IntPtr[4];
        var held = stackalloc IntPtr[3];
        nuint[] sizes = [300_000, 4 << 20, 1_000_000];
        long before = 0;
        for (int r = 0; r <= 1000; r++)
        {
            if (r == 1) before = GC.GetAllocatedBytesForCurrentThread(); // round 0 warms the pool
            for (int i = 0; i < sizes.Length; i++)
            {
                a.Allocate((IntPtr)dataPtr, a.Self, sizes[i]);
                held[i] = dataPtr[0];
            }
            for (int i = 0; i < sizes.Length; i++) a.DeleteAny(held[i]);
        }
        Assert.Equal(before, GC.GetAllocatedBytesForCurrentThread());
    }
}
