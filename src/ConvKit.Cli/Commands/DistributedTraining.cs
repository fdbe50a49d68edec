using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using ConvKit.Callbacks;
using ConvKit.Distributed;
using ConvKit.Models;

namespace ConvKit.Cli.Commands;

/// <summary>
/// Distributed <c>convkit train</c>: <c>--nproc N</c> launches N local ranks (children running the same command with
/// MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK and LOCAL_RANK set, as torchrun does), and a <c>convkit train</c> started
/// with WORLD_SIZE in its environment (by <c>--nproc</c>, torchrun, a Kubernetes PyTorchJob or srun) joins the group.
/// Rank 0 writes the run folder and a checkpoint after every epoch; the other ranks write nothing.
/// <c>convkit train --resume RUN</c> of such a run launches the same number of ranks again, each restoring rank 0's
/// checkpoint (<c>RUN/checkpoint/</c>).
/// </summary>
public static class DistributedTraining
{
    /// <summary>The checkpoint rank 0 writes (atomically) after every epoch of a distributed run, in the run folder.</summary>
    public const string CheckpointFile = "checkpoint.safetensors";

    /// <summary>How long the launcher lets the other ranks end by themselves once one has failed, before it kills them.</summary>
    public static readonly TimeSpan GracePeriod = TimeSpan.FromSeconds(20);

    /// <summary>Creates <c>--nproc</c>.</summary>
    public static Option<int?> CreateNprocOption() => new("--nproc")
    {
        Description = "Train data-parallel on N local processes (ranks); each gets an equal share of the threads and of every batch of N x --batch-size samples.",
    };

    /// <summary>Checks <c>--nproc</c>.</summary>
    /// <exception cref="ConvKitException">Out of range; the message names the option.</exception>
    public static void Validate(int? nproc)
    {
        if (nproc is { } n && (n < 1 || n > 64))
            throw new ConvKitException($"--nproc must be between 1 and 64; received {n}.");
        if (nproc is not null && DistributedEnvironment.FromEnvironment() is not null)
            throw new ConvKitException("--nproc cannot be used inside a launched rank (WORLD_SIZE is already set): let the launcher start the ranks.");
    }

    /// <summary>The command-line tokens of this invocation without <c>--nproc</c> and its value, for the ranks.</summary>
    public static string[] RankArguments(IEnumerable<string> tokens, int? threadsPerRank)
    {
        var list = new List<string>();
        var t = tokens.ToArray();
        bool hasThreads = false;
        for (int i = 0; i < t.Length; i++)
        {
            if (t[i] == "--nproc") { i++; continue; }
            if (t[i].StartsWith("--nproc=", StringComparison.Ordinal)) continue;
            if (t[i] == "--threads" || t[i].StartsWith("--threads=", StringComparison.Ordinal)) hasThreads = true;
            list.Add(t[i]);
        }
        if (!hasThreads && threadsPerRank is { } th) list.AddRange(["--threads", th.ToString(CultureInfo.InvariantCulture)]);
        return list.ToArray();
    }

    /// <summary>The ranks' command line when the launcher resumes <paramref name="runFolder"/>: each rank reads the
    /// run's settings itself (<see cref="TrainResume.Load"/>).</summary>
    public static string[] ResumeArguments(string runFolder, int verbose) =>
        ["train", "--resume", Path.GetFullPath(runFolder), "--verbose", verbose.ToString(CultureInfo.InvariantCulture)];

    /// <summary>
    /// Checks a <c>--resume</c> against the world this process is in: a run trained with <c>--nproc N</c> (or under a
    /// launcher with N ranks) resumes with N ranks only, since the global batch (N x --batch-size), each rank's shard
    /// and the shuffled order all depend on N. Inside a launched rank, returns the settings without
    /// <see cref="TrainCommand.TrainSettings.Nproc"/> (the group is already formed); otherwise unchanged.
    /// </summary>
    /// <exception cref="InvalidOptionException">The world size differs from the run's; the message names both.</exception>
    public static TrainCommand.TrainSettings CheckResume(TrainCommand.TrainSettings s)
    {
        if (s.Resume is not { } run) return s;
        var env = DistributedEnvironment.FromEnvironment();
        if (env is null) return s;
        int trained = s.Nproc ?? 1;
        if (trained != env.WorldSize)
            throw new InvalidOptionException("--resume", $"--resume '{run}' was trained with world size {trained} " +
                $"({(s.Nproc is null ? "one process" : $"--nproc {trained}")}); this rank joins a group of world size {env.WorldSize} (WORLD_SIZE). " +
                $"A run resumes with its own world size only: {(s.Nproc is null ? $"run 'convkit train --resume {run}' without a launcher" : $"launch {trained} ranks, or run 'convkit train --resume {run}' without a launcher")}.");
        return s with { Nproc = null };
    }

    /// <summary>
    /// Runs <paramref name="rankArguments"/> as <paramref name="nproc"/> ranks on this machine and waits for them.
    /// Rank 0's output is shown; the other ranks' errors are shown prefixed with their rank. When a rank fails, the
    /// others end by themselves (their collectives fail at once) or are killed after <see cref="GracePeriod"/>.
    /// </summary>
    /// <returns>0 when every rank succeeded.</returns>
    /// <exception cref="DistributedException">A rank failed or died; the message names the rank and its exit code or signal.</exception>
    public static int Launch(CliConsole console, int nproc, string[] rankArguments)
    {
        int port = FreePort();
        var (exe, prefix) = CliExecutable();
        var children = new Process[nproc];
        var gate = new object();
        string? stopSignal = null;
        // SIGTERM to the launcher (a scheduler, kill) is passed on to the ranks, which finish their batch and stop
        // (StopOnSignal); a second one ends them at once. SIGINT from a terminal reaches every rank of the process
        // group by itself; the launcher waits for them instead of dying first.
        using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, ctx =>
        {
            ctx.Cancel = true;
            lock (gate) stopSignal ??= "SIGTERM";
            foreach (var c in children)
                if (c is not null) Signal(c, SigTerm);
        });
        using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, ctx =>
        {
            ctx.Cancel = true;
            lock (gate) stopSignal ??= "SIGINT";
        });
        try
        {
            for (int r = 0; r < nproc; r++)
            {
                var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                foreach (var a in prefix.Concat(rankArguments)) psi.ArgumentList.Add(a);
                psi.Environment["MASTER_ADDR"] = "127.0.0.1";
                psi.Environment["MASTER_PORT"] = port.ToString(CultureInfo.InvariantCulture);
                psi.Environment["WORLD_SIZE"] = nproc.ToString(CultureInfo.InvariantCulture);
                psi.Environment["RANK"] = r.ToString(CultureInfo.InvariantCulture);
                psi.Environment["LOCAL_RANK"] = r.ToString(CultureInfo.InvariantCulture);
                psi.Environment[LauncherPidVariable] = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
                var p = new Process { StartInfo = psi };
                int rank = r;
                p.OutputDataReceived += (_, e) =>
                {
                    if (e.Data is { } line && rank == 0) lock (gate) console.Output.WriteLine(line);
                };
                p.ErrorDataReceived += (_, e) =>
                {
                    if (e.Data is { } line) lock (gate) console.Error.WriteLine(rank == 0 ? line : $"[rank {rank}] {line}");
                };
                p.Start();
                p.BeginOutputReadLine();
                p.BeginErrorReadLine();
                children[r] = p;
            }
            lock (gate) console.Output.WriteLine($"Launched {nproc} ranks (pids {string.Join(", ", children.Select(c => c.Id))}) on 127.0.0.1:{port}.");

            // Wait until all ended, or one failed; then give the others a grace period.
            int? firstFailed = null;
            DateTime? deadline = null;
            while (true)
            {
                bool allDone = true;
                for (int r = 0; r < nproc; r++)
                {
                    if (!children[r].HasExited) { allDone = false; continue; }
                    if (firstFailed is null && children[r].ExitCode != 0)
                    {
                        firstFailed = r;
                        deadline = DateTime.UtcNow + GracePeriod;
                    }
                }
                if (allDone) break;
                if (deadline is { } d && DateTime.UtcNow > d)
                {
                    foreach (var c in children)
                        if (!c.HasExited) c.Kill(entireProcessTree: true);
                }
                Thread.Sleep(100);
            }
            foreach (var c in children) c.WaitForExit(); // flushes the redirected output
            if (stopSignal is { } sig)
            {
                lock (gate) console.Error.WriteLine($"stopped: {sig} passed on to the {nproc} ranks (exit codes: {string.Join(", ", children.Select((c, i) => $"rank {i} {c.ExitCode}"))}); " +
                    "rank 0's last checkpoint holds the last completed epoch.");
                return sig == "SIGTERM" ? TrainResume.TerminatedExitCode : TrainResume.InterruptedExitCode;
            }
            if (firstFailed is { } f)
                throw new DistributedException(DistributedFailure.PeerLost,
                    $"rank {f} of {nproc} {Describe(children[f].ExitCode)}; the run stopped (exit codes: {string.Join(", ", children.Select((c, i) => $"rank {i} {c.ExitCode}"))}).");
            return 0;
        }
        finally
        {
            foreach (var c in children)
            {
                if (c is null) continue;
                try { if (!c.HasExited) c.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                c.Dispose();
            }
        }
    }

    const int SigTerm = 15;

    /// <summary>Set by <see cref="Launch"/> in every rank: the launcher's pid. A rank whose launcher is gone (killed
    /// alone, e.g. SIGKILL) sends itself SIGTERM, so it stops after its batch instead of training on, orphaned, into
    /// the run folder a resume would use.</summary>
    public const string LauncherPidVariable = "CONVKIT_LAUNCHER_PID";

    [DllImport("libc", EntryPoint = "getppid")]
    static extern int GetParentPid();

    /// <summary>Watches the launcher named by <see cref="LauncherPidVariable"/>, if any; null otherwise.</summary>
    static Timer? WatchLauncher()
    {
        if (!OperatingSystem.IsLinux() || !int.TryParse(Environment.GetEnvironmentVariable(LauncherPidVariable), NumberStyles.None, CultureInfo.InvariantCulture, out int launcher))
            return null;
        int signalled = 0;
        return new Timer(_ =>
        {
            // Once the launcher dies, this process is re-parented (to init or a subreaper).
            if (GetParentPid() == launcher || Interlocked.Exchange(ref signalled, 1) == 1) return;
            Console.Error.WriteLine($"the launcher (pid {launcher}) is gone; stopping this rank after its batch.");
            Kill(Environment.ProcessId, SigTerm);
        }, null, TimeSpan.Zero, TimeSpan.FromSeconds(1));
    }

    [DllImport("libc", EntryPoint = "kill")]
    static extern int Kill(int pid, int signal);

    static void Signal(Process p, int signal)
    {
        try
        {
            if (!p.HasExited && OperatingSystem.IsLinux()) Kill(p.Id, signal);
        }
        catch (InvalidOperationException) { } // not started or already reaped
    }

    static string Describe(int exitCode) => exitCode > 128
        ? $"was killed by signal {exitCode - 128}{(exitCode == 137 ? " (SIGKILL)" : exitCode == 143 ? " (SIGTERM)" : "")}"
        : $"exited with code {exitCode}";

    static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    // The CLI itself: its apphost next to ConvKit.Cli.dll, or dotnet ConvKit.Cli.dll.
    static (string Exe, string[] Prefix) CliExecutable()
    {
        string dll = typeof(DistributedTraining).Assembly.Location;
        string apphost = Path.Combine(Path.GetDirectoryName(dll)!, Path.GetFileNameWithoutExtension(dll));
        if (OperatingSystem.IsLinux() && File.Exists(apphost)) return (apphost, []);
        return ("dotnet", [dll]);
    }

    /// <summary>Joins the group when this process was launched as a rank (WORLD_SIZE set); null otherwise.</summary>
    /// <exception cref="DistributedException">The environment is malformed, or the group cannot form.</exception>
    /// <exception cref="DistributedUnavailableException">The c10d bridge is unavailable.</exception>
    public static RankSession? Join()
    {
        var env = DistributedEnvironment.FromEnvironment();
        if (env is null) return null;
        return new RankSession(ProcessGroup.Initialize(env));
    }

    /// <summary>This process' part of a distributed run.</summary>
    public sealed class RankSession : IDisposable
    {
        readonly Timer? launcherWatch = WatchLauncher();

        internal RankSession(ProcessGroup group)
        {
            Group = group;
            Strategy = new DataParallel(group);
            if (!Strategy.IsChief)
            {
                ScratchFolder = Path.Combine(Path.GetTempPath(), $"convkit-rank{group.Rank}-{Environment.ProcessId}");
                Directory.CreateDirectory(ScratchFolder);
            }
        }

        /// <summary>The group.</summary>
        public ProcessGroup Group { get; }

        /// <summary>The data-parallel strategy Fit uses.</summary>
        public DataParallel Strategy { get; }

        /// <summary>True on rank 0.</summary>
        public bool IsChief => Strategy.IsChief;

        /// <summary>On ranks other than 0, a private folder that receives what the run would write, deleted at the end.</summary>
        public string? ScratchFolder { get; }

        /// <summary>The folder this rank writes to: <paramref name="outDir"/> on rank 0, the scratch folder elsewhere.</summary>
        public string OutputFolder(string outDir) => ScratchFolder ?? outDir;

        /// <summary>
        /// The settings this rank trains with: <see cref="TrainCommand.TrainSettings.Nproc"/> is the group's size (so
        /// rank 0's <c>train-settings.json</c> makes <c>--resume</c> launch as many ranks). On a resume, a rank other
        /// than 0 copies rank 0's checkpoint (<c>RUN/checkpoint/</c>) into its scratch folder first, so every rank
        /// restores the same weights, optimizer state, epoch and RNG and shuffle states; it cannot change meanwhile,
        /// since rank 0 writes the next one only after an epoch every rank took part in.
        /// </summary>
        /// <exception cref="ConvKitException">Rank 0's checkpoint cannot be read (the message names it).</exception>
        public TrainCommand.TrainSettings Prepare(TrainCommand.TrainSettings s)
        {
            if (s.Resume is { } run && ScratchFolder is not null)
            {
                var from = Path.Combine(run, TrainResume.CheckpointFolder);
                var to = Path.Combine(ScratchFolder, TrainResume.CheckpointFolder);
                Directory.CreateDirectory(to);
                foreach (var name in new[] { "checkpoint.safetensors", "checkpoint.prev.safetensors" })
                {
                    var file = Path.Combine(from, name);
                    try
                    {
                        if (File.Exists(file)) File.Copy(file, Path.Combine(to, name), overwrite: true);
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                    {
                        throw new ConvKitException($"--resume: rank {Group.Rank} cannot read rank 0's checkpoint '{file}': {e.Message}", e);
                    }
                }
            }
            return s with { Nproc = Group.WorldSize };
        }

        /// <summary>Attaches the strategy to <paramref name="model"/> and, on rank 0, adds the per-epoch checkpoint
        /// (<see cref="CheckpointFile"/> in <paramref name="outDir"/>) to <paramref name="callbacks"/>.</summary>
        public void Attach(Model model, List<Callback> callbacks, string outDir)
        {
            model.Distribute(Strategy);
            if (IsChief) callbacks.Add(new ModelCheckpoint(Path.Combine(outDir, CheckpointFile), monitor: "loss"));
        }

        /// <summary>Leaves the group and removes the scratch folder.</summary>
        public void Dispose()
        {
            launcherWatch?.Dispose();
            Group.Dispose();
            if (ScratchFolder is not null)
            {
                try { Directory.Delete(ScratchFolder, recursive: true); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            }
        }
    }
}
