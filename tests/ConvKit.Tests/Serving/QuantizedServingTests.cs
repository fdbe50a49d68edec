using System.Text.Json;
using ConvKit.Applications;
using ConvKit.Models;
using ConvKit.Quantization;
using ConvKit.Serving;
using ConvKit.Tests.Training;
using static ConvKit.Tests.Serving.ServingHarness;
using static TorchSharp.torch;

namespace ConvKit.Tests.Serving;

/// <summary>An int8 model (issue 17) served as an FP32 one is: concurrent clients get, bit for bit, what the quantized
/// model's own single-threaded Predict gives each sample alone; the image endpoint uses the preprocessing and class
/// names stored in the file.</summary>
[Collection(nameof(GlobalRandomCollection))]
public class QuantizedServingTests
{
    [Fact]
    public async Task ConcurrentClientsGetWhatPredictGivesEachSampleAlone()
    {
        using var fp32 = CreateModel("lenet5", 31);
        manual_seed(32);
        using var calibration = rand(64, 28, 28, 1);
        string[] names = [.. Enumerable.Range(0, 10).Select(i => $"kind {i}")];
        using var reference = Quantizer.Quantize(fp32, calibration, new QuantizationOptions { ClassNames = names });
        var quantized = Quantizer.Quantize(fp32, calibration, new QuantizationOptions { ClassNames = names });
        var served = new ServedModel("lenet5-int8", quantized, ownsModel: true);
        Assert.Null(served.Inference);
        Assert.Equal(Preprocessing.None, served.Preprocessing);
        await using var server = ConvKitServer.Create([served], new ServingOptions { Port = 0, MaxBatch = 16, MaxDelayMs = 5, Workers = 2 });
        await server.StartAsync();
        await server.WarmUp;
        using var client = new HttpClient { BaseAddress = new Uri(server.Urls[0]), Timeout = TimeSpan.FromSeconds(60) };

        var inputs = Enumerable.Range(0, 48).Select(i => RandomInput(fp32, 1 + i % 3, 500 + i)).ToArray();
        var expected = inputs.Select(input =>
        {
            int n = input.Length / (28 * 28);
            return Enumerable.Range(0, n).SelectMany(i =>
            {
                using var x = tensor(input[(i * 784)..((i + 1) * 784)], [1, 28, 28, 1]);
                using var y = reference.Predict(x);
                return y.data<float>().ToArray();
            }).ToArray();
        }).ToArray();
        var answers = await Task.WhenAll(inputs.Select(input => Task.Run(async () =>
        {
            using var response = await client.PostAsync("/v2/models/lenet5-int8/infer", BinaryRequest(fp32, input, input.Length / 784));
            return await ReadOutput(response);
        })));
        for (int i = 0; i < inputs.Length; i++) AssertBitIdentical(expected[i], answers[i], $"request {i}");

        using var metadata = JsonDocument.Parse(await client.GetStringAsync("/v2/models/lenet5-int8"));
        Assert.Equal("convkit_onnxruntime_int8", metadata.RootElement.GetProperty("platform").GetString());
        Assert.Equal(names, metadata.RootElement.GetProperty("parameters").GetProperty("class_names").EnumerateArray().Select(e => e.GetString()));

        var png = Path.Combine(Path.GetTempPath(), $"convkit-q8-serve-{Guid.NewGuid():N}.png");
        try
        {
            Cli.TrainedRun.WritePng(png, 40, 30);
            using var content = new ByteArrayContent(await File.ReadAllBytesAsync(png));
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("image/png");
            using var response = await client.PostAsync("/v2/models/lenet5-int8/classify?top=1", content);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, body);
            using var classified = JsonDocument.Parse(body);
            var best = classified.RootElement.GetProperty("predictions")[0];
            using var classifier = new ImageClassifier(reference, Preprocessing.None, names);
            var alone = classifier.Predict([png], top: 1)[0].Top[0];
            Assert.Equal(alone.Index, best.GetProperty("index").GetInt32());
            Assert.Equal(alone.Name, best.GetProperty("class").GetString());
        }
        finally { File.Delete(png); }
    }
}
