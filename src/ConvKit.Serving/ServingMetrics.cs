using Prometheus;

namespace ConvKit.Serving;

/// <summary>
/// The server's Prometheus metrics (prometheus-net), in a registry of its own so that several servers in one process
/// do not mix their counts: requests by model, endpoint and status, request latency, batch sizes, queue depth and
/// inference time per batch. <c>GET /metrics</c> exposes them in Prometheus' text format.
/// </summary>
public sealed class ServingMetrics
{
    readonly Counter requests;
    readonly Histogram latency;
    readonly Histogram batchSize;
    readonly Gauge queueDepth;
    readonly Histogram inferenceTime;

    /// <summary>Creates the metrics in a new registry.</summary>
    public ServingMetrics()
    {
        Registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(Registry);
        requests = factory.CreateCounter("convkit_requests_total", "Requests answered, by model, endpoint and HTTP status.",
            new CounterConfiguration { LabelNames = ["model", "endpoint", "status"] });
        latency = factory.CreateHistogram("convkit_request_duration_seconds", "Time from the request's arrival to its answer.",
            new HistogramConfiguration { LabelNames = ["model", "endpoint"], Buckets = Histogram.ExponentialBuckets(0.0005, 2, 16) });
        batchSize = factory.CreateHistogram("convkit_batch_size", "Samples per forward pass of the dynamic batcher.",
            new HistogramConfiguration { LabelNames = ["model"], Buckets = Histogram.ExponentialBuckets(1, 2, 13) });
        queueDepth = factory.CreateGauge("convkit_queue_depth", "Requests waiting in the model's queue.",
            new GaugeConfiguration { LabelNames = ["model"] });
        inferenceTime = factory.CreateHistogram("convkit_inference_duration_seconds", "Time of one batch's forward pass.",
            new HistogramConfiguration { LabelNames = ["model"], Buckets = Histogram.ExponentialBuckets(0.0002, 2, 16) });
    }

    /// <summary>The registry <c>/metrics</c> exports.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary>Counts one answered request and its latency.</summary>
    public void Request(string model, string endpoint, int status, double seconds)
    {
        requests.WithLabels(model, endpoint, status.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
        latency.WithLabels(model, endpoint).Observe(seconds);
    }

    /// <summary>Records one batch: its samples and forward-pass time.</summary>
    public void Batch(string model, int samples, double seconds)
    {
        batchSize.WithLabels(model).Observe(samples);
        inferenceTime.WithLabels(model).Observe(seconds);
    }

    /// <summary>Sets the queue depth of <paramref name="model"/>.</summary>
    public void QueueDepth(string model, int depth) => queueDepth.WithLabels(model).Set(depth);
}
