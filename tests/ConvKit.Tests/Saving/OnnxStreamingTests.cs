using ConvKit.Cli;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Saving;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

public sealed class OnnxStreamingTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-onnx-stream-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    /// <summary>A 69 MB Dense kernel: more than one 64 MiB slice of the streaming writer.</summary>
    static Sequential Wide()
    {
        var model = new Sequential();
        model.Add(new Dense(4100, activation: "relu", inputShape: new Shape(4200)));
        model.Add(new Dense(3));
        return model;
    }

    [Fact]
    public void SaveStreamsTheWeightsWithoutCopyingThemIntoManagedMemory()
    {
        using var model = Wide();
        var path = Path.Combine(dir, "wide.onnx");
        long before = GC.GetAllocatedBytesForCurrentThread();
        OnnxExport.Save(model, path);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        long size = new FileInfo(path).Length;
        Assert.InRange(size, 68_000_000, 70_000_000);
        // The whole-message serializer allocated several copies of the file (about 13 x for VGG-16); streaming allocates
        // buffers only.
        Assert.InRange(allocated, 0, 4 << 20);
        Assert.Equal(model.ToOnnx(), File.ReadAllBytes(path));
        Assert.Empty(Directory.GetFiles(dir, AtomicFile.TempPrefix + "*"));

        // The slices were written in order: ONNX Runtime computes what ConvKit does.
        using var x = randn(2, 4200);
        using var expected = model.Predict(x);
        using var session = new InferenceSession(path);
        var feed = NamedOnnxValue.CreateFromTensor(session.InputMetadata.Keys.Single(), new DenseTensor<float>(x.data<float>().ToArray(), [2, 4200]));
        using var results = session.Run([feed]);
        var actual = results.Single().AsEnumerable<float>().ToArray();
        var want = expected.data<float>().ToArray();
        for (int i = 0; i < want.Length; i++) Assert.Equal(want[i], actual[i], 1e-3);
    }

    [Fact]
    public void WriteToSerializedSizeAndToBytesAgree()
    {
        using var model = Wide();
        var bytes = model.ToOnnx();
        using var exported = new MemoryStream();
        using (var graph = new OnnxExporter(OnnxExportOptions.Default).Export(model))
        {
            Assert.Equal(bytes.Length, graph.SerializedSize);
            graph.WriteTo(exported);
        }
        Assert.Equal(bytes, exported.ToArray());
    }

    [Fact]
    public void PublicInitializersAreCopiedWhenAdded()
    {
        // AddInitializer(Tensor) promises a copy: changing the tensor afterwards does not change the model.
        using var w = ones(2, 2);
        using var graph = new OnnxGraphBuilder().AddInput("x", "N", 2).AddInitializer("w", w);
        graph.AddNode("MatMul", ["x", "w"], ["y"]).AddOutput("y", "N", 2);
        var before = graph.ToBytes();
        using (var two = 2.0f.ToScalar()) w.mul_(two);
        Assert.Equal(before, graph.ToBytes());
    }

    public static TheoryData<string> BadDestinations() => ["directory", "missing-folder", "under-a-file"];

    string Destination(string kind) => kind switch
    {
        "directory" => Directory.CreateDirectory(Path.Combine(dir, "out.onnx")).FullName,
        "missing-folder" => Path.Combine(dir, "no", "such", "folder", "m.onnx"),
        _ => Path.Combine(File.Create(Path.Combine(dir, "plain")).Name, "m.onnx"),
    };

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [MemberData(nameof(BadDestinations))]
    public void SavingToABadDestinationFailsAndLeavesNothing(string kind)
    {
        using var model = Wide();
        var path = Destination(kind);
        var e = Record.Exception(() => OnnxExport.Save(model, path));
        Assert.True(e is IOException or UnauthorizedAccessException, $"{e?.GetType()}: {e?.Message}");
        Assert.Empty(Directory.GetFiles(dir, AtomicFile.TempPrefix + "*", SearchOption.AllDirectories));
        Assert.False(File.Exists(path));
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [MemberData(nameof(BadDestinations))]
    public void ExportCommandNamesABadDestination(string kind)
    {
        var path = Destination(kind);
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Program.Run(["export", "lenet5", "--onnx", path], output, error);
        Assert.Equal(1, code);
        // The CLI refuses a folder or a missing parent by its option name before building the model; what only the
        // write finds out (a file in the way) is reported as the write's failure.
        var escaped = System.Text.RegularExpressions.Regex.Escape(path);
        Assert.Matches($"^error: (--onnx '{escaped}'( is a folder|: the folder '.*' does not exist)|cannot write '{escaped}': )", error.ToString());
        Assert.DoesNotContain("   at ", error.ToString());
        Assert.Empty(Directory.GetFiles(dir, AtomicFile.TempPrefix + "*", SearchOption.AllDirectories));
        Assert.False(File.Exists(path));
    }
}
