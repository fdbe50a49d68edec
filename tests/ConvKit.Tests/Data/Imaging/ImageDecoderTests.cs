using ConvKit.Data.Imaging;
using static ConvKit.Tests.Data.Imaging.ImageFiles;

namespace ConvKit.Tests.Data.Imaging;

public sealed class ImageDecoderTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-imaging-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    string Write(string name, byte[] bytes)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>Asserts the refusal: the named type, the file named, the reason, and no control character.</summary>
    static ImageDecodeException Refused(string path, string expected, Action decode)
    {
        var e = Assert.Throws<ImageDecodeException>(decode);
        Assert.Equal(path, e.Path);
        Assert.Contains(ImageDecodeException.Sanitize(path), e.Message);
        Assert.True(e.Message.Contains(expected, StringComparison.Ordinal), $"'{expected}' is not in: {e.Message}");
        Assert.DoesNotContain(e.Message, char.IsControl);
        return e;
    }

    // ---- valid files ----

    [Theory]
    [InlineData("png")]
    [InlineData("bmp")]
    [InlineData("webp")]
    public void LosslessFormatsDecodeToTheirExactPixels(string format)
    {
        var image = ImageDecoder.Decode(Write("g." + format, Sample(format)), 3);
        Assert.Equal((Width, Height, 3), (image.Width, image.Height, image.Channels));
        Assert.Equal(Gradient(), image.Pixels);
    }

    [Theory]
    [InlineData("jpg", 3.0)]
    [InlineData("gif", 8.0)] // 64-colour palette
    public void LossyFormatsDecodeCloseToTheirSource(string format, double meanError)
    {
        var image = ImageDecoder.Decode(Write("g." + format, Sample(format)), 3);
        Assert.Equal((Width, Height), (image.Width, image.Height));
        var expected = Gradient();
        double error = image.Pixels.Select((b, i) => Math.Abs(b - expected[i])).Average();
        Assert.InRange(error, 0, meanError);
    }

    [Fact]
    public void GreyIsStbImageSharpsLuma()
    {
        var image = ImageDecoder.Decode(Write("g.png", Sample("png")), 1);
        var rgb = Gradient();
        Assert.Equal(Enumerable.Range(0, Width * Height).Select(i => (byte)((rgb[3 * i] * 77 + rgb[3 * i + 1] * 150 + rgb[3 * i + 2] * 29) >> 8)), image.Pixels);
    }

    [Fact]
    public void ReadHeaderReadsNoPixels()
    {
        Assert.Equal(new ImageHeader(ImageFormat.Png, 30000, 30000), ImageDecoder.ReadHeader(Write("h.png", PngHeader(30000, 30000))));
        Assert.Equal(new ImageHeader(ImageFormat.Jpeg, Width, Height), ImageDecoder.ReadHeader(Write("g.jpg", Sample("jpg"))));
    }

    [Fact]
    public void ConcurrentDecodesEqualSequentialOnes()
    {
        var paths = new[] { "png", "jpg", "bmp", "gif", "webp" }.Select(f => Write("c." + f, Sample(f))).ToArray();
        var expected = paths.Select(p => ImageDecoder.Decode(p, 3).Pixels).ToArray();
        Parallel.For(0, 400, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
            Assert.Equal(expected[i % paths.Length], ImageDecoder.Decode(paths[i % paths.Length], 3).Pixels));
    }

    // ---- hostile files ----

    public static TheoryData<string, int> Cuts()
    {
        var data = new TheoryData<string, int>();
        foreach (var format in new[] { "png", "jpg", "bmp", "gif" })
            foreach (var cut in new[] { 8, 20, 40, 60, 100, -25, -50, -75, -90, -12, -2, -1 }) // negative: keep all but that many (or that percentage)
                data.Add(format, cut);
        return data;
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [MemberData(nameof(Cuts))]
    public void TruncatedFilesAreRefusedNotHalfDecoded(string format, int cut)
    {
        var full = Sample(format);
        int keep = cut > 0 ? cut : cut is -25 or -50 or -75 or -90 ? full.Length * -cut / 100 : full.Length + cut;
        Assert.InRange(keep, 1, full.Length - 1);
        var path = Write($"cut{keep}.{format}", full[..keep]);
        Refused(path, "truncated", () => ImageDecoder.Decode(path, 3));
    }

    public static TheoryData<string, long, long, string> Bombs() => new()
    {
        { "png", 30000, 30000, "900,000,000 pixels exceeds the pixel budget of 50,000,000 pixels" },
        { "png", 100000, 100000, "exceeds the pixel budget" },
        { "png", 7072, 7072, "exceeds the pixel budget" }, // 50.01 megapixels: just over
        { "png", 1, 5000, "extreme aspect ratio (5000:1, the bound is 100:1)" },
        { "png", 5000, 1, "extreme aspect ratio" },
        { "png", 0, 10, "invalid size 0x10" },
        { "png", 10, 0, "invalid size 10x0" },
        { "png", 2147483648, 1, "invalid size 2147483648x1" },
        { "png", 4294967295, 4294967295, "invalid size" },
        { "jpg", 65535, 65535, "exceeds the pixel budget" },
        { "jpg", 8000, 7000, "exceeds the pixel budget" },
        { "jpg", 1, 65535, "extreme aspect ratio" },
        { "jpg", 0, 100, "invalid size 0x100" },
        { "jpg", 100, 0, "DNL" },
        { "bmp", 30000, 30000, "exceeds the pixel budget" },
        { "bmp", 10000, -10000, "exceeds the pixel budget" }, // top-down rows
        { "bmp", 1, 200, "extreme aspect ratio" },
        { "bmp", -5, 10, "corrupt BMP: info header declares -5x10" },
        { "gif", 65535, 65535, "exceeds the pixel budget" },
        { "gif", 1, 1000, "extreme aspect ratio" },
        { "gif", 0, 5, "invalid size" },
        { "webp", 16384, 16384, "exceeds the pixel budget" },
        { "webp", 1, 16384, "extreme aspect ratio" },
    };

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [MemberData(nameof(Bombs))]
    public void HeadersDeclaringHugeOrDegenerateImagesAreRefusedBeforeDecoding(string format, long w, long h, string expected)
    {
        byte[] bytes = format switch
        {
            "png" => PngHeader((uint)w, (uint)h),
            "jpg" => JpegHeader((ushort)w, (ushort)h),
            "bmp" => BmpHeader((int)w, (int)h),
            "gif" => GifHeader((ushort)w, (ushort)h),
            _ => WebPHeader((int)w, (int)h),
        };
        var path = Write($"bomb.{format}", bytes);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Refused(path, expected, () => ImageDecoder.Decode(path, 3));
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 1 << 20); // no pixel buffer was allocated
    }

    public static TheoryData<string, string> Corruptions() => new()
    {
        { "png-ihdr-crc", "CRC mismatch in the 'IHDR' chunk at offset 8" },
        { "png-idat-byte", "CRC mismatch in the 'IDAT' chunk" },
        { "png-iend-crc", "CRC mismatch in the 'IEND' chunk" },
        { "png-not-ihdr", "the first chunk is not a 13-byte IHDR" },
        { "png-huge-chunk", "declares 2147483632 bytes" },
        { "png-bad-zlib", "corrupt PNG" },
        { "jpg-no-marker", "corrupt JPEG: expected a marker at offset 20" },
        { "jpg-eoi-first", "end of image at offset 2 before any frame header" },
        { "jpg-zero-length", "has length 0" },
        { "bmp-header-size", "corrupt BMP: info header size 7" },
        { "webp-chunk", "corrupt WebP: unknown first chunk" },
        { "gif-lzw", "corrupt GIF" },
    };

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [MemberData(nameof(Corruptions))]
    public void CorruptFilesAreRefusedWithTheReason(string kind, string expected)
    {
        byte[] b;
        switch (kind)
        {
            case "png-ihdr-crc": b = Sample("png"); b[8 + 8 + 13] ^= 1; break;
            case "png-idat-byte": b = Sample("png"); b[PngChunk(b, "IDAT") + 20] ^= 0x40; break;
            case "png-iend-crc": b = Sample("png"); b[^1] ^= 1; break;
            case "png-not-ihdr": b = Sample("png"); b[15] = (byte)'X'; break;
            case "png-huge-chunk":
                b = Sample("png");
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(PngChunk(b, "IDAT")), 0x7FFFFFF0);
                break;
            case "png-bad-zlib":
                b = Sample("png");
                int idat = PngChunk(b, "IDAT");
                for (int i = 10; i < 40; i++) b[idat + 8 + i] ^= 0x5A; // garbage deflate data with a valid chunk CRC
                FixPngCrc(b, idat);
                break;
            case "jpg-no-marker": b = Sample("jpg"); b[20] = 0x00; break; // where the second segment's 0xFF should be
            case "jpg-eoi-first": b = [0xFF, 0xD8, 0xFF, 0xD9, 0, 0]; break;
            case "jpg-zero-length": b = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 1, 2, 3, 4]; break;
            case "bmp-header-size": b = Sample("bmp"); b[14] = 7; break;
            case "webp-chunk": b = WebPHeader(10, 10); b[15] = (byte)'Z'; break;
            default:
                b = Sample("gif");
                for (int i = b.Length - 200; i < b.Length - 10; i++) b[i] = 0xFF; // the LZW stream becomes invalid codes
                break;
        }
        var path = Write("corrupt-" + kind, b);
        Refused(path, expected, () => ImageDecoder.Decode(path, 3));
    }

    public static TheoryData<string, string> FileSystemCases() => new()
    {
        { "missing", "file not found" },
        { "directory", "is a directory, not an image file" },
        { "empty", "empty file (0 bytes), not an image" },
        { "text", "not an image (unknown format; 20 bytes" },
        { "zeros", "not an image (unknown format; 20 bytes" },
        { "gif-magic-only", "truncated GIF header" },
        { "symlink-loop", "cannot read: too many levels of symbolic links" },
        { "fifo", "is not a regular file" },
        { "dangling-symlink", "file not found" },
        { "under-a-file", "file not found" },
        { "newline-name", "not an image" },
        { "escape-name", "not an image" },
        { "dev-null", "empty file" },
    };

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [MemberData(nameof(FileSystemCases))]
    public void FileSystemOddities(string kind, string expected)
    {
        string path = Path.Combine(dir, kind);
        switch (kind)
        {
            case "directory": Directory.CreateDirectory(path); break;
            case "empty": File.WriteAllBytes(path, []); break;
            case "text": File.WriteAllText(path, "hello, not an image!"); break;
            case "zeros": File.WriteAllBytes(path, new byte[20]); break;
            case "gif-magic-only": File.WriteAllText(path, "GIF89a"); break;
            case "symlink-loop": File.CreateSymbolicLink(path, path); break;
            case "fifo":
                using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", path)!)
                {
                    mkfifo.WaitForExit();
                    Assert.Equal(0, mkfifo.ExitCode);
                }
                break;
            case "dangling-symlink": File.CreateSymbolicLink(path, Path.Combine(dir, "nowhere.png")); break;
            case "under-a-file": File.WriteAllBytes(Path.Combine(dir, "plain"), Sample("png")); path = Path.Combine(dir, "plain", "x.png"); break;
            case "newline-name": path = Path.Combine(dir, "a\nb.png"); File.WriteAllText(path, "junk junk junk junk"); break;
            case "escape-name": path = Path.Combine(dir, "a\u001b[31mred.png"); File.WriteAllText(path, "junk junk junk junk"); break;
            case "dev-null": path = "/dev/null"; break;
        }
        var e = Refused(path, expected, () => ImageDecoder.Decode(path, 3));
        if (kind == "newline-name") Assert.Contains("a\\x0ab.png", e.Message);
        if (kind == "escape-name") Assert.Contains("a\\x1b[31mred.png", e.Message);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("zeros", "not an image (unknown format; 300,000,000 bytes")]
    [InlineData("png-bomb", "exceeds the pixel budget")]
    [InlineData("too-big", "file of 500,000,000 bytes is larger than any image within the pixel budget (401,048,576 bytes)")]
    public void AHugeFileIsJudgedByItsHeaderWithoutReadingIt(string kind, string expected)
    {
        var path = Path.Combine(dir, kind + ".png");
        using (var f = File.Create(path))
        {
            if (kind == "png-bomb") f.Write(PngHeader(40000, 40000));
            f.SetLength(kind == "too-big" ? 500_000_000 : 300_000_000); // sparse: no disk space used
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        Refused(path, expected, () => ImageDecoder.Decode(path, 3));
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 1 << 20);
    }

    [Fact]
    public void AJpegFrameHeaderBeyondTheFirst64KiBIsFound()
    {
        // A 100 KB APP2 (ICC-like) run of segments before the frame header: the header check reads on.
        var jpg = Sample("jpg");
        var padding = new List<byte>();
        for (int i = 0; i < 2; i++) padding.AddRange([0xFF, 0xE2, 0xFF, 0xF0, .. new byte[0xFFF0 - 2]]);
        var path = Write("big-app2.jpg", [.. jpg[..2], .. padding, .. jpg[2..]]);
        var image = ImageDecoder.Decode(path, 3);
        Assert.Equal((Width, Height), (image.Width, image.Height));
    }

    [Fact]
    public void AnUnreadableFileIsRefusedAsPermissionDenied()
    {
        if (!OperatingSystem.IsLinux() || Environment.UserName == "root") return; // root reads any file; FileSystemOddities covers the other paths there
        var path = Write("locked.png", Sample("png"));
        File.SetUnixFileMode(path, UnixFileMode.None);
        Refused(path, "permission denied", () => ImageDecoder.Decode(path, 3));
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("name\0with-nul", "name\\x00with-nul")]
    [InlineData("line\nbreak", "line\\x0abreak")]
    [InlineData("bell\a", "bell\\x07")]
    public void InMemoryNamesWithControlCharactersAreEscaped(string name, string shown)
    {
        var e = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(name, new byte[20], 3));
        Assert.Contains($"image '{shown}': not an image (unknown format", e.Message);
        Assert.DoesNotContain(e.Message, char.IsControl);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData(0L, 100.0, 3, "MaxPixels")]
    [InlineData(-1L, 100.0, 3, "MaxPixels")]
    [InlineData(1000L, 0.5, 3, "MaxAspectRatio")]
    [InlineData(1000L, double.NaN, 3, "MaxAspectRatio")]
    [InlineData(1000L, double.PositiveInfinity, 3, "MaxAspectRatio")]
    [InlineData(1000L, 100.0, 0, "channels")]
    [InlineData(1000L, 100.0, 2, "channels")]
    [InlineData(1000L, 100.0, 5, "channels")] // 4 (RGBA) is valid since the streaming datasets' rgba colour mode
    public void InvalidOptionsAreNamed(long maxPixels, double maxAspect, int channels, string parameter)
    {
        var path = Write("ok.png", Sample("png"));
        var e = Assert.Throws<InvalidOptionException>(() =>
            ImageDecoder.Decode(path, channels, new ImageDecodeOptions { MaxPixels = maxPixels, MaxAspectRatio = maxAspect }));
        Assert.Equal(parameter, e.Option);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData(3071L, 100.0, "64x48 = 3,072 pixels exceeds the pixel budget of 3,071 pixels")]
    [InlineData(1_000_000L, 1.3, "extreme aspect ratio (1.3:1, the bound is 1.3:1)")]
    public void TheLimitsAreConfigurable(long maxPixels, double maxAspect, string expected)
    {
        var path = Write("ok.png", Sample("png"));
        Refused(path, expected, () => ImageDecoder.Decode(path, 3, new ImageDecodeOptions { MaxPixels = maxPixels, MaxAspectRatio = maxAspect }));
        Assert.Equal(Width, ImageDecoder.Decode(path, 3, new ImageDecodeOptions { MaxPixels = 3072, MaxAspectRatio = 4.0 / 3 }).Width);
    }
}
