using ConvKit.Native;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Layers;

/// <summary>
/// Fills a new weight, as Keras' initializers do. Fans are those of Keras' kernel layout (receptive field × channels),
/// which the layers compute and pass in whatever internal layout they store the weight.
/// Converts from Keras' names: <c>"glorot_uniform"</c>, <c>"he_normal"</c>, <c>"zeros"</c>...
/// </summary>
public abstract class Initializer
{
    /// <summary>Keras' name of the initializer.</summary>
    public abstract string Name { get; }

    /// <summary>
    /// Fills <paramref name="target"/> in place (called under no_grad) with the given Keras fans. Fan-scaled initializers
    /// (Glorot, He, LeCun) reject a fan below 1 with a <see cref="LayerArgumentException"/>; <see cref="Fill(Tensor)"/>
    /// derives the fans from the shape instead.
    /// </summary>
    public abstract void Fill(Tensor target, long fanIn, long fanOut);

    /// <summary>
    /// Fills <paramref name="target"/> in place with Keras' fans derived from its shape by <see cref="ComputeFans"/>:
    /// what a layer's kernel of that shape would get.
    /// </summary>
    /// <exception cref="LayerArgumentException">The tensor has a zero-sized dimension, so a fan-scaled initializer has no fan.</exception>
    public void Fill(Tensor target)
    {
        ArgumentNullException.ThrowIfNull(target);
        var (fanIn, fanOut) = ComputeFans(target.shape);
        Fill(target, fanIn, fanOut);
    }

    /// <summary>
    /// Keras' <c>compute_fans</c> for a weight in ConvKit's internal layout: rank 0 → (1, 1); rank 1 (n) → (n, n);
    /// Dense kernels (units, in) → (in, units); convolution kernels (out, in/groups, kh, kw) → (in/groups·kh·kw,
    /// out·kh·kw), the receptive field times the channels, as Keras computes them on its (kh, kw, in, out) layout.
    /// </summary>
    public static (long FanIn, long FanOut) ComputeFans(ReadOnlySpan<long> shape)
    {
        if (shape.Length == 0) return (1, 1);
        if (shape.Length == 1) return (shape[0], shape[0]);
        long receptiveField = 1;
        foreach (var d in shape[2..]) receptiveField *= d;
        return (shape[1] * receptiveField, shape[0] * receptiveField);
    }

    /// <summary>
    /// The numbers that configure it beyond its name (Keras' initializer config: <c>value</c>, <c>mean</c>/<c>stddev</c>,
    /// <c>minval</c>/<c>maxval</c>); empty for the named defaults. <see cref="Initializers.FromConfig"/> rebuilds it.
    /// </summary>
    public virtual IReadOnlyDictionary<string, double> Parameters { get; } = new Dictionary<string, double>();

    /// <summary>An initializer by Keras' name.</summary>
    /// <exception cref="LayerArgumentException">Unknown name.</exception>
    public static implicit operator Initializer(string name) => Initializers.Get(name);

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>Keras' built-in initializers.</summary>
public static class Initializers
{
    /// <summary>Uniform in ±sqrt(6 / (fan_in + fan_out)). Keras' default for Conv2D and Dense kernels.</summary>
    public static Initializer GlorotUniform { get; } = new VarianceScaling("glorot_uniform", 1.0, FanMode.Average, uniform: true);

    /// <summary>Truncated normal with stddev sqrt(2 / (fan_in + fan_out)).</summary>
    public static Initializer GlorotNormal { get; } = new VarianceScaling("glorot_normal", 1.0, FanMode.Average, uniform: false);

    /// <summary>Truncated normal with stddev sqrt(2 / fan_in).</summary>
    public static Initializer HeNormal { get; } = new VarianceScaling("he_normal", 2.0, FanMode.In, uniform: false);

    /// <summary>Uniform in ±sqrt(6 / fan_in).</summary>
    public static Initializer HeUniform { get; } = new VarianceScaling("he_uniform", 2.0, FanMode.In, uniform: true);

    /// <summary>Truncated normal with stddev sqrt(1 / fan_in).</summary>
    public static Initializer LecunNormal { get; } = new VarianceScaling("lecun_normal", 1.0, FanMode.In, uniform: false);

    /// <summary>Uniform in ±sqrt(3 / fan_in).</summary>
    public static Initializer LecunUniform { get; } = new VarianceScaling("lecun_uniform", 1.0, FanMode.In, uniform: true);

    /// <summary>All zeros. Keras' default for biases.</summary>
    public static Initializer Zeros { get; } = new ConstantInit("zeros", 0);

    /// <summary>All ones.</summary>
    public static Initializer Ones { get; } = new ConstantInit("ones", 1);

    /// <summary>Normal(0, 0.05), Keras' <c>random_normal</c> defaults.</summary>
    public static Initializer RandomNormal { get; } = new NormalInit("random_normal", 0, 0.05, truncated: false);

    /// <summary>Uniform(-0.05, 0.05), Keras' <c>random_uniform</c> defaults.</summary>
    public static Initializer RandomUniform { get; } = new UniformInit("random_uniform", -0.05, 0.05);

    /// <summary>Normal(0, 0.05) truncated at two standard deviations.</summary>
    public static Initializer TruncatedNormal { get; } = new NormalInit("truncated_normal", 0, 0.05, truncated: true);

    /// <summary>A constant.</summary>
    public static Initializer Constant(double value) => new ConstantInit("constant", value);

    /// <summary>Rebuilds an initializer from its name and <see cref="Initializer.Parameters"/>.</summary>
    /// <exception cref="LayerArgumentException">Unknown name, or a parameter is missing.</exception>
    public static Initializer FromConfig(string name, IReadOnlyDictionary<string, double>? parameters)
    {
        if (parameters is null || parameters.Count == 0) return Get(name);
        double P(string key) => parameters.TryGetValue(key, out var v) ? v
            : throw new LayerArgumentException("Initializers", "initializer", $"'{name}' needs parameter '{key}'; received [{string.Join(", ", parameters.Keys)}].");
        return name.ToLowerInvariant() switch
        {
            "constant" => Constant(P("value")),
            "random_normal" => Normal(P("mean"), P("stddev")),
            "random_uniform" => Uniform(P("minval"), P("maxval")),
            _ => Get(name),
        };
    }

    /// <summary>Normal(mean, stddev).</summary>
    public static Initializer Normal(double mean, double stddev) => new NormalInit("random_normal", mean, stddev, truncated: false);

    /// <summary>Uniform(min, max).</summary>
    public static Initializer Uniform(double min, double max) => new UniformInit("random_uniform", min, max);

    /// <summary>Looks an initializer up by Keras' name.</summary>
    /// <exception cref="LayerArgumentException">Unknown name.</exception>
    public static Initializer Get(string name) => name.ToLowerInvariant() switch
    {
        "glorot_uniform" or "glorotuniform" or "xavier_uniform" => GlorotUniform,
        "glorot_normal" or "glorotnormal" or "xavier_normal" => GlorotNormal,
        "he_normal" or "henormal" => HeNormal,
        "he_uniform" or "heuniform" => HeUniform,
        "lecun_normal" => LecunNormal,
        "lecun_uniform" => LecunUniform,
        "zeros" or "zero" => Zeros,
        "ones" or "one" => Ones,
        "random_normal" or "randomnormal" => RandomNormal,
        "random_uniform" or "randomuniform" => RandomUniform,
        "truncated_normal" or "truncatednormal" => TruncatedNormal,
        _ => throw new LayerArgumentException("Initializers", "initializer", $"unknown initializer '{name}'; known: glorot_uniform, glorot_normal, he_normal, he_uniform, lecun_normal, lecun_uniform, zeros, ones, random_normal, random_uniform, truncated_normal"),
    };

    enum FanMode { In, Out, Average }

    // erf(2 / sqrt 2) = 2·Φ(2) - 1: the range of 2·U - 1 whose inverse error function lands within ±2 standard deviations.
    const double Erf2OverSqrt2 = 0.95449973610364158;

    /// <summary>
    /// Normal(mean, std) truncated at ±2 std by inverse-CDF sampling. TorchSharp 0.107's <c>nn.init.trunc_normal_</c>
    /// fills the tensor with a constant (every value equal to std), so it is not used.
    /// </summary>
    static void SampleTruncatedNormal(Tensor target, double mean, double std)
    {
        target.uniform_(-Erf2OverSqrt2, Erf2OverSqrt2);
        target.erfinv_();
        using var scale = (std * Math.Sqrt(2.0)).ToScalar();
        using var shift = mean.ToScalar();
        using var low = (mean - 2 * std).ToScalar();
        using var high = (mean + 2 * std).ToScalar();
        target.mul_(scale).add_(shift, Scalars.One);
        target.clamp_(low, high);
    }

    sealed class VarianceScaling(string name, double scale, FanMode mode, bool uniform) : Initializer
    {
        // Keras divides the stddev of its truncated normal by this constant: the stddev of a unit normal truncated at ±2.
        const double TruncationCorrection = 0.87962566103423978;

        public override string Name => name;

        public override void Fill(Tensor target, long fanIn, long fanOut)
        {
            // Fill(t, 0, 0) used to fill U(-1.73, 1.73) as if the fan were 1: a silent wrong scale.
            if (fanIn < 1 || fanOut < 1)
                throw new LayerArgumentException(name, fanIn < 1 ? "fanIn" : "fanOut",
                    $"must be at least 1; received fanIn={fanIn}, fanOut={fanOut} for a weight of shape [{string.Join(", ", target.shape)}]. "
                    + "Call Fill(target) to derive Keras' fans from the shape (out, in, kh, kw), or pass them.");
            double n = mode switch { FanMode.In => fanIn, FanMode.Out => fanOut, _ => (fanIn + fanOut) / 2.0 };
            double variance = scale / n;
            if (uniform)
            {
                double limit = Math.Sqrt(3.0 * variance);
                target.uniform_(-limit, limit);
            }
            else
            {
                double std = Math.Sqrt(variance) / TruncationCorrection;
                SampleTruncatedNormal(target, 0, std);
            }
        }
    }

    sealed class ConstantInit(string name, double value) : Initializer
    {
        public override string Name => name;

        public override IReadOnlyDictionary<string, double> Parameters { get; } =
            name == "constant" ? new Dictionary<string, double> { ["value"] = value } : new Dictionary<string, double>();

        public override void Fill(Tensor target, long fanIn, long fanOut)
        {
            using var v = value.ToScalar();
            target.fill_(v);
        }
    }

    sealed class NormalInit(string name, double mean, double std, bool truncated) : Initializer
    {
        public override string Name => name;

        public override IReadOnlyDictionary<string, double> Parameters { get; } =
            new Dictionary<string, double> { ["mean"] = mean, ["stddev"] = std };

        public override void Fill(Tensor target, long fanIn, long fanOut)
        {
            if (truncated) SampleTruncatedNormal(target, mean, std);
            else target.normal_(mean, std);
        }
    }

    sealed class UniformInit(string name, double min, double max) : Initializer
    {
        public override string Name => name;

        public override IReadOnlyDictionary<string, double> Parameters { get; } =
            new Dictionary<string, double> { ["minval"] = min, ["maxval"] = max };

        public override void Fill(Tensor target, long fanIn, long fanOut) => target.uniform_(min, max);
    }
}

/// <summary>Keras' L2 kernel regularizer: adds <c>factor × Σ w²</c> to the loss.</summary>
/// <param name="Factor">The penalty factor, Keras' <c>l2</c> (default 0.01).</param>
public sealed record L2(double Factor = 0.01)
{
    /// <summary>The penalty for one weight.</summary>
    public Tensor Penalty(Tensor weight)
    {
        using var factor = Factor.ToScalar();
        return weight.pow(Scalars.Two).sum().mul(factor); // square(), whose 2 TorchSharp would make itself
    }
}
