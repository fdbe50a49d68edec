using System.Globalization;

namespace ConvKit.Distributed;

/// <summary>
/// Where this process sits in a distributed run, in the torchrun convention that Kubernetes' PyTorchJob and most
/// Slurm scripts also set: <c>MASTER_ADDR</c>, <c>MASTER_PORT</c>, <c>WORLD_SIZE</c>, <c>RANK</c>, <c>LOCAL_RANK</c>.
/// </summary>
/// <param name="MasterAddress">Host name or address of rank 0, which hosts the rendezvous store (<c>MASTER_ADDR</c>).</param>
/// <param name="MasterPort">TCP port of the rendezvous store on rank 0 (<c>MASTER_PORT</c>).</param>
/// <param name="WorldSize">Number of ranks (<c>WORLD_SIZE</c>).</param>
/// <param name="Rank">This process' rank, 0 to WorldSize - 1 (<c>RANK</c>).</param>
/// <param name="LocalRank">This process' rank on its machine (<c>LOCAL_RANK</c>; defaults to <paramref name="Rank"/>).</param>
public sealed record DistributedEnvironment(string MasterAddress, int MasterPort, int WorldSize, int Rank, int LocalRank)
{
    /// <summary>The variables read, in the order a launcher usually sets them.</summary>
    public static readonly IReadOnlyList<string> Variables = ["MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK"];

    /// <summary>True for rank 0, the rank that writes checkpoints, logs and the final model.</summary>
    public bool IsChief => Rank == 0;

    /// <summary>
    /// Reads the environment. Returns null when <c>WORLD_SIZE</c> is not set (not launched as part of a group).
    /// </summary>
    /// <exception cref="DistributedException">A variable is missing or malformed, or the rank is out of range
    /// (<see cref="DistributedFailure.Configuration"/>); the message names the variable.</exception>
    public static DistributedEnvironment? FromEnvironment() => FromVariables(Environment.GetEnvironmentVariable);

    /// <summary>Reads the five variables through <paramref name="get"/> (for launchers and tests).</summary>
    /// <exception cref="DistributedException">As <see cref="FromEnvironment"/>.</exception>
    public static DistributedEnvironment? FromVariables(Func<string, string?> get)
    {
        ArgumentNullException.ThrowIfNull(get);
        if (string.IsNullOrWhiteSpace(get("WORLD_SIZE"))) return null;
        int world = Integer(get, "WORLD_SIZE", required: true)!.Value;
        int rank = Integer(get, "RANK", required: true)!.Value;
        int local = Integer(get, "LOCAL_RANK", required: false) ?? rank;
        string? addr = get("MASTER_ADDR");
        if (string.IsNullOrWhiteSpace(addr))
            throw new DistributedException(DistributedFailure.Configuration, "MASTER_ADDR is not set (WORLD_SIZE is): set it to the host name or address of rank 0.");
        int port = Integer(get, "MASTER_PORT", required: true)!.Value;
        var env = new DistributedEnvironment(addr.Trim(), port, world, rank, local);
        env.Validate();
        return env;
    }

    /// <summary>Checks the values; the message names the variable.</summary>
    /// <exception cref="DistributedException">A value is out of range (<see cref="DistributedFailure.Configuration"/>).</exception>
    public void Validate()
    {
        if (WorldSize < 1) Fail($"WORLD_SIZE must be at least 1; received {WorldSize}.");
        if (Rank < 0 || Rank >= WorldSize) Fail($"RANK must be in [0, WORLD_SIZE - 1] = [0, {WorldSize - 1}]; received {Rank}.");
        if (LocalRank < 0) Fail($"LOCAL_RANK must be >= 0; received {LocalRank}.");
        if (MasterPort is < 1 or > 65535) Fail($"MASTER_PORT must be a TCP port in [1, 65535]; received {MasterPort}.");
        if (string.IsNullOrWhiteSpace(MasterAddress)) Fail("MASTER_ADDR must not be empty.");
    }

    static void Fail(string message) => throw new DistributedException(DistributedFailure.Configuration, message);

    static int? Integer(Func<string, string?> get, string name, bool required)
    {
        string? text = get(name);
        if (string.IsNullOrWhiteSpace(text))
        {
            if (required) Fail($"{name} is not set (WORLD_SIZE is): a launcher sets MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK and LOCAL_RANK together.");
            return null;
        }
        if (!int.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int v))
            Fail($"{name} must be an integer; received '{text}'.");
        return v;
    }
}
