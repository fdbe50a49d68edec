using ConvKit.Data.Imaging;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Tests.Data.Imaging;

public class ImageResizerTests
{
    static DecodedImage Noise(int w, int h, int c, int seed)
    {
        var rng = new Random(seed);
        var pixels = new byte[w * h * c];
        rng.NextBytes(pixels);
        return new DecodedImage(w, h, c, pixels);
    }

    /// <summary>PyTorch's bilinear interpolate (antialiased when asked) of the whole image, HWC floats.</summary>
    static float[] Torch(DecodedImage image, int h, int w, bool antialias)
    {
        using var scope = NewDisposeScope();
        var x = tensor(image.Pixels, [1, image.Height, image.Width, image.Channels], ScalarType.Byte).permute(0, 3, 1, 2).to(float32);
        var y = F.interpolate(x, [h, w], mode: InterpolationMode.Bilinear, align_corners: false, antialias: antialias);
        return y.permute(0, 2, 3, 1).contiguous().data<float>().ToArray();
    }

    [Theory]
    [InlineData(640, 480, 3, 224, 224)] // downscale, both axes
    [InlineData(97, 61, 3, 13, 7)]      // odd factors
    [InlineData(20, 30, 1, 45, 50)]     // upscale: plain bilinear
    [InlineData(50, 40, 3, 20, 80)]     // down on one axis, up on the other
    public void MatchesTorchInterpolateWithAntialias(int sw, int sh, int c, int dw, int dh)
    {
        var image = Noise(sw, sh, c, seed: sw * sh);
        var mine = ImageResizer.ResizeToFloats(image, dh, dw, antialias: true);
        var expected = Torch(image, dh, dw, antialias: true);
        for (int i = 0; i < mine.Length; i++) Assert.Equal(expected[i], mine[i], 1e-2); // float32 sums in another order
    }

    [Fact]
    public void DownscalingAveragesInsteadOfAliasing()
    {
        // A one-pixel checkerboard shrunk 8x: antialiasing gives mid-grey everywhere, point sampling would give 0 or 255.
        var pixels = new byte[64 * 64];
        for (int y = 0; y < 64; y++) for (int x = 0; x < 64; x++) pixels[y * 64 + x] = (byte)((x + y) % 2 * 255);
        var small = ImageResizer.Resize(new DecodedImage(64, 64, 1, pixels), 8, 8);
        Assert.All(small.Pixels, p => Assert.InRange(p, 120, 135));
    }

    [Fact]
    public void CenterCropOfTheResizedImage()
    {
        var image = Noise(64, 32, 3, seed: 5);
        var crop = new float[16 * 16 * 3];
        ImageResizer.ResizeCenterCrop(image, 16, 16, crop);
        var full = Torch(image, 16, 32, antialias: true); // shorter side 32 -> 16, width 64 -> 32, crop columns 8..23
        for (int y = 0; y < 16; y++)
            for (int x = 0; x < 16; x++)
                for (int ch = 0; ch < 3; ch++)
                    Assert.Equal(full[(y * 32 + x + 8) * 3 + ch], crop[(y * 16 + x) * 3 + ch], 1e-3);
    }
}

