using ConvKit.Training;
using static TorchSharp.torch;

namespace ConvKit.Tests.Training;

public class MetricTests
{
    [Fact]
    public void AccuraciesAccumulateAcrossBatches()
    {
        var sparse = new SparseCategoricalAccuracy();
        var p1 = tensor(new float[] { 0.9f, 0.1f, 0.2f, 0.8f }).reshape(2, 2);
        sparse.UpdateState(tensor(new long[] { 0, 0 }), p1);       // 1 of 2
        sparse.UpdateState(tensor(new long[] { 1 }), p1.narrow(0, 1, 1)); // 1 of 1
        Assert.Equal(2.0 / 3, sparse.Result(), 6);
        sparse.ResetState();
        sparse.UpdateState(tensor(new long[] { 1, 1 }), p1);
        Assert.Equal(0.5, sparse.Result(), 6);

        var cat = new CategoricalAccuracy();
        cat.UpdateState(tensor(new float[] { 1, 0, 1, 0 }).reshape(2, 2), p1);
        Assert.Equal(0.5, cat.Result(), 6);
    }

    [Fact]
    public void TopKCountsTheTrueClassAmongTheKHighest()
    {
        var p = tensor(new float[] { 0.1f, 0.5f, 0.3f, 0.05f, 0.05f, 0.6f, 0.1f, 0.2f, 0.1f, 0.0f }).reshape(2, 5);
        var y = tensor(new long[] { 2, 3 }); // rank 2 in row 0 (hit for k=2), rank 3/4 in row 1 (miss for k=2)
        var m = new SparseTopKCategoricalAccuracy(k: 2);
        m.UpdateState(y, p);
        Assert.Equal(0.5, m.Result(), 6);
        var full = new TopKCategoricalAccuracy(); // k = 5 covers every class
        full.UpdateState(TestData.OneHot(y, 5), p);
        Assert.Equal(1.0, full.Result(), 6);
    }

    [Fact]
    public void SampleWeightsWeightTheMean()
    {
        var m = new SparseCategoricalAccuracy();
        var p = tensor(new float[] { 0.9f, 0.1f, 0.9f, 0.1f }).reshape(2, 2);
        m.UpdateState(tensor(new long[] { 0, 1 }), p, tensor(new float[] { 3f, 1f }));
        Assert.Equal(0.75, m.Result(), 6);
    }

    [Fact]
    public void AccuracyIsChosenFromLossAndTargetsAsKeras()
    {
        var (x, y) = TestData.Separable(32);
        var sparse = TestData.Mlp();
        sparse.Compile(loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
        var r1 = sparse.Evaluate(x, y, verbose: 0);
        var onehot = TestData.Mlp();
        onehot.Compile(loss: "categorical_crossentropy", metrics: ["accuracy"]);
        var r2 = onehot.Evaluate(x, TestData.OneHot(y, 3), verbose: 0);
        Assert.InRange(r1["accuracy"], 0, 1);
        Assert.InRange(r2["accuracy"], 0, 1);
        // Both resolve to a real accuracy: the same model gives the same value on either target form.
        onehot.SetWeights(sparse.GetWeights());
        Assert.Equal(r1["accuracy"], onehot.Evaluate(x, TestData.OneHot(y, 3), verbose: 0)["accuracy"], 6);
    }
}
