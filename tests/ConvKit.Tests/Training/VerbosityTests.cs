using ConvKit.Callbacks;
using ConvKit.Training;

namespace ConvKit.Tests.Training;

// Issue 13: Keras' verbose 0/1/2/"auto" as a closed type on Fit/Evaluate/Predict; ints and "auto" still compile.
public class VerbosityTests
{
    sealed class Recorder : Callback
    {
        public List<int> Levels { get; } = [];
        public override void OnTrainBegin(Logs logs) => Levels.Add(Params!.Verbose);
        public override void OnTestBegin(Logs logs) => Levels.Add(Params!.Verbose);
        public override void OnPredictBegin(Logs logs) => Levels.Add(Params!.Verbose);
    }

    [Fact]
    public void KerasIntsAndAutoConvertToTheClosedSet()
    {
        Assert.Equal(Verbosity.Silent, (Verbosity)0);
        Assert.Equal(Verbosity.ProgressBar, (Verbosity)1);
        Assert.Equal(Verbosity.OneLinePerEpoch, (Verbosity)2);
        Assert.Equal(Verbosity.Auto, (Verbosity)"auto");
        Assert.Equal(Verbosity.Auto, (Verbosity)"AUTO");
        Assert.Equal(Verbosity.ProgressBar, (Verbosity)"1");
        Assert.Equal(Verbosity.Auto, default(Verbosity));
        Assert.True(Verbosity.Auto.IsAuto);
        Assert.Equal(["auto", "0", "1", "2"], new[] { Verbosity.Auto, Verbosity.Silent, Verbosity.ProgressBar, Verbosity.OneLinePerEpoch }.Select(v => v.ToString()));
        Assert.Equal(1, Verbosity.Auto.Level(auto: 1));
        Assert.Equal(2, Verbosity.OneLinePerEpoch.Level(auto: 1));
        Assert.NotEqual(Verbosity.Silent, Verbosity.Auto);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData(3, "received 3")]
    [InlineData(-1, "received -1")]
    [InlineData(int.MaxValue, "received 2147483647")]
    public void OtherIntsAreNamedErrors(int verbose, string expected)
    {
        var e = Assert.Throws<InvalidOptionException>(() => (Verbosity)verbose);
        Assert.Equal("verbose", e.Option);
        Assert.Contains("verbose must be 0, 1, 2 or \"auto\"", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("loud", "received \"loud\"")]
    [InlineData("", "received \"\"")]
    [InlineData(null, "received null")]
    [InlineData("3", "received \"3\"")]
    public void OtherStringsAreNamedErrors(string? verbose, string expected)
    {
        var e = Assert.Throws<InvalidOptionException>(() => Verbosity.Parse(verbose!));
        Assert.Equal("verbose", e.Option);
        Assert.Contains(expected, e.Message);
    }

    /// <summary>Fit, Evaluate and Predict take the enum, Keras' ints and "auto"; Auto is a bar in Fit/Evaluate and
    /// silent in Predict; callbacks see Keras' level in Params.Verbose.</summary>
    [Fact]
    public void FitEvaluateAndPredictResolveTheLevel()
    {
        var (x, y) = TestData.Separable(16);
        using var model = TestData.Mlp();
        model.Compile(optimizer: new SGD(learningRate: 1e-3), loss: "sparse_categorical_crossentropy");
        var recorder = new Recorder();
        var bar = new ProgbarLogger(new StringWriter(), interactive: false); // the progress bar prints here, not to stdout
        model.Fit(x, y, batchSize: 8, epochs: 1, verbose: Verbosity.Silent, callbacks: [recorder]);
        model.Fit(x, y, batchSize: 8, epochs: 1, verbose: 2, callbacks: [recorder, bar]);
        model.Fit(x, y, batchSize: 8, epochs: 1, verbose: "auto", callbacks: [recorder, bar]);
        model.Fit(x, y, batchSize: 8, epochs: 1, callbacks: [recorder, bar]);
        model.Evaluate(x, y, verbose: Verbosity.OneLinePerEpoch, callbacks: [recorder, bar]);
        model.Evaluate(x, y, callbacks: [recorder, bar]);
        using (model.Predict(x, callbacks: [recorder])) { }
        using (model.Predict(x, verbose: Verbosity.ProgressBar, callbacks: [recorder, bar])) { }
        Assert.Equal([0, 2, 1, 1, 2, 1, 0, 1], recorder.Levels);
    }

    [Fact]
    public void OneLinePerEpochPrintsOneLinePerEpoch()
    {
        var (x, y) = TestData.Separable(16);
        using var model = TestData.Mlp();
        model.Compile(optimizer: new SGD(learningRate: 1e-3), loss: "sparse_categorical_crossentropy");
        var output = new StringWriter();
        model.Fit(x, y, batchSize: 4, epochs: 3, verbose: Verbosity.OneLinePerEpoch, callbacks: [new ProgbarLogger(output, interactive: false)]);
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Count(l => l.Contains("loss: ", StringComparison.Ordinal)));
        Assert.DoesNotContain(lines, l => l.Contains("1/4", StringComparison.Ordinal)); // no per-step bar
    }
}
