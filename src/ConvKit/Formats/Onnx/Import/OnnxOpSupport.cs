namespace ConvKit.Formats.Onnx;

/// <summary>The ONNX operators (default domain, opsets 7 to 17) the importer maps to ConvKit layers or folds.</summary>
public static class OnnxOpSupport
{
    /// <summary>Every supported op type, sorted.</summary>
    public static IReadOnlyList<string> SupportedOps { get; } = new[]
    {
        "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Div",
        "Dropout", "Flatten", "Gather", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "HardSigmoid", "HardSwish", "Identity",
        "LeakyRelu", "MatMul", "MaxPool", "Mul", "Pad", "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid", "Slice",
        "Softmax", "Split", "Squeeze", "Sub", "Sum", "Tanh", "Transpose", "Unsqueeze",
    }.Order(StringComparer.Ordinal).ToArray();

    static readonly HashSet<string> Supported = new(SupportedOps, StringComparer.Ordinal);

    /// <summary>Whether the importer handles <paramref name="opType"/> of <paramref name="domain"/>.</summary>
    public static bool IsSupported(string domain, string opType) => domain.Length == 0 && Supported.Contains(opType);

    /// <summary>The unsupported op types of a graph with their nodes; empty when everything is supported.</summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<string>> Unsupported(OnnxGraph graph) =>
        graph.Nodes.Where(n => !IsSupported(n.Domain, n.OpType))
            .GroupBy(n => n.Domain.Length == 0 ? n.OpType : n.Domain + "." + n.OpType)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => (IReadOnlyList<string>)g.Select(n => n.Name).ToArray());
}
