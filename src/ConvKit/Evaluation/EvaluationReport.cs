using System.Globalization;
using System.Text;
using ConvKit.Models;
using ConvKit.Models.Inference;
using ConvKit.Native;
using static TorchSharp.torch;

namespace ConvKit.Evaluation;

/// <summary>Precision, recall, F1 and support of one class (sklearn's <c>classification_report</c> row).</summary>
/// <param name="Index">Class index.</param>
/// <param name="Name">Class name.</param>
/// <param name="Precision">True positives over predicted positives; 0 when the class was never predicted (sklearn's
/// <c>zero_division=0</c>).</param>
/// <param name="Recall">True positives over actual positives; 0 when the class has no sample.</param>
/// <param name="F1">Harmonic mean of precision and recall; 0 when both are 0.</param>
/// <param name="Support">Samples whose true class this is.</param>
public sealed record ClassMetrics(int Index, string Name, double Precision, double Recall, double F1, long Support);

/// <summary>A misclassified sample.</summary>
/// <param name="Index">Position of the sample in the evaluated data (counted over all batches, from 0).</param>
/// <param name="TrueClass">Its label.</param>
/// <param name="PredictedClass">The class the model chose.</param>
/// <param name="Confidence">The model's probability for <paramref name="PredictedClass"/>.</param>
public sealed record Mistake(long Index, int TrueClass, int PredictedClass, double Confidence);

/// <summary>
/// What a Keras or PyTorch user computes with sklearn after <c>model.evaluate</c>: confusion matrix, per-class
/// precision/recall/F1/support, macro and weighted averages, top-k accuracy and the most confident mistakes, from one
/// pass over batches: <c>EvaluationReport.Create(model, batches, classNames, topK: 5)</c>. Batches are consumed one at a
/// time, so memory does not grow with the data (a streaming dataset plugs in as it is).
/// </summary>
/// <remarks>
/// Outputs are read as class probabilities when every row is non-negative and sums to 1 (a softmax head); any other
/// output (logits) goes through a softmax first, which changes neither the predicted class nor the top-k.
/// </remarks>
public sealed class EvaluationReport
{
    readonly long[,] confusion;

    EvaluationReport(IReadOnlyList<string> classNames, long[,] confusion, long topKHits, int topK, IReadOnlyList<Mistake> mistakes)
    {
        ClassNames = classNames;
        this.confusion = confusion;
        TopK = topK;
        int c = classNames.Count;
        long total = 0, correct = 0;
        var perClass = new ClassMetrics[c];
        for (int i = 0; i < c; i++)
        {
            long tp = confusion[i, i], support = 0, predicted = 0;
            for (int j = 0; j < c; j++)
            {
                support += confusion[i, j];
                predicted += confusion[j, i];
            }
            total += support;
            correct += tp;
            double p = predicted == 0 ? 0 : (double)tp / predicted, r = support == 0 ? 0 : (double)tp / support;
            perClass[i] = new ClassMetrics(i, classNames[i], p, r, p + r == 0 ? 0 : 2 * p * r / (p + r), support);
        }
        PerClass = perClass;
        Count = total;
        Accuracy = total == 0 ? 0 : (double)correct / total;
        TopKAccuracy = total == 0 ? 0 : (double)topKHits / total;
        MacroPrecision = perClass.Average(m => m.Precision);
        MacroRecall = perClass.Average(m => m.Recall);
        MacroF1 = perClass.Average(m => m.F1);
        WeightedF1 = total == 0 ? 0 : perClass.Sum(m => m.F1 * m.Support) / total;
        MostConfidentMistakes = mistakes;
    }

    /// <summary>Class names, in output order.</summary>
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Samples evaluated.</summary>
    public long Count { get; }

    /// <summary>Top-1 accuracy.</summary>
    public double Accuracy { get; }

    /// <summary>The k of <see cref="TopKAccuracy"/> (at most the number of classes).</summary>
    public int TopK { get; }

    /// <summary>Fraction of samples whose label is among the <see cref="TopK"/> highest outputs.</summary>
    public double TopKAccuracy { get; }

    /// <summary>Per-class precision, recall, F1 and support, in class order.</summary>
    public IReadOnlyList<ClassMetrics> PerClass { get; }

    /// <summary>Unweighted mean of the classes' precisions.</summary>
    public double MacroPrecision { get; }

    /// <summary>Unweighted mean of the classes' recalls.</summary>
    public double MacroRecall { get; }

    /// <summary>Unweighted mean of the classes' F1 scores.</summary>
    public double MacroF1 { get; }

    /// <summary>Mean of the classes' F1 scores weighted by support.</summary>
    public double WeightedF1 { get; }

    /// <summary>The misclassified samples with the highest confidence, most confident first (ties: lower index first).</summary>
    public IReadOnlyList<Mistake> MostConfidentMistakes { get; }

    /// <summary>Samples of true class <paramref name="trueClass"/> predicted as <paramref name="predictedClass"/>.</summary>
    public long Confusion(int trueClass, int predictedClass) => confusion[trueClass, predictedClass];

    /// <summary>The confusion matrix, rows = true class, columns = predicted class (a copy).</summary>
    public long[,] ConfusionMatrix() => (long[,])confusion.Clone();

    /// <summary>The confusion matrix with each row divided by its support (rows of classes without samples are 0).</summary>
    public double[,] NormalizedConfusionMatrix()
    {
        int c = ClassNames.Count;
        var m = new double[c, c];
        for (int i = 0; i < c; i++)
        {
            long support = PerClass[i].Support;
            for (int j = 0; j < c; j++) m[i, j] = support == 0 ? 0 : (double)confusion[i, j] / support;
        }
        return m;
    }

    /// <summary>Per-class metrics as CSV: <c>class,precision,recall,f1,support</c>, then <c>macro avg</c> and
    /// <c>weighted avg</c> rows (their support is the total), as sklearn's report. Names with commas or quotes are quoted.</summary>
    public string PerClassCsv()
    {
        static string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        static string Q(string s) => s.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + s.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : s;
        var sb = new StringBuilder("class,precision,recall,f1,support\n");
        foreach (var m in PerClass)
            sb.Append(CultureInfo.InvariantCulture, $"{Q(m.Name)},{F(m.Precision)},{F(m.Recall)},{F(m.F1)},{m.Support}\n");
        double wp = Count == 0 ? 0 : PerClass.Sum(m => m.Precision * m.Support) / Count;
        double wr = Count == 0 ? 0 : PerClass.Sum(m => m.Recall * m.Support) / Count;
        sb.Append(CultureInfo.InvariantCulture, $"macro avg,{F(MacroPrecision)},{F(MacroRecall)},{F(MacroF1)},{Count}\n");
        sb.Append(CultureInfo.InvariantCulture, $"weighted avg,{F(wp)},{F(wr)},{F(WeightedF1)},{Count}\n");
        return sb.ToString();
    }

    /// <summary>Evaluates a model on batches of (images in Keras layout, labels): a <see cref="Model"/>, its thread-safe
    /// <see cref="InferenceModel"/>, or an int8 <see cref="Quantization.QuantizedModel"/> (any <see cref="IPredictor"/>).</summary>
    /// <param name="model">The model (its outputs: one score per class).</param>
    /// <param name="batches">(x, y) pairs: x as the model takes it, y class indices (N) or one-hot/probabilities (N, C).
    /// The batches stay the caller's.</param>
    /// <param name="classNames">One name per model output.</param>
    /// <param name="topK">k of the top-k accuracy (clamped to the number of classes).</param>
    /// <param name="mistakes">How many of the most confident mistakes to keep.</param>
    /// <exception cref="ConvKitException">Labels out of range, outputs whose width is not the number of class names, or no sample.</exception>
    public static EvaluationReport Create(IPredictor model, IEnumerable<(Tensor X, Tensor Y)> batches, IReadOnlyList<string> classNames, int topK = 5, int mistakes = 16)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Create(x => model.Predict(x, (int)Math.Max(1, x.shape[0])), model.Name, batches, classNames, topK, mistakes);
    }

    /// <summary>Builds a report from outputs already computed: <paramref name="outputs"/> (N, C) scores and
    /// <paramref name="labels"/> (N) class indices.</summary>
    /// <exception cref="ConvKitException">Labels out of range, outputs whose width is not the number of class names, or no sample.</exception>
    public static EvaluationReport FromOutputs(Tensor outputs, Tensor labels, IReadOnlyList<string> classNames, int topK = 5, int mistakes = 16) =>
        Create(_ => outputs.alias(), "outputs", [(outputs, labels)], classNames, topK, mistakes);

    static EvaluationReport Create(Func<Tensor, Tensor> predict, string name, IEnumerable<(Tensor X, Tensor Y)> batches,
        IReadOnlyList<string> classNames, int topK, int mistakes)
    {
        ArgumentNullException.ThrowIfNull(batches);
        ArgumentNullException.ThrowIfNull(classNames);
        int c = classNames.Count;
        if (c < 2) throw new ConvKitException($"evaluation report of '{name}': needs at least 2 class names; received {c}.");
        if (topK < 1) throw new ConvKitException($"evaluation report of '{name}': top-k must be at least 1; received {topK}.");
        if (mistakes < 0) throw new ConvKitException($"evaluation report of '{name}': the number of mistakes to keep must be at least 0; received {mistakes}.");
        int k = Math.Min(topK, c);
        var confusion = new long[c, c];
        long topKHits = 0, offset = 0;
        // The most confident mistakes so far, bounded: a min-heap on (confidence, -index).
        var worst = new PriorityQueue<Mistake, (double, long)>();
        foreach (var (x, y) in batches)
        {
            using var scope = NewDisposeScope();
            var output = predict(x);
            if (output.dim() != 2 || output.shape[1] != c)
                throw new ConvKitException($"evaluation report of '{name}': the model outputs [{string.Join(", ", output.shape)}] per batch; " +
                    $"expected (batch, {c}), one score per class name.");
            long n = output.shape[0];
            var labels = y.dim() == 2 ? y.argmax(1) : y;
            if (labels.dim() != 1 || labels.shape[0] != n)
                throw new ConvKitException($"evaluation report of '{name}': a batch has {n} samples but labels of shape [{string.Join(", ", y.shape)}]; " +
                    "expected class indices (batch) or one-hot rows (batch, classes).");
            var truth = labels.to_type(ScalarType.Int64).cpu().data<long>().ToArray();
            foreach (var t in truth)
                if (t < 0 || t >= c)
                    throw new ConvKitException($"evaluation report of '{name}': label {t} is out of range for {c} classes ({string.Join(", ", classNames.Take(4))}{(c > 4 ? ", ..." : "")}).");
            var probs = AsProbabilities(output.to_type(ScalarType.Float32).cpu());
            var (_, top) = probs.topk(k, dim: 1);
            var topIdx = top.data<long>().ToArray();
            var p = probs.data<float>().ToArray();
            for (long i = 0; i < n; i++)
            {
                int truthClass = (int)truth[i], pred = (int)topIdx[i * k];
                confusion[truthClass, pred]++;
                for (int j = 0; j < k; j++)
                    if (topIdx[i * k + j] == truthClass) { topKHits++; break; }
                if (pred != truthClass && mistakes > 0)
                {
                    double conf = p[i * c + pred];
                    var m = new Mistake(offset + i, truthClass, pred, conf);
                    worst.Enqueue(m, (conf, -(offset + i)));
                    if (worst.Count > mistakes) worst.Dequeue();
                }
            }
            offset += n;
        }
        if (offset == 0) throw new ConvKitException($"evaluation report of '{name}': the batches held no sample.");
        var kept = new List<Mistake>();
        while (worst.Count > 0) kept.Add(worst.Dequeue());
        kept.Reverse();
        return new EvaluationReport(classNames.ToArray(), confusion, topKHits, k, kept);
    }

    static Tensor AsProbabilities(Tensor output)
    {
        using var min = output.min();
        using var sums = output.sum(1);
        using var diff = sums.sub(Scalars.One);
        using var abs = diff.abs();
        using var deviation = abs.max();
        bool probabilities = min.item<float>() >= 0 && deviation.item<float>() < 1e-3f;
        return probabilities ? output.alias() : output.softmax(1);
    }
}
