using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using ConvKit.Serving;
using ConvKit.Tests.Training;
using static ConvKit.Tests.Serving.ServingHarness;

namespace ConvKit.Tests.Serving;

/// <summary>
/// The Open Inference Protocol over a real Kestrel server and HttpClient: metadata, health, infer in JSON and binary,
/// answers bit-identical to single-threaded Predict alone and under many concurrent clients, dynamic batching, a full
/// queue, the API key.
/// </summary>
[Collection(nameof(GlobalRandomCollection))]
public class KServeProtocolTests
{
    [Fact]
    public async Task MetadataHealthAndReadyDescribeEachModel()
    {
        await using var h = await StartAsync(null, "lenet5", "resnet20");
        using (var server = JsonDocument.Parse(await h.Client.GetStringAsync("/v2")))
        {
            Assert.Equal("convkit", server.RootElement.GetProperty("name").GetString());
            Assert.Contains("binary_tensor_data", server.RootElement.GetProperty("extensions").EnumerateArray().Select(e => e.GetString()));
        }
        Assert.Equal(HttpStatusCode.OK, (await h.Client.GetAsync("/v2/health/live")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await h.Client.GetAsync("/v2/health/ready")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await h.Client.GetAsync("/v2/models/resnet20/ready")).StatusCode);
        using (var meta = JsonDocument.Parse(await h.Client.GetStringAsync("/v2/models/resnet20")))
        {
            var input = meta.RootElement.GetProperty("inputs")[0];
            Assert.Equal("input", input.GetProperty("name").GetString());
            Assert.Equal("FP32", input.GetProperty("datatype").GetString());
            Assert.Equal([-1, 32, 32, 3], input.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()));
            Assert.Equal([-1, 10], meta.RootElement.GetProperty("outputs")[0].GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()));
        }
        var detail = await ReadProblem(await h.Client.GetAsync("/v2/models/vgg99"), 404);
        Assert.Contains("no model 'vgg99'", detail);
        Assert.Contains("'lenet5'", detail);
        Assert.Contains("version 1 only", await ReadProblem(await h.Client.GetAsync("/v2/models/lenet5/versions/2"), 404));
    }

    [Theory]
    [InlineData("lenet5", 1)]
    [InlineData("lenet5", 3)]
    [InlineData("resnet20", 2)]
    public async Task InferInJsonAndBinaryIsBitIdenticalToPredict(string model, int samples)
    {
        await using var h = await StartAsync(null, model);
        var m = h.Reference(model);
        var input = RandomInput(m, samples, 11);
        var expected = h.ExpectedAlone(model, input, samples);

        using var json = await h.Client.PostAsync($"/v2/models/{model}/infer", new StringContent(JsonRequest(model, m, input, samples), Encoding.UTF8, "application/json"));
        var text = await json.Content.ReadAsStringAsync();
        using (var doc = JsonDocument.Parse(text))
        {
            Assert.Equal("req-1", doc.RootElement.GetProperty("id").GetString());
            Assert.Equal([samples, 10], doc.RootElement.GetProperty("outputs")[0].GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()));
        }
        AssertBitIdentical(expected, JsonSerializer.Deserialize<JsonElement>(text).GetProperty("outputs")[0].GetProperty("data").EnumerateArray().Select(e => e.GetSingle()).ToArray(), "JSON answer");

        using var binary = await h.Client.PostAsync($"/v2/models/{model}/infer", BinaryRequest(m, input, samples));
        Assert.Equal("application/octet-stream", binary.Content.Headers.ContentType?.MediaType);
        AssertBitIdentical(expected, await ReadOutput(binary), "binary answer");

        // JSON in, binary out (binary_data on the requested output) is the third combination.
        using var mixed = await h.Client.PostAsync($"/v2/models/{model}/versions/1/infer", new StringContent(JsonRequest(model, m, input, samples, binaryOutput: true)));
        AssertBitIdentical(expected, await ReadOutput(mixed), "JSON request, binary answer");
    }

    /// <summary>32 clients at once, JSON and binary, two models, requests of one and two samples. By default the served
    /// models are batch-invariant: with or without dynamic batching every answer is bit-identical to Predict on each of
    /// its samples alone. With --no-batch-invariance a request's rows are computed inside a larger batch, where
    /// libtorch's matrix product rounds otherwise: answers then agree with Predict to within 1e-6 (measured: one or two
    /// ulps, 1.5e-8 to 3e-8 on probabilities near 0.1).</summary>
    [Theory]
    [InlineData(1, true)]
    [InlineData(16, true)]
    [InlineData(16, false)]
    public async Task ManyConcurrentClientsGetAnswersIdenticalToPredict(int maxBatch, bool batchInvariant)
    {
        await using var h = await StartAsync(new ServingOptions { MaxBatch = maxBatch, MaxDelayMs = 5, Workers = 2 }, batchInvariant, "resnet20", "lenet5");
        const int clients = 32, perClient = 6;
        var cases = Enumerable.Range(0, 24).Select(i =>
        {
            string model = i % 3 == 0 ? "lenet5" : "resnet20";
            int samples = 1 + i % 2;
            var input = RandomInput(h.Reference(model), samples, 100 + i);
            return (model, samples, input, expected: h.ExpectedAlone(model, input, samples));
        }).ToArray();
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
        {
            for (int r = 0; r < perClient; r++)
            {
                var (model, samples, input, expected) = cases[(c * perClient + r) % cases.Length];
                using var response = (c + r) % 2 == 0
                    ? await h.Client.PostAsync($"/v2/models/{model}/infer", BinaryRequest(h.Reference(model), input, samples))
                    : await h.Client.PostAsync($"/v2/models/{model}/infer", new StringContent(JsonRequest(model, h.Reference(model), input, samples)));
                var actual = await ReadOutput(response);
                bool exact = actual.Select(BitConverter.SingleToInt32Bits).SequenceEqual(expected.Select(BitConverter.SingleToInt32Bits));
                bool mustBeExact = batchInvariant;
                if (!exact && (mustBeExact || actual.Length != expected.Length || actual.Zip(expected).Any(p => Math.Abs(p.First - p.Second) > 1e-6f)))
                    failures.Add($"client {c} request {r} ({model}, {samples} samples): max difference {actual.Zip(expected).Max(p => Math.Abs(p.First - p.Second)):E3}");
            }
        })));
        Assert.Empty(failures);

        var metrics = await h.Client.GetStringAsync("/metrics");
        double batches = Metric(metrics, "convkit_batch_size_count{model=\"resnet20\"}");
        double samplesRun = Metric(metrics, "convkit_batch_size_sum{model=\"resnet20\"}");
        double answered = Metric(metrics, "convkit_requests_total{model=\"resnet20\",endpoint=\"infer\",status=\"200\"}");
        Assert.Equal(clients * perClient * 2 / 3, answered);
        if (maxBatch > 1) Assert.True(samplesRun / batches > 1.5, $"mean batch {samplesRun / batches:0.00} samples: no dynamic batching under 32 clients");
        // A request of 2 samples with --max-batch 1 runs alone (a request is never split).
        Assert.True(Metric(metrics, $"convkit_batch_size_bucket{{model=\"resnet20\",le=\"{Math.Max(maxBatch, 2)}\"}}") == batches, "a batch exceeded --max-batch");
        Assert.Contains("convkit_inference_duration_seconds_count{model=\"resnet20\"}", metrics);
        Assert.Contains("convkit_queue_depth{model=\"resnet20\"}", metrics);
        Assert.Contains("convkit_request_duration_seconds_bucket{model=\"lenet5\",endpoint=\"infer\"", metrics);
    }

    internal static double Metric(string text, string series)
    {
        var line = text.Split('\n').FirstOrDefault(l => l.StartsWith(series + " ", StringComparison.Ordinal))
            ?? throw new Xunit.Sdk.XunitException($"no series {series} in /metrics");
        return double.Parse(line[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task AFullQueueAnswers503WithRetryAfterAndServesTheRest()
    {
        await using var h = await StartAsync(new ServingOptions { MaxBatch = 1, Workers = 1, QueueCapacity = 1 }, "resnet20");
        var m = h.Reference("resnet20");
        var input = RandomInput(m, 48, 5);
        var expected = h.ExpectedAlone("resnet20", input, 48);
        var responses = await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => h.Client.PostAsync("/v2/models/resnet20/infer", BinaryRequest(m, input, 48))));
        var refused = responses.Where(r => r.StatusCode == HttpStatusCode.ServiceUnavailable).ToArray();
        Assert.NotEmpty(refused);
        Assert.Equal(TimeSpan.FromSeconds(1), refused[0].Headers.RetryAfter?.Delta);
        Assert.Contains("--queue", await ReadProblem(refused[0], 503));
        var served = responses.Where(r => r.IsSuccessStatusCode).ToArray();
        Assert.NotEmpty(served);
        Assert.Equal(12, refused.Length + served.Length);
        foreach (var r in served) AssertBitIdentical(expected, await ReadOutput(r), "answer beside refusals");
        foreach (var r in responses) r.Dispose();
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public async Task AnApiKeyIsRequiredExceptForHealthChecks()
    {
        await using var h = await StartAsync(new ServingOptions { ApiKey = "s3cret-key-123" }, "lenet5");
        Assert.Equal(HttpStatusCode.OK, (await h.Client.GetAsync("/v2/health/live")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await h.Client.GetAsync("/v2/health/ready")).StatusCode);
        using var none = await h.Client.GetAsync("/v2/models/lenet5");
        Assert.Contains("API key", await ReadProblem(none, 401));
        Assert.Equal("Bearer", none.Headers.WwwAuthenticate.Single().Scheme);
        using (var wrong = new HttpRequestMessage(HttpMethod.Get, "/v2/models/lenet5"))
        {
            wrong.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "s3cret-key-124");
            await ReadProblem(await h.Client.SendAsync(wrong), 401);
        }
        Assert.Equal(HttpStatusCode.Unauthorized, (await h.Client.GetAsync("/metrics")).StatusCode);
        using (var bearer = new HttpRequestMessage(HttpMethod.Get, "/v2/models/lenet5"))
        {
            bearer.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "s3cret-key-123");
            Assert.Equal(HttpStatusCode.OK, (await h.Client.SendAsync(bearer)).StatusCode);
        }
        var m = h.Reference("lenet5");
        var input = RandomInput(m, 1, 3);
        using var infer = new HttpRequestMessage(HttpMethod.Post, "/v2/models/lenet5/infer") { Content = BinaryRequest(m, input, 1) };
        infer.Headers.Add("X-API-Key", "s3cret-key-123");
        AssertBitIdentical(h.Expected("lenet5", input, 1), await ReadOutput(await h.Client.SendAsync(infer)), "answer with X-API-Key");
    }

    [Fact]
    public void OptionsOutOfRangeAreNamedByTheirCliName()
    {
        Assert.Equal("--max-batch", Assert.Throws<ServingOptionException>(() => new ServingOptions { MaxBatch = 0 }.Validate()).Option);
        Assert.Equal("--queue", Assert.Throws<ServingOptionException>(() => new ServingOptions { QueueCapacity = 0 }.Validate()).Option);
        Assert.Equal("--workers", Assert.Throws<ServingOptionException>(() => new ServingOptions { Workers = 0 }.Validate()).Option);
        Assert.Equal("--max-delay-ms", Assert.Throws<ServingOptionException>(() => new ServingOptions { MaxDelayMs = double.NaN }.Validate()).Option);
        Assert.Equal("--port", Assert.Throws<ServingOptionException>(() => new ServingOptions { Port = 70000 }.Validate()).Option);
        Assert.Contains("received 0", Assert.Throws<ServingOptionException>(() => new ServingOptions { MaxBatch = 0 }.Validate()).Message);
    }
}
