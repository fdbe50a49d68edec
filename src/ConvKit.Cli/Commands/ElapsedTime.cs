using System.Diagnostics;
using ConvKit.Callbacks;

namespace ConvKit.Cli.Commands;

/// <summary>
/// Logs <c>elapsed_seconds</c> at the end of every epoch: wall-clock seconds since this process started (validation of
/// the epoch included), so that history.csv is the run's accuracy-versus-time curve, "time to accuracy" included.
/// </summary>
public sealed class ElapsedTime : Callback
{
    /// <summary>Seconds since the process started.</summary>
    public static double Seconds() => (DateTime.Now - Process.GetCurrentProcess().StartTime).TotalSeconds;

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, Logs logs) => logs["elapsed_seconds"] = Seconds();
}
