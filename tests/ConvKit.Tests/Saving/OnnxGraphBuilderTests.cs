using ConvKit.Saving;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;
using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

public class OnnxGraphBuilderTests
{
    // pads as ONNX wants them for 2-D: [top, left, bottom, right]
    static readonly long[] Pads = [1, 0, 2, 1];

    static (OnnxGraphBuilder Builder, Func<Tensor, Tensor> Torch) ConvNet()
    {
        // A private generator: other test classes draw from the global one concurrently.
        var gen = new TorchSharp.torch.Generator(42);
        // He-style scales keep activations O(1), as in a real network, so 1e-5 is a meaningful float32 bound.
        using var scale1 = MathF.Sqrt(2f / 27).ToScalar();
        using var scale2 = MathF.Sqrt(1f / 48).ToScalar();
        using var biasScale = 0.1f.ToScalar();
        var w1f = randn(4, 3, 3, 3, generator: gen).mul(scale1);
        var b1f = randn(4, generator: gen).mul(biasScale);
        // (8+1+2-3+1) x (8+0+1-3+1) = 9 x 7 -> max pool 2 -> 4 x 3
        var w2f = randn(5, 4 * 4 * 3, generator: gen).mul(scale2);
        var b2f = randn(5, generator: gen).mul(biasScale);
        var builder = new OnnxGraphBuilder()
            .AddInput("x", "N", 3, 8, 8)
            .AddInitializer("w1", w1f)
            .AddInitializer("b1", b1f.data<float>().ToArray(), 4)
            .AddInitializer("w2", w2f)
            .AddInitializer("b2", b2f)
            .AddNode("Conv", ["x", "w1", "b1"], ["c"],
                [OnnxAttribute.Ints("kernel_shape", 3, 3), OnnxAttribute.Ints("pads", Pads), OnnxAttribute.Ints("strides", 1, 1)], name: "conv1")
            .AddNode("Relu", ["c"], ["r"])
            .AddNode("MaxPool", ["r"], ["p"], [OnnxAttribute.Ints("kernel_shape", 2, 2), OnnxAttribute.Ints("strides", 2, 2)])
            .AddNode("Flatten", ["p"], ["f"], [OnnxAttribute.Int("axis", 1)])
            .AddNode("Gemm", ["f", "w2", "b2"], ["y"], [OnnxAttribute.Int("transB", 1), OnnxAttribute.Float("alpha", 1f)])
            .AddOutput("y", "N", 5);
        Tensor Torch(Tensor x)
        {
            // Reference in float64: the comparison then measures ONNX Runtime's float32 error alone.
            x = x.to(float64);
            using var w1 = w1f.to(float64);
            using var b1 = b1f.to(float64);
            using var w2 = w2f.to(float64);
            using var b2 = b2f.to(float64);
            // torch pads the last dimension first: (left, right, top, bottom)
            var padded = nn.functional.pad(x, [Pads[1], Pads[3], Pads[0], Pads[2]]);
            var c = nn.functional.conv2d(padded, w1, b1);
            var p = nn.functional.max_pool2d(nn.functional.relu(c), 2, 2);
            return nn.functional.linear(p.flatten(1), w2, b2).to(float32);
        }
        return (builder, Torch);
    }

    [Fact]
    public void AConvNetWrittenByTheBuilderRunsInOnnxRuntimeAndMatchesTorchSharp()
    {
        var (builder, torchNet) = ConvNet();
        var bytes = builder.ToBytes();
        Assert.Equal(bytes, ConvNet().Builder.ToBytes()); // deterministic

        using var session = new InferenceSession(bytes);
        Assert.Equal(-1, session.InputMetadata["x"].Dimensions[0]); // symbolic batch
        foreach (int batch in new[] { 1, 3 })
        {
            var x = randn(new long[] { batch, 3, 8, 8 }, generator: new TorchSharp.torch.Generator((ulong)(7 + batch)));
            var expected = torchNet(x).data<float>().ToArray();
            var input = new DenseTensor<float>(x.data<float>().ToArray(), [batch, 3, 8, 8]);
            using var results = session.Run([NamedOnnxValue.CreateFromTensor("x", input)]);
            var y = results.Single().AsTensor<float>();
            Assert.Equal([batch, 5], y.Dimensions.ToArray());
            var actual = y.ToArray();
            Assert.Equal(expected.Length, actual.Length);
            for (int i = 0; i < actual.Length; i++)
                Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5, $"batch {batch} [{i}]: {actual[i]} vs {expected[i]}");
        }
    }

    [Fact]
    public void SaveWritesTheSameBytesAtomically()
    {
        var dir = Directory.CreateTempSubdirectory("convkit-onnx-").FullName;
        try
        {
            var (builder, _) = ConvNet();
            var path = Path.Combine(dir, "m.onnx");
            builder.Save(path);
            Assert.Equal(builder.ToBytes(), File.ReadAllBytes(path));
            using var session = new InferenceSession(path);
            Assert.Equal("y", session.OutputMetadata.Keys.Single());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void RejectsUndefinedInputsDuplicateNamesAndUnsupportedTensors()
    {
        var b = new OnnxGraphBuilder().AddInput("x", "N", 4);
        Assert.Throws<InvalidOptionException>(() => b.AddNode("Relu", ["nope"], ["y"]));
        Assert.Throws<InvalidOptionException>(() => b.AddInput("x", 1));
        Assert.Throws<ShapeException>(() => b.AddInitializer("w", new float[3], 2, 2));
        Assert.Throws<InvalidOptionException>(() => b.AddInitializer("h", zeros(2, dtype: ScalarType.Float16)));
        Assert.Throws<InvalidOptionException>(() => b.AddOutput("y", "N", 4));
        Assert.Throws<GraphException>(() => b.ToBytes());
        b.AddNode("Relu", ["x"], ["y"]).AddOutput("y", "N", 4);
        Assert.Throws<InvalidOptionException>(() => b.AddNode("Relu", ["x"], ["y"]));
        using var session = new InferenceSession(b.ToBytes());
        Assert.Equal("x", session.InputMetadata.Keys.Single());
    }
}
