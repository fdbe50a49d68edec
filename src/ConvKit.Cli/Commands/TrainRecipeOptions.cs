// 'convkit train' options of the training recipe: label smoothing (Keras' semantics, on the sparse labels the built-in
// datasets have), MixUp and CutMix of each batch (Beta(α, α), drawn from (seed, epoch, batch)), and a per-step
// cosine schedule with linear warm-up, and the optimizer's weight decay. Each is validated by its CLI name before anything is loaded.
using System.CommandLine;
using System.Globalization;
using ConvKit.Callbacks;
using ConvKit.Data;
using ConvKit.Training;

namespace ConvKit.Cli.Commands;

/// <summary>The recipe options of <c>convkit train</c>.</summary>
/// <param name="LabelSmoothing">Label smoothing s of the cross-entropy (<c>--label-smoothing</c>): targets <c>y·(1 − s) + s / classes</c>.</param>
/// <param name="MixUp">α of MixUp (<c>--mixup</c>); 0 for none.</param>
/// <param name="CutMix">α of CutMix (<c>--cutmix</c>); 0 for none.</param>
/// <param name="Schedule">The learning-rate schedule (<c>--schedule</c>): <c>constant</c> or <c>cosine</c>.</param>
/// <param name="WarmupEpochs">Epochs of linear warm-up before the cosine (<c>--warmup-epochs</c>).</param>
/// <param name="WeightDecay">The optimizer's weight decay (<c>--weight-decay</c>), Keras' decoupled form: each step
/// first shrinks every weight by <c>lr · weight_decay</c>. 0 for none (runs saved before the option read as 0).</param>
/// <param name="Tta">Test-time augmentation of the final test evaluation (<c>--tta</c>): <c>none</c> or <c>flip</c>.</param>
public sealed record TrainRecipeSettings(double LabelSmoothing, double MixUp, double CutMix, string Schedule, int WarmupEpochs, double WeightDecay = 0, string Tta = "none")
{
    /// <summary>Plain training: no smoothing, no mixing, a constant rate, no weight decay.</summary>
    public static TrainRecipeSettings None { get; } = new(0, 0, 0, "constant", 0);
}

/// <summary>Declares, validates and applies the recipe options of <c>convkit train</c>.</summary>
public static class TrainRecipeOptions
{
    /// <summary>The options, to add to the command.</summary>
    public sealed class Set
    {
        /// <summary><c>--label-smoothing</c>.</summary>
        public Option<double> LabelSmoothing { get; } = new("--label-smoothing") { Description = "Label smoothing s in [0, 1) of the cross-entropy (Keras: targets become y*(1-s) + s/classes).", DefaultValueFactory = _ => 0 };

        /// <summary><c>--mixup</c>.</summary>
        public Option<double> MixUp { get; } = new("--mixup") { Description = "MixUp with Beta(ALPHA, ALPHA) per batch (0.2 to 1 is usual; 0: off). With --cutmix, each batch takes one of the two.", DefaultValueFactory = _ => 0 };

        /// <summary><c>--cutmix</c>.</summary>
        public Option<double> CutMix { get; } = new("--cutmix") { Description = "CutMix with Beta(ALPHA, ALPHA) per batch (1 is usual; 0: off).", DefaultValueFactory = _ => 0 };

        /// <summary><c>--schedule</c>.</summary>
        public Option<string> Schedule { get; } = new("--schedule") { Description = "Learning-rate schedule: constant, or cosine (per step from --lr down to 0 over the run, after --warmup-epochs of linear warm-up).", DefaultValueFactory = _ => "constant" };

        /// <summary><c>--warmup-epochs</c>.</summary>
        public Option<int> WarmupEpochs { get; } = new("--warmup-epochs") { Description = "Epochs of linear warm-up from 0 to --lr before the cosine. Needs --schedule cosine.", DefaultValueFactory = _ => 0 };

        /// <summary><c>--weight-decay</c>.</summary>
        public Option<double> WeightDecay { get; } = new("--weight-decay") { Description = "Weight decay of the optimizer, Keras' decoupled form: each step first shrinks every weight by lr*DECAY (5e-3 with SGD momentum 0.9 is PyTorch's usual 5e-4). 0: off (adamw then keeps Keras' 0.004).", DefaultValueFactory = _ => 0 };

        /// <summary><c>--tta</c>.</summary>
        public Option<string> Tta { get; } = new("--tta") { Description = "Test-time augmentation of the final test evaluation: none, or flip (the mean of the model's outputs on each test image and its mirror; printed beside the plain test accuracy). Built-in datasets only.", DefaultValueFactory = _ => "none" };

        /// <summary>Every option, to add to the command.</summary>
        public IEnumerable<Option> All => [LabelSmoothing, MixUp, CutMix, Schedule, WarmupEpochs, WeightDecay, Tta];

        /// <summary>The parsed values.</summary>
        public TrainRecipeSettings Read(ParseResult parse) => new(parse.GetValue(LabelSmoothing), parse.GetValue(MixUp), parse.GetValue(CutMix),
            parse.GetValue(Schedule)!, parse.GetValue(WarmupEpochs), parse.GetValue(WeightDecay), parse.GetValue(Tta)!);
    }

    static string V(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    /// <summary>Checks each value by its CLI name, before anything is loaded.</summary>
    /// <exception cref="InvalidOptionException">A value or combination is invalid; the message names the option.</exception>
    public static void Validate(TrainRecipeSettings r, int epochs)
    {
        if (!double.IsFinite(r.LabelSmoothing) || r.LabelSmoothing < 0 || r.LabelSmoothing >= 1)
            throw new InvalidOptionException("--label-smoothing", $"--label-smoothing must be at least 0 and less than 1; received {V(r.LabelSmoothing)}.");
        if (!double.IsFinite(r.MixUp) || r.MixUp < 0)
            throw new InvalidOptionException("--mixup", $"--mixup must be a finite alpha >= 0 (0: off); received {V(r.MixUp)}.");
        if (!double.IsFinite(r.CutMix) || r.CutMix < 0)
            throw new InvalidOptionException("--cutmix", $"--cutmix must be a finite alpha >= 0 (0: off); received {V(r.CutMix)}.");
        if (r.Schedule is not ("constant" or "cosine"))
            throw new InvalidOptionException("--schedule", $"--schedule must be constant or cosine; received '{r.Schedule}'.");
        if (!double.IsFinite(r.WeightDecay) || r.WeightDecay < 0 || r.WeightDecay >= 1)
            throw new InvalidOptionException("--weight-decay", $"--weight-decay must be at least 0 and less than 1; received {V(r.WeightDecay)}.");
        if (r.Tta is not ("none" or "flip"))
            throw new InvalidOptionException("--tta", $"--tta must be none or flip; received '{r.Tta}'.");
        if (r.WarmupEpochs < 0)
            throw new InvalidOptionException("--warmup-epochs", $"--warmup-epochs must be 0 or more; received {r.WarmupEpochs}.");
        if (r.WarmupEpochs > 0 && r.Schedule != "cosine")
            throw new InvalidOptionException("--warmup-epochs", "--warmup-epochs needs --schedule cosine (the warm-up leads into the cosine).");
        if (r.WarmupEpochs >= epochs && r.Schedule == "cosine")
            throw new InvalidOptionException("--warmup-epochs", $"--warmup-epochs must be fewer than --epochs ({epochs}) so that the cosine has steps to decay over; received {r.WarmupEpochs}.");
    }

    /// <summary>The loss of the built-in datasets' integer labels, with <c>--label-smoothing</c>.</summary>
    public static Loss Loss(TrainRecipeSettings r) => new SparseCategoricalCrossentropy(labelSmoothing: r.LabelSmoothing);

    /// <summary>MixUp/CutMix of <c>--mixup</c>/<c>--cutmix</c>, or null when both are 0.</summary>
    public static BatchMixing? Mixing(TrainRecipeSettings r) => r.MixUp > 0 || r.CutMix > 0 ? new BatchMixing(r.MixUp, r.CutMix) : null;

    /// <summary>The schedule callback of <c>--schedule cosine</c> over the <paramref name="epochs"/> of the first phase,
    /// or null for a constant rate.</summary>
    public static Callback? Schedule(TrainRecipeSettings r, double peak, int epochs) => r.Schedule == "cosine"
        ? CosineDecay.OverEpochs(peak, decayEpochs: epochs - r.WarmupEpochs, warmupEpochs: r.WarmupEpochs)
        : null;

    /// <summary>One line for the run's header: what the recipe adds to plain training.</summary>
    public static string Describe(TrainRecipeSettings r)
    {
        var parts = new List<string>();
        if (r.LabelSmoothing > 0) parts.Add($"label smoothing {V(r.LabelSmoothing)}");
        if (r.MixUp > 0) parts.Add($"mixup {V(r.MixUp)}");
        if (r.CutMix > 0) parts.Add($"cutmix {V(r.CutMix)}");
        if (r.WeightDecay > 0) parts.Add($"weight decay {V(r.WeightDecay)}");
        if (r.Schedule == "cosine") parts.Add(r.WarmupEpochs > 0 ? $"cosine schedule after {r.WarmupEpochs} warm-up epochs" : "cosine schedule");
        return parts.Count == 0 ? "" : ", " + string.Join(", ", parts);
    }
}
