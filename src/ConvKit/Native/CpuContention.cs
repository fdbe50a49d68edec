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
    /// CPU time, and minus that of the .NET host that launched it with its children ('dotnet run' and the build it has
    /// just run), divided by the window. 0 when it cannot be measured.
    /// </summary>
    /// <exception cref="InvalidOptionException"><paramref name="window"/> is not between 10 ms and 10 s.</exception>
    public static double OtherProcessesBusyProcessors(TimeSpan window)
    {
        if (window < TimeSpan.FromMilliseconds(10) || window > TimeSpan.FromSeconds(10))
            throw new InvalidOptionException(nameof(window), $"window must be between 10 ms and 10 s; received {window.TotalMilliseconds} ms.");
        if (!OperatingSystem.IsLinux()) return 0;
        int? launcher = DotnetLauncher();
        if (ReadMachine() is not var (busy0, total0, cpus) || ReadSelf() is not { } self0) return 0;
        long launcher0 = launcher is { } l0 ? TreeTicks(l0) : 0;
        Thread.Sleep(window);
        if (ReadMachine() is not var (busy1, total1, _) || ReadSelf() is not { } self1) return 0;
        long launcher1 = launcher is { } l1 ? TreeTicks(l1) : 0;
        long total = total1 - total0;
        // Only when this process sees the whole machine: under a CPU quota or an affinity mask, the machine's other
        // processors' load says nothing about the ones this process may use.
        if (total <= 0 || cpus <= 0 || cpus != Environment.ProcessorCount) return 0;
        long others = Math.Max(0, busy1 - busy0 - (self1 - self0) - Math.Max(0, launcher1 - launcher0));
        return Math.Min(cpus, (double)others / total * cpus);
    }

    // The parent process when it is a .NET host ('dotnet run', a test host): its work (the build 'dotnet run' has just
    // finished, whose MSBuild node is still winding down as this process starts) is this run's own, not contention.
    static int? DotnetLauncher()
    {
        try
        {
            int parent = Environment.ProcessId is var me && ReadStat(me) is { } s ? s.Parent : 0;
            if (parent <= 1) return null;
            return File.ReadAllText($"/proc/{parent}/comm").Trim() == "dotnet" ? parent : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    // User + system ticks of a process and all its descendants except this process, now.
    static long TreeTicks(int root)
    {
        var stats = new Dictionary<int, (int Parent, long Ticks)>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
            if (int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out int pid) && ReadStat(pid) is { } s)
                stats[pid] = s;
        var children = stats.ToLookup(p => p.Value.Parent, p => p.Key);
        long ticks = 0;
        var pending = new Stack<int>([root]);
        while (pending.Count > 0)
        {
            int pid = pending.Pop();
            if (pid == Environment.ProcessId) continue;
            if (stats.TryGetValue(pid, out var s)) ticks += s.Ticks;
            foreach (var child in children[pid]) pending.Push(child);
        }
        return ticks;
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

    // This process's user + system ticks, all threads included.
    static long? ReadSelf() => ReadStat(Environment.ProcessId)?.Ticks;

    // A process's parent and user + system ticks: fields 4, 14 and 15 of /proc/PID/stat, counted after the
    // parenthesised name, which may itself hold spaces. Null when the process is gone or the file unreadable.
    static (int Parent, long Ticks)? ReadStat(int pid)
    {
        try
        {
            var text = File.ReadAllText($"/proc/{pid}/stat");
            var f = text[(text.LastIndexOf(')') + 2)..].Split(' ');
            // f[0] is field 3 (state), so field k is f[k - 3].
            return (int.Parse(f[1], CultureInfo.InvariantCulture),
                long.Parse(f[11], CultureInfo.InvariantCulture) + long.Parse(f[12], CultureInfo.InvariantCulture));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException or IndexOutOfRangeException or ArgumentOutOfRangeException)
        {
            return null;
        }
    }
}
