using ConvKit.Layers;
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

    sealed record Step(Layer Layer, int[] Inputs, int Output, int[] FreeAfter);

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
        var lastUse = new Dictionary<int, int>();
        var stepList = new List<Step>();
        for (int i = 0; i < Schedule.Count; i++)
        {
            var node = Schedule[i];
            var ins = node.Inputs.Select(Slot).ToArray();
            foreach (var s in ins) lastUse[s] = i;
            stepList.Add(new Step(node.Layer, ins, Slot(node.Output), []));
        }
        outputSlots = outputs.Select(Slot).ToArray();
        var keep = new HashSet<int>(inputSlots.Concat(outputSlots));
        steps = stepList.Select((s, i) => s with
        {
            FreeAfter = s.Inputs.Distinct().Where(x => lastUse[x] == i && !keep.Contains(x)).ToArray(),
        }).ToArray();
        slotCount = slot.Count;
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

    /// <summary>Runs the graph on internal-layout tensors. Inputs stay owned by the caller.</summary>
    public Tensor[] Run(IReadOnlyList<Tensor> inputs)
    {
        var values = new Tensor?[slotCount];
        for (int i = 0; i < inputSlots.Length; i++) values[inputSlots[i]] = inputs[i];
        foreach (var step in steps)
        {
            Tensor output;
            if (step.Inputs.Length == 1)
            {
                var x = values[step.Inputs[0]]!;
                output = step.Layer.Call(x);
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
