using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Training;

public class OptimizerTests
{
    [Fact]
    public void KerasDefaults()
    {
        Assert.Equal(0.01, new SGD().LearningRate);
        var adam = new Adam();
        Assert.Equal((0.001, 0.9, 0.999, 1e-7), (adam.LearningRate, adam.Beta1, adam.Beta2, adam.Epsilon));
        var rms = new RMSprop();
        Assert.Equal((0.001, 0.9, 1e-7), (rms.LearningRate, rms.Rho, rms.Epsilon));
        Assert.Equal(0.004, new AdamW().WeightDecay);
        Assert.IsType<Adam>((Optimizer)"adam");
        Assert.Equal("learningRate", Assert.Throws<InvalidOptionException>(() => new SGD(learningRate: -1)).Option);
    }

    [Fact]
    public void SgdStepMatchesHandComputedUpdateAndSkipsFrozenWeights()
    {
        // One Dense(1, linear) with MSE: w' = w - lr · dL/dw, dL/dw = 2 (w·x - y) x for one sample.
        using var _ = Backend.NameScope();
        var frozen = new Dense(1, useBias: false, inputShape: 1, kernelInitializer: "ones") { Trainable = false };
        var dense = new Dense(1, useBias: false, kernelInitializer: "ones");
        var model = new Sequential([frozen, dense]);
        model.Compile(optimizer: new SGD(learningRate: 0.1), loss: "mse");
        using var two = 2f.ToScalar();
        using var five = 5f.ToScalar();
        model.Fit(full(1, 1, two), full(1, 1, five), epochs: 1, verbose: 0, shuffle: false);
        // prediction 2, error -3, gradient 2·(-3)·2 = -12 (input of the trainable layer is 2), w = 1 + 1.2.
        Assert.Equal(2.2f, dense.Kernel!.item<float>(), 5);
        Assert.Equal(1f, frozen.Kernel!.item<float>());
        Assert.Single(model.Optimizer!.TorchOptimizer!.parameters());
    }

    [Fact]
    public void ClipValueAndClipNormBoundTheStep()
    {
        using var _ = Backend.NameScope();
        var dense = new Dense(1, useBias: false, inputShape: 1, kernelInitializer: "ones");
        var model = new Sequential([dense]);
        model.Compile(optimizer: new SGD(learningRate: 0.1, clipvalue: 0.5), loss: "mse");
        using var two = 2f.ToScalar();
        using var five = 5f.ToScalar();
        model.Fit(full(1, 1, two), full(1, 1, five), verbose: 0); // gradient -12 clipped to -0.5
        Assert.Equal(1.05f, dense.Kernel!.item<float>(), 5);

        using var __ = Backend.NameScope();
        var d2 = new Dense(2, useBias: false, inputShape: 1, kernelInitializer: "ones");
        var m2 = new Sequential([d2]);
        m2.Compile(optimizer: new SGD(learningRate: 1, clipnorm: 1), loss: "mse");
        using var one = 1f.ToScalar();
        m2.Fit(full(1, 1, one), tensor(new float[] { 4f, 5f }).reshape(1, 2), verbose: 0);
        // Gradient (-3, -4) has norm 5; clipped to norm 1: (-0.6, -0.8).
        var w = d2.Kernel!.flatten().data<float>().ToArray();
        Assert.Equal(1.6f, w[0], 5);
        Assert.Equal(1.8f, w[1], 5);
    }

    [Fact]
    public void DecoupledWeightDecayShrinksWeights()
    {
        using var _ = Backend.NameScope();
        var dense = new Dense(1, useBias: false, inputShape: 1, kernelInitializer: "ones");
        var model = new Sequential([dense]);
        model.Compile(optimizer: new SGD(learningRate: 0.1, weightDecay: 0.5), loss: "mse");
        model.Fit(zeros(1, 1), zeros(1, 1), verbose: 0); // zero gradient: only the decay acts, w·(1 − 0.1·0.5)
        Assert.Equal(0.95f, dense.Kernel!.item<float>(), 6);
    }

    [Fact]
    public void SettingLearningRateReachesTheTorchOptimizer()
    {
        var (x, y) = TestData.Separable(16);
        var model = TestData.Mlp();
        var opt = new Adam(learningRate: 0.01);
        model.Compile(optimizer: opt, loss: "sparse_categorical_crossentropy");
        model.Fit(x, y, verbose: 0);
        opt.LearningRate = 0.123;
        Assert.All(opt.TorchOptimizer!.ParamGroups, g => Assert.Equal(0.123, g.LearningRate));
    }
}
