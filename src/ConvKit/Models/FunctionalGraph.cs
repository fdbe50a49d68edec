using ConvKit.Layers;
using ConvKit.Models.Inference;
using ConvKit.Native;
using static TorchSharp.torch;

namespace ConvKit.Models;

/// <summary>
/// The directed acyclic graph of a functional model: Keras' ordering of layers (by depth from the outputs, ties by
/// traversal order), and an execution plan that frees every intermediate tensor right after its last consumer.
/// </summary>
internal sealed class FunctionalGraph
{
    public IReadOnlyList<SymbolicTensor> Inputs { get; }
    public IReadOnlyList<SymbolicTensor> Outputs { get; }

    /// <summary>Layers in Keras' order (inputs first).</summary>
    public IReadOnlyList<Layer> Layers { get; }

    /// <summary>The nodes that belong to this graph.</summary>
    public IReadOnlySet<Node> Nodes { get; }

    /// <summary>Nodes in execution order.</summary>
    public IReadOnlyList<Node> Schedule { get; }

    /// <summary>Whether Keras would print this graph's summary as a plain sequence (no "Connected to").</summary>
    public bool IsSequentialLike { get; }

    readonly Step[] steps;
    readonly int[] inputSlots;
    readonly int[] outputSlots;
    readonly int slotCount;
    readonly HashSet<int> keepSlots;

    /// <summary>One layer call; in the inference plan possibly fused with its neighbours, or in place on input
    /// <see cref="InPlace"/> (-1: not in place).</summary>
    internal sealed record Step(Layer Layer, int[] Inputs, int Output, int[] FreeAfter, FusedConvolution? Fused = null, int InPlace = -1);

    /// <summary>The inference plan's steps and whether it convolves on NCHW memory (<see cref="InferenceChannelsFirst"/>).</summary>
    internal sealed record Plan(Step[] Steps, bool ChannelsFirst);

    Plan? inferencePlan;

    /// <param name="inputs">The graph's inputs.</param>
    /// <param name="outputs">The graph's outputs.</param>
    /// <param name="modelName">For error messages.</param>
    public FunctionalGraph(IReadOnlyList<SymbolicTensor> inputs, IReadOnlyList<SymbolicTensor> outputs, string modelName)
    {
        if (inputs.Count == 0) throw new GraphException($"model '{modelName}' needs at least one input.");
        if (outputs.Count == 0) throw new GraphException($"model '{modelName}' needs at least one output.");
        foreach (var x in inputs)
            if (!x.Node.IsInput)
                throw new GraphException($"model '{modelName}': inputs must come from Input(...); {x} does not.");
        if (inputs.Distinct().Count() != inputs.Count)
            throw new GraphException($"model '{modelName}': the same input is listed twice.");
        Inputs = inputs;
        Outputs = outputs;

        // Depth-first from the outputs, as Keras' _build_map: pre-order layer indices, post-order nodes.
        var finished = new HashSet<Node>();
        var inProgress = new HashSet<Node>();
        var decreasingDepth = new List<Node>();
        var layerIndex = new Dictionary<Layer, int>(ReferenceEqualityComparer.Instance);
        void Visit(SymbolicTensor t)
        {
            var node = t.Node;
            if (finished.Contains(node)) return;
            if (inProgress.Contains(node)) throw new GraphException($"model '{modelName}': the graph has a cycle at {node.Layer.Describe}.");
            layerIndex.TryAdd(node.Layer, layerIndex.Count);
            inProgress.Add(node);
            foreach (var x in node.Inputs) Visit(x);
            finished.Add(node);
            inProgress.Remove(node);
            decreasingDepth.Add(node);
        }
        foreach (var o in outputs) Visit(o);

        var nodeDepth = new Dictionary<Node, int>();
        var layerDepth = new Dictionary<Layer, int>(ReferenceEqualityComparer.Instance);
        for (int i = decreasingDepth.Count - 1; i >= 0; i--)
        {
            var node = decreasingDepth[i];
            int depth = nodeDepth.GetValueOrDefault(node, 0);
            depth = Math.Max(depth, layerDepth.GetValueOrDefault(node.Layer, 0));
            layerDepth[node.Layer] = depth;
            nodeDepth[node] = depth;
            foreach (var parent in node.Inputs.Select(x => x.Node))
                nodeDepth[parent] = Math.Max(depth + 1, nodeDepth.GetValueOrDefault(parent, 0));
        }
        foreach (var x in inputs)
        {
            if (layerDepth.ContainsKey(x.Layer)) continue;
            // An input no output depends on: Keras keeps it, at depth 0.
            layerDepth[x.Layer] = 0;
            layerIndex[x.Layer] = -1;
            nodeDepth[x.Node] = 0;
        }

        // Every node must be computable from the declared inputs.
        var computable = new HashSet<SymbolicTensor>(inputs);
        var accessed = new List<string>();
        foreach (var group in nodeDepth.GroupBy(kv => kv.Value).OrderByDescending(g => g.Key))
        {
            foreach (var node in group.Select(kv => kv.Key).OrderBy(n => decreasingDepth.IndexOf(n)))
            {
                if (node.IsInput)
                {
                    if (!computable.Contains(node.Output))
                        throw new GraphException($"Graph disconnected in model '{modelName}': cannot obtain the value of {node.Output} (input '{node.Layer.Name}' is not among the model's inputs [{string.Join(", ", inputs.Select(i => i.Layer.Name))}]). Layers reached without issue: [{string.Join(", ", accessed)}].");
                    continue;
                }
                foreach (var x in node.Inputs)
                    if (!computable.Contains(x))
                        throw new GraphException($"Graph disconnected in model '{modelName}': cannot obtain the value of {x} at layer '{node.Layer.Name}'. Layers reached without issue: [{string.Join(", ", accessed)}].");
                computable.Add(node.Output);
                accessed.Add(node.Layer.Name);
            }
        }

        Layers = layerDepth.GroupBy(kv => kv.Value).OrderByDescending(g => g.Key)
            .SelectMany(g => g.Select(kv => kv.Key).OrderBy(l => layerIndex[l])).ToArray();
        var names = new HashSet<string>();
        foreach (var layer in Layers)
            if (!names.Add(layer.Name))
                throw new GraphException($"The name \"{layer.Name}\" is used {Layers.Count(l => l.Name == layer.Name)} times in model '{modelName}'. All layer names should be unique.");

        Nodes = new HashSet<Node>(nodeDepth.Keys);
        Schedule = decreasingDepth.Where(n => !n.IsInput).ToArray();
        IsSequentialLike = ComputeSequentialLike(nodeDepth);

        // Execution plan: slots for tensors, and for each step the slots whose last reader it is.
        var slot = new Dictionary<SymbolicTensor, int>();
        int Slot(SymbolicTensor t) => slot.TryGetValue(t, out var s) ? s : slot[t] = slot.Count;
        inputSlots = inputs.Select(Slot).ToArray();
        var stepList = Schedule.Select(node => new Step(node.Layer, node.Inputs.Select(Slot).ToArray(), Slot(node.Output), [])).ToArray();
        outputSlots = outputs.Select(Slot).ToArray();
        keepSlots = new HashSet<int>(inputSlots.Concat(outputSlots));
        steps = WithFreeAfter(stepList);
        slotCount = slot.Count;
    }

    /// <summary>The steps with, for each, the slots whose last reader it is (graph inputs and outputs are never freed).</summary>
    Step[] WithFreeAfter(Step[] plan)
    {
        var lastUse = new Dictionary<int, int>();
        for (int i = 0; i < plan.Length; i++) foreach (var x in plan[i].Inputs) lastUse[x] = i;
        return plan.Select((st, i) => st with
        {
            FreeAfter = st.Inputs.Distinct().Where(x => lastUse[x] == i && !keepSlots.Contains(x)).ToArray(),
        }).ToArray();
    }

    bool ComputeSequentialLike(Dictionary<Node, int> nodeDepth)
    {
        foreach (var g in nodeDepth.GroupBy(kv => kv.Value))
        {
            var nodes = g.ToArray();
            if (nodes.Length > 1 || nodes[0].Key.Inputs.Count > 1) return false;
        }
        foreach (var layer in Layers)
            if (layer.InboundNodes.Count(Nodes.Contains) > 1) return false;
        return true;
    }

    /// <summary>
    /// The schedule rewritten for inference (an <see cref="InferenceModel"/> runs it; batch normalization always uses
    /// its moving statistics there): ZeroPadding2D -> Conv2D('valid') runs as one padded convolution; Conv2D (linear
    /// activation) -> BatchNormalization as one convolution with folded weights; activations and Add run in place on an
    /// input that is read by that step alone and whose memory no other live tensor shares. The plan depends on the
    /// graph alone and is immutable; it is made once (concurrent first calls may each make one, the first is kept).
    /// </summary>
    internal Plan InferencePlan()
    {
        if (Volatile.Read(ref inferencePlan) is { } made) return made;
        var built = BuildInferencePlan();
        return Interlocked.CompareExchange(ref inferencePlan, built, null) ?? built;
    }

    Plan BuildInferencePlan()
    {
        bool packable = PackedConvolution.Available;
        int[] Readers(IEnumerable<Step> plan)
        {
            var r = new int[slotCount];
            foreach (var st in plan) foreach (var i in st.Inputs) r[i]++;
            return r;
        }
        var readers = Readers(steps);
        var readerOf = new Dictionary<int, int>();
        for (int i = 0; i < steps.Length; i++) foreach (var x in steps[i].Inputs) readerOf[x] = i;
        bool OnlyReader(int slot, out int step) => readerOf.TryGetValue(slot, out step) && readers[slot] == 1 && !keepSlots.Contains(slot);

        var plan = steps.Select(st => st with { FreeAfter = [] }).ToArray();
        var removed = new bool[plan.Length];
        for (int i = 0; i < plan.Length; i++)
        {
            // ZeroPadding2D whose only reader is a 'valid' convolution: the convolution pads.
            if (plan[i].Layer is ZeroPadding2D zp && Exactly<ZeroPadding2D>(zp) && OnlyReader(plan[i].Output, out int j)
                && plan[j].Layer is Conv2D { Padding.IsValid: true } conv && Exactly<Conv2D>(conv) && plan[j].Inputs.Length == 1)
            {
                removed[i] = true;
                plan[j] = plan[j] with
                {
                    Inputs = plan[i].Inputs,
                    Fused = new FusedConvolution(conv, null, (zp.Top, zp.Bottom, zp.Left, zp.Right), packable),
                };
            }
        }
        for (int i = 0; i < plan.Length; i++)
        {
            if (removed[i] || plan[i].Layer is not Conv2D conv || !Exactly<Conv2D>(conv) || !conv.Activation.IsLinear) continue;
            if (OnlyReader(plan[i].Output, out int j) && plan[j].Layer is BatchNormalization { Axis: -1 or 3 } bn
                && Exactly<BatchNormalization>(bn) && plan[j].Inputs.Length == 1)
            {
                removed[j] = true;
                plan[i] = plan[i] with
                {
                    Output = plan[j].Output,
                    Fused = new FusedConvolution(conv, bn, plan[i].Fused?.ZeroPadding, packable),
                };
            }
        }
        if (packable) FuseIntoPackedConvolutions(plan, removed, OnlyReader);
        plan = plan.Where((_, i) => !removed[i]).ToArray();

        // In place: the input's memory must be this step's alone, i.e. fresh storage from a layer that allocates its
        // output, read by no other step (so no view of it can exist) and neither a graph input nor an output.
        readers = Readers(plan);
        var fresh = new bool[slotCount];
        for (int i = 0; i < plan.Length; i++)
        {
            var st = plan[i];
            bool Owned(int slot) => fresh[slot] && readers[slot] == 1 && !keepSlots.Contains(slot);
            int inPlace = -1;
            if (IsBuiltInActivation(st.Layer))
            {
                var f = ((Activation)st.Layer).Function;
                if (f.SupportsInPlace && !f.IsLinear && Owned(st.Inputs[0])) inPlace = 0;
            }
            else if (st.Layer.GetType() == typeof(Add))
            {
                for (int k = 0; k < st.Inputs.Length && inPlace < 0; k++)
                    if (Owned(st.Inputs[k]) && st.Inputs.Count(x => x == st.Inputs[k]) == 1) inPlace = k;
            }
            plan[i] = st with { InPlace = inPlace };
            fresh[st.Output] = inPlace >= 0 || st.Fused is not null || AllocatesOutput(st.Layer);
        }

        bool channelsFirst = !packable && plan.Any(st => st.Layer is Conv2D c && Exactly<Conv2D>(c) && VerifiedConvolution.IsLargePointwise(c.Kernel!, [c.Strides.Height, c.Strides.Width], c.Groups));
        return new Plan(WithFreeAfter(plan), channelsFirst);
    }

    delegate bool OnlyReaderOf(int slot, out int step);

    /// <summary>
    /// For convolutions on packed kernels (<see cref="PackedConvolution"/>): every built-in Conv2D becomes a fused step,
    /// and a ReLU that is the only reader of a convolution's output (linear activation) runs inside it. At run time the
    /// step falls back to the separate layers whenever the packed kernel does not apply (see FusedConvolution.Run).
    /// The residual Add stays a step of its own (in place): oneDNN's fused addition was slower than the separate
    /// in-place add and ReLU (ResNet-20 blocks at batch 128: 16->16 3x3 on 32x32 5.3 ms fused vs 3.5 ms; 64->64 on
    /// 56x56 145 vs 138 ms; its in-place 'sum' form only broke even).
    /// </summary>
    static void FuseIntoPackedConvolutions(Step[] plan, bool[] removed, OnlyReaderOf onlyReader)
    {
        bool IsPlainRelu(Step st) => IsBuiltInActivation(st.Layer)
            && ReferenceEquals(((Activation)st.Layer).Function, Activations.ReLU) && st.Inputs.Length == 1;
        for (int i = 0; i < plan.Length; i++)
        {
            if (removed[i] || plan[i].Fused is not null) continue;
            if (plan[i].Layer is Conv2D conv && Exactly<Conv2D>(conv) && plan[i].Inputs.Length == 1)
                plan[i] = plan[i] with { Fused = new FusedConvolution(conv, null, null, Packable: true) };
        }
        for (int i = 0; i < plan.Length; i++)
        {
            if (removed[i] || plan[i].Fused is not { Relu: false } f || !f.Conv.Activation.IsLinear) continue;
            if (onlyReader(plan[i].Output, out int j) && IsPlainRelu(plan[j]))
            {
                removed[j] = true;
                plan[i] = plan[i] with
                {
                    Output = plan[j].Output,
                    Fused = f with { Relu = true },
                };
            }
        }
    }

    /// <summary>
    /// Whether the inference plan runs its convolutions on NCHW memory (VerifiedConvolution.ChannelsFirst) at batches up
    /// to <see cref="ChannelsFirstMaxBatch"/>: only when packed convolutions are not available (they beat both layouts:
    /// Keras' ResNet-50 at batch 1, 18 -> 23 images/s), and for graphs with 1x1 convolutions of more than 64 channels
    /// (bottleneck networks: ResNet-50, Inception, GoogLeNet), which would otherwise run as GEMMs; the others stay
    /// channels-last, which is faster for them (ResNet-20 inference at batch 128: 3,085 images/s channels-last, 2,622
    /// on NCHW).
    /// </summary>
    internal bool InferenceChannelsFirst => InferencePlan().ChannelsFirst;

    /// <summary>
    /// Largest batch the inference plan runs on NCHW memory (when <see cref="InferenceChannelsFirst"/>). oneDNN's
    /// blocked kernels need a reordered copy of each convolution's input and output, which costs memory in proportion
    /// to the batch, while the GEMM formulation they replace is weakest at small batches (few rows). Keras' ResNet-50,
    /// Predict, 2 threads, channels-last vs NCHW images/s (paired, load ~2): batch 1 13.0 vs 16.4, 2 18.4 vs 21.9,
    /// 4 20.8 vs 26.8, 8 24.2 vs 28.9, 16 25.4 vs 31.1; peak RSS at batch 16 578 MB channels-last, 651 MB NCHW
    /// (PyTorch 1.13: 603 MB).
    /// </summary>
    internal const long ChannelsFirstMaxBatch = 4;

    /// <summary>ConvKit's Activation or ReLU layer itself (a subclass may override Call).</summary>
    static bool IsBuiltInActivation(Layer layer) => layer.GetType() == typeof(Activation) || layer.GetType() == typeof(ReLU);

    /// <summary>Only ConvKit's own layers are rewritten: a subclass may override Call.</summary>
    static bool Exactly<T>(Layer layer) where T : Layer => layer.GetType() == typeof(T);

    /// <summary>Built-in layers (exact types: a subclass may override Call) whose output never shares its input's memory.</summary>
    static bool AllocatesOutput(Layer layer) => layer.GetType() is var t
        && (t == typeof(Conv2D) || t == typeof(BatchNormalization) || t == typeof(Dense) || t == typeof(Add)
            || t == typeof(Concatenate) || t == typeof(MaxPooling2D) || t == typeof(MaxPool2D)
            || t == typeof(AveragePooling2D) || t == typeof(AvgPool2D) || t == typeof(ZeroPadding2D));

    /// <summary>Runs the graph layer by layer on internal-layout tensors (inputs stay owned by the caller).</summary>
    public Tensor[] Run(IReadOnlyList<Tensor> inputs, bool batchInvariant = false) =>
        Execute(inputs, steps, null, fuseRelu: false, VerifiedConvolution.ChannelsFirstActive, batchInvariant);

    /// <summary>
    /// Runs the inference plan (<see cref="InferencePlan"/>) on internal-layout tensors, the fused convolution of step
    /// i with <paramref name="kernels"/>[i]. Called by <see cref="InferenceModel"/>, inside its inference context.
    /// </summary>
    /// <remarks><paramref name="batchInvariant"/>: Dense layers run sample by sample (see <see cref="RowByRow"/>).</remarks>
    internal Tensor[] RunPlan(IReadOnlyList<Tensor> inputs, Plan plan, ConvolutionKernels?[] kernels, bool fuseRelu, bool batchInvariant = false)
    {
        bool channelsFirst = plan.ChannelsFirst && inputs.Count > 0 && inputs[0].dim() > 0 && inputs[0].shape[0] <= ChannelsFirstMaxBatch;
        return Execute(inputs, plan.Steps, kernels, fuseRelu, channelsFirst, batchInvariant);
    }

    /// <summary>
    /// A Dense layer's output computed one sample at a time: libtorch's matrix product (MKL's SGEMM, or its
    /// matrix-vector product for one row) sums each output in an order that depends on the number of rows, so row i of
    /// a batch differs from the same sample run alone by an ulp or two. Run as a batch of one each (on a fresh,
    /// aligned copy, as a sample alone would be), every row is bit-identical to Predict on that sample alone.
    /// </summary>
    static Tensor RowByRow(Layer dense, Tensor x)
    {
        long n = x.shape[0];
        if (n <= 1) return dense.Call(x);
        var rows = new Tensor[n];
        try
        {
            for (long i = 0; i < n; i++)
            {
                using var view = x.narrow(0, i, 1);
                using var row = view.clone();
                rows[i] = dense.Call(row);
                if (ReferenceEquals(rows[i], row)) rows[i] = row.alias();
            }
            return cat(rows, 0);
        }
        finally
        {
            foreach (var r in rows) r?.Dispose();
        }
    }

    Tensor[] Execute(IReadOnlyList<Tensor> inputs, Step[] schedule, ConvolutionKernels?[]? kernels, bool fuseRelu, bool channelsFirst,
        bool batchInvariant = false)
    {
        var values = new Tensor?[slotCount];
        for (int i = 0; i < inputSlots.Length; i++) values[inputSlots[i]] = inputs[i];
        using var layout = VerifiedConvolution.ChannelsFirst(channelsFirst);
        for (int s = 0; s < schedule.Length; s++)
        {
            var step = schedule[s];
            Tensor output;
            if (step.Fused is { } fused)
            {
                output = fused.Run(values[step.Inputs[0]]!, kernels![s]!, fuseRelu);
            }
            else if (step.InPlace >= 0)
            {
                var target = values[step.Inputs[step.InPlace]]!;
                if (step.Layer is Activation a) output = a.Function.ApplyInPlace(target);
                else if (step.Inputs.All(i => values[i]!.dtype == target.dtype && values[i]!.shape.SequenceEqual(target.shape)))
                {
                    for (int i = 0; i < step.Inputs.Length; i++)
                        if (i != step.InPlace) target.add_(values[step.Inputs[i]]!, Scalars.One);
                    output = target;
                }
                else output = step.Layer.Call(step.Inputs.Select(i => values[i]!).ToArray()); // broadcasting: as Add does
                if (ReferenceEquals(output, target)) output = target.alias();
            }
            else if (step.Inputs.Length == 1)
            {
                var x = values[step.Inputs[0]]!;
                output = batchInvariant && step.Layer is Dense && x.dim() > 1 ? RowByRow(step.Layer, x) : step.Layer.Call(x);
                // A layer may hand back its input (dropout in inference, linear activation): give the output its own
                // handle so that freeing the input cannot kill it.
                if (ReferenceEquals(output, x)) output = x.alias();
            }
            else
            {
                var xs = new Tensor[step.Inputs.Length];
                for (int i = 0; i < xs.Length; i++) xs[i] = values[step.Inputs[i]]!;
                output = step.Layer.Call(xs);
                if (xs.Any(x => ReferenceEquals(x, output))) output = output.alias();
            }
            values[step.Output] = output;
            foreach (var f in step.FreeAfter)
            {
                values[f]!.Dispose();
                values[f] = null;
            }
        }
        var result = new Tensor[outputSlots.Length];
        for (int i = 0; i < result.Length; i++)
        {
            var v = values[outputSlots[i]]!;
            // An output listed twice, or an input returned as output, gets a handle of its own.
            result[i] = result.Take(i).Any(r => ReferenceEquals(r, v)) || inputSlots.Contains(outputSlots[i]) ? v.alias() : v;
        }
        return result;
    }
}
