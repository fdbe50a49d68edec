using ConvKit.Distributed;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Distributed;

/// <summary>DataParallel on a loopback world of two ranks (threads) against one process with the global batch.</summary>
public class DataParallelTests
{
    static Sequential Net(int seed)
    {
        Backend.SetSeed(seed);
        using var _ = Backend.NameScope();
        var m = new Sequential([
            new Conv2D(4, 3, activation: "relu", inputShape: (8, 8, 1)),
            new MaxPooling2D(2),
            new Flatten(),
            new Dense(3, activation: "softmax"),
        ]);
        m.Compile(optimizer: new SGD(learningRate: 0.1, momentum: 0.9), loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
        return m;
    }

    static (Tensor X, Tensor Y) Data(long n)
    {
        var g = new Generator(11);
        return (rand(new long[] { n, 8, 8, 1 }, generator: g), randint(0, 3, new long[] { n }, dtype: int64, generator: g));
    }

    static double RelativeDifference(Tensor a, Tensor b)
    {
        using var d = a.sub(b);
        return d.norm().item<float>() / Math.Max(b.norm().item<float>(), 1e-30);
    }

    [Fact]
    public void TwoRanksEqualOneProcessWithTheGlobalBatch()
    {
        const int perRank = 6, world = 2, epochs = 2;
        var (x, y) = Data(50); // 4 whole global batches of 12 per epoch; the last 2 samples are dropped
        // Models are built from the global seed, which tests running in parallel also draw from: rank 0 and the reference
        // are made equal explicitly; rank 1 keeps other weights, which the broadcast must replace.
        var reference = Net(1);
        var initial = reference.GetWeights().Select(w => w.clone()).ToArray();
        var replicas = new[] { Net(1), Net(2) };
        replicas[0].SetWeights(initial);
        Assert.True(RelativeDifference(replicas[1].GetWeights()[0], initial[0]) > 1e-3);
        var histories = LoopbackWorld.Run(world, pg =>
        {
            var m = replicas[pg.Rank];
            m.Distribute(new DataParallel(pg, bucketBytes: 1024)); // small buckets: several all-reduces per step
            var h = m.Fit(x, y, batchSize: perRank, epochs: epochs, verbose: 0, seed: pg.Rank == 0 ? 7 : 99);
            m.Distribute(null);
            return h;
        });
        // Reference: the same permutations (seed 7, n = 50), each cut into global batches of 12, trained without shuffling.
        var g = new Generator(7);
        var order = new List<Tensor>();
        for (int e = 0; e < epochs; e++) order.Add(randperm(50, generator: g).narrow(0, 0, 48));
        var hRef = new List<double>();
        foreach (var idx in order)
        {
            var h = reference.Fit(x.index_select(0, idx), y.index_select(0, idx), batchSize: perRank * world, epochs: 1, verbose: 0, shuffle: false);
            hRef.Add(h["loss"][0]);
        }
        foreach (var replica in replicas)
        {
            var a = replica.GetWeights();
            var b = reference.GetWeights();
            Assert.Equal(b.Length, a.Length);
            for (int i = 0; i < a.Length; i++)
            {
                double rel = RelativeDifference(a[i], b[i]);
                Assert.True(rel <= 1e-6, $"weight {i}: relative difference {rel:E2}");
            }
        }
        // The epoch loss is averaged across the ranks: it is the loss over the global batches.
        for (int e = 0; e < epochs; e++)
        {
            Assert.Equal(histories[0]["loss"][e], histories[1]["loss"][e], 12);
            Assert.Equal(hRef[e], histories[0]["loss"][e], 5);
        }
        // And the training did move the weights (the comparison is not between two untouched models).
        Assert.True(RelativeDifference(replicas[0].GetWeights()[0], initial[0]) > 1e-3);
    }

    [Fact]
    public void EachRankGetsADisjointHalfOfEveryGlobalBatch()
    {
        var shards = LoopbackWorld.Run(2, pg =>
        {
            var dp = new DataParallel(pg);
            int steps = dp.Steps(23, 5); // 2 global batches of 10; 3 samples dropped
            using var g = new Generator(3);
            using var e1 = dp.EpochIndices(23, 5, steps, shuffle: true, g, CPU);
            using var e2 = dp.EpochIndices(23, 5, steps, shuffle: true, g, CPU);
            return (steps, e1.data<long>().ToArray(), e2.data<long>().ToArray());
        });
        Assert.All(shards, s => Assert.Equal(2, s.steps));
        using var g = new Generator(3);
        foreach (var epoch in new[] { 0, 1 })
        {
            var perm = randperm(23, generator: g).data<long>().ToArray();
            var r0 = epoch == 0 ? shards[0].Item2 : shards[0].Item3;
            var r1 = epoch == 0 ? shards[1].Item2 : shards[1].Item3;
            for (int b = 0; b < 2; b++)
            {
                Assert.Equal(perm.Skip(b * 10).Take(5), r0.Skip(b * 5).Take(5));
                Assert.Equal(perm.Skip(b * 10 + 5).Take(5), r1.Skip(b * 5).Take(5));
            }
            Assert.Empty(r0.Intersect(r1));
        }
        Assert.NotEqual(shards[0].Item2, shards[0].Item3); // reshuffled per epoch
    }

    [Fact, Trait("Catalogue", "Hostile")]
    public void RanksWithDifferentDatasetsOrTooFewSamplesAreNamedErrors()
    {
        var e = Assert.Throws<AggregateException>(() => LoopbackWorld.Run(2, pg => new DataParallel(pg).Steps(pg.Rank == 0 ? 100 : 90, 4)));
        var d = Assert.IsType<DistributedException>(e.InnerExceptions[0]);
        Assert.Equal(DistributedFailure.Configuration, d.Failure);
        Assert.Contains("every rank must load the same dataset", d.Message);
        e = Assert.Throws<AggregateException>(() => LoopbackWorld.Run(2, pg => new DataParallel(pg).Steps(7, 4)));
        Assert.Contains("make no whole global batch of 8 (batch size 4 x WORLD_SIZE=2)", e.InnerExceptions[0].Message);
    }
}
