using System.Buffers.Binary;
using System.Text;
using ConvKit.Saving;
using static ConvKit.Tests.Ranges;
using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

public class SafeTensorsTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-st-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    [Fact]
    public void ReadsTheFileWrittenByPythonFromTheSpec()
    {
        using var file = SafeTensors.Read(Path.Combine(SafeTensorsFixtures.Dir, "python_reference.safetensors"));
        var expected = SafeTensorsFixtures.Table();
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), file.Names);
        Assert.Equal(SafeTensorsFixtures.Metadata(), file.Metadata);
        Assert.Equal(SafeTensorsDType.BF16, file.Info("bhalf").DType);
        Assert.Equal(new long[] { 2, 3 }, file.Info("conv/kernel").Shape);
        foreach (var (name, t) in file.LoadAll()) SafeTensorsFixtures.AssertSame(expected[name], t, name);
    }

    [Fact]
    public void WriterIsDeterministicAndMatchesTheFileCheckedByPython()
    {
        // Fixtures/make_safetensors.py --check parses the committed file with numpy; this pins the writer to it.
        var bytes = Write(SafeTensorsFixtures.Table(), SafeTensorsFixtures.Metadata());
        var fixture = Path.Combine(SafeTensorsFixtures.Dir, "convkit_written.safetensors");
        if (Environment.GetEnvironmentVariable("CONVKIT_UPDATE_FIXTURES") is { } src)
            File.WriteAllBytes(Path.Combine(src, "Saving", "convkit_written.safetensors"), bytes);
        Assert.Equal(File.ReadAllBytes(fixture), bytes);
        // Insertion order must not matter.
        var reversed = SafeTensorsFixtures.Table().Reverse().ToDictionary();
        Assert.Equal(bytes, Write(reversed, SafeTensorsFixtures.Metadata()));
    }

    [Fact]
    public void RoundTripsEveryDTypeAndNonContiguousTensorsThroughAFile()
    {
        var table = SafeTensorsFixtures.Table();
        table["transposed"] = Arange(12, dtype: ScalarType.Float32).reshape(3, 4).t(); // not contiguous
        var path = Path.Combine(dir, "w.safetensors");
        SafeTensors.Write(path, table, new Dictionary<string, string> { ["epoch"] = "3" });
        using var file = SafeTensors.Read(path);
        Assert.Equal("3", file.Metadata["epoch"]);
        foreach (var (name, t) in table) SafeTensorsFixtures.AssertSame(t, file.Get(name), name);
        Assert.Empty(Directory.GetFiles(dir, AtomicFile.TempPrefix + "*"));
    }

    [Fact]
    public void WriterRejectsReservedNamesAndUnsupportedDTypes()
    {
        Assert.Throws<InvalidOptionException>(() => Write(new() { ["__metadata__"] = zeros(1) }));
        Assert.Throws<InvalidOptionException>(() => Write(new() { ["c"] = zeros(new long[] { 2 }, ScalarType.ComplexFloat32) }));
    }

    const string Ok = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";

    public static TheoryData<string, int, string, string?> BadHeaders => new()
    {
        { "not json", 8, "not valid JSON", null },
        { "[1,2]", 0, "must be a JSON object", null },
        { "{" + Ok + "} x", 8, "not valid JSON", null },
        { "{\"a\":5}", 0, "must be an object", "a" },
        { "{\"a\":{\"dtype\":\"F8\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype 'F8'", "a" },
        { "{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype", "a" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "negative", "a" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "integers", "a" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "64 bits", "a" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 8, "overflows", "a" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "needs 12 bytes", "a" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", 8, "more than 2", "a" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "needs dtype, shape and data_offsets", "a" },
        { "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "repeated key", "a" },
        { "{" + Ok + "," + Ok + "}", 8, "duplicate name", "a" },
        { "{" + Ok + ",\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlaps", "b" },
        { "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "leaves a hole", "b" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "runs past", "a" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "4 trailing bytes", null },
        { "{\"__metadata__\":{\"k\":1}," + Ok + "}", 8, "must be a string", "__metadata__" },
    };

    [Theory]
    [MemberData(nameof(BadHeaders))]
    public void ReaderRejectsMalformedHeadersNamingFileTensorAndOffset(string header, int minOffset, string problem, string? tensor)
    {
        var e = Assert.Throws<SafeTensorsFormatException>(() => SafeTensors.Read(new MemoryStream(Image(header, 8)), "bad.st"));
        Assert.Contains(problem, e.Message);
        Assert.Contains("'bad.st'", e.Message);
        Assert.Equal(tensor, e.TensorName);
        if (tensor is not null) Assert.Contains($"'{tensor}'", e.Message);
        Assert.InRange(e.Offset, minOffset, 8 + Encoding.UTF8.GetByteCount(header) + 8);
    }

    [Fact]
    public void ReaderRejectsBadHeaderLengthsBeforeAllocating()
    {
        var huge = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(huge, 100_000_001);
        Assert.Contains("exceeds the limit", Assert.Throws<SafeTensorsFormatException>(() => SafeTensors.Read(new MemoryStream(huge), "f")).Message);
        BinaryPrimitives.WriteUInt64LittleEndian(huge, ulong.MaxValue);
        Assert.Throws<SafeTensorsFormatException>(() => SafeTensors.Read(new MemoryStream(huge), "f"));
        BinaryPrimitives.WriteUInt64LittleEndian(huge, 9); // 8 bytes follow
        Assert.Contains("past the end", Assert.Throws<SafeTensorsFormatException>(() => SafeTensors.Read(new MemoryStream(huge), "f")).Message);
        Assert.Contains("fewer than the 8-byte", Assert.Throws<SafeTensorsFormatException>(() => SafeTensors.Read(new MemoryStream(new byte[5]), "f")).Message);
    }

    [Fact]
    public void ReaderRejectsBoolBytesOtherThanZeroOrOne()
    {
        var image = Image("{\"m\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}", 3);
        image[^2] = 7;
        using var file = SafeTensors.Read(new MemoryStream(image), "m.st");
        var e = Assert.Throws<SafeTensorsFormatException>(() => file.LoadAll());
        Assert.Equal("m", e.TensorName);
        Assert.Equal(image.Length - 2, e.Offset);
    }

    [Fact]
    public void FileErrorsNameThePath()
    {
        var path = Path.Combine(dir, "trunc.safetensors");
        File.WriteAllBytes(path, Write(SafeTensorsFixtures.Table())[..^3]);
        var e = Assert.Throws<SafeTensorsFormatException>(() => SafeTensors.Read(path));
        Assert.Contains(path, e.Message);
        Assert.Equal(path, e.FilePath);
    }

    static byte[] Write(Dictionary<string, Tensor> t, Dictionary<string, string>? meta = null)
    {
        var ms = new MemoryStream();
        SafeTensors.Write(ms, t, meta);
        return ms.ToArray();
    }

    internal static byte[] Image(string header, int dataLength)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var image = new byte[8 + h.Length + dataLength];
        BinaryPrimitives.WriteUInt64LittleEndian(image, (ulong)h.Length);
        h.CopyTo(image, 8);
        return image;
    }
}
