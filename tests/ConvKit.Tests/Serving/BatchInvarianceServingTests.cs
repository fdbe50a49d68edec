using ConvKit.Applications;
using ConvKit.Serving;
using ConvKit.Tests.Training;
using static ConvKit.Tests.Serving.ServingHarness;

namespace ConvKit.Tests.Serving;

/// <summary>
/// The server's batch-invariance guarantee (issue 16): a served model's warm-up checks, bit for bit, that the rows of
/// a batch equal its samples run alone; a model where they do not is served one request per forward pass, so that its
/// answers still equal Predict's.
/// </summary>
[Collection(nameof(GlobalRandomCollection))]
public class BatchInvarianceServingTests
{
    [Fact]
    public void WarmUpFindsTheOptimizedPlanBatchInvariant()
    {
        using var served = new ServedModel("resnet20", CreateModel("resnet20", 21), ownsModel: true);
        served.WarmUp(1, 16);
        Assert.True(served.IsReady);
        Assert.Null(served.BatchVariance);
        Assert.True(served.MayBatch);
        Assert.True(served.BatchInvariant);
    }

    [Fact]
    public void WithoutBatchInvarianceNothingIsCheckedAndBatchesRun()
    {
        using var served = new ServedModel("lenet5", CreateModel("lenet5", 22), ownsModel: true, batchInvariant: false);
        served.WarmUp(1, 16);
        Assert.False(served.BatchInvariant);
        Assert.Null(served.BatchVariance);
        Assert.True(served.MayBatch);
    }

    /// <summary>ResNet-20 layer by layer (InferenceOptimizations off) runs libtorch's ordinary channels-last
    /// convolutions, which on this project's machine (oneDNN 3.7.1, AVX-512) round by batch size for 32 and 64
    /// channels: the warm-up finds it, and the server then runs one request per pass, every answer still exact.</summary>
    [Fact]
    public async Task AModelThatIsNotBatchInvariantIsServedUnbatchedWithExactAnswers()
    {
        TorchSharp.torch.manual_seed(23); // the same initial weights for the served model and its reference
        var model = CreateModel("resnet20", 23);
        model.InferenceOptimizations = false;
        TorchSharp.torch.manual_seed(23);
        var reference = CreateModel("resnet20", 23);
        reference.InferenceOptimizations = false;
        try
        {
            var served = new ServedModel("resnet20", model, ownsModel: true);
            await using var server = ConvKitServer.Create([served], new ServingOptions { Port = 0, MaxBatch = 16, MaxDelayMs = 5 });
            await server.StartAsync();
            await server.WarmUp;
            Assert.False(served.MayBatch, "the layer-by-layer ResNet-20 was expected to round by batch size here");
            Assert.Contains("differ from the same sample run alone", served.BatchVariance);

            using var client = new HttpClient { BaseAddress = new Uri(server.Urls[0]), Timeout = TimeSpan.FromSeconds(60) };
            var inputs = Enumerable.Range(0, 16).Select(i => RandomInput(reference, 1, 300 + i)).ToArray();
            var expected = inputs.Select(input =>
            {
                using var x = TorchSharp.torch.tensor(input, [1, 32, 32, 3]);
                using var y = reference.Predict(x);
                return y.data<float>().ToArray();
            }).ToArray();
            var answers = await Task.WhenAll(Enumerable.Range(0, 16).Select(async i =>
            {
                using var response = await client.PostAsync("/v2/models/resnet20/infer", BinaryRequest(reference, inputs[i], 1));
                return await ReadOutput(response);
            }));
            for (int i = 0; i < 16; i++) AssertBitIdentical(expected[i], answers[i], $"request {i}");
            var metrics = await client.GetStringAsync("/metrics");
            double batches = KServeProtocolTests.Metric(metrics, "convkit_batch_size_count{model=\"resnet20\"}");
            Assert.Equal(batches, KServeProtocolTests.Metric(metrics, "convkit_batch_size_bucket{model=\"resnet20\",le=\"1\"}"));
        }
        finally
        {
            reference.Dispose();
        }
    }
}
