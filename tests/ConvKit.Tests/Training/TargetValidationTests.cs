using ConvKit.Data;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Tests.Models;
using ConvKit.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Training;

/// <summary>
/// Targets that do not fit the loss, a metric or the model's output (issue 12: they reached libtorch as raw
/// ExternalExceptions with C++ frames, after an optimizer step, with the model left in training mode): a
/// <see cref="TargetException"/> naming the loss or metric, the dtypes and shapes, and the fix, before any step.
/// </summary>
[Collection(nameof(GlobalRandomCollection))]
public class TargetValidationTests
{
    const int Classes = 5;

    /// <summary>Dense classifier: 6 features -> <paramref name="units"/> units.</summary>
    internal static Model Classifier(int units = Classes, string activation = "softmax", string name = "clf")
    {
        manual_seed(3);
        var input = new Input(6);
        return new Model(input, new Dense(units, activation: activation).Apply(new Dense(8, activation: "relu").Apply(input)), name);
    }

    static Tensor X(long n = 12) { manual_seed(4); return randn(n, 6); }

    static Tensor Labels(params long[] values) => tensor(values, dtype: int64);

    static Tensor LabelsOfLength(long n, long value) => Full([n], value, int64);

    /// <summary>torch.full with an explicit Scalar (ScalarIlTests).</summary>
    static Tensor Full(long[] shape, double value, ScalarType dtype = ScalarType.Float32)
    {
        using var s = value.ToScalar();
        return full(shape, s, dtype: dtype);
    }

    static Tensor OneHot(long n, int classes) { using var l = LabelsOfLength(n, 1); return DataUtils.ToCategorical(l, classes); }

    public sealed record Case(string LossName, string[] Metrics, int Units, string Activation, Func<long, Tensor> Y, string[] MessageContains);

    static readonly Dictionary<string, Case> Cases = new()
    {
        ["categorical_crossentropy with int labels"] = new("categorical_crossentropy", [], Classes, "softmax", n => LabelsOfLength(n, 1),
            ["loss 'categorical_crossentropy'", "int64", "sparse_categorical_crossentropy", "DataUtils.ToCategorical(y, 5)"]),
        ["categorical_crossentropy with int32 labels"] = new("categorical_crossentropy", [], Classes, "softmax", n => LabelsOfLength(n, 1).to_type(int32),
            ["loss 'categorical_crossentropy'", "DataUtils.ToCategorical"]),
        ["top_k_categorical_accuracy with int labels"] = new("sparse_categorical_crossentropy", ["top_k_categorical_accuracy"], Classes, "softmax", n => LabelsOfLength(n, 1),
            ["metric 'top_k_categorical_accuracy'", "int64", "sparse_top_k_categorical_accuracy", "DataUtils.ToCategorical(y, 5)"]),
        ["categorical_accuracy with int labels"] = new("sparse_categorical_crossentropy", ["categorical_accuracy"], Classes, "softmax", n => LabelsOfLength(n, 1),
            ["metric 'categorical_accuracy'", "sparse_categorical_accuracy"]),
        ["sparse loss with one-hot floats"] = new("sparse_categorical_crossentropy", [], Classes, "softmax", n => OneHot(n, Classes),
            ["loss 'sparse_categorical_crossentropy'", "float32", $"[12, {Classes}]", "one-hot", "'categorical_crossentropy'"]),
        ["sparse top-k with one-hot floats"] = new("categorical_crossentropy", ["sparse_top_k_categorical_accuracy"], Classes, "softmax", n => OneHot(n, Classes),
            ["metric 'sparse_top_k_categorical_accuracy'", "one-hot", "'top_k_categorical_accuracy'"]),
        ["sparse loss with float labels"] = new("sparse_categorical_crossentropy", [], Classes, "softmax", n => Full([n], 2.0),
            ["loss 'sparse_categorical_crossentropy'", "float32", "to_type(int64)"]),
        ["label equal to the number of classes"] = new("sparse_categorical_crossentropy", [], Classes, "softmax", n => LabelsOfLength(n, Classes),
            ["loss 'sparse_categorical_crossentropy'", "[0, 4]", "from 5 to 5", "5 classes"]),
        ["label far above the classes"] = new("sparse_categorical_crossentropy", [], Classes, "softmax", n => LabelsOfLength(n, 999),
            ["[0, 4]", "to 999"]),
        ["negative label"] = new("sparse_categorical_crossentropy", [], Classes, "softmax", n => LabelsOfLength(n, -1),
            ["loss 'sparse_categorical_crossentropy'", "from -1"]),
        ["negative label, uint8 cannot but int8 can"] = new("sparse_categorical_crossentropy", [], Classes, "softmax", n => LabelsOfLength(n, -3).to_type(int8),
            ["from -3"]),
        ["sparse accuracy sees a label out of range"] = new("sparse_categorical_crossentropy", ["sparse_categorical_accuracy"], Classes, "softmax", n => LabelsOfLength(n, 7),
            ["'sparse_categorical_crossentropy'", "[0, 4]"]),
        ["labels of rank 2 with 2 columns"] = new("sparse_categorical_crossentropy", [], Classes, "softmax", n => zeros([n, 2], dtype: int64),
            ["one integer label per sample", "[12, 2]", "(None, 5)"]),
        ["labels of rank 3"] = new("sparse_categorical_crossentropy", [], Classes, "softmax", n => zeros([n, 1, 1], dtype: int64),
            ["one integer label per sample", "[12, 1, 1]"]),
        ["one-hot targets of the wrong width"] = new("categorical_crossentropy", [], Classes, "softmax", n => OneHot(n, 3),
            ["loss 'categorical_crossentropy'", "[12, 3]", "(None, 5)"]),
        ["one-hot targets as a vector"] = new("categorical_crossentropy", [], Classes, "softmax", n => ones([n]),
            ["loss 'categorical_crossentropy'", "[12]", "sparse_categorical_crossentropy"]),
        ["binary cross-entropy with a label 2"] = new("binary_crossentropy", [], 1, "sigmoid", n => Full([n, 1], 2.0),
            ["loss 'binary_crossentropy'", "[0, 1]", "from 2 to 2"]),
        ["binary cross-entropy with negative labels"] = new("binary_crossentropy", [], 1, "sigmoid", n => Full([n], -1.0),
            ["loss 'binary_crossentropy'", "from -1"]),
        ["binary cross-entropy with int labels 3"] = new("binary_crossentropy", [], 1, "sigmoid", n => LabelsOfLength(n, 3),
            ["loss 'binary_crossentropy'", "to 3"]),
        ["binary cross-entropy with targets of another width"] = new("binary_crossentropy", [], 1, "sigmoid", n => zeros([n, 4]),
            ["loss 'binary_crossentropy'", "[12, 4]", "(None, 1)"]),
        ["NaN one-hot targets"] = new("categorical_crossentropy", [], Classes, "softmax", n => { var y = OneHot(n, Classes); y[3, 0] = tensor(float.NaN); return y; },
            ["NaN or infinite", "sample 3"]),
        ["infinite regression targets"] = new("mean_squared_error", [], 3, "linear", n => { var y = zeros([n, 3]); y[5, 1] = tensor(float.PositiveInfinity); return y; },
            ["NaN or infinite", "sample 5"]),
        ["regression targets of the wrong shape"] = new("mse", [], 3, "linear", n => zeros([n, 4]),
            ["loss 'mean_squared_error'", "[12, 4]", "(None, 3)"]),
        ["NaN binary targets"] = new("binary_crossentropy", [], 1, "sigmoid", n => Full([n], double.NaN),
            ["NaN or infinite", "sample 0"]),
    };

    public static TheoryData<string> CaseNames => new(Cases.Keys);

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [MemberData(nameof(CaseNames))]
    public void FitRefusesBeforeAnyStepAndLeavesTheModelAsItWas(string name)
    {
        var c = Cases[name];
        using var model = Classifier(c.Units, c.Activation);
        model.Compile(new Adam(), c.LossName, c.Metrics.Select(Metrics.Get));
        using var x = X();
        using var y = c.Y(12);
        model.eval();
        var before = model.GetWeights();
        var e = Assert.Throws<TargetException>(() => model.Fit(x, y, batchSize: 4, epochs: 1, verbose: 0));
        Assert.Contains("model 'clf': Fit", e.Message);
        foreach (var part in c.MessageContains) Assert.Contains(part, e.Message);
        Assert.DoesNotContain("Exception raised from", e.Message);
        Assert.False(model.training, "Fit left the model in training mode");
        var after = model.GetWeights();
        for (int i = 0; i < before.Length; i++) Assert.True(ConcurrentInferenceTests.Identical(before[i], after[i]), $"weight {i} changed");
        foreach (var t in before.Concat(after)) t.Dispose();
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [MemberData(nameof(CaseNames))]
    public void EvaluateRefusesWithTheSameMessage(string name)
    {
        var c = Cases[name];
        using var model = Classifier(c.Units, c.Activation);
        model.Compile(new Adam(), c.LossName, c.Metrics.Select(Metrics.Get));
        using var x = X();
        using var y = c.Y(12);
        var e = Assert.Throws<TargetException>(() => model.Evaluate(x, y, verbose: 0));
        Assert.Contains("model 'clf': Evaluate", e.Message);
        foreach (var part in c.MessageContains) Assert.Contains(part, e.Message);
        Assert.True(model.training, "Evaluate switched the model's mode");
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void BadValidationTargetsAreRefusedBeforeTheFirstStep()
    {
        using var model = Classifier();
        model.Compile(new SGD(0.1), "sparse_categorical_crossentropy", []);
        using var x = X();
        using var y = LabelsOfLength(12, 1);
        using var yv = LabelsOfLength(12, 9);
        var before = model.GetWeights();
        var e = Assert.Throws<TargetException>(() => model.Fit(x, y, epochs: 1, verbose: 0, validationData: (x, yv)));
        Assert.Contains("Fit (validation_data)", e.Message);
        Assert.Contains("[0, 4]", e.Message);
        var after = model.GetWeights();
        for (int i = 0; i < before.Length; i++) Assert.True(ConcurrentInferenceTests.Identical(before[i], after[i]));
    }

    [Fact]
    public void AFailedFitLeavesTheOptimizerStateAsItWas()
    {
        // Adam's moments and step count: a failed Fit between two good ones changes nothing the second one computes.
        Tensor[] Run(bool failInBetween)
        {
            using var model = Classifier();
            model.Compile(new Adam(0.01), "sparse_categorical_crossentropy", []);
            using var x = X();
            using var y = LabelsOfLength(12, 2);
            model.Fit(x, y, batchSize: 4, epochs: 1, verbose: 0, shuffle: false);
            if (failInBetween)
            {
                using var bad = LabelsOfLength(12, 8);
                Assert.Throws<TargetException>(() => model.Fit(x, bad, batchSize: 4, epochs: 1, verbose: 0, shuffle: false));
            }
            model.Fit(x, y, batchSize: 4, epochs: 1, verbose: 0, shuffle: false);
            return model.GetWeights();
        }
        var clean = Run(false);
        var interrupted = Run(true);
        for (int i = 0; i < clean.Length; i++) Assert.True(ConcurrentInferenceTests.Identical(clean[i], interrupted[i]), $"weight {i} differs");
    }

    [Fact]
    public void ValidTargetsOfEveryKindStillTrain()
    {
        using var x = X();
        void Train(string loss, int units, string activation, Tensor y, params string[] metrics)
        {
            using var model = Classifier(units, activation);
            model.Compile(new SGD(0.01), loss, metrics.Select(Metrics.Get));
            var h = model.Fit(x, y, batchSize: 4, epochs: 1, verbose: 0);
            Assert.False(double.IsNaN(h["loss"][^1]), loss);
            model.Evaluate(x, y, verbose: 0);
        }
        using var labels = LabelsOfLength(12, 4);
        using var column = labels.unsqueeze(1);
        using var oneHot = OneHot(12, Classes);
        using var binary = Full([12, 1], 1.0);
        using var binaryVector = zeros(12);
        using var smooth = Full([12, 1], 0.25);
        Train("sparse_categorical_crossentropy", Classes, "softmax", labels, "accuracy", "sparse_top_k_categorical_accuracy");
        Train("sparse_categorical_crossentropy", Classes, "softmax", column, "sparse_categorical_accuracy");
        Train("categorical_crossentropy", Classes, "softmax", oneHot, "accuracy", "top_k_categorical_accuracy", "categorical_accuracy");
        Train("binary_crossentropy", 1, "sigmoid", binary, "accuracy");
        Train("binary_crossentropy", 1, "sigmoid", binaryVector, "binary_accuracy");
        Train("binary_crossentropy", 1, "sigmoid", smooth);
        using var reg = randn(12, 3);
        Train("mse", 3, "linear", reg, "mse");
    }

    /// <summary>A loss ConvKit does not validate, whose libtorch call fails.</summary>
    sealed class BrokenLoss() : Loss("broken")
    {
        public override Tensor Call(Tensor yTrue, Tensor yPred) => nn.functional.nll_loss(yPred, yTrue.to_type(float32));
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void ALibtorchFailureBecomesAConvKitExceptionWithoutCppFrames()
    {
        using var model = Classifier();
        model.Compile(new SGD(0.1), new BrokenLoss(), []);
        using var x = X();
        using var y = LabelsOfLength(12, 1);
        model.eval();
        var before = model.GetWeights();
        var fit = Assert.Throws<ConvKitException>(() => model.Fit(x, y, epochs: 1, verbose: 0));
        var evaluate = Assert.Throws<ConvKitException>(() => model.Evaluate(x, y, verbose: 0));
        foreach (var e in new[] { fit, evaluate })
        {
            Assert.Contains("model 'clf'", e.Message);
            Assert.Contains("failed inside libtorch", e.Message);
            Assert.DoesNotContain("Exception raised from", e.Message);
            Assert.DoesNotContain("frame #", e.Message);
        }
        Assert.False(model.training);
        var after = model.GetWeights();
        for (int i = 0; i < before.Length; i++) Assert.True(ConcurrentInferenceTests.Identical(before[i], after[i]));
    }

    [Fact]
    public void CatalogueHasAtLeast20TargetCases() => Assert.True(Cases.Count >= 20);
}
