namespace ConvKit;

/// <summary>
/// Keras' <c>verbose</c> for Fit, Evaluate and Predict, a closed set: <see cref="Silent"/> (0), <see cref="ProgressBar"/>
/// (1), <see cref="OneLinePerEpoch"/> (2) and <see cref="Auto"/> (<c>"auto"</c>, the default value). Keras' ints and
/// its string <c>"auto"</c> convert implicitly, so <c>verbose: 0</c> and <c>verbose: "auto"</c> read as in Keras; any
/// other int or string is an <see cref="InvalidOptionException"/> naming <c>verbose</c>.
/// </summary>
/// <remarks>
/// <see cref="Auto"/> is a progress bar in Fit and Evaluate, as in Keras. In Predict it is silent, ConvKit's default
/// since Predict is usually called in a loop (Keras' "auto" shows a bar there); pass <see cref="ProgressBar"/> for one.
/// </remarks>
public readonly struct Verbosity : IEquatable<Verbosity>
{
    // 0 is Auto so that default(Verbosity) (an omitted optional argument) is Keras' default, "auto"; else level + 1.
    readonly byte code;

    Verbosity(byte code) => this.code = code;

    /// <summary>Keras' <c>"auto"</c>: a progress bar in Fit and Evaluate, silent in Predict.</summary>
    public static Verbosity Auto => default;

    /// <summary>Nothing is printed (Keras' 0).</summary>
    public static Verbosity Silent => new(1);

    /// <summary>A progress bar updated every step (Keras' 1).</summary>
    public static Verbosity ProgressBar => new(2);

    /// <summary>One line per epoch (Keras' 2); Evaluate and Predict print one line at the end.</summary>
    public static Verbosity OneLinePerEpoch => new(3);

    /// <summary>True for <see cref="Auto"/>.</summary>
    public bool IsAuto => code == 0;

    /// <summary>Keras' level, 0, 1 or 2, with <see cref="Auto"/> resolved to <paramref name="auto"/>.</summary>
    public int Level(int auto) => code == 0 ? auto : code - 1;

    /// <summary>Converts Keras' int: 0 silent, 1 progress bar, 2 one line per epoch.</summary>
    /// <exception cref="InvalidOptionException">Any other value.</exception>
    public static Verbosity FromInt32(int verbose) => verbose is >= 0 and <= 2 ? new((byte)(verbose + 1))
        : throw new InvalidOptionException("verbose", $"verbose must be 0, 1, 2 or \"auto\"; received {verbose}.");

    /// <summary>Converts Keras' int, as <c>verbose: 0</c>.</summary>
    /// <exception cref="InvalidOptionException">Not 0, 1 or 2.</exception>
    public static implicit operator Verbosity(int verbose) => FromInt32(verbose);

    /// <summary>Parses Keras' string <c>"auto"</c> (any case) or a level written as a string (<c>"0"</c>, <c>"1"</c>, <c>"2"</c>).</summary>
    /// <exception cref="InvalidOptionException">Null or any other string.</exception>
    public static Verbosity Parse(string verbose) => verbose switch
    {
        _ when string.Equals(verbose, "auto", StringComparison.OrdinalIgnoreCase) => Auto,
        "0" or "1" or "2" => FromInt32(verbose[0] - '0'),
        _ => throw new InvalidOptionException("verbose",
            $"verbose must be 0, 1, 2 or \"auto\"; received {(verbose is null ? "null" : $"\"{verbose}\"")}."),
    };

    /// <summary>Converts Keras' <c>verbose="auto"</c>.</summary>
    /// <exception cref="InvalidOptionException">Any other string than "auto", "0", "1" or "2".</exception>
    public static implicit operator Verbosity(string verbose) => Parse(verbose);

    /// <inheritdoc/>
    public bool Equals(Verbosity other) => code == other.code;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Verbosity v && Equals(v);

    /// <inheritdoc/>
    public override int GetHashCode() => code;

    /// <summary>Equality.</summary>
    public static bool operator ==(Verbosity a, Verbosity b) => a.Equals(b);

    /// <summary>Inequality.</summary>
    public static bool operator !=(Verbosity a, Verbosity b) => !a.Equals(b);

    /// <summary>As Keras writes it: <c>auto</c>, <c>0</c>, <c>1</c> or <c>2</c>.</summary>
    public override string ToString() => code == 0 ? "auto" : (code - 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
}
