namespace ConvKit.Callbacks;

/// <summary>Whether a monitored quantity should go down or up; Auto decides from its name as Keras does.</summary>
public enum MonitorMode
{
    /// <summary>Maximize names containing "acc" or "auc" (or starting with "fmeasure"), minimize everything else.</summary>
    Auto,

    /// <summary>Lower is better.</summary>
    Min,

    /// <summary>Higher is better.</summary>
    Max,
}

static class Monitor
{
    public static bool IsMax(string monitor, MonitorMode mode) => mode switch
    {
        MonitorMode.Max => true,
        MonitorMode.Min => false,
        _ => monitor.Contains("acc", StringComparison.Ordinal) || monitor.Contains("auc", StringComparison.Ordinal)
            || monitor.StartsWith("fmeasure", StringComparison.Ordinal),
    };

    /// <summary>The monitored value of this epoch; when the logs lack it, warns (naming the callback) and returns false.</summary>
    public static bool TryGet(string callback, string monitor, Logs logs, out double current)
    {
        if (logs.Get(monitor) is { } value)
        {
            current = value;
            return true;
        }
        Console.Error.WriteLine($"{callback}: metric '{monitor}' is not available; available metrics are: {string.Join(", ", logs.Keys)}");
        current = 0;
        return false;
    }
}
