// convkit serve's host: Kestrel on the given address, the Open Inference Protocol's REST endpoints and the image
// endpoint over one dynamic batcher per model, Prometheus metrics, API key, limits and problem+json errors.
using System.Diagnostics;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Prometheus;

namespace ConvKit.Serving;

/// <summary>
/// An inference server for one or more <see cref="ServedModel"/>s (what <c>convkit serve</c> runs): the Open Inference
/// Protocol (KServe v2) over REST with JSON or binary tensors, <c>POST /v2/models/NAME/classify</c> for JPEG/PNG
/// images, dynamic batching, Prometheus <c>/metrics</c>, graceful shutdown.
/// </summary>
/// <remarks>Models are warmed up after the server starts listening: <c>/v2/health/live</c> answers at once,
/// <c>/v2/health/ready</c> and <c>/v2/models/NAME/ready</c> answer 200 once every model (or that model) ran.
/// Disposing the server disposes the models.</remarks>
public sealed class ConvKitServer : IAsyncDisposable
{
    readonly WebApplication app;
    readonly Dictionary<string, (ServedModel Model, DynamicBatcher Batcher)> models;
    readonly ServingOptions options;
    int batchersDisposed;

    ConvKitServer(WebApplication app, Dictionary<string, (ServedModel, DynamicBatcher)> models, ServingOptions options, ServingMetrics metrics)
    {
        this.app = app;
        this.models = models;
        this.options = options;
        Metrics = metrics;
    }

    /// <summary>The server's metrics.</summary>
    public ServingMetrics Metrics { get; }

    /// <summary>The host's lifetime (stopping, stopped).</summary>
    public IHostApplicationLifetime Lifetime => app.Lifetime;

    /// <summary>The addresses the server listens on, with the actual port (after <see cref="StartAsync"/>).</summary>
    public IReadOnlyList<string> Urls => app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
        .Features.Get<IServerAddressesFeature>()?.Addresses.ToArray() ?? [];

    /// <summary>Completes when every model has been warmed up and answers ready.</summary>
    public Task WarmUp { get; private set; } = Task.CompletedTask;

    /// <summary>Builds a server for <paramref name="served"/> (taking ownership of them) with <paramref name="options"/>.</summary>
    /// <param name="served">Models, by distinct names.</param>
    /// <param name="options">Address, batching and limits.</param>
    /// <param name="logging">Configures logging (the CLI writes JSON lines to standard error); null for none.</param>
    /// <exception cref="ServingOptionException">No model, two models of one name, or an invalid option.</exception>
    public static ConvKitServer Create(IReadOnlyList<ServedModel> served, ServingOptions options, Action<ILoggingBuilder>? logging = null)
    {
        ArgumentNullException.ThrowIfNull(served);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (served.Count == 0) throw new ServingOptionException("MODEL", "is missing: name at least one model to serve");
        var duplicate = served.GroupBy(m => m.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new ServingOptionException("MODEL", $"names '{duplicate.Key}' twice: give each model its own name with NAME=PATH");
        if (!IPAddress.TryParse(options.Host, out var address) && options.Host != "localhost")
            throw new ServingOptionException("--host", $"'{options.Host}' is not an IP address (use 127.0.0.1, ::1, 0.0.0.0 or localhost)");

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        logging?.Invoke(builder.Logging);
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = options.ShutdownTimeout);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            k.Limits.MaxRequestHeadersTotalSize = 32 * 1024;
            k.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(Math.Min(30, options.RequestTimeout.TotalSeconds));
            if (address is null) k.ListenLocalhost(options.Port);
            else k.Listen(address, options.Port);
        });
        var app = builder.Build();
        var metrics = new ServingMetrics();
        var table = new Dictionary<string, (ServedModel, DynamicBatcher)>(StringComparer.Ordinal);
        try
        {
            foreach (var m in served) table[m.Name] = (m, new DynamicBatcher(m, options, metrics));
        }
        catch
        {
            foreach (var (_, b) in table.Values) b.Dispose();
            throw;
        }
        var server = new ConvKitServer(app, table, options, metrics);
        new ServingEndpoints(table, options, metrics, app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("ConvKit.Serving")).Map(app);
        // Kestrel has drained in-flight requests when the host reports stopped; the batchers then finish their queues.
        app.Lifetime.ApplicationStopped.Register(server.DisposeBatchers);
        return server;
    }

    /// <summary>Starts listening, then warms the models up in the background (<see cref="WarmUp"/>).</summary>
    public async Task StartAsync(CancellationToken cancel = default)
    {
        await app.StartAsync(cancel).ConfigureAwait(false);
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("ConvKit.Serving");
        log.LogInformation("listening on {Urls}; models {Models}; max batch {MaxBatch}, max delay {MaxDelayMs} ms, {Workers} workers, queue {Queue}",
            string.Join(", ", Urls), string.Join(", ", models.Keys), options.MaxBatch, options.MaxDelayMs, options.Workers, options.QueueCapacity);
        WarmUp = Task.Run(() =>
        {
            foreach (var (model, _) in models.Values)
            {
                var clock = Stopwatch.StartNew();
                model.WarmUp(1, options.MaxBatch);
                if (model.BatchVariance is { } variance)
                    log.LogWarning("model {Model} is not batch-invariant here: {Variance}; it is served one request per forward pass so that answers equal Predict's (--no-batch-invariance batches it anyway)",
                        model.Name, variance);
                log.LogInformation("model {Model} ready after {WarmUpMs} ms of warm-up; batch-invariant {BatchInvariant}", model.Name, clock.ElapsedMilliseconds,
                    model.BatchInvariant && model.MayBatch);
            }
        });
    }

    /// <summary>Runs until the process is told to stop (SIGTERM, SIGINT) or <see cref="StopAsync"/>; in-flight requests
    /// are answered first.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancel = default) => app.WaitForShutdownAsync(cancel);

    /// <summary>Stops taking connections, lets in-flight requests finish (up to the shutdown timeout), then stops the
    /// batchers.</summary>
    public async Task StopAsync(CancellationToken cancel = default)
    {
        await app.StopAsync(cancel).ConfigureAwait(false);
        DisposeBatchers();
    }

    void DisposeBatchers()
    {
        if (Interlocked.Exchange(ref batchersDisposed, 1) != 0) return;
        foreach (var (_, batcher) in models.Values) batcher.Dispose();
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        try
        {
            await app.StopAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        DisposeBatchers();
        try
        {
            await WarmUp.ConfigureAwait(false);
        }
        catch (Exception e) when (e is ConvKitException or ObjectDisposedException)
        {
        }
        await app.DisposeAsync().ConfigureAwait(false);
        foreach (var (model, _) in models.Values) model.Dispose();
    }
}
