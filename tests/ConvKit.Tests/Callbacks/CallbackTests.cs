using ConvKit.Callbacks;
using ConvKit.Models;
using ConvKit.Tests.Training;
using ConvKit.Training;
using static TorchSharp.torch;

namespace ConvKit.Tests.Callbacks;

public class CallbackTests
{
    /// <summary>Overwrites <paramref name="key"/> in the epoch logs with a scripted value (runs before the callbacks under test).</summary>
    static LambdaCallback Script(string key, params double[] values) =>
        new() { OnEpochEndAction = (epoch, logs) => logs[key] = values[epoch] };

    static (Sequential Model, Tensor X, Tensor Y) Setup(double lr = 0.05)
    {
        var (x, y) = TestData.Separable(32);
        var model = TestData.Mlp();
        model.Compile(optimizer: new SGD(learningRate: lr), loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
        return (model, x, y);
    }

    [Fact]
    public void EarlyStoppingStopsAtTheRightEpochAndRestoresTheBestWeights()
    {
        var (model, x, y) = Setup();
        var snapshots = new List<float[]>();
        var record = new LambdaCallback { OnEpochEndAction = (_, _) => snapshots.Add(model.GetWeights()[0].data<float>().ToArray()) };
        // Best at epoch 1 (0.5); epochs 2 and 3 fail to improve by min_delta 0.1 (0.45 is not < 0.5 - 0.1); patience 2.
        var es = new EarlyStopping(monitor: "val_loss", minDelta: 0.1, patience: 2, restoreBestWeights: true);
        var h = model.Fit(x, y, batchSize: 8, epochs: 10, verbose: 0,
            callbacks: [Script("val_loss", 1.0, 0.5, 0.45, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1), record, es]);
        Assert.Equal(new[] { 0, 1, 2, 3 }, h.Epoch);
        Assert.Equal(3, es.StoppedEpoch);
        Assert.Equal(1, es.BestEpoch);
        Assert.Equal(snapshots[1], model.GetWeights()[0].data<float>().ToArray());
        Assert.NotEqual(snapshots[3], snapshots[1]);
    }

    /// <summary>A model compiled with a top-k accuracy named "top5" (a name without "acc").</summary>
    static (Sequential Model, Tensor X, Tensor Y) SetupTopK()
    {
        var (x, y) = TestData.Separable(32);
        var model = TestData.Mlp();
        model.Compile(optimizer: new SGD(learningRate: 0.05), loss: "sparse_categorical_crossentropy",
            metrics: [new SparseTopKCategoricalAccuracy(k: 1, name: "top5")]);
        return (model, x, y);
    }

    [Fact]
    public void EarlyStoppingOnATopKMetricMaximizesItAndRestoresTheBestEpoch()
    {
        // Issue 12: monitor "val_top5" has no "acc" in its name; the name rule picked 'min' and restored the worst epoch.
        var (model, x, y) = SetupTopK();
        var snapshots = new List<float[]>();
        var record = new LambdaCallback { OnEpochEndAction = (_, _) => snapshots.Add(model.GetWeights()[0].data<float>().ToArray()) };
        var es = new EarlyStopping(monitor: "val_top5", patience: 2, restoreBestWeights: true);
        var h = model.Fit(x, y, batchSize: 8, epochs: 10, verbose: 0,
            callbacks: [Script("val_top5", 0.2, 0.9, 0.5, 0.4, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95), record, es]);
        Assert.Equal(new[] { 0, 1, 2, 3 }, h.Epoch);
        Assert.Equal(1, es.BestEpoch);
        Assert.Equal(0.9, es.Best);
        Assert.Equal(snapshots[1], model.GetWeights()[0].data<float>().ToArray());

        // The same with the metric's own name, and 'loss' always minimizes.
        var byLoss = new EarlyStopping(monitor: "val_loss", patience: 1);
        model.Fit(x, y, batchSize: 8, epochs: 4, verbose: 0, callbacks: [Script("val_loss", 1.0, 0.5, 0.7, 0.8), byLoss]);
        Assert.Equal(1, byLoss.BestEpoch);
    }

    [Fact]
    public void ReduceLROnPlateauAndModelCheckpointFollowTheTopKMetricsDirection()
    {
        var (model, x, y) = SetupTopK();
        // Rising top-k accuracy is improvement: no reduction (in 'min' it would have been halved twice).
        var plateau = new ReduceLROnPlateau(monitor: "val_top5", factor: 0.5, patience: 0, minDelta: 0);
        model.Fit(x, y, batchSize: 8, epochs: 3, verbose: 0, callbacks: [Script("val_top5", 0.2, 0.5, 0.8), plateau]);
        Assert.Equal(0.05, model.Optimizer!.LearningRate, 12);

        var dir = Directory.CreateTempSubdirectory("convkit-topk-").FullName;
        try
        {
            var checkpoint = new ModelCheckpoint(Path.Combine(dir, "e{epoch}.safetensors"), monitor: "val_top5", saveBestOnly: true, saveWeightsOnly: true);
            model.Fit(x, y, batchSize: 8, epochs: 3, verbose: 0, callbacks: [Script("val_top5", 0.2, 0.5, 0.3), checkpoint]);
            Assert.Equal(2, checkpoint.Saved.Count); // epochs 1 and 2 improve, epoch 3 does not
            Assert.Equal(0.5, checkpoint.Best);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void EarlyStoppingMaxModeAndBaseline()
    {
        var (model, x, y) = Setup();
        // Auto mode maximizes "accuracy"-like names. An improvement that stays below the baseline does not reset the
        // wait (Keras), so with baseline 0.9 and patience 2 training stops at epoch 2, one epoch earlier than without.
        var script = new[] { 0.5, 0.6, 0.55, 0.55, 0.55, 0.55 };
        var withBaseline = model.Fit(x, y, epochs: 6, verbose: 0,
            callbacks: [Script("val_accuracy", script), new EarlyStopping(monitor: "val_accuracy", patience: 2, baseline: 0.9)]);
        Assert.Equal(3, withBaseline.Epoch.Count);
        var without = model.Fit(x, y, epochs: 6, verbose: 0,
            callbacks: [Script("val_accuracy", script), new EarlyStopping(monitor: "val_accuracy", patience: 2)]);
        Assert.Equal(4, without.Epoch.Count);

        var es2 = new EarlyStopping(monitor: "val_accuracy", patience: 1);
        var h2 = model.Fit(x, y, epochs: 6, verbose: 0, callbacks: [Script("val_accuracy", 0.5, 0.6, 0.7, 0.7, 0.9, 1), es2]);
        Assert.Equal(new[] { 0, 1, 2, 3 }, h2.Epoch);
    }

    [Fact]
    public void ModelCheckpointSavesOnlyImprovementsWithFormattedNames()
    {
        var (model, x, y) = Setup();
        var dir = Directory.CreateTempSubdirectory("convkit-ckpt").FullName;
        try
        {
            var ckpt = new ModelCheckpoint(Path.Combine(dir, "w-{epoch:02d}-{val_loss:.2f}.bin"), saveBestOnly: true, saveWeightsOnly: true);
            var snapshots = new List<float[]>();
            var record = new LambdaCallback { OnEpochEndAction = (_, _) => snapshots.Add(model.GetWeights()[0].data<float>().ToArray()) };
            model.Fit(x, y, epochs: 5, verbose: 0, callbacks: [Script("val_loss", 0.9, 0.7, 0.8, 0.3, 0.31), record, ckpt]);
            var expected = new[] { "w-01-0.90.bin", "w-02-0.70.bin", "w-04-0.30.bin" };
            Assert.Equal(expected, ckpt.Saved.Select(Path.GetFileName));
            Assert.Equal(expected, Directory.GetFiles(dir).Select(Path.GetFileName).Order());
            Assert.Equal(0.3, ckpt.Best);

            // The safetensors file loads back into the same architecture by layer name and holds the weights of epoch 4.
            var again = TestData.Mlp();
            again.LoadWeights(Path.Combine(dir, "w-04-0.30.bin"));
            Assert.Equal(snapshots[3], again.GetWeights()[0].data<float>().ToArray());
            Assert.NotEqual(snapshots[4], snapshots[3]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void ModelCheckpointPathFormatting()
    {
        var logs = new Logs(new Dictionary<string, double> { ["val_loss"] = 0.123456, ["accuracy"] = 0.5 });
        Assert.Equal("m-007-0.1235-50.0%.h5", ModelCheckpoint.FormatPath("m-{epoch:03d}-{val_loss:.4f}-{accuracy:.1%}.h5", 7, logs));
        Assert.Equal("e3", ModelCheckpoint.FormatPath("e{epoch}", 3, logs));
        Assert.Throws<InvalidOptionException>(() => ModelCheckpoint.FormatPath("{val_acc:.2f}", 1, logs));
    }

    [Fact]
    public void ModelCheckpointFailedSaveKeepsTheLastGoodFile()
    {
        var (model, x, y) = Setup();
        var dir = Directory.CreateTempSubdirectory("convkit-ckpt").FullName;
        try
        {
            var path = Path.Combine(dir, "last.bin");
            var ckpt = new ModelCheckpoint(path);
            model.Fit(x, y, epochs: 1, verbose: 0, validationSplit: 0.25, callbacks: [ckpt]);
            var good = File.ReadAllBytes(path);
            ckpt.Writer = new FailingWriter();
            Assert.Throws<ConvKitException>(() => model.Fit(x, y, epochs: 1, verbose: 0, validationSplit: 0.25, callbacks: [ckpt]));
            Assert.Equal(good, File.ReadAllBytes(path));
            Assert.Single(Directory.GetFiles(dir));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    sealed class FailingWriter : ICheckpointWriter
    {
        public void Write(Model model, string path, bool weightsOnly)
        {
            var tmp = path + ".tmp";
            File.WriteAllText(tmp, "partial");
            File.Delete(tmp);
            throw new IOException("disk full");
        }
    }

    [Fact]
    public void LearningRateSchedulerSetsTheRateTheOptimizerUses()
    {
        // Seed 002's LeNet-5 step schedule.
        static double LrSchedule(int epoch) => epoch <= 2 ? 0.0005 : epoch <= 5 ? 0.0002 : epoch <= 9 ? 0.00005 : 0.00001;
        var (model, x, y) = Setup();
        var used = new List<double>();
        var probe = new LambdaCallback
        {
            OnTrainBatchBeginAction = (b, _) =>
            {
                if (b == 0) used.Add(model.Optimizer!.TorchOptimizer!.ParamGroups.Single().LearningRate);
            },
        };
        var h = model.Fit(x, y, batchSize: 16, epochs: 12, verbose: 0, callbacks: [new LearningRateScheduler(LrSchedule), probe]);
        var expected = Enumerable.Range(0, 12).Select(LrSchedule).ToArray();
        Assert.Equal(expected, used);
        Assert.Equal(expected, h["lr"]);
    }

    [Fact]
    public void ReduceLROnPlateauReducesAfterPatienceThenCoolsDown()
    {
        var (model, x, y) = Setup(lr: 0.1);
        var rlr = new ReduceLROnPlateau(monitor: "val_loss", factor: 0.5, patience: 2, cooldown: 2, minLr: 0.02);
        var h = model.Fit(x, y, epochs: 9, verbose: 0,
            callbacks: [Script("val_loss", 1, 1, 1, 1, 1, 1, 1, 1, 1), rlr]);
        // lr logged at epoch end is the rate used during that epoch (Keras logs it before reducing).
        // Reductions at the end of epochs 2 and 5 (the cooldown of 2 delays counting by one epoch), the third stops at min_lr.
        Assert.Equal(new[] { 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025 }, h["lr"]);
        Assert.Equal(0.02, model.Optimizer!.LearningRate, 12);
    }

    [Fact]
    public void CsvLoggerWritesSortedHeaderAndRows()
    {
        var (model, x, y) = Setup();
        var file = Path.GetTempFileName();
        try
        {
            var h = model.Fit(x, y, epochs: 2, verbose: 0, validationSplit: 0.25, callbacks: [new CSVLogger(file)]);
            var lines = File.ReadAllLines(file);
            Assert.Equal("epoch,accuracy,loss,val_accuracy,val_loss", lines[0]);
            Assert.Equal(3, lines.Length);
            var row = lines[2].Split(',');
            Assert.Equal("1", row[0]);
            Assert.Equal(h["loss"][1], double.Parse(row[2], System.Globalization.CultureInfo.InvariantCulture), 12);
            model.Fit(x, y, epochs: 1, verbose: 0, validationSplit: 0.25, callbacks: [new CSVLogger(file, append: true)]);
            Assert.Equal(4, File.ReadAllLines(file).Length);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void TerminateOnNaNStopsAtTheFirstInvalidLoss()
    {
        var (x, y) = TestData.Separable(32);
        x[5, 0] = tensor(float.NaN);
        var model = TestData.Mlp();
        model.Compile(optimizer: "sgd", loss: "sparse_categorical_crossentropy");
        var output = new StringWriter();
        var t = new TerminateOnNaN { Output = output };
        var h = model.Fit(x, y, batchSize: 4, epochs: 3, verbose: 0, shuffle: false, callbacks: [t]);
        Assert.Equal(1, t.TerminatedAtBatch); // sample 5 is in the second batch
        Assert.Single(h.Epoch);
        Assert.Contains("Batch 1: Invalid loss, terminating training", output.ToString());
    }

    [Fact]
    public void ProgbarWritesKerasLinesWhenNotATerminal()
    {
        var (model, x, y) = Setup();
        var output = new StringWriter();
        model.Fit(x, y, batchSize: 8, epochs: 2, verbose: 1, validationSplit: 0.25, callbacks: [new ProgbarLogger(output, interactive: false)]);
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        Assert.Equal("Epoch 1/2", lines[0]);
        Assert.Matches(@"^3/3 \[==============================\] - \d+s \d+(ms|us|s)/step - loss: \d\.\d{4} - accuracy: \d\.\d{4} - val_loss: \d\.\d{4} - val_accuracy: \d\.\d{4}$", lines[1]);
        Assert.Equal("Epoch 2/2", lines[2]);
        Assert.DoesNotContain('\r', output.ToString());
    }

    [Fact]
    public void ProgbarRedrawsInPlaceOnATerminalAndVerbose2IsOneLine()
    {
        var (model, x, y) = Setup();
        var output = new StringWriter();
        model.Fit(x, y, batchSize: 1, epochs: 1, verbose: 1, callbacks: [new ProgbarLogger(output, interactive: true)]);
        var text = output.ToString();
        Assert.StartsWith("\r", text);
        Assert.Contains("[==============================]", text);
        Assert.Contains(" 1/32 [..............................] - ETA:", text); // Keras draws no arrow below 1/30

        var quiet = new StringWriter();
        model.Fit(x, y, batchSize: 8, epochs: 1, verbose: 2, callbacks: [new ProgbarLogger(quiet, interactive: true)]);
        Assert.Matches(@"^4/4 - \d+s - loss: \d\.\d{4} - accuracy: \d\.\d{4} - \d+s/epoch - \d+(ms|us|s)/step\n$", quiet.ToString());
    }

    [Fact]
    public void ProgbarBarShapes()
    {
        Assert.Equal(">.........", ProgbarLogger.Bar(1, 10, 10));
        Assert.Equal("====>.....", ProgbarLogger.Bar(5, 10, 10));
        Assert.Equal("==========", ProgbarLogger.Bar(10, 10, 10));
        Assert.Equal("1.2346e-04", ProgbarLogger.FormatValue(0.000123456));
        Assert.Equal("0.5000", ProgbarLogger.FormatValue(0.5));
    }

    [Fact]
    public void CallbacksSeeHooksInKerasOrder()
    {
        var (model, x, y) = Setup();
        var events = new List<string>();
        var cb = new Recorder(events);
        model.Fit(x, y, batchSize: 16, epochs: 1, verbose: 0, validationSplit: 0.5, callbacks: [cb]);
        Assert.Equal(new[] { "train_begin", "epoch_begin 0", "batch_begin 0", "batch_end 0", "test_begin", "test_batch_end 0", "test_end", "epoch_end 0", "train_end" }, events);
        Assert.Same(model, cb.Model);
        Assert.Equal(1, cb.Params!.Steps);
    }

    sealed class Recorder(List<string> events) : Callback
    {
        public override void OnTrainBegin(Logs logs) => events.Add("train_begin");
        public override void OnTrainEnd(Logs logs) => events.Add("train_end");
        public override void OnEpochBegin(int epoch, Logs logs) => events.Add($"epoch_begin {epoch}");
        public override void OnEpochEnd(int epoch, Logs logs) => events.Add($"epoch_end {epoch}");
        public override void OnTrainBatchBegin(int batch, Logs logs) => events.Add($"batch_begin {batch}");
        public override void OnTrainBatchEnd(int batch, Logs logs) => events.Add($"batch_end {batch}");
        public override void OnTestBegin(Logs logs) => events.Add("test_begin");
        public override void OnTestBatchEnd(int batch, Logs logs) => events.Add($"test_batch_end {batch}");
        public override void OnTestEnd(Logs logs) => events.Add("test_end");
    }
}
