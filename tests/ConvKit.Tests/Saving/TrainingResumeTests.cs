using ConvKit.Callbacks;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Saving;
using ConvKit.Tests.Training;
using ConvKit.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

// Resuming restores torch's global generator (dropout): run outside the parallel collections.
[Collection(nameof(GlobalRandomCollection))]
public class TrainingResumeTests(ITestOutputHelper output) : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-resume-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    sealed class Interrupted : Exception;

    static (Tensor X, Tensor Y) Data()
    {
        using var g = new Generator(11);
        var x = randn([40, 6, 6, 1], generator: g);
        var y = randint(0, 3, [40], generator: g);
        return (x, y);
    }

    static Sequential Net(Func<Optimizer> optimizer)
    {
        using var _ = Backend.NameScope();
        var model = new Sequential([
            new Conv2D(4, 3, inputShape: (6, 6, 1), activation: "relu"),
            new BatchNormalization(),
            new Flatten(),
            new Dropout(0.3),
            new Dense(8, activation: "relu"),
            new Dense(3, activation: "softmax"),
        ]);
        model.Compile(optimizer(), "sparse_categorical_crossentropy", ["accuracy"]);
        return model;
    }

    static float[][] Weights(Model m) => m.GetWeights().Select(w => w.data<float>().ToArray()).ToArray();

    public static TheoryData<string> Optimizers() => ["sgd_momentum", "adam"];

    static Optimizer Make(string name) => name == "adam" ? new Adam(0.01) : new SGD(0.05, momentum: 0.9);

    [Theory]
    [MemberData(nameof(Optimizers))]
    public void AnInterruptedRunResumedFromItsBackupEndsBitIdenticalToAnUninterruptedOne(string optimizer)
    {
        const int epochs = 5, interruptAfter = 2;
        var (x, y) = Data();

        // Reference: never interrupted.
        Backend.SetSeed(123);
        using var reference = Net(() => Make(optimizer));
        var initial = reference.GetWeights();
        Backend.SetSeed(321); // dropout draws from here on
        reference.Fit(x, y, batchSize: 8, epochs: epochs, verbose: 0, seed: 5, shuffle: true);
        var expected = Weights(reference);

        // Interrupted by an exception (as a crash) after epoch `interruptAfter`, then a fresh model object resumes.
        var backupDir = Path.Combine(dir, optimizer);
        Backend.SetSeed(999); // a different global state: the backup must restore it
        using (var first = Net(() => Make(optimizer)))
        {
            first.SetWeights(initial);
            Backend.SetSeed(321); // the global generator (dropout) starts where the reference's did
            var crash = new LambdaCallback { OnEpochBeginAction = (e, _) => { if (e == interruptAfter) throw new Interrupted(); } };
            Assert.Throws<Interrupted>(() => first.Fit(x, y, batchSize: 8, epochs: epochs, verbose: 0, seed: 5, shuffle: true,
                callbacks: [new BackupAndRestore(backupDir), crash]));
        }
        Assert.True(File.Exists(Path.Combine(backupDir, "checkpoint.safetensors")));

        Backend.SetSeed(4242); // the resumed process starts from an unrelated RNG state
        using var resumed = Net(() => Make(optimizer)); // fresh random weights: all state comes from the backup
        var backup = new BackupAndRestore(backupDir);
        int epochsRun = 0;
        var count = new LambdaCallback { OnEpochBeginAction = (_, _) => epochsRun++ };
        resumed.Fit(x, y, batchSize: 8, epochs: epochs, verbose: 0, seed: 5, shuffle: true, callbacks: [backup, count]);
        Assert.Equal(interruptAfter, backup.ResumedFromEpoch);
        Assert.Equal(epochs - interruptAfter, epochsRun);
        var actual = Weights(resumed);
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i]); // exact float equality
        Assert.False(File.Exists(Path.Combine(backupDir, "checkpoint.safetensors")), "a finished run deletes its backup (Keras' default)");
    }

    // A run shaped so that ReduceLROnPlateau and EarlyStopping both act: thresholds the loss often misses.
    sealed record Run(Sequential Model, EarlyStopping Stop, ReduceLROnPlateau Reduce, ModelCheckpoint Best, History History);

    Run FitWithStatefulCallbacks(Tensor x, Tensor y, Tensor[] initial, string name, Callback[] extra)
    {
        var model = Net(() => new SGD(0.05, momentum: 0.9));
        model.SetWeights(initial);
        Backend.SetSeed(321); // the global generator (dropout) starts at the same place in every run
        var stop = new EarlyStopping(monitor: "loss", minDelta: 0.03, patience: 3, restoreBestWeights: true);
        var reduce = new ReduceLROnPlateau(monitor: "loss", factor: 0.5, patience: 1, minDelta: 0.02, cooldown: 1);
        var best = new ModelCheckpoint(Path.Combine(dir, name, "best-{epoch:02d}.safetensors"), monitor: "loss", saveBestOnly: true, saveWeightsOnly: true);
        var history = model.Fit(x, y, batchSize: 8, epochs: 40, verbose: 0, seed: 5, callbacks: [.. extra, stop, reduce, best]);
        return new Run(model, stop, reduce, best, history);
    }

    [Fact]
    public void ResumedRunsWithEarlyStoppingAndReduceLROnPlateauReduceAndStopAtTheSameEpochsAsAnUninterruptedOne()
    {
        var (x, y) = Data();
        Backend.SetSeed(123);
        Tensor[] initial;
        using (var init = Net(() => new SGD(0.05))) initial = init.GetWeights();

        var reference = FitWithStatefulCallbacks(x, y, initial, "reference", []);
        int stopped = reference.Stop.StoppedEpoch;
        var lrs = reference.History["lr"];
        // The scenario exercises what the backup must carry: the rate was reduced and training stopped early.
        Assert.InRange(stopped, 4, 38);
        Assert.True(lrs.Distinct().Count() >= 3, $"expected at least two reductions; lr per epoch: {string.Join(", ", lrs)}");
        output.WriteLine($"stopped after epoch {stopped + 1}; lr per epoch: {string.Join(", ", lrs)}; best saved: {string.Join(", ", reference.Best.Saved.Select(p => Path.GetFileName(p)))}");
        var expected = Weights(reference.Model);
        var expectedSaves = reference.Best.Saved.Select(p => Path.GetFileName(p)).ToArray();

        // Interrupt where the callbacks' counters matter: right after the first reduction (cooldown running), one
        // epoch before the stop (patience nearly used up), and after the early stop itself (between the final backup
        // and the end of Fit). Each resume must end exactly where the reference did.
        int firstReduction = Enumerable.Range(1, lrs.Count - 1).First(i => lrs[i] != lrs[i - 1]);
        foreach (int done in new[] { firstReduction, stopped, stopped + 1 }.Distinct())
        {
            var name = $"after{done}";
            var backupDir = Path.Combine(dir, name, "backup");
            int crashAt = done;
            var crash = new LambdaCallback
            {
                OnEpochBeginAction = (e, _) => { if (e == crashAt) throw new Interrupted(); },
                OnTrainEndAction = _ => throw new Interrupted(), // first in the list: the backup is not deleted
            };
            Backend.SetSeed(999);
            Assert.Throws<Interrupted>(() => FitWithStatefulCallbacks(x, y, initial, name, [crash, new BackupAndRestore(backupDir)]));

            Backend.SetSeed(4242); // the resumed process starts from an unrelated RNG state and fresh callbacks
            var backup = new BackupAndRestore(backupDir);
            var resumed = FitWithStatefulCallbacks(x, y, initial, name, [backup]);
            Assert.Equal(done, backup.ResumedFromEpoch);
            Assert.Equal(stopped, resumed.Stop.StoppedEpoch);
            Assert.Equal(reference.Stop.BestEpoch, resumed.Stop.BestEpoch);
            Assert.Equal(reference.Stop.Best, resumed.Stop.Best);
            Assert.Equal(reference.Model.Optimizer!.LearningRate, resumed.Model.Optimizer!.LearningRate);
            Assert.Equal(lrs.Skip(done), resumed.History.Values.GetValueOrDefault("lr") ?? []);
            Assert.Equal(reference.History["loss"].Skip(done), resumed.History.Values.GetValueOrDefault("loss") ?? []);
            // ModelCheckpoint(saveBestOnly) kept its best value: the resumed run saves exactly the reference's later saves.
            Assert.Equal(expectedSaves.Where(f => int.Parse(f[5..7], System.Globalization.CultureInfo.InvariantCulture) > done),
                resumed.Best.Saved.Select(p => Path.GetFileName(p)));
            var actual = Weights(resumed.Model);
            for (int i = 0; i < expected.Length; i++) Assert.Equal(expected[i], actual[i]); // restored best weights, exactly
            resumed.Model.Dispose();
        }
        reference.Model.Dispose();
    }

    sealed class StateRecorder(string key, float marker) : Callback, IStatefulCallback
    {
        readonly Tensor[] list = [tensor(new[] { marker, 1f }), tensor(new[] { (long)marker })];

        public string StateKey => key;

        public Dictionary<string, double>? LoadedValues { get; private set; }

        public (float[] Floats, long[] Longs)? LoadedTensors { get; private set; }

        public void SaveState(CallbackState state)
        {
            state.Values["marker"] = marker;
            state.Values["inf"] = double.PositiveInfinity;
            state.Values["ninf"] = double.NegativeInfinity;
            state.Values["nan"] = double.NaN;
            state.Values["tiny"] = double.Epsilon;
            state.Values["third"] = 1.0 / 3;
            state.Tensors["list"] = list;
        }

        public void LoadState(CallbackState state)
        {
            LoadedValues = new Dictionary<string, double>(state.Values);
            var l = state.Tensors["list"];
            Assert.Equal(2, l.Count);
            LoadedTensors = (l[0].data<float>().ToArray(), l[1].data<long>().ToArray());
        }
    }

    [Fact]
    public void CallbackStatesRoundTripExactlyAndAreMatchedByKeyThenOrder()
    {
        var (x, y) = Data();
        var backupDir = Path.Combine(dir, "states");
        StateRecorder[] Recorders() => [new("A", 1), new("A", 2), new("A/B", 3)];
        using (var m = Net(() => new SGD(0.01)))
        {
            var crash = new LambdaCallback { OnEpochBeginAction = (e, _) => { if (e == 1) throw new Interrupted(); } };
            Assert.Throws<Interrupted>(() => m.Fit(x, y, epochs: 3, verbose: 0, callbacks: [crash, new BackupAndRestore(backupDir), .. Recorders()]));
        }
        using var resumedModel = Net(() => new SGD(0.01));
        var recorders = Recorders();
        var fresh = new StateRecorder("C", 4); // not in the backup: starts fresh, LoadState is not called
        resumedModel.Fit(x, y, epochs: 1, verbose: 0, callbacks: [new BackupAndRestore(backupDir), .. recorders, fresh]);
        Assert.Null(fresh.LoadedValues);
        foreach (var r in recorders)
        {
            var v = r.LoadedValues!;
            Assert.Equal(double.PositiveInfinity, v["inf"]);
            Assert.Equal(double.NegativeInfinity, v["ninf"]);
            Assert.True(double.IsNaN(v["nan"]));
            Assert.Equal(double.Epsilon, v["tiny"]);
            Assert.Equal(1.0 / 3, v["third"]);
            Assert.Equal(6, v.Count);
        }
        // Same key: told apart by order; "A/B" does not pick up entries of "A" nor the reverse.
        Assert.Equal([1.0, 2.0, 3.0], recorders.Select(r => r.LoadedValues!["marker"]));
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal([i + 1f, 1f], recorders[i].LoadedTensors!.Value.Floats);
            Assert.Equal([i + 1L], recorders[i].LoadedTensors!.Value.Longs);
        }
    }

    [Fact]
    public void ABackupFromAnotherOptimizerOrArchitectureIsRejectedClearly()
    {
        var (x, y) = Data();
        var backupDir = Path.Combine(dir, "mismatch");
        using (var m = Net(() => new SGD(0.01, momentum: 0.9)))
        {
            var stop = new LambdaCallback { OnEpochBeginAction = (e, _) => { if (e == 1) throw new Interrupted(); } };
            Assert.Throws<Interrupted>(() => m.Fit(x, y, epochs: 3, verbose: 0, callbacks: [new BackupAndRestore(backupDir), stop]));
        }
        using var adam = Net(() => new Adam());
        var e = Assert.Throws<CheckpointException>(() => adam.Fit(x, y, epochs: 3, verbose: 0, callbacks: [new BackupAndRestore(backupDir)]));
        Assert.Contains("SGD", e.Message);
    }

    [Fact]
    public void ModelCheckpointWithoutSaveWeightsOnlySavesALoadableWholeModel()
    {
        var (x, y) = Data();
        using var m = Net(() => new SGD(0.01));
        var path = Path.Combine(dir, "best.safetensors");
        m.Fit(x, y, epochs: 2, verbose: 0, callbacks: [new ModelCheckpoint(path, monitor: "loss")]);
        using var loaded = Model.Load(path);
        Assert.Equal(m.Summary(), loaded.Summary());
        var a = Weights(m);
        var b = Weights(loaded);
        for (int i = 0; i < a.Length; i++) Assert.Equal(a[i], b[i]);
    }
}
