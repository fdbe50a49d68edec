using ConvKit.Applications;
using ConvKit.Callbacks;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Tests.Models;
using ConvKit.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Training;

/// <summary>
/// Library misuse catalogue (issue 12): Predict/Evaluate/Fit with wrong data or arguments, after Dispose, or against
/// each other. Each case names the exception type and what its message must name, and checks that the model is left
/// as it was (weights bit-identical, training flag unchanged).
/// </summary>
[Collection(nameof(GlobalRandomCollection))]
public class LibraryMisuseTests
{
    /// <summary>A compiled LeNet-5 ("lenet", input (28, 28, 1), 10 classes) and data that fit it.</summary>
    sealed class Fixture : IDisposable
    {
        public readonly Model Model;
        public readonly Tensor X = randn(6, 28, 28, 1);
        public readonly Tensor Y = randint(0, 10, 6, dtype: int64);

        public Fixture()
        {
            manual_seed(5);
            Model = ModelRegistry.Create("lenet5", new ModelOptions());
            Model.Compile(new SGD(0.01), "sparse_categorical_crossentropy", ["accuracy"]);
        }

        public void Dispose()
        {
            Model.Dispose();
            X.Dispose();
            Y.Dispose();
        }
    }

    sealed record Case(Type Expected, Action<Fixture> Act, params string[] MessageContains);

    static Tensor Disposed() { var t = zeros(2, 28, 28, 1); t.Dispose(); return t; }

    static readonly Dictionary<string, Case> Cases = new()
    {
        // Predict: data
        ["Predict: images without the channel axis"] = new(typeof(ShapeException), f => f.Model.Predict(zeros(2, 28, 28)), "(None, 28, 28, 1)", "(None, 28, 28)"),
        ["Predict: three channels for a grey model"] = new(typeof(ShapeException), f => f.Model.Predict(zeros(2, 28, 28, 3)), "(None, 28, 28, 1)", "(None, 28, 28, 3)"),
        ["Predict: wrong image size"] = new(typeof(ShapeException), f => f.Model.Predict(zeros(2, 32, 32, 1)), "(None, 28, 28, 1)", "(None, 32, 32, 1)"),
        ["Predict: NCHW instead of NHWC"] = new(typeof(ShapeException), f => f.Model.Predict(zeros(2, 1, 28, 28)), "(None, 1, 28, 28)"),
        ["Predict: a single image without batch axis"] = new(typeof(ShapeException), f => f.Model.Predict(zeros(28, 28, 1)), "(None, 28, 28, 1)", "(None, 28, 1)"),
        ["Predict: a vector"] = new(typeof(ShapeException), f => f.Model.Predict(zeros(784)), "Predict expects a batch", "[784]"),
        ["Predict: a scalar"] = new(typeof(ShapeException), f => f.Model.Predict(tensor(1f)), "Predict expects a batch", "[]"),
        ["Predict: byte images"] = new(typeof(ConvKitException), f => f.Model.Predict(zeros([2, 28, 28, 1], dtype: ScalarType.Byte)), "float inputs", "Byte", "to_type(float32)"),
        ["Predict: int64 images"] = new(typeof(ConvKitException), f => f.Model.Predict(zeros([2, 28, 28, 1], dtype: int64)), "float inputs", "Int64"),
        ["Predict: boolean images"] = new(typeof(ConvKitException), f => f.Model.Predict(zeros([2, 28, 28, 1], dtype: ScalarType.Bool)), "float inputs", "Bool"),
        ["Predict: a disposed tensor"] = new(typeof(ObjectDisposedException), f => f.Model.Predict(Disposed()), "disposed tensor", "lenet"),
        ["Predict: null"] = new(typeof(ArgumentNullException), f => f.Model.Predict((Tensor)null!), "x"),
        // Predict: arguments
        ["Predict: batch size 0"] = new(typeof(InvalidOptionException), f => f.Model.Predict(f.X, batchSize: 0), "batch_size", "received 0"),
        ["Predict: batch size -4"] = new(typeof(InvalidOptionException), f => f.Model.Predict(f.X, batchSize: -4), "batch_size", "received -4"),
        ["Predict: verbose 3"] = new(typeof(InvalidOptionException), f => f.Model.Predict(f.X, verbose: 3), "verbose", "received 3"),
        // Evaluate
        ["Evaluate: no samples"] = new(typeof(ShapeException), f => f.Model.Evaluate(zeros(0, 28, 28, 1), zeros([0], dtype: int64), verbose: 0), "Evaluate received no samples"),
        ["Evaluate: fewer targets than samples"] = new(typeof(ShapeException), f => f.Model.Evaluate(f.X, f.Y.narrow(0, 0, 4), verbose: 0), "6 input samples but 4 targets"),
        ["Evaluate: batch size 0"] = new(typeof(InvalidOptionException), f => f.Model.Evaluate(f.X, f.Y, batchSize: 0, verbose: 0), "batch_size", "received 0"),
        ["Evaluate: verbose -1"] = new(typeof(InvalidOptionException), f => f.Model.Evaluate(f.X, f.Y, verbose: -1), "verbose", "received -1"),
        ["Evaluate: sample weights of the wrong length"] = new(typeof(ShapeException), f => f.Model.Evaluate(f.X, f.Y, verbose: 0, sampleWeight: ones(4)), "sample_weight", "[6]", "[4]"),
        ["Evaluate: integer images"] = new(typeof(ConvKitException), f => f.Model.Evaluate(zeros([6, 28, 28, 1], dtype: int32), f.Y, verbose: 0), "float inputs", "Int32"),
        ["Evaluate: wrong channels"] = new(typeof(ShapeException), f => f.Model.Evaluate(zeros(6, 28, 28, 2), f.Y, verbose: 0), "(None, 28, 28, 2)"),
        ["Evaluate: scalar targets"] = new(typeof(ShapeException), f => f.Model.Evaluate(f.X, tensor(3L), verbose: 0), "y as a batch", "scalar"),
        ["Evaluate: disposed targets"] = new(typeof(ObjectDisposedException), f => { var y = zeros([6], dtype: int64); y.Dispose(); f.Model.Evaluate(f.X, y, verbose: 0); }, "disposed tensor as y"),
        ["Evaluate: not compiled"] = new(typeof(ConvKitException), f => { using var m = ModelRegistry.Create("lenet5", new ModelOptions()); m.Evaluate(f.X, f.Y, verbose: 0); }, "must be compiled before Evaluate", "Compile("),
        // Fit: arguments
        ["Fit: batch size 0"] = new(typeof(InvalidOptionException), f => f.Model.Fit(f.X, f.Y, batchSize: 0, verbose: 0), "batch_size", "received 0"),
        ["Fit: batch size -1"] = new(typeof(InvalidOptionException), f => f.Model.Fit(f.X, f.Y, batchSize: -1, verbose: 0), "batch_size", "received -1"),
        ["Fit: epochs -1"] = new(typeof(InvalidOptionException), f => f.Model.Fit(f.X, f.Y, epochs: -1, verbose: 0), "epochs", "received -1"),
        ["Fit: initial epoch -2"] = new(typeof(InvalidOptionException), f => f.Model.Fit(f.X, f.Y, initialEpoch: -2, verbose: 0), "initial_epoch", "received -2"),
        ["Fit: validation split 1"] = new(typeof(InvalidOptionException), f => f.Model.Fit(f.X, f.Y, validationSplit: 1, verbose: 0), "validation_split", "[0, 1)"),
        ["Fit: validation split -0.1"] = new(typeof(InvalidOptionException), f => f.Model.Fit(f.X, f.Y, validationSplit: -0.1, verbose: 0), "validation_split"),
        ["Fit: validation split NaN"] = new(typeof(InvalidOptionException), f => f.Model.Fit(f.X, f.Y, validationSplit: double.NaN, verbose: 0), "validation_split", "NaN"),
        ["Fit: validation split that empties a set"] = new(typeof(InvalidOptionException), f => f.Model.Fit(f.X, f.Y, validationSplit: 0.9, verbose: 0), "validation_split=0.9", "empty"),
        ["Fit: verbose 7"] = new(typeof(InvalidOptionException), f => f.Model.Fit(f.X, f.Y, verbose: 7), "verbose", "received 7"),
        ["Fit: class weight with a negative class"] = new(typeof(InvalidOptionException), f => f.Model.Fit(f.X, f.Y, verbose: 0, classWeight: new Dictionary<int, double> { [-1] = 2 }), "class_weight", "class indices >= 0"),
        // Fit: data
        ["Fit: no samples"] = new(typeof(ShapeException), f => f.Model.Fit(zeros(0, 28, 28, 1), zeros([0], dtype: int64), verbose: 0), "Fit received no samples"),
        ["Fit: more targets than samples"] = new(typeof(ShapeException), f => f.Model.Fit(f.X, zeros([9], dtype: int64), verbose: 0), "6 input samples but 9 targets"),
        ["Fit: byte images"] = new(typeof(ConvKitException), f => f.Model.Fit(zeros([6, 28, 28, 1], dtype: ScalarType.Byte), f.Y, verbose: 0), "float inputs", "Byte", "scale"),
        ["Fit: images without channel axis"] = new(typeof(ShapeException), f => f.Model.Fit(zeros(6, 28, 28), f.Y, verbose: 0), "(None, 28, 28, 1)", "(None, 28, 28)"),
        ["Fit: wrong image size"] = new(typeof(ShapeException), f => f.Model.Fit(zeros(6, 14, 14, 1), f.Y, verbose: 0), "(None, 14, 14, 1)"),
        ["Fit: a vector of inputs"] = new(typeof(ShapeException), f => f.Model.Fit(zeros(6), f.Y, verbose: 0), "x as a batch", "[6]"),
        ["Fit: disposed inputs"] = new(typeof(ObjectDisposedException), f => f.Model.Fit(Disposed(), f.Y, verbose: 0), "disposed tensor as x"),
        ["Fit: validation data of another size"] = new(typeof(ShapeException), f => f.Model.Fit(f.X, f.Y, verbose: 0, validationData: (zeros(2, 20, 20, 1), zeros([2], dtype: int64))), "(None, 20, 20, 1)"),
        ["Fit: validation data with too few targets"] = new(typeof(ShapeException), f => f.Model.Fit(f.X, f.Y, verbose: 0, validationData: (f.X, f.Y.narrow(0, 0, 2))), "Fit (validation_data)", "6 input samples but 2 targets"),
        ["Fit: not compiled"] = new(typeof(ConvKitException), f => { using var m = ModelRegistry.Create("lenet5", new ModelOptions()); m.Fit(f.X, f.Y, verbose: 0); }, "must be compiled before Fit"),
        ["Fit: every layer frozen"] = new(typeof(ConvKitException), f => { f.Model.Trainable = false; try { f.Model.Fit(f.X, f.Y, verbose: 0); } finally { f.Model.Trainable = true; } }, "no trainable weights"),
        // Fit from inside Fit
        ["Fit: called again from one of its callbacks"] = new(typeof(ConvKitException), f =>
        {
            Exception? inner = null;
            var again = new LambdaCallback { OnEpochBeginAction = (_, _) => { try { f.Model.Fit(f.X, f.Y, verbose: 0); } catch (Exception e) { inner = e; } } };
            f.Model.Fit(f.X, f.Y, epochs: 1, verbose: 0, callbacks: [again]);
            throw inner!;
        }, "Fit was called while Fit is already running", "lenet"),
        // Weights
        ["SetWeights: one weight missing"] = new(typeof(ShapeException), f => f.Model.SetWeights(f.Model.GetWeights().Skip(1).ToArray()), "has 10 weights; received 9"),
        ["SetWeights: a kernel of the wrong shape"] = new(typeof(ShapeException), f => f.Model.SetWeights([zeros(3, 3), .. f.Model.GetWeights().Skip(1)]), "received [3, 3]"),
        // After Dispose
        ["Predict after Dispose"] = new(typeof(ObjectDisposedException), f => { f.Model.Dispose(); f.Model.Predict(f.X); }, "model 'lenet", "was disposed"),
        ["Evaluate after Dispose"] = new(typeof(ObjectDisposedException), f => { f.Model.Dispose(); f.Model.Evaluate(f.X, f.Y, verbose: 0); }, "model 'lenet", "was disposed"),
        ["Fit after Dispose"] = new(typeof(ObjectDisposedException), f => { f.Model.Dispose(); f.Model.Fit(f.X, f.Y, verbose: 0); }, "model 'lenet", "was disposed"),
        ["GetWeights after Dispose"] = new(typeof(ObjectDisposedException), f => { f.Model.Dispose(); f.Model.GetWeights(); }, "model 'lenet", "was disposed"),
        ["SetWeights after Dispose"] = new(typeof(ObjectDisposedException), f => { var w = f.Model.GetWeights(); f.Model.Dispose(); f.Model.SetWeights(w); }, "model 'lenet", "was disposed"),
        ["Forward after Dispose"] = new(typeof(ObjectDisposedException), f => { f.Model.Dispose(); f.Model.Forward([zeros(1, 1, 28, 28)]); }, "model 'lenet", "was disposed"),
        ["AsInferenceModel after Dispose"] = new(typeof(ObjectDisposedException), f => { f.Model.Dispose(); f.Model.AsInferenceModel(); }, "model 'lenet", "was disposed"),
        ["an inference model after its model's Dispose"] = new(typeof(ObjectDisposedException), f => { var im = f.Model.AsInferenceModel(); f.Model.Dispose(); im.Predict(f.X); }, "model 'lenet", "was disposed"),
        ["an inference model after its own Dispose"] = new(typeof(ObjectDisposedException), f => { var im = f.Model.AsInferenceModel(); im.Dispose(); im.Predict(f.X); }, "inference model of model 'lenet", "disposed"),
        // Inference models
        ["an inference model of an unbuilt model"] = new(typeof(GraphException), f => new Sequential([new Dense(2)], name: "unbuilt").AsInferenceModel(), "'unbuilt'", "not been built"),
        ["an inference model given integer images"] = new(typeof(ConvKitException), f => { using var im = f.Model.AsInferenceModel(); im.Predict(zeros([2, 28, 28, 1], dtype: int64)); }, "float inputs"),
        ["an inference model given batch size 0"] = new(typeof(InvalidOptionException), f => { using var im = f.Model.AsInferenceModel(); im.Predict(f.X, batchSize: 0); }, "batch_size"),
        ["an inference model given the wrong image size"] = new(typeof(ShapeException), f => { using var im = f.Model.AsInferenceModel(); im.Predict(zeros(2, 30, 30, 1)); }, "(None, 30, 30, 1)"),
        ["an inference model after a weight write"] = new(typeof(ConvKitException), f =>
        {
            using var im = f.Model.AsInferenceModel();
            var w = f.Model.GetWeights();
            f.Model.SetWeights(w);
            im.Predict(f.X);
        }, "changed", "AsInferenceModel()"),
        ["Forward with two inputs for a one-input model"] = new(typeof(ShapeException), f => f.Model.Forward([zeros(1, 1, 28, 28), zeros(1, 1, 28, 28)]), "takes 1 inputs; received 2"),
    };

    public static TheoryData<string> CaseNames => new(Cases.Keys);

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [MemberData(nameof(CaseNames))]
    public void MisuseGivesANamedErrorAndLeavesTheModelAsItWas(string name)
    {
        var c = Cases[name];
        using var f = new Fixture();
        f.Model.eval();
        var before = f.Model.GetWeights();
        var e = Assert.ThrowsAny<Exception>(() => c.Act(f));
        Assert.IsType(c.Expected, e);
        foreach (var part in c.MessageContains) Assert.Contains(part, e.Message);
        Assert.DoesNotContain("Exception raised from", e.Message);
        Assert.DoesNotContain("Tensor invalid", e.Message);
        if (f.Model.IsDisposed) return;
        Assert.False(f.Model.training, $"{name}: the model's mode changed");
        var after = f.Model.GetWeights();
        // These cases write weights on purpose (SetWeights, the outer Fit of a re-entered one).
        if (name.StartsWith("SetWeights", StringComparison.Ordinal) || name.Contains("weight write", StringComparison.Ordinal) || name.Contains("callbacks", StringComparison.Ordinal)) return;
        for (int i = 0; i < before.Length; i++) Assert.True(ConcurrentInferenceTests.Identical(before[i], after[i]), $"{name}: weight {i} changed");
    }

    [Fact]
    public void CatalogueHasAtLeast60Cases() => Assert.True(Cases.Count >= 60, $"{Cases.Count} cases");

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void PredictOnNoSamplesGivesAnEmptyResultOfTheOutputShape()
    {
        using var f = new Fixture();
        using var empty = f.Model.Predict(zeros(0, 28, 28, 1));
        Assert.Equal(new long[] { 0, 10 }, empty.shape);
        using var im = f.Model.AsInferenceModel();
        using var alsoEmpty = im.Predict(zeros(0, 28, 28, 1));
        Assert.Equal(new long[] { 0, 10 }, alsoEmpty.shape);
    }

    [Fact]
    public void NaNInputsTrainToANaNLossAsDocumented()
    {
        // Fit does not scan x (documented): NaN inputs give a NaN loss, and TerminateOnNaN stops there.
        using var f = new Fixture();
        using var nan = double.NaN.ToScalar();
        using var x = f.X.clone().fill_(nan);
        var stop = new TerminateOnNaN();
        var h = f.Model.Fit(x, f.Y, batchSize: 2, epochs: 3, verbose: 0, callbacks: [stop]);
        Assert.True(double.IsNaN(h["loss"][^1]));
        Assert.Equal(0, stop.TerminatedAtBatch);
        Assert.Single(h.Epoch);
    }
}
