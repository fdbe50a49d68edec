using ConvKit.Data;
using ConvKit.Data.Imaging;
using ConvKit.Data.Streaming;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Training;
using static TorchSharp.torch;

namespace ConvKit.Tests.Data.Streaming;

/// <summary>A source of synthetic images: pixel values from the index, so every sample is recognisable.</summary>
sealed class SyntheticSource(int count, int height = 6, int width = 5, int channels = 3, int classes = 3) : SampleSource
{
    int loads, active, maxActive;
    public HashSet<int> Broken { get; } = [];
    public HashSet<int> Failing { get; } = [];
    public int Loads => Volatile.Read(ref loads);
    public int MaxConcurrent => Volatile.Read(ref maxActive);
    public int DelayMs { get; init; }
    public override int Count => count;
    public override int Height => height;
    public override int Width => width;
    public override int Channels => channels;
    public override IReadOnlyList<string> ClassNames => Enumerable.Range(0, classes).Select(i => "c" + i).ToArray();
    public override long LabelOf(int index) => index % classes;
    public override string Describe(int index) => $"img{index}.png";

    public override void Load(int index, Span<byte> destination)
    {
        Interlocked.Increment(ref loads);
        int now = Interlocked.Increment(ref active);
        int seen;
        while ((seen = Volatile.Read(ref maxActive)) < now && Interlocked.CompareExchange(ref maxActive, now, seen) != seen) { }
        try
        {
            if (DelayMs > 0) Thread.Sleep(DelayMs);
            if (Broken.Contains(index)) throw new ImageDecodeException(Describe(index), "corrupt PNG (test)");
            if (Failing.Contains(index)) throw new IOException($"disk failure reading {Describe(index)}");
            for (int i = 0; i < destination.Length; i++) destination[i] = (byte)((index * 7 + i * 13) % 256);
        }
        finally { Interlocked.Decrement(ref active); }
    }
}

[Collection(nameof(ConvKit.Tests.Training.GlobalRandomCollection))]
public class DataLoaderTests
{
    static readonly ImageAugmentation Everything = new()
    {
        HorizontalFlip = true, VerticalFlip = true, Rotation = 0.2, Zoom = 0.3, Translation = 0.2, Brightness = 0.2, Contrast = 0.3,
    };

    static List<DataBatch> Epoch(DataLoader loader, int epoch) => loader.Batches(epoch).ToList();

    [Fact]
    public void BatchesAreBitIdenticalWhateverTheNumberOfWorkers()
    {
        var source = new SyntheticSource(50);
        List<DataBatch>[] Run(int workers)
        {
            using var loader = new DataLoader(source, batchSize: 8, seed: 11, workers: workers, augmentation: Everything);
            return [Epoch(loader, 0), Epoch(loader, 1)];
        }
        var one = Run(1);
        foreach (var workers in new[] { 0, 4 })
        {
            var other = Run(workers);
            for (int e = 0; e < 2; e++)
            {
                Assert.Equal(one[e].Count, other[e].Count);
                for (int b = 0; b < one[e].Count; b++)
                {
                    Assert.Equal(one[e][b].Indices, other[e][b].Indices);
                    Assert.Equal(one[e][b].Labels, other[e][b].Labels);
                    Assert.Equal(one[e][b].Pixels, other[e][b].Pixels);
                }
            }
        }
        // Augmentation did change the pixels, and differently in the two epochs.
        int first = one[0][0].Indices[0];
        var raw = new byte[source.SampleBytes];
        source.Load(first, raw);
        Assert.NotEqual(raw.Select(v => v / 255f), one[0][0].Pixels.Take(raw.Length));
        int pos = Array.IndexOf(one[1].SelectMany(b => b.Indices).ToArray(), first);
        var second = one[1].SelectMany(b => b.Pixels).Skip(pos * raw.Length).Take(raw.Length);
        Assert.NotEqual(one[0][0].Pixels.Take(raw.Length), second);
    }

    [Fact]
    public void EveryEpochVisitsEverySampleOnce_InAnOrderFixedBySeedAndEpoch()
    {
        var source = new SyntheticSource(23);
        using var loader = new DataLoader(source, batchSize: 5, seed: 3, workers: 2);
        Assert.Equal(5, loader.BatchesPerEpoch);
        var e0 = Epoch(loader, 0).SelectMany(b => b.Indices).ToArray();
        var e1 = Epoch(loader, 1).SelectMany(b => b.Indices).ToArray();
        Assert.Equal(Enumerable.Range(0, 23), e0.Order());
        Assert.Equal(Enumerable.Range(0, 23), e1.Order());
        Assert.NotEqual(e0, e1);
        using var again = new DataLoader(source, batchSize: 5, seed: 3, workers: 3);
        Assert.Equal(e1, Epoch(again, 1).SelectMany(b => b.Indices));
        using var other = new DataLoader(source, batchSize: 5, seed: 4, workers: 2);
        Assert.NotEqual(e0, Epoch(other, 0).SelectMany(b => b.Indices));
        using var plain = new DataLoader(source, batchSize: 5, shuffle: false);
        Assert.Equal(Enumerable.Range(0, 23), Epoch(plain, 0).SelectMany(b => b.Indices));
        // Labels stay with their samples.
        foreach (var b in Epoch(loader, 0))
            Assert.Equal(b.Indices.Select(i => (long)(i % 3)), b.Labels);
    }

    [Fact]
    public void PrefetchIsBounded_WhenTheConsumerIsSlow()
    {
        var source = new SyntheticSource(200);
        using var loader = new DataLoader(source, batchSize: 4, seed: 1, workers: 3, prefetch: 2);
        int consumed = 0, maxAhead = 0;
        foreach (var b in loader.Batches(0))
        {
            consumed += b.Count;
            Thread.Sleep(2);
            maxAhead = Math.Max(maxAhead, source.Loads - consumed);
        }
        Assert.Equal(200, consumed);
        // At most `prefetch` batches wait in the queue, plus one being decoded per worker.
        Assert.True(maxAhead <= (2 + 3) * 4, $"{maxAhead} samples decoded ahead of the consumer");
    }

    [Fact]
    public void WorkersDecodeInParallel()
    {
        var source = new SyntheticSource(48) { DelayMs = 5 };
        using var loader = new DataLoader(source, batchSize: 4, workers: 4);
        Assert.Equal(48, loader.Batches(0).Sum(b => b.Count));
        Assert.True(source.MaxConcurrent > 1, "one sample at a time: the workers did not run in parallel");
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void UndecodableSamplesAreSkippedWithAWarningNamingThem_AndACount()
    {
        var source = new SyntheticSource(20);
        source.Broken.UnionWith([3, 17]);
        var warnings = new StringWriter();
        using var loader = new DataLoader(source, batchSize: 6, workers: 2) { Warnings = warnings };
        var e0 = Epoch(loader, 0);
        Assert.Equal(18, e0.Sum(b => b.Count));
        Assert.DoesNotContain(3, e0.SelectMany(b => b.Indices));
        Assert.Equal(new[] { 3, 17 }, loader.Skipped.Keys.Order());
        var text = warnings.ToString();
        Assert.Contains("img3.png", text);
        Assert.Contains("img17.png", text);
        Assert.Contains("2 of 20 files could not be decoded and were skipped", text);
        // Warned once per file: the next epoch says nothing new.
        warnings.GetStringBuilder().Clear();
        Assert.Equal(18, Epoch(loader, 1).Sum(b => b.Count));
        Assert.Equal("", warnings.ToString());
    }

    /// <summary>A writer that is not thread-safe and records whether two threads were ever inside it at once.</summary>
    sealed class OverlapDetectingWriter : StringWriter
    {
        int inside;
        public bool Overlapped { get; private set; }
        public override void WriteLine(string? value)
        {
            if (Interlocked.Increment(ref inside) > 1) Overlapped = true;
            Thread.Sleep(2);
            base.WriteLine(value);
            Interlocked.Decrement(ref inside);
        }
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void WorkersWriteWarningsOneAtATime_SoAStringWriterIsSafe()
    {
        var source = new SyntheticSource(64);
        source.Broken.UnionWith(Enumerable.Range(0, 64).Where(i => i % 2 == 0));
        var warnings = new OverlapDetectingWriter();
        using var loader = new DataLoader(source, batchSize: 2, workers: 4, prefetch: 16) { Warnings = warnings };
        Assert.Equal(32, Epoch(loader, 0).Sum(b => b.Count));
        Assert.False(warnings.Overlapped, "two workers wrote a warning at the same time");
        Assert.Equal(33, warnings.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void OtherFailuresEndTheEpochWithTheirException()
    {
        var source = new SyntheticSource(40);
        source.Failing.Add(25);
        using var loader = new DataLoader(source, batchSize: 4, shuffle: false, workers: 3);
        var e = Assert.Throws<IOException>(() => loader.Batches(0).ToList());
        Assert.Contains("img25.png", e.Message);
        // The loader is usable again afterwards.
        source.Failing.Clear();
        Assert.Equal(40, loader.Batches(0).Sum(b => b.Count));
    }

    [Theory]
    [InlineData(DatasetCache.Memory)]
    [InlineData(DatasetCache.Disk)]
    public void CacheMeansNoDecodingAfterTheFirstEpoch_WithTheSameBatches(DatasetCache cache)
    {
        var source = new SyntheticSource(30);
        source.Broken.Add(7);
        var dir = Directory.CreateTempSubdirectory("convkit-cache-test").FullName;
        try
        {
            List<DataBatch> reference;
            using (var plain = new DataLoader(new SyntheticSource(30) { Broken = { 7 } }, batchSize: 4, seed: 2, workers: 2, augmentation: Everything) { Warnings = null })
                reference = Epoch(plain, 1);
            using (var loader = new DataLoader(source, batchSize: 4, seed: 2, workers: 2, augmentation: Everything, cache: cache, cacheDirectory: dir) { Warnings = null })
            {
                Epoch(loader, 0);
                int loads = source.Loads;
                Assert.Equal(30, loads);
                var cached = Epoch(loader, 1);
                Assert.Equal(loads, source.Loads);
                Assert.Equal(reference.SelectMany(b => b.Pixels), cached.SelectMany(b => b.Pixels));
                Assert.Equal(reference.SelectMany(b => b.Indices), cached.SelectMany(b => b.Indices));
                Assert.Equal(cache == DatasetCache.Disk ? 1 : 0, Directory.GetFiles(dir).Length);
            }
            Assert.Empty(Directory.GetFiles(dir));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void ClassWeightsBalanceTheFolderCounts()
    {
        var source = new SyntheticSource(10, classes: 3); // labels 0,1,2,0,1,2,0,1,2,0: counts 4, 3, 3
        using var loader = new DataLoader(source);
        var w = loader.ClassWeights();
        Assert.Equal(10.0 / (3 * 4), w[0], 12);
        Assert.Equal(10.0 / (3 * 3), w[1], 12);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void BadArgumentsAreNamed()
    {
        var source = new SyntheticSource(5);
        Assert.Contains("batch_size", Assert.Throws<InvalidOptionException>(() => new DataLoader(source, batchSize: 0)).Message);
        Assert.Contains("workers", Assert.Throws<InvalidOptionException>(() => new DataLoader(source, workers: -1)).Message);
        Assert.Contains("Zoom", Assert.Throws<InvalidOptionException>(() => new DataLoader(source, augmentation: new ImageAugmentation { Zoom = 2 })).Message);
        Assert.Contains("no samples", Assert.Throws<DatasetFormatException>(() => new DataLoader(new SyntheticSource(0))).Message);
        var dir = Path.Combine(Path.GetTempPath(), "convkit-no-such-dir-" + Guid.NewGuid().ToString("N"));
        Assert.Contains(dir, Assert.Throws<DatasetFormatException>(() => new DataLoader(source, cache: DatasetCache.Disk, cacheDirectory: dir)).Message);
    }

    /// <summary>The small CNN the loader tests train (6x5x3 inputs, 3 classes); BatchMixingTests train it too.</summary>
    internal static Sequential SmallCnn()
    {
        using var _ = Backend.NameScope();
        return new Sequential([
            new Conv2D(4, 3, activation: "relu", inputShape: (6, 5, 3)),
            new Flatten(),
            new Dense(3, activation: "softmax"),
        ]);
    }

    [Fact]
    public void FitEvaluatePredictOverALoader_MatchTheTensorPath()
    {
        var source = new SyntheticSource(40);
        using var loader = new DataLoader(source, batchSize: 8, shuffle: false, workers: 2, rescale: 1f / 64);
        var all = loader.Batches(0).ToList();
        using var x = tensor(all.SelectMany(b => b.Pixels).ToArray(), [40, 6, 5, 3]);
        using var y = tensor(all.SelectMany(b => b.Labels).ToArray());

        var a = SmallCnn();
        var b = SmallCnn();
        b.SetWeights(a.GetWeights());
        a.Compile(optimizer: new SGD(learningRate: 0.05), loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
        b.Compile(optimizer: new SGD(learningRate: 0.05), loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
        var ha = a.Fit(x, y, batchSize: 8, epochs: 3, shuffle: false, verbose: 0, validationData: (x, y));
        var hb = b.Fit(loader, epochs: 3, verbose: 0, validationData: loader);
        Assert.Equal(ha["loss"], hb["loss"]);
        Assert.Equal(ha["val_accuracy"], hb["val_accuracy"]);
        foreach (var (wa, wb) in a.GetWeights().Zip(b.GetWeights()))
            Assert.Equal(wa.data<float>().ToArray(), wb.data<float>().ToArray());
        Assert.Equal(a.Evaluate(x, y, batchSize: 8, verbose: 0)["loss"], b.Evaluate(loader, verbose: 0)["loss"]);
        using var pa = a.Predict(x);
        using var pb = b.Predict(loader);
        Assert.Equal(pa.data<float>().ToArray(), pb.data<float>().ToArray());
    }

    [Fact]
    public void StepsPerEpochAndClassWeightsAreApplied()
    {
        var source = new SyntheticSource(40);
        using var loader = new DataLoader(source, batchSize: 8, seed: 1, workers: 1);
        var model = SmallCnn();
        model.Compile(optimizer: new SGD(learningRate: 0.01), loss: "sparse_categorical_crossentropy");
        var seen = new List<int>();
        var counter = new ConvKit.Callbacks.LambdaCallback { OnTrainBatchEndAction = (batch, _) => seen.Add(batch) };
        model.Fit(loader, epochs: 2, verbose: 0, stepsPerEpoch: 2, classWeight: loader.ClassWeights(), callbacks: [counter]);
        Assert.Equal(new[] { 0, 1, 0, 1 }, seen);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void ALoaderWhoseImagesDoNotFitTheModelIsANamedShapeError()
    {
        var model = SmallCnn();
        model.Compile(optimizer: new SGD(learningRate: 0.01), loss: "sparse_categorical_crossentropy");
        using var loader = new DataLoader(new SyntheticSource(10, height: 9), batchSize: 4);
        var e = Assert.Throws<ShapeException>(() => model.Fit(loader, verbose: 0));
        Assert.Contains("(None, 9, 5, 3)", e.Message);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void LoaderOverloadsTakeVerbosityAndRefuseBadArgumentsByName()
    {
        var model = SmallCnn();
        model.Compile(optimizer: new SGD(learningRate: 0.01), loss: "sparse_categorical_crossentropy");
        using var loader = new DataLoader(new SyntheticSource(8), batchSize: 4, workers: 0);
        // The same Verbosity as the tensor overloads: ints 0-2, Auto (default), named levels.
        Assert.Contains("verbose", Assert.Throws<InvalidOptionException>(() => model.Fit(loader, verbose: 3)).Message);
        Assert.Contains("verbose", Assert.Throws<InvalidOptionException>(() => model.Evaluate(loader, verbose: -1)).Message);
        Assert.Single(model.Fit(loader, epochs: 1, verbose: Verbosity.Silent).Epoch);
        Assert.Single(model.Evaluate(loader, verbose: Verbosity.Parse("0")));
        var epochs = Assert.Throws<InvalidOptionException>(() => model.Fit(loader, epochs: -1));
        Assert.Equal("epochs", epochs.Option);
        var steps = Assert.Throws<InvalidOptionException>(() => model.Evaluate(loader, steps: 0));
        Assert.Equal("steps", steps.Option);
        var weights = Assert.Throws<InvalidOptionException>(() => model.Fit(loader, verbose: 0, classWeight: new Dictionary<int, double> { [-1] = 2 }));
        Assert.Contains("class_weight", weights.Message);
        Assert.Contains("steps per epoch", Assert.Throws<InvalidOptionException>(() => loader.Batches(0, maxBatches: 0)).Message);
        Assert.Contains("verbose", Assert.Throws<InvalidOptionException>(() => model.Predict(loader, verbose: 7)).Message);
    }

    sealed class PredictBatches : ConvKit.Callbacks.Callback
    {
        public readonly List<string> Calls = [];
        public override void OnPredictBegin(ConvKit.Callbacks.Logs logs) => Calls.Add("begin");
        public override void OnPredictBatchEnd(int batch, ConvKit.Callbacks.Logs logs) => Calls.Add(batch.ToString(System.Globalization.CultureInfo.InvariantCulture));
        public override void OnPredictEnd(ConvKit.Callbacks.Logs logs) => Calls.Add("end");
    }

    [Fact]
    public void PredictOverALoaderCallsCallbacksPerLoaderBatchAndPrintsWithVerbose()
    {
        var model = SmallCnn();
        using var loader = new DataLoader(new SyntheticSource(10), batchSize: 4, shuffle: false, workers: 0);
        var seen = new PredictBatches();
        var output = new StringWriter();
        var bar = new ConvKit.Callbacks.ProgbarLogger(output, interactive: false);
        using var silent = model.Predict(loader, callbacks: [seen, bar]); // Auto: silent in Predict, as the tensor overload
        Assert.Equal(new[] { "begin", "0", "1", "2", "end" }, seen.Calls);
        Assert.Equal(0, output.ToString().Length);
        using var shown = model.Predict(loader, verbose: 1, callbacks: [bar]);
        Assert.Contains("3/3", output.ToString());
        Assert.Equal(silent.data<float>().ToArray(), shown.data<float>().ToArray());
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void ALoaderEnumeratedTwiceAtOnceIsRefusedWithAConvKitError()
    {
        using var loader = new DataLoader(new SyntheticSource(8), batchSize: 4, workers: 0);
        using var first = loader.Batches(0).GetEnumerator();
        Assert.True(first.MoveNext());
        using var second = loader.Batches(0).GetEnumerator();
        var e = Assert.Throws<ConvKitException>(() => second.MoveNext());
        Assert.Contains("already being enumerated", e.Message);
    }
}
