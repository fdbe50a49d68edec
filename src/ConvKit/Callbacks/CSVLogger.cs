using System.Globalization;

namespace ConvKit.Callbacks;

/// <summary>
/// Streams epoch results to a CSV file, Keras' <c>CSVLogger</c>: a header <c>epoch,accuracy,loss,...</c> (keys sorted)
/// and one row per epoch. With <see cref="Append"/> an existing file is continued without a second header.
/// </summary>
public sealed class CSVLogger : Callback
{
    StreamWriter? writer;
    string[]? keys;

    /// <summary>Creates the logger.</summary>
    public CSVLogger(string filename, char separator = ',', bool append = false)
    {
        Filename = filename ?? throw new ArgumentNullException(nameof(filename));
        Separator = separator;
        Append = append;
    }

    /// <summary>The CSV file.</summary>
    public string Filename { get; }

    /// <summary>Field separator.</summary>
    public char Separator { get; }

    /// <summary>Continue an existing file.</summary>
    public bool Append { get; }

    /// <inheritdoc/>
    /// <exception cref="ConvKitException">The file cannot be opened.</exception>
    public override void OnTrainBegin(Logs logs)
    {
        bool continuing = Append && File.Exists(Filename) && new FileInfo(Filename).Length > 0;
        try
        {
            writer = new StreamWriter(Filename, append: Append) { NewLine = "\n" };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConvKitException($"CSVLogger cannot open '{Filename}': {e.Message}", e);
        }
        // When continuing, the header is already there; keys come from the first epoch as usual.
        keys = null;
        headerWritten = continuing;
    }

    bool headerWritten;

    /// <inheritdoc/>
    public override void OnEpochEnd(int epoch, Logs logs)
    {
        if (writer is null) return;
        keys ??= logs.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();
        if (!headerWritten)
        {
            writer.WriteLine(string.Join(Separator, new[] { "epoch" }.Concat(keys)));
            headerWritten = true;
        }
        var row = new[] { epoch.ToString(CultureInfo.InvariantCulture) }
            .Concat(keys.Select(k => logs.Get(k) is { } v ? Format(v) : "NA"));
        writer.WriteLine(string.Join(Separator, row));
        writer.Flush();
    }

    /// <inheritdoc/>
    public override void OnTrainEnd(Logs logs)
    {
        writer?.Dispose();
        writer = null;
    }

    // Python's str(float): shortest round trip, always with a decimal point.
    static string Format(double v)
    {
        if (double.IsNaN(v)) return "nan";
        if (double.IsInfinity(v)) return v > 0 ? "inf" : "-inf";
        var s = v.ToString("R", CultureInfo.InvariantCulture);
        return s.Contains('.') || s.Contains('E') ? s : s + ".0";
    }
}
