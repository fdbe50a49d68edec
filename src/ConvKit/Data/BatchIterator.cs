using static TorchSharp.torch;

namespace ConvKit.Data;

/// <summary>
/// Splits in-memory samples into (x, y) batches along the first axis, in a new random order every epoch when
/// shuffling. Does not own <c>x</c> and <c>y</c>; each yielded batch is a new pair of tensors owned by the caller.
/// </summary>
public sealed class BatchIterator
{
    readonly Tensor x, y;
    readonly Generator? generator;

    /// <summary>Creates an iterator over <paramref name="x"/> and <paramref name="y"/>, which must have equal first dimensions.</summary>
    /// <param name="x">Inputs, e.g. float32 (N, C, H, W).</param>
    /// <param name="y">Targets, e.g. int64 (N) or one-hot (N, K).</param>
    /// <param name="batchSize">Samples per batch; the last batch may be smaller unless <paramref name="dropLast"/>.</param>
    /// <param name="shuffle">Whether each epoch visits the samples in a new random order.</param>
    /// <param name="generator">Source of the random orders; null uses torch's global generator.</param>
    /// <param name="dropLast">Whether to skip a final, smaller batch.</param>
    /// <exception cref="ShapeException">The first dimensions differ or a tensor is a scalar.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="batchSize"/> is not positive.</exception>
    public BatchIterator(Tensor x, Tensor y, int batchSize, bool shuffle = true, Generator? generator = null, bool dropLast = false)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        Require.Positive(batchSize);
        if (x.dim() == 0 || y.dim() == 0 || x.shape[0] != y.shape[0])
            throw new ShapeException($"x and y need equal first dimensions, got [{string.Join(", ", x.shape)}] and [{string.Join(", ", y.shape)}]");
        this.x = x;
        this.y = y;
        this.generator = generator;
        BatchSize = batchSize;
        Shuffle = shuffle;
        DropLast = dropLast;
    }

    /// <summary>Samples per batch.</summary>
    public int BatchSize { get; }

    /// <summary>Whether each epoch is shuffled.</summary>
    public bool Shuffle { get; }

    /// <summary>Whether a final, smaller batch is skipped.</summary>
    public bool DropLast { get; }

    /// <summary>Number of samples.</summary>
    public long Count => x.shape[0];

    /// <summary>Batches yielded by one epoch.</summary>
    public long BatchesPerEpoch => DropLast ? Count / BatchSize : (Count + BatchSize - 1) / BatchSize;

    /// <summary>One pass over the data. Each call draws a new order when shuffling.</summary>
    public IEnumerable<(Tensor X, Tensor Y)> Epoch()
    {
        long n = Count;
        // The permutation is drawn when enumeration starts, so the generator advances once per epoch.
        using var order = Shuffle ? randperm(n, generator: generator, device: x.device) : null;
        for (long start = 0; start < n; start += BatchSize)
        {
            long len = Math.Min(BatchSize, n - start);
            if (len < BatchSize && DropLast) yield break;
            if (order is null)
            {
                using var xs = x.narrow(0, start, len);
                using var ys = y.narrow(0, start, len);
                yield return (xs.clone(), ys.clone());
            }
            else
            {
                using var idx = order.narrow(0, start, len);
                yield return (x.index_select(0, idx), y.index_select(0, idx));
            }
        }
    }
}
