using System.Diagnostics;

namespace ConvKit.Tests.Native;

/// <summary>
/// The thread count 'convkit train' chooses without --threads (issue 17, steady under contention): every logical
/// processor other processes leave free, measured from /proc.
/// </summary>
public class CpuContentionTests
{
    [Theory]
    [InlineData(2, 0.0, 2)]
    [InlineData(2, 0.55, 2)]   // a processor counts as taken from 60% busy
    [InlineData(2, 0.6, 1)]
    [InlineData(2, 1.0, 1)]
    [InlineData(2, 2.0, 1)]    // never fewer than one thread
    [InlineData(8, 3.2, 5)]
    [InlineData(1, 1.0, 1)]
    public void ThreadsAreTheProcessorsOtherProcessesLeaveFree(int processors, double busy, int expected) =>
        Assert.Equal(expected, CpuContention.ThreadsBeside(processors, busy));

    [Fact]
    public void ABusyProcessBesideThisOneIsMeasured()
    {
        if (!OperatingSystem.IsLinux()) return;
        // A spinning shell detached from this process tree (its parent exits, so it is nobody's child here): the measure
        // leaves out the .NET host that launched this process and that host's children, as it must for 'dotnet run'.
        using var starter = Process.Start(new ProcessStartInfo("/bin/sh", ["-c", "( while :; do :; done ) >/dev/null 2>&1 & echo $!"])
        { UseShellExecute = false, RedirectStandardOutput = true })!;
        int pid = int.Parse(starter.StandardOutput.ReadLine()!.Trim(), System.Globalization.CultureInfo.InvariantCulture);
        starter.WaitForExit();
        using var busy = Process.GetProcessById(pid);
        try
        {
            Thread.Sleep(100);
            double others = CpuContention.OtherProcessesBusyProcessors(TimeSpan.FromMilliseconds(500));
            // The spinning shell alone keeps at least half a processor busy, whatever else the machine runs.
            Assert.InRange(others, 0.5, Environment.ProcessorCount);
            int threads = CpuContention.DefaultThreads(out double measured, TimeSpan.FromMilliseconds(300));
            Assert.InRange(measured, 0.0, Environment.ProcessorCount);
            Assert.Equal(CpuContention.ThreadsBeside(Environment.ProcessorCount, measured), threads);
        }
        finally
        {
            busy.Kill();
            busy.WaitForExit();
        }
    }

    [Fact]
    public void AWindowOutsideTenMillisecondsToTenSecondsIsANamedError()
    {
        var e = Assert.Throws<InvalidOptionException>(() => CpuContention.OtherProcessesBusyProcessors(TimeSpan.FromSeconds(11)));
        Assert.Contains("window must be between 10 ms and 10 s", e.Message);
    }
}
