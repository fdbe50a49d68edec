// Child process for CheckpointStoreKillTests: saves checkpoints in a loop until it is SIGKILLed.
// Each checkpoint holds a step counter and a weight vector filled with that step, so a torn or mixed file is
// detectable; it resumes from the newest valid checkpoint so the parent can check steps never go backwards.
using ConvKit.Saving;
using static TorchSharp.torch;

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
