using ConvKit.Callbacks;

namespace ConvKit.Cli.Commands;

/// <summary>Training curves as PNG files (ScottPlot): loss.png and accuracy.png, training and validation per epoch.</summary>
public static class HistoryPlot
{
    /// <summary>Writes one plot per metric family found in the history; returns the files written.</summary>
    public static IReadOnlyList<string> Save(string folder, History history, string title)
    {
        var written = new List<string>();
        foreach (var metric in new[] { "loss", "accuracy" })
        {
            if (!history.Values.ContainsKey(metric)) continue;
            var plot = new ScottPlot.Plot();
            double[] epochs = history.Epoch.Select(e => (double)e + 1).ToArray();
            foreach (var key in new[] { metric, "val_" + metric })
            {
                if (!history.Values.TryGetValue(key, out var values)) continue;
                var line = plot.Add.Scatter(epochs, values.ToArray());
                line.LegendText = key.StartsWith("val_", StringComparison.Ordinal) ? "validation" : "training";
            }
            plot.Title($"{title}: {metric}");
            plot.XLabel("epoch");
            plot.YLabel(metric);
            plot.ShowLegend();
            var path = Path.Combine(folder, metric + ".png");
            plot.SavePng(path, 800, 450);
            written.Add(path);
        }
        return written;
    }
}
