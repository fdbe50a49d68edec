namespace ConvKit.Data.Imaging;

/// <summary>8-bit pixels of one decoded image, interleaved (height, width, channels), rows top to bottom.</summary>
/// <param name="Width">Width in pixels.</param>
/// <param name="Height">Height in pixels.</param>
/// <param name="Channels">1 (grey) or 3 (RGB).</param>
/// <param name="Pixels">Height x width x channels bytes.</param>
public sealed record DecodedImage(int Width, int Height, int Channels, byte[] Pixels);
