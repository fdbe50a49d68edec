using ConvKit.Callbacks;
using ConvKit.Models;
using ConvKit.Tests.Training;
using ConvKit.Training;

namespace ConvKit.Tests.Callbacks;

// Issue 13: Keras-style numbers in messages (inf, -inf, 1e-05) and callbacks that print through a writer, not Console.
public class KerasMessageTests
{
    [Theory]
    [InlineData(1e-5, "1e-05")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(0.001, "0.001")]
    [InlineData(1.0, "1.0")]
    [InlineData(0.1, "0.1")]
    [InlineData(2.5e-7, "2.5e-07")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1234.5, "1234.5")]
    [InlineData(-0.02, "-0.02")]
    [InlineData(0.0, "0.0")]
    [InlineData(double.NegativeInfinity, "-inf")]
    [InlineData(double.NaN, "nan")]
    public void ReprIsPythonsFloatRepr(double value, string expected) => Assert.Equal(expected, KerasFormat.Repr(value));

    [Fact]
    public void FixedAndScientificArePythonsFormats()
    {
        Assert.Equal("inf", KerasFormat.Fixed(double.PositiveInfinity));
        Assert.Equal("-inf", KerasFormat.Fixed(double.NegativeInfinity));
        Assert.Equal("0.53210", KerasFormat.Fixed(0.5321));
        Assert.Equal("1.2346e-04", KerasFormat.Scientific(0.000123456));
        Assert.Equal("nan", ProgbarLogger.FormatValue(double.NaN)); // was "NaN"
        Assert.Equal("inf", ProgbarLogger.FormatValue(double.PositiveInfinity)); // was "Infinity"/"∞"
    }

    static (Sequential, TorchSharp.torch.Tensor, TorchSharp.torch.Tensor) Setup()
    {
        var (x, y) = TestData.Separable(32);
        var model = TestData.Mlp();
        model.Compile(optimizer: new SGD(learningRate: 1e-4), loss: "sparse_categorical_crossentropy");
        return (model, x, y);
    }

    [Fact]
    public void CallbacksPrintKerasNumbersThroughTheirOutput()
    {
        var (model, x, y) = Setup();
        var dir = Directory.CreateTempSubdirectory("convkit-msg-").FullName;
        try
        {
            var output = new StringWriter();
            var script = new LambdaCallback { OnEpochEndAction = (epoch, logs) => logs["val_loss"] = new[] { 0.5321, 0.9, 0.9, 0.9 }[epoch] };
            var ckpt = new ModelCheckpoint(Path.Combine(dir, "w.safetensors"), verbose: 1, saveBestOnly: true, saveWeightsOnly: true) { Output = output };
            var plateau = new ReduceLROnPlateau(factor: 0.1, patience: 1, verbose: 1) { Output = output };
            var stop = new EarlyStopping(patience: 2, verbose: 1) { Output = output };
            model.Fit(x, y, batchSize: 8, epochs: 4, verbose: 0, callbacks: [script, ckpt, plateau, stop]);
            var text = output.ToString();
            Assert.Contains("Epoch 1: val_loss improved from inf to 0.53210, saving model to", text);
            Assert.Contains("Epoch 2: val_loss did not improve from 0.53210", text);
            Assert.Contains("ReduceLROnPlateau reducing learning rate to 1e-05.", text);
            Assert.Contains("Epoch 3: early stopping", text);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
