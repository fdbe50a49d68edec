namespace ConvKit.Data.Streaming;

/// <summary>
/// A small deterministic random source (SplitMix64) keyed by (seed, epoch, sample index): a sample's augmentation and
/// an epoch's order depend on these numbers only, never on which worker thread draws them or when.
/// </summary>
public struct SampleRandom
{
    ulong state;

    /// <summary>The source for one (seed, epoch, index) key.</summary>
    /// <param name="seed">The loader's seed.</param>
    /// <param name="epoch">Epoch (0-based).</param>
    /// <param name="index">Sample index, or -1 for the epoch's order.</param>
    public SampleRandom(long seed, int epoch, long index)
    {
        state = Mix((ulong)seed ^ 0x9E3779B97F4A7C15UL);
        state = Mix(state ^ (ulong)(uint)epoch);
        state = Mix(state ^ (ulong)index);
    }

    static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        state += 0x9E3779B97F4A7C15UL;
        ulong z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A uniform double in [0, 1).</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>A uniform double in [lo, hi).</summary>
    public double Uniform(double lo, double hi) => lo + (hi - lo) * NextDouble();

    /// <summary>A uniform integer in [0, n).</summary>
    public int NextInt(int n) => (int)(NextUInt64() % (ulong)n);

    /// <summary>The order of <paramref name="n"/> samples for (seed, epoch): a Fisher-Yates shuffle.</summary>
    public static int[] Permutation(int n, long seed, int epoch)
    {
        var order = new int[n];
        for (int i = 0; i < n; i++) order[i] = i;
        var r = new SampleRandom(seed, epoch, -1);
        for (int i = n - 1; i > 0; i--)
        {
            int j = r.NextInt(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }
}
