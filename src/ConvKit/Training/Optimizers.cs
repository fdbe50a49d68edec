using ConvKit.Layers;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace ConvKit.Training;

/// <summary>
/// An optimizer with Keras' arguments and defaults, wrapping TorchSharp's <c>torch.optim</c> (stepped by
/// <see cref="ScalarSafe"/>'s overrides, which keep their Scalars alive). The TorchSharp optimizer is
/// created at the first <c>Fit</c>, when the weights exist, over the model's trainable weights only. Weight decay is
/// decoupled as in Keras 3 (<c>w -= lr · weight_decay · w</c> before the update); <see cref="Clipnorm"/> clips each
/// weight's gradient by its own norm, <see cref="GlobalClipnorm"/> all of them together, <see cref="Clipvalue"/>
/// element-wise. Converts from Keras' names: <c>optimizer: "adam"</c>.
/// </summary>
public abstract class Optimizer
{
    double learningRate;
    optim.Optimizer? torchOptimizer;
    Parameter[] parameters = [];
    Tensor[] grads = [];
    double[] groupMultipliers = [1];
    readonly List<(Layer Layer, double Multiplier)> layerMultipliers = [];

    /// <summary>Creates the optimizer.</summary>
    /// <exception cref="InvalidOptionException">A rate, decay or clipping bound is negative or zero where it must be positive.</exception>
    protected Optimizer(string name, double learningRate, double weightDecay, double? clipnorm, double? clipvalue, double? globalClipnorm)
    {
        if (!(learningRate >= 0)) throw new InvalidOptionException(nameof(learningRate), $"learning_rate must be >= 0; received {learningRate}.");
        if (!(weightDecay >= 0)) throw new InvalidOptionException(nameof(weightDecay), $"weight_decay must be >= 0; received {weightDecay}.");
        if (clipnorm is <= 0) throw new InvalidOptionException(nameof(clipnorm), $"clipnorm must be positive; received {clipnorm}.");
        if (clipvalue is <= 0) throw new InvalidOptionException(nameof(clipvalue), $"clipvalue must be positive; received {clipvalue}.");
        if (globalClipnorm is <= 0) throw new InvalidOptionException(nameof(globalClipnorm), $"global_clipnorm must be positive; received {globalClipnorm}.");
        if (clipnorm is not null && globalClipnorm is not null)
            throw new InvalidOptionException(nameof(globalClipnorm), "only one of clipnorm and global_clipnorm can be set.");
        Name = name;
        this.learningRate = learningRate;
        WeightDecay = weightDecay;
        Clipnorm = clipnorm;
        Clipvalue = clipvalue;
        GlobalClipnorm = globalClipnorm;
    }

    /// <summary>Keras' name.</summary>
    public string Name { get; }

    /// <summary>
    /// The learning rate the optimizer uses. Setting it (schedulers do) changes every parameter group of the
    /// underlying TorchSharp optimizer immediately: each group to this rate times its multiplier
    /// (<see cref="SetLearningRateMultiplier"/>).
    /// </summary>
    /// <exception cref="InvalidOptionException">Negative or NaN.</exception>
    public double LearningRate
    {
        get => learningRate;
        set
        {
            if (!(value >= 0)) throw new InvalidOptionException(nameof(value), $"learning_rate must be >= 0; received {value}.");
            learningRate = value;
            if (torchOptimizer is not null)
            {
                int i = 0;
                foreach (var g in torchOptimizer.ParamGroups) g.LearningRate = value * groupMultipliers[i++];
            }
        }
    }

    /// <summary>
    /// Per-layer learning rates (PyTorch's parameter groups): the trainable weights of <paramref name="layer"/> (a
    /// layer, or a nested model such as a backbone) are stepped at <see cref="LearningRate"/> × <paramref name="multiplier"/>,
    /// the others at the rate itself; schedulers scale every group together. A later call for the same layer replaces
    /// its multiplier; where layers nest, the call made last wins for the weights they share. Takes effect at the next
    /// <c>Fit</c> (which rebuilds the TorchSharp optimizer when the grouping changed; its moments are then reset).
    /// </summary>
    /// <exception cref="InvalidOptionException"><paramref name="multiplier"/> is negative, NaN or infinite.</exception>
    public void SetLearningRateMultiplier(Layer layer, double multiplier)
    {
        ArgumentNullException.ThrowIfNull(layer);
        if (!double.IsFinite(multiplier) || multiplier < 0)
            throw new InvalidOptionException(nameof(multiplier), $"the learning-rate multiplier of layer '{layer.Name}' must be a finite number >= 0; received {multiplier}.");
        layerMultipliers.RemoveAll(e => ReferenceEquals(e.Layer, layer));
        layerMultipliers.Add((layer, multiplier));
        grouping = null;
    }

    /// <summary>The rate the trainable weights of <paramref name="layer"/> are stepped at: <see cref="LearningRate"/> times their multiplier.</summary>
    public double LearningRateOf(Layer layer)
    {
        ArgumentNullException.ThrowIfNull(layer);
        var p = layer.TrainableWeights.Select(w => w.Value).OfType<Parameter>().FirstOrDefault();
        return learningRate * (p is null ? 1 : MultiplierOf(p));
    }

    // The multiplier of one parameter: the last SetLearningRateMultiplier whose layer holds it, else 1.
    double MultiplierOf(Parameter p)
    {
        for (int i = layerMultipliers.Count - 1; i >= 0; i--)
            if (layerMultipliers[i].Layer.Weights.Any(w => ReferenceEquals(w.Value, p))) return layerMultipliers[i].Multiplier;
        return 1;
    }

    string? grouping; // the multipliers the TorchSharp optimizer was built with, to know when to rebuild it

    /// <summary>Decoupled weight decay factor (0 = none).</summary>
    public double WeightDecay { get; }

    /// <summary>Each weight's gradient is rescaled so that its L2 norm is at most this.</summary>
    public double? Clipnorm { get; }

    /// <summary>Gradients are clipped element-wise to [-clipvalue, clipvalue].</summary>
    public double? Clipvalue { get; }

    /// <summary>All gradients together are rescaled so that their global L2 norm is at most this.</summary>
    public double? GlobalClipnorm { get; }

    /// <summary>The TorchSharp optimizer, once the first Fit created it.</summary>
    public optim.Optimizer? TorchOptimizer => torchOptimizer;

    /// <summary>Whether the weight decay is done by the TorchSharp optimizer itself (AdamW) rather than by this class.</summary>
    private protected virtual bool DecaysInTorch => false;

    /// <summary>Creates the TorchSharp optimizer over <paramref name="parameters"/> at <paramref name="lr"/>.</summary>
    private protected abstract optim.Optimizer Create(IReadOnlyList<Parameter> parameters, double lr);

    /// <summary>A further parameter group of the TorchSharp optimizer's own type, at <paramref name="lr"/>.</summary>
    private protected abstract ParamGroup Group(IEnumerable<Parameter> parameters, double lr);

    /// <summary>Creates (or re-creates, when the set of trainable weights or their multipliers changed) the TorchSharp optimizer.</summary>
    internal void Build(IReadOnlyList<Parameter> trainable)
    {
        var multipliers = trainable.Select(MultiplierOf).ToArray();
        var key = string.Join(",", multipliers.Select(m => m.ToString("R", System.Globalization.CultureInfo.InvariantCulture)));
        if (torchOptimizer is not null && key == grouping && trainable.Count == parameters.Length && trainable.Select((p, i) => ReferenceEquals(p, parameters[i])).All(b => b))
            return;
        torchOptimizer?.Dispose();
        parameters = trainable.ToArray();
        grads = new Tensor[parameters.Length];
        grouping = key;
        // One group per distinct multiplier, in the order of first appearance (one group when none was set).
        var groups = parameters.Select((p, i) => (p, m: multipliers[i])).GroupBy(e => e.m).ToArray();
        groupMultipliers = groups.Length == 0 ? [1] : groups.Select(g => g.Key).ToArray();
        torchOptimizer = Create(groups.Length == 0 ? parameters : groups[0].Select(e => e.p).ToArray(), learningRate * groupMultipliers[0]);
        for (int i = 1; i < groups.Length; i++)
            ((OptimizerHelper)torchOptimizer).add_param_group(Group(groups[i].Select(e => e.p).ToArray(), learningRate * groupMultipliers[i]));
    }

    /// <summary>Clears the gradients before a backward pass.</summary>
    internal void ZeroGrad() => torchOptimizer!.zero_grad();

    /// <summary>Clips, decays and applies the gradients of the last backward pass.</summary>
    internal void Step()
    {
        if (Clipnorm is not null || Clipvalue is not null || GlobalClipnorm is not null) Clip();
        if (WeightDecay > 0 && !DecaysInTorch) Decay();
        torchOptimizer!.step();
    }

    /// <summary>Keras' decoupled weight decay, <c>w -= lr · weight_decay · w</c>, before the update.</summary>
    internal void Decay()
    {
        using var _ = no_grad();
        using var keep = (1 - learningRate * WeightDecay).ToScalar();
        if (groupMultipliers.Length == 1 && groupMultipliers[0] == 1)
        {
            foreach (var p in parameters) p.mul_(keep);
            return;
        }
        foreach (var p in parameters)
        {
            using var k = (1 - learningRate * MultiplierOf(p) * WeightDecay).ToScalar();
            p.mul_(k);
        }
    }

    /// <summary>Clips the gradients as <see cref="Clipvalue"/>, <see cref="Clipnorm"/> and <see cref="GlobalClipnorm"/> say.</summary>
    internal void Clip()
    {
        using var _ = no_grad();
        int n = 0;
        foreach (var p in parameters)
            if (p.grad is { } g) grads[n++] = g;
        var gs = grads.AsSpan(0, n);
        if (Clipvalue is { } v)
        {
            using var low = (-v).ToScalar();
            using var high = v.ToScalar();
            foreach (var g in gs) g.clamp_(low, high);
        }
        if (Clipnorm is { } clipnorm)
        {
            using var c = clipnorm.ToScalar();
            // Keras' clip_by_norm: g · c / max(‖g‖, c), without a host round trip.
            foreach (var g in gs)
            {
                using var norm = g.norm();
                using var denom = norm.clamp_min(c);
                g.mul_(c).div_(denom);
            }
        }
        if (GlobalClipnorm is { } globalClipnorm && n > 0)
        {
            using var gc = globalClipnorm.ToScalar();
            using var scope = NewDisposeScope();
            var total = stack(gs.ToArray().Select(g => g.norm()).ToArray()).norm();
            var scale = total.clamp_min(gc).reciprocal().mul(gc);
            foreach (var g in gs) g.mul_(scale);
        }
        Array.Clear(grads);
    }

    /// <summary>An optimizer by Keras' name, with Keras' defaults.</summary>
    /// <exception cref="UnknownNameException">Unknown name.</exception>
    public static implicit operator Optimizer(string name) => Optimizers.Get(name);

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>Stochastic gradient descent with optional (Nesterov) momentum. Keras' defaults: lr 0.01, momentum 0.</summary>
public sealed class SGD(double learningRate = 0.01, double momentum = 0, bool nesterov = false, double weightDecay = 0,
    double? clipnorm = null, double? clipvalue = null, double? globalClipnorm = null)
    : Optimizer("SGD", learningRate, weightDecay, clipnorm, clipvalue, globalClipnorm)
{
    /// <summary>Momentum factor.</summary>
    public double Momentum { get; } = momentum is >= 0 ? momentum : throw new InvalidOptionException(nameof(momentum), $"momentum must be >= 0; received {momentum}.");

    /// <summary>Nesterov momentum.</summary>
    public bool Nesterov { get; } = nesterov;

    private protected override optim.Optimizer Create(IReadOnlyList<Parameter> parameters, double lr) =>
        new ScalarSafe.SGD(parameters, lr, momentum: Momentum, nesterov: Nesterov);

    private protected override ParamGroup Group(IEnumerable<Parameter> parameters, double lr) =>
        new TorchSharp.Modules.SGD.ParamGroup(parameters, new TorchSharp.Modules.SGD.Options { LearningRate = lr });
}

/// <summary>Adam. Keras' defaults: lr 0.001, beta1 0.9, beta2 0.999, epsilon 1e-7.</summary>
/// <remarks>libtorch divides by <c>sqrt(v̂) + ε</c> where Keras divides by <c>sqrt(v) + ε</c> with the bias
/// correction folded into the rate; the two differ only in how ε scales in the first steps.</remarks>
public sealed class Adam(double learningRate = 0.001, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-7,
    bool amsgrad = false, double weightDecay = 0, double? clipnorm = null, double? clipvalue = null, double? globalClipnorm = null)
    : Optimizer("Adam", learningRate, weightDecay, clipnorm, clipvalue, globalClipnorm)
{
    /// <summary>Decay of the first moment.</summary>
    public double Beta1 { get; } = beta1;

    /// <summary>Decay of the second moment.</summary>
    public double Beta2 { get; } = beta2;

    /// <summary>Numerical stability constant.</summary>
    public double Epsilon { get; } = epsilon;

    /// <summary>Use the AMSGrad variant.</summary>
    public bool Amsgrad { get; } = amsgrad;

    private protected override optim.Optimizer Create(IReadOnlyList<Parameter> parameters, double lr) =>
        new ScalarSafe.Adam(parameters, lr, Beta1, Beta2, Epsilon, amsgrad: Amsgrad);

    private protected override ParamGroup Group(IEnumerable<Parameter> parameters, double lr) =>
        new TorchSharp.Modules.Adam.ParamGroup(parameters, new TorchSharp.Modules.Adam.Options { LearningRate = lr });
}

/// <summary>Adam with decoupled weight decay. Keras' defaults: lr 0.001, weight decay 0.004, epsilon 1e-7.</summary>
public sealed class AdamW(double learningRate = 0.001, double weightDecay = 0.004, double beta1 = 0.9, double beta2 = 0.999,
    double epsilon = 1e-7, bool amsgrad = false, double? clipnorm = null, double? clipvalue = null, double? globalClipnorm = null)
    : Optimizer("AdamW", learningRate, weightDecay, clipnorm, clipvalue, globalClipnorm)
{
    /// <summary>Decay of the first moment.</summary>
    public double Beta1 { get; } = beta1;

    /// <summary>Decay of the second moment.</summary>
    public double Beta2 { get; } = beta2;

    /// <summary>Numerical stability constant.</summary>
    public double Epsilon { get; } = epsilon;

    /// <summary>Use the AMSGrad variant.</summary>
    public bool Amsgrad { get; } = amsgrad;

    private protected override bool DecaysInTorch => true;

    private protected override optim.Optimizer Create(IReadOnlyList<Parameter> parameters, double lr) =>
        new ScalarSafe.AdamW(parameters, lr, Beta1, Beta2, Epsilon, weight_decay: WeightDecay, amsgrad: Amsgrad);

    private protected override ParamGroup Group(IEnumerable<Parameter> parameters, double lr) =>
        new TorchSharp.Modules.AdamW.ParamGroup(parameters, new TorchSharp.Modules.AdamW.Options { LearningRate = lr });
}

/// <summary>RMSprop. Keras' defaults: lr 0.001, rho 0.9, momentum 0, epsilon 1e-7, not centered.</summary>
public sealed class RMSprop(double learningRate = 0.001, double rho = 0.9, double momentum = 0, double epsilon = 1e-7,
    bool centered = false, double weightDecay = 0, double? clipnorm = null, double? clipvalue = null, double? globalClipnorm = null)
    : Optimizer("RMSprop", learningRate, weightDecay, clipnorm, clipvalue, globalClipnorm)
{
    /// <summary>Discount of the squared-gradient average.</summary>
    public double Rho { get; } = rho;

    /// <summary>Momentum factor.</summary>
    public double Momentum { get; } = momentum;

    /// <summary>Numerical stability constant.</summary>
    public double Epsilon { get; } = epsilon;

    /// <summary>Normalise by the variance estimate instead of the raw second moment.</summary>
    public bool Centered { get; } = centered;

    private protected override optim.Optimizer Create(IReadOnlyList<Parameter> parameters, double lr) =>
        new ScalarSafe.RMSProp(parameters, lr, alpha: Rho, eps: Epsilon, momentum: Momentum, centered: Centered);

    private protected override ParamGroup Group(IEnumerable<Parameter> parameters, double lr) =>
        new TorchSharp.Modules.RMSProp.ParamGroup(parameters, new TorchSharp.Modules.RMSProp.Options { LearningRate = lr });
}

/// <summary>Optimizers by Keras' name.</summary>
public static class Optimizers
{
    /// <summary>An optimizer by Keras' name with Keras' defaults: sgd, adam, adamw, rmsprop.</summary>
    /// <exception cref="UnknownNameException">Unknown name.</exception>
    public static Optimizer Get(string name) => name?.ToLowerInvariant() switch
    {
        "sgd" => new SGD(),
        "adam" => new Adam(),
        "adamw" => new AdamW(),
        "rmsprop" => new RMSprop(),
        _ => throw new UnknownNameException("optimizer", name ?? "", $"unknown optimizer '{name}'; known: sgd, adam, adamw, rmsprop"),
    };
}
