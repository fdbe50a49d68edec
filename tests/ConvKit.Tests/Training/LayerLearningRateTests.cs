using ConvKit.Callbacks;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Training;

public class LayerLearningRateTests
{
    // Two Dense(1, linear, no bias) with kernels 1, MSE, x = 2, y = 5: h = 2, prediction 2, dL/dpred = 2·(2 − 5) = −6,
    // dL/dw2 = −6·h = −12, dL/dw1 = −6·w2·x = −12.
    static (Dense First, Dense Second, Sequential Model) Net(Optimizer optimizer, double firstMultiplier)
    {
        using var _ = Backend.NameScope();
        var first = new Dense(1, useBias: false, inputShape: 1, kernelInitializer: "ones");
        var second = new Dense(1, useBias: false, kernelInitializer: "ones");
        var model = new Sequential([first, second]);
        optimizer.SetLearningRateMultiplier(first, firstMultiplier);
        model.Compile(optimizer: optimizer, loss: "mse");
        using var two = 2f.ToScalar();
        using var five = 5f.ToScalar();
        model.Fit(full(1, 1, two), full(1, 1, five), epochs: 1, verbose: 0, shuffle: false);
        return (first, second, model);
    }

    [Fact]
    public void EachGroupOfAnSgdStepUsesItsRate()
    {
        var (first, second, model) = Net(new SGD(learningRate: 0.1), firstMultiplier: 0.5);
        Assert.Equal(1 + 0.05 * 12, first.Kernel!.item<float>(), 5);   // lr 0.1 × 0.5
        Assert.Equal(1 + 0.1 * 12, second.Kernel!.item<float>(), 5);   // lr 0.1
        Assert.Equal(2, model.Optimizer!.TorchOptimizer!.ParamGroups.Count());
        Assert.Equal(0.05, model.Optimizer.LearningRateOf(first), 12);
        Assert.Equal(0.1, model.Optimizer.LearningRateOf(second), 12);
    }

    [Fact]
    public void EachGroupOfAnAdamStepUsesItsRate()
    {
        // Adam's first step moves each weight by about its rate, against the gradient's sign.
        var (first, second, _) = Net(new Adam(learningRate: 0.1), firstMultiplier: 0.1);
        Assert.Equal(1.01, first.Kernel!.item<float>(), 4);
        Assert.Equal(1.1, second.Kernel!.item<float>(), 4);
    }

    [Fact]
    public void SettingTheRateMovesEveryGroupAtItsMultiplier()
    {
        var (_, _, model) = Net(new SGD(learningRate: 0.1), firstMultiplier: 0.25);
        model.Optimizer!.LearningRate = 0.2;
        Assert.Equal(new[] { 0.05, 0.2 }, model.Optimizer.TorchOptimizer!.ParamGroups.Select(g => Math.Round(g.LearningRate, 12)).ToArray());
    }

    [Fact]
    public void ANegativeMultiplierIsRefusedByName()
    {
        using var _ = Backend.NameScope();
        var dense = new Dense(1, inputShape: 1);
        Assert.Equal("multiplier", Assert.Throws<InvalidOptionException>(() => new SGD().SetLearningRateMultiplier(dense, -1)).Option);
    }

    [Fact]
    public void CosineDecayWarmsUpLinearlyThenFollowsTheCosine()
    {
        var schedule = new CosineDecay(peakLearningRate: 1.0, decaySteps: 4, warmupSteps: 2, alpha: 0.1);
        Assert.Equal(0.0, schedule.RateAt(0), 12);
        Assert.Equal(0.5, schedule.RateAt(1), 12);
        Assert.Equal(1.0, schedule.RateAt(2), 12);
        Assert.Equal(0.9 * 0.5 * (1 + Math.Cos(Math.PI / 4)) + 0.1, schedule.RateAt(3), 12);
        Assert.Equal(0.1 + 0.9 * 0.5, schedule.RateAt(4), 12);
        Assert.Equal(0.1, schedule.RateAt(6), 12);
        Assert.Equal(0.1, schedule.RateAt(100), 12);
        Assert.Equal("decaySteps", Assert.Throws<InvalidOptionException>(() => new CosineDecay(1, 0)).Option);
    }

    [Fact]
    public void CosineDecayOverEpochsSetsEachStepsRateInFit()
    {
        using var _ = Backend.NameScope();
        var model = new Sequential([new Dense(1, inputShape: 1)]);
        model.Compile(optimizer: new SGD(learningRate: 123), loss: "mse");
        var rates = new List<double>();
        var probe = new LambdaCallback { OnTrainBatchEndAction = (_, _) => rates.Add(model.Optimizer!.TorchOptimizer!.ParamGroups.First().LearningRate) };
        using var x = ones(8, 1);
        using var y = zeros(8, 1);
        // 4 steps per epoch, 1 warm-up epoch then 2 of cosine from 0.4.
        model.Fit(x, y, batchSize: 2, epochs: 3, verbose: 0, callbacks: [CosineDecay.OverEpochs(0.4, decayEpochs: 2, warmupEpochs: 1), probe]);
        var expected = Enumerable.Range(0, 12).Select(s => s < 4 ? 0.4 * s / 4 : 0.4 * 0.5 * (1 + Math.Cos(Math.PI * (s - 4) / 8))).ToArray();
        Assert.Equal(expected.Select(v => Math.Round(v, 10)), rates.Select(v => Math.Round(v, 10)));
    }
}
