using System.Net;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Distributed;

/// <summary>How <see cref="ProcessGroup.AllReduce"/> combines the ranks' tensors.</summary>
public enum ReduceOperation
{
    /// <summary>Element-wise sum over the ranks.</summary>
    Sum,
    /// <summary>Element-wise mean over the ranks (the sum divided by the world size).</summary>
    Average,
}

/// <summary>
/// A group of processes that exchange tensors through libtorch's own c10d engine: a <c>TCPStore</c> rendezvous on rank
/// 0 and the Gloo backend (<c>ProcessGroupGloo</c>), the engine PyTorch's DistributedDataParallel uses on CPUs.
/// </summary>
/// <remarks>
/// <para>Every rank must call the same collectives in the same order. Collectives wait at most <see cref="Timeout"/>;
/// a peer that dies makes the others fail at once (its sockets close) with a <see cref="DistributedException"/>
/// (<see cref="DistributedFailure.PeerLost"/>), never a hang or a process abort.</para>
/// <para>Thread safety: one collective at a time per group; a second thread calling while one runs is refused with a
/// <see cref="DistributedException"/> (two threads would issue the collectives in an order the other ranks cannot
/// match). Several groups in one process (one per thread) are fine.</para>
/// </remarks>
public sealed unsafe class ProcessGroup : IDisposable
{
    /// <summary>The default for <see cref="Timeout"/>.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    IntPtr handle;
    readonly object gate = new();

    ProcessGroup(IntPtr handle, DistributedEnvironment environment, TimeSpan timeout)
    {
        this.handle = handle;
        Environment = environment;
        Timeout = timeout;
    }

    /// <summary>Where this process sits in the group.</summary>
    public DistributedEnvironment Environment { get; }

    /// <summary>This process' rank.</summary>
    public int Rank => Environment.Rank;

    /// <summary>The number of ranks.</summary>
    public int WorldSize => Environment.WorldSize;

    /// <summary>The longest a rendezvous or a collective may wait for the other ranks.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>True when the c10d bridge loaded and passed its probe in this process.</summary>
    public static bool IsAvailable => C10dBridge.Unavailable is null;

    /// <summary>Why distributed training is off in this process, or null when it is available.</summary>
    public static string? UnavailableReason => C10dBridge.Unavailable;

    /// <summary>Joins the group the environment describes (<see cref="DistributedEnvironment.FromEnvironment"/>).</summary>
    /// <exception cref="DistributedException">WORLD_SIZE is not set, or as <see cref="Initialize"/>.</exception>
    /// <exception cref="DistributedUnavailableException">As <see cref="Initialize"/>.</exception>
    public static ProcessGroup InitializeFromEnvironment(TimeSpan? timeout = null)
    {
        var env = DistributedEnvironment.FromEnvironment()
            ?? throw new DistributedException(DistributedFailure.Configuration,
                "WORLD_SIZE is not set: launch with 'convkit train --nproc N', torchrun, a PyTorchJob or srun, or set MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK and LOCAL_RANK.");
        return Initialize(env, timeout);
    }

    /// <summary>
    /// Joins (rank 0: creates) the group: rank 0 listens on MASTER_PORT, every rank connects to MASTER_ADDR, they agree
    /// on the world size, then Gloo connects every pair of ranks. Returns once all <c>WORLD_SIZE</c> ranks have joined.
    /// </summary>
    /// <param name="environment">Master address and port, world size, rank.</param>
    /// <param name="timeout">How long to wait for the other ranks, here and in every collective (default <see cref="DefaultTimeout"/>).</param>
    /// <exception cref="DistributedException">Port in use, master unreachable, world size mismatch, timeout; the message
    /// names the variable and the address.</exception>
    /// <exception cref="DistributedUnavailableException">The c10d bridge is missing or does not match this libtorch.</exception>
    public static ProcessGroup Initialize(DistributedEnvironment environment, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(environment);
        environment.Validate();
        var t = timeout ?? DefaultTimeout;
        if (t <= TimeSpan.Zero || t.TotalMilliseconds > int.MaxValue)
            throw new DistributedException(DistributedFailure.Configuration, $"the distributed timeout must be positive and below 24 days; received {t}.");
        C10dBridge.Require();
        string host = ResolveHost(environment);
        var err = new byte[C10dBridge.ErrorCapacity];
        var hostBytes = System.Text.Encoding.UTF8.GetBytes(host + "\0");
        IntPtr h;
        fixed (byte* e = err)
        fixed (byte* hb = hostBytes)
        {
            h = C10dBridge.Init(hb, environment.MasterPort, environment.Rank, environment.WorldSize, (int)t.TotalMilliseconds, e, err.Length);
        }
        if (h == IntPtr.Zero) throw InitFailure(environment, t, C10dBridge.Text(err));
        return new ProcessGroup(h, environment, t);
    }

    static string ResolveHost(DistributedEnvironment env)
    {
        if (IPAddress.TryParse(env.MasterAddress, out _)) return env.MasterAddress;
        try
        {
            var addresses = Dns.GetHostAddresses(env.MasterAddress);
            var v4 = addresses.FirstOrDefault(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork);
            return (v4 ?? addresses.FirstOrDefault())?.ToString()
                ?? throw new DistributedException(DistributedFailure.MasterUnreachable, $"MASTER_ADDR '{env.MasterAddress}' resolves to no address.");
        }
        catch (System.Net.Sockets.SocketException)
        {
            throw new DistributedException(DistributedFailure.MasterUnreachable,
                $"MASTER_ADDR '{env.MasterAddress}' could not be resolved (rank {env.Rank}).");
        }
    }

    static DistributedException InitFailure(DistributedEnvironment env, TimeSpan timeout, string detail)
    {
        string where = $"{env.MasterAddress}:{env.MasterPort}";
        string s = detail.ToLowerInvariant();
        if (s.Contains("world_size mismatch"))
        {
            var parts = detail.Split(' ');
            string master = parts.Length > 0 ? parts[^1] : "?";
            return new DistributedException(DistributedFailure.WorldSizeMismatch,
                $"WORLD_SIZE={env.WorldSize} on rank {env.Rank}, but rank 0 (the master at {where}) has WORLD_SIZE={master}: every rank must be launched with the same WORLD_SIZE.", detail);
        }
        if (env.Rank == 0 && (s.Contains("address already in use") || s.Contains("failed to listen") || s.Contains("failed to bind") || s.Contains("eaddrinuse")))
            return new DistributedException(DistributedFailure.PortInUse,
                $"rank 0 cannot listen on MASTER_PORT {env.MasterPort} (MASTER_ADDR {env.MasterAddress}): the port is in use or the address is not local; choose another MASTER_PORT.", detail);
        if (env.Rank == 0 && s.Contains("clients joined"))
            return new DistributedException(DistributedFailure.Timeout,
                $"rank 0 waited {timeout.TotalSeconds:0.#} s on {where} and not all WORLD_SIZE={env.WorldSize} ranks joined: start every rank with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE.", detail);
        if (env.Rank != 0 && (s.Contains("connect") || s.Contains("refused") || s.Contains("unreachable") || s.Contains("client socket")))
            return new DistributedException(DistributedFailure.MasterUnreachable,
                $"rank {env.Rank} could not reach the master at MASTER_ADDR:MASTER_PORT = {where} within {timeout.TotalSeconds:0.#} s: is rank 0 running, and is the port open?", detail);
        if (s.Contains("timed out") || s.Contains("timeout"))
            return new DistributedException(DistributedFailure.Timeout,
                $"rank {env.Rank} timed out after {timeout.TotalSeconds:0.#} s waiting for the other ranks of WORLD_SIZE={env.WorldSize} at {where}.", detail);
        if (IsPeerLoss(s))
            return new DistributedException(DistributedFailure.PeerLost,
                $"rank {env.Rank}: a peer left while the group at {where} was forming.", detail);
        return new DistributedException(DistributedFailure.Failed,
            $"rank {env.Rank} could not join the group at {where} (WORLD_SIZE={env.WorldSize}); see EngineDetail.", detail);
    }

    static bool IsPeerLoss(string s) =>
        s.Contains("closed by peer") || s.Contains("connection reset") || s.Contains("broken pipe") || s.Contains("connection closed")
        || s.Contains("read error") || s.Contains("write error") || s.Contains("socket closed") || s.Contains("eof");

    DistributedException CollectiveFailure(string what, string detail)
    {
        string s = detail.ToLowerInvariant();
        if (IsPeerLoss(s))
            return new DistributedException(DistributedFailure.PeerLost,
                $"rank {Rank}: a peer rank left the group during {what} (its process ended or lost its connection); the run cannot continue with WORLD_SIZE={WorldSize}.", detail);
        if (s.Contains("timed out") || s.Contains("timeout"))
            return new DistributedException(DistributedFailure.Timeout,
                $"rank {Rank}: {what} did not complete within {Timeout.TotalSeconds:0.#} s (a peer is stuck or gone).", detail);
        return new DistributedException(DistributedFailure.Failed, $"rank {Rank}: {what} failed; see EngineDetail.", detail);
    }

    /// <summary>Combines <paramref name="tensor"/> across the ranks, in place: afterwards every rank holds the sum (or mean).</summary>
    /// <param name="tensor">A contiguous CPU tensor of float32, float64, int32 or int64, the same shape on every rank.</param>
    /// <param name="operation">Sum or average.</param>
    /// <exception cref="UnsupportedException">The tensor is not on the CPU or of another dtype.</exception>
    /// <exception cref="ShapeException">The tensor is not contiguous.</exception>
    /// <exception cref="DistributedException">A peer left, the timeout passed, or the group is closed.</exception>
    public void AllReduce(Tensor tensor, ReduceOperation operation = ReduceOperation.Sum)
    {
        CheckTensor(tensor, nameof(AllReduce));
        Run("all-reduce", (h, e, n) => C10dBridge.AllReduceSum(h, tensor.Handle, e, n));
        if (operation == ReduceOperation.Average && WorldSize > 1)
        {
            using var w = ((double)WorldSize).ToScalar();
            if (tensor.is_floating_point()) tensor.div_(w);
            else tensor.floor_divide_(w);
        }
    }

    /// <summary>Copies <paramref name="tensor"/> of rank <paramref name="root"/> into the same tensor on every rank.</summary>
    /// <exception cref="UnsupportedException">As <see cref="AllReduce"/>.</exception>
    /// <exception cref="ShapeException">As <see cref="AllReduce"/>.</exception>
    /// <exception cref="InvalidOptionException">The root is out of range.</exception>
    /// <exception cref="DistributedException">As <see cref="AllReduce"/>.</exception>
    public void Broadcast(Tensor tensor, int root = 0)
    {
        CheckTensor(tensor, nameof(Broadcast));
        if (root < 0 || root >= WorldSize) throw new InvalidOptionException(nameof(root), $"root must be a rank in [0, {WorldSize - 1}]; received {root}.");
        Run("broadcast", (h, e, n) => C10dBridge.Broadcast(h, tensor.Handle, root, e, n));
    }

    /// <summary>Returns once every rank has called it (an all-reduce of one number).</summary>
    /// <exception cref="DistributedException">As <see cref="AllReduce"/>.</exception>
    public void Barrier()
    {
        using var one = ones(1, dtype: ScalarType.Float32);
        AllReduce(one);
    }

    delegate int Collective(IntPtr handle, byte* err, int len);

    void Run(string what, Collective call)
    {
        if (!Monitor.TryEnter(gate))
            throw new DistributedException(DistributedFailure.Failed,
                $"rank {Rank}: {what} called while another collective runs on this ProcessGroup from another thread; call collectives from one thread.");
        try
        {
            if (handle == IntPtr.Zero) throw new DistributedException(DistributedFailure.Failed, $"rank {Rank}: {what} on a closed ProcessGroup.");
            var err = new byte[C10dBridge.ErrorCapacity];
            int rc;
            fixed (byte* e = err) rc = call(handle, e, err.Length);
            if (rc != 0) throw CollectiveFailure(what, C10dBridge.Text(err));
        }
        finally
        {
            Monitor.Exit(gate);
        }
    }

    static void CheckTensor(Tensor tensor, string op)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        if (tensor.device_type != DeviceType.CPU)
            throw new UnsupportedException($"{op}: the tensor must be on the CPU; it is on {tensor.device}.");
        if (!tensor.is_contiguous())
            throw new ShapeException($"{op}: the tensor must be contiguous (call .contiguous()).");
        if (tensor.dtype is not (ScalarType.Float32 or ScalarType.Float64 or ScalarType.Int32 or ScalarType.Int64))
            throw new UnsupportedException($"{op}: dtype {tensor.dtype} is not supported; use float32, float64, int32 or int64.");
    }

    /// <summary>Leaves the group: stops Gloo's threads and closes the connections. Idempotent.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (handle == IntPtr.Zero) return;
            var err = new byte[C10dBridge.ErrorCapacity];
            fixed (byte* e = err) C10dBridge.Destroy(handle, e, err.Length);
            handle = IntPtr.Zero;
        }
    }
}
