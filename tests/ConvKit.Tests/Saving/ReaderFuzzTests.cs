using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using ConvKit.Saving;
using Xunit.Abstractions;

namespace ConvKit.Tests.Saving;

/// <summary>
/// Feeds mutated files to the readers: every case must end in a valid load or a ConvKit exception, never another
/// exception type, a hang, or a managed allocation out of proportion to the input.
/// </summary>
public partial class ReaderFuzzTests(ITestOutputHelper output)
{
    const int SafeTensorsCases = 12_000;
    const int H5Cases = 10_000;
    static readonly TimeSpan CaseLimit = TimeSpan.FromSeconds(5);

    // ConvKit's own reader: parsing copies the small input a few times, never allocates in proportion to the sizes
    // a header claims (tensor data is bounded by the file length, and these files are under 1 KiB).
    static long SafeTensorsAllocationBound(byte[] image) => 256 * 1024 + 64L * image.Length;

    // PureHDF 2.2 sizes buffers from counts in the file before checking them (up to 2 GiB for one corrupted length);
    // KerasH5 checks the metadata against the file first (Hdf5Preflight), so a case allocates in proportion to the
    // file, whatever its header claims.
    static long H5AllocationBound(byte[] image) => 64L * 1024 * 1024 + image.Length;

    static void Warm(Action a)
    {
        // First calls pay one-time costs (JIT, TorchSharp statics, exception message resources); run them on this
        // thread once so the per-case measurements see only what a case itself allocates.
        try { a(); } catch (ConvKitException) { }
    }

    [Fact]
    [Trait("Catalogue", "Hostile")] // existing before issue 12
    public void MutatedSafeTensorsFilesEndInAValidLoadOrASafeTensorsFormatException()
    {
        const int seed = 20261123;
        output.WriteLine($"seed {seed}, {SafeTensorsCases} cases");
        var rng = new Random(seed);
        var bases = new[] { "convkit_written.safetensors", "python_reference.safetensors" }
            .Select(f => File.ReadAllBytes(Path.Combine(SafeTensorsFixtures.Dir, f))).ToArray();
        var outcomes = new Dictionary<string, int>();
        long worst = 0;
        Warm(() => SafeTensors.Read(new MemoryStream(bases[0][..40]), "warm-up"));
        foreach (var b in bases)
            Warm(() =>
            {
                using var f = SafeTensors.Read(new MemoryStream(b), "warm-up");
                foreach (var t in f.LoadAll().Values) t.Dispose();
            });
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < SafeTensorsCases; i++)
        {
            var src = bases[rng.Next(bases.Length)];
            var (kind, image) = MutateSafeTensors(src, rng);
            var outcome = Run($"safetensors case {i} ({kind})", image, () =>
            {
                using var f = SafeTensors.Read(new MemoryStream(image, writable: false), "fuzz");
                foreach (var t in f.LoadAll().Values) t.Dispose();
            }, typeof(SafeTensorsFormatException), SafeTensorsAllocationBound(image), ref worst);
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
        }
        output.WriteLine($"{sw.Elapsed.TotalSeconds:F1} s: " + string.Join(", ", outcomes.Select(p => $"{p.Key} {p.Value}")) +
            $"; most managed bytes allocated by one case: {worst}");
        Assert.True(outcomes.Keys.Count(k => k != "loaded") > 0 && outcomes.GetValueOrDefault("loaded") > 0,
            "the mutations should produce both valid and rejected files");
    }

    [Fact]
    [Trait("Catalogue", "Hostile")] // existing before issue 12
    public void MutatedKerasH5FilesEndInAValidLoadOrAKerasH5FormatException()
    {
        const int seed = 4242;
        output.WriteLine($"seed {seed}, {H5Cases} cases");
        var rng = new Random(seed);
        // h5py's default layout in three Keras variants: one layer_names attribute, split attributes, /model_weights.
        var bases = new[] { "keras_weights.h5", "keras_split.h5", "keras_model.h5" }
            .Select(f => File.ReadAllBytes(Path.Combine(SafeTensorsFixtures.Dir, f))).ToArray();
        var outcomes = new Dictionary<string, int>();
        long worst = 0;
        string worstCase = "";
        Warm(() => KerasH5.Read(new MemoryStream(bases[0][..100]), "warm-up"));
        foreach (var b in bases) Warm(() => KerasH5.Read(new MemoryStream(b), "warm-up"));
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < H5Cases; i++)
        {
            var image = (byte[])bases[rng.Next(bases.Length)].Clone();
            string kind;
            switch (rng.Next(5))
            {
                case 0:
                    kind = "truncate";
                    image = image[..rng.Next(image.Length)];
                    break;
                case 1:
                    kind = "flip metadata"; // HDF5 superblock, object headers and B-trees sit in the first few KiB
                    for (int k = rng.Next(1, 5); k > 0; k--) image[rng.Next(Math.Min(4096, image.Length))] ^= (byte)(1 << rng.Next(8));
                    break;
                case 2:
                    kind = "random bytes";
                    for (int k = rng.Next(1, 17); k > 0; k--) image[rng.Next(image.Length)] = (byte)rng.Next(256);
                    break;
                case 3:
                    kind = "0xff run"; // large lengths and undefined addresses
                    int at = rng.Next(image.Length - 8);
                    image.AsSpan(at, rng.Next(1, 9)).Fill(0xff);
                    break;
                default:
                {
                    kind = "size field"; // a 1-8 byte integer in the metadata set to a boundary value
                    int width = 1 << rng.Next(4);
                    int pos = rng.Next(Math.Min(4096, image.Length) - width);
                    ulong value = rng.Next(4) == 0 ? (ulong)rng.NextInt64() : SizeValues(image.Length)[rng.Next(SizeValues(image.Length).Length)];
                    for (int k = 0; k < width; k++) image[pos + k] = (byte)(value >> (8 * k));
                    break;
                }
            }
            long before = worst;
            var outcome = Run($"h5 case {i} ({kind})", image,
                () => KerasH5.Read(new MemoryStream(image, writable: false), "fuzz.h5"), typeof(KerasH5FormatException),
                H5AllocationBound(image), ref worst);
            if (worst > before) worstCase = $"case {i} ({kind}, {outcome}, {image.Length}-byte file)";
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
        }
        output.WriteLine($"{sw.Elapsed.TotalSeconds:F1} s: " + string.Join(", ", outcomes.Select(p => $"{p.Key} {p.Value}")) +
            $"; most managed bytes allocated by one case: {worst}, {worstCase}");
        Assert.True(outcomes.GetValueOrDefault("rejected") > 0 && outcomes.GetValueOrDefault("loaded") > 0,
            "the mutations should produce both valid and rejected files");
    }

    static ulong[] SizeValues(int fileLength) =>
        [0, 1, 7, 8, 255, 0xFFFF, 0x10000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 1UL << 40, ulong.MaxValue, ulong.MaxValue - 1,
         (ulong)fileLength - 1, (ulong)fileLength, (ulong)fileLength + 1];

    /// <summary>Runs one case on a worker so a hang fails the test instead of stalling it; checks the managed
    /// bytes allocated by the reader on that thread against <paramref name="maxAllocation"/>.</summary>
    static string Run(string label, byte[] image, Action read, Type allowed, long maxAllocation, ref long worst)
    {
        long allocated = 0;
        var task = Task.Run(() =>
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                read();
                return "loaded";
            }
            finally
            {
                allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            }
        });
        try
        {
            if (!task.Wait(CaseLimit)) Assert.Fail($"{label}: no result after {CaseLimit.TotalSeconds} s (hang?)");
        }
        catch (AggregateException e) when (e.InnerException is { } inner)
        {
            if (inner.GetType() != allowed)
                Assert.Fail($"{label}: {inner.GetType().FullName} escaped: {inner}\ninput (base64): {Convert.ToBase64String(image)}");
            worst = Math.Max(worst, allocated);
            Assert.True(allocated <= maxAllocation, $"{label}: allocated {allocated} bytes for a {image.Length}-byte input: {inner}");
            return "rejected";
        }
        worst = Math.Max(worst, allocated);
        Assert.True(allocated <= maxAllocation, $"{label}: allocated {allocated} bytes for a {image.Length}-byte input");
        return "loaded";
    }

    static (string Kind, byte[] Image) MutateSafeTensors(byte[] src, Random rng)
    {
        int n = (int)BinaryPrimitives.ReadUInt64LittleEndian(src);
        switch (rng.Next(6))
        {
            case 0:
            {
                var image = (byte[])src.Clone();
                for (int k = rng.Next(1, 9); k > 0; k--) image[rng.Next(image.Length)] ^= (byte)(1 << rng.Next(8));
                return ("bit flips", image);
            }
            case 1:
                return ("truncate", src[..rng.Next(src.Length)]);
            case 2:
            {
                var image = (byte[])src.Clone();
                ulong len = rng.Next(5) switch
                {
                    0 => (ulong)rng.NextInt64(),
                    1 => ulong.MaxValue - (ulong)rng.Next(16),
                    2 => (ulong)(n + rng.Next(-16, 17)),
                    3 => 100_000_000UL + (ulong)rng.Next(-1, 2),
                    _ => (ulong)rng.Next(src.Length + 64),
                };
                BinaryPrimitives.WriteUInt64LittleEndian(image, len);
                return ("header length", image);
            }
            default:
            {
                var json = Encoding.UTF8.GetString(src, 8, n);
                var data = src[(8 + n)..];
                json = MutateJson(json, rng, out var kind);
                if (rng.Next(4) == 0) data = data[..rng.Next(data.Length + 1)];
                else if (rng.Next(4) == 0) data = [.. data, .. new byte[rng.Next(1, 9)]];
                var h = Encoding.UTF8.GetBytes(json);
                var image = new byte[8 + h.Length + data.Length];
                BinaryPrimitives.WriteUInt64LittleEndian(image, (ulong)h.Length);
                h.CopyTo(image, 8);
                data.CopyTo(image, 8 + h.Length);
                return ("json " + kind, image);
            }
        }
    }

    static readonly string[] NumberReplacements =
        ["0", "1", "-1", "7", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "18446744073709551615",
         "4294967296", "1e3", "2.5", "1e400", "null", "\"3\"", "[]", "{}", "true"];
    static readonly string[] DTypes = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "f32", "F8_E4M3", "", "U64", "C64"];

    static string MutateJson(string json, Random rng, out string kind)
    {
        var numbers = Number().Matches(json);
        var strings = Str().Matches(json);
        switch (rng.Next(7))
        {
            case 0 when numbers.Count > 0:
            {
                kind = "number";
                var m = numbers[rng.Next(numbers.Count)];
                var r = rng.Next(3) == 0 ? (long.Parse(m.Value) + rng.Next(-9, 10)).ToString() : NumberReplacements[rng.Next(NumberReplacements.Length)];
                return json[..m.Index] + r + json[(m.Index + m.Length)..];
            }
            case 1:
            {
                kind = "dtype";
                var dt = Regex.Matches(json, "\"dtype\":\\s*\"([^\"]*)\"");
                var m = dt[rng.Next(dt.Count)].Groups[1];
                return json[..m.Index] + DTypes[rng.Next(DTypes.Length)] + json[(m.Index + m.Length)..];
            }
            case 2:
            {
                kind = "shape";
                var sh = Regex.Matches(json, "\"shape\":\\s*\\[([^\\]]*)\\]");
                var m = sh[rng.Next(sh.Count)].Groups[1];
                var dims = Enumerable.Range(0, rng.Next(0, 5)).Select(_ => rng.Next(4) == 0 ? NumberReplacements[rng.Next(NumberReplacements.Length)] : rng.Next(0, 9).ToString());
                return json[..m.Index] + string.Join(",", dims) + json[(m.Index + m.Length)..];
            }
            case 3 when strings.Count > 1:
            {
                kind = "duplicate key";
                var a = strings[rng.Next(strings.Count)];
                var b = strings[rng.Next(strings.Count)];
                return json[..b.Index] + a.Value + json[(b.Index + b.Length)..];
            }
            case 4:
            {
                kind = "delete span";
                int at = rng.Next(json.Length);
                return json.Remove(at, rng.Next(1, Math.Min(12, json.Length - at) + 1));
            }
            case 5:
            {
                kind = "insert char";
                const string chars = "{}[]\",:0-9 \\\u0000é";
                return json.Insert(rng.Next(json.Length + 1), chars[rng.Next(chars.Length)].ToString());
            }
            default:
            {
                kind = "swap offsets";
                var offs = Regex.Matches(json, "\"data_offsets\":\\s*\\[(\\d+),\\s*(\\d+)\\]");
                var m = offs[rng.Next(offs.Count)];
                var o = offs[rng.Next(offs.Count)];
                return json[..m.Index] + o.Value + json[(m.Index + m.Length)..];
            }
        }
    }

    [GeneratedRegex(@"(?<![\w.])\d+(?![\w.])")]
    private static partial Regex Number();

    [GeneratedRegex("\"[^\"]*\"")]
    private static partial Regex Str();
}
