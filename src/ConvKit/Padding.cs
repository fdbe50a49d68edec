namespace ConvKit;

/// <summary>
/// Keras' padding modes for convolution and pooling: <see cref="Valid"/> (the default value) or <see cref="Same"/>.
/// A Keras string converts implicitly, so <c>padding: "same"</c> reads as in Keras; any case is accepted.
/// </summary>
public readonly struct Padding : IEquatable<Padding>
{
    // 0 is Valid so that default(Padding) (an omitted optional argument) is Keras' default.
    readonly byte mode;

    Padding(byte mode) => this.mode = mode;

    /// <summary>No padding: only windows that fit entirely inside the input (Keras' <c>"valid"</c>).</summary>
    public static Padding Valid => new(0);

    /// <summary>Pad so that the output has ceil(input / stride) positions; the odd pixel goes bottom/right (Keras' <c>"same"</c>).</summary>
    public static Padding Same => new(1);

    /// <summary>The Keras strings this type accepts.</summary>
    public static IReadOnlyList<string> Names { get; } = ["valid", "same"];

    /// <summary>Parses a Keras padding string ("valid" or "same", any case).</summary>
    /// <exception cref="LayerArgumentException">Null or any other string; the message lists the valid values.</exception>
    public static Padding Parse(string padding) => TryParse(padding, out var p) ? p
        : throw new LayerArgumentException("Padding", "padding",
            $"must be one of \"valid\", \"same\"; received padding={(padding is null ? "null" : $"\"{padding}\"")}.");

    /// <summary>Parses a Keras padding string without throwing.</summary>
    public static bool TryParse(string? padding, out Padding result)
    {
        result = default;
        if (string.Equals(padding, "valid", StringComparison.OrdinalIgnoreCase)) return true;
        if (!string.Equals(padding, "same", StringComparison.OrdinalIgnoreCase)) return false;
        result = Same;
        return true;
    }

    /// <summary>Converts a Keras padding string, as <c>padding: "same"</c>.</summary>
    /// <exception cref="LayerArgumentException">The string is neither "valid" nor "same".</exception>
    public static implicit operator Padding(string padding) => Parse(padding);

    /// <summary>True for <see cref="Same"/>.</summary>
    public bool IsSame => mode == 1;

    /// <summary>True for <see cref="Valid"/>.</summary>
    public bool IsValid => mode == 0;

    /// <inheritdoc/>
    public bool Equals(Padding other) => mode == other.mode;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Padding p && Equals(p);

    /// <inheritdoc/>
    public override int GetHashCode() => mode;

    /// <summary>Equality.</summary>
    public static bool operator ==(Padding a, Padding b) => a.mode == b.mode;

    /// <summary>Inequality.</summary>
    public static bool operator !=(Padding a, Padding b) => a.mode != b.mode;

    /// <summary>Keras' spelling: "valid" or "same".</summary>
    public override string ToString() => IsSame ? "same" : "valid";
}
