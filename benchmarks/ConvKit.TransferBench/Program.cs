// Issue 14 §4, transfer learning: pretrain "tl_cnn" (three Conv2D + BatchNormalization + ReLU blocks, global average
// pooling, Dense) on Fashion-MNIST classes 0-4; then train only a new 5-class head on classes 5-9 over the frozen
// backbone, pretrained vs the same architecture with random weights, over several seeds; then fine-tune the top block
// (its convolution, BatchNormalization kept frozen) at a tenth of the rate. Prints test accuracies (classes 5-9 test
// split), means and spreads, and whether the frozen BatchNormalization statistics stayed bit-identical.
// Usage: dotnet run -c Release --project benchmarks/ConvKit.TransferBench -- [--seeds 3] [--per-phase 12000]
//        [--pretrain-epochs 2] [--head-epochs 2] [--fine-tune-epochs 1] [--threads N]
using System.Diagnostics;
using System.Globalization;
using ConvKit;
using ConvKit.Data;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Saving;
using ConvKit.Training;
using TorchSharp;
using Padding = ConvKit.Padding;
using static TorchSharp.torch;

int Arg(string name, int fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault() is { } v ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;
int seeds = Arg("--seeds", 3), perPhase = Arg("--per-phase", 12000), preEpochs = Arg("--pretrain-epochs", 2), headEpochs = Arg("--head-epochs", 2), ftEpochs = Arg("--fine-tune-epochs", 1);
Backend.Threads = Arg("--threads", Environment.ProcessorCount);
var clock = Stopwatch.StartNew();
using var splits = Datasets.FashionMnist.Load();

(Tensor X, Tensor Y) Subset(ImageDataset d, int first, int limit)
{
    using var scope = NewDisposeScope();
    using var lo = ((long)first).ToScalar();
    using var hi = ((long)first + 5).ToScalar();
    using var mask = d.Labels.ge(lo).logical_and(d.Labels.lt(hi));
    var idx = mask.nonzero().squeeze(1);
    if (idx.shape[0] > limit) idx = idx.narrow(0, 0, limit);
    using var max = 255f.ToScalar();
    var x = d.Images.index_select(0, idx).to(float32).div_(max);
    var y = d.Labels.index_select(0, idx).sub(lo);
    return (x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope());
}

var (xPre, yPre) = Subset(splits.Train, 0, perPhase);
var (xNew, yNew) = Subset(splits.Train, 5, perPhase);
var (xTest, yTest) = Subset(splits.Test, 5, int.MaxValue);
Console.WriteLine($"tl_cnn transfer benchmark: pretrain {xPre.shape[0]} images of classes 0-4 ({preEpochs} epochs), head on {xNew.shape[0]} images of classes 5-9 " +
    $"({headEpochs} epochs), fine-tune {ftEpochs} epoch(s); test on {xTest.shape[0]} images of classes 5-9; {seeds} seeds; threads {Backend.Threads}.");

Model Build(long seed)
{
    Backend.SetSeed(seed);
    using var _ = Backend.NameScope();
    var inputs = new Input(new Shape(28, 28, 1), name: "image");
    var x = (SymbolicTensor)inputs;
    int[] filters = [32, 64, 128];
    for (int b = 0; b < filters.Length; b++)
    {
        x = new Conv2D(filters[b], 3, padding: Padding.Same, useBias: false, name: $"block{b + 1}_conv").Apply(x);
        x = new BatchNormalization(momentum: 0.9, name: $"block{b + 1}_bn").Apply(x); // 0.9: moving statistics settle within a short run
        x = new ReLU(name: $"block{b + 1}_relu").Apply(x);
        if (b < filters.Length - 1) x = new MaxPooling2D(2, name: $"block{b + 1}_pool").Apply(x);
    }
    x = new GlobalAveragePooling2D(name: "gap").Apply(x);
    x = new Dense(5, activation: "softmax", name: "head").Apply(x);
    return new Model(inputs, x, "tl_cnn");
}

double Accuracy(Model m) => m.Evaluate(xTest, yTest, batchSize: 500, verbose: 0)["accuracy"] * 100;

Tensor[] BnStats(Model m) => FineTuning.WeightedLayers(m).OfType<BatchNormalization>()
    .SelectMany(l => l.OwnWeights).Select(w => w.Value.detach().clone()).ToArray();

bool Same(Tensor[] a, Tensor[] b) => a.Length == b.Length && a.Zip(b).All(p => p.First.eq(p.Second).all().item<bool>());

var dir = Directory.CreateTempSubdirectory("convkit-transferbench-").FullName;
var pre = new List<double>(); var rnd = new List<double>(); var tuned = new List<double>(); var preSource = new List<double>();
bool bnIdentical = true;
try
{
    for (int s = 0; s < seeds; s++)
    {
        long seed = 100 + s;
        // Pretraining on classes 0-4.
        var t0 = clock.Elapsed;
        using (var source = Build(seed))
        {
            source.Compile(optimizer: new Adam(0.002), loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
            source.Fit(xPre, yPre, batchSize: 64, epochs: preEpochs, verbose: 0, seed: seed);
            source.SaveWeights(Path.Combine(dir, $"pre{seed}.safetensors"));
            var (xs, ys) = Subset(splits.Test, 0, int.MaxValue);
            preSource.Add(source.Evaluate(xs, ys, batchSize: 500, verbose: 0)["accuracy"] * 100);
            xs.Dispose(); ys.Dispose();
        }

        foreach (bool pretrained in new[] { true, false })
        {
            // The new head's initial weights come from seed + 1000 in both arms, the backbone from pretraining or random.
            using var model = Build(seed + 1000);
            if (pretrained)
            {
                var report = model.LoadWeights(Path.Combine(dir, $"pre{seed}.safetensors"), options: new LoadWeightsOptions { SkipLayers = ["head"] });
                if (s == 0) Console.WriteLine("  " + report.Summary());
            }
            FineTuning.FreezeAllBut(model, ["head"]);
            var optimizer = new Adam(0.002);
            model.Compile(optimizer: optimizer, loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
            var bnBefore = BnStats(model);
            model.Fit(xNew, yNew, batchSize: 64, epochs: headEpochs, verbose: 0, seed: seed);
            double acc = Accuracy(model);
            (pretrained ? pre : rnd).Add(acc);
            bnIdentical &= Same(bnBefore, BnStats(model));
            if (pretrained && ftEpochs > 0)
            {
                FineTuning.UnfreezeTop(model, 2); // block3_conv and the head; BatchNormalization stays frozen
                optimizer.LearningRate = 0.0002;
                model.Fit(xNew, yNew, batchSize: 64, epochs: headEpochs + ftEpochs, initialEpoch: headEpochs, verbose: 0, seed: seed + 7);
                tuned.Add(Accuracy(model));
                bnIdentical &= Same(bnBefore, BnStats(model));
            }
        }
        Console.WriteLine($"  seed {seed}: pretrain (classes 0-4) {preSource[^1]:F2}%; head on 5-9: pretrained {pre[^1]:F2}%, random {rnd[^1]:F2}%"
            + (tuned.Count > s ? $", fine-tuned top block {tuned[^1]:F2}%" : "") + $"  [{(clock.Elapsed - t0).TotalSeconds:F0} s]");
    }
}
finally
{
    Directory.Delete(dir, recursive: true);
}

static string Stats(List<double> v)
{
    double mean = v.Average();
    double sd = v.Count > 1 ? Math.Sqrt(v.Sum(a => (a - mean) * (a - mean)) / (v.Count - 1)) : 0;
    return $"mean {mean:F2}% (sd {sd:F2}, min {v.Min():F2}, max {v.Max():F2})";
}
Console.WriteLine($"frozen pretrained backbone: {Stats(pre)}");
Console.WriteLine($"frozen random backbone:     {Stats(rnd)}");
Console.WriteLine($"margin (pretrained - random): {pre.Average() - rnd.Average():F2} points");
if (tuned.Count > 0)
    Console.WriteLine($"after fine-tuning the top block: {Stats(tuned)}; change {tuned.Average() - pre.Average():+0.00;-0.00} points (must not be below -0.5)");
Console.WriteLine($"frozen BatchNormalization statistics bit-identical before/after: {(bnIdentical ? "yes" : "NO")}");
Console.WriteLine($"total {clock.Elapsed.TotalSeconds:F0} s");
