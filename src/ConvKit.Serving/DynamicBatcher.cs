// Triton's dynamic batcher for one model: requests wait in a bounded queue; each of a fixed number of worker threads
// takes the oldest, gathers more until --max-batch samples or until the oldest has waited --max-delay-ms, runs them as
// one forward pass and hands each request its rows. A full queue refuses at once (503) rather than growing memory.
using System.Collections.Concurrent;
using System.Diagnostics;

namespace ConvKit.Serving;

/// <summary>Queues requests for one <see cref="ServedModel"/> and runs them in batches on its own worker threads.</summary>
public sealed class DynamicBatcher : IDisposable
{
    sealed class Job(float[] input, int samples, CancellationToken cancel)
    {
        public readonly float[] Input = input;
        public readonly int Samples = samples;
        public readonly CancellationToken Cancel = cancel;
        public readonly long Enqueued = Stopwatch.GetTimestamp();
        public readonly TaskCompletionSource<float[]> Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    readonly ServedModel model;
    readonly BlockingCollection<Job> queue;
    readonly Thread[] workers;
    readonly int maxBatch;
    readonly long maxDelayTicks;
    readonly ServingMetrics? metrics;
    int disposed;

    /// <summary>Starts <see cref="ServingOptions.Workers"/> worker threads for <paramref name="model"/>.</summary>
    /// <param name="model">The model to run.</param>
    /// <param name="options">Batch size, delay, workers and queue capacity.</param>
    /// <param name="metrics">Where batch sizes, inference times and queue depth are recorded; null for none.</param>
    /// <exception cref="ServingOptionException">The options are invalid.</exception>
    public DynamicBatcher(ServedModel model, ServingOptions options, ServingMetrics? metrics = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        this.model = model;
        this.metrics = metrics;
        maxBatch = options.MaxBatch;
        maxDelayTicks = (long)(options.MaxDelayMs * Stopwatch.Frequency / 1000);
        queue = new BlockingCollection<Job>(new ConcurrentQueue<Job>(), options.QueueCapacity);
        workers = new Thread[options.Workers];
        for (int i = 0; i < workers.Length; i++)
        {
            workers[i] = new Thread(Work) { IsBackground = true, Name = $"convkit-serve {model.Name} #{i}" };
            workers[i].Start();
        }
    }

    /// <summary>Requests waiting now.</summary>
    public int QueueDepth => queue.Count;

    /// <summary>
    /// Queues <paramref name="samples"/> samples and returns their outputs (row-major floats) once their batch ran.
    /// With a batch-invariant model (the default), each sample's output is bit-identical to
    /// <see cref="Models.Inference.InferenceModel.Predict"/> on that sample alone.
    /// </summary>
    /// <param name="input">Row-major floats, <c>samples x SampleSize</c>; not copied, not to be written afterwards.</param>
    /// <param name="samples">Samples in <paramref name="input"/>; more than --max-batch run as a batch of their own.</param>
    /// <param name="cancel">Gives up waiting (the request timed out or the client left); a queued request is then skipped.</param>
    /// <exception cref="InferenceRequestException">503 with Retry-After: the queue is full, or the server is stopping.</exception>
    public Task<float[]> InferAsync(float[] input, int samples, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (samples < 1 || (long)samples * model.SampleSize != input.Length)
            throw new ArgumentException($"{input.Length} floats are not {samples} samples of {model.SampleSize}.", nameof(input));
        var job = new Job(input, samples, cancel);
        bool added;
        try
        {
            added = queue.TryAdd(job);
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException)
        {
            throw new InferenceRequestException(503, $"the server is stopping; model '{model.Name}' takes no new requests.") { RetryAfterSeconds = 1 };
        }
        if (!added)
            throw new InferenceRequestException(503, $"model '{model.Name}' is overloaded: its queue holds {queue.BoundedCapacity} requests (--queue); retry later.") { RetryAfterSeconds = 1 };
        metrics?.QueueDepth(model.Name, queue.Count);
        return job.Done.Task.WaitAsync(cancel);
    }

    void Work()
    {
        Job? carry = null;
        var batch = new List<Job>(maxBatch);
        while (true)
        {
            Job first;
            if (carry is not null) (first, carry) = (carry, null);
            else if (!queue.TryTake(out first!, Timeout.Infinite)) return; // completed and empty: drained
            if (Skip(first)) continue;
            batch.Clear();
            batch.Add(first);
            int samples = first.Samples;
            long deadline = first.Enqueued + maxDelayTicks;
            int limit = model.MayBatch ? maxBatch : 1;
            while (samples < limit)
            {
                long wait = deadline - Stopwatch.GetTimestamp();
                Job? next;
                if (wait <= 0)
                {
                    if (!queue.TryTake(out next)) break;
                }
                else if (!queue.TryTake(out next, TimeSpan.FromTicks(Math.Max(1, wait * TimeSpan.TicksPerSecond / Stopwatch.Frequency)))) break;
                if (Skip(next)) continue;
                if (samples + next.Samples > limit)
                {
                    carry = next;
                    break;
                }
                batch.Add(next);
                samples += next.Samples;
            }
            metrics?.QueueDepth(model.Name, queue.Count);
            Run(batch, samples);
        }
    }

    static bool Skip(Job job)
    {
        if (!job.Cancel.IsCancellationRequested) return false;
        job.Done.TrySetCanceled(job.Cancel);
        return true;
    }

    void Run(List<Job> batch, int samples)
    {
        try
        {
            float[] input;
            if (batch.Count == 1) input = batch[0].Input;
            else
            {
                input = new float[(long)samples * model.SampleSize];
                int offset = 0;
                foreach (var job in batch)
                {
                    job.Input.CopyTo(input, offset);
                    offset += job.Input.Length;
                }
            }
            long start = Stopwatch.GetTimestamp();
            var output = model.Run(input, samples);
            metrics?.Batch(model.Name, samples, Stopwatch.GetElapsedTime(start).TotalSeconds);
            if (batch.Count == 1)
            {
                batch[0].Done.TrySetResult(output);
                return;
            }
            int at = 0;
            foreach (var job in batch)
            {
                int length = job.Samples * model.OutputSize;
                job.Done.TrySetResult(output.AsSpan(at, length).ToArray());
                at += length;
            }
        }
        catch (Exception e)
        {
            foreach (var job in batch) job.Done.TrySetException(e);
        }
    }

    /// <summary>Takes no new requests, runs those queued, and waits for the workers to finish.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref disposed, 1) != 0) return;
        queue.CompleteAdding();
        foreach (var w in workers) w.Join();
        queue.Dispose();
    }
}
