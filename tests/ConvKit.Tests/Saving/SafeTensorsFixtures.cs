using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

/// <summary>The tensor table shared with Fixtures/make_safetensors.py (keep both in sync).</summary>
static class SafeTensorsFixtures
{
    public static string Dir => Path.Combine(AppContext.BaseDirectory, "Fixtures", "Saving");

    public static Dictionary<string, Tensor> Table() => new()
    {
        ["conv/kernel"] = tensor(new float[] { -1.5f, 0, 0.25f, 1, 2.5f, -3 }).reshape(2, 3),
        ["half"] = tensor(new float[] { 0.5f, -2, 65504, MathF.Pow(2, -14) }).to(ScalarType.Float16),
        ["bhalf"] = tensor(new float[] { 1, -0.5f, 256 }).to(ScalarType.BFloat16),
        ["double"] = tensor(new double[] { 0.1, -2, 1e300, 5e-324 }).reshape(2, 2),
        ["steps"] = tensor(new long[] { 0, -1, 9007199254740993 }),
        ["ints"] = tensor(new int[] { 1, -2, int.MaxValue, int.MinValue }).reshape(2, 2),
        ["bytes"] = tensor(new byte[] { 0, 1, 127, 128, 255 }),
        ["mask"] = tensor(new[] { true, false, true, true }),
        ["empty"] = zeros(0, 3),
    };

    public static Dictionary<string, string> Metadata() => new() { ["format"] = "pt", ["note"] = "ünïcode" };

    public static void AssertSame(Tensor expected, Tensor actual, string name)
    {
        Assert.True(expected.dtype == actual.dtype, $"{name}: dtype {actual.dtype} != {expected.dtype}");
        Assert.Equal(expected.shape, actual.shape);
        if (expected.NumberOfElements == 0) return;
        Assert.Equal(expected.contiguous().bytes.ToArray(), actual.contiguous().bytes.ToArray());
    }
}
