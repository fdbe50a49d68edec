using System.Globalization;
using System.Text;
using ConvKit.Layers;

namespace ConvKit.Models;

/// <summary>Options of <see cref="Model.Summary"/>.</summary>
public sealed record SummaryOptions
{
    /// <summary>Adds a column with multiply-accumulate operations per sample.</summary>
    public bool ShowMacs { get; init; }

    /// <summary>Adds a column with each output's receptive field: size / jump / start, in input pixels.</summary>
    public bool ShowReceptiveField { get; init; }

    /// <summary>
    /// Total width; Keras' default is 65 for sequential-like models and 98 otherwise. Columns scale with it as in Keras;
    /// a width too small for every column to hold a few characters is widened to fit.
    /// </summary>
    /// <remarks>Zero or negative: <see cref="LayerArgumentException"/> from <see cref="Model.Summary"/>.</remarks>
    public int? LineLength { get; init; }
}

/// <summary>One row of a model summary.</summary>
/// <param name="Name">Layer name.</param>
/// <param name="TypeName">Layer class.</param>
/// <param name="OutputShape">Keras' rendering of the output shape, or <c>multiple</c>.</param>
/// <param name="Params">Parameter count, or null for a layer never built (Keras' "0 (unused)").</param>
/// <param name="ConnectedTo">Inbound tensors as Keras names them: <c>conv2d[0][0]</c>.</param>
/// <param name="Macs">Multiply-accumulates per sample, where known.</param>
/// <param name="Field">Receptive field (height axis, width axis) of the output; null where unknown or global.</param>
/// <param name="GlobalField">True when every output sees the whole input.</param>
public sealed record SummaryRow(string Name, string TypeName, string OutputShape, long? Params, IReadOnlyList<string> ConnectedTo,
    long? Macs, (ReceptiveField H, ReceptiveField W)? Field, bool GlobalField);

/// <summary>A model's summary as data: what <see cref="SummaryFormatter"/> renders.</summary>
/// <param name="ModelName">The model's name.</param>
/// <param name="SequentialLike">Whether Keras would omit the "Connected to" column.</param>
/// <param name="Rows">One row per layer.</param>
/// <param name="TrainableParams">Scalars trained by the optimizer.</param>
/// <param name="NonTrainableParams">Scalars kept out of training.</param>
/// <param name="BytesPerParam">Size of one scalar (4 for float32).</param>
public sealed record ModelSummary(string ModelName, bool SequentialLike, IReadOnlyList<SummaryRow> Rows,
    long TrainableParams, long NonTrainableParams, int BytesPerParam = 4)
{
    /// <summary>All parameters.</summary>
    public long TotalParams => TrainableParams + NonTrainableParams;

    /// <summary>Total multiply-accumulates per sample (known rows).</summary>
    public long TotalMacs => Rows.Sum(r => r.Macs ?? 0);

    /// <summary>Collects the summary of a built model.</summary>
    /// <exception cref="GraphException">The model is not built.</exception>
    public static ModelSummary Of(Model model)
    {
        if (!model.IsBuilt)
            throw new GraphException($"model '{model.Name}' has not been built yet, so it has no summary. Build it first with Build(inputShape), give its first layer an input shape, or call it on data.");
        var rows = model.IsGraphNetwork ? GraphRows(model, out bool seqLike) : SubclassRows(model, out seqLike);
        long trainable = model.TrainableWeights.Sum(w => w.Count);
        long frozen = model.NonTrainableWeights.Sum(w => w.Count);
        return new ModelSummary(model.Name, seqLike, rows, trainable, frozen);
    }

    static List<SummaryRow> GraphRows(Model model, out bool sequentialLike)
    {
        var graph = model.GraphForSummary!;
        sequentialLike = graph.IsSequentialLike || model is Sequential;
        var fields = ComputeFields(graph);
        var rows = new List<SummaryRow>();
        foreach (var layer in graph.Layers)
        {
            if (model is Sequential && layer is InputLayer) continue;
            var nodes = layer.InboundNodes.Where(graph.Nodes.Contains).ToArray();
            string shape;
            if (layer is InputLayer input) shape = $"[{input.Shape.ToBatchString()}]";
            else
            {
                var shapes = nodes.Select(n => n.Output.Shape).Distinct().ToArray();
                shape = shapes.Length == 1 ? shapes[0].ToBatchString() : "multiple";
            }
            var connected = nodes.SelectMany(n => n.Inputs).Select(t => $"{t.Layer.Name}[{t.Node.Index}][0]").ToArray();
            long macs = nodes.Sum(n => layer.CountMacs(n.Inputs.Select(t => t.Shape).ToArray(), n.Output.Shape));
            var f = nodes.Length == 1 ? fields[nodes[0].Output] : null;
            rows.Add(new SummaryRow(layer.Name, layer.ClassName, shape, layer.IsBuilt ? layer.CountParams() : null,
                connected, macs, f?.Field, f?.Global ?? false));
        }
        return rows;
    }

    sealed record FieldInfo((ReceptiveField, ReceptiveField)? Field, bool Global);

    static Dictionary<SymbolicTensor, FieldInfo> ComputeFields(FunctionalGraph graph)
    {
        var fields = new Dictionary<SymbolicTensor, FieldInfo>();
        foreach (var input in graph.Inputs) fields[input] = new((ReceptiveField.Identity, ReceptiveField.Identity), false);
        foreach (var node in graph.Schedule)
        {
            var ins = node.Inputs.Select(t => fields[t]).ToArray();
            if (ins.Any(f => f.Global)) { fields[node.Output] = new(null, true); continue; }
            var merged = ins.Where(f => f.Field is not null).Select(f => f.Field!.Value)
                .Aggregate(((ReceptiveField, ReceptiveField)?)null, (acc, f) => acc is null ? f
                    : (ReceptiveField.Max(acc.Value.Item1, f.Item1), ReceptiveField.Max(acc.Value.Item2, f.Item2)));
            var window = node.Layer is Model ? WindowInfo.Global : node.Layer.Window(node.Inputs.Select(t => t.Shape).ToArray());
            if (merged is null) fields[node.Output] = new(null, false);
            else if (window is null) fields[node.Output] = new(merged, false);
            else if (window.Value.IsGlobal) fields[node.Output] = new(null, true);
            else
            {
                var w = window.Value;
                fields[node.Output] = new((
                    merged.Value.Item1.Then(w.Kernel.Height, w.Stride.Height, w.Dilation.Height, w.PadBefore.Height),
                    merged.Value.Item2.Then(w.Kernel.Width, w.Stride.Width, w.Dilation.Width, w.PadBefore.Width)), false);
            }
        }
        return fields;
    }

    static List<SummaryRow> SubclassRows(Model model, out bool sequentialLike)
    {
        sequentialLike = true;
        var rows = new List<SummaryRow>();
        foreach (var layer in model.Layers)
        {
            var shapes = model.TracedShapes(layer);
            string shape = shapes is { Count: > 0 } && shapes.Distinct().Count() == 1 ? shapes[0].ToBatchString() : "multiple";
            long? macs = null;
            if (model.TracedCalls(layer) is { } calls)
                macs = calls.Sum(c => layer.CountMacs(c.Inputs, c.Output));
            rows.Add(new SummaryRow(layer.Name, layer.ClassName, shape, layer.IsBuilt ? layer.CountParams() : null, [], macs, null, false));
        }
        return rows;
    }
}

/// <summary>Renders a <see cref="ModelSummary"/> exactly as Keras 2 prints <c>model.summary()</c>, plus optional columns.</summary>
public static class SummaryFormatter
{
    /// <summary>The summary text, lines ending in '\n'.</summary>
    public static string Format(ModelSummary summary, SummaryOptions options)
    {
        var headers = new List<string> { "Layer (type)", "Output Shape", "Param #" };
        var widths = summary.SequentialLike ? new List<int> { 29, 26, 10 } : new List<int> { 29, 29, 10 };
        if (options.ShowMacs) { headers.Add("MACs"); widths.Add(16); }
        if (options.ShowReceptiveField) { headers.Add("RF size/jump/start"); widths.Add(22); }
        if (!summary.SequentialLike) { headers.Add("Connected to"); widths.Add(30); }
        var positions = ColumnPositions(widths, summary.SequentialLike, options.LineLength);
        int lineLength = positions[^1];

        var sb = new StringBuilder();
        sb.Append("Model: \"").Append(summary.ModelName).Append("\"\n");
        sb.Append('_', lineLength).Append('\n');
        PrintRow(sb, headers, positions);
        sb.Append('=', lineLength).Append('\n');
        foreach (var row in summary.Rows)
        {
            var fields = new List<string>
            {
                $"{row.Name} ({row.TypeName})",
                row.OutputShape,
                row.Params?.ToString(CultureInfo.InvariantCulture) ?? "0 (unused)",
            };
            if (options.ShowMacs) fields.Add(row.Macs is { } m ? m.ToString("N0", CultureInfo.InvariantCulture) : "?");
            if (options.ShowReceptiveField) fields.Add(FormatField(row));
            if (!summary.SequentialLike) fields.Add("[" + string.Join(", ", row.ConnectedTo.Select(c => $"'{c}'")) + "]");
            PrintRow(sb, fields, positions);
            sb.Append(' ', lineLength).Append('\n');
        }
        sb.Append('=', lineLength).Append('\n');
        long trainableBytes = summary.TrainableParams * summary.BytesPerParam;
        long frozenBytes = summary.NonTrainableParams * summary.BytesPerParam;
        sb.Append($"Total params: {summary.TotalParams} ({ReadableSize(trainableBytes + frozenBytes)})\n");
        sb.Append($"Trainable params: {summary.TrainableParams} ({ReadableSize(trainableBytes)})\n");
        sb.Append($"Non-trainable params: {summary.NonTrainableParams} ({ReadableSize(frozenBytes)})\n");
        if (options.ShowMacs) sb.Append($"Total MACs per sample: {summary.TotalMacs.ToString("N0", CultureInfo.InvariantCulture)}\n");
        sb.Append('_', lineLength).Append('\n');
        return sb.ToString();
    }

    /// <summary>The narrowest column: one character of text, the separator and the two-space gutter, so that wrapping advances.</summary>
    internal const int MinColumnWidth = 4;

    /// <summary>
    /// Right edges of the columns. At the default width they are the default widths; with a line length they scale as
    /// Keras' print_summary scales them (int(line_length * p) for p in [.45, .85, 1] sequential-like, [.3, .6, .7, 1]
    /// otherwise; the optional columns keep their share of the default width); each column keeps at least
    /// <see cref="MinColumnWidth"/> characters, so a very small line length is widened to fit.
    /// </summary>
    static int[] ColumnPositions(List<int> widths, bool sequentialLike, int? lineLength)
    {
        var positions = new int[widths.Count];
        for (int i = 0, acc = 0; i < widths.Count; i++) positions[i] = acc += widths[i];
        if (lineLength is not { } length) return positions;
        if (length <= 0)
            throw new LayerArgumentException(nameof(SummaryOptions), nameof(SummaryOptions.LineLength), $"must be positive; received LineLength={length}.");
        double[] fractions = widths.Count == 3 && sequentialLike ? [0.45, 0.85, 1.0]
            : widths.Count == 4 && !sequentialLike ? [0.3, 0.6, 0.7, 1.0]
            : positions.Select(p => p / (double)positions[^1]).ToArray();
        for (int i = 0; i < positions.Length; i++)
            positions[i] = Math.Max(i == positions.Length - 1 ? length : (int)(length * fractions[i]), (i > 0 ? positions[i - 1] : 0) + MinColumnWidth);
        return positions;
    }

    static string FormatField(SummaryRow row)
    {
        if (row.GlobalField) return "global";
        if (row.Field is not { } f) return "?";
        static string Start(double s) => s.ToString("0.##", CultureInfo.InvariantCulture);
        return f.H == f.W
            ? $"{f.H.Size}/{f.H.Jump}/{Start(f.H.Start)}"
            : $"{f.H.Size}x{f.W.Size}/{f.H.Jump}x{f.W.Jump}/{Start(f.H.Start)},{Start(f.W.Start)}";
    }

    /// <summary>Keras' <c>readable_memory_size</c>: <c>189.54 KB</c>, <c>0.00 Byte</c>.</summary>
    public static string ReadableSize(double bytes)
    {
        string[] units = ["Byte", "KB", "MB", "GB", "TB", "PB"];
        foreach (var unit in units)
        {
            if (bytes / 1024 < 1) return string.Format(CultureInfo.InvariantCulture, "{0:F2} {1}", bytes, unit);
            bytes /= 1024;
        }
        return string.Format(CultureInfo.InvariantCulture, "{0:F2} {1}", bytes, units[^1]);
    }

    /// <summary>Keras' <c>print_row</c>: columns wrap within their width, preferring breaks after "),", "],", "',".</summary>
    static void PrintRow(StringBuilder sb, IReadOnlyList<string> fields, int[] positions)
    {
        var left = fields.ToArray();
        while (left.Any(s => s.Length > 0))
        {
            var line = new StringBuilder();
            for (int col = 0; col < left.Length; col++)
            {
                int start = col > 0 ? positions[col - 1] : 0;
                int end = positions[col];
                bool last = col == positions.Length - 1;
                int space = last ? 0 : 2;
                int cutoff = end - start - space - (last ? 0 : 1);
                var fit = left[col].Length > cutoff ? left[col][..Math.Max(0, cutoff)] : left[col];
                int best = int.MaxValue;
                foreach (var brk in new[] { "),", "},", "],", "'," })
                {
                    int at = fit.IndexOf(brk, StringComparison.Ordinal);
                    if (at >= 0) best = Math.Min(best, at + brk.Length);
                }
                if (best != int.MaxValue)
                {
                    cutoff = best;
                    fit = fit[..cutoff];
                }
                if (col == 0) line.Append(' ');
                line.Append(fit);
                line.Append(' ', space);
                left[col] = left[col].Length > cutoff ? left[col][cutoff..] : "";
                if (positions[col] > line.Length) line.Append(' ', positions[col] - line.Length);
            }
            sb.Append(line).Append('\n');
        }
    }
}
