// How much of the machine other processes use, read from Linux's /proc, so that a run started beside a busy process
// does not put two libtorch threads on one shared core (issue 17: LeNet-5 b32 training ran at 28-48% of its quiet speed
// with 2 threads beside one busy core; with 1 thread it keeps the free core to itself).
using System.Globalization;

namespace ConvKit;

/// <summary>
/// Measures how busy other processes keep this machine's logical processors, and the thread count ConvKit chooses from
/// that when none is given (<c>convkit train</c> without <c>--threads</c>). Linux only (<c>/proc/stat</c> and
/// <c>/proc/self/stat</c>); elsewhere, when /proc cannot be read, or when this process sees fewer processors than the
/// machine has (a CPU quota, an affinity mask), other processes count as idle.
/// </summary>
public static class CpuContention
{
    /// <summary>The measuring window <see cref="DefaultThreads"/> uses: long enough for /proc's 10 ms ticks to resolve a
    /// busy core on a small machine (20 ticks per processor), short beside a training run.</summary>
    public static TimeSpan DefaultWindow { get; } = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// Logical processors kept busy by processes other than this one over <paramref name="window"/>: the machine's busy
    /// time (user, nice, system, interrupts, and time the hypervisor gave to other guests) minus this process's own
    /// CPU time, divided by the window. 0 when it cannot be measured.
    /// </summary>
    /// <exception cref="InvalidOptionException"><paramref name="window"/> is not between 10 ms and 10 s.</exception>
    public static double OtherProcessesBusyProcessors(TimeSpan window)
    {
        if (window < TimeSpan.FromMilliseconds(10) || window > TimeSpan.FromSeconds(10))
            throw new InvalidOptionException(nameof(window), $"window must be between 10 ms and 10 s; received {window.TotalMilliseconds} ms.");
        if (!OperatingSystem.IsLinux()) return 0;
        if (ReadMachine() is not var (busy0, total0, cpus) || ReadSelf() is not { } self0) return 0;
        Thread.Sleep(window);
        if (ReadMachine() is not var (busy1, total1, _) || ReadSelf() is not { } self1) return 0;
        long total = total1 - total0;
        // Only when this process sees the whole machine: under a CPU quota or an affinity mask, the machine's other
        // processors' load says nothing about the ones this process may use.
        if (total <= 0 || cpus <= 0 || cpus != Environment.ProcessorCount) return 0;
        long others = Math.Max(0, busy1 - busy0 - (self1 - self0));
        return Math.Min(cpus, (double)others / total * cpus);
    }

    /// <summary>
    /// The intra-op thread count for a run started now: the logical processors (<see cref="Environment.ProcessorCount"/>)
    /// minus those other processes keep busy (a processor counts as taken from 60% busy), at least 1. On a quiet machine
    /// that is every logical processor. Measured once (the count then stays fixed for the run, so that a run repeats
    /// bit for bit with the thread count it recorded).
    /// </summary>
    /// <param name="window">How long to measure; <see cref="DefaultWindow"/> when null.</param>
    /// <param name="busyProcessors">What was measured: processors other processes kept busy.</param>
    public static int DefaultThreads(out double busyProcessors, TimeSpan? window = null)
    {
        int processors = Math.Clamp(Environment.ProcessorCount, 1, Backend.MaxThreads);
        busyProcessors = OtherProcessesBusyProcessors(window ?? DefaultWindow);
        return ThreadsBeside(processors, busyProcessors);
    }

    /// <summary>The rule of <see cref="DefaultThreads"/>: <paramref name="processors"/> minus the busy ones (from 60%
    /// busy), at least 1.</summary>
    internal static int ThreadsBeside(int processors, double busyProcessors) =>
        Math.Clamp(processors - (int)Math.Floor(busyProcessors + 0.4), 1, processors);

    // /proc/stat's first line: "cpu user nice system idle iowait irq softirq steal guest guest_nice" in USER_HZ ticks
    // over all processors (guest time is already inside user). Returns busy and total ticks and the processor count.
    static (long Busy, long Total, int Cpus)? ReadMachine()
    {
        try
        {
            long busy = 0, total = 0;
            int cpus = 0;
            foreach (var line in File.ReadLines("/proc/stat"))
            {
                if (line.StartsWith("cpu ", StringComparison.Ordinal))
                {
                    var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    if (f.Length < 9) return null;
                    long V(int i) => long.Parse(f[i], CultureInfo.InvariantCulture);
                    long user = V(1), nice = V(2), system = V(3), idle = V(4), iowait = V(5), irq = V(6), softirq = V(7), steal = V(8);
                    busy = user + nice + system + irq + softirq + steal;
                    total = busy + idle + iowait;
                }
                else if (line.StartsWith("cpu", StringComparison.Ordinal)) cpus++;
                else if (cpus > 0) break;
            }
            return total > 0 ? (busy, total, cpus) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            return null;
        }
    }

    // This process's user + system ticks (fields 14 and 15 of /proc/self/stat, counted after the parenthesised name,
    // which may itself hold spaces), all threads included.
    static long? ReadSelf()
    {
        try
        {
            var text = File.ReadAllText("/proc/self/stat");
            var f = text[(text.LastIndexOf(')') + 2)..].Split(' ');
            // f[0] is field 3 (state), so field k is f[k - 3].
            return long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            return null;
        }
    }
}
