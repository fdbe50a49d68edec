using System.Globalization;
using System.Text;
using ConvKit.Applications;
using ConvKit.Models;
using ConvKit.Saving;
using ConvKit.Tests.Cli;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

/// <summary>
/// Triton model repositories written by <see cref="TritonRepository"/> and <c>convkit export --triton-repo</c>: the
/// config.pbtxt parses as protobuf text format with only fields (and enum values) of Triton's ModelConfig, its tensors
/// agree with the model.onnx that ONNX Runtime loads, and ONNX Runtime computes what Predict computes. Triton itself
/// cannot run here (no server binary), so this is as far as the check goes.
/// </summary>
public class TritonRepositoryTests
{
    static DirectoryInfo Temp() => Directory.CreateTempSubdirectory("convkit-triton-");

    [Theory]
    [InlineData("lenet5", true)]
    [InlineData("resnet20", true)]
    [InlineData("lenet5", false)]
    public void RepositoryConfigMatchesTheOnnxFileAndOnnxRuntimeMatchesPredict(string zooName, bool channelsLast)
    {
        var dir = Temp();
        try
        {
            using var model = ModelRegistry.Create(zooName);
            var entry = TritonRepository.Write(model, Path.Combine(dir.FullName, "repo"), new TritonRepositoryOptions
            {
                Name = zooName,
                MaxBatchSize = 16,
                PreferredBatchSizes = [4, 8],
                MaxQueueDelayMicroseconds = 500,
                Onnx = new OnnxExportOptions { ChannelsLast = channelsLast },
            });
            Assert.Equal(Path.Combine(dir.FullName, "repo", zooName, "config.pbtxt"), entry.ConfigPath);
            Assert.Equal(Path.Combine(dir.FullName, "repo", zooName, "1", "model.onnx"), entry.OnnxPath);
            Assert.Equal(entry.Config, File.ReadAllText(entry.ConfigPath));
            // Nothing but the entry: no staging folder left in the repository.
            Assert.Equal([zooName], Directory.GetFileSystemEntries(Path.Combine(dir.FullName, "repo")).Select(Path.GetFileName));

            var config = TextProto.Parse(entry.Config);
            TextProto.CheckModelConfig(config);
            Assert.Equal(zooName, config.One<string>("name"));
            Assert.Equal("onnxruntime_onnx", config.One<string>("platform"));
            Assert.Equal(16L, config.One<long>("max_batch_size"));
            var batching = config.One<TextProto.Message>("dynamic_batching");
            Assert.Equal([4L, 8L], batching.All<long>("preferred_batch_size"));
            Assert.Equal(500L, batching.One<long>("max_queue_delay_microseconds"));
            var group = Assert.Single(config.All<TextProto.Message>("instance_group"));
            Assert.Equal("KIND_CPU", group.One<TextProto.Enum>("kind").Name);
            Assert.Equal(1L, group.One<long>("count"));

            using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
            using var session = new InferenceSession(entry.OnnxPath, options);
            void Same(IReadOnlyDictionary<string, NodeMetadata> meta, IReadOnlyList<TextProto.Message> tensors)
            {
                Assert.Equal(meta.Keys.ToArray(), tensors.Select(t => t.One<string>("name")).ToArray());
                foreach (var t in tensors)
                {
                    var m = meta[t.One<string>("name")];
                    Assert.Equal("TYPE_FP32", t.One<TextProto.Enum>("data_type").Name);
                    Assert.Equal(typeof(float), m.ElementType);
                    Assert.Equal(-1, m.Dimensions[0]); // the batch axis, symbolic in ONNX and Triton's own in the config
                    Assert.Equal(m.Dimensions.Skip(1).Select(d => (long)d).ToArray(), t.All<long>("dims"));
                }
            }
            Same(session.InputMetadata, config.All<TextProto.Message>("input"));
            Same(session.OutputMetadata, config.All<TextProto.Message>("output"));
            Assert.Equal(model.Inputs[0].Layer.Name, config.All<TextProto.Message>("input")[0].One<string>("name"));
            var s = model.Inputs[0].Shape;
            long[] imageDims = channelsLast ? [s[0], s[1], s[2]] : [s[2], s[0], s[1]];
            Assert.Equal(imageDims, config.All<TextProto.Message>("input")[0].All<long>("dims"));

            // ONNX Runtime on the repository's file equals Predict within 1e-5 (3 samples: not a multiple of anything).
            model.eval();
            using var gen = new TorchSharp.torch.Generator(7);
            using var x = rand([3, s[0], s[1], s[2]], generator: gen);
            using var expected = model.Predict(x);
            using var feed = channelsLast ? x.contiguous() : x.permute(0, 3, 1, 2).contiguous();
            using var results = session.Run([NamedOnnxValue.CreateFromTensor(session.InputMetadata.Keys.Single(),
                new DenseTensor<float>(feed.data<float>().ToArray(), feed.shape.Select(d => (int)d).ToArray()))]);
            var got = results[0].AsTensor<float>().ToArray();
            var want = expected.contiguous().data<float>().ToArray();
            Assert.Equal(want.Length, got.Length);
            for (int i = 0; i < want.Length; i++)
                Assert.True(Math.Abs(want[i] - got[i]) <= 1e-5, $"{zooName} [{i}]: Predict {want[i]} vs ONNX Runtime {got[i]}");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void ConfigTextIsStable()
    {
        // Golden text: what a Triton user reads, and a change to it is a change to what Triton is told.
        using var model = ModelRegistry.Create("lenet5");
        var dir = Temp();
        try
        {
            var entry = TritonRepository.Write(model, dir.FullName, new TritonRepositoryOptions { Name = "fashion_lenet5-v2.1", Version = 3 });
            var input = model.Inputs[0].Layer.Name;
            var output = model.Outputs[0].Layer.Name;
            Assert.Equal($$"""
                name: "fashion_lenet5-v2.1"
                platform: "onnxruntime_onnx"
                max_batch_size: 32
                input [
                  {
                    name: "{{input}}"
                    data_type: TYPE_FP32
                    dims: [ 28, 28, 1 ]
                  }
                ]
                output [
                  {
                    name: "{{output}}"
                    data_type: TYPE_FP32
                    dims: [ 10 ]
                  }
                ]
                dynamic_batching {
                  max_queue_delay_microseconds: 100
                }
                instance_group [
                  {
                    count: 1
                    kind: KIND_CPU
                  }
                ]

                """.ReplaceLineEndings("\n"), entry.Config);
            Assert.True(File.Exists(Path.Combine(dir.FullName, "fashion_lenet5-v2.1", "3", "model.onnx")));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void NewVersionsJoinAModelFolderAndAnExistingVersionNeedsOverwrite()
    {
        using var model = ModelRegistry.Create("lenet5");
        var dir = Temp();
        try
        {
            var o = new TritonRepositoryOptions { Name = "m" };
            TritonRepository.Write(model, dir.FullName, o);
            TritonRepository.Write(model, dir.FullName, o with { Version = 2, MaxBatchSize = 8 });
            Assert.Equal(["1", "2", "config.pbtxt"], Directory.GetFileSystemEntries(Path.Combine(dir.FullName, "m")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            Assert.Contains("max_batch_size: 8\n", File.ReadAllText(Path.Combine(dir.FullName, "m", "config.pbtxt")));

            var before = File.ReadAllBytes(Path.Combine(dir.FullName, "m", "1", "model.onnx"));
            var e = Assert.Throws<ConvKitException>(() => TritonRepository.Write(model, dir.FullName, o));
            Assert.Contains(Path.Combine(dir.FullName, "m", "1"), e.Message);
            Assert.Contains("already holds a model version", e.Message);
            Assert.Equal(before, File.ReadAllBytes(Path.Combine(dir.FullName, "m", "1", "model.onnx")));

            using var other = ModelRegistry.Create("lenet5", new ModelOptions { Classes = 3 });
            TritonRepository.Write(other, dir.FullName, o with { Overwrite = true });
            Assert.NotEqual(before, File.ReadAllBytes(Path.Combine(dir.FullName, "m", "1", "model.onnx")));
            Assert.Contains("dims: [ 3 ]", File.ReadAllText(Path.Combine(dir.FullName, "m", "config.pbtxt")));
            Assert.Empty(Directory.GetFileSystemEntries(dir.FullName, AtomicFile.TempPrefix + "*"));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void AFailedExportLeavesTheRepositoryAsItWas()
    {
        // A model without an ONNX lowering fails in the middle of the write (after the staging folder exists).
        var dir = Temp();
        try
        {
            using var model = ModelRegistry.Create("lenet5");
            TritonRepository.Write(model, dir.FullName, new TritonRepositoryOptions { Name = "m" });
            var snapshot = Snapshot(dir.FullName);
            var input = new Input((4, 4, 1));
            using var bad = new Model(input, new Unexportable().Apply(input));
            var e = Assert.Throws<ConvKitException>(() => TritonRepository.Write(bad, dir.FullName, new TritonRepositoryOptions { Name = "m", Version = 2 }));
            Assert.Contains("has no ONNX lowering", e.Message);
            Assert.Equal(snapshot, Snapshot(dir.FullName));
            Assert.Throws<ConvKitException>(() => TritonRepository.Write(bad, dir.FullName, new TritonRepositoryOptions { Name = "fresh" }));
            Assert.Equal(snapshot, Snapshot(dir.FullName));
            // A repository folder the write created is removed again.
            var created = Path.Combine(dir.FullName, "newrepo");
            Assert.Throws<ConvKitException>(() => TritonRepository.Write(bad, created, new TritonRepositoryOptions { Name = "m" }));
            Assert.False(Directory.Exists(created));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    sealed class Unexportable() : ConvKit.Layers.Layer(null)
    {
        public override Shape ComputeOutputShape(Shape inputShape) => inputShape;

        public override TorchSharp.torch.Tensor Call(TorchSharp.torch.Tensor inputs) => inputs.alias();
    }

    static string[] Snapshot(string dir) => Directory.GetFileSystemEntries(dir, "*", SearchOption.AllDirectories)
        .Select(p => Path.GetRelativePath(dir, p) + (File.Exists(p) ? ":" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(p))) : "/"))
        .Order(StringComparer.Ordinal).ToArray();

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("", "it is empty")]
    [InlineData("a/b", "'/' (a path separator)")]
    [InlineData("..", "is not a folder name")]
    [InlineData(".hidden", "starts with '.'")]
    [InlineData("with space", "a space")]
    [InlineData("tab\tname", "control character U+0009")]
    [InlineData("é", "'é'")]
    public void BadModelNamesAreRefusedBeforeAnythingIsWritten(string name, string why)
    {
        using var model = ModelRegistry.Create("lenet5");
        var dir = Temp();
        try
        {
            var e = Assert.Throws<InvalidOptionException>(() => TritonRepository.Write(model, dir.FullName, new TritonRepositoryOptions { Name = name }));
            Assert.Contains(why, e.Message);
            Assert.Contains("Triton model name", e.Message);
            Assert.Empty(Directory.GetFileSystemEntries(dir.FullName));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void BadOptionsAreRefusedBeforeAnythingIsWritten()
    {
        using var model = ModelRegistry.Create("lenet5");
        var dir = Temp();
        try
        {
            (TritonRepositoryOptions Options, string Message)[] rows =
            [
                (new() { Name = "m", Version = 0 }, "version must be a positive integer; received 0"),
                (new() { Name = "m", MaxBatchSize = 0 }, "max_batch_size must be at least 1; received 0"),
                (new() { Name = "m", MaxQueueDelayMicroseconds = -1 }, "max_queue_delay_microseconds must be at least 0; received -1"),
                (new() { Name = "m", InstanceCount = 0 }, "instance count must be at least 1; received 0"),
                (new() { Name = "m", MaxBatchSize = 8, PreferredBatchSizes = [4, 16] }, "preferred_batch_size 16 must be 1 to max_batch_size (8)"),
            ];
            foreach (var (options, message) in rows)
                Assert.Contains(message, Assert.Throws<InvalidOptionException>(() => TritonRepository.Write(model, dir.FullName, options)).Message);
            var file = Path.Combine(dir.FullName, "file");
            File.WriteAllText(file, "x");
            Assert.Contains("is a file, not a folder", Assert.Throws<ConvKitException>(() => TritonRepository.Write(model, file, new() { Name = "m" })).Message);
            Assert.Contains("does not exist", Assert.Throws<ConvKitException>(() => TritonRepository.Write(model, Path.Combine(dir.FullName, "no", "repo"), new() { Name = "m" })).Message);
            File.WriteAllText(Path.Combine(dir.FullName, "taken"), "x");
            Assert.Contains("is a file; the Triton model 'taken' needs a folder", Assert.Throws<ConvKitException>(() => TritonRepository.Write(model, dir.FullName, new() { Name = "taken" })).Message);
            Assert.Equal(["file", "taken"], Directory.GetFileSystemEntries(dir.FullName).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void ExportCommandWritesARepository()
    {
        var dir = Temp();
        try
        {
            var repo = Path.Combine(dir.FullName, "models");
            var (code, output, error) = CliRunner.Run("export", "lenet5", "--triton-repo", repo, "--triton-name", "digits", "--triton-version", "4",
                "--max-batch", "64", "--max-queue-delay-us", "2000", "--preferred-batch", "16,32", "--triton-instances", "2", "--input-shape", "16,16,1");
            Assert.Equal("", error);
            Assert.Equal(0, code);
            Assert.Contains($"wrote Triton model 'digits' version 4 in {repo}", output);
            var config = TextProto.Parse(File.ReadAllText(Path.Combine(repo, "digits", "config.pbtxt")));
            TextProto.CheckModelConfig(config);
            Assert.Equal(64L, config.One<long>("max_batch_size"));
            Assert.Equal(2000L, config.One<TextProto.Message>("dynamic_batching").One<long>("max_queue_delay_microseconds"));
            Assert.Equal([16L, 32L], config.One<TextProto.Message>("dynamic_batching").All<long>("preferred_batch_size"));
            Assert.Equal(2L, config.One<TextProto.Message>("instance_group").One<long>("count"));
            Assert.Equal([16L, 16L, 1L], config.One<TextProto.Message>("input").All<long>("dims"));
            using var session = new InferenceSession(Path.Combine(repo, "digits", "4", "model.onnx"));
            Assert.Equal([-1, 16, 16, 1], session.InputMetadata.Values.Single().Dimensions);

            // Default name: the model's; --channels-first gives CHW dims.
            (code, output, error) = CliRunner.Run("export", "lenet5", "--triton-repo", repo, "--channels-first");
            Assert.Equal("", error);
            Assert.Equal(0, code);
            using var model = ModelRegistry.Create("lenet5");
            var chw = TextProto.Parse(File.ReadAllText(Path.Combine(repo, model.Name, "config.pbtxt")));
            Assert.Equal([1L, 28L, 28L], chw.One<TextProto.Message>("input").All<long>("dims"));

            // Again without --overwrite: refused by option name, the version untouched; with it: replaced.
            (code, _, error) = CliRunner.Run("export", "lenet5", "--triton-repo", repo, "--triton-name", "digits", "--triton-version", "4");
            Assert.Equal(1, code);
            Assert.Contains("already holds a model version; choose another --triton-version or pass --overwrite", error);
            (code, _, error) = CliRunner.Run("export", "lenet5", "--triton-repo", repo, "--triton-name", "digits", "--triton-version", "4", "--overwrite");
            Assert.Equal("", error);
            Assert.Equal(0, code);
            Assert.Contains("dims: [ 28, 28, 1 ]", File.ReadAllText(Path.Combine(repo, "digits", "config.pbtxt")));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("Option '--onnx' is required (or '--triton-repo DIR'", "export", "lenet5")]
    [InlineData("give either --onnx FILE or --triton-repo DIR, not both", "export", "lenet5", "--onnx", "{dir}/x.onnx", "--triton-repo", "{dir}/repo")]
    [InlineData("--max-batch applies only to --triton-repo exports", "export", "lenet5", "--onnx", "{dir}/x.onnx", "--max-batch", "8")]
    [InlineData("--triton-name applies only to --triton-repo exports", "export", "lenet5", "--onnx", "{dir}/x.onnx", "--triton-name", "a")]
    [InlineData("--triton-repo must name a folder; received an empty value", "export", "lenet5", "--triton-repo", " ")]
    [InlineData("--triton-repo '{dir}/file' is a file; name a folder", "export", "lenet5", "--triton-repo", "{dir}/file")]
    [InlineData("--triton-repo '/nonexistent/a/repo': the folder '/nonexistent/a' does not exist", "export", "lenet5", "--triton-repo", "/nonexistent/a/repo")]
    [InlineData("--triton-name 'a/b' is not a valid Triton model name: it contains '/' (a path separator)", "export", "lenet5", "--triton-repo", "{dir}/repo", "--triton-name", "a/b")]
    [InlineData("--triton-name '..' is not a valid Triton model name", "export", "lenet5", "--triton-repo", "{dir}/repo", "--triton-name", "..")]
    [InlineData("--triton-version must be a positive integer; received 0", "export", "lenet5", "--triton-repo", "{dir}/repo", "--triton-version", "0")]
    [InlineData("--triton-version must be a positive integer; received -2", "export", "lenet5", "--triton-repo", "{dir}/repo", "--triton-version", "-2")]
    [InlineData("--max-batch must be at least 1; received 0", "export", "lenet5", "--triton-repo", "{dir}/repo", "--max-batch", "0")]
    [InlineData("--max-queue-delay-us must be at least 0; received -5", "export", "lenet5", "--triton-repo", "{dir}/repo", "--max-queue-delay-us", "-5")]
    [InlineData("--triton-instances must be at least 1; received 0", "export", "lenet5", "--triton-repo", "{dir}/repo", "--triton-instances", "0")]
    [InlineData("--preferred-batch must be comma-separated integers from 1 to --max-batch (8); received '4,16'", "export", "lenet5", "--triton-repo", "{dir}/repo", "--max-batch", "8", "--preferred-batch", "4,16")]
    [InlineData("--preferred-batch must be comma-separated integers from 1 to --max-batch (32); received 'x'", "export", "lenet5", "--triton-repo", "{dir}/repo", "--preferred-batch", "x")]
    [InlineData("Cannot parse argument 'abc' for option '--max-batch'", "export", "lenet5", "--triton-repo", "{dir}/repo", "--max-batch", "abc")]
    [InlineData("unknown model 'nosuchnet'", "export", "nosuchnet", "--triton-repo", "{dir}/repo")]
    public void BadExportOptionsGiveOneNamedErrorAndWriteNothing(string expected, params string[] args)
    {
        var dir = Temp();
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, "file"), "x");
            var (code, output, error) = CliRunner.Run(args.Select(a => a.Replace("{dir}", dir.FullName, StringComparison.Ordinal)).ToArray());
            Assert.NotEqual(0, code);
            Assert.Contains(expected.Replace("{dir}", dir.FullName, StringComparison.Ordinal), error);
            Assert.DoesNotContain("   at ", error + output);
            Assert.DoesNotContain("Exception", error);
            if (error.StartsWith("error: ", StringComparison.Ordinal)) Assert.Single(error.TrimEnd().Split('\n'));
            Assert.Equal(["file"], Directory.GetFileSystemEntries(dir.FullName).Select(Path.GetFileName));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}

/// <summary>
/// A strict reader of protobuf text format (the subset config.pbtxt uses: scalars, strings, enum identifiers, nested
/// messages, repeated fields in brackets) and a check against the fields of Triton's ModelConfig
/// (model_config.proto) that a ConvKit export may write.
/// </summary>
static class TextProto
{
    public sealed record Enum(string Name);

    public sealed class Message
    {
        public List<(string Field, object Value)> Fields { get; } = [];

        public IReadOnlyList<T> All<T>(string field) => Fields.Where(f => f.Field == field).Select(f => Assert.IsType<T>(f.Value)).ToArray();

        public T One<T>(string field) => Assert.Single(All<T>(field));
    }

    public static Message Parse(string text)
    {
        var tokens = Tokenize(text);
        int pos = 0;
        var m = ParseFields(tokens, ref pos, end: null);
        Assert.Equal(tokens.Count, pos);
        return m;
    }

    static Message ParseFields(List<string> t, ref int pos, string? end)
    {
        var m = new Message();
        while (pos < t.Count && t[pos] != end)
        {
            var field = t[pos++];
            Assert.Matches("^[a-z_][a-z0-9_]*$", field);
            bool colon = t[pos] == ":";
            if (colon) pos++;
            if (t[pos] == "[")
            {
                pos++;
                while (t[pos] != "]")
                {
                    m.Fields.Add((field, Value(t, ref pos, colon)));
                    if (t[pos] == ",") pos++;
                    else Assert.Equal("]", t[pos]);
                }
                pos++;
            }
            else m.Fields.Add((field, Value(t, ref pos, colon)));
        }
        if (end is not null)
        {
            Assert.Equal(end, t[pos]);
            pos++;
        }
        return m;
    }

    static object Value(List<string> t, ref int pos, bool colon)
    {
        var tok = t[pos++];
        if (tok == "{") return ParseFields(t, ref pos, "}");
        Assert.True(colon, $"scalar value '{tok}' needs a ':' before it");
        if (tok.StartsWith('"')) return tok[1..^1];
        if (long.TryParse(tok, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l)) return l;
        Assert.Matches("^[A-Z][A-Z0-9_]*$", tok);
        return new Enum(tok);
    }

    static List<string> Tokenize(string s)
    {
        var list = new List<string>();
        for (int i = 0; i < s.Length;)
        {
            char c = s[i];
            if (char.IsWhiteSpace(c)) { i++; continue; }
            if (c == '#') { while (i < s.Length && s[i] != '\n') i++; continue; }
            if ("{}[]:,".Contains(c)) { list.Add(c.ToString()); i++; continue; }
            if (c == '"')
            {
                var b = new StringBuilder("\"");
                for (i++; s[i] != '"'; i++)
                {
                    Assert.NotEqual('\n', s[i]);
                    if (s[i] == '\\') b.Append(s[++i] switch { 'n' => '\n', '"' => '"', '\\' => '\\', var x => throw new Xunit.Sdk.XunitException($"escape \\{x}") });
                    else b.Append(s[i]);
                }
                i++;
                list.Add(b.Append('"').ToString());
                continue;
            }
            int start = i;
            while (i < s.Length && (char.IsAsciiLetterOrDigit(s[i]) || s[i] is '_' or '-' or '.')) i++;
            Assert.True(i > start, $"unexpected '{c}' at {start}");
            list.Add(s[start..i]);
        }
        return list;
    }

    // Field names and types from Triton's model_config.proto (ModelConfig, ModelInput/ModelOutput,
    // ModelDynamicBatching, ModelInstanceGroup), limited to what an export writes.
    static readonly Dictionary<string, Type> ConfigFields = new()
    {
        ["name"] = typeof(string), ["platform"] = typeof(string), ["backend"] = typeof(string), ["max_batch_size"] = typeof(long),
        ["input"] = typeof(Message), ["output"] = typeof(Message), ["dynamic_batching"] = typeof(Message), ["instance_group"] = typeof(Message),
    };
    static readonly Dictionary<string, Type> TensorFields = new() { ["name"] = typeof(string), ["data_type"] = typeof(Enum), ["dims"] = typeof(long) };
    static readonly Dictionary<string, Type> BatchingFields = new() { ["preferred_batch_size"] = typeof(long), ["max_queue_delay_microseconds"] = typeof(long) };
    static readonly Dictionary<string, Type> GroupFields = new() { ["name"] = typeof(string), ["kind"] = typeof(Enum), ["count"] = typeof(long) };
    static readonly string[] Singular = ["name", "platform", "backend", "max_batch_size", "dynamic_batching", "data_type", "max_queue_delay_microseconds", "kind", "count"];

    public static void CheckModelConfig(Message config)
    {
        Check(config, ConfigFields);
        Assert.NotEmpty(config.All<Message>("input"));
        Assert.NotEmpty(config.All<Message>("output"));
        foreach (var t in config.All<Message>("input").Concat(config.All<Message>("output")))
        {
            Check(t, TensorFields);
            Assert.Contains(t.One<Enum>("data_type").Name, new[] { "TYPE_FP32", "TYPE_INT64" });
            Assert.All(t.All<long>("dims"), d => Assert.True(d == -1 || d > 0));
        }
        foreach (var b in config.All<Message>("dynamic_batching")) Check(b, BatchingFields);
        foreach (var g in config.All<Message>("instance_group"))
        {
            Check(g, GroupFields);
            Assert.Contains(g.One<Enum>("kind").Name, new[] { "KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL" });
        }
    }

    static void Check(Message m, Dictionary<string, Type> schema)
    {
        foreach (var (field, value) in m.Fields)
        {
            Assert.True(schema.TryGetValue(field, out var type), $"'{field}' is not a field here");
            Assert.IsType(type, value);
        }
        foreach (var s in Singular) Assert.True(m.Fields.Count(f => f.Field == s) <= 1, $"'{s}' is not repeated");
    }
}
