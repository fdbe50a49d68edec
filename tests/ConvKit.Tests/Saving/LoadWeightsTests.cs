using ConvKit.Applications;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Saving;
using static TorchSharp.torch;

namespace ConvKit.Tests.Saving;

/// <summary>The one weights entry point, Model.LoadWeights(path, format, options), over every reader, and its one report.</summary>
public class LoadWeightsTests : IDisposable
{
    readonly string dir = Directory.CreateTempSubdirectory("convkit-loadweights-").FullName;

    public void Dispose() => Directory.Delete(dir, recursive: true);

    string PathOf(string name) => Path.Combine(dir, name);

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    static Model Net(int classes, string head = "predictions", bool extra = false)
    {
        var layers = new List<Layer>
        {
            new Conv2D(4, 3, inputShape: new Shape(8, 8, 1), name: "conv"),
            new BatchNormalization(name: "bn"),
            new GlobalAveragePooling2D(name: "gap"),
        };
        if (extra) layers.Add(new Dense(6, name: "extra"));
        layers.Add(new Dense(classes, name: head));
        return new Sequential(layers, name: "net");
    }

    static Tensor[] Snapshot(Model m) => m.GetWeights().Select(t => t.clone()).ToArray();

    [Fact]
    public void TransferOptionsLoadTheBackboneAndReportTheMismatchedHead()
    {
        using var source = Net(10);
        var path = PathOf("w.safetensors");
        source.SaveWeights(path);
        using var target = Net(3);
        var report = target.LoadWeights(path, options: LoadWeightsOptions.Transfer);
        Assert.Equal(WeightsFormat.Native, report.Format);
        Assert.Equal(["conv/kernel", "conv/bias", "bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance"], report.Loaded);
        Assert.Equal(["predictions/kernel", "predictions/bias"], report.SkippedFor(SkipReason.ShapeMismatch).Select(s => s.Name));
        Assert.Contains("file [10, 4], model [3, 4]", report.Skipped[0].Detail);
        Assert.Equal($"loaded 6 weight tensors from '{path}' (Native); skipped 2 (2 shape mismatch)", report.Summary());
        Assert.True(Same(source.GetLayer("conv").OwnWeights[0].Value, target.GetLayer("conv").OwnWeights[0].Value));
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void StrictLoadingRefusesAMismatchAndChangesNothing()
    {
        using var source = Net(10);
        var path = PathOf("w.safetensors");
        source.SaveWeights(path);
        using var target = Net(3);
        var before = Snapshot(target);
        var e = Assert.Throws<WeightsMismatchException>(() => target.LoadWeights(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("shape mismatch: layer 'predictions' weight 'kernel' expects [3, 4], the file has [10, 4]", e.Message);
        var after = target.GetWeights();
        for (int i = 0; i < before.Length; i++) Assert.True(Same(before[i], after[i]), $"weight {i} changed by a failed load");
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void MissingAndUnexpectedAreErrorsWhenStrictAndReportedOtherwise()
    {
        using var source = Net(3, head: "old_head");
        var path = PathOf("w.safetensors");
        source.SaveWeights(path);
        using var target = Net(3, extra: true);
        var e = Assert.Throws<WeightsMismatchException>(() => target.LoadWeights(path));
        Assert.Contains("missing: layer 'extra' weight 'kernel'", e.Message);
        Assert.Contains("unexpected: 'old_head/kernel' [3, 4]", e.Message);

        var report = target.LoadWeights(path, options: new LoadWeightsOptions { Strict = false });
        Assert.Equal(["extra/kernel", "extra/bias", "predictions/kernel", "predictions/bias"], report.SkippedFor(SkipReason.Missing).Select(s => s.Name));
        Assert.Equal(["old_head/bias", "old_head/kernel"], report.SkippedFor(SkipReason.Unexpected).Select(s => s.Name));
        Assert.Equal(6, report.Loaded.Count);
    }

    [Fact]
    public void SkipLayersAndSkipClassifierAreReportedAsExcluded()
    {
        using var source = Net(3);
        var path = PathOf("w.safetensors");
        source.SaveWeights(path);
        using var target = Net(3);
        var before = target.GetLayer("predictions").OwnWeights[0].Value.clone();
        var report = target.LoadWeights(path, options: new LoadWeightsOptions { SkipClassifier = true, SkipLayers = ["bn"] });
        Assert.Equal(["bn/gamma", "bn/beta", "bn/moving_mean", "bn/moving_variance", "predictions/kernel", "predictions/bias"],
            report.SkippedFor(SkipReason.Excluded).Select(s => s.Name));
        Assert.Equal(["conv/kernel", "conv/bias"], report.Loaded);
        Assert.True(Same(before, target.GetLayer("predictions").OwnWeights[0].Value));
    }

    [Fact]
    public void APreviousRunFolderLoadsItsModelFile()
    {
        using var source = Net(10);
        var run = PathOf("run");
        TrainedModelFolder.Save(Path.Combine(run, TrainedModelFolder.RunModelFolder), source, new TrainedModelInfo("net", "custom", ["a", "b"]));
        using var target = Net(3);
        var report = target.LoadWeights(run, options: LoadWeightsOptions.Transfer);
        Assert.Equal(WeightsFormat.Run, report.Format);
        Assert.Equal(Path.Combine(run, "model", "model.safetensors"), report.Path);
        Assert.Equal(6, report.Loaded.Count);
        Assert.True(Same(source.GetLayer("bn").OwnWeights[2].Value, target.GetLayer("bn").OwnWeights[2].Value));
    }

    [Fact]
    public void KerasH5IsDetectedAndItsMismatchedClassifierSkipped()
    {
        using var model = ModelRegistry.Create("lenet5", new ModelOptions { Classes = 7 });
        using var before = model.GetLayer("dense_2").OwnWeights[0].Value.clone();
        var report = model.LoadWeights(Path.Combine(KerasImportTests.Dir, "lenet5.h5"), options: new LoadWeightsOptions { SkipMismatched = true });
        Assert.Equal(WeightsFormat.KerasH5, report.Format);
        Assert.Equal(8, report.Loaded.Count);
        Assert.Equal(["dense_2/kernel", "dense_2/bias"], report.SkippedFor(SkipReason.ShapeMismatch).Select(s => s.Name));
        Assert.True(Same(before, model.GetLayer("dense_2").OwnWeights[0].Value));
        Assert.Equal(report.Loaded, model.LoadWeights(Path.Combine(KerasImportTests.Dir, "lenet5.h5"), WeightsFormat.KerasH5,
            new LoadWeightsOptions { ByName = false, SkipClassifier = true }).Loaded);
    }

    [Fact]
    public void AStateDictIsDetectedAndLoadedByTorchNames()
    {
        using var target = Net(3);
        var tensors = new Dictionary<string, Tensor>
        {
            ["conv.weight"] = randn(4, 1, 3, 3), ["conv.bias"] = randn(4),
            ["bn.weight"] = rand(4), ["bn.bias"] = randn(4), ["bn.running_mean"] = randn(4), ["bn.running_var"] = rand(4),
            ["bn.num_batches_tracked"] = tensor(5L),
            ["fc.weight"] = randn(1000, 4), ["fc.bias"] = randn(1000),
        };
        var path = PathOf("tv.safetensors");
        SafeTensors.Write(path, tensors);
        var e = Assert.Throws<WeightsMismatchException>(() => target.LoadWeights(path));
        Assert.Contains("predictions.weight", e.Message);
        var report = target.LoadWeights(path, options: LoadWeightsOptions.Transfer);
        Assert.Equal(WeightsFormat.Torchvision, report.Format);
        Assert.Equal(6, report.Loaded.Count);
        Assert.Equal(["predictions/kernel", "predictions/bias"], report.SkippedFor(SkipReason.Missing).Select(s => s.Name));
        Assert.Equal(["fc.bias", "fc.weight"], report.SkippedFor(SkipReason.Unexpected).Select(s => s.Name));
        Assert.True(Same(tensors["bn.running_var"], target.GetLayer("bn").OwnWeights[3].Value));
        foreach (var t in tensors.Values) t.Dispose();
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void BadPathsAndFormatsGiveNamedErrors()
    {
        using var target = Net(3);
        var missing = PathOf("nope.safetensors");
        Assert.Equal($"weights file '{missing}' does not exist.", Assert.Throws<ConvKitException>(() => target.LoadWeights(missing)).Message);

        var empty = PathOf("empty-run");
        Directory.CreateDirectory(empty);
        Assert.Contains("is a folder without a ConvKit model", Assert.Throws<ConvKitException>(() => target.LoadWeights(empty)).Message);

        var png = PathOf("x.png");
        File.WriteAllBytes(png, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0]);
        var wrong = Assert.Throws<WrongFileFormatException>(() => target.LoadWeights(png));
        Assert.Contains("is a PNG image", wrong.Message);

        var pth = PathOf("x.pth");
        File.WriteAllBytes(pth, [0x50, 0x4b, 0x03, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        Assert.Contains("convert it to safetensors", Assert.Throws<WrongFileFormatException>(() => target.LoadWeights(pth)).Message);

        var native = PathOf("w.safetensors");
        target.SaveWeights(native);
        Assert.Contains("Keras HDF5", Assert.Throws<WrongFileFormatException>(() => target.LoadWeights(native, WeightsFormat.KerasH5)).Message);
        Assert.Contains("ByName = false", Assert.Throws<ConvKitException>(() => target.LoadWeights(native, options: new LoadWeightsOptions { ByName = false })).Message);
        Assert.Contains("is a file, not a ConvKit run folder", Assert.Throws<ConvKitException>(() => target.LoadWeights(native, WeightsFormat.Run)).Message);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void NonFiniteWeightsAreRefusedEvenWithTransferOptions()
    {
        using var source = Net(3);
        using (no_grad()) source.GetLayer("conv").OwnWeights[0].Value[0, 0, 0, 0] = tensor(float.NaN);
        var path = PathOf("nan.safetensors");
        source.SaveWeights(path);
        using var target = Net(3);
        var before = Snapshot(target);
        var e = Assert.Throws<WeightsMismatchException>(() => target.LoadWeights(path, options: LoadWeightsOptions.Transfer));
        Assert.Contains("non-finite: layer 'conv' weight 'kernel' holds 1 NaN/Inf value", e.Message);
        var after = target.GetWeights();
        for (int i = 0; i < before.Length; i++) Assert.True(Same(before[i], after[i]));
    }
}
