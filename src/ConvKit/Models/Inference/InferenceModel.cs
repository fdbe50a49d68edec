using ConvKit.Layers;
using ConvKit.Native;
using static TorchSharp.torch;

namespace ConvKit.Models.Inference;

/// <summary>
/// A model prepared for inference only (ML.NET's prediction engine, a frozen TorchScript module): made by
/// <see cref="Model.AsInferenceModel()"/>, eval-only (dropout and augmentation are identities, batch normalization uses its
/// moving statistics; the model's training flag is never read or switched), and immutable after construction. With
/// <see cref="Model.InferenceOptimizations"/> on, it runs the model's inference plan (zero padding and batch
/// normalization folded into the convolutions, kernels packed for oneDNN with the ReLU fused, activations and additions
/// in place) on kernels made from the weights as they were when it was created.
/// </summary>
/// <remarks>
/// <para><b>Thread safety.</b> <see cref="Predict"/> may be called from any number of threads at once; each call works
/// on tensors of its own, takes no lock while it computes, and gives results bit-identical to the same call made alone.
/// Kernels packed on first use are published once (a thread that loses the race discards its copy).</para>
/// <para><b>Staleness.</b> The inference model reads the model's layers and weights; it does not copy them. Writing the
/// model's weights afterwards (Fit, LoadWeights, SetWeights, an in-place edit, to(device or dtype)) makes it stale:
/// the next call throws a <see cref="ConvKitException"/> (libtorch's version counters tell; where they cannot be read,
/// nothing is detected). Writing weights while a call runs is a data race, with undefined results: do not train or
/// load a model while inference models made from it are in use. <see cref="Model.Predict"/> needs no such care: it keeps
/// one inference model and makes a new one after any write.</para>
/// <para><b>Lifetime.</b> Dispose frees the folded and packed kernels; calls already running finish first (each holds
/// a reference). Disposing the model disposes nothing here, but a call after the model was disposed throws
/// <see cref="ObjectDisposedException"/>.</para>
/// </remarks>
public sealed class InferenceModel : IPredictor, IDisposable
{
    string IPredictor.Name => ModelName;

    Shape IPredictor.InputShape => model.ModelInputShape;

    Shape IPredictor.OutputShape => model.ModelOutputShape;

    readonly Model model;
    readonly FunctionalGraph? graph;
    readonly FunctionalGraph.Plan? plan;
    readonly ConvolutionKernels?[] kernels = [];
    readonly Tensor[] weights;
    readonly long[]? versions;
    long checkedStructure;
    readonly bool nonFiniteWeights;
    readonly bool hasFusedRelu;
    int references = 1;
    int disposed;

    // The engine: requested, and the one serving (Auto: undecided until the third batch).
    const int Undecided = 0, UseTorch = 1, UseOrt = 2;
    int decision;
    int autoRuns;
    OrtSession? ort;
    readonly object decideGate = new();

    internal InferenceModel(Model model, FunctionalGraph? graph, bool optimized, InferenceEngine engine = InferenceEngine.TorchSharp,
        bool batchInvariant = false)
    {
        this.model = model;
        BatchInvariant = batchInvariant;
        this.graph = graph;
        Optimized = optimized && graph is not null;
        // Read before the walk: a change while it runs leaves the next IsCurrent to walk again.
        checkedStructure = Layer.WeightStructure;
        weights = model.Weights.Select(w => w.Value).ToArray();
        versions = ReadVersions(weights);
        if (Optimized)
        {
            plan = graph!.InferencePlan();
            kernels = new ConvolutionKernels?[plan.Steps.Length];
            try
            {
                for (int i = 0; i < kernels.Length; i++)
                    if (plan.Steps[i].Fused is { } f) kernels[i] = model.InferenceKernels.Acquire(f.Conv, f.BatchNorm);
            }
            catch
            {
                foreach (var k in kernels) k?.Release();
                throw;
            }
            hasFusedRelu = plan.Steps.Any(s => s.Fused is { } f && (f.Relu || ReferenceEquals(f.Conv.Activation, Activations.ReLU)));
            if (hasFusedRelu || engine != InferenceEngine.TorchSharp)
            {
                using var scope = NewDisposeScope();
                using var _ = no_grad();
                nonFiniteWeights = weights.Any(w => w.is_floating_point() && !isfinite(w).all().item<bool>());
            }
        }
        RequestedEngine = engine;
        decision = engine == InferenceEngine.TorchSharp ? UseTorch : Undecided;
        if (engine != InferenceEngine.TorchSharp && !Optimized)
        {
            EngineFallbackReason = $"model '{model.Name}' runs every layer as written (InferenceOptimizations is off, or the model has no functional graph); only the TorchSharp engine does that.";
            decision = UseTorch;
        }
        else if (engine != InferenceEngine.TorchSharp && batchInvariant)
        {
            EngineFallbackReason = "batch-invariant inference runs on ConvKit's plan only (ONNX Runtime's matrix products, like MKL's, round by batch size).";
            decision = UseTorch;
        }
        else if (engine == InferenceEngine.OnnxRuntime)
        {
            ort = OrtSession.TryCreate(model, Backend.Threads, out var reason);
            EngineFallbackReason = reason;
            decision = ort is null ? UseTorch : UseOrt;
        }
    }

    /// <summary>The engine asked for when this was made (<see cref="Model.InferenceEngine"/> for Predict's).</summary>
    public InferenceEngine RequestedEngine { get; }

    /// <summary>
    /// The engine serving calls: <see cref="InferenceEngine.TorchSharp"/> or <see cref="InferenceEngine.OnnxRuntime"/>;
    /// <see cref="InferenceEngine.Auto"/> while an Auto inference model has not measured yet (its first two batches run
    /// on TorchSharp).
    /// </summary>
    public InferenceEngine Engine => Volatile.Read(ref decision) switch
    {
        UseTorch => InferenceEngine.TorchSharp,
        UseOrt => InferenceEngine.OnnxRuntime,
        _ => InferenceEngine.Auto,
    };

    /// <summary>Why the ONNX Runtime engine, asked for (or tried by Auto), does not serve; null when it does or was not tried.</summary>
    public string? EngineFallbackReason { get; private set; }

    /// <summary>Auto's measurement: the best of two runs of the third batch on each engine, in milliseconds (null before).</summary>
    public (double TorchSharpMs, double OnnxRuntimeMs)? EngineTimings { get; private set; }

    /// <summary>The intra-op threads of the ONNX Runtime session, when one serves.</summary>
    internal int? OrtThreads => Volatile.Read(ref ort)?.Threads;

    /// <summary>The name of the model this was made from.</summary>
    public string ModelName => model.Name;

    /// <summary>Whether it runs the inference plan (<see cref="Model.InferenceOptimizations"/> when it was made), rather
    /// than every layer as written.</summary>
    public bool Optimized { get; }

    internal FunctionalGraph? Graph => graph;

    /// <summary>
    /// Whether each sample's output is meant not to depend on the batch it runs in: Dense layers then run sample by
    /// sample (libtorch's matrix product rounds differently for different row counts), so that row i of a batch is
    /// bit-identical to Predict on that sample alone. ConvKit's packed convolutions, pooling, global pooling, softmax
    /// and element-wise layers are batch-invariant as they are (measured on ResNet-20's and LeNet-5's shapes); other
    /// paths (convolutions run as a matrix product, the ONNX Runtime engine) are not guaranteed to be, so a caller
    /// that relies on it should check its model once (as <c>convkit serve</c> does at warm-up). Costs one small
    /// matrix-vector product per sample and Dense layer instead of one matrix product per batch.
    /// </summary>
    public bool BatchInvariant { get; }

    /// <summary>Whether packed convolutions may apply a following ReLU as oneDNN's post-op (tests and benchmarks compare
    /// with it off).</summary>
    internal static bool FuseReluPostOps = true;

    /// <summary>Whether the model's weights are the same tensors, unwritten, as when this was made (false when that cannot
    /// be known).</summary>
    public bool IsCurrent
    {
        get
        {
            if (versions is null || model.IsDisposed) return false;
            // Walking the model's weights (~0.15 ms for GoogLeNet's 114 through TorchSharp's module tree) is needed only
            // when some layer's weight tensors changed since the last walk; the version counters catch every write.
            long structure = Layer.WeightStructure;
            if (structure != Volatile.Read(ref checkedStructure))
            {
                int i = 0;
                foreach (var w in model.Weights)
                {
                    if (i >= weights.Length || !ReferenceEquals(w.Value, weights[i])) return false;
                    i++;
                }
                if (i != weights.Length) return false;
                Volatile.Write(ref checkedStructure, structure);
            }
            for (int k = 0; k < weights.Length; k++)
                if (TensorVersion.Of(weights[k]) != versions[k]) return false;
            return true;
        }
    }

    static long[]? ReadVersions(Tensor[] tensors)
    {
        var v = new long[tensors.Length];
        for (int i = 0; i < tensors.Length; i++)
        {
            if (TensorVersion.Of(tensors[i]) is not { } version) return null;
            v[i] = version;
        }
        return v;
    }

    /// <summary>
    /// The model's outputs for <paramref name="x"/>, batch by batch, Keras' <c>predict</c>: inputs and 4-D outputs in
    /// Keras' layout (N, H, W, C), converted to the model's device and floating type. Safe to call from many threads at
    /// once.
    /// </summary>
    /// <param name="x">A batch of inputs (N, ...), N may be 0 (the result then has 0 rows).</param>
    /// <param name="batchSize">Samples per forward pass.</param>
    /// <returns>An ordinary tensor (usable with autograd), owned by the caller.</returns>
    /// <exception cref="ObjectDisposedException">This inference model or its model was disposed.</exception>
    /// <exception cref="ConvKitException">The model's weights were written since this was made, or the input does not
    /// fit the model (<see cref="ShapeException"/>).</exception>
    /// <exception cref="InvalidOptionException"><paramref name="batchSize"/> is not positive.</exception>
    public Tensor Predict(Tensor x, int batchSize = 32)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (!TryAddReference()) throw new ObjectDisposedException(nameof(InferenceModel), $"the inference model of model '{ModelName}' was disposed.");
        try
        {
            if (model.IsDisposed) throw new ObjectDisposedException(nameof(Model), $"model '{ModelName}' was disposed; its inference model cannot run.");
            if (versions is not null && !IsCurrent)
                throw new ConvKitException($"model '{ModelName}' changed (weights written, loaded, or moved to another device or dtype) since this inference model was made: make a new one with AsInferenceModel().");
            return model.PredictWith(this, x, batchSize, 0, null);
        }
        finally
        {
            Release();
        }
    }

    /// <summary>
    /// Runs the model on one batch of internal-layout inputs (on the model's device and dtype), in the inference
    /// context and without gradients. The caller holds a reference (<see cref="TryAddReference"/>).
    /// </summary>
    internal Tensor[] Run(IReadOnlyList<Tensor> inputs)
    {
        int d = Volatile.Read(ref decision);
        if (d == UseOrt) return RunOrt(inputs);
        if (d == Undecided && Interlocked.Increment(ref autoRuns) == 3) return Decide(inputs);
        return RunTorch(inputs);
    }

    /// <summary>
    /// Auto's choice, made once by the thread that runs the third batch (others go on with TorchSharp meanwhile): the
    /// batch runs twice on each engine, alternating, and the faster (best time) serves from then on.
    /// </summary>
    Tensor[] Decide(IReadOnlyList<Tensor> inputs)
    {
        lock (decideGate)
        {
            var session = OrtSession.TryCreate(model, Backend.Threads, out var reason);
            if (session is null)
            {
                EngineFallbackReason = reason;
                Volatile.Write(ref decision, UseTorch);
                return RunTorch(inputs);
            }
            Volatile.Write(ref ort, session);
            double torchMs = double.PositiveInfinity, ortMs = double.PositiveInfinity;
            Tensor[]? torchOut = null, ortOut = null;
            try
            {
                for (int k = 0; k < 2; k++)
                {
                    Dispose(torchOut);
                    var sw = System.Diagnostics.Stopwatch.StartNew();
                    torchOut = RunTorch(inputs);
                    torchMs = Math.Min(torchMs, sw.Elapsed.TotalMilliseconds);
                    Dispose(ortOut);
                    sw.Restart();
                    ortOut = RunOrt(inputs);
                    ortMs = Math.Min(ortMs, sw.Elapsed.TotalMilliseconds);
                }
            }
            catch
            {
                Dispose(torchOut);
                Dispose(ortOut);
                throw;
            }
            EngineTimings = (torchMs, ortMs);
            if (ortMs < torchMs)
            {
                Dispose(torchOut);
                Volatile.Write(ref decision, UseOrt);
                return ortOut!;
            }
            Dispose(ortOut);
            Volatile.Write(ref decision, UseTorch);
            Volatile.Write(ref ort, null);
            session.Dispose(); // no call used it but this one: the decision was not yet UseOrt
            return torchOut!;
        }
    }

    static void Dispose(Tensor[]? tensors)
    {
        if (tensors is null) return;
        foreach (var t in tensors) t.Dispose();
    }

    /// <summary>
    /// The ONNX Runtime session on one batch. Non-finite inputs or weights go to the TorchSharp path (ORT's fused ReLU,
    /// like oneDNN's, may turn NaN into 0), and so does a batch whose outputs come out non-finite (computed again
    /// there, so that NaN and infinities come out as layer by layer).
    /// </summary>
    Tensor[] RunOrt(IReadOnlyList<Tensor> inputs)
    {
        var session = Volatile.Read(ref ort)!;
        if (nonFiniteWeights) return RunTorch(inputs);
        return session.TryRun(inputs) ?? RunTorch(inputs);
    }

    /// <summary>ConvKit's own plan (or the layers as written) on one batch.</summary>
    Tensor[] RunTorch(IReadOnlyList<Tensor> inputs)
    {
        using var inference = InferenceContext.Enter();
        using var noGrad = no_grad();
        if (plan is null) return graph is not null ? graph.Run(inputs, BatchInvariant) : [.. model.ForwardLayers(inputs)];
        bool fuseRelu = hasFusedRelu && FuseReluPostOps && !nonFiniteWeights && AllFinite(inputs);
        var outputs = graph!.RunPlan(inputs, plan, kernels, fuseRelu, BatchInvariant);
        if (!fuseRelu || AllFinite(outputs)) return outputs;
        // A value overflowed to infinity inside the network, and a fused ReLU may have turned a NaN made from it into
        // 0: run again with the ReLUs on their own.
        foreach (var o in outputs) o.Dispose();
        return graph.RunPlan(inputs, plan, kernels, fuseRelu: false, BatchInvariant);
    }

    /// <summary>
    /// oneDNN's fused ReLU post-op maps NaN to 0 where torch's relu keeps it. NaN at a convolution's output needs a
    /// non-finite value before it: a non-finite input or weight (checked: the ReLUs then run on their own, so NaN and
    /// infinities propagate exactly as layer by layer) or an overflow inside the network (caught when it reaches the
    /// output, which is then computed again without fused ReLUs).
    /// </summary>
    static bool AllFinite(IReadOnlyList<Tensor> inputs)
    {
        // One reduction, no mask: a finite sum means every element is finite (NaN or an infinity makes the sum
        // non-finite); a sum that overflows only sends the call down the exact path. isfinite().all() cost ten times
        // more (ResNet-20, batch 128: 10% of a Predict call).
        foreach (var x in inputs)
        {
            if (!x.is_floating_point()) continue;
            using var sum = x.sum();
            using var wide = sum.to_type(ScalarType.Float64);
            if (!double.IsFinite(wide.item<double>())) return false;
        }
        return true;
    }

    /// <summary>Takes a reference for one call; false once disposed and released.</summary>
    internal bool TryAddReference()
    {
        while (true)
        {
            int n = Volatile.Read(ref references);
            if (n == 0) return false;
            if (Interlocked.CompareExchange(ref references, n + 1, n) == n) return true;
        }
    }

    /// <summary>Drops a reference; the last frees the kernels.</summary>
    internal void Release()
    {
        if (Interlocked.Decrement(ref references) != 0) return;
        foreach (var k in kernels) k?.Release();
        Interlocked.Exchange(ref ort, null)?.Dispose();
    }

    /// <summary>Frees the folded and packed kernels once no call runs; later calls throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref disposed, 1) == 0) Release();
    }
}

/// <summary>The inference model a model keeps for Predict/Evaluate (one per graph it runs), made anew after any
/// write to the weights.</summary>
internal sealed class InferenceSlot : IDisposable
{
    InferenceModel? current;
    readonly object gate = new();

    /// <summary>A current inference model for <paramref name="graph"/>, with a reference taken for the caller.</summary>
    public InferenceModel Acquire(Model model, FunctionalGraph? graph, bool optimized)
    {
        var c = Volatile.Read(ref current);
        if (Fits(c, model, graph, optimized) && c!.TryAddReference()) return c;
        lock (gate)
        {
            c = current;
            if (Fits(c, model, graph, optimized) && c!.TryAddReference()) return c;
            var fresh = new InferenceModel(model, graph, optimized, model.InferenceEngine);
            fresh.TryAddReference();
            Volatile.Write(ref current, fresh);
            c?.Dispose(); // calls running on it keep it until they finish
            return fresh;
        }
    }

    static bool Fits(InferenceModel? c, Model model, FunctionalGraph? graph, bool optimized) =>
        c is not null && ReferenceEquals(c.Graph, graph) && c.Optimized == (optimized && graph is not null) && c.IsCurrent
        && c.RequestedEngine == model.InferenceEngine && (c.OrtThreads is not { } t || t == Backend.Threads);

    public void Dispose()
    {
        lock (gate)
        {
            current?.Dispose();
            current = null;
        }
    }
}
