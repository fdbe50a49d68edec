// Batches are produced by worker threads into a ring of `prefetch` slots and handed out strictly in order: batch b is
// claimed by whichever worker is free once b < consumed + prefetch, so at most `prefetch` batches exist at any time
// (memory does not grow with the dataset) and the result does not depend on the number of workers or their timing.
using System.Collections.Concurrent;
using System.Diagnostics;
using ConvKit.Data.Imaging;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace ConvKit.Data.Streaming;

/// <summary>Where a <see cref="DataLoader"/> keeps decoded samples so that epochs after the first do no decoding.</summary>
public enum DatasetCache
{
    /// <summary>No cache: every epoch decodes every sample.</summary>
    None,

    /// <summary>uint8 samples in memory (Count x Height x Width x Channels bytes once filled).</summary>
    Memory,

    /// <summary>uint8 samples in a temporary file, deleted when the loader is disposed.</summary>
    Disk,
}

/// <summary>One batch as produced by the workers: float32 pixels (N, H, W, C) scaled by the loader's rescale.</summary>
/// <param name="Pixels">Count x Height x Width x Channels values.</param>
/// <param name="Labels">Count labels.</param>
/// <param name="Indices">The samples' indices in the source.</param>
public sealed record DataBatch(float[] Pixels, long[] Labels, int[] Indices)
{
    /// <summary>Samples in the batch (undecodable files are left out, so the last ones may be short).</summary>
    public int Count => Labels.Length;
}

/// <summary>
/// Batches of a <see cref="SampleSource"/> decoded on background worker threads, PyTorch's <c>DataLoader</c> and
/// Keras' <c>tf.data</c> pipeline in one: a bounded prefetch queue, a deterministic order for a seed (a new shuffle
/// every epoch), augmentation seeded per (sample index, epoch) so that results do not depend on the number of
/// workers, an optional uint8 cache, and peak memory independent of the dataset's size. <see cref="Models.Model"/>'s
/// Fit, Evaluate and Predict accept it beside tensors.
/// </summary>
/// <remarks>
/// A sample whose file cannot be decoded (<see cref="ImageDecodeException"/>) is left out of its batch, with one
/// warning naming the file the first time; at the end of an epoch that met new ones, a count is written. Other
/// failures end the epoch with their exception. One enumeration at a time per loader.
/// </remarks>
public sealed class DataLoader : IDisposable
{
    readonly ConcurrentDictionary<int, string> skipped = new();
    readonly byte[]?[]? memoryCache;
    readonly byte[]? cacheState; // 0 not cached, 1 cached, 2 undecodable
    readonly SafeFileHandle? diskCache;
    readonly string? diskCachePath;
    int enumerating;
    bool disposed;

    /// <summary>The default number of workers: measured in benchmarks/ConvKit.DataBench (see docs/datasets.md).</summary>
    public static int DefaultWorkers => Math.Clamp(Environment.ProcessorCount / 2, 1, 4);

    /// <summary>Creates a loader.</summary>
    /// <param name="source">The samples.</param>
    /// <param name="batchSize">Samples per batch.</param>
    /// <param name="shuffle">Visit the samples in a new order every epoch, drawn from (seed, epoch).</param>
    /// <param name="seed">Seed of the order and of the augmentation.</param>
    /// <param name="workers">Decoding threads (default <see cref="DefaultWorkers"/>); 0 decodes on the caller's thread.</param>
    /// <param name="prefetch">Batches decoded ahead, at most (default 2 per worker, at least 2).</param>
    /// <param name="augmentation">On-the-fly augmentation (training data); null for none.</param>
    /// <param name="cache">Keep decoded samples (before augmentation) in memory or on disk.</param>
    /// <param name="cacheDirectory">Folder of the disk cache's temporary file (default: the system's temporary folder).</param>
    /// <param name="rescale">Factor applied to the uint8 pixels (default 1/255, giving [0, 1]).</param>
    /// <exception cref="InvalidOptionException">A count is out of range, or an augmentation factor is.</exception>
    /// <exception cref="DatasetFormatException">The source has no samples.</exception>
    public DataLoader(SampleSource source, int batchSize = 32, bool shuffle = true, long seed = 0, int? workers = null, int? prefetch = null,
        ImageAugmentation? augmentation = null, DatasetCache cache = DatasetCache.None, string? cacheDirectory = null, float rescale = 1f / 255f)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (batchSize <= 0) throw new InvalidOptionException(nameof(batchSize), $"batch_size must be positive; received {batchSize}.");
        if (workers is < 0 or > 256) throw new InvalidOptionException(nameof(workers), $"workers must be between 0 and 256; received {workers}.");
        if (prefetch is < 1 or > 1024) throw new InvalidOptionException(nameof(prefetch), $"prefetch must be between 1 and 1024; received {prefetch}.");
        if (!float.IsFinite(rescale)) throw new InvalidOptionException(nameof(rescale), $"rescale must be finite; received {rescale}.");
        if (!Enum.IsDefined(cache)) throw new InvalidOptionException(nameof(cache), $"cache must be None, Memory or Disk; received {(int)cache}.");
        augmentation?.Validate();
        if (source.Count == 0) throw new DatasetFormatException("the dataset has no samples.");
        Source = source;
        BatchSize = batchSize;
        Shuffle = shuffle;
        Seed = seed;
        Workers = workers ?? DefaultWorkers;
        Prefetch = prefetch ?? Math.Max(2, 2 * Workers);
        Augmentation = augmentation;
        Cache = cache;
        Rescale = rescale;
        if (cache == DatasetCache.Memory)
        {
            memoryCache = new byte[source.Count][];
            cacheState = new byte[source.Count];
        }
        else if (cache == DatasetCache.Disk)
        {
            var dir = cacheDirectory ?? Path.GetTempPath();
            diskCachePath = Path.Combine(dir, $"convkit-cache-{Environment.ProcessId}-{Guid.NewGuid():N}.bin");
            try
            {
                diskCache = File.OpenHandle(diskCachePath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, FileOptions.DeleteOnClose);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new DatasetFormatException($"cannot create the disk cache in '{dir}': {e.Message}", e);
            }
            cacheState = new byte[source.Count];
        }
    }

    /// <summary>The samples.</summary>
    public SampleSource Source { get; }

    /// <summary>Samples per batch.</summary>
    public int BatchSize { get; }

    /// <summary>Whether every epoch visits the samples in a new order.</summary>
    public bool Shuffle { get; }

    /// <summary>Seed of the order and the augmentation.</summary>
    public long Seed { get; }

    /// <summary>Decoding threads (0: on the caller's thread).</summary>
    public int Workers { get; }

    /// <summary>Batches decoded ahead, at most.</summary>
    public int Prefetch { get; }

    /// <summary>The augmentation, or null.</summary>
    public ImageAugmentation? Augmentation { get; }

    /// <summary>The cache kind.</summary>
    public DatasetCache Cache { get; }

    /// <summary>Factor applied to the uint8 pixels.</summary>
    public float Rescale { get; }

    /// <summary>Number of samples (undecodable files included until they are met).</summary>
    public int Count => Source.Count;

    /// <summary>Batches per epoch.</summary>
    public int BatchesPerEpoch => (Count + BatchSize - 1) / BatchSize;

    /// <summary>Class names, indexed by label.</summary>
    public IReadOnlyList<string> ClassNames => Source.ClassNames;

    /// <summary>Files met so far that could not be decoded (sample index to message), left out of their batches.</summary>
    public IReadOnlyDictionary<int, string> Skipped => skipped;

    /// <summary>
    /// Where warnings go (undecodable files, the count at the end of an epoch); default standard error. The workers
    /// write to it one line at a time under the loader's lock, so a writer that is not thread-safe (a StringWriter) is fine.
    /// </summary>
    public TextWriter? Warnings { get; set; } = DefaultOutput.Error;

    readonly Lock warningsGate = new();

    void Warn(string line)
    {
        lock (warningsGate) Warnings?.WriteLine(line);
    }

    /// <summary>Time the consumer of the last or current epoch spent waiting for a batch.</summary>
    public TimeSpan DataWait { get; private set; }

    /// <summary>Samples delivered in the last or current epoch.</summary>
    public long SamplesDelivered { get; private set; }

    /// <summary>
    /// Keras' class_weight "balanced" (as scikit-learn's): count / (classes x samples of the class), from the labels
    /// (folder counts), so rare classes weigh more. Classes without samples get weight 1.
    /// </summary>
    public Dictionary<int, double> ClassWeights()
    {
        var counts = Source.ClassCounts();
        long total = counts.Sum();
        var weights = new Dictionary<int, double>();
        for (int c = 0; c < counts.Length; c++)
            weights[c] = counts[c] == 0 ? 1.0 : (double)total / (counts.Length * counts[c]);
        return weights;
    }

    /// <summary>The sample order of <paramref name="epoch"/>.</summary>
    /// <param name="epoch">Epoch (0-based).</param>
    public int[] Order(int epoch) => Shuffle ? SampleRandom.Permutation(Count, Seed, epoch) : Enumerable.Range(0, Count).ToArray();

    /// <summary>
    /// One epoch as tensors: x float32 (N, H, W, C) in Keras' layout, y int64 (N). Each pair is owned by the caller.
    /// </summary>
    /// <param name="epoch">Epoch (0-based): selects the order and the augmentation draws.</param>
    /// <param name="maxBatches">Stop after this many batches (Keras' steps_per_epoch); null for all.</param>
    public IEnumerable<(Tensor X, Tensor Y)> Epoch(int epoch = 0, int? maxBatches = null)
    {
        int h = Source.Height, w = Source.Width, c = Source.Channels;
        foreach (var b in Batches(epoch, maxBatches))
            yield return (tensor(b.Pixels, [b.Count, h, w, c]), tensor(b.Labels, [b.Count]));
    }

    /// <summary>One epoch as raw batches (no tensors): see <see cref="Epoch"/>.</summary>
    /// <param name="epoch">Epoch (0-based).</param>
    /// <param name="maxBatches">Stop after this many batches; null for all.</param>
    /// <exception cref="ConvKitException">Another enumeration of this loader is running.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="epoch"/> is negative or <paramref name="maxBatches"/> not positive.</exception>
    public IEnumerable<DataBatch> Batches(int epoch = 0, int? maxBatches = null)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (epoch < 0) throw new InvalidOptionException(nameof(epoch), $"epoch must be >= 0; received {epoch}.");
        if (maxBatches is < 1) throw new InvalidOptionException(nameof(maxBatches), $"steps per epoch must be positive; received {maxBatches}.");
        return Run(epoch, Math.Min(maxBatches ?? int.MaxValue, BatchesPerEpoch));
    }

    IEnumerable<DataBatch> Run(int epoch, int batches)
    {
        if (Interlocked.Exchange(ref enumerating, 1) != 0)
            throw new ConvKitException("this DataLoader is already being enumerated (one epoch at a time per loader).");
        int skippedBefore = skipped.Count;
        DataWait = TimeSpan.Zero;
        SamplesDelivered = 0;
        var order = Order(epoch);
        var wait = new Stopwatch();
        try
        {
            if (Workers == 0)
            {
                var scratch = new Scratch(Source.SampleBytes);
                for (int b = 0; b < batches; b++)
                {
                    wait.Start();
                    var batch = Produce(order, b, epoch, scratch);
                    wait.Stop();
                    DataWait = wait.Elapsed;
                    if (batch.Count == 0) continue;
                    SamplesDelivered += batch.Count;
                    yield return batch;
                }
            }
            else
            {
                using var pipeline = new Pipeline(this, order, epoch, batches);
                for (int b = 0; b < batches; b++)
                {
                    wait.Start();
                    var batch = pipeline.Take(b);
                    wait.Stop();
                    DataWait = wait.Elapsed;
                    if (batch.Count == 0) continue;
                    SamplesDelivered += batch.Count;
                    yield return batch;
                }
            }
            int newSkips = skipped.Count - skippedBefore;
            if (newSkips > 0)
                Warn($"warning: {skipped.Count} of {Count} files could not be decoded and were skipped (this epoch met {newSkips} for the first time).");
        }
        finally
        {
            Volatile.Write(ref enumerating, 0);
        }
    }

    sealed class Scratch(int sampleBytes)
    {
        public readonly byte[] Sample = new byte[sampleBytes];
        public readonly byte[] Warp = new byte[sampleBytes];
    }

    DataBatch Produce(int[] order, int b, int epoch, Scratch scratch)
    {
        int start = b * BatchSize, len = Math.Min(BatchSize, order.Length - start);
        int sampleBytes = Source.SampleBytes;
        var pixels = new float[len * sampleBytes];
        var labels = new List<long>(len);
        var indices = new List<int>(len);
        float scale = Rescale;
        for (int i = 0; i < len; i++)
        {
            int index = order[start + i];
            var sample = scratch.Sample.AsSpan();
            if (!TryGetSample(index, sample)) continue;
            if (Augmentation is { } aug)
            {
                var rng = new SampleRandom(Seed, epoch, index);
                aug.Apply(sample, Source.Height, Source.Width, Source.Channels, ref rng, scratch.Warp);
            }
            var dst = pixels.AsSpan(indices.Count * sampleBytes, sampleBytes);
            for (int k = 0; k < sampleBytes; k++) dst[k] = sample[k] * scale;
            labels.Add(Source.LabelOf(index));
            indices.Add(index);
        }
        if (indices.Count < len) Array.Resize(ref pixels, indices.Count * sampleBytes);
        return new DataBatch(pixels, labels.ToArray(), indices.ToArray());
    }

    bool TryGetSample(int index, Span<byte> sample)
    {
        if (cacheState is not null)
        {
            byte state = Volatile.Read(ref cacheState[index]);
            if (state == 2) return false;
            if (state == 1)
            {
                if (memoryCache is not null) memoryCache[index]!.CopyTo(sample);
                else RandomAccess.Read(diskCache!, sample, (long)index * sample.Length);
                return true;
            }
        }
        else if (skipped.ContainsKey(index)) return false;
        try
        {
            Source.Load(index, sample);
        }
        catch (ImageDecodeException e)
        {
            if (skipped.TryAdd(index, e.Message)) Warn($"warning: skipped {e.Message}");
            if (cacheState is not null) Volatile.Write(ref cacheState[index], 2);
            return false;
        }
        if (memoryCache is not null)
        {
            memoryCache[index] = sample.ToArray();
            Volatile.Write(ref cacheState![index], 1);
        }
        else if (diskCache is not null)
        {
            RandomAccess.Write(diskCache, sample, (long)index * sample.Length);
            Volatile.Write(ref cacheState![index], 1);
        }
        return true;
    }

    sealed class Pipeline : IDisposable
    {
        readonly DataLoader loader;
        readonly int[] order;
        readonly int epoch, batches;
        readonly object gate = new();
        readonly (int Index, DataBatch? Batch, Exception? Error)[] slots;
        readonly Thread[] threads;
        int next, consumed;
        bool stop;

        public Pipeline(DataLoader loader, int[] order, int epoch, int batches)
        {
            this.loader = loader;
            this.order = order;
            this.epoch = epoch;
            this.batches = batches;
            slots = new (int, DataBatch?, Exception?)[loader.Prefetch];
            for (int i = 0; i < slots.Length; i++) slots[i].Index = -1;
            threads = new Thread[Math.Min(loader.Workers, batches)];
            for (int i = 0; i < threads.Length; i++)
            {
                threads[i] = new Thread(Work) { IsBackground = true, Name = $"convkit-data-{i}" };
                threads[i].Start();
            }
        }

        void Work()
        {
            var scratch = new Scratch(loader.Source.SampleBytes);
            while (true)
            {
                int b;
                lock (gate)
                {
                    while (!stop && next < batches && next >= consumed + slots.Length) Monitor.Wait(gate);
                    if (stop || next >= batches) return;
                    b = next++;
                }
                DataBatch? batch = null;
                Exception? error = null;
                try { batch = loader.Produce(order, b, epoch, scratch); }
                catch (Exception e) { error = e; }
                lock (gate)
                {
                    slots[b % slots.Length] = (b, batch, error);
                    Monitor.PulseAll(gate);
                    if (error is not null) return;
                }
            }
        }

        public DataBatch Take(int b)
        {
            lock (gate)
            {
                while (slots[b % slots.Length].Index != b) Monitor.Wait(gate);
                var (_, batch, error) = slots[b % slots.Length];
                slots[b % slots.Length] = (-1, null, null);
                consumed = b + 1;
                Monitor.PulseAll(gate);
                if (error is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
                return batch!;
            }
        }

        public void Dispose()
        {
            lock (gate)
            {
                stop = true;
                Monitor.PulseAll(gate);
            }
            foreach (var t in threads) t.Join();
        }
    }

    /// <summary>Deletes the disk cache and frees the memory cache.</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        diskCache?.Dispose();
        if (diskCachePath is not null && File.Exists(diskCachePath)) File.Delete(diskCachePath);
    }
}
