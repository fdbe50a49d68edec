using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Layers;

/// <summary>
/// Batch normalization, Keras' <c>BatchNormalization</c>, with Keras' defaults: axis -1 (channels), momentum 0.99
/// (moving = 0.99·moving + 0.01·batch), epsilon 1e-3. Weights in Keras order: <c>gamma</c>, <c>beta</c> (trainable),
/// <c>moving_mean</c>, <c>moving_variance</c> (not trainable). In training it normalises with batch statistics and
/// updates the moving ones; in inference it uses the moving ones.
/// </summary>
public class BatchNormalization : Layer
{
    Tensor? gamma, beta, movingMean, movingVariance;

    /// <summary>Creates the layer with Keras' arguments.</summary>
    /// <exception cref="LayerArgumentException">momentum outside [0, 1] or epsilon not positive.</exception>
    public BatchNormalization(int axis = -1, double momentum = 0.99, double epsilon = 1e-3, bool center = true, bool scale = true,
        Initializer? betaInitializer = null, Initializer? gammaInitializer = null,
        Initializer? movingMeanInitializer = null, Initializer? movingVarianceInitializer = null, string? name = null) : base(name)
    {
        if (momentum is < 0 or > 1) throw ArgumentError("momentum", $"must be in [0, 1]; received momentum={momentum}.");
        if (epsilon <= 0) throw ArgumentError("epsilon", $"must be positive; received epsilon={epsilon}.");
        Axis = axis;
        Momentum = momentum;
        Epsilon = epsilon;
        Center = center;
        Scale = scale;
        BetaInitializer = betaInitializer ?? Initializers.Zeros;
        GammaInitializer = gammaInitializer ?? Initializers.Ones;
        MovingMeanInitializer = movingMeanInitializer ?? Initializers.Zeros;
        MovingVarianceInitializer = movingVarianceInitializer ?? Initializers.Ones;
    }

    /// <summary>The normalised axis in Keras' terms (-1 = channels).</summary>
    public int Axis { get; }

    /// <summary>Keras' momentum of the moving statistics.</summary>
    public double Momentum { get; }

    /// <summary>Added to the variance.</summary>
    public double Epsilon { get; }

    /// <summary>Whether beta is used.</summary>
    public bool Center { get; }

    /// <summary>Whether gamma is used.</summary>
    public bool Scale { get; }

    /// <summary>Beta initializer.</summary>
    public Initializer BetaInitializer { get; }

    /// <summary>Gamma initializer.</summary>
    public Initializer GammaInitializer { get; }

    /// <summary>Moving mean initializer.</summary>
    public Initializer MovingMeanInitializer { get; }

    /// <summary>Moving variance initializer.</summary>
    public Initializer MovingVarianceInitializer { get; }

    /// <summary>Scale, or null when <see cref="Scale"/> is false or before building.</summary>
    public Tensor? Gamma => gamma;

    /// <summary>Offset, or null when <see cref="Center"/> is false or before building.</summary>
    public Tensor? Beta => beta;

    /// <summary>Moving mean (a buffer).</summary>
    public Tensor? MovingMean => movingMean;

    /// <summary>Moving variance (a buffer).</summary>
    public Tensor? MovingVariance => movingVariance;

    int NormalizedKerasAxis(Shape s)
    {
        int a = Axis < 0 ? s.Rank + 1 + Axis : Axis;
        if (a < 1 || a > s.Rank)
            throw ArgumentError("axis", $"axis={Axis} is out of range for input {s.ToBatchString()} (the batch axis cannot be normalised).");
        return a;
    }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape)
    {
        int a = NormalizedKerasAxis(inputShape);
        if (inputShape[a - 1] == Shape.Unknown)
            throw new ShapeException($"{Describe}: axis {Axis} of input {inputShape.ToBatchString()} must have a known size.");
        return inputShape;
    }

    /// <inheritdoc/>
    protected override void Build(Shape inputShape)
    {
        long n = inputShape[NormalizedKerasAxis(inputShape) - 1];
        if (Scale) gamma = AddWeight("gamma", [n], GammaInitializer, n, n);
        if (Center) beta = AddWeight("beta", [n], BetaInitializer, n, n);
        movingMean = AddWeight("moving_mean", [n], MovingMeanInitializer, n, n, trainable: false);
        movingVariance = AddWeight("moving_variance", [n], MovingVarianceInitializer, n, n, trainable: false);
    }

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => d == (Axis < 0 ? rank + Axis : Axis - 1);

    /// <inheritdoc/>
    protected override void OnWeightsRebound()
    {
        gamma = GetWeight("gamma");
        beta = GetWeight("beta");
        movingMean = GetWeight("moving_mean");
        movingVariance = GetWeight("moving_variance");
    }

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs)
    {
        int axis = Layout.ToInternalAxis(Axis, (int)inputs.dim());
        // A frozen BatchNormalization runs in inference mode, as in Keras 2.1+ fine-tuning.
        bool useBatchStats = IsTraining && Trainable;
        if (axis == 1)
            return F.batch_norm(inputs, movingMean!, movingVariance!, gamma, beta, useBatchStats, 1 - Momentum, Epsilon);
        using var moved = inputs.movedim([axis], [1]);
        using var y = F.batch_norm(moved, movingMean!, movingVariance!, gamma, beta, useBatchStats, 1 - Momentum, Epsilon);
        return y.movedim([1], [axis]);
    }
}

/// <summary>Randomly zeroes inputs with probability <c>rate</c> in training (scaling the rest), Keras' <c>Dropout</c>.</summary>
public class Dropout : Layer
{
    /// <summary>Creates the layer.</summary>
    /// <exception cref="LayerArgumentException">rate outside [0, 1).</exception>
    public Dropout(double rate, string? name = null) : base(name)
    {
        if (rate is < 0 or >= 1) throw ArgumentError("rate", $"must be in [0, 1); received rate={rate}.");
        Rate = rate;
    }

    /// <summary>Fraction of inputs dropped in training.</summary>
    public double Rate { get; }

    /// <inheritdoc/>
    public override Shape ComputeOutputShape(Shape inputShape) => inputShape;

    /// <inheritdoc/>
    public override Tensor Call(Tensor inputs) => IsTraining && Rate > 0 ? F.dropout(inputs, Rate, training: true) : inputs;

    /// <inheritdoc/>
    protected override bool FixedDimension(int rank, int d) => false;
}
