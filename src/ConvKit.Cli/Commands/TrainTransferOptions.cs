// 'convkit train' options for transfer learning: a pretrained backbone (--weights FILE|RUN, by name, mismatches
// skipped and reported), a frozen backbone under the new head (--freeze-backbone), and a second phase that unfreezes
// the backbone at a lower rate (--fine-tune-epochs, --fine-tune-lr), BatchNormalization staying in inference mode.
using System.CommandLine;
using System.Globalization;
using ConvKit.Callbacks;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Saving;
using ConvKit.Training;

namespace ConvKit.Cli.Commands;

/// <summary>The transfer-learning options of <c>convkit train</c>.</summary>
/// <param name="Weights">A weights file or a previous run folder (<c>--weights</c>), or null.</param>
/// <param name="FreezeBackbone">Train only the new head in the first phase (<c>--freeze-backbone</c>).</param>
/// <param name="FineTuneEpochs">Epochs of the second phase, with the backbone unfrozen (<c>--fine-tune-epochs</c>); 0 for none.</param>
/// <param name="FineTuneLearningRate">Learning rate of the second phase (<c>--fine-tune-lr</c>); null for a tenth of the first.</param>
public sealed record TrainTransferSettings(string? Weights, bool FreezeBackbone, int FineTuneEpochs, double? FineTuneLearningRate)
{
    /// <summary>In the fine-tuning phase the backbone's rate is <c>--fine-tune-lr</c> times this (<c>--backbone-lr-factor</c>),
    /// the head's <c>--fine-tune-lr</c> itself; null for one rate.</summary>
    public double? BackboneLearningRateFactor { get; init; }

    /// <summary>No transfer learning: random weights, everything trained.</summary>
    public static TrainTransferSettings None { get; } = new(null, false, 0, null);
}

/// <summary>Declares, validates and applies the transfer-learning options of <c>convkit train</c>.</summary>
public static class TrainTransferOptions
{
    /// <summary>The options, to add to the command.</summary>
    public sealed class Set
    {
        /// <summary><c>--weights</c>.</summary>
        public Option<string?> Weights { get; } = new("--weights") { Description = "Pretrained weights for the model: a ConvKit .safetensors, a Keras .h5, a state dict in .safetensors, or a previous run folder. Loaded by layer name; layers whose shapes differ (a new head) are skipped and reported." };

        /// <summary><c>--freeze-backbone</c>.</summary>
        public Option<bool> FreezeBackbone { get; } = new("--freeze-backbone") { Description = "Train only the head (the last Dense layer and any layer --weights did not provide); the backbone is frozen, its BatchNormalization in inference mode. Needs --weights." };

        /// <summary><c>--fine-tune-epochs</c>.</summary>
        public Option<int> FineTuneEpochs { get; } = new("--fine-tune-epochs") { Description = "After --epochs, unfreeze the backbone (BatchNormalization stays frozen) and train this many more epochs at --fine-tune-lr. Needs --freeze-backbone.", DefaultValueFactory = _ => 0 };

        /// <summary><c>--fine-tune-lr</c>.</summary>
        public Option<double?> FineTuneLr { get; } = new("--fine-tune-lr") { Description = "Learning rate of the fine-tuning phase (default: a tenth of the first phase's). Needs --fine-tune-epochs." };

        /// <summary><c>--backbone-lr-factor</c>.</summary>
        public Option<double?> BackboneLrFactor { get; } = new("--backbone-lr-factor") { Description = "In the fine-tuning phase, step the backbone at --fine-tune-lr times this (e.g. 0.1) and the head at --fine-tune-lr (per-layer learning rates, PyTorch's parameter groups). Needs --fine-tune-epochs." };

        /// <summary>Every option, to add to the command.</summary>
        public IEnumerable<Option> All => [Weights, FreezeBackbone, FineTuneEpochs, FineTuneLr, BackboneLrFactor];

        /// <summary>The parsed values.</summary>
        public TrainTransferSettings Read(ParseResult parse) =>
            new(parse.GetValue(Weights), parse.GetValue(FreezeBackbone), parse.GetValue(FineTuneEpochs), parse.GetValue(FineTuneLr))
            { BackboneLearningRateFactor = parse.GetValue(BackboneLrFactor) };
    }

    /// <summary>Checks the combination by the options' CLI names, before anything is loaded.</summary>
    /// <exception cref="ConvKitException">A value or combination is invalid; the message names the options.</exception>
    public static void Validate(TrainTransferSettings t)
    {
        if (t.Weights is { } w)
        {
            if (string.IsNullOrWhiteSpace(w)) throw new ConvKitException("--weights must name a file or a run folder; received an empty value.");
            if (!File.Exists(w) && !Directory.Exists(w)) throw new ConvKitException($"--weights '{w}' does not exist.");
        }
        if (t.FreezeBackbone && t.Weights is null)
            throw new ConvKitException("--freeze-backbone needs --weights: a frozen backbone with random weights would never learn features.");
        if (t.FineTuneEpochs < 0) throw new ConvKitException($"--fine-tune-epochs must be 0 or more; received {t.FineTuneEpochs}.");
        if (t.FineTuneEpochs > 0 && !t.FreezeBackbone)
            throw new ConvKitException("--fine-tune-epochs needs --freeze-backbone: the fine-tuning phase unfreezes the backbone that the first phase kept frozen.");
        if (t.FineTuneLearningRate is { } lr)
        {
            if (t.FineTuneEpochs == 0) throw new ConvKitException("--fine-tune-lr needs --fine-tune-epochs (the number of fine-tuning epochs).");
            if (!double.IsFinite(lr) || lr <= 0)
                throw new ConvKitException($"--fine-tune-lr must be a positive finite number; received {lr.ToString("R", CultureInfo.InvariantCulture)}.");
        }
        if (t.BackboneLearningRateFactor is { } k)
        {
            if (t.FineTuneEpochs == 0)
                throw new InvalidOptionException("--backbone-lr-factor", "--backbone-lr-factor needs --fine-tune-epochs (it sets the backbone's rate in the fine-tuning phase).");
            if (!double.IsFinite(k) || k <= 0)
                throw new InvalidOptionException("--backbone-lr-factor", $"--backbone-lr-factor must be a positive finite number; received {k.ToString("R", CultureInfo.InvariantCulture)}.");
        }
    }

    /// <summary>Loads <c>--weights</c> into <paramref name="net"/> and, with <c>--freeze-backbone</c>, freezes all but the
    /// head; prints what was loaded, skipped and frozen.</summary>
    /// <exception cref="ConvKitException">The weights cannot be read, or none of them fits the model.</exception>
    public static void Apply(CliConsole console, Model net, TrainTransferSettings t)
    {
        if (t.Weights is null) return;
        WeightsLoadReport report;
        try
        {
            report = net.LoadWeights(t.Weights, WeightsFormat.Auto, LoadWeightsOptions.Transfer);
        }
        catch (ConvKitException e)
        {
            throw new ConvKitException($"--weights: {e.Message}", e);
        }
        if (report.Loaded.Count == 0)
            throw new ConvKitException($"--weights '{t.Weights}': no weight of the file fits model '{net.Name}' (by layer name and shape); {report.Summary()}.");
        console.Output.WriteLine($"Weights: {report.Summary()}.");
        foreach (var s in report.Skipped.Where(s => s.Reason != SkipReason.Unexpected).Take(10))
            console.Output.WriteLine($"  not loaded: {s}");
        if (!t.FreezeBackbone) return;
        var layers = FineTuning.WeightedLayers(net);
        var loaded = report.Loaded.Select(k => k[..Math.Max(0, k.LastIndexOf('/'))]).ToHashSet(StringComparer.Ordinal);
        var head = layers.Where(l => !loaded.Contains(l.Name)).Select(l => l.Name).ToList();
        if (layers.LastOrDefault(l => l is Dense) is { } classifier && !head.Contains(classifier.Name)) head.Add(classifier.Name);
        if (head.Count == 0)
            throw new ConvKitException($"--freeze-backbone: model '{net.Name}' has no Dense classifier to train as its head.");
        var frozen = FineTuning.FreezeAllBut(net, head);
        console.Output.WriteLine($"Backbone frozen ({frozen.Count} layers); training the head: {string.Join(", ", head)}.");
    }

    /// <summary>
    /// The fine-tuning phase: unfreezes every layer of <paramref name="net"/> but BatchNormalization, sets the learning
    /// rate to <c>--fine-tune-lr</c> (default a tenth of the first phase's) and trains <c>--fine-tune-epochs</c> more
    /// epochs through <paramref name="fit"/> (given the first epoch index and the last). Returns one history of both phases.
    /// </summary>
    public static History FineTune(CliConsole console, Model net, Model trainee, TrainTransferSettings t, History first, Func<int, int, History> fit)
    {
        if (t.FineTuneEpochs == 0 || first.Epoch.Count == 0) return first;
        var optimizer = trainee.Optimizer ?? throw new ConvKitException("fine-tuning needs a compiled model.");
        double lr = t.FineTuneLearningRate ?? optimizer.LearningRate / 10;
        var head = FineTuning.WeightedLayers(net).Where(l => l.Trainable).ToHashSet();
        int countable = FineTuning.WeightedLayers(net).Count(l => l is not BatchNormalization);
        FineTuning.UnfreezeTop(net, countable);
        if (t.BackboneLearningRateFactor is { } k)
            foreach (var layer in FineTuning.WeightedLayers(net).Where(l => !head.Contains(l)))
                optimizer.SetLearningRateMultiplier(layer, k);
        optimizer.LearningRate = lr;
        int start = first.Epoch[^1] + 1;
        string rates = t.BackboneLearningRateFactor is { } f
            ? $"learning rate {lr.ToString("G4", CultureInfo.InvariantCulture)} for the head, {(lr * f).ToString("G4", CultureInfo.InvariantCulture)} for the backbone"
            : $"learning rate {lr.ToString("G4", CultureInfo.InvariantCulture)}";
        console.Output.WriteLine($"Fine-tuning: backbone unfrozen (BatchNormalization stays frozen), {t.FineTuneEpochs} epochs at {rates}.");
        var second = fit(start, start + t.FineTuneEpochs);
        return Merge(first, second);
    }

    static History Merge(History a, History b)
    {
        var merged = new History();
        foreach (var h in new[] { a, b })
            for (int i = 0; i < h.Epoch.Count; i++)
                merged.OnEpochEnd(h.Epoch[i], new Logs(h.Values.Where(p => i < p.Value.Count).Select(p => KeyValuePair.Create(p.Key, p.Value[i]))));
        return merged;
    }
}
