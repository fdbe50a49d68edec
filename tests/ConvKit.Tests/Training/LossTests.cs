using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Training;
using static TorchSharp.torch;

namespace ConvKit.Tests.Training;

public class LossTests
{
    static double Item(Tensor t) => t.item<float>();

    [Fact]
    public void SparseCategoricalCrossentropyIsMeanNegativeLogOfTrueClass()
    {
        var p = tensor(new float[] { 0.7f, 0.2f, 0.1f, 0.1f, 0.3f, 0.6f }).reshape(2, 3);
        var y = tensor(new long[] { 0, 2 });
        double expected = -(Math.Log(0.7) + Math.Log(0.6)) / 2;
        Assert.Equal(expected, Item(new SparseCategoricalCrossentropy().Compute(y, p)), 5);
        // (N, 1) labels are accepted as Keras does.
        Assert.Equal(expected, Item(new SparseCategoricalCrossentropy().Compute(y.unsqueeze(1), p)), 5);
    }

    [Fact]
    public void FromLogitsMatchesLogSoftmax()
    {
        var logits = tensor(new float[] { 2f, 1f, 0f, -1f, 0.5f, 3f }).reshape(2, 3);
        var y = tensor(new long[] { 1, 2 });
        double Lse(double a, double b, double c) => Math.Log(Math.Exp(a) + Math.Exp(b) + Math.Exp(c));
        double expected = ((Lse(2, 1, 0) - 1) + (Lse(-1, 0.5, 3) - 3)) / 2;
        Assert.Equal(expected, Item(new SparseCategoricalCrossentropy(fromLogits: true).Compute(y, logits)), 5);
        Assert.Equal(expected, Item(new CategoricalCrossentropy(fromLogits: true).Compute(TestData.OneHot(y, 3), logits)), 5);
    }

    [Fact]
    public void ProbabilitiesAreClampedAtKerasEpsilon()
    {
        // A predicted probability of exactly 0 for the true class costs -log(1e-7), not infinity.
        var p = tensor(new float[] { 1f, 0f }).reshape(1, 2);
        var loss = Item(new SparseCategoricalCrossentropy().Compute(tensor(new long[] { 1 }), p));
        Assert.Equal(-Math.Log(1e-7), loss, 2);
    }

    [Fact]
    public void CategoricalCrossentropyWithLabelSmoothing()
    {
        var p = tensor(new float[] { 0.5f, 0.25f, 0.25f }).reshape(1, 3);
        var y = tensor(new float[] { 1f, 0f, 0f }).reshape(1, 3);
        // Smoothed targets: 0.9 + 0.1/3, 0.1/3, 0.1/3.
        double t0 = 0.9 + 0.1 / 3, t1 = 0.1 / 3;
        double expected = -(t0 * Math.Log(0.5) + 2 * t1 * Math.Log(0.25));
        Assert.Equal(expected, Item(new CategoricalCrossentropy(labelSmoothing: 0.1).Compute(y, p)), 5);
    }

    [Fact]
    public void BinaryCrossentropyAndSmoothing()
    {
        var p = tensor(new float[] { 0.8f, 0.3f }).reshape(2, 1);
        var y = tensor(new float[] { 1f, 0f }).reshape(2, 1);
        double expected = -(Math.Log(0.8) + Math.Log(0.7)) / 2;
        Assert.Equal(expected, Item(new BinaryCrossentropy().Compute(y, p)), 5);
        // Smoothing 0.2: targets 0.9 and 0.1.
        double smoothed = -((0.9 * Math.Log(0.8) + 0.1 * Math.Log(0.2)) + (0.1 * Math.Log(0.3) + 0.9 * Math.Log(0.7))) / 2;
        Assert.Equal(smoothed, Item(new BinaryCrossentropy(labelSmoothing: 0.2).Compute(y, p)), 5);
        var logits = tensor(new float[] { 1.3862944f, -0.8472979f }).reshape(2, 1); // logit(0.8), logit(0.3)
        Assert.Equal(expected, Item(new BinaryCrossentropy(fromLogits: true).Compute(y, logits)), 4);
    }

    [Fact]
    public void MeanSquaredErrorAndSampleWeights()
    {
        var p = tensor(new float[] { 1f, 2f, 3f, 5f }).reshape(2, 2);
        var y = tensor(new float[] { 0f, 2f, 3f, 3f }).reshape(2, 2);
        // Per sample: (1 + 0)/2 = 0.5 and (0 + 4)/2 = 2.
        Assert.Equal(1.25, Item(new MeanSquaredError().Compute(y, p)), 6);
        // Keras' sum_over_batch_size: Σ loss·w / N = (0.5·2 + 2·0.5) / 2.
        Assert.Equal(1.0, Item(new MeanSquaredError().Compute(y, p, tensor(new float[] { 2f, 0.5f }))), 6);
    }

    [Fact]
    public void NamesResolve()
    {
        Loss l = "sparse_categorical_crossentropy";
        Assert.IsType<SparseCategoricalCrossentropy>(l);
        Assert.IsType<MeanSquaredError>((Loss)"mse");
        Assert.Equal("hinge_of_doom", Assert.Throws<UnknownNameException>(() => (Loss)"hinge_of_doom").Name);
    }

    [Fact]
    public void SoftmaxModelWithExtremeLogitsGivesFiniteExactLoss()
    {
        // The last Dense applies softmax; its logits are (0, 200): softmax rounds to (0, 1) in float32, so the log of the
        // probability of class 0 would be clamped to -log(1e-7) ≈ 16.1. The fused path gives the exact 200.
        using var _ = Backend.NameScope();
        var dense = new Dense(2, activation: "softmax", useBias: false, inputShape: 1);
        var model = new Sequential([dense]);
        using (no_grad()) dense.Kernel!.copy_(tensor(new float[] { 0f, 200f }).reshape(2, 1));
        model.Compile(optimizer: new SGD(learningRate: 0), loss: "sparse_categorical_crossentropy");
        var result = model.Evaluate(ones(1, 1), tensor(new long[] { 0 }), verbose: 0);
        Assert.True(double.IsFinite(result["loss"]));
        Assert.Equal(200.0, result["loss"], 3);
        // Training through the same path keeps finite gradients.
        var h = model.Fit(ones(4, 1), zeros(4, dtype: int64), epochs: 1, verbose: 0);
        Assert.True(double.IsFinite(h["loss"][0]));
    }

    [Fact]
    public void SubclassedModelWithoutGraphClampsProbabilities()
    {
        var model = new SoftmaxNet();
        model.Build(1);
        using (no_grad()) model.Head.Kernel!.copy_(tensor(new float[] { 0f, 200f }).reshape(2, 1));
        model.Compile(optimizer: new SGD(learningRate: 0), loss: "sparse_categorical_crossentropy");
        var result = model.Evaluate(ones(1, 1), tensor(new long[] { 0 }), verbose: 0);
        Assert.Equal(-Math.Log(1e-7), result["loss"], 2);
    }

    sealed class SoftmaxNet : Model
    {
        public readonly Dense Head = new(2, activation: "softmax", useBias: false);

        public override Tensor Call(Tensor inputs) => Head.Apply(inputs);
    }
}
