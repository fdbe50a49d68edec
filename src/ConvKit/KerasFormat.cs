using System.Globalization;

namespace ConvKit;

/// <summary>
/// Numbers in messages as Keras prints them, so that a log reads the same in both: <see cref="Fixed"/> is Python's
/// <c>f"{x:.5f}"</c> (<c>inf</c>, <c>-inf</c>, <c>nan</c>), <see cref="Repr"/> is Python's <c>repr(float)</c>
/// (<c>1e-05</c>, <c>0.001</c>, <c>1.0</c>). Invariant culture always.
/// </summary>
public static class KerasFormat
{
    /// <summary>Python's <c>f"{value:.{digits}f}"</c>: <c>0.53210</c>, <c>inf</c>, <c>-inf</c>, <c>nan</c>.</summary>
    public static string Fixed(double value, int digits = 5) =>
        NonFinite(value) ?? value.ToString("F" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    /// <summary>Python's <c>f"{value:.{digits}e}"</c>: <c>1.2340e-05</c>, <c>inf</c>, <c>nan</c>.</summary>
    public static string Scientific(double value, int digits = 4) =>
        NonFinite(value) ?? value.ToString("0." + new string('0', digits) + "e+00", CultureInfo.InvariantCulture);

    /// <summary>
    /// Python's <c>repr(float)</c>, which Keras uses for learning rates: the shortest round-trip digits, positional for
    /// decimal exponents -4 to 15 (<c>0.0001</c>, <c>1.0</c>), scientific otherwise (<c>1e-05</c>, <c>1.5e+16</c>).
    /// </summary>
    public static string Repr(double value)
    {
        if (NonFinite(value) is { } s) return s;
        if (value == 0) return double.IsNegative(value) ? "-0.0" : "0.0";
        string sign = value < 0 ? "-" : "";
        // Shortest round-trip digits and the decimal exponent of the first one.
        string shortest = Math.Abs(value).ToString("R", CultureInfo.InvariantCulture);
        int e = 0;
        int ei = shortest.IndexOf('E');
        string mantissa = shortest;
        if (ei >= 0) { e = int.Parse(shortest[(ei + 1)..], CultureInfo.InvariantCulture); mantissa = shortest[..ei]; }
        int dot = mantissa.IndexOf('.');
        string intPart = dot < 0 ? mantissa : mantissa[..dot], frac = dot < 0 ? "" : mantissa[(dot + 1)..];
        string intDigits = intPart.TrimStart('0');
        int exp10 = intDigits.Length > 0 ? intDigits.Length - 1 + e : -(frac.Length - frac.TrimStart('0').Length) - 1 + e;
        string digits = (intDigits + frac).TrimStart('0').TrimEnd('0');
        if (exp10 < -4 || exp10 >= 16)
            return sign + digits[0] + (digits.Length > 1 ? "." + digits[1..] : "") + "e" + (exp10 < 0 ? "-" : "+")
                + Math.Abs(exp10).ToString("00", CultureInfo.InvariantCulture);
        if (exp10 < 0) return sign + "0." + new string('0', -exp10 - 1) + digits;
        string whole = digits.Length > exp10 + 1 ? digits[..(exp10 + 1)] : digits.PadRight(exp10 + 1, '0');
        string rest = digits.Length > exp10 + 1 ? digits[(exp10 + 1)..] : "0";
        return sign + whole + "." + rest;
    }

    static string? NonFinite(double value) =>
        double.IsNaN(value) ? "nan" : double.IsPositiveInfinity(value) ? "inf" : double.IsNegativeInfinity(value) ? "-inf" : null;
}

/// <summary>The one place that picks the console as the default writer of messages (Keras' print_fn).</summary>
internal static class DefaultOutput
{
    /// <summary>The console's current standard output (read at write time, so Console.SetOut is honoured).</summary>
    public static TextWriter Out => Console.Out;

    /// <summary>The console's current standard error.</summary>
    public static TextWriter Error => Console.Error;

    /// <summary>Whether standard output is redirected (no progress bar redraws then).</summary>
    public static bool IsOutputRedirected => Console.IsOutputRedirected;
}
