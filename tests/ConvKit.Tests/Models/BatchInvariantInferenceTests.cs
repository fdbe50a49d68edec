using ConvKit.Models;
using ConvKit.Models.Inference;
using ConvKit.Tests.Serving;
using ConvKit.Tests.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Models;

/// <summary>
/// Batch-invariant inference (issue 16, serving with dynamic batching): row i of a batch, computed by a batch-invariant
/// <see cref="InferenceModel"/>, is bit-identical to <see cref="Model.Predict"/> on sample i alone, for every batch size.
/// The ordinary plan is not (libtorch's matrix product in Dense rounds by row count), which is why the mode exists.
/// </summary>
[Collection(nameof(GlobalRandomCollection))]
public class BatchInvariantInferenceTests
{
    [Theory]
    [InlineData("resnet20")]
    [InlineData("lenet5")]
    public void RowsOfAnyBatchEqualPredictOnEachSampleAlone(string zooName)
    {
        using var model = ServingHarness.CreateModel(zooName, 11);
        using var engine = model.AsInferenceModel(InferenceEngine.TorchSharp, batchInvariant: true);
        Assert.True(engine.BatchInvariant);
        using var g = new Generator(3);
        using var x = rand([33, .. model.ModelInputShape.Dims.ToArray().Select(d => (long)d)], generator: g);
        var alone = Enumerable.Range(0, 33).Select(i =>
        {
            using var sample = x.narrow(0, i, 1).clone();
            return model.Predict(sample);
        }).ToArray();
        try
        {
            foreach (int n in new[] { 2, 5, 16, 33 })
            {
                using var batch = engine.Predict(x.narrow(0, 0, n), batchSize: n);
                for (int i = 0; i < n; i++)
                {
                    using var row = batch.narrow(0, i, 1);
                    Assert.True(row.shape.SequenceEqual(alone[i].shape) && row.eq(alone[i]).all().item<bool>(), $"{zooName}: batch of {n}, row {i} differs from Predict alone by {row.sub(alone[i]).abs().max().item<float>():E3}");
                }
            }
        }
        finally
        {
            foreach (var a in alone) a.Dispose();
        }
    }

    [Fact]
    public void ConcurrentBatchInvariantCallsEqualPredictAlone()
    {
        using var model = ServingHarness.CreateModel("resnet20", 12);
        using var engine = model.AsInferenceModel(InferenceEngine.TorchSharp, batchInvariant: true);
        using var g = new Generator(4);
        using var x = rand([24, 32, 32, 3], generator: g);
        var alone = Enumerable.Range(0, 24).Select(i =>
        {
            using var sample = x.narrow(0, i, 1).clone();
            using var y = model.Predict(sample);
            return y.data<float>().ToArray();
        }).ToArray();
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        Parallel.For(0, 8, t =>
        {
            for (int r = 0; r < 6; r++)
            {
                int n = 2 + (t + r) % 7, start = (t * 3 + r) % (24 - n);
                using var batch = engine.Predict(x.narrow(0, start, n), batchSize: n);
                using var c = batch.contiguous();
                var values = c.data<float>().ToArray();
                for (int i = 0; i < n; i++)
                    if (!values.AsSpan(i * 10, 10).SequenceEqual(alone[start + i]))
                        failures.Add($"thread {t} call {r}: row {i} of {n} (sample {start + i})");
            }
        });
        Assert.Empty(failures);
    }

    [Fact]
    public void BatchInvariantModelComputesOnTorchSharpAndSaysWhy()
    {
        using var model = ServingHarness.CreateModel("lenet5", 13);
        using var engine = model.AsInferenceModel(InferenceEngine.OnnxRuntime, batchInvariant: true);
        Assert.Equal(InferenceEngine.TorchSharp, engine.Engine);
        Assert.Contains("batch-invariant", engine.EngineFallbackReason);
    }
}
