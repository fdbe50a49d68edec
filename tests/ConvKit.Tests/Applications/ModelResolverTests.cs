using ConvKit.Applications;
using ConvKit.Saving;
using ConvKit.Tests.Cli;

namespace ConvKit.Tests.Applications;

/// <summary>ModelResolver in code: what each name resolves to, and a named error for everything else.</summary>
[Collection(nameof(ConvKit.Tests.Training.GlobalRandomCollection))]
public class ModelResolverTests(TrainedRun run) : IClassFixture<TrainedRun>
{
    [Fact]
    public void EachFormResolvesToTheSameTrainedModel()
    {
        using var a = ModelResolver.Resolve(run.Run);
        using var b = ModelResolver.Resolve(run.ModelFolder);
        using var c = ModelResolver.Resolve(run.ModelFile);
        using var d = ModelResolver.Resolve("lenet5", run.ModelFile);
        Assert.Equal([ModelSourceKind.RunFolder, ModelSourceKind.ModelFolder, ModelSourceKind.ModelFile, ModelSourceKind.Zoo], new[] { a.Kind, b.Kind, c.Kind, d.Kind });
        foreach (var r in new[] { b, c, d })
        {
            Assert.Equal(a.ClassNames, r.ClassNames);
            foreach (var (x, y) in a.Model.Weights.Zip(r.Model.Weights))
                Assert.True(x.Value.eq(y.Value).all().item<bool>());
        }
        Assert.Equal(run.ModelFile, c.ModelFilePath);
        using var zoo = ModelResolver.Resolve("lenet5");
        Assert.Null(zoo.ClassNames);
        Assert.Null(zoo.Dataset);
    }

    [Fact]
    public void ResolvingFromManyThreadsGivesTheSameModelsAsOneThread()
    {
        string[][] forms = [[run.Run, ""], [run.ModelFile, ""], ["lenet5", run.ModelFile], ["lenet5", run.Run]];
        float[] Weights(ResolvedModel r) => r.Model.Weights.SelectMany(w => w.Value.data<float>().ToArray()).ToArray();
        var expected = forms.Select(f =>
        {
            using var r = ModelResolver.Resolve(f[0], f[1] == "" ? null : f[1]);
            return (Weights(r), string.Join(",", r.Model.Layers.Select(l => l.Name)));
        }).ToArray();
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        var threads = Enumerable.Range(0, 8).Select(t => new Thread(() =>
        {
            try
            {
                for (int i = 0; i < 12; i++)
                {
                    int k = (t + i) % forms.Length;
                    using var r = ModelResolver.Resolve(forms[k][0], forms[k][1] == "" ? null : forms[k][1]);
                    if (!Weights(r).SequenceEqual(expected[k].Item1)) failures.Add($"thread {t}, form {k}: weights differ");
                    if (string.Join(",", r.Model.Layers.Select(l => l.Name)) != expected[k].Item2) failures.Add($"thread {t}, form {k}: layer names differ");
                }
            }
            catch (Exception e)
            {
                failures.Add($"thread {t}: {e.GetType().Name}: {e.Message}");
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Empty(failures);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void ReleaseHandsTheModelOverAndTheResolvedModelNoLongerServesIt()
    {
        var resolved = ModelResolver.Resolve(run.Run);
        using var model = resolved.Release();
        resolved.Dispose(); // does not dispose the released model
        Assert.Equal(10, model.ModelOutputShape[0]);
        var e = Assert.Throws<ObjectDisposedException>(() => resolved.Model);
        Assert.Contains("released or disposed", e.Message);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("", null, "no model named")]
    [InlineData("   ", null, "no model named")]
    [InlineData("/nonexistent/run", null, "'/nonexistent/run' does not exist")]
    [InlineData("./nope", null, "'./nope' does not exist")]
    [InlineData("runs/x/model.safetensors", null, "'runs/x/model.safetensors' does not exist")]
    [InlineData("nosuchnet", null, "unknown model 'nosuchnet'")]
    [InlineData("{data}", null, "is a folder without a model")]
    [InlineData("{png}", null, "is a PNG image, not a ConvKit model file")]
    [InlineData("{run}", "imagenet", "weights 'imagenet' apply only to zoo names")]
    [InlineData("{run}", "/nonexistent/w.safetensors", "weights file '/nonexistent/w.safetensors' does not exist")]
    [InlineData("{run}", "{data}", "is a folder without a model")]
    [InlineData("resnet20", "{run}", "the weights do not fit model 'resnet20'")]
    public void BadNamesAndWeightsGiveNamedErrors(string name, string? weights, string expected)
    {
        string Fill(string s) => s.Replace("{run}", run.Run).Replace("{data}", run.Data).Replace("{png}", run.Image);
        var e = Assert.ThrowsAny<ConvKitException>(() => ModelResolver.Resolve(Fill(name), weights is null ? null : Fill(weights)));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void ZooOptionsForATrainedModelAreRefused()
    {
        var e = Assert.Throws<ConvKitException>(() => ModelResolver.Resolve(run.Run, null, new ModelOptions { Classes = 5 }));
        Assert.Contains("architecture is fixed", e.Message);
    }
}
