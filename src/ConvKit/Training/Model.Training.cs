using System.Runtime.InteropServices;
using ConvKit.Callbacks;
using ConvKit.Data;
using ConvKit.Layers;
using ConvKit.Models.Inference;
using ConvKit.Native;
using ConvKit.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Models;

// Keras' training API, shared by functional, Sequential and subclassed models.
public partial class Model
{
    Optimizer? optimizer;
    Loss? loss;
    Metric[] compiledMetrics = [];
    FusedHead? fusedHead;
    (FunctionalGraph? Graph, Loss? Loss) fusedHeadKey;

    /// <summary>The optimizer given to <see cref="Compile"/>.</summary>
    public Optimizer? Optimizer => optimizer;

    /// <summary>The loss given to <see cref="Compile"/>.</summary>
    public Loss? Loss => loss;

    /// <summary>The metrics given to <see cref="Compile"/> (unresolved: "accuracy" is chosen per Fit).</summary>
    public IReadOnlyList<Metric> CompiledMetrics => compiledMetrics;

    /// <summary>Whether <see cref="Compile"/> has been called.</summary>
    public bool IsCompiled => optimizer is not null && loss is not null;

    /// <summary>
    /// Set to true (typically by a callback) to stop <see cref="Fit"/> after the current batch; the epoch then ends
    /// normally (validation, epoch-end callbacks) and no further epoch starts. Fit resets it when it starts, before
    /// the callbacks' OnTrainBegin; set there, no epoch runs.
    /// </summary>
    public bool StopTraining { get; set; }

    /// <summary>The History of the last <see cref="Fit"/>.</summary>
    public History? History { get; private set; }

    // Training state that BackupAndRestore saves and restores: the shuffle generator and callbacks of the running Fit,
    // the optimizer steps taken, and the epoch a restoring callback asks Fit to resume from (read right after
    // OnTrainBegin, as Keras).
    internal Generator? FitGenerator { get; private set; }

    internal IReadOnlyList<Callback> FitCallbacks { get; private set; } = [];

    internal long StepsDone { get; set; }

    internal int? ResumeInitialEpoch { get; set; }

    // The initial epoch the running Fit was called with: a backup written at or before it belongs to an earlier Fit
    // (the first phase of a two-phase fine-tuning run, whose optimizer trained other weights) and is not restored.
    internal int FitInitialEpoch { get; private set; }

    /// <summary>
    /// Configures the model for training, Keras' <c>compile</c>:
    /// <c>model.Compile(optimizer: "adam", loss: "sparse_categorical_crossentropy", metrics: ["accuracy"])</c>.
    /// </summary>
    /// <param name="optimizer">An <see cref="Training.Optimizer"/> or a name (sgd, adam, adamw, rmsprop); default rmsprop as Keras.</param>
    /// <param name="loss">A <see cref="Training.Loss"/> or a name.</param>
    /// <param name="metrics">Metrics or names; "accuracy" is resolved from the loss and targets as Keras does.</param>
    /// <exception cref="ArgumentNullException">No loss.</exception>
    public void Compile(Optimizer? optimizer = null, Loss? loss = null, IEnumerable<Metric>? metrics = null)
    {
        this.loss = loss ?? throw new ArgumentNullException(nameof(loss), $"model '{Name}': Compile needs a loss, e.g. loss: \"sparse_categorical_crossentropy\".");
        this.optimizer = optimizer ?? new RMSprop();
        compiledMetrics = metrics?.ToArray() ?? [];
        var dup = compiledMetrics.GroupBy(m => m.Name).FirstOrDefault(g => g.Count() > 1 || g.Key is "loss");
        if (dup is not null) throw new InvalidOptionException(nameof(metrics), $"model '{Name}': metric name '{dup.Key}' is used twice (or clashes with 'loss').");
        lock (fusedHeadGate)
        {
            fusedHead?.Dispose();
            fusedHead = null;
            fusedHeadKey = default;
        }
    }

    // ------------------------------------------------------------------ Fit

    /// <summary>
    /// Trains the model, Keras' <c>fit</c>. <paramref name="x"/> is a float tensor in Keras' layout (N, H, W, C) for
    /// images, converted to the internal layout once per call; <paramref name="y"/> holds int64 class indices or
    /// one-hot floats. A <see cref="Callbacks.History"/> and, for verbose 1 or 2, a <see cref="ProgbarLogger"/> are
    /// added to the callbacks.
    /// </summary>
    /// <param name="x">Inputs, batch first, Keras layout.</param>
    /// <param name="y">Targets, batch first.</param>
    /// <param name="batchSize">Samples per gradient update.</param>
    /// <param name="epochs">Index of the last epoch (1-based, as Keras: training runs from <paramref name="initialEpoch"/> to it).</param>
    /// <param name="verbose">Keras' verbose: <see cref="Verbosity.Silent"/> (0), <see cref="Verbosity.ProgressBar"/> (1,
    /// what <see cref="Verbosity.Auto"/>, the default, means here), <see cref="Verbosity.OneLinePerEpoch"/> (2).</param>
    /// <param name="callbacks">Callbacks called during training.</param>
    /// <param name="validationSplit">Fraction of the data, taken from the end before shuffling, held out for validation.</param>
    /// <param name="validationData">Validation inputs and targets (take precedence over the split).</param>
    /// <param name="shuffle">Reshuffle the training samples every epoch.</param>
    /// <param name="classWeight">Weight of each class in the loss (class index to weight).</param>
    /// <param name="initialEpoch">Epoch at which to start (to resume a run).</param>
    /// <param name="seed">Seed of the shuffling; by default drawn from torch's global generator (see <see cref="Backend.SetSeed"/>).</param>
    /// <param name="mixing">MixUp and/or CutMix of each training batch, drawn from (seed, epoch, batch); the loss is then
    /// computed in its soft-target form (see <see cref="BatchMixing"/>). Null: no mixing.</param>
    /// <returns>The per-epoch logs.</returns>
    /// <exception cref="ConvKitException">The model is not compiled, or the data do not fit it.</exception>
    /// <exception cref="InvalidOptionException">A numeric argument is out of range, or <paramref name="mixing"/> is given for a loss without a soft-target form.</exception>
    /// <exception cref="TargetException">The targets do not fit the loss, a metric or the output (checked before any step).</exception>
    /// <exception cref="ObjectDisposedException">The model, x or y was disposed.</exception>
    /// <remarks>
    /// NaN or infinite values in <paramref name="x"/> are not checked (it would cost a pass over the data): they make
    /// the loss NaN, as in Keras; add <see cref="TerminateOnNaN"/> to stop there. Targets are checked (a NaN target is
    /// a <see cref="TargetException"/>). Whatever exception ends Fit, the model leaves it in the mode (train/eval) it
    /// entered it. Thread safety: one Fit at a time per model, and not while Predict or Evaluate run on another thread
    /// (refused with a <see cref="ConvKitException"/>, see <see cref="Predict"/>).
    /// </remarks>
    public History Fit(Tensor x, Tensor y, int batchSize = 32, int epochs = 1, Verbosity verbose = default,
        IEnumerable<Callback>? callbacks = null, double validationSplit = 0, (Tensor X, Tensor Y)? validationData = null,
        bool shuffle = true, IReadOnlyDictionary<int, double>? classWeight = null, int initialEpoch = 0, long? seed = null,
        BatchMixing? mixing = null)
    {
        ThrowIfDisposed();
        RequireCompiled("Fit");
        if (batchSize <= 0) throw new InvalidOptionException(nameof(batchSize), $"batch_size must be positive; received {batchSize}.");
        if (epochs < 0) throw new InvalidOptionException(nameof(epochs), $"epochs must be >= 0; received {epochs}.");
        if (initialEpoch < 0) throw new InvalidOptionException(nameof(initialEpoch), $"initial_epoch must be >= 0; received {initialEpoch}.");
        if (validationSplit is < 0 or >= 1 || double.IsNaN(validationSplit))
            throw new InvalidOptionException(nameof(validationSplit), $"validation_split must be in [0, 1); received {validationSplit}.");
        CheckData(x, y, "Fit");
        var softLoss = mixing is null ? null : SoftTargetLoss();
        if (validationData is { } vdCheck) CheckData(vdCheck.X, vdCheck.Y, "Fit (validation_data)");
        EnsureBuiltFor(x);
        if (validationData is { } vdShape) EnsureBuiltFor(vdShape.X, "validation_data");
        BeginFit();
        bool wasTraining = training;
        try
        {
            fitMixing = mixing is null ? null : (mixing, softLoss!);
            return FitCore(x, y, batchSize, epochs, verbose.Level(auto: 1), callbacks, validationSplit, validationData, shuffle, classWeight, initialEpoch, seed);
        }
        catch (ExternalException e)
        {
            throw LibtorchFailure("Fit", e);
        }
        finally
        {
            // Whatever happened, the model leaves Fit in the mode it entered it.
            if (wasTraining) train(); else eval();
            fitMixing = null;
            EndFit();
        }
    }

    History FitCore(Tensor x, Tensor y, int batchSize, int epochs, int verbose, IEnumerable<Callback>? callbacks, double validationSplit,
        (Tensor X, Tensor Y)? validationData, bool shuffle, IReadOnlyDictionary<int, double>? classWeight, int initialEpoch, long? seed)
    {
        var device = ModelDevice();

        var trainable = TrainableParameters();
        if (trainable.Count == 0) throw new ConvKitException($"model '{Name}' has no trainable weights to fit.");

        // Targets against loss, metrics and output before any step: a mismatch must not train half a batch.
        using (NewDisposeScope())
        {
            var yCheck = PrepareTargets(y, device);
            TargetValidation.Check(this, loss!, ResolveMetrics(yCheck), yCheck, "Fit");
            if (validationData is { } vdTargets)
            {
                var yValCheck = PrepareTargets(vdTargets.Y, device);
                TargetValidation.Check(this, loss!, ResolveMetrics(yValCheck), yValCheck, "Fit (validation_data)");
            }
        }

        // Built outside any dispose scope: TorchSharp optimizers keep their state across Fit calls.
        optimizer!.Build(trainable);
        BeginDistributedFit();

        using var fitScope = NewDisposeScope();
        long n = x.shape[0];
        Tensor xs = PrepareInputs(x, device), ys = PrepareTargets(y, device);
        Tensor? xVal = null, yVal = null;
        if (validationData is { } vd)
        {
            xVal = PrepareInputs(vd.X, device);
            yVal = PrepareTargets(vd.Y, device);
        }
        else if (validationSplit > 0)
        {
            // Keras: the last fraction of the samples, before any shuffling.
            long split = (long)(n * (1 - validationSplit));
            if (split == 0 || split == n)
                throw new InvalidOptionException(nameof(validationSplit), $"validation_split={validationSplit} of {n} samples leaves an empty training or validation set.");
            xVal = xs.narrow(0, split, n - split);
            yVal = ys.narrow(0, split, n - split);
            xs = xs.narrow(0, 0, split);
            ys = ys.narrow(0, 0, split);
            n = split;
        }
        Tensor? sampleWeights = classWeight is null ? null : ClassSampleWeights(classWeight, ys, device);

        var head = FusedHeadFor(loss!);
        var metrics = ResolveMetrics(ys);
        bool metricsNeedActivation = head is not null && metrics.Any(m => !m.InvariantToSoftmax);
        var lossTracker = new Mean("loss");
        bool hasRegularization = HasRegularization();

        var dp = DistributionStrategy;
        int steps = dp?.Steps(n, batchSize) ?? (int)((n + batchSize - 1) / batchSize);
        var cbs = new CallbackList(callbacks, this, new TrainingParams(epochs, steps, verbose, n, batchSize), addHistory: true, addProgbar: verbose > 0);
        long drawSeed = DistributedSeed(seed ?? Backend.NextSeed());
        using var generator = new Generator((ulong)drawSeed, device);

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
            // StopTraining may already be set: a run resumed from a backup written after an early stop runs no epoch.
            for (int epoch = initialEpoch; epoch < epochs && !StopTraining; epoch++)
            {
                train();
                lossTracker.ResetState();
                foreach (var m in metrics) m.ResetState();
                cbs.EpochBegin(epoch, new Logs());
                using var perm = dp is not null ? dp.EpochIndices(n, batchSize, steps, shuffle, generator, device)
                    : shuffle ? randperm(n, dtype: int64, device: device, generator: generator) : null;
                for (int b = 0; b < steps; b++)
                {
                    cbs.TrainBatchBegin(b, emptyLogs);
                    using (var scope = NewDisposeScope())
                    {
                        long start = (long)b * batchSize, len = Math.Min(batchSize, n - start);
                        Tensor xb, yb;
                        Tensor? wb = null;
                        if (perm is not null)
                        {
                            var idx = perm.narrow(0, start, len);
                            xb = Layout.SelectSamples(xs, idx);
                            yb = ys.index_select(0, idx);
                            if (sampleWeights is not null) wb = sampleWeights.index_select(0, idx);
                        }
                        else
                        {
                            xb = xs.narrow(0, start, len);
                            yb = ys.narrow(0, start, len);
                            wb = sampleWeights?.narrow(0, start, len);
                        }
                        TrainStep(xb, yb, wb, len, head, metrics, metricsNeedActivation, lossTracker, hasRegularization, (drawSeed, epoch, b));
                    }
                    StepsDone++;
                    batchLogs.SetLazy(fillBatchLogs);
                    cbs.TrainBatchEnd(b, batchLogs);
                    if (StopTraining) break;
                }
                epochLogs = new Logs();
                ReadMetrics(epochLogs, lossTracker, metrics, "");
                dp?.ReduceLogs(epochLogs);
                if (xVal is not null)
                {
                    var val = RunTest(xVal, yVal!, null, batchSize, cbs, head, metrics, lossTracker);
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

    // The mixing of the running Fit and the soft-target form of its loss; null without mixing.
    (BatchMixing Mixing, Loss SoftLoss)? fitMixing;

    /// <summary>The compiled loss in the form that takes the soft targets MixUp and CutMix make.</summary>
    Loss SoftTargetLoss() => loss switch
    {
        SparseCategoricalCrossentropy s => s.ForSoftTargets(),
        CategoricalCrossentropy c => c,
        _ => throw new InvalidOptionException("mixing", $"model '{Name}': MixUp and CutMix make soft targets, which loss '{loss!.Name}' does not take; " +
            "compile with sparse_categorical_crossentropy or categorical_crossentropy."),
    };

    void TrainStep(Tensor xb, Tensor yb, Tensor? wb, long len, FusedHead? head, Metric[] metrics, bool metricsNeedActivation,
        Mean lossTracker, bool hasRegularization, (long Seed, int Epoch, int Batch) key)
    {
        optimizer!.ZeroGrad();
        Tensor? soft = null;
        if (fitMixing is { } fm)
        {
            // Metrics keep the batch's own labels (sparse or one-hot): the training accuracy counts each sample's label.
            (xb, soft) = fm.Mixing.Mix(xb, yb, (int)ModelOutputShape[-1], key.Seed, key.Epoch, key.Batch);
        }
        var (lossValue, pred) = ComputeLoss(xb, soft ?? yb, wb, head, metricsNeedActivation, lossOverride: soft is null ? null : fitMixing!.Value.SoftLoss);
        if (hasRegularization)
            foreach (var r in RegularizationLosses()) lossValue = lossValue.add(r, Scalars.One);
        lossValue.backward();
        DistributionStrategy?.AverageGradients(TrainableParameters());
        optimizer.Step();
        lossTracker.Update(lossValue, len);
        foreach (var m in metrics) m.UpdateState(yb, pred, wb);
    }

    /// <summary>The loss of a batch and the predictions the metrics see (logits when every metric allows it).</summary>
    (Tensor Loss, Tensor Pred) ComputeLoss(Tensor xb, Tensor yb, Tensor? wb, FusedHead? head, bool metricsNeedActivation,
        InferenceModel? inference = null, Loss? lossOverride = null)
    {
        var loss = lossOverride ?? this.loss;
        // Without sample weights the loss may reduce in one fused kernel (cross-entropy's mean).
        if (head is null)
        {
            var pred = inference is not null ? inference.Run([xb])[0] : Forward([xb])[0];
            return (wb is null ? loss!.CallMean(yb, pred) : Training.Loss.Reduce(loss!.Call(yb, pred), wb), pred);
        }
        var logits = head.Logits(xb, inference);
        var value = wb is null ? loss!.CallFromLogitsMean(yb, logits) : Training.Loss.Reduce(loss!.CallFromLogits(yb, logits), wb);
        return (value, metricsNeedActivation ? head.Activation.Apply(logits.detach()) : logits);
    }

    // ------------------------------------------------------------------ Evaluate / Predict

    /// <summary>
    /// Returns the loss and metrics on data, Keras' <c>evaluate</c> (<c>{"loss": ..., "accuracy": ...}</c>), in
    /// inference mode (dropout off, batch normalization on moving statistics).
    /// </summary>
    /// <exception cref="ConvKitException">The model is not compiled, or the data do not fit it.</exception>
    public IReadOnlyDictionary<string, double> Evaluate(Tensor x, Tensor y, int batchSize = 32, Verbosity verbose = default,
        IEnumerable<Callback>? callbacks = null, Tensor? sampleWeight = null)
    {
        ThrowIfDisposed();
        RequireCompiled("Evaluate");
        if (batchSize <= 0) throw new InvalidOptionException(nameof(batchSize), $"model '{Name}': Evaluate's batch_size must be positive; received {batchSize}.");
        CheckData(x, y, "Evaluate");
        EnsureBuiltFor(x);
        if (sampleWeight is not null && (sampleWeight.dim() != 1 || sampleWeight.shape[0] != x.shape[0]))
            throw new ShapeException($"model '{Name}': Evaluate's sample_weight must have one weight per sample, shape [{x.shape[0]}]; received [{string.Join(", ", sampleWeight.shape)}].");
        var device = ModelDevice();
        using var guard = BeginInference("Evaluate");
        try
        {
            using var scope = NewDisposeScope();
            var xs = PrepareInputs(x, device);
            var ys = PrepareTargets(y, device);
            var sw = sampleWeight?.to(device).to_type(float32);
            // Metric state of its own for each call: Evaluate may run on several threads at once. Metrics that cannot
            // be copied (your own) are shared, and the calls using them take turns.
            var resolved = ResolveMetrics(ys);
            var metrics = resolved.Select(m => m.FreshCopy() ?? m).ToArray();
            TargetValidation.Check(this, loss!, metrics, ys, "Evaluate");
            int steps = (int)((x.shape[0] + batchSize - 1) / batchSize);
            var cbs = new CallbackList(callbacks, this, new TrainingParams(1, steps, verbose.Level(auto: 1), x.shape[0], batchSize), addHistory: false, addProgbar: verbose.Level(auto: 1) > 0);
            var head = FusedHeadFor(loss!);
            if (metrics.All(m => !compiledMetrics.Contains(m))) return RunTest(xs, ys, sw, batchSize, cbs, head, metrics, new Mean("loss"));
            lock (compiledMetrics) return RunTest(xs, ys, sw, batchSize, cbs, head, metrics, new Mean("loss"));
        }
        catch (ExternalException e)
        {
            throw LibtorchFailure("Evaluate", e);
        }
    }

    Dictionary<string, double> RunTest(Tensor xs, Tensor ys, Tensor? sw, int batchSize, CallbackList cbs, FusedHead? head,
        Metric[] metrics, Mean lossTracker)
    {
        // Inference on this thread only: the model's training flag (shared with other threads) is not switched.
        using var inferenceContext = InferenceContext.Enter();
        var inference = head is null ? inferenceSlot.Acquire(this, graph, InferenceOptimizations) : head.AcquireInference(this, InferenceOptimizations);
        var batchLogs = new Logs();
        Action<Dictionary<string, double>> fill = d => ReadMetrics(d, lossTracker, metrics, "");
        bool needActivation = head is not null && metrics.Any(m => !m.InvariantToSoftmax);
        lossTracker.ResetState();
        foreach (var m in metrics) m.ResetState();
        long n = xs.shape[0];
        int steps = (int)((n + batchSize - 1) / batchSize);
        var emptyLogs = new Logs();
        cbs.TestBegin(emptyLogs);
        try
        {
            using var _ = no_grad();
            for (int b = 0; b < steps; b++)
            {
                cbs.TestBatchBegin(b, emptyLogs);
                using (var scope = NewDisposeScope())
                {
                    long start = (long)b * batchSize, len = Math.Min(batchSize, n - start);
                    var xb = xs.narrow(0, start, len);
                    var yb = ys.narrow(0, start, len);
                    var wb = sw?.narrow(0, start, len);
                    Tensor value, pred;
                    // The forward pass without autograd bookkeeping; metric state stays ordinary tensors (created
                    // outside inference mode), which may read inference tensors.
                    using (inference_mode()) (value, pred) = ComputeLoss(xb, yb, wb, head, needActivation, inference);
                    foreach (var r in RegularizationLosses()) value = value.add(r, Scalars.One);
                    lossTracker.Update(value, len);
                    foreach (var m in metrics) m.UpdateState(yb, pred, wb);
                }
                batchLogs.SetLazy(fill);
                cbs.TestBatchEnd(b, batchLogs);
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
    /// Computes the outputs batch by batch in inference mode (dropout off, batch normalization on moving statistics,
    /// no gradients), Keras' <c>predict</c>. Inputs and 4-D outputs are in Keras' layout (N, H, W, C). Runs the model's
    /// cached <see cref="InferenceModel"/>, made anew after any write to the weights.
    /// </summary>
    /// <remarks>
    /// Thread safety: Predict and Evaluate may run on one model from many threads at once; each call gives the result
    /// it gives alone, bit for bit, and none changes the model (its training flag, batch-normalization statistics,
    /// weights). <see cref="Fit"/> on one thread while Predict or Evaluate runs on another is refused with a
    /// <see cref="ConvKitException"/> (whichever starts second throws), as is a second Fit; from Fit's own callbacks
    /// (its thread) Predict and Evaluate are allowed. Writing weights by other means (LoadWeights, SetWeights) while
    /// a call runs is a data race: its result is undefined.
    /// </remarks>
    /// <param name="x">A batch of inputs (N, ...); with N = 0 the result has 0 rows and the model's output shape.</param>
    /// <param name="batchSize">Samples per forward pass.</param>
    /// <param name="verbose">Keras' verbose: <see cref="Verbosity.Silent"/> (0, what <see cref="Verbosity.Auto"/>, the
    /// default, means here), <see cref="Verbosity.ProgressBar"/> (1), <see cref="Verbosity.OneLinePerEpoch"/> (2).</param>
    /// <param name="callbacks">Callbacks called around each batch.</param>
    /// <exception cref="ShapeException">The data do not fit the model.</exception>
    /// <exception cref="ConvKitException">The input is not floating point, Fit runs on another thread, or libtorch failed.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public Tensor Predict(Tensor x, int batchSize = 32, Verbosity verbose = default, IEnumerable<Callback>? callbacks = null)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(x);
        CheckPredictArguments(x, batchSize);
        EnsureBuiltFor(x);
        var inference = inferenceSlot.Acquire(this, graph, InferenceOptimizations);
        try { return PredictWith(inference, x, batchSize, verbose.Level(auto: 0), callbacks); }
        finally { inference.Release(); }
    }

    void CheckPredictArguments(Tensor x, int batchSize)
    {
        if (batchSize <= 0) throw new InvalidOptionException(nameof(batchSize), $"model '{Name}': Predict's batch_size must be positive; received {batchSize}.");
        if (x.IsInvalid) throw new ObjectDisposedException(nameof(Tensor), $"model '{Name}': Predict received a disposed tensor as x.");
        if (x.dim() < 2) throw new ShapeException($"model '{Name}': Predict expects a batch (N, ...); received a tensor of shape [{string.Join(", ", x.shape)}].");
        if (!x.is_floating_point())
            throw new ConvKitException($"model '{Name}': Predict expects float inputs; received {x.dtype}. Convert with x.to_type(float32) (and scale).");
    }

    /// <summary>Predict on <paramref name="inference"/> (a reference held by the caller).</summary>
    internal Tensor PredictWith(InferenceModel inference, Tensor x, int batchSize, int verbose, IEnumerable<Callback>? callbacks)
    {
        CheckPredictArguments(x, batchSize);
        EnsureBuiltFor(x);
        var device = ModelDevice();
        long n = x.shape[0];
        if (n == 0) return EmptyPrediction(x);
        int steps = (int)((n + batchSize - 1) / batchSize);
        var cbs = new CallbackList(callbacks, this, new TrainingParams(1, steps, verbose, n, batchSize), addHistory: false, addProgbar: verbose > 0);
        var emptyLogs = new Logs();
        using var guard = BeginInference("Predict");
        cbs.PredictBegin(emptyLogs);
        try
        {
            // No autograd bookkeeping at all (no version counters, no views tracked); results are ordinary tensors
            // again below, as callers may go on to use them with autograd.
            using var scope = NewDisposeScope();
            var outputs = new Tensor[steps];
            using (inference_mode())
            {
                var xs = PrepareInputs(x, device);
                for (int b = 0; b < steps; b++)
                {
                    cbs.PredictBatchBegin(b, emptyLogs);
                    long start = (long)b * batchSize, len = Math.Min(batchSize, n - start);
                    using (var batchScope = NewDisposeScope())
                        outputs[b] = inference.Run([xs.narrow(0, start, len)])[0].MoveToOuterDisposeScope();
                    cbs.PredictBatchEnd(b, emptyLogs);
                }
            }
            // One copy out of inference mode (an inference tensor can be neither saved for backward nor written in
            // place outside it); the same copy makes a (N, H, W, C) result contiguous.
            var all = steps == 1 ? outputs[0] : cat(outputs, 0);
            using var keras = all.dim() == 4 && InputDataFormat == DataFormat.ChannelsLast ? all.permute(0, 2, 3, 1) : all.alias();
            var result = empty(keras.shape, keras.dtype, keras.device).copy_(keras).MoveToOuterDisposeScope();
            cbs.PredictEnd(emptyLogs);
            return result;
        }
        catch (ExternalException e)
        {
            throw LibtorchFailure("Predict", e);
        }
    }

    /// <summary>Keras' predict on no samples: an empty result of the model's output shape.</summary>
    Tensor EmptyPrediction(Tensor x)
    {
        var shape = ModelOutputShape;
        if (!shape.IsFullyDefined)
            throw new ShapeException($"model '{Name}': Predict received no samples (x has shape [{string.Join(", ", x.shape)}]) and the output shape {shape.ToBatchString()} is not fully known, so no empty result can be shaped.");
        var dtype = parameters().FirstOrDefault()?.dtype is { } d && is_floating_point(d) ? d : float32;
        long[] dims = InputDataFormat == DataFormat.ChannelsFirst && shape.Rank == 3 ? Layout.ToInternal(shape, 0) : [0, .. shape.ToArray().Select(v => (long)v)];
        return empty(dims, dtype, ModelDevice());
    }

    // ------------------------------------------------------------------ concurrency

    int fitThread;
    int activeInferences;

    /// <summary>Counts a running Predict/Evaluate; refuses while Fit runs on another thread (see <see cref="Predict"/>).</summary>
    InferenceGuard BeginInference(string what)
    {
        Interlocked.Increment(ref activeInferences);
        int fitting = Volatile.Read(ref fitThread);
        if (fitting != 0 && fitting != Environment.CurrentManagedThreadId)
        {
            Interlocked.Decrement(ref activeInferences);
            throw new ConvKitException($"model '{Name}': {what} cannot run while Fit trains this model on another thread (its weights change under the call). Wait for Fit to end, or use a copy of the model.");
        }
        return new InferenceGuard(this);
    }

    readonly struct InferenceGuard(Model model) : IDisposable
    {
        public void Dispose() => Interlocked.Decrement(ref model.activeInferences);
    }

    /// <summary>Marks Fit running on this thread; refuses a second Fit and Fit while Predict/Evaluate run elsewhere.</summary>
    void BeginFit()
    {
        int me = Environment.CurrentManagedThreadId;
        int other = Interlocked.CompareExchange(ref fitThread, me, 0);
        if (other != 0)
            throw new ConvKitException(other == me
                ? $"model '{Name}': Fit was called while Fit is already running on this model (from one of its callbacks); a model trains one Fit at a time."
                : $"model '{Name}': Fit cannot start while another Fit trains this model on another thread.");
        if (Volatile.Read(ref activeInferences) > 0)
        {
            Volatile.Write(ref fitThread, 0);
            throw new ConvKitException($"model '{Name}': Fit cannot start while Predict or Evaluate runs on this model on another thread (they would read weights Fit is changing). Wait for them to end.");
        }
    }

    void EndFit() => Volatile.Write(ref fitThread, 0);

    /// <summary>A libtorch failure as a ConvKitException whose message has no C++ frames.</summary>
    ConvKitException LibtorchFailure(string what, ExternalException e) =>
        new($"model '{Name}': {what} failed inside libtorch: {CleanLibtorchMessage(e.Message)}", e);

    /// <summary>The first line(s) of a libtorch error, without "Exception raised from ..." and the frames after it.</summary>
    internal static string CleanLibtorchMessage(string message)
    {
        int cut = message.IndexOf("Exception raised from", StringComparison.Ordinal);
        if (cut < 0) cut = message.IndexOf("frame #", StringComparison.Ordinal);
        var text = (cut >= 0 ? message[..cut] : message).Trim();
        return text.Length == 0 ? "(no message)" : text;
    }

    // ------------------------------------------------------------------ weights

    /// <summary>Copies of every weight (trainable and not), in <see cref="Layer.Weights"/> order, Keras' <c>get_weights</c>.</summary>
    public Tensor[] GetWeights()
    {
        ThrowIfDisposed();
        using var _ = no_grad();
        return Weights.Select(w => w.Value.detach().clone().DetachFromDisposeScope()).ToArray();
    }

    /// <summary>Overwrites every weight with values from <see cref="GetWeights"/>, Keras' <c>set_weights</c>.</summary>
    /// <exception cref="ShapeException">The count or a shape differs.</exception>
    public void SetWeights(IReadOnlyList<Tensor> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        ThrowIfDisposed();
        var weights = Weights.ToArray();
        if (weights.Length != values.Count)
            throw new ShapeException($"model '{Name}' has {weights.Length} weights; received {values.Count}.");
        for (int i = 0; i < weights.Length; i++)
            if (!weights[i].Value.shape.SequenceEqual(values[i].shape))
                throw new ShapeException($"model '{Name}': weight '{weights[i].Owner.Name}/{weights[i].Name}' has shape [{string.Join(", ", weights[i].Value.shape)}]; received [{string.Join(", ", values[i].shape)}].");
        using var _ = no_grad();
        for (int i = 0; i < weights.Length; i++) weights[i].Value.copy_(values[i]);
    }

    // ------------------------------------------------------------------ helpers

    void RequireCompiled(string what)
    {
        if (!IsCompiled) throw new ConvKitException($"model '{Name}' must be compiled before {what}: call Compile(optimizer, loss, metrics).");
    }

    void CheckData(Tensor x, Tensor y, string what)
    {
        ArgumentNullException.ThrowIfNull(x);
        ArgumentNullException.ThrowIfNull(y);
        if (x.IsInvalid) throw new ObjectDisposedException(nameof(Tensor), $"model '{Name}': {what} received a disposed tensor as x.");
        if (y.IsInvalid) throw new ObjectDisposedException(nameof(Tensor), $"model '{Name}': {what} received a disposed tensor as y.");
        if (x.dim() < 2) throw new ShapeException($"model '{Name}': {what} expects x as a batch (N, ...); received shape [{string.Join(", ", x.shape)}].");
        if (y.dim() < 1) throw new ShapeException($"model '{Name}': {what} expects y as a batch (N, ...); received a scalar.");
        if (x.shape[0] != y.shape[0])
            throw new ShapeException($"model '{Name}': {what} received {x.shape[0]} input samples but {y.shape[0]} targets.");
        if (x.shape[0] == 0) throw new ShapeException($"model '{Name}': {what} received no samples.");
        if (!x.is_floating_point()) throw new ConvKitException($"model '{Name}': {what} expects float inputs; received {x.dtype}. Convert with x.to_type(float32) (and scale).");
    }

    /// <summary>Builds an unbuilt model for the data, or checks the data's sample shape against the model's input.</summary>
    void EnsureBuiltFor(Tensor x, string data = "data")
    {
        bool channelsFirst = InputDataFormat == DataFormat.ChannelsFirst;
        var sample = channelsFirst ? Layout.ToKeras(x.shape) : new Shape(x.shape.Skip(1).Select(d => (int)d).ToArray());
        if (!IsBuilt)
        {
            // Two threads predicting with an unbuilt model: one builds it.
            lock (fusedHeadGate)
                if (!IsBuilt) Build(sample);
        }
        var expected = BuiltInputShapes![0];
        bool ok = expected.Rank == sample.Rank;
        for (int d = 0; ok && d < sample.Rank; d++) ok = expected[d] == Shape.Unknown || expected[d] == sample[d];
        if (!ok) throw new ShapeException(DataShapeMismatch(expected, x.shape, data));
    }

    // The shape error for data that do not fit the model's input, saying when they look like the other layout.
    string DataShapeMismatch(Shape expected, long[] received, string data)
    {
        bool channelsFirst = InputDataFormat == DataFormat.ChannelsFirst;
        string layout = channelsFirst ? "channels-first (N, C, H, W)" : "channels-last (N, H, W, C)";
        string expectedText = channelsFirst && expected.Rank == 3
            ? $"(None, {expected[2]}, {expected[0]}, {expected[1]})" : expected.ToBatchString();
        string receivedText = new Shape(received.Skip(1).Select(d => (int)d).ToArray()).ToBatchString();
        string message = $"model '{Name}' expects {layout} input {expectedText}; received {data} of shape {receivedText}.";
        if (expected.Rank != 3 || received.Length != 4) return message;
        int c = expected[2];
        bool fitsOther = channelsFirst
            ? received[3] == c && (expected[0] == Shape.Unknown || received[1] == expected[0]) && (expected[1] == Shape.Unknown || received[2] == expected[1])
            : received[1] == c && (expected[0] == Shape.Unknown || received[2] == expected[0]) && (expected[1] == Shape.Unknown || received[3] == expected[1]);
        if (!fitsOther) return message;
        return channelsFirst
            ? message + " It looks like NHWC (channels-last): this model's Input is declared channels-first; permute with x.permute(0, 3, 1, 2), or declare the Input with DataFormat.ChannelsLast."
            : message + " It looks like NCHW (channels-first): this model's Input is channels-last, as in Keras; permute with x.permute(0, 2, 3, 1), or declare the Input with dataFormat: DataFormat.ChannelsFirst.";
    }

    Device ModelDevice() => parameters().FirstOrDefault()?.device ?? CPU;

    /// <summary>Inputs on the model's device in its weights' floating type (float32 unless the model was converted).</summary>
    Tensor PrepareInputs(Tensor x, Device device)
    {
        var t = x.device == device ? x : x.to(device);
        var dtype = parameters().FirstOrDefault()?.dtype is { } d && is_floating_point(d) ? d : float32;
        if (t.dtype != dtype) t = t.to_type(dtype);
        return InputDataFormat == DataFormat.ChannelsFirst ? t.alias() : Layout.FromKeras(t);
    }

    Tensor PrepareTargets(Tensor y, Device device)
    {
        var t = y.device == device ? y : y.to(device);
        if (t.dtype is ScalarType.Int32 or ScalarType.Int16 or ScalarType.Byte or ScalarType.Int8) t = t.to_type(int64);
        else if (t.dtype is ScalarType.Float64 or ScalarType.Float16 or ScalarType.BFloat16) t = t.to_type(float32);
        return InputDataFormat == DataFormat.ChannelsFirst ? t.alias() : Layout.FromKeras(t);
    }

    /// <summary>Keras' class_weight: each sample weighs the weight of its class (the argmax of a one-hot target).</summary>
    Tensor ClassSampleWeights(IReadOnlyDictionary<int, double> classWeight, Tensor ys, Device device)
    {
        var labels = ys.is_floating_point() ? ys.argmax(-1) : ys.dim() > 1 && ys.shape[^1] == 1 ? ys.squeeze(-1) : ys;
        if (labels.dim() != 1)
            throw new ConvKitException($"model '{Name}': class_weight needs one class per sample; targets have shape [{string.Join(", ", ys.shape)}].");
        int classes = Math.Max(classWeight.Keys.DefaultIfEmpty(0).Max() + 1, (int)labels.max().item<long>() + 1);
        var table = new float[classes];
        for (int c = 0; c < classes; c++)
        {
            // Keras requires a weight for every class present; missing ones weigh 1 here instead of failing mid-run.
            table[c] = classWeight.TryGetValue(c, out var w) ? (float)w : 1f;
        }
        if (classWeight.Keys.Any(k => k < 0)) throw new InvalidOptionException(nameof(classWeight), $"model '{Name}': class_weight keys must be class indices >= 0.");
        return tensor(table, device: device).index_select(0, labels);
    }

    List<Parameter> TrainableParameters()
    {
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var list = new List<Parameter>();
        foreach (var w in TrainableWeights)
            if (w.Value is Parameter p && seen.Add(p)) list.Add(p);
        return list;
    }

    bool HasRegularization()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        return RegularizationLosses().Any();
    }

    Metric[] ResolveMetrics(Tensor ys)
    {
        var outShape = Layout.ToInternal(ModelOutputShape, 1);
        return compiledMetrics.Select(m => m is AutoAccuracy a ? Metrics.ResolveAccuracy(a.Name, loss!, ys, outShape) : m).ToArray();
    }

    static void ReadMetrics(Dictionary<string, double> into, Mean lossTracker, Metric[] metrics, string prefix)
    {
        into[prefix + "loss"] = lossTracker.Result();
        foreach (var m in metrics) into[prefix + m.Name] = m.Result();
    }

    static void ReadMetrics(Logs into, Mean lossTracker, Metric[] metrics, string prefix)
    {
        into[prefix + "loss"] = lossTracker.Result();
        foreach (var m in metrics) into[prefix + m.Name] = m.Result();
    }

    /// <summary>
    /// When the graph's output layer is a plain Dense or Activation applying an activation the loss can fuse (softmax
    /// for categorical cross-entropy), the loss is computed from the pre-activation logits: a sub-graph runs up to the
    /// output layer's input, and the head's linear part is applied here. Subclassed models have no graph to inspect;
    /// their losses clamp probabilities as Keras does.
    /// </summary>
    FusedHead? FusedHeadFor(Loss lossFn)
    {
        lock (fusedHeadGate) return FusedHeadForLocked(lossFn);
    }

    readonly object fusedHeadGate = new();

    FusedHead? FusedHeadForLocked(Loss lossFn)
    {
        if (ReferenceEquals(fusedHeadKey.Graph, Graph) && ReferenceEquals(fusedHeadKey.Loss, lossFn)) return fusedHead;
        fusedHeadKey = (Graph, lossFn);
        fusedHead?.Dispose();
        fusedHead = null;
        if (Graph is not { } g || g.Outputs.Count != 1) return null;
        var node = g.Outputs[0].Node;
        if (node.IsInput || node.Inputs.Count != 1) return null;
        ActivationFunction? activation = node.Layer switch
        {
            Dense d when d.GetType() == typeof(Dense) => d.Activation,
            Activation a when a.GetType() == typeof(Activation) => a.Function,
            _ => null,
        };
        if (activation is null || !lossFn.CanFuse(activation)) return null;
        fusedHead = new FusedHead(new FunctionalGraph(g.Inputs, [node.Inputs[0]], Name), node.Layer, activation);
        return fusedHead;
    }

    sealed class FusedHead(FunctionalGraph trunk, Layer layer, ActivationFunction activation) : IDisposable
    {
        readonly InferenceSlot inference = new();

        public ActivationFunction Activation { get; } = activation;

        /// <summary>The trunk's inference model (a reference taken for the caller).</summary>
        public InferenceModel AcquireInference(Model model, bool optimized) => inference.Acquire(model, trunk, optimized);

        /// <summary>The logits: the trunk run by <paramref name="trunkInference"/>, or layer by layer (training) when null.</summary>
        public Tensor Logits(Tensor x, InferenceModel? trunkInference)
        {
            var hidden = trunkInference is not null ? trunkInference.Run([x])[0] : trunk.Run([x])[0];
            return layer is Dense d ? F.linear(hidden, d.Kernel!, d.Bias) : hidden;
        }

        public void Dispose() => inference.Dispose();
    }
}
