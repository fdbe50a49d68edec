using System.Buffers.Binary;
using System.Text;
using ConvKit.Data.Imaging;
using StbImageWriteSharp;

namespace ConvKit.Tests.Data.Imaging;

/// <summary>Valid and hand-crafted image files for the imaging tests.</summary>
static class ImageFiles
{
    public const int Width = 64, Height = 48;

    /// <summary>The gradient every sample image holds: (4x, 5y, 2(x + y)).</summary>
    public static byte[] Gradient(int w = Width, int h = Height)
    {
        var rgb = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                rgb[(y * w + x) * 3] = (byte)(x * 4);
                rgb[(y * w + x) * 3 + 1] = (byte)(y * 5);
                rgb[(y * w + x) * 3 + 2] = (byte)((x + y) * 2);
            }
        return rgb;
    }

    public static string FixturePath(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "Imaging", name);

    /// <summary>A valid file of the format: png, jpg and bmp written by StbImageWriteSharp, gif and webp from Fixtures/Imaging.</summary>
    public static byte[] Sample(string format)
    {
        if (format is "gif") return File.ReadAllBytes(FixturePath("gradient.gif"));
        if (format is "webp") return File.ReadAllBytes(FixturePath("gradient.webp"));
        using var s = new MemoryStream();
        var writer = new ImageWriter();
        var rgb = Gradient();
        switch (format)
        {
            case "png": writer.WritePng(rgb, Width, Height, ColorComponents.RedGreenBlue, s); break;
            case "jpg": writer.WriteJpg(rgb, Width, Height, ColorComponents.RedGreenBlue, s, 90); break;
            case "bmp": writer.WriteBmp(rgb, Width, Height, ColorComponents.RedGreenBlue, s); break;
            default: throw new ArgumentException(format);
        }
        return s.ToArray();
    }

    static byte[] Chunk(string type, byte[] data)
    {
        var c = new byte[12 + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(c, (uint)data.Length);
        Encoding.ASCII.GetBytes(type).CopyTo(c, 4);
        data.CopyTo(c, 8);
        BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(8 + data.Length), ImageDecoder.Crc32(c.AsSpan(4, 4 + data.Length)));
        return c;
    }

    /// <summary>PNG signature, an IHDR declaring w x h (8-bit RGB) and IEND, with valid CRCs and no pixel data.</summary>
    public static byte[] PngHeader(uint w, uint h)
    {
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, w);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), h);
        ihdr[8] = 8;
        ihdr[9] = 2;
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, .. Chunk("IHDR", ihdr), .. Chunk("IEND", [])];
    }

    /// <summary>Rewrites the CRC of the PNG chunk at <paramref name="offset"/> after its content was changed.</summary>
    public static void FixPngCrc(byte[] png, int offset)
    {
        int length = (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(offset));
        BinaryPrimitives.WriteUInt32BigEndian(png.AsSpan(offset + 8 + length), ImageDecoder.Crc32(png.AsSpan(offset + 4, 4 + length)));
    }

    /// <summary>Offset of the first chunk of a type in a PNG.</summary>
    public static int PngChunk(byte[] png, string type)
    {
        int p = 8;
        while (p + 8 <= png.Length)
        {
            if (Encoding.ASCII.GetString(png, p + 4, 4) == type) return p;
            p += 12 + (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(p));
        }
        throw new InvalidOperationException($"no {type} chunk");
    }

    /// <summary>SOI, a JFIF APP0, a baseline SOF0 declaring w x h with three components, EOI.</summary>
    public static byte[] JpegHeader(ushort w, ushort h)
    {
        byte[] app0 = [0xFF, 0xE0, 0, 16, (byte)'J', (byte)'F', (byte)'I', (byte)'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0];
        byte[] sof = [0xFF, 0xC0, 0, 17, 8, (byte)(h >> 8), (byte)h, (byte)(w >> 8), (byte)w, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1];
        return [0xFF, 0xD8, .. app0, .. sof, 0xFF, 0xD9];
    }

    /// <summary>A 54-byte BMP header declaring w x h at 24 bits, and no pixels.</summary>
    public static byte[] BmpHeader(int w, int h)
    {
        var b = new byte[54];
        b[0] = (byte)'B';
        b[1] = (byte)'M';
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(2), 54);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(10), 54);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(18), w);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(22), h);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(26), 1);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(28), 24);
        return b;
    }

    /// <summary>A GIF89a logical screen of w x h, no frame, and the trailer.</summary>
    public static byte[] GifHeader(ushort w, ushort h) =>
        [(byte)'G', (byte)'I', (byte)'F', (byte)'8', (byte)'9', (byte)'a', (byte)w, (byte)(w >> 8), (byte)h, (byte)(h >> 8), 0, 0, 0, 0x3B];

    /// <summary>A RIFF/WEBP file whose VP8X chunk declares a w x h canvas.</summary>
    public static byte[] WebPHeader(int w, int h)
    {
        var b = new byte[30];
        Encoding.ASCII.GetBytes("RIFF").CopyTo(b, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), 22);
        Encoding.ASCII.GetBytes("WEBPVP8X").CopyTo(b, 8);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16), 10);
        (b[24], b[25], b[26]) = ((byte)(w - 1), (byte)((w - 1) >> 8), (byte)((w - 1) >> 16));
        (b[27], b[28], b[29]) = ((byte)(h - 1), (byte)((h - 1) >> 8), (byte)((h - 1) >> 16));
        return b;
    }
}
