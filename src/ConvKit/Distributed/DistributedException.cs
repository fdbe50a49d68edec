namespace ConvKit.Distributed;

/// <summary>What went wrong in a distributed run.</summary>
public enum DistributedFailure
{
    /// <summary>The environment or the arguments describe an impossible world (a missing or malformed variable, a rank out of range).</summary>
    Configuration,
    /// <summary>Ranks disagree on the world size.</summary>
    WorldSizeMismatch,
    /// <summary>Rank 0 could not listen on MASTER_PORT (already in use, or not a local address).</summary>
    PortInUse,
    /// <summary>This rank could not reach the master (MASTER_ADDR:MASTER_PORT) within the timeout.</summary>
    MasterUnreachable,
    /// <summary>Not every rank joined, or a collective did not complete, within the timeout.</summary>
    Timeout,
    /// <summary>A peer rank left the group (its process died or closed its connections).</summary>
    PeerLost,
    /// <summary>The process group was used after it was closed, or failed otherwise.</summary>
    Failed,
}

/// <summary>A distributed run failed: misconfigured world, unreachable master, timeout or a lost peer. The message
/// names the environment variable or CLI option, the rank and the address involved.</summary>
public class DistributedException : ConvKitException
{
    /// <summary>Creates the exception.</summary>
    public DistributedException(DistributedFailure failure, string message, string? engineDetail = null) : base(message)
    {
        Failure = failure;
        EngineDetail = engineDetail;
    }

    /// <summary>The kind of failure.</summary>
    public DistributedFailure Failure { get; }

    /// <summary>The engine's (c10d/Gloo's) own text, for diagnostics; not part of <see cref="Exception.Message"/>.</summary>
    public string? EngineDetail { get; }
}

/// <summary>Distributed training cannot run in this process: the c10d bridge library is missing (no g++ at build
/// time, not Linux x64) or the loaded libtorch does not provide the symbols and layouts it was written for.</summary>
public sealed class DistributedUnavailableException : ConvKitException
{
    /// <summary>Creates the exception.</summary>
    public DistributedUnavailableException(string reason)
        : base($"distributed training is unavailable: {reason}") => Reason = reason;

    /// <summary>Why the probe turned distributed training off.</summary>
    public string Reason { get; }
}
