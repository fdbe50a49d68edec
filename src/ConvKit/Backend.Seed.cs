using static TorchSharp.torch;

namespace ConvKit;

/// <summary>Session-wide state: automatic names and the random seed.</summary>
public static partial class Backend
{
    /// <summary>
    /// Seeds every source of randomness ConvKit uses, like Keras' <c>keras.utils.set_random_seed</c>: torch's global
    /// generator (weight initialization, dropout) and, through it, the shuffling of each <c>Fit</c> that is given no
    /// seed of its own. With one seed a CPU run repeats bit for bit.
    /// </summary>
    public static void SetSeed(long seed)
    {
        manual_seed(seed);
        Seed = seed;
    }

    /// <summary>The last seed given to <see cref="SetSeed"/>, or null.</summary>
    public static long? Seed { get; private set; }

    /// <summary>A seed for a new generator, drawn from torch's global generator so that it follows <see cref="SetSeed"/>.</summary>
    internal static long NextSeed()
    {
        using var t = randint(0, int.MaxValue, [1], dtype: int64);
        return t.item<long>();
    }
}
