using System.Net;
using System.Net.Sockets;
using ConvKit.Distributed;

namespace ConvKit.Tests.Distributed;

/// <summary>Runs the ranks of a loopback world as threads of the test process, each with its own ProcessGroup
/// (c10d allows several groups per process; each rank's TCPStore client and Gloo pairs are separate sockets).</summary>
internal static class LoopbackWorld
{
    internal static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    internal static DistributedEnvironment Env(int port, int world, int rank) => new("127.0.0.1", port, world, rank, rank);

    /// <summary>Runs <paramref name="body"/> on <paramref name="world"/> threads, one rank each; returns their results
    /// (or rethrows the first exception after all threads ended).</summary>
    internal static T[] Run<T>(int world, Func<ProcessGroup, T> body, TimeSpan? timeout = null)
    {
        int port = FreePort();
        var results = new T[world];
        var errors = new Exception?[world];
        var threads = Enumerable.Range(0, world).Select(rank => new Thread(() =>
        {
            try
            {
                using var pg = ProcessGroup.Initialize(Env(port, world, rank), timeout ?? TimeSpan.FromSeconds(30));
                results[rank] = body(pg);
            }
            catch (Exception e)
            {
                errors[rank] = e;
            }
        }, 16 * 1024 * 1024)).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) Assert.True(t.Join(TimeSpan.FromSeconds(120)), "a rank thread did not finish within 120 s");
        if (errors.FirstOrDefault(e => e is not null) is { } first) throw new AggregateException(errors.Where(e => e is not null)!);
        return results;
    }
}
