// The one image decoder of ConvKit (datasets, predict, later the server). SkiaSharp decodes (measured faster than
// StbImageSharp here: 640x480 JPEG 2.9 vs 4.7 ms per core, small PNGs equal) and reports incomplete input through its
// result codes. Before Skia sees the data, the header is read here and checked against the pixel budget, so a hostile
// header never becomes an allocation.
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using SkiaSharp;

namespace ConvKit.Data.Imaging;

/// <summary>
/// Decodes JPEG, PNG, BMP, GIF (first frame) and WebP files to 8-bit grey or RGB, after checking the header against an
/// <see cref="ImageDecodeOptions"/> pixel budget and aspect-ratio bound. Thread-safe: every call is independent.
/// </summary>
/// <remarks>
/// Refused with <see cref="ImageDecodeException"/> (the message names the file): a missing file, a directory, an
/// unreadable file, an empty or unknown file, a header declaring more pixels than the budget or an aspect ratio beyond
/// the bound, truncated data (JPEG/PNG/BMP/GIF data ending early, a PNG without its IEND chunk), and corrupt data the
/// decoder detects (a PNG chunk whose CRC does not match, invalid compressed data). Colour profiles are ignored, and so
/// is EXIF orientation unless <see cref="ImageDecodeOptions.ApplyExifOrientation"/> (as torchvision's <c>decode_image</c>
/// and StbImageSharp); alpha is dropped unpremultiplied, except for 4 channels.
/// </remarks>
public static partial class ImageDecoder
{
    /// <summary>Reads the file's header only (format and declared size), without checking the budget.</summary>
    /// <param name="path">The image file.</param>
    /// <returns>The header.</returns>
    /// <exception cref="ImageDecodeException">The file cannot be read or is not an image of a known format.</exception>
    public static ImageHeader ReadHeader(string path)
    {
        var head = ReadFile(path, maxBytes: long.MaxValue, prefix: HeaderBytes);
        return ImageHeader.TryRead(head, out var reason) ?? throw new ImageDecodeException(path, reason);
    }

    /// <summary>Decodes an image file to <paramref name="channels"/> 8-bit channels (1: grey, 3: RGB).</summary>
    /// <param name="path">The image file.</param>
    /// <param name="channels">1 for grey (luma as StbImageSharp computes it: (77 R + 150 G + 29 B) / 256), 3 for RGB, 4 for RGBA (unpremultiplied; opaque formats get alpha 255).</param>
    /// <param name="options">Limits; null for <see cref="ImageDecodeOptions.Default"/>.</param>
    /// <returns>The pixels.</returns>
    /// <exception cref="ImageDecodeException">The file is missing, a directory, unreadable, not an image, over the
    /// budget, too elongated, truncated or corrupt.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="channels"/> is not 1, 3 or 4, or the options are invalid.</exception>
    public static DecodedImage Decode(string path, int channels, ImageDecodeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (channels is not (1 or 3 or 4)) throw new InvalidOptionException(nameof(channels), $"channels must be 1 (grey), 3 (RGB) or 4 (RGBA); received {channels}.");
        options ??= ImageDecodeOptions.Default;
        options.Validate();
        // The header is checked on the first 64 KiB, before the rest of the file is read: a huge file that is not an
        // image, or whose header declares too many pixels, costs one small read.
        var data = ReadFile(path, options.MaxFileBytes, prefix: null, gate: (head, fileLength) =>
        {
            var header = ImageHeader.TryRead(head, fileLength, out var reason);
            if (header is { } h) CheckLimits(path, h, options);
            else if (head.Length == fileLength || !ImageHeader.IsTruncation(reason)) throw new ImageDecodeException(path, reason);
            // else a JPEG's frame header may follow more than 64 KiB of EXIF or ICC segments: read on.
        });
        return Decode(path, data, channels, options);
    }

    /// <summary>Decodes an image held in memory; <paramref name="name"/> names it in errors.</summary>
    /// <param name="name">What to call the image in error messages (a file name, a request id).</param>
    /// <param name="data">The encoded image.</param>
    /// <param name="channels">1 for grey, 3 for RGB, 4 for RGBA.</param>
    /// <param name="options">Limits; null for the defaults.</param>
    /// <returns>The pixels.</returns>
    /// <exception cref="ImageDecodeException">Not an image, over the budget, too elongated, truncated or corrupt.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="channels"/> is not 1, 3 or 4, or the options are invalid.</exception>
    public static DecodedImage Decode(string name, byte[] data, int channels, ImageDecodeOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(data);
        if (channels is not (1 or 3 or 4)) throw new InvalidOptionException(nameof(channels), $"channels must be 1 (grey), 3 (RGB) or 4 (RGBA); received {channels}.");
        options ??= ImageDecodeOptions.Default;
        options.Validate();
        var header = ImageHeader.TryRead(data, out var reason) ?? throw new ImageDecodeException(name, reason);
        CheckLimits(name, header, options);
        if (header.Format == ImageFormat.Png) CheckPngChunks(name, data);
        if (header.Format == ImageFormat.Gif) CheckGifTrailer(name, data);
        if (header.Format == ImageFormat.Jpeg) CheckJpegEnd(name, data);
        return DecodeChecked(name, data, header, channels, options);
    }

    static void CheckLimits(string name, ImageHeader h, ImageDecodeOptions options)
    {
        string fmt = h.Format.ToString().ToUpperInvariant();
        if (h.Pixels > options.MaxPixels)
            throw new ImageDecodeException(name, FormattableString.Invariant(
                $"{fmt} of {h.Width}x{h.Height} = {h.Pixels:N0} pixels exceeds the pixel budget of {options.MaxPixels:N0} pixels (raise it with ImageDecodeOptions.MaxPixels or --max-pixels)"));
        double ratio = (double)Math.Max(h.Width, h.Height) / Math.Min(h.Width, h.Height);
        if (ratio > options.MaxAspectRatio)
            throw new ImageDecodeException(name, FormattableString.Invariant(
                $"{fmt} of {h.Width}x{h.Height} has an extreme aspect ratio ({ratio:0.#}:1, the bound is {options.MaxAspectRatio:0.#}:1)"));
    }

    static DecodedImage DecodeChecked(string name, byte[] data, ImageHeader header, int channels, ImageDecodeOptions options)
    {
        SKCodec? codec;
        SKCodecResult created;
        try
        {
            codec = SKCodec.Create(new SKMemoryStream(data), out created);
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            throw new ImageDecodeException(name, $"cannot decode images: SkiaSharp's native library (libSkiaSharp) failed to load: {e.GetBaseException().Message}", e);
        }
        if (codec is null)
            throw new ImageDecodeException(name, created switch
            {
                SKCodecResult.IncompleteInput => $"truncated {Name(header.Format)} (the data ends before the image header is complete)",
                SKCodecResult.Unimplemented or SKCodecResult.InvalidConversion => $"unsupported {Name(header.Format)} ({Describe(created)})",
                _ => $"corrupt {Name(header.Format)} ({Describe(created)})",
            });
        using (codec)
        {
            var info = codec.Info;
            // Skia's own reading of the header must agree with the budget too (a GIF frame may differ from its screen).
            CheckLimits(name, new ImageHeader(header.Format, info.Width, info.Height), options);
            var rgba = new SKImageInfo(info.Width, info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
            var buffer = GC.AllocateUninitializedArray<byte>(checked(info.Width * info.Height * 4));
            SKCodecResult result;
            unsafe
            {
                fixed (byte* p = buffer) result = codec.GetPixels(rgba, (nint)p);
            }
            // A PNG's chunks were checked complete up to IEND, so there incomplete input means bad compressed data.
            if (result == SKCodecResult.IncompleteInput && header.Format == ImageFormat.Png)
                throw new ImageDecodeException(name, "corrupt PNG (the compressed pixel data is invalid or ends before the last row)");
            if (result == SKCodecResult.IncompleteInput)
                throw new ImageDecodeException(name, $"truncated {Name(header.Format)} (the pixel data ends early; {data.Length} bytes)");
            if (result is SKCodecResult.Unimplemented or SKCodecResult.InvalidConversion)
                throw new ImageDecodeException(name, $"unsupported {Name(header.Format)} ({Describe(result)})");
            if (result != SKCodecResult.Success)
                throw new ImageDecodeException(name, $"corrupt {Name(header.Format)} ({Describe(result)})");
            if (options.ApplyExifOrientation && codec.EncodedOrigin is not (SKEncodedOrigin.TopLeft or 0))
            {
                var (oriented, w, h) = Orient(buffer, info.Width, info.Height, codec.EncodedOrigin);
                return new DecodedImage(w, h, channels, ToChannels(oriented, channels));
            }
            return new DecodedImage(info.Width, info.Height, channels, ToChannels(buffer, channels));
        }
    }

    static string Name(ImageFormat f) => f == ImageFormat.WebP ? "WebP" : f.ToString().ToUpperInvariant();

    static string Describe(SKCodecResult r) => r switch
    {
        SKCodecResult.ErrorInInput => "invalid data in the image stream",
        SKCodecResult.InvalidInput => "invalid image data",
        SKCodecResult.Unimplemented => "a variant the decoder does not support",
        SKCodecResult.InvalidConversion => "a colour type the decoder cannot convert to RGB",
        _ => "decoder result " + r,
    };

    /// <summary>
    /// Turns RGBA pixels as stored into the image as displayed (EXIF orientation 2-8: mirrors, rotations by 90, 180 and
    /// 270 degrees, transpositions); orientations 5-8 swap width and height.
    /// </summary>
    internal static (byte[] Pixels, int Width, int Height) Orient(byte[] rgba, int width, int height, SKEncodedOrigin origin)
    {
        bool swap = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        int ow = swap ? height : width, oh = swap ? width : height;
        var dst = GC.AllocateUninitializedArray<byte>(rgba.Length);
        var src32 = MemoryMarshal.Cast<byte, int>(rgba.AsSpan());
        var dst32 = MemoryMarshal.Cast<byte, int>(dst.AsSpan());
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++)
            {
                // Display pixel (x, y) comes from stored pixel (sx, sy).
                var (sx, sy) = origin switch
                {
                    SKEncodedOrigin.TopRight => (width - 1 - x, y),
                    SKEncodedOrigin.BottomRight => (width - 1 - x, height - 1 - y),
                    SKEncodedOrigin.BottomLeft => (x, height - 1 - y),
                    SKEncodedOrigin.LeftTop => (y, x),
                    SKEncodedOrigin.RightTop => (y, height - 1 - x),
                    SKEncodedOrigin.RightBottom => (width - 1 - y, height - 1 - x),
                    SKEncodedOrigin.LeftBottom => (width - 1 - y, x),
                    _ => (x, y),
                };
                dst32[y * ow + x] = src32[sy * width + sx];
            }
        return (dst, ow, oh);
    }

    /// <summary>RGBA to RGB (alpha dropped) or to StbImageSharp's luma, in place in a new, smaller array; RGBA as is.</summary>
    static byte[] ToChannels(byte[] rgba, int channels)
    {
        if (channels == 4) return rgba;
        int n = rgba.Length / 4;
        var dst = GC.AllocateUninitializedArray<byte>(n * channels);
        if (channels == 3)
            for (int i = 0; i < n; i++)
            {
                dst[3 * i] = rgba[4 * i];
                dst[3 * i + 1] = rgba[4 * i + 1];
                dst[3 * i + 2] = rgba[4 * i + 2];
            }
        else
            for (int i = 0; i < n; i++)
                dst[i] = (byte)((rgba[4 * i] * 77 + rgba[4 * i + 1] * 150 + rgba[4 * i + 2] * 29) >> 8);
        return dst;
    }

    /// <summary>
    /// Walks the PNG chunks: each must fit in the file with a matching CRC, and IEND must come (libpng accepts a file
    /// cut after its last IDAT and ignores CRC errors in ancillary chunks).
    /// </summary>
    static void CheckPngChunks(string name, ReadOnlySpan<byte> d)
    {
        long p = 8;
        while (true)
        {
            if (p + 12 > d.Length)
                throw new ImageDecodeException(name, $"truncated PNG (the file ends at offset {d.Length} before the IEND chunk)");
            uint length = BinaryPrimitives.ReadUInt32BigEndian(d[(int)p..]);
            if (length > int.MaxValue || p + 12 + length > d.Length)
                throw new ImageDecodeException(name, $"truncated PNG (chunk at offset {p} declares {length} bytes, the file has {d.Length - p - 12} left)");
            var typeAndData = d.Slice((int)p + 4, 4 + (int)length);
            uint stored = BinaryPrimitives.ReadUInt32BigEndian(d[((int)p + 8 + (int)length)..]);
            if (Crc32(typeAndData) != stored)
                throw new ImageDecodeException(name, $"corrupt PNG (CRC mismatch in the '{ChunkName(typeAndData[..4])}' chunk at offset {p})");
            if (typeAndData[..4].SequenceEqual("IEND"u8)) return;
            p += 12 + length;
        }
    }

    /// <summary>
    /// The scan data of a JPEG must be followed by its end-of-image marker (0xFFD9 cannot occur inside entropy-coded
    /// data). libjpeg silently completes a file cut after its last complete scan segment.
    /// </summary>
    static void CheckJpegEnd(string name, ReadOnlySpan<byte> d)
    {
        int scan = ImageHeader.FindJpegScan(d);
        if (scan < 0 || d[scan..].IndexOf([(byte)0xFF, (byte)0xD9]) < 0)
            throw new ImageDecodeException(name, $"truncated JPEG (no end-of-image marker after the scan data; {d.Length} bytes)");
    }

    /// <summary>A GIF ends with its trailer byte (0x3B), possibly padded with zeros; Skia accepts a file cut just before it.</summary>
    static void CheckGifTrailer(string name, ReadOnlySpan<byte> d)
    {
        var trimmed = d.TrimEnd((byte)0);
        if (trimmed.Length == 0 || trimmed[^1] != 0x3B)
            throw new ImageDecodeException(name, $"truncated GIF (no trailer byte at the end of its {d.Length} bytes)");
    }

    static string ChunkName(ReadOnlySpan<byte> type)
    {
        Span<char> c = stackalloc char[4];
        for (int i = 0; i < 4; i++) c[i] = type[i] is >= 0x21 and < 0x7f ? (char)type[i] : '?';
        return new string(c);
    }

    static readonly uint[] CrcTable = MakeCrcTable();

    static uint[] MakeCrcTable()
    {
        var t = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }

    internal static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFFu;
        foreach (var b in data) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return c ^ 0xFFFFFFFFu;
    }

    const int HeaderBytes = 1 << 16;

    /// <summary>Sees the first bytes of a file of the given length before the rest is read; throws to refuse it.</summary>
    delegate void HeaderGate(ReadOnlySpan<byte> head, long fileLength);

    /// <summary>Reads a file (or its first <paramref name="prefix"/> bytes), turning every filesystem error into a named one.</summary>
    static byte[] ReadFile(string path, long maxBytes, int? prefix, HeaderGate? gate = null)
    {
        if (path.Length == 0) throw new ImageDecodeException(path, "empty file name");
        if (path.Contains('\0')) throw new ImageDecodeException(path, "file name contains a NUL character");
        if (Directory.Exists(path)) throw new ImageDecodeException(path, "is a directory, not an image file");
        try
        {
            using var stream = Open(path);
            if (!stream.CanSeek) throw new ImageDecodeException(path, "is not a regular file (a pipe, socket or stream device)");
            long length = stream.Length;
            if (prefix is null && length > maxBytes)
                throw new ImageDecodeException(path, FormattableString.Invariant(
                    $"file of {length:N0} bytes is larger than any image within the pixel budget ({maxBytes:N0} bytes)"));
            if (prefix is null && length > Array.MaxLength)
                throw new ImageDecodeException(path, FormattableString.Invariant($"file of {length:N0} bytes is too large to decode"));
            int want = prefix is { } n ? (int)Math.Min(n, length) : (int)length;
            if (gate is null)
            {
                var all = GC.AllocateUninitializedArray<byte>(want);
                stream.ReadExactly(all);
                return all;
            }
            var head = new byte[Math.Min(want, HeaderBytes)];
            stream.ReadExactly(head);
            gate(head, length);
            if (head.Length == want) return head;
            var data = GC.AllocateUninitializedArray<byte>(want);
            head.CopyTo(data, 0);
            stream.ReadExactly(data.AsSpan(head.Length));
            return data;
        }
        catch (FileNotFoundException e) { throw new ImageDecodeException(path, "file not found", e); }
        catch (DirectoryNotFoundException e) { throw new ImageDecodeException(path, "file not found (its folder does not exist)", e); }
        catch (UnauthorizedAccessException e) { throw new ImageDecodeException(path, "permission denied", e); }
        catch (EndOfStreamException e) { throw new ImageDecodeException(path, "the file shrank while it was read", e); }
        catch (IOException e) { throw new ImageDecodeException(path, "cannot read: " + e.Message.Replace(path, "the file", StringComparison.Ordinal), e); }
    }

    /// <summary>
    /// Opens for reading. On Linux with O_NONBLOCK, so that a FIFO (or a device) given as an image is refused as "not a
    /// regular file" instead of blocking the caller until some writer appears.
    /// </summary>
    static FileStream Open(string path)
    {
        if (!OperatingSystem.IsLinux()) return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
        const int ReadOnlyNonBlockingCloseOnExec = 0x0 | 0x800 | 0x80000; // O_RDONLY | O_NONBLOCK | O_CLOEXEC
        int fd = OpenNative(path, ReadOnlyNonBlockingCloseOnExec);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw errno switch
            {
                2 => new FileNotFoundException("file not found"),                       // ENOENT
                20 => new DirectoryNotFoundException("a folder of the path is a file"), // ENOTDIR
                13 or 1 => new UnauthorizedAccessException("permission denied"),       // EACCES, EPERM
                40 => new IOException("too many levels of symbolic links (a symlink loop)"), // ELOOP
                _ => new IOException($"open failed ({Marshal.GetPInvokeErrorMessage(errno)})"),
            };
        }
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            return new FileStream(handle, FileAccess.Read, bufferSize: 1); // a FIFO or socket: CanSeek is false
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int OpenNative(string path, int flags);
}
