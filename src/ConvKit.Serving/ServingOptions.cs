namespace ConvKit.Serving;

/// <summary>
/// How <see cref="ConvKitServer"/> listens, batches and protects itself. The defaults are those of <c>convkit serve</c>;
/// <see cref="Validate"/> names each invalid option by its CLI name.
/// </summary>
public sealed record ServingOptions
{
    /// <summary>Address to bind (<c>--host</c>); loopback unless told otherwise.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port (<c>--port</c>); 0 picks a free one (see <see cref="ConvKitServer.Urls"/>).</summary>
    public int Port { get; init; } = 8080;

    /// <summary>Most samples run together in one forward pass (<c>--max-batch</c>); 1 turns dynamic batching off.</summary>
    public int MaxBatch { get; init; } = 32;

    /// <summary>How long the first request of a batch waits for others (<c>--max-delay-ms</c>).</summary>
    public double MaxDelayMs { get; init; } = 2;

    /// <summary>Inference workers per model, each running one batch at a time (<c>--workers</c>).</summary>
    public int Workers { get; init; } = 1;

    /// <summary>Requests that may wait per model (<c>--queue</c>); a request beyond it is answered 503 with Retry-After.</summary>
    public int QueueCapacity { get; init; } = 256;

    /// <summary>Largest request body in bytes (<c>--max-body-mb</c>); larger ones are answered 413 before they are read.</summary>
    public long MaxBodyBytes { get; init; } = 32L << 20;

    /// <summary>Pixel budget of an uploaded image, checked on its header before decoding (<c>--max-pixels</c>).</summary>
    public long MaxPixels { get; init; } = 50_000_000;

    /// <summary>Time allowed for one request, from the first byte of its body to its answer (<c>--timeout-s</c>).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>When set, every endpoint but <c>/v2/health/*</c> needs <c>Authorization: Bearer KEY</c> or
    /// <c>X-API-Key: KEY</c> (<c>--api-key-file</c>).</summary>
    public string? ApiKey { get; init; }

    /// <summary>Time a SIGTERM (or <see cref="ConvKitServer.StopAsync"/>) gives in-flight requests to finish.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Throws when an option is out of range; the message names it by its CLI name.</summary>
    /// <exception cref="ServingOptionException">An option is invalid.</exception>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Host)) throw new ServingOptionException("--host", "must name an address, e.g. 127.0.0.1 or 0.0.0.0");
        if (Port is < 0 or > 65535) throw new ServingOptionException("--port", $"must be between 0 and 65535; received {Port}");
        if (MaxBatch is < 1 or > 4096) throw new ServingOptionException("--max-batch", $"must be between 1 and 4096; received {MaxBatch}");
        if (!double.IsFinite(MaxDelayMs) || MaxDelayMs < 0 || MaxDelayMs > 10_000) throw new ServingOptionException("--max-delay-ms", $"must be between 0 and 10000; received {MaxDelayMs}");
        if (Workers is < 1 or > 64) throw new ServingOptionException("--workers", $"must be between 1 and 64; received {Workers}");
        if (QueueCapacity is < 1 or > 1_000_000) throw new ServingOptionException("--queue", $"must be between 1 and 1000000; received {QueueCapacity}");
        if (MaxBodyBytes < 1024) throw new ServingOptionException("--max-body-mb", $"must allow at least 1 KB; received {MaxBodyBytes} bytes");
        if (MaxPixels < 1) throw new ServingOptionException("--max-pixels", $"must be positive; received {MaxPixels}");
        if (RequestTimeout <= TimeSpan.Zero || RequestTimeout > TimeSpan.FromHours(1)) throw new ServingOptionException("--timeout-s", $"must be between 0 and 3600 seconds; received {RequestTimeout.TotalSeconds}");
        if (ApiKey is { } k && (k.Length < 8 || k.Any(char.IsWhiteSpace))) throw new ServingOptionException("--api-key-file", "the key must be at least 8 characters without white space");
        if (ShutdownTimeout < TimeSpan.Zero) throw new ServingOptionException("shutdown timeout", "must not be negative");
    }
}
