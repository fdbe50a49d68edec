using ConvKit.Applications;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Training;
using static TorchSharp.torch;

namespace ConvKit.Tests.Training;

/// <summary>Keras' Trainable semantics and the two-phase fine-tuning recipe.</summary>
public class FineTuningTests
{
    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    // A backbone with batch normalization, the Keras way: a zoo-style model without its top, pooled, under a new head.
    static (Model Full, Model Backbone) Transfer(int classes = 3)
    {
        var inputs = new Input(new Shape(8, 8, 1), name: "image");
        var x = new Conv2D(4, 3, padding: Padding.Same, name: "conv1").Apply(inputs);
        x = new BatchNormalization(name: "bn1").Apply(x);
        x = new ReLU(name: "relu1").Apply(x);
        x = new Conv2D(6, 3, name: "conv2").Apply(x);
        x = new BatchNormalization(name: "bn2").Apply(x);
        x = new GlobalAveragePooling2D(name: "gap").Apply(x);
        var backbone = new Model(inputs, x, "backbone");
        var top = new Input(new Shape(8, 8, 1), name: "top_in");
        var y = backbone.Apply(top);
        y = new Dense(classes, activation: "softmax", name: "head").Apply(y);
        return (new Model(top, y, "transfer"), backbone);
    }

    static (Tensor X, Tensor Y) Data(int n = 64, long seed = 3)
    {
        using var g = new TorchSharp.torch.Generator((ulong)seed);
        var x = rand([n, 8, 8, 1], generator: g);
        var y = randint(0, 3, [n], generator: g);
        return (x, y);
    }

    static Tensor[] Snapshot(Model m) => m.Weights.Select(w => w.Value.detach().clone()).ToArray();

    [Fact]
    public void AFrozenBackboneKeepsItsWeightsAndBatchNormStatisticsBitIdenticalThroughFit()
    {
        Backend.SetSeed(1);
        var (model, backbone) = Transfer();
        using var _ = model;
        backbone.Trainable = false;
        var frozenBefore = Snapshot(backbone);
        var headBefore = model.GetLayer("head").OwnWeights[0].Value.clone();
        model.Compile(optimizer: new Adam(0.01), loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
        var (x, y) = Data();
        model.Fit(x, y, batchSize: 16, epochs: 2, verbose: 0, seed: 5);

        var frozenAfter = backbone.Weights.Select(w => w.Value).ToArray();
        Assert.Equal(12, frozenAfter.Length); // conv kernel/bias x2, BN gamma/beta/mean/var x2
        for (int i = 0; i < frozenBefore.Length; i++) Assert.True(Same(frozenBefore[i], frozenAfter[i]), $"frozen weight {i} changed");
        Assert.False(Same(headBefore, model.GetLayer("head").OwnWeights[0].Value), "the head did not train");
        // Only the head's weights reach the optimizer.
        var optimized = model.Optimizer!.TorchOptimizer!.parameters().ToArray();
        Assert.Equal(2, optimized.Length);
    }

    [Fact]
    public void SummaryCountsFollowTrainable()
    {
        var (model, backbone) = Transfer();
        using var _ = model;
        var all = ModelSummary.Of(model);
        // conv1 40, bn1 16 (8 moving), conv2 222, bn2 24 (12 moving), head 21.
        Assert.Equal(40 + 8 + 222 + 12 + 21, all.TrainableParams);
        Assert.Equal(8 + 12, all.NonTrainableParams);
        backbone.Trainable = false;
        var frozen = ModelSummary.Of(model);
        Assert.Equal(21, frozen.TrainableParams);
        Assert.Equal(all.TotalParams - 21, frozen.NonTrainableParams);
        Assert.Contains("Trainable params: 21 ", model.Summary());
    }

    [Fact]
    public void UnfreezeTopTrainsOnlyTheTopLayersAndKeepsBatchNormFrozen()
    {
        Backend.SetSeed(2);
        var (model, backbone) = Transfer();
        using var _ = model;
        backbone.Trainable = false;
        var optimizer = new Adam(0.01);
        model.Compile(optimizer: optimizer, loss: "sparse_categorical_crossentropy");
        var (x, y) = Data();
        model.Fit(x, y, batchSize: 16, epochs: 1, verbose: 0, seed: 5);

        var unfrozen = FineTuning.UnfreezeTop(model, 2);
        Assert.Equal(["conv2", "head"], unfrozen);
        Assert.False(backbone.GetLayer("bn2").Trainable);
        Assert.False(backbone.GetLayer("conv1").Trainable);
        var conv1 = backbone.GetLayer("conv1").OwnWeights[0].Value.clone();
        var conv2 = backbone.GetLayer("conv2").OwnWeights[0].Value.clone();
        var bnStats = backbone.GetLayer("bn2").OwnWeights.Select(w => w.Value.clone()).ToArray();
        optimizer.LearningRate = 0.001;
        model.Fit(x, y, batchSize: 16, epochs: 1, verbose: 0, seed: 6);

        Assert.True(Same(conv1, backbone.GetLayer("conv1").OwnWeights[0].Value));
        Assert.False(Same(conv2, backbone.GetLayer("conv2").OwnWeights[0].Value), "the unfrozen conv2 did not train");
        var bnAfter = backbone.GetLayer("bn2").OwnWeights.Select(w => w.Value).ToArray();
        for (int i = 0; i < bnStats.Length; i++) Assert.True(Same(bnStats[i], bnAfter[i]), $"bn2 weight {i} changed");
        Assert.Equal(4, optimizer.TorchOptimizer!.parameters().Count());
        Assert.All(optimizer.TorchOptimizer.ParamGroups, g => Assert.Equal(0.001, g.LearningRate));

        var withBn = FineTuning.UnfreezeTop(model, 3, keepBatchNormFrozen: false);
        Assert.Equal(["conv2", "bn2", "head"], withBn);
        Assert.True(backbone.GetLayer("bn2").Trainable);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void BadFineTuningArgumentsGiveNamedErrors()
    {
        var (model, _) = Transfer();
        using var __ = model;
        var e = Assert.Throws<ConvKitException>(() => FineTuning.UnfreezeTop(model, 0));
        Assert.Equal("UnfreezeTop on model 'transfer': layers must be between 1 and 3 (its layers with weights, BatchNormalization not counted); received 0.", e.Message);
        Assert.Contains("received 4", Assert.Throws<ConvKitException>(() => FineTuning.UnfreezeTop(model, 4)).Message);
        e = Assert.Throws<ConvKitException>(() => FineTuning.FreezeAllBut(model, ["nohead"]));
        Assert.Contains("has no layer with weights named 'nohead'", e.Message);
        Assert.Contains("conv1, bn1, conv2, bn2, head", e.Message);
        Assert.Contains("at least one layer", Assert.Throws<ConvKitException>(() => FineTuning.FreezeAllBut(model, [])).Message);
    }

    [Fact]
    public void AZooBackboneWithoutItsTopTakesANewHeadTheKerasWay()
    {
        using var backbone = ModelRegistry.Create("lenet5", new ModelOptions { IncludeTop = false, Pooling = PoolingMode.Avg });
        var inputs = new Input(new Shape(28, 28, 1));
        var features = backbone.Apply(inputs);
        var outputs = new Dense(4, activation: "softmax", name: "new_head").Apply(features);
        using var model = new Model(inputs, outputs, "lenet5_transfer");
        var frozen = FineTuning.FreezeAllBut(model, ["new_head"]);
        Assert.NotEmpty(frozen);
        Assert.Equal(model.GetLayer("new_head").OwnWeights.Sum(w => w.Value.numel()), ModelSummary.Of(model).TrainableParams);
        var before = Snapshot(backbone);
        model.Compile(optimizer: "adam", loss: "sparse_categorical_crossentropy");
        using var x = rand(32, 28, 28, 1);
        using var y = randint(0, 4, [32]);
        model.Fit(x, y, batchSize: 16, epochs: 1, verbose: 0, seed: 1);
        var after = backbone.Weights.Select(w => w.Value).ToArray();
        for (int i = 0; i < before.Length; i++) Assert.True(Same(before[i], after[i]));
    }
}
