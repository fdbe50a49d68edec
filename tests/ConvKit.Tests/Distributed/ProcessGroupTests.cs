using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using ConvKit.Distributed;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Distributed;

/// <summary>ProcessGroup over libtorch's c10d (TCPStore + Gloo) on loopback: collectives, probe, named failures.</summary>
public class ProcessGroupTests
{
    [Fact]
    public void TheBridgeIsBuiltAndPassesItsProbe()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) return;
        Assert.True(ProcessGroup.IsAvailable, ProcessGroup.UnavailableReason);
    }

    [Fact]
    public void AllReduceSumsAndAveragesAcrossTwoRanks()
    {
        var r = LoopbackWorld.Run(2, pg =>
        {
            using var t = tensor(new float[] { 0, 1, 2, 3, 4, 5 }.Select(v => v + pg.Rank * 10f).ToArray()).reshape(2, 3);
            pg.AllReduce(t);
            var sum = t.data<float>().ToArray();
            using var a = tensor(Enumerable.Repeat(pg.Rank + 1.0, 4).ToArray());
            pg.AllReduce(a, ReduceOperation.Average);
            using var i = tensor(new long[] { pg.Rank, 7 });
            pg.AllReduce(i);
            return (sum, a.data<double>().ToArray(), i.data<long>().ToArray());
        });
        foreach (var (sum, avg, ints) in r)
        {
            Assert.Equal(new float[] { 10, 12, 14, 16, 18, 20 }, sum);
            Assert.All(avg, v => Assert.Equal(1.5, v));
            Assert.Equal(new long[] { 1, 14 }, ints);
        }
    }

    [Fact]
    public void BroadcastCopiesRankZerosTensorAndBarrierReturns()
    {
        var r = LoopbackWorld.Run(2, pg =>
        {
            using var t = pg.Rank == 0 ? tensor(new float[] { 3, 1, 4, 1, 5 }) : zeros(5);
            pg.Broadcast(t);
            pg.Barrier();
            using var big = pg.Rank == 1 ? ones(1 << 20) : zeros(1 << 20);
            pg.Broadcast(big, root: 1);
            return (t.data<float>().ToArray(), big.sum().item<float>());
        });
        foreach (var (v, s) in r)
        {
            Assert.Equal(new float[] { 3, 1, 4, 1, 5 }, v);
            Assert.Equal(1 << 20, s);
        }
    }

    [Fact]
    public void AWorldOfOneNeedsNoPeers()
    {
        using var pg = ProcessGroup.Initialize(LoopbackWorld.Env(LoopbackWorld.FreePort(), 1, 0));
        using var t = ones(3);
        pg.AllReduce(t, ReduceOperation.Average);
        Assert.Equal(3f, t.sum().item<float>());
    }

    [Fact, Trait("Catalogue", "Hostile")]
    public void ATakenPortIsANamedError()
    {
        var l = new TcpListener(IPAddress.Any, 0);
        l.Start();
        try
        {
            int port = ((IPEndPoint)l.LocalEndpoint).Port;
            var e = Assert.Throws<DistributedException>(() => ProcessGroup.Initialize(LoopbackWorld.Env(port, 2, 0), TimeSpan.FromSeconds(5)));
            Assert.Equal(DistributedFailure.PortInUse, e.Failure);
            Assert.Contains($"MASTER_PORT {port}", e.Message);
        }
        finally
        {
            l.Stop();
        }
    }

    [Fact, Trait("Catalogue", "Hostile")]
    public void AnUnreachableMasterIsANamedErrorWithinTheTimeout()
    {
        int port = LoopbackWorld.FreePort();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<DistributedException>(() => ProcessGroup.Initialize(LoopbackWorld.Env(port, 2, 1), TimeSpan.FromSeconds(3)));
        Assert.True(e.Failure is DistributedFailure.MasterUnreachable or DistributedFailure.Timeout, e.Failure + ": " + e.Message + " / " + e.EngineDetail);
        Assert.Contains($"127.0.0.1:{port}", e.Message);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(30), $"took {sw.Elapsed}");
    }

    [Fact, Trait("Catalogue", "Hostile")]
    public void MissingRanksAreATimeoutOnRankZero()
    {
        var e = Assert.Throws<DistributedException>(() => ProcessGroup.Initialize(LoopbackWorld.Env(LoopbackWorld.FreePort(), 2, 0), TimeSpan.FromSeconds(2)));
        Assert.Equal(DistributedFailure.Timeout, e.Failure);
        Assert.Contains("WORLD_SIZE=2", e.Message);
    }

    [Fact, Trait("Catalogue", "Hostile")]
    public void DisagreeingWorldSizesAreANamedError()
    {
        int port = LoopbackWorld.FreePort();
        DistributedException? rank1 = null, rank0 = null;
        var t0 = new Thread(() =>
        {
            try { using var pg = ProcessGroup.Initialize(LoopbackWorld.Env(port, 2, 0), TimeSpan.FromSeconds(4)); }
            catch (DistributedException e) { rank0 = e; }
        });
        var t1 = new Thread(() =>
        {
            try { using var pg = ProcessGroup.Initialize(new DistributedEnvironment("127.0.0.1", port, 3, 1, 1), TimeSpan.FromSeconds(4)); }
            catch (DistributedException e) { rank1 = e; }
        });
        t0.Start(); t1.Start();
        Assert.True(t0.Join(TimeSpan.FromSeconds(60)) && t1.Join(TimeSpan.FromSeconds(60)));
        Assert.NotNull(rank1);
        Assert.Equal(DistributedFailure.WorldSizeMismatch, rank1!.Failure);
        Assert.Contains("WORLD_SIZE=3 on rank 1", rank1.Message);
        Assert.Contains("WORLD_SIZE=2", rank1.Message);
        Assert.NotNull(rank0); // rank 0 waits for a rank that left, then times out
    }

    [Fact, Trait("Catalogue", "Hostile")]
    public void APeerThatLeavesMakesTheOtherFailFastWithANamedError()
    {
        int port = LoopbackWorld.FreePort();
        DistributedException? seen = null;
        TimeSpan took = default;
        using var ready = new Barrier(2);
        var t0 = new Thread(() =>
        {
            using var pg = ProcessGroup.Initialize(LoopbackWorld.Env(port, 2, 0), TimeSpan.FromSeconds(50));
            ready.SignalAndWait();
            var sw = System.Diagnostics.Stopwatch.StartNew();
            try
            {
                using var t = ones(1000);
                pg.AllReduce(t);
            }
            catch (DistributedException e) { seen = e; }
            took = sw.Elapsed;
        });
        var t1 = new Thread(() =>
        {
            var pg = ProcessGroup.Initialize(LoopbackWorld.Env(port, 2, 1), TimeSpan.FromSeconds(50));
            ready.SignalAndWait();
            pg.Dispose(); // leaves without taking part in the all-reduce
        });
        t0.Start(); t1.Start();
        Assert.True(t0.Join(TimeSpan.FromSeconds(90)) && t1.Join(TimeSpan.FromSeconds(90)));
        Assert.NotNull(seen);
        Assert.True(seen!.Failure is DistributedFailure.PeerLost or DistributedFailure.Timeout, seen.Failure + ": " + seen.EngineDetail);
        Assert.Contains("rank 0", seen.Message);
        Assert.True(took < TimeSpan.FromSeconds(60), $"took {took}");
    }

    [Fact, Trait("Catalogue", "Hostile")]
    public void BadEnvironmentVariablesAreNamed()
    {
        DistributedEnvironment? Parse(params (string K, string V)[] vars)
        {
            var d = vars.ToDictionary(v => v.K, v => v.V);
            return DistributedEnvironment.FromVariables(k => d.GetValueOrDefault(k));
        }
        Assert.Null(Parse());
        var e = Assert.Throws<DistributedException>(() => Parse(("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "1")));
        Assert.Contains("RANK is not set", e.Message);
        e = Assert.Throws<DistributedException>(() => Parse(("WORLD_SIZE", "two"), ("RANK", "0")));
        Assert.Contains("WORLD_SIZE must be an integer; received 'two'", e.Message);
        e = Assert.Throws<DistributedException>(() => Parse(("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "29500")));
        Assert.Contains("RANK must be in [0, WORLD_SIZE - 1] = [0, 1]; received 2", e.Message);
        e = Assert.Throws<DistributedException>(() => Parse(("WORLD_SIZE", "2"), ("RANK", "1"), ("MASTER_PORT", "29500")));
        Assert.Contains("MASTER_ADDR is not set", e.Message);
        e = Assert.Throws<DistributedException>(() => Parse(("WORLD_SIZE", "2"), ("RANK", "1"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "70000")));
        Assert.Contains("MASTER_PORT must be a TCP port", e.Message);
        Assert.Equal(DistributedFailure.Configuration, e.Failure);
        var ok = Parse(("WORLD_SIZE", "4"), ("RANK", "3"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "node0"), ("MASTER_PORT", "29500"));
        Assert.Equal(new DistributedEnvironment("node0", 29500, 4, 3, 1), ok);
    }

    [Fact, Trait("Catalogue", "Hostile")]
    public void TheProbeRefusesALibtorchLackingTheC10dSymbols()
    {
        if (!OperatingSystem.IsLinux()) return;
        var libc = NativeLibrary.Load("libc.so.6");
        string? why = C10dBridge.CheckLibTorch(libc, "libc.so.6");
        Assert.NotNull(why);
        Assert.Contains("libc.so.6 does not export c10d::TCPStore::TCPStore", why);
        Assert.Contains("not the 2.10 build", why);
        Assert.Equal("libtorch_cpu.so is not loaded in this process.", C10dBridge.CheckLibTorch(IntPtr.Zero, "libtorch_cpu.so"));
        // ... and the real one passes.
        using (zeros(1)) { }
        Assert.Null(C10dBridge.CheckLibTorch(ConvKit.Native.TorchNative.LoadedLibrary("libtorch_cpu.so"), "libtorch_cpu.so"));
    }

    [Fact, Trait("Catalogue", "Hostile")]
    public void NonContiguousOrUnsupportedTensorsAreRefusedBeforeTheEngine()
    {
        using var pg = ProcessGroup.Initialize(LoopbackWorld.Env(LoopbackWorld.FreePort(), 1, 0));
        using var m = ones(3, 4);
        using var tr = m.t();
        Assert.Contains("contiguous", Assert.Throws<ShapeException>(() => pg.AllReduce(tr)).Message);
        using var h = ones(3, dtype: ScalarType.Float16);
        Assert.Contains("dtype Float16", Assert.Throws<UnsupportedException>(() => pg.AllReduce(h)).Message);
        pg.Dispose();
        using var t = ones(3);
        Assert.Contains("closed ProcessGroup", Assert.Throws<DistributedException>(() => pg.AllReduce(t)).Message);
    }
}
