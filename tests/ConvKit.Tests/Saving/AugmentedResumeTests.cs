using ConvKit.Callbacks;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Tests.Training;
using ConvKit.Training;
using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

// Resuming restores torch's global generator: run outside the parallel collections.
[Collection(nameof(GlobalRandomCollection))]
public class AugmentedResumeTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-augresume-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    sealed class Interrupted : Exception;

    static Sequential Net()
    {
        using var _ = Backend.NameScope();
        Backend.SetSeed(77);
        var model = new Sequential([
            new Input(new Shape(8, 8, 1)),
            new RandomFlip(FlipMode.Horizontal, seed: 3),
            new RandomTranslation(0.25, 0.25, seed: 4),
            new RandomZoom(0.2, seed: 5),
            new Conv2D(4, 3, activation: "relu"),
            new Flatten(),
            new Dense(3, activation: "softmax"),
        ]);
        model.Compile(new Adam(0.01), "sparse_categorical_crossentropy");
        return model;
    }

    [Fact]
    public void ARunWithRandomAugmentationLayersResumesBitIdentically()
    {
        const int epochs = 4, interruptAfter = 2;
        using var g = new Generator(11);
        using var x = rand([32, 8, 8, 1], generator: g);
        using var y = randint(0, 3, [32], generator: g);

        Tensor[] expected;
        using (var reference = Net())
        {
            reference.Fit(x, y, batchSize: 8, epochs: epochs, verbose: 0, seed: 5);
            expected = reference.GetWeights();
        }

        var backupDir = Path.Combine(dir, "backup");
        using (var first = Net())
        {
            var crash = new LambdaCallback { OnEpochBeginAction = (e, _) => { if (e == interruptAfter) throw new Interrupted(); } };
            Assert.Throws<Interrupted>(() => first.Fit(x, y, batchSize: 8, epochs: epochs, verbose: 0, seed: 5,
                callbacks: [new BackupAndRestore(backupDir), crash]));
        }
        // The resumed model's augmentation generators start again from their seeds; the backup must put them where
        // the interrupted run left them, or epochs 3-4 see other flips, shifts and zooms.
        using var resumed = Net();
        var backup = new BackupAndRestore(backupDir);
        resumed.Fit(x, y, batchSize: 8, epochs: epochs, verbose: 0, seed: 5, callbacks: [backup]);
        Assert.Equal(interruptAfter, backup.ResumedFromEpoch);
        var actual = resumed.GetWeights();
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.Equal(expected[i].data<float>().ToArray(), actual[i].data<float>().ToArray());
        foreach (var t in expected.Concat(actual)) t.Dispose();
    }
}
