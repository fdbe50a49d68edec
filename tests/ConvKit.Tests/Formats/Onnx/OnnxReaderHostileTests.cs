using System.Text;
using ConvKit.Formats.Onnx;

namespace ConvKit.Tests.Formats.Onnx;

/// <summary>Minimal protobuf writer for hand-made ONNX files (onnx.proto field numbers).</summary>
internal static class Pb
{
    public static byte[] Varint(ulong v)
    {
        var b = new List<byte>();
        do { byte x = (byte)(v & 0x7f); v >>= 7; if (v != 0) x |= 0x80; b.Add(x); } while (v != 0);
        return b.ToArray();
    }

    public static byte[] Cat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    public static byte[] Field(int f, byte[] payload) => Cat(Varint((ulong)(f << 3 | 2)), Varint((ulong)payload.Length), payload);

    public static byte[] Int(int f, long v) => Cat(Varint((ulong)(f << 3)), Varint((ulong)v));

    public static byte[] Str(int f, string s) => Field(f, Encoding.UTF8.GetBytes(s));

    public static byte[] Node(string op, string name, string[] inputs, string[] outputs) =>
        Field(1, Cat([.. inputs.Select(i => Str(1, i)), .. outputs.Select(o => Str(2, o)), Str(3, name), Str(4, op)]));

    public static byte[] ValueInfo(int field, string name, params long[] dims) =>
        Field(field, Cat(Str(1, name), Field(2, Field(1, Cat(Int(1, 1), Field(2, Cat(dims.Select(d => Field(1, Int(1, d))).ToArray())))))));

    public static byte[] Tensor(string name, long[] dims, byte[]? raw = null, string? location = null) => Field(5, Cat(
        [.. dims.Select(d => Int(1, d)), Int(2, 1), Str(8, name),
         .. raw is null ? Array.Empty<byte[]>() : [Field(9, raw)],
         .. location is null ? Array.Empty<byte[]>() : [Field(13, Cat(Str(1, "location"), Str(2, location))), Int(14, 1)]]));

    public static byte[] Model(params byte[][] graph) =>
        Cat(Int(1, 8), Str(2, "convkit-tests"), Field(7, Cat(graph)), Field(8, Cat(Str(1, ""), Int(2, 13))));
}

[Trait("Catalogue", "Hostile")]
public sealed class OnnxReaderHostileTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-onnx-hostile-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    string Write(string name, byte[] bytes)
    {
        var path = Path.Combine(dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    static byte[] Relu(params byte[][] extra) => Pb.Model([
        Pb.ValueInfo(11, "x", 1, 3, 8, 8), .. extra, Pb.Node("Relu", "relu1", ["x"], ["y"]), Pb.ValueInfo(12, "y", 1, 3, 8, 8)]);

    [Fact]
    public void AWellFormedHandMadeGraphImports()
    {
        using var model = OnnxImport.Load(Write("relu.onnx", Relu()));
        Assert.Equal(new Shape(8, 8, 3), model.ModelInputShape);
    }

    [Fact]
    public void TruncatedFilesAreNamedFormatErrors()
    {
        var bytes = Relu(Pb.Tensor("w", [4, 4], new byte[64]));
        foreach (int cut in new[] { 3, bytes.Length / 2, bytes.Length - 1 })
        {
            var path = Write($"cut{cut}.onnx", bytes[..cut]);
            var e = Assert.ThrowsAny<OnnxImportException>(() => OnnxImport.Load(path));
            Assert.IsType<OnnxFormatException>(e);
            Assert.Contains(path, e.Message);
        }
    }

    [Fact]
    public void ALengthLargerThanTheFileIsRefusedBeforeAllocating()
    {
        // A graph field that declares 2^40 bytes.
        var path = Write("huge-length.onnx", Pb.Cat(Pb.Int(1, 8), Pb.Varint(7 << 3 | 2), Pb.Varint(1UL << 40), new byte[16]));
        var e = Assert.Throws<OnnxFormatException>(() => OnnxImport.Load(path));
        Assert.Contains("declares 1099511627776 bytes", e.Message);
    }

    [Fact]
    public void HugeDeclaredTensorDimensionsAreRefused()
    {
        var huge = Write("huge-dims.onnx", Relu(Pb.Tensor("w", [1L << 40, 1L << 40], new byte[4])));
        var e = Assert.Throws<OnnxFormatException>(() => OnnxImport.Load(huge));
        Assert.Contains("tensor 'w'", e.Message);
        var mismatch = Write("mismatch.onnx", Relu(Pb.Tensor("w", [1000, 1000], new byte[4])));
        e = Assert.Throws<OnnxFormatException>(() => OnnxImport.Load(mismatch));
        Assert.Contains("holds 4 bytes of data; its dimensions need 4000000", e.Message);
    }

    [Fact]
    public void ExternalDataOutsideTheModelFolderIsRefused()
    {
        var sub = Directory.CreateDirectory(Path.Combine(dir, "model")).FullName;
        File.WriteAllBytes(Path.Combine(dir, "secret.bin"), new byte[64]);
        foreach (var location in new[] { "../secret.bin", Path.Combine(dir, "secret.bin"), "sub/../../secret.bin" })
        {
            var path = Path.Combine(sub, "ext.onnx");
            File.WriteAllBytes(path, Relu(Pb.Tensor("w", [4, 4], location: location)));
            var e = Assert.Throws<OnnxFormatException>(() => OnnxImport.Load(path));
            Assert.Contains("tensor 'w'", e.Message);
            Assert.Contains("model's folder", e.Message);
        }
        // A link inside the folder that leads outside it.
        File.CreateSymbolicLink(Path.Combine(sub, "link.bin"), Path.Combine(dir, "secret.bin"));
        var linked = Path.Combine(sub, "link.onnx");
        File.WriteAllBytes(linked, Relu(Pb.Tensor("w", [4, 4], location: "link.bin")));
        Assert.Contains("link", Assert.Throws<OnnxFormatException>(() => OnnxImport.Load(linked)).Message);
        // Inside the folder, with the right size: accepted.
        File.WriteAllBytes(Path.Combine(sub, "w.bin"), new byte[64]);
        var ok = Path.Combine(sub, "ok.onnx");
        File.WriteAllBytes(ok, Relu(Pb.Tensor("w", [4, 4], location: "w.bin")));
        using var model = OnnxImport.Load(ok);
    }

    [Fact]
    public void CyclicAndDanglingGraphsAreNamedGraphErrors()
    {
        var cyclic = Write("cyclic.onnx", Pb.Model(
            Pb.ValueInfo(11, "x", 1, 3, 8, 8),
            Pb.Node("Add", "add", ["x", "b"], ["a"]),
            Pb.Node("Relu", "relu", ["a"], ["b"]),
            Pb.ValueInfo(12, "b", 1, 3, 8, 8)));
        var e = Assert.Throws<OnnxGraphException>(() => OnnxImport.Load(cyclic));
        Assert.Contains("cycle", e.Message);
        var dangling = Write("dangling.onnx", Pb.Model(
            Pb.ValueInfo(11, "x", 1, 3, 8, 8),
            Pb.Node("Add", "add", ["x", "nowhere"], ["y"]),
            Pb.ValueInfo(12, "y", 1, 3, 8, 8)));
        e = Assert.Throws<OnnxGraphException>(() => OnnxImport.Load(dangling));
        Assert.Contains("'nowhere'", e.Message);
        Assert.Contains("'add'", e.Message);
    }

    [Fact]
    public void EveryUnsupportedOpIsListedWithItsNodesInOneError()
    {
        var path = Write("unsupported.onnx", Pb.Model(
            Pb.ValueInfo(11, "x", 1, 3, 8, 8),
            Pb.Tensor("w", [4, 4], new byte[64]),
            Pb.Node("Relu", "r", ["x"], ["a"]),
            Pb.Node("Erf", "erf_1", ["a"], ["b"]),
            Pb.Node("Erf", "erf_2", ["b"], ["c"]),
            Pb.Node("NonMaxSuppression", "nms", ["c"], ["d"]),
            Pb.ValueInfo(12, "d", 1, 3, 8, 8)));
        var e = Assert.Throws<OnnxUnsupportedOperatorException>(() => OnnxImport.Load(path));
        Assert.Equal(["Erf", "NonMaxSuppression"], e.Unsupported.Keys.ToArray());
        Assert.Equal(["erf_1", "erf_2"], e.Unsupported["Erf"]);
        Assert.Contains("Erf (nodes 'erf_1', 'erf_2')", e.Message);
        Assert.Contains("NonMaxSuppression (nodes 'nms')", e.Message);
    }

    [Fact]
    public void GarbageIsAFormatErrorNotACrash()
    {
        var rng = new Random(7);
        for (int i = 0; i < 200; i++)
        {
            var bytes = new byte[rng.Next(1, 300)];
            rng.NextBytes(bytes);
            var path = Write($"garbage{i}.onnx", bytes);
            Assert.ThrowsAny<OnnxImportException>(() => OnnxImport.Load(path));
        }
    }
}
