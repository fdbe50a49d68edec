using System.Buffers.Binary;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using ConvKit.Applications;
using ConvKit.Models;
using ConvKit.Serving;
using ConvKit.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Serving;

/// <summary>
/// A real <see cref="ConvKitServer"/> on a loopback port chosen by the OS, with a real HttpClient, and the reference
/// answers: each model's own single-threaded <see cref="Model.Predict"/>.
/// </summary>
sealed class ServingHarness : IAsyncDisposable
{
    readonly Dictionary<string, Model> references = [];

    ServingHarness(ConvKitServer server, Dictionary<string, Model> references)
    {
        Server = server;
        this.references = references;
        Client = new HttpClient { BaseAddress = new Uri(server.Urls[0]), Timeout = TimeSpan.FromSeconds(60) };
    }

    public ConvKitServer Server { get; }

    public HttpClient Client { get; }

    public string BaseUrl => Server.Urls[0];

    /// <summary>Model names: "lenet5" (28x28x1, softmax) and "resnet20" (32x32x3, batch normalization with moving
    /// statistics away from 0/1).</summary>
    public static Model CreateModel(string zooName, int seed)
    {
        var model = zooName == "resnet20"
            ? ModelRegistry.Create("resnet20", new ModelOptions { InputShape = (32, 32, 3) })
            : ModelRegistry.Create(zooName, new ModelOptions());
        ConcurrentInferenceTests.Randomize(model, seed);
        return model;
    }

    /// <summary>Starts a server for <paramref name="zooNames"/> (served under those names) and waits for warm-up.</summary>
    public static Task<ServingHarness> StartAsync(ServingOptions? options = null, params string[] zooNames) =>
        StartAsync(options, batchInvariant: true, zooNames);

    /// <summary>Starts a server for <paramref name="zooNames"/>, batch-invariant or not (<c>--no-batch-invariance</c>).</summary>
    public static async Task<ServingHarness> StartAsync(ServingOptions? options, bool batchInvariant, params string[] zooNames)
    {
        options = (options ?? new ServingOptions()) with { Port = 0 };
        var served = new List<ServedModel>();
        var refs = new Dictionary<string, Model>();
        foreach (var name in zooNames.Length == 0 ? ["lenet5"] : zooNames)
        {
            var model = CreateModel(name, 7);
            refs[name] = model;
            served.Add(new ServedModel(name, model, Preprocessing.None, ownsModel: true, batchInvariant: batchInvariant));
        }
        var server = ConvKitServer.Create(served, options);
        await server.StartAsync();
        await server.WarmUp;
        return new ServingHarness(server, refs);
    }

    public Model Reference(string name) => references[name];

    /// <summary>Single-threaded Predict on one input (N, H, W, C).</summary>
    public float[] Expected(string model, float[] input, int samples)
    {
        var m = references[model];
        lock (m)
        {
            using var x = tensor(input, [samples, .. m.ModelInputShape.Dims.ToArray().Select(d => (long)d)]);
            using var y = m.Predict(x);
            return y.contiguous().data<float>().ToArray();
        }
    }

    /// <summary>Single-threaded Predict on each sample of <paramref name="input"/> alone, concatenated: what a
    /// batch-invariant server answers, whatever batch the samples ran in.</summary>
    public float[] ExpectedAlone(string model, float[] input, int samples)
    {
        int size = input.Length / samples;
        return Enumerable.Range(0, samples).SelectMany(i => Expected(model, input[(i * size)..((i + 1) * size)], 1)).ToArray();
    }

    public static float[] RandomInput(Model model, int samples, int seed)
    {
        var rng = new Random(seed);
        var s = model.ModelInputShape;
        var data = new float[samples * s[0] * s[1] * s[2]];
        for (int i = 0; i < data.Length; i++) data[i] = (float)(rng.NextDouble() * 2 - 1);
        return data;
    }

    public static string JsonRequest(string model, Model m, float[] input, int samples, bool binaryOutput = false)
    {
        var s = m.ModelInputShape;
        var request = new Dictionary<string, object>
        {
            ["id"] = "req-1",
            ["inputs"] = new[] { new Dictionary<string, object> { ["name"] = "input", ["shape"] = new[] { samples, s[0], s[1], s[2] }, ["datatype"] = "FP32", ["data"] = input } },
        };
        if (binaryOutput) request["outputs"] = new[] { new Dictionary<string, object> { ["name"] = "output", ["parameters"] = new Dictionary<string, object> { ["binary_data"] = true } } };
        return JsonSerializer.Serialize(request);
    }

    /// <summary>A binary-extension request: JSON header then the FP32 bytes; outputs binary too.</summary>
    public static HttpContent BinaryRequest(Model m, float[] input, int samples)
    {
        var s = m.ModelInputShape;
        var header = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new
        {
            inputs = new[] { new { name = "input", shape = new[] { samples, s[0], s[1], s[2] }, datatype = "FP32", parameters = new { binary_data_size = input.Length * 4 } } },
            outputs = new[] { new { name = "output", parameters = new { binary_data = true } } },
        }));
        var body = new byte[header.Length + input.Length * 4];
        header.CopyTo(body, 0);
        for (int i = 0; i < input.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(body.AsSpan(header.Length + i * 4), input[i]);
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add("Inference-Header-Content-Length", header.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return content;
    }

    /// <summary>The output floats of an infer answer, JSON or binary.</summary>
    public static async Task<float[]> ReadOutput(HttpResponseMessage response)
    {
        var body = await response.Content.ReadAsByteArrayAsync();
        Assert.True(response.IsSuccessStatusCode, $"{(int)response.StatusCode}: {Encoding.UTF8.GetString(body)}");
        if (response.Headers.TryGetValues("Inference-Header-Content-Length", out var values))
        {
            int length = int.Parse(values.Single(), System.Globalization.CultureInfo.InvariantCulture);
            using var doc = JsonDocument.Parse(body.AsMemory(0, length));
            long size = doc.RootElement.GetProperty("outputs")[0].GetProperty("parameters").GetProperty("binary_data_size").GetInt64();
            Assert.Equal(body.Length - length, size);
            var result = new float[size / 4];
            for (int i = 0; i < result.Length; i++) result[i] = BinaryPrimitives.ReadSingleLittleEndian(body.AsSpan(length + i * 4));
            return result;
        }
        using var json = JsonDocument.Parse(body);
        return json.RootElement.GetProperty("outputs")[0].GetProperty("data").EnumerateArray().Select(e => e.GetSingle()).ToArray();
    }

    /// <summary>Bit-for-bit equality of two float arrays.</summary>
    public static void AssertBitIdentical(float[] expected, float[] actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} values, expected {expected.Length}");
        for (int i = 0; i < expected.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i} is {actual[i]:R}, single-threaded Predict gives {expected[i]:R}");
    }

    /// <summary>A problem+json answer: its status and detail.</summary>
    public static async Task<string> ReadProblem(HttpResponseMessage response, int status)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == status, $"expected {status}, got {(int)response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        using var doc = JsonDocument.Parse(text);
        Assert.Equal(status, doc.RootElement.GetProperty("status").GetInt32());
        var detail = doc.RootElement.GetProperty("detail").GetString()!;
        Assert.DoesNotContain("   at ", detail);
        Assert.DoesNotContain("Exception", detail);
        return detail;
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
    }
}
