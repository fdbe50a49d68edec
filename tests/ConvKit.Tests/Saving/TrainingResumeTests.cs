using ConvKit.Callbacks;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Saving;
using ConvKit.Tests.Training;
using ConvKit.Training;
using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

// Resuming restores torch's global generator (dropout): run outside the parallel collections.
[Collection(nameof(GlobalRandomCollection))]
public class TrainingResumeTests : IDisposable
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
            var crash = new LambdaCallback { OnEpochEndAction = (e, _) => { if (e + 1 == interruptAfter) throw new Interrupted(); } };
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

    [Fact]
    public void ABackupFromAnotherOptimizerOrArchitectureIsRejectedClearly()
    {
        var (x, y) = Data();
        var backupDir = Path.Combine(dir, "mismatch");
        using (var m = Net(() => new SGD(0.01, momentum: 0.9)))
        {
            var stop = new LambdaCallback { OnEpochEndAction = (_, _) => throw new Interrupted() };
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
