using ConvKit.Distributed;

namespace ConvKit.Models;

// The seam between Fit and a distribution strategy (DESIGN.md, "Distribution as a strategy"): Fit asks these members
// and otherwise runs as on one process.
public partial class Model
{
    /// <summary>The data-parallel strategy <see cref="Fit"/> trains with, or null for one process (the default).</summary>
    public DataParallel? DistributionStrategy { get; private set; }

    /// <summary>
    /// Trains with <paramref name="strategy"/> from the next <see cref="Fit"/> on (Keras' <c>strategy.scope()</c>):
    /// weights broadcast from rank 0, each rank a disjoint shard of every global batch, gradients averaged across the
    /// ranks, epoch metrics averaged. Pass null to train on one process again.
    /// </summary>
    /// <returns>This model.</returns>
    public Model Distribute(DataParallel? strategy)
    {
        DistributionStrategy = strategy;
        return this;
    }

    /// <summary>Called by Fit once the optimizer is built: rank 0's weights to every rank.</summary>
    void BeginDistributedFit() => DistributionStrategy?.BroadcastWeights(this);

    long DistributedSeed(long seed) => DistributionStrategy?.AgreeSeed(seed) ?? seed;
}
