using System.Runtime.InteropServices;
using ConvKit.Callbacks;
using ConvKit.Data;
using ConvKit.Data.Streaming;
using ConvKit.Models.Inference;
using ConvKit.Native;
using ConvKit.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Models;

// Fit, Evaluate and Predict over a streaming DataLoader (Keras' fit(dataset), PyTorch's DataLoader loop).
public partial class Model
{
    /// <summary>
    /// Trains the model on batches streamed from <paramref name="x"/>, Keras' <c>fit(dataset)</c>: the loader
    /// decodes on its workers while the model trains, in the loader's order for (seed, epoch), so a run is
    /// reproducible and independent of the number of workers.
    /// </summary>
    /// <param name="x">The training batches (x in Keras' layout (N, H, W, C), int64 labels).</param>
    /// <param name="epochs">Index of the last epoch (1-based, from <paramref name="initialEpoch"/>).</param>
    /// <param name="verbose">Keras' verbose: <see cref="Verbosity.Silent"/> (0), <see cref="Verbosity.ProgressBar"/> (1,
    /// what <see cref="Verbosity.Auto"/>, the default, means here), <see cref="Verbosity.OneLinePerEpoch"/> (2).</param>
    /// <param name="callbacks">Callbacks called during training.</param>
    /// <param name="validationData">Batches evaluated at the end of every epoch (logged with a <c>val_</c> prefix).</param>
    /// <param name="stepsPerEpoch">Batches per epoch (Keras' steps_per_epoch): the first ones of each epoch's order; null for all.</param>
    /// <param name="classWeight">Weight of each class in the loss (see <see cref="DataLoader.ClassWeights"/>).</param>
    /// <param name="initialEpoch">Epoch at which to start (to resume a run; the order of epoch e is the same in every run).</param>
    /// <param name="mixing">MixUp and/or CutMix of each training batch, drawn from (the loader's seed, epoch, batch), so
    /// the mixing too is independent of the number of workers; the loss is computed in its soft-target form. Null: no mixing.</param>
    /// <returns>The per-epoch logs.</returns>
    /// <exception cref="ConvKitException">The model is not compiled, or the x do not fit it.</exception>
    /// <exception cref="InvalidOptionException">A numeric argument is out of range, a class_weight key is negative, or
    /// <paramref name="mixing"/> is given for a loss without a soft-target form.</exception>
    /// <exception cref="TargetException">The labels do not fit the loss, a metric or the output (checked before any step).</exception>
    public History Fit(DataLoader x, int epochs = 1, Verbosity verbose = default, IEnumerable<Callback>? callbacks = null,
        DataLoader? validationData = null, int? stepsPerEpoch = null, IReadOnlyDictionary<int, double>? classWeight = null, int initialEpoch = 0,
        BatchMixing? mixing = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        ThrowIfDisposed();
        RequireCompiled("Fit");
        if (epochs < 0) throw new InvalidOptionException(nameof(epochs), $"epochs must be >= 0; received {epochs}.");
        if (initialEpoch < 0) throw new InvalidOptionException(nameof(initialEpoch), $"initial_epoch must be >= 0; received {initialEpoch}.");
        if (stepsPerEpoch is < 1) throw new InvalidOptionException(nameof(stepsPerEpoch), $"steps_per_epoch must be positive; received {stepsPerEpoch}.");
        if (classWeight is not null && classWeight.Keys.Any(k => k < 0))
            throw new InvalidOptionException(nameof(classWeight), $"model '{Name}': class_weight keys must be class indices >= 0.");
        EnsureBuiltForLoader(x, "x");
        if (validationData is not null) EnsureBuiltForLoader(validationData, "validation_data");
        var softLoss = mixing is null ? null : SoftTargetLoss();
        BeginFit();
        bool wasTraining = training;
        try
        {
            fitMixing = mixing is null ? null : (mixing, softLoss!);
            return FitLoaderCore(x, epochs, verbose.Level(auto: 1), callbacks, validationData, stepsPerEpoch, classWeight, initialEpoch);
        }
        catch (ExternalException e)
        {
            throw LibtorchFailure("Fit", e);
        }
        finally
        {
            if (wasTraining) train(); else eval();
            fitMixing = null;
            EndFit();
        }
    }

    void EnsureBuiltForLoader(DataLoader x, string what)
    {
        using var probe = empty([1, x.Source.Height, x.Source.Width, x.Source.Channels]);
        EnsureBuiltFor(probe, what);
    }

    /// <summary>Every label of the loader as an int64 tensor (labels are known without decoding).</summary>
    static Tensor AllLabels(DataLoader x)
    {
        var labels = new long[x.Count];
        for (int i = 0; i < labels.Length; i++) labels[i] = x.Source.LabelOf(i);
        return tensor(labels);
    }

    History FitLoaderCore(DataLoader x, int epochs, int verbose, IEnumerable<Callback>? callbacks, DataLoader? validationData,
        int? stepsPerEpoch, IReadOnlyDictionary<int, double>? classWeight, int initialEpoch)
    {
        var device = ModelDevice();
        var trainable = TrainableParameters();
        if (trainable.Count == 0) throw new ConvKitException($"model '{Name}' has no trainable weights to fit.");
        Metric[] metrics;
        using (NewDisposeScope())
        {
            var yAll = AllLabels(x);
            metrics = ResolveMetrics(yAll);
            TargetValidation.Check(this, loss!, metrics, yAll, "Fit");
            if (validationData is not null)
            {
                var yVal = AllLabels(validationData);
                TargetValidation.Check(this, loss!, ResolveMetrics(yVal), yVal, "Fit (validation_data)");
            }
        }
        optimizer!.Build(trainable);

        using var fitScope = NewDisposeScope();
        Tensor? weightTable = null;
        if (classWeight is not null)
        {
            var table = new float[Math.Max(x.ClassNames.Count, classWeight.Keys.DefaultIfEmpty(0).Max() + 1)];
            for (int c = 0; c < table.Length; c++) table[c] = classWeight.TryGetValue(c, out var w) ? (float)w : 1f;
            weightTable = tensor(table, device: device);
        }
        var head = FusedHeadFor(loss!);
        bool metricsNeedActivation = head is not null && metrics.Any(m => !m.InvariantToSoftmax);
        var lossTracker = new Mean("loss");
        bool hasRegularization = HasRegularization();
        int steps = Math.Min(stepsPerEpoch ?? int.MaxValue, x.BatchesPerEpoch);
        long samples = Math.Min((long)steps * x.BatchSize, x.Count);
        var cbs = new CallbackList(callbacks, this, new TrainingParams(epochs, steps, verbose, samples, x.BatchSize), addHistory: true, addProgbar: verbose > 0);
        // The loader orders the x; the generator only serves callbacks that save and restore training state.
        using var generator = new Generator((ulong)x.Seed, device);

        StopTraining = false;
        var emptyLogs = new Logs();
        var batchLogs = new Logs();
        Action<Dictionary<string, double>> fillBatchLogs = d => ReadMetrics(d, lossTracker, metrics, "");
        var epochLogs = new Logs();
        FitGenerator = generator;
        FitCallbacks = cbs.Callbacks;
        ResumeInitialEpoch = null;
        FitInitialEpoch = initialEpoch;
        try
        {
            cbs.TrainBegin(emptyLogs);
            if (ResumeInitialEpoch is { } resumed) initialEpoch = resumed;
            for (int epoch = initialEpoch; epoch < epochs && !StopTraining; epoch++)
            {
                train();
                lossTracker.ResetState();
                foreach (var m in metrics) m.ResetState();
                cbs.EpochBegin(epoch, new Logs());
                int b = 0;
                foreach (var (xRaw, yRaw) in x.Epoch(epoch, steps))
                {
                    using (xRaw)
                    using (yRaw)
                    {
                        cbs.TrainBatchBegin(b, emptyLogs);
                        using (var scope = NewDisposeScope())
                        {
                            var xb = PrepareInputs(xRaw, device);
                            var yb = PrepareTargets(yRaw, device);
                            var wb = weightTable?.index_select(0, yb);
                            TrainStep(xb, yb, wb, xRaw.shape[0], head, metrics, metricsNeedActivation, lossTracker, hasRegularization, (x.Seed, epoch, b));
                        }
                    }
                    StepsDone++;
                    batchLogs.SetLazy(fillBatchLogs);
                    cbs.TrainBatchEnd(b, batchLogs);
                    b++;
                    if (StopTraining) break;
                }
                epochLogs = new Logs();
                ReadMetrics(epochLogs, lossTracker, metrics, "");
                if (validationData is not null)
                {
                    var val = RunTestLoader(validationData, null, cbs, head, metrics, lossTracker);
                    foreach (var (k, v) in val) epochLogs["val_" + k] = v;
                }
                cbs.EpochEnd(epoch, epochLogs);
            }
        }
        finally
        {
            FitGenerator = null;
            FitCallbacks = [];
            ResumeInitialEpoch = null;
        }
        cbs.TrainEnd(epochLogs);
        History = cbs.History;
        return cbs.History!;
    }

    /// <summary>
    /// Loss and metrics over the batches of <paramref name="x"/> (its epoch-0 order), Keras' <c>evaluate(dataset)</c>,
    /// in inference mode. Undecodable files are left out, as in training.
    /// </summary>
    /// <param name="x">The batches.</param>
    /// <param name="verbose">Keras' verbose: <see cref="Verbosity.Silent"/> (0), <see cref="Verbosity.ProgressBar"/> (1,
    /// what <see cref="Verbosity.Auto"/>, the default, means here), <see cref="Verbosity.OneLinePerEpoch"/> (2).</param>
    /// <param name="callbacks">Callbacks called around each batch.</param>
    /// <param name="steps">Batches to evaluate; null for all.</param>
    /// <returns>{"loss": ..., metric: ...}.</returns>
    /// <exception cref="ConvKitException">The model is not compiled, or the x do not fit it.</exception>
    /// <exception cref="InvalidOptionException"><paramref name="steps"/> is not positive.</exception>
    public IReadOnlyDictionary<string, double> Evaluate(DataLoader x, Verbosity verbose = default, IEnumerable<Callback>? callbacks = null, int? steps = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        ThrowIfDisposed();
        RequireCompiled("Evaluate");
        if (steps is < 1) throw new InvalidOptionException(nameof(steps), $"model '{Name}': Evaluate's steps must be positive; received {steps}.");
        EnsureBuiltForLoader(x, "x");
        using var guard = BeginInference("Evaluate");
        try
        {
            Metric[] metrics;
            using (NewDisposeScope())
            {
                var yAll = AllLabels(x);
                metrics = ResolveMetrics(yAll).Select(m => m.FreshCopy() ?? m).ToArray();
                TargetValidation.Check(this, loss!, metrics, yAll, "Evaluate");
            }
            int n = Math.Min(steps ?? int.MaxValue, x.BatchesPerEpoch);
            int level = verbose.Level(auto: 1);
            var cbs = new CallbackList(callbacks, this, new TrainingParams(1, n, level, Math.Min((long)n * x.BatchSize, x.Count), x.BatchSize), addHistory: false, addProgbar: level > 0);
            var head = FusedHeadFor(loss!);
            if (metrics.All(m => !compiledMetrics.Contains(m))) return RunTestLoader(x, n, cbs, head, metrics, new Mean("loss"));
            lock (compiledMetrics) return RunTestLoader(x, n, cbs, head, metrics, new Mean("loss"));
        }
        catch (ExternalException e)
        {
            throw LibtorchFailure("Evaluate", e);
        }
    }

    Dictionary<string, double> RunTestLoader(DataLoader x, int? steps, CallbackList cbs, FusedHead? head, Metric[] metrics, Mean lossTracker)
    {
        using var inferenceContext = InferenceContext.Enter();
        var inference = head is null ? inferenceSlot.Acquire(this, graph, InferenceOptimizations) : head.AcquireInference(this, InferenceOptimizations);
        var device = ModelDevice();
        var batchLogs = new Logs();
        Action<Dictionary<string, double>> fill = d => ReadMetrics(d, lossTracker, metrics, "");
        bool needActivation = head is not null && metrics.Any(m => !m.InvariantToSoftmax);
        lossTracker.ResetState();
        foreach (var m in metrics) m.ResetState();
        var emptyLogs = new Logs();
        cbs.TestBegin(emptyLogs);
        try
        {
            using var _ = no_grad();
            int b = 0;
            foreach (var (xRaw, yRaw) in x.Epoch(0, steps))
            {
                using (xRaw)
                using (yRaw)
                {
                    cbs.TestBatchBegin(b, emptyLogs);
                    using (var scope = NewDisposeScope())
                    {
                        var xb = PrepareInputs(xRaw, device);
                        var yb = PrepareTargets(yRaw, device);
                        Tensor value, pred;
                        using (inference_mode()) (value, pred) = ComputeLoss(xb, yb, null, head, needActivation, inference);
                        foreach (var r in RegularizationLosses()) value = value.add(r, Scalars.One);
                        lossTracker.Update(value, xRaw.shape[0]);
                        foreach (var m in metrics) m.UpdateState(yb, pred, null);
                    }
                }
                batchLogs.SetLazy(fill);
                cbs.TestBatchEnd(b, batchLogs);
                b++;
            }
        }
        finally
        {
            inference.Release();
        }
        var result = new Dictionary<string, double>();
        ReadMetrics(result, lossTracker, metrics, "");
        cbs.TestEnd(new Logs(result));
        return result;
    }

    /// <summary>
    /// The model's outputs for every sample of <paramref name="x"/> in its epoch-0 order (make the loader with
    /// <c>shuffle: false</c> to keep the source's order), Keras' <c>predict(dataset)</c>. Undecodable files have no
    /// row; <see cref="DataLoader.Skipped"/> names them. The caller owns the result.
    /// </summary>
    /// <param name="x">The batches (labels are ignored).</param>
    /// <param name="verbose">Keras' verbose: <see cref="Verbosity.Silent"/> (0, what <see cref="Verbosity.Auto"/>, the
    /// default, means here), <see cref="Verbosity.ProgressBar"/> (1), <see cref="Verbosity.OneLinePerEpoch"/> (2), as the
    /// tensor overload.</param>
    /// <param name="callbacks">Callbacks called around each of the loader's batches.</param>
    /// <returns>Outputs (N, ...) in Keras' layout.</returns>
    /// <exception cref="ShapeException">The x do not fit the model.</exception>
    public Tensor Predict(DataLoader x, Verbosity verbose = default, IEnumerable<Callback>? callbacks = null)
    {
        ArgumentNullException.ThrowIfNull(x);
        ThrowIfDisposed();
        EnsureBuiltForLoader(x, "x");
        int level = verbose.Level(auto: 0);
        var cbs = new CallbackList(callbacks, this, new TrainingParams(1, x.BatchesPerEpoch, level, x.Count, x.BatchSize), addHistory: false, addProgbar: level > 0);
        var emptyLogs = new Logs();
        var inference = inferenceSlot.Acquire(this, graph, InferenceOptimizations);
        var parts = new List<Tensor>();
        try
        {
            cbs.PredictBegin(emptyLogs);
            int b = 0;
            foreach (var (xRaw, yRaw) in x.Epoch(0))
            {
                using (xRaw)
                using (yRaw)
                {
                    cbs.PredictBatchBegin(b, emptyLogs);
                    parts.Add(PredictWith(inference, xRaw, (int)xRaw.shape[0], 0, null));
                    cbs.PredictBatchEnd(b, emptyLogs);
                    b++;
                }
            }
            cbs.PredictEnd(emptyLogs);
            if (parts.Count == 0)
            {
                using var none = empty([0, x.Source.Height, x.Source.Width, x.Source.Channels]);
                return PredictWith(inference, none, 1, 0, null);
            }
            return cat(parts, 0);
        }
        catch (ExternalException e)
        {
            throw LibtorchFailure("Predict", e);
        }
        finally
        {
            inference.Release();
            foreach (var p in parts) p.Dispose();
        }
    }
}
