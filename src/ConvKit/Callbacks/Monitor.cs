namespace ConvKit.Callbacks;

/// <summary>Whether a monitored quantity should go down or up; Auto decides from the metric as Keras 3 does.</summary>
public enum MonitorMode
{
    /// <summary>
    /// From the compiled metric of that name (without "val_"), by its <see cref="Training.Metric.GreaterIsBetter"/>
    /// (accuracies, top-k included, up; errors down); "loss" down. Only names that match no metric with a known
    /// direction fall back to the name: maximize names containing "acc" or "auc" (or starting with "fmeasure"),
    /// minimize everything else.
    /// </summary>
    Auto,

    /// <summary>Lower is better.</summary>
    Min,

    /// <summary>Higher is better.</summary>
    Max,
}

static class Monitor
{
    /// <summary>Whether to maximize <paramref name="monitor"/>: by the mode, else by the metric of <paramref name="model"/>
    /// with that name, else by the name (see <see cref="MonitorMode.Auto"/>).</summary>
    public static bool IsMax(string monitor, MonitorMode mode, Models.Model? model = null) => mode switch
    {
        MonitorMode.Max => true,
        MonitorMode.Min => false,
        _ => FromMetric(monitor, model) ?? ByName(monitor),
    };

    /// <summary>Keras' older rule by name (ReduceLROnPlateau's Keras rule looks for "acc" only).</summary>
    public static bool ByName(string monitor) =>
        monitor.Contains("acc", StringComparison.Ordinal) || monitor.Contains("auc", StringComparison.Ordinal)
        || monitor.StartsWith("fmeasure", StringComparison.Ordinal);

    /// <summary>The direction of the compiled metric <paramref name="monitor"/> names ("val_" stripped; "loss" down), or null.</summary>
    public static bool? FromMetric(string monitor, Models.Model? model)
    {
        var name = monitor.StartsWith("val_", StringComparison.Ordinal) ? monitor[4..] : monitor;
        if (name == "loss") return false;
        return model?.CompiledMetrics.FirstOrDefault(m => m.Name == name && m.GreaterIsBetter is not null)?.GreaterIsBetter;
    }

    /// <summary>
    /// The monitored value of this epoch; when the logs lack it, warns (naming the callback) on <paramref name="warnings"/>
    /// (standard error when null) and returns false.
    /// </summary>
    public static bool TryGet(string callback, string monitor, Logs logs, out double current, TextWriter? warnings = null)
    {
        if (logs.Get(monitor) is { } value)
        {
            current = value;
            return true;
        }
        (warnings ?? DefaultOutput.Error).WriteLine($"{callback}: metric '{monitor}' is not available; available metrics are: {string.Join(", ", logs.Keys)}");
        current = 0;
        return false;
    }
}
