using ConvKit.Callbacks;
using ConvKit.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Distributed;

/// <summary>
/// Data-parallel training over a <see cref="ProcessGroup"/>, as PyTorch's DistributedDataParallel and Keras'
/// <c>MultiWorkerMirroredStrategy</c>: every rank holds a full replica of the model and trains on its own shard of
/// each global batch; gradients are averaged across the ranks before every optimizer step, so the replicas stay equal.
/// Attach it with <see cref="Model.Distribute"/>; <see cref="Model.Fit"/> then:
/// <list type="bullet">
/// <item>broadcasts the weights (and batch-normalization statistics) of rank 0 to every rank before the first step;</item>
/// <item>agrees on rank 0's shuffling seed, draws one permutation per epoch from it on every rank, and gives rank r
/// samples [r·B, (r+1)·B) of each global batch of WorldSize·B samples (B = batchSize per rank); the last partial
/// global batch is dropped, so every rank runs the same number of equal-size steps;</item>
/// <item>averages gradients by all-reduce in buckets of about <see cref="BucketBytes"/> (after backward, not
/// overlapped with it);</item>
/// <item>averages the epoch's training metrics across the ranks (exact for mean metrics such as loss and accuracy,
/// since the shards are equal in size). Validation runs on the whole validation set on every rank.</item>
/// </list>
/// With this scheme, K steps on W ranks with batch B equal K steps of one process with batch W·B (same seed), up to
/// floating-point rounding.
/// </summary>
/// <remarks>
/// Batch normalization keeps per-rank batch statistics during training (each rank normalizes its own B samples, as
/// DDP without SyncBatchNorm); the moving statistics of rank 0 are the ones saved. Callbacks that write files
/// (checkpoints, logs) belong on rank 0 only (<see cref="IsChief"/>); the CLI does so.
/// Thread safety: as the model it is attached to (one Fit at a time).
/// </remarks>
public sealed class DataParallel
{
    /// <summary>Creates the strategy over a joined group.</summary>
    /// <param name="group">The process group (not owned: dispose it yourself after training).</param>
    /// <param name="bucketBytes">Approximate size of one gradient all-reduce (PyTorch DDP's default is 25 MB).</param>
    /// <exception cref="InvalidOptionException">bucketBytes is below 1 KiB.</exception>
    public DataParallel(ProcessGroup group, long bucketBytes = 25L << 20)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (bucketBytes < 1024) throw new InvalidOptionException(nameof(bucketBytes), $"bucketBytes must be at least 1024; received {bucketBytes}.");
        Group = group;
        BucketBytes = bucketBytes;
    }

    /// <summary>The group the replicas synchronize through.</summary>
    public ProcessGroup Group { get; }

    /// <summary>Approximate bytes per gradient all-reduce.</summary>
    public long BucketBytes { get; }

    /// <summary>This rank.</summary>
    public int Rank => Group.Rank;

    /// <summary>The number of replicas.</summary>
    public int WorldSize => Group.WorldSize;

    /// <summary>True on rank 0, which writes checkpoints, logs and the final model.</summary>
    public bool IsChief => Group.Rank == 0;

    /// <summary>Number of gradient all-reduce calls so far (diagnostics, benchmarks).</summary>
    public long AllReduceCalls { get; private set; }

    /// <summary>Copies rank 0's weights (trainable or not, batch-normalization statistics included) to every rank.</summary>
    /// <exception cref="DistributedException">A peer left or the timeout passed.</exception>
    public void BroadcastWeights(Model model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        using var _ = no_grad();
        foreach (var w in model.Weights)
        {
            var t = w.Value;
            if (!seen.Add(t)) continue;
            if (t.is_contiguous() && t.device_type == DeviceType.CPU) Group.Broadcast(t);
            else
            {
                using var tmp = t.cpu().contiguous();
                Group.Broadcast(tmp);
                t.copy_(tmp);
            }
        }
    }

    /// <summary>Rank 0's value of <paramref name="seed"/>, on every rank.</summary>
    internal long AgreeSeed(long seed)
    {
        using var t = tensor(new[] { seed });
        Group.Broadcast(t);
        return t.item<long>();
    }

    /// <summary>Steps per epoch: whole global batches only. Checks that every rank holds the same number of samples.</summary>
    internal int Steps(long n, int batchSize)
    {
        using (var t = tensor(new[] { (double)n, (double)n * n }))
        {
            Group.AllReduce(t);
            var s = t.data<double>().ToArray();
            if (s[0] != (double)n * WorldSize || s[1] != (double)n * n * WorldSize)
                throw new DistributedException(DistributedFailure.Configuration,
                    $"rank {Rank} holds {n} training samples but the ranks disagree (sum {s[0]} over WORLD_SIZE={WorldSize}): every rank must load the same dataset; the strategy shards it.");
        }
        long global = (long)batchSize * WorldSize;
        long steps = n / global;
        if (steps == 0)
            throw new DistributedException(DistributedFailure.Configuration,
                $"{n} training samples make no whole global batch of {global} (batch size {batchSize} x WORLD_SIZE={WorldSize}): lower the batch size.");
        return (int)Math.Min(steps, int.MaxValue);
    }

    /// <summary>This rank's sample indices for one epoch, batch after batch (Steps x batchSize of them).</summary>
    internal Tensor EpochIndices(long n, int batchSize, int steps, bool shuffle, Generator generator, Device device)
    {
        using var scope = NewDisposeScope();
        using var end = n.ToScalar();
        var perm = shuffle ? randperm(n, dtype: int64, device: device, generator: generator) : arange(ConvKit.Native.Scalars.Zero, end, ConvKit.Native.Scalars.One, int64, device);
        long global = (long)batchSize * WorldSize;
        // (steps, world, batch) -> this rank's (steps, batch), flattened.
        var mine = perm.narrow(0, 0, steps * global).view(steps, WorldSize, batchSize).select(1, Rank).reshape(-1).contiguous();
        return mine.MoveToOuterDisposeScope();
    }

    /// <summary>Averages the gradients of <paramref name="parameters"/> across the ranks, in buckets.</summary>
    internal void AverageGradients(IReadOnlyList<TorchSharp.Modules.Parameter> parameters)
    {
        var grads = new List<Tensor>(parameters.Count);
        foreach (var p in parameters)
            if (p.grad is { } g) grads.Add(g);
        int i = 0;
        while (i < grads.Count)
        {
            var dtype = grads[i].dtype;
            long bytes = 0;
            int j = i;
            while (j < grads.Count && grads[j].dtype == dtype && (j == i || bytes + grads[j].NumberOfElements * grads[j].ElementSize <= BucketBytes))
            {
                bytes += grads[j].NumberOfElements * grads[j].ElementSize;
                j++;
            }
            using (var scope = NewDisposeScope())
            {
                var flat = cat(grads.Skip(i).Take(j - i).Select(g => g.reshape(-1)).ToList(), 0).contiguous();
                Group.AllReduce(flat, ReduceOperation.Average);
                AllReduceCalls++;
                long offset = 0;
                using var _ = no_grad();
                for (int k = i; k < j; k++)
                {
                    long count = grads[k].NumberOfElements;
                    grads[k].copy_(flat.narrow(0, offset, count).view_as(grads[k]));
                    offset += count;
                }
            }
            i = j;
        }
    }

    /// <summary>Averages every value of <paramref name="logs"/> across the ranks (same keys on every rank).</summary>
    internal void ReduceLogs(Logs logs)
    {
        var keys = logs.Keys.OrderBy(k => k, StringComparer.Ordinal).ToArray();
        if (keys.Length == 0) return;
        using var t = tensor(keys.Select(k => logs[k]).ToArray());
        Group.AllReduce(t, ReduceOperation.Average);
        var v = t.data<double>().ToArray();
        for (int k = 0; k < keys.Length; k++) logs[keys[k]] = v[k];
    }
}
