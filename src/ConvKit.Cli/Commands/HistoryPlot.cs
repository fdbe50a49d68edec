using ConvKit.Callbacks;
using ConvKit.Saving;

namespace ConvKit.Cli.Commands;

/// <summary>Training curves as PNG files (ScottPlot): loss.png and accuracy.png, training and validation per epoch.</summary>
public static class HistoryPlot
{
    /// <summary>
    /// Writes one plot per metric family found in the history; returns the files written. Non-finite values (a loss
    /// that became NaN) are left out of the curves; a metric without any finite value gets no plot. Each PNG is rendered
    /// in memory, then written atomically.
    /// </summary>
    /// <exception cref="ConvKitException">A file cannot be written (the message names it and the cause).</exception>
    public static IReadOnlyList<string> Save(string folder, History history, string title)
    {
        var written = new List<string>();
        foreach (var metric in new[] { "loss", "accuracy" })
        {
            if (!history.Values.ContainsKey(metric)) continue;
            var plot = new ScottPlot.Plot();
            bool any = false;
            foreach (var key in new[] { metric, "val_" + metric })
            {
                if (!history.Values.TryGetValue(key, out var values)) continue;
                var finite = Enumerable.Range(0, Math.Min(values.Count, history.Epoch.Count)).Where(i => double.IsFinite(values[i])).ToArray();
                if (finite.Length == 0) continue;
                var line = plot.Add.Scatter(finite.Select(i => (double)history.Epoch[i] + 1).ToArray(), finite.Select(i => values[i]).ToArray());
                line.LegendText = key.StartsWith("val_", StringComparison.Ordinal) ? "validation" : "training";
                any = true;
            }
            if (!any) continue;
            plot.Title($"{title}: {metric}");
            plot.XLabel("epoch");
            plot.YLabel(metric);
            plot.ShowLegend();
            var png = plot.GetImage(800, 450).GetImageBytes(ScottPlot.ImageFormat.Png);
            var path = Path.Combine(folder, metric + ".png");
            AtomicFile.WriteOrExplain(path, s => s.Write(png));
            written.Add(path);
        }
        return written;
    }
}
