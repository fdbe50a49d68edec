using ConvKit.Layers;
using TorchSharp;
using Padding = ConvKit.Padding;
using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Tests.Models;

/// <summary>The seeds' model definitions, written in C#, against the summaries Keras prints for them.</summary>
public class SeedModelTests
{
    [Fact]
    public void Seed001SequentialExampleMatchesKerasSummary()
    {
        // Seed 001: Sequential with Conv2D(32, (5,5), input_shape=(28,28,3)), MaxPool2D, Flatten, Dense(10, softmax).
        // Names as in the seed's printout, so the wrapping of long names is compared too.
        var model = new Sequential(name: "sequential_3");
        model.Add(new Conv2D(32, kernelSize: (5, 5), inputShape: (28, 28, 3), name: "conv2d_12"));
        model.Add(new MaxPool2D(poolSize: (2, 2), name: "max_pooling2d_8"));
        model.Add(new Flatten(name: "flatten_6"));
        model.Add(new Dense(10, activation: "softmax", name: "dense_14"));
        const string expected = """
Model: "sequential_3"
_________________________________________________________________
 Layer (type)                Output Shape              Param #   
=================================================================
 conv2d_12 (Conv2D)          (None, 24, 24, 32)        2432      
                                                                 
 max_pooling2d_8 (MaxPoolin  (None, 12, 12, 32)        0         
 g2D)                                                            
                                                                 
 flatten_6 (Flatten)         (None, 4608)              0         
                                                                 
 dense_14 (Dense)            (None, 10)                46090     
                                                                 
=================================================================
Total params: 48522 (189.54 KB)
Trainable params: 48522 (189.54 KB)
Non-trainable params: 0 (0.00 Byte)
_________________________________________________________________

""";
        Assert.Equal(expected.ReplaceLineEndings("\n"), model.Summary());
    }

    [Fact]
    public void Seed004FunctionalCifar100CnnMatchesKerasSummary()
    {
        using var _ = Backend.NameScope();
        var imgInput = new Input(shape: (32, 32, 3), name: "input_2");
        var x = new Conv2D(16, 3, activation: "relu", name: "conv2d_2").Apply(imgInput);
        x = new MaxPool2D((2, 2), name: "max_pooling2d_2").Apply(x);
        x = new Conv2D(32, 3, activation: "relu", name: "conv2d_3").Apply(x);
        x = new MaxPool2D((2, 2), name: "max_pooling2d_3").Apply(x);
        x = new Flatten(name: "flatten_1").Apply(x);
        x = new Dense(256, activation: "relu", name: "dense_2").Apply(x);
        var predictions = new Dense(100, activation: "softmax", name: "dense_3").Apply(x);
        var model = new Model(inputs: imgInput, outputs: predictions, name: "model_1");
        const string expected = """
Model: "model_1"
_________________________________________________________________
 Layer (type)                Output Shape              Param #   
=================================================================
 input_2 (InputLayer)        [(None, 32, 32, 3)]       0         
                                                                 
 conv2d_2 (Conv2D)           (None, 30, 30, 16)        448       
                                                                 
 max_pooling2d_2 (MaxPoolin  (None, 15, 15, 16)        0         
 g2D)                                                            
                                                                 
 conv2d_3 (Conv2D)           (None, 13, 13, 32)        4640      
                                                                 
 max_pooling2d_3 (MaxPoolin  (None, 6, 6, 32)          0         
 g2D)                                                            
                                                                 
 flatten_1 (Flatten)         (None, 1152)              0         
                                                                 
 dense_2 (Dense)             (None, 256)               295168    
                                                                 
 dense_3 (Dense)             (None, 100)               25700     
                                                                 
=================================================================
Total params: 325956 (1.24 MB)
Trainable params: 325956 (1.24 MB)
Non-trainable params: 0 (0.00 Byte)
_________________________________________________________________

""";
        Assert.Equal(expected.ReplaceLineEndings("\n"), model.Summary());
    }

    [Fact]
    public void Seed001SubclassedLeNet5Has61706Params()
    {
        using var _ = Backend.NameScope();
        var model = new ReadmeExamplesTests.LeNet5(10); // seed 001's subclassed LeNet5, as in the README
        model.Build((28, 28, 1));
        Assert.Equal(61706, model.CountParams());
        var summary = model.Summary();
        Assert.Contains("Total params: 61706", summary);
        Assert.Contains(" conv2d (Conv2D)             (None, 28, 28, 6)         156", summary);
        Assert.Contains(" max_pooling2d (MaxPooling2  multiple                  0", summary); // used twice, two shapes
        using var y = model.Apply(zeros(2, 1, 28, 28));
        Assert.Equal(new long[] { 2, 10 }, y.shape);
    }
}

public class ModelMoveTests
{
    [Fact]
    public void ConvertingAModelRebindsEveryLayersWeights()
    {
        using var _ = Backend.NameScope();
        var input = new Input((8, 8, 3));
        var x = new Conv2D(4, 3, padding: Padding.Same, activation: "relu").Apply(input);
        x = new BatchNormalization().Apply(x);
        x = new Dense(2).Apply(new Flatten().Apply(x));
        var model = new Model(input, x);
        model.to(float64);
        Assert.All(model.Weights, w => Assert.Equal(float64, w.Value.dtype));
        using var y = model.Call(randn(2, 3, 8, 8, dtype: float64));
        Assert.Equal(float64, y.dtype);
        Assert.Equal(new long[] { 2, 2 }, y.shape);
    }
}
