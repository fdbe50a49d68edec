using System.Text.RegularExpressions;

namespace ConvKit;

/// <summary>Session-wide state, as Keras' backend keeps it: automatic layer names.</summary>
public static partial class Backend
{
    /// <summary>
    /// The number of CPU threads one operation (a convolution, a matrix product) may use: libtorch's intra-op thread
    /// pool, <c>torch.set_num_threads</c>, process-wide. The default is libtorch's: the number of physical cores, or
    /// <c>OMP_NUM_THREADS</c> when that is set; the CLI's <c>--threads</c> sets it per command ('convkit train' uses every
    /// logical processor other processes leave free unless told otherwise: <see cref="CpuContention.DefaultThreads"/>,
    /// which code can use the same way). Lower it when several processes share the machine.
    /// </summary>
    /// <exception cref="LayerArgumentException">Set to less than 1 or more than <see cref="MaxThreads"/>.</exception>
    public static int Threads
    {
        get => TorchSharp.torch.get_num_threads();
        set
        {
            if (value < 1 || value > MaxThreads)
                throw new LayerArgumentException(nameof(Backend), nameof(Threads), $"must be between 1 and {MaxThreads}; received Threads={value}.");
            TorchSharp.torch.set_num_threads(value);
        }
    }

    /// <summary>The largest accepted <see cref="Threads"/>: far above any CPU's cores, low enough to catch a typo.</summary>
    public const int MaxThreads = 1024;

    static readonly Dictionary<string, int> Global = new();
    static readonly AsyncLocal<Dictionary<string, int>?> Scoped = new();

    /// <summary>Resets automatic names, like Keras' <c>clear_session()</c>: the next Conv2D is <c>conv2d</c> again.</summary>
    public static void ClearSession()
    {
        lock (Global) Global.Clear();
        if (Scoped.Value is { } s) s.Clear();
    }

    /// <summary>
    /// Starts a private naming scope for the current async flow (a test, a builder): names restart from zero inside it
    /// and do not disturb other threads. Dispose to return to the enclosing names.
    /// </summary>
    public static IDisposable NameScope()
    {
        var previous = Scoped.Value;
        Scoped.Value = new Dictionary<string, int>();
        return new Restore(() => Scoped.Value = previous);
    }

    sealed class Restore(Action action) : IDisposable
    {
        public void Dispose() => action();
    }

    /// <summary>
    /// Keras' unique names: the first is the prefix itself, then <c>prefix_1</c>, <c>prefix_2</c>...
    /// With <paramref name="zeroBased"/> false (Keras' inputs), the first is <c>prefix_1</c>.
    /// </summary>
    public static string UniqueName(string prefix, bool zeroBased = true)
    {
        var counters = Scoped.Value ?? Global;
        lock (counters)
        {
            counters.TryGetValue(prefix, out int n);
            counters[prefix] = n + 1;
            if (zeroBased) return n == 0 ? prefix : $"{prefix}_{n}";
            return $"{prefix}_{n + 1}";
        }
    }

    /// <summary>Keras' <c>to_snake_case</c>: <c>MaxPooling2D</c> becomes <c>max_pooling2d</c>.</summary>
    public static string ToSnakeCase(string name)
    {
        var intermediate = Regex.Replace(name, "(.)([A-Z][a-z0-9]+)", "$1_$2");
        var snake = Regex.Replace(intermediate, "([a-z])([A-Z])", "$1_$2").ToLowerInvariant();
        return snake.StartsWith('_') ? "private" + snake : snake;
    }
}
