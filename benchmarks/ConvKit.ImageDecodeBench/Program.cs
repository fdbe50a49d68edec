// Decode (+ resize to 224x224) time per image on one core: StbImageSharp vs ConvKit's ImageDecoder (SkiaSharp).
//   dotnet run --project benchmarks/ConvKit.ImageDecodeBench -c Release -- [photo.jpg small.png ...]
// Without arguments it encodes a synthetic 640x480 JPEG (quality 90) and a 64x64 PNG with SkiaSharp.
using System.Diagnostics;
using ConvKit.Data.Imaging;
using SkiaSharp;
using StbImageSharp;

var files = args.Length > 0 ? args.Select(a => (Name: a, Bytes: File.ReadAllBytes(a))).ToArray() : [("synthetic 640x480.jpg", Synthetic(640, 480, SKEncodedImageFormat.Jpeg)), ("synthetic 64x64.png", Synthetic(64, 64, SKEncodedImageFormat.Png))];
var crop = new float[224 * 224 * 3];
foreach (var (name, bytes) in files)
{
    int n = Math.Clamp(200_000_000 / Math.Max(1, bytes.Length * 40), 20, 5000);
    var results = new List<string>();
    for (int repeat = 0; repeat < 5; repeat++)
    {
        double stb = Time(n, () => ImageResult.FromMemory(bytes, ColorComponents.RedGreenBlue));
        double skia = Time(n, () => ImageDecoder.Decode(name, bytes, 3));
        double skiaResize = Time(n, () => ImageResizer.ResizeCenterCrop(ImageDecoder.Decode(name, bytes, 3), 224, 224, crop));
        results.Add(FormattableString.Invariant($"stb {stb:F3} ms, ImageDecoder {skia:F3} ms, ImageDecoder + resize/crop to 224 {skiaResize:F3} ms"));
    }
    Console.WriteLine($"{name} ({bytes.Length:N0} bytes), {n} decodes per figure, 5 repeats:");
    foreach (var r in results) Console.WriteLine("  " + r);
}
return 0;

static double Time(int n, Action decode)
{
    decode();
    var sw = Stopwatch.StartNew();
    for (int i = 0; i < n; i++) decode();
    return sw.Elapsed.TotalMilliseconds / n;
}

static byte[] Synthetic(int w, int h, SKEncodedImageFormat format)
{
    // Smooth gradients plus noise: compresses like a photo, not like a flat test card.
    var rng = new Random(1);
    using var bitmap = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Opaque));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            bitmap.SetPixel(x, y, new SKColor((byte)(x * 255 / w + rng.Next(-12, 12)), (byte)(y * 255 / h + rng.Next(-12, 12)), (byte)((x + y) % 256)));
    using var image = SKImage.FromBitmap(bitmap);
    using var data = image.Encode(format, 90);
    return data.ToArray();
}
