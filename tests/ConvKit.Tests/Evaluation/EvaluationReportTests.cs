using ConvKit.Evaluation;
using ConvKit.Layers;
using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Tests.Evaluation;

public class EvaluationReportTests
{
    static readonly string[] Names = ["cat", "dog", "bird"];

    // Eight samples, three classes; probabilities written out so that every number below can be checked by hand.
    //   label: 0 0 0 1 1 1 2 2
    //   pred:  0 0 1 1 1 2 2 0
    static (Tensor Outputs, Tensor Labels) HandCase()
    {
        var p = new float[,]
        {
            { 0.7f, 0.2f, 0.1f }, // 0 -> 0
            { 0.6f, 0.3f, 0.1f }, // 0 -> 0
            { 0.3f, 0.6f, 0.1f }, // 0 -> 1 (0.6) mistake; truth is 2nd
            { 0.1f, 0.8f, 0.1f }, // 1 -> 1
            { 0.2f, 0.5f, 0.3f }, // 1 -> 1
            { 0.1f, 0.2f, 0.7f }, // 1 -> 2 (0.7) mistake; truth is 2nd
            { 0.1f, 0.1f, 0.8f }, // 2 -> 2
            { 0.9f, 0.05f, 0.05f }, // 2 -> 0 (0.9) mistake; truth is 2nd (tie with class 1 at 0.05: topk picks one)
        };
        return (tensor(p), tensor(new long[] { 0, 0, 0, 1, 1, 1, 2, 2 }));
    }

    [Fact]
    public void NumbersMatchAHandComputedCase()
    {
        var (o, y) = HandCase();
        using var _o = o;
        using var _y = y;
        var r = EvaluationReport.FromOutputs(o, y, Names, topK: 2, mistakes: 2);
        long[,] expected = { { 2, 1, 0 }, { 0, 2, 1 }, { 1, 0, 1 } };
        Assert.Equal(expected, r.ConfusionMatrix());
        Assert.Equal(8, r.Count);
        Assert.Equal(5 / 8.0, r.Accuracy, 12);
        // cat: TP 2, predicted 3 (2 + the bird), support 3 -> P 2/3, R 2/3, F1 2/3
        // dog: TP 2, predicted 3, support 3 -> P 2/3, R 2/3
        // bird: TP 1, predicted 2, support 2 -> P 1/2, R 1/2
        Assert.Equal([2 / 3.0, 2 / 3.0, 0.5], r.PerClass.Select(m => Math.Round(m.Precision, 12)).Select(v => v).ToArray(), new Tol());
        Assert.Equal([2 / 3.0, 2 / 3.0, 0.5], r.PerClass.Select(m => m.Recall).ToArray(), new Tol());
        Assert.Equal([2 / 3.0, 2 / 3.0, 0.5], r.PerClass.Select(m => m.F1).ToArray(), new Tol());
        Assert.Equal([3L, 3L, 2L], r.PerClass.Select(m => m.Support).ToArray());
        Assert.Equal((2 / 3.0 + 2 / 3.0 + 0.5) / 3, r.MacroF1, 12);
        Assert.Equal((2 / 3.0 * 3 + 2 / 3.0 * 3 + 0.5 * 2) / 8, r.WeightedF1, 12);
        // Top-2: sample 7's truth (bird, 0.05) ties with dog (0.05) for second place; the other seven are in.
        Assert.Equal(2, r.TopK);
        Assert.InRange(r.TopKAccuracy, 7 / 8.0, 1.0);
        // The two most confident mistakes: sample 7 (0.9 for cat), then sample 5 (0.7 for bird).
        Assert.Equal([(7L, 2, 0), (5L, 1, 2)], r.MostConfidentMistakes.Select(m => (m.Index, m.TrueClass, m.PredictedClass)).ToArray());
        Assert.Equal(0.9, r.MostConfidentMistakes[0].Confidence, 6);
        var normalized = r.NormalizedConfusionMatrix();
        Assert.Equal(1 / 3.0, normalized[0, 1], 12);
        Assert.Equal(0.5, normalized[2, 0], 12);
        var csv = r.PerClassCsv().Split('\n');
        Assert.Equal("class,precision,recall,f1,support", csv[0]);
        Assert.StartsWith("bird,0.5,0.5,0.5,2", csv[3]);
        Assert.StartsWith("macro avg,", csv[4]);
    }

    sealed class Tol : IEqualityComparer<double>
    {
        public bool Equals(double a, double b) => Math.Abs(a - b) < 1e-9;
        public int GetHashCode(double v) => 0;
    }

    [Fact]
    public void BatchesGiveTheSameReportAsOneTensorAndLogitsAreSoftmaxed()
    {
        var (o, y) = HandCase();
        using var _o = o;
        using var _y = y;
        var whole = EvaluationReport.FromOutputs(o, y, Names, topK: 1, mistakes: 8);
        // Logits (log of the probabilities): not probabilities, so softmaxed back to them.
        using var logits = o.log();
        var fromLogits = EvaluationReport.FromOutputs(logits, y, Names, topK: 1, mistakes: 8);
        Assert.Equal(whole.ConfusionMatrix(), fromLogits.ConfusionMatrix());
        Assert.Equal(whole.MostConfidentMistakes.Select(m => m.Index), fromLogits.MostConfidentMistakes.Select(m => m.Index));
        Assert.Equal(0.9, fromLogits.MostConfidentMistakes[0].Confidence, 5);

        // A model that outputs its input (identity on a (3,) vector... through Dense with identity weights), in batches of 3.
        using var model = new Sequential([new Input(new Shape(3)), new Dense(3, useBias: false, name: "identity")]);
        using (var eye = TorchSharp.torch.eye(3)) model.SetWeights([eye]);
        var batches = new List<(Tensor, Tensor)>();
        for (long s = 0; s < 8; s += 3) batches.Add((o.narrow(0, s, Math.Min(3, 8 - s)), y.narrow(0, s, Math.Min(3, 8 - s))));
        var batched = EvaluationReport.Create(model, batches, Names, topK: 1, mistakes: 8);
        Assert.Equal(whole.ConfusionMatrix(), batched.ConfusionMatrix());
        Assert.Equal(whole.MostConfidentMistakes.Select(m => m.Index), batched.MostConfidentMistakes.Select(m => m.Index));
        // Any IPredictor (here the model's inference object seen through the interface) gives the same report.
        using var inference = model.AsInferenceModel();
        var viaPredictor = EvaluationReport.Create((ConvKit.Models.Inference.IPredictor)inference, batches, Names, topK: 1, mistakes: 8);
        Assert.Equal(whole.ConfusionMatrix(), viaPredictor.ConfusionMatrix());
        Assert.Equal(whole.MostConfidentMistakes.Select(m => m.Index), viaPredictor.MostConfidentMistakes.Select(m => m.Index));
        foreach (var (a, b) in batches) { a.Dispose(); b.Dispose(); }
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void BadLabelsAndOutputsAreNamedErrors()
    {
        var (o, y) = HandCase();
        using var _o = o;
        using var _y = y;
        using var bad = tensor(new long[] { 0, 0, 0, 1, 1, 1, 2, 3 });
        var e = Assert.Throws<ConvKitException>(() => EvaluationReport.FromOutputs(o, bad, Names));
        Assert.Contains("label 3 is out of range for 3 classes", e.Message);
        e = Assert.Throws<ConvKitException>(() => EvaluationReport.FromOutputs(o, y, ["a", "b", "c", "d"]));
        Assert.Contains("expected (batch, 4)", e.Message);
        using var shortLabels = tensor(new long[] { 0, 1 });
        e = Assert.Throws<ConvKitException>(() => EvaluationReport.FromOutputs(o, shortLabels, Names));
        Assert.Contains("8 samples but labels of shape [2]", e.Message);
        e = Assert.Throws<ConvKitException>(() => EvaluationReport.FromOutputs(o, y, Names, topK: 0));
        Assert.Contains("top-k must be at least 1", e.Message);
    }
}
