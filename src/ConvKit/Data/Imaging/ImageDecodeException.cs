using System.Text;

namespace ConvKit.Data.Imaging;

/// <summary>
/// An image file cannot be used: missing, a directory, unreadable, not an image, over the pixel budget, with an
/// extreme aspect ratio, truncated or corrupt. The message is one line: <c>image '&lt;file&gt;': &lt;reason&gt;</c>,
/// with control characters of the file name and of decoder texts escaped.
/// </summary>
public sealed class ImageDecodeException : InvalidFileException
{
    /// <summary>Creates the exception for <paramref name="path"/>.</summary>
    /// <param name="path">The image file as the caller named it.</param>
    /// <param name="reason">What is wrong, e.g. "truncated (JPEG data ends early)".</param>
    /// <param name="inner">The underlying error, if any.</param>
    public ImageDecodeException(string path, string reason, Exception? inner = null)
        : base($"image '{Sanitize(path)}': {Sanitize(reason)}", inner!)
    {
        Path = path;
        Reason = reason;
    }

    /// <summary>The image file as the caller named it (not sanitized).</summary>
    public string Path { get; }

    /// <summary>What is wrong with the file.</summary>
    public string Reason { get; }

    /// <summary>Escapes control characters (NUL, newlines, escape sequences, ...) as <c>\xNN</c> / <c>\uNNNN</c>.</summary>
    /// <param name="text">Any text.</param>
    /// <returns>The text with every control character escaped.</returns>
    public static string Sanitize(string text)
    {
        if (!text.Any(char.IsControl)) return text;
        var sb = new StringBuilder(text.Length + 8);
        foreach (var c in text)
            if (!char.IsControl(c)) sb.Append(c);
            else if (c <= 0xff) sb.Append("\\x").Append(((int)c).ToString("x2", System.Globalization.CultureInfo.InvariantCulture));
            else sb.Append("\\u").Append(((int)c).ToString("x4", System.Globalization.CultureInfo.InvariantCulture));
        return sb.ToString();
    }
}
