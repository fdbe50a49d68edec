// Child process for CheckpointStoreKillTests ("<checkpoint path>"), FitKillTests ("fit <dir>") and AtomicFileCleanupTests
// ("stall <path>"), SIGKILLed by them, and OpenMpTuningTests ("omp-tuning").
// CheckpointStore mode saves checkpoints in a loop.
// Each checkpoint holds a step counter and a weight vector filled with that step, so a torn or mixed file is
// detectable; it resumes from the newest valid checkpoint so the parent can check steps never go backwards.
using ConvKit;
using ConvKit.Callbacks;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Saving;
using ConvKit.Training;
using static TorchSharp.torch;

if (args[0] == "fit")
{
    FitUntilKilled(args[1]);
    return;
}
if (args[0] == "omp-tuning")
{
    // "omp-tuning": what ConvKit decided about libgomp in a process started with the parent's environment variables.
    ConvKit.Native.TorchNative.Initialize();
    using (var t = ones(64, 64)) using (var product = t.matmul(t)) { } // libtorch and its libgomp load here
    bool gompLoaded = File.ReadAllText("/proc/self/maps").Contains("/libgomp", StringComparison.Ordinal);
    string? spin = System.Runtime.InteropServices.Marshal.PtrToStringAnsi(getenv("GOMP_SPINCOUNT"));
    Console.Out.WriteLine($"OpenMpTuning={ConvKit.Native.TorchNative.OpenMpTuning ?? "null"}; C environment GOMP_SPINCOUNT={spin ?? "null"}"
        + (gompLoaded ? "" : "; libgomp not loaded"));
    return;
}
if (args[0] == "stall")
{
    // "stall <path>": an atomic save of <path> that stops half-way (the temp file holds part of the content) until
    // the parent kills it: the leftover a kill during a save leaves.
    AtomicFile.Write(args[1], s =>
    {
        s.Write(new byte[100_000]);
        s.Flush();
        Console.Out.WriteLine("writing");
        Console.Out.Flush();
        Thread.Sleep(Timeout.Infinite);
    });
    return;
}

var store = new CheckpointStore(args[0]);
long step = 0;
if (File.Exists(store.LatestPath) || File.Exists(store.PreviousPath))
{
    var loaded = store.LoadLatestValid();
    step = loaded.Tensors["step"].item<long>() + 1;
    foreach (var t in loaded.Tensors.Values) t.Dispose();
}
for (; ; step++)
{
    using var s = tensor(new[] { step });
    using var w = full(new long[] { 16_384 }, (float)step);
    store.Save(new Dictionary<string, Tensor> { ["step"] = s, ["w"] = w },
        new Dictionary<string, string> { ["step"] = step.ToString(System.Globalization.CultureInfo.InvariantCulture) });
    Console.Out.WriteLine($"saved {step}");
    Console.Out.Flush();
}

// "fit <dir>": trains a small CNN for many short epochs with BackupAndRestore and ModelCheckpoint in <dir>, resuming from
// the backup if there is one; prints "epoch N saving" before epoch N's checkpoints are written and "epoch N saved" once
// both are on disk, so the parent can aim its kill inside a save.
static void FitUntilKilled(string dir)
{
    // One thread: the test runs beside others, and libtorch's threads waiting for a core made epochs take 20 ms to 1 s.
    set_num_threads(1);
    using var g = new Generator(3);
    var x = randn([64, 8, 8, 1], generator: g);
    var y = randint(0, 3, [64], generator: g);
    Backend.SetSeed(1);
    var model = new Sequential([
        new Conv2D(4, 3, inputShape: (8, 8, 1), activation: "relu"),
        new Flatten(),
        new Dropout(0.2),
        new Dense(3, activation: "softmax"),
    ]);
    model.Compile(new Adam(0.01), "sparse_categorical_crossentropy");
    var backup = new BackupAndRestore(Path.Combine(dir, "backup"), deleteCheckpoint: false);
    // "saving" comes before ModelCheckpoint writes epoch N (callbacks run in list order) and BackupAndRestore, which
    // writes once all epoch-end callbacks have run; so "saved" is printed when the next epoch begins.
    // "resumed" follows BackupAndRestore's restore. Console.Out flushes every line.
    var saving = new LambdaCallback { OnEpochEndAction = (e, _) => Console.Out.WriteLine($"epoch {e + 1} saving") };
    int resumed = 0;
    var report = new LambdaCallback
    {
        OnTrainBeginAction = _ => Console.Out.WriteLine($"resumed {resumed = backup.ResumedFromEpoch ?? 0}"),
        OnEpochBeginAction = (e, _) => { if (e > resumed) Console.Out.WriteLine($"epoch {e} saved"); },
    };
    model.Fit(x, y, batchSize: 16, epochs: 1_000_000, verbose: 0, seed: 9,
        callbacks: [saving, backup, new ModelCheckpoint(Path.Combine(dir, "model.safetensors"), monitor: "loss"), report]);
}

[System.Runtime.InteropServices.DllImport("libc", EntryPoint = "getenv")]
static extern IntPtr getenv(string name);
