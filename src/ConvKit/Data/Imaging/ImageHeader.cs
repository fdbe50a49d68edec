using System.Buffers.Binary;

namespace ConvKit.Data.Imaging;

/// <summary>Image container formats the decoder reads.</summary>
public enum ImageFormat
{
    /// <summary>PNG.</summary>
    Png,
    /// <summary>JPEG (JFIF/EXIF).</summary>
    Jpeg,
    /// <summary>Windows bitmap.</summary>
    Bmp,
    /// <summary>GIF (the first frame).</summary>
    Gif,
    /// <summary>WebP.</summary>
    WebP,
}

/// <summary>What an image file's header declares, read without decoding any pixel.</summary>
/// <param name="Format">The container format, from the file's signature.</param>
/// <param name="Width">Declared width in pixels.</param>
/// <param name="Height">Declared height in pixels.</param>
public readonly record struct ImageHeader(ImageFormat Format, int Width, int Height)
{
    static ReadOnlySpan<byte> PngSignature => [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>Width x height.</summary>
    public long Pixels => (long)Width * Height;

    /// <summary>
    /// Reads the signature and the declared dimensions from the first bytes of a file (PNG IHDR, JPEG SOF, BMP info
    /// header, GIF logical screen, WebP VP8/VP8L/VP8X).
    /// </summary>
    /// <param name="data">The file's bytes (the whole file, or at least its header).</param>
    /// <param name="reason">Why the header is unusable, when this returns null.</param>
    /// <returns>The header, or null with <paramref name="reason"/> set.</returns>
    public static ImageHeader? TryRead(ReadOnlySpan<byte> data, out string reason) => TryRead(data, data.Length, out reason);

    /// <summary>Whether a reason of <see cref="TryRead(ReadOnlySpan{byte}, out string)"/> says the header was cut
    /// short (more of the file may complete it).</summary>
    internal static bool IsTruncation(string reason) => reason.StartsWith(TruncatedHeader, StringComparison.Ordinal);

    const string TruncatedHeader = "truncated ";

    /// <summary>As the public overload, for the first bytes of a file of <paramref name="fileLength"/> bytes.</summary>
    internal static ImageHeader? TryRead(ReadOnlySpan<byte> data, long fileLength, out string reason)
    {
        reason = "";
        if (data.Length == 0) { reason = "empty file (0 bytes), not an image"; return null; }
        if (data.StartsWith(PngSignature)) return Png(data, out reason);
        if (data.Length >= 2 && data[0] == 0xFF && data[1] == 0xD8) return Jpeg(data, out reason);
        if (data.StartsWith("GIF87a"u8) || data.StartsWith("GIF89a"u8)) return Gif(data, out reason);
        if (data.StartsWith("BM"u8)) return Bmp(data, out reason);
        if (data.Length >= 12 && data.StartsWith("RIFF"u8) && data[8..12].SequenceEqual("WEBP"u8)) return WebP(data, out reason);
        reason = FormattableString.Invariant($"not an image (unknown format; {fileLength:N0} bytes, JPEG, PNG, BMP, GIF and WebP are read)");
        return null;
    }

    static ImageHeader? Truncated(ImageFormat format, int length, out string reason)
    {
        reason = $"{TruncatedHeader}{format.ToString().ToUpperInvariant()} header (the file has {length} bytes)";
        return null;
    }

    static ImageHeader? Png(ReadOnlySpan<byte> d, out string reason)
    {
        // Signature (8), then the first chunk must be IHDR: length 13, type, width, height (big-endian).
        if (d.Length < 8 + 8 + 13) return Truncated(ImageFormat.Png, d.Length, out reason);
        if (BinaryPrimitives.ReadUInt32BigEndian(d[8..]) != 13 || !d[12..16].SequenceEqual("IHDR"u8))
        {
            reason = "corrupt PNG: the first chunk is not a 13-byte IHDR";
            return null;
        }
        uint w = BinaryPrimitives.ReadUInt32BigEndian(d[16..]), h = BinaryPrimitives.ReadUInt32BigEndian(d[20..]);
        return Dims(ImageFormat.Png, w, h, "IHDR", out reason);
    }

    static ImageHeader? Jpeg(ReadOnlySpan<byte> d, out string reason)
    {
        int p = 2;
        while (true)
        {
            // Markers may be padded with extra 0xFF bytes.
            while (p < d.Length && d[p] == 0xFF && p + 1 < d.Length && d[p + 1] == 0xFF) p++;
            if (p + 4 > d.Length) return Truncated(ImageFormat.Jpeg, d.Length, out reason);
            if (d[p] != 0xFF)
            {
                reason = $"corrupt JPEG: expected a marker at offset {p}, found 0x{d[p]:X2}";
                return null;
            }
            byte marker = d[p + 1];
            if (marker is 0xD9 or 0xDA)
            {
                reason = $"corrupt JPEG: {(marker == 0xD9 ? "end of image" : "scan data")} at offset {p} before any frame header (SOF)";
                return null;
            }
            if (marker is 0x01 or (>= 0xD0 and <= 0xD7)) { p += 2; continue; } // markers without a length
            int length = BinaryPrimitives.ReadUInt16BigEndian(d[(p + 2)..]);
            if (length < 2)
            {
                reason = $"corrupt JPEG: segment 0x{marker:X2} at offset {p} has length {length}";
                return null;
            }
            bool sof = marker is >= 0xC0 and <= 0xCF && marker is not (0xC4 or 0xC8 or 0xCC);
            if (sof)
            {
                if (p + 9 > d.Length) return Truncated(ImageFormat.Jpeg, d.Length, out reason);
                uint h = BinaryPrimitives.ReadUInt16BigEndian(d[(p + 5)..]), w = BinaryPrimitives.ReadUInt16BigEndian(d[(p + 7)..]);
                if (h == 0)
                {
                    reason = "JPEG declares its height later (DNL marker), which is not supported";
                    return null;
                }
                return Dims(ImageFormat.Jpeg, w, h, "SOF", out reason);
            }
            p += 2 + length;
        }
    }

    /// <summary>Offset of the first start-of-scan marker of a JPEG, or -1 when its segments end before one.</summary>
    internal static int FindJpegScan(ReadOnlySpan<byte> d)
    {
        int p = 2;
        while (p + 4 <= d.Length)
        {
            if (d[p] != 0xFF) return -1;
            byte marker = d[p + 1];
            if (marker == 0xFF) { p++; continue; }
            if (marker == 0xDA) return p;
            if (marker is 0x01 or (>= 0xD0 and <= 0xD7)) { p += 2; continue; }
            int length = BinaryPrimitives.ReadUInt16BigEndian(d[(p + 2)..]);
            if (length < 2) return -1;
            p += 2 + length;
        }
        return -1;
    }

    static ImageHeader? Gif(ReadOnlySpan<byte> d, out string reason)
    {
        if (d.Length < 10) return Truncated(ImageFormat.Gif, d.Length, out reason);
        return Dims(ImageFormat.Gif, BinaryPrimitives.ReadUInt16LittleEndian(d[6..]), BinaryPrimitives.ReadUInt16LittleEndian(d[8..]), "logical screen", out reason);
    }

    static ImageHeader? Bmp(ReadOnlySpan<byte> d, out string reason)
    {
        if (d.Length < 18) return Truncated(ImageFormat.Bmp, d.Length, out reason);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(d[14..]);
        if (size == 12)
        {
            if (d.Length < 22) return Truncated(ImageFormat.Bmp, d.Length, out reason);
            return Dims(ImageFormat.Bmp, BinaryPrimitives.ReadUInt16LittleEndian(d[18..]), BinaryPrimitives.ReadUInt16LittleEndian(d[20..]), "info header", out reason);
        }
        if (size < 40 || size > 124)
        {
            reason = $"corrupt BMP: info header size {size}";
            return null;
        }
        if (d.Length < 26) return Truncated(ImageFormat.Bmp, d.Length, out reason);
        int w = BinaryPrimitives.ReadInt32LittleEndian(d[18..]), h = BinaryPrimitives.ReadInt32LittleEndian(d[22..]);
        if (w < 0 || h == int.MinValue)
        {
            reason = $"corrupt BMP: info header declares {w}x{h}";
            return null;
        }
        return Dims(ImageFormat.Bmp, (uint)w, (uint)Math.Abs(h), "info header", out reason); // negative height: top-down rows
    }

    static ImageHeader? WebP(ReadOnlySpan<byte> d, out string reason)
    {
        if (d.Length < 30) return Truncated(ImageFormat.WebP, d.Length, out reason);
        var chunk = d[12..16];
        if (chunk.SequenceEqual("VP8X"u8))
            return Dims(ImageFormat.WebP, 1 + (d[24] | (uint)d[25] << 8 | (uint)d[26] << 16), 1 + (d[27] | (uint)d[28] << 8 | (uint)d[29] << 16), "VP8X", out reason);
        if (chunk.SequenceEqual("VP8L"u8))
        {
            uint bits = BinaryPrimitives.ReadUInt32LittleEndian(d[21..]);
            return Dims(ImageFormat.WebP, 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF), "VP8L", out reason);
        }
        if (chunk.SequenceEqual("VP8 "u8))
            return Dims(ImageFormat.WebP, BinaryPrimitives.ReadUInt16LittleEndian(d[26..]) & 0x3FFFu, BinaryPrimitives.ReadUInt16LittleEndian(d[28..]) & 0x3FFFu, "VP8", out reason);
        reason = "corrupt WebP: unknown first chunk";
        return null;
    }

    static ImageHeader? Dims(ImageFormat format, uint w, uint h, string where, out string reason)
    {
        reason = "";
        if (w == 0 || h == 0 || w > int.MaxValue || h > int.MaxValue)
        {
            reason = $"{format.ToString().ToUpperInvariant()} {where} declares an invalid size {w}x{h}";
            return null;
        }
        return new ImageHeader(format, (int)w, (int)h);
    }
}
