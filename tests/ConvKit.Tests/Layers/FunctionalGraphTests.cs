using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Native;
using static TorchSharp.torch;

namespace ConvKit.Tests.Layers;

/// <summary>Seed graphs (naive inception, residual block), multi-input/output models, subclass tracking, executor memory.</summary>
public class FunctionalGraphTests
{
    /// <summary>Seed 001's naive_inception_block: 1x1, 3x3, 5x5 'same' relu convolutions and a 3x3/1 'same' max pool, concatenated.</summary>
    static SymbolicTensor NaiveInceptionBlock(SymbolicTensor prev, int[] filters)
    {
        var conv1x1 = new Conv2D(filters[0], kernelSize: (1, 1), padding: Padding.Same, activation: "relu").Apply(prev);
        var conv3x3 = new Conv2D(filters[1], kernelSize: (3, 3), padding: Padding.Same, activation: "relu").Apply(prev);
        var conv5x5 = new Conv2D(filters[2], kernelSize: (5, 5), padding: Padding.Same, activation: "relu").Apply(prev);
        var maxPool = new MaxPool2D((3, 3), strides: (1, 1), padding: Padding.Same).Apply(prev);
        return Concatenate.Of([conv1x1, conv3x3, conv5x5, maxPool], axis: -1);
    }

    // Derived from Keras 2.15's print_summary (keras/utils/layer_utils.py at v2.15.0): positions int(98 * [.3, .6, .7, 1.])
    // = [29, 58, 68, 98]; each column cut at width - 3 (last: width), breaking earlier after the first "),", "},", "]," or "',";
    // a leading space; a blank line after every layer row; the connection list printed as Python's str(list).
    const string InceptionSummary = """
Model: "naive_inception"
__________________________________________________________________________________________________
 Layer (type)                Output Shape                 Param #   Connected to                  
==================================================================================================
 input_1 (InputLayer)        [(None, 32, 32, 3)]          0         []                            
                                                                                                  
 conv2d (Conv2D)             (None, 32, 32, 64)           256       ['input_1[0][0]']             
                                                                                                  
 conv2d_1 (Conv2D)           (None, 32, 32, 128)          3584      ['input_1[0][0]']             
                                                                                                  
 conv2d_2 (Conv2D)           (None, 32, 32, 32)           2432      ['input_1[0][0]']             
                                                                                                  
 max_pooling2d (MaxPooling2  (None, 32, 32, 3)            0         ['input_1[0][0]']             
 D)                                                                                               
                                                                                                  
 concatenate (Concatenate)   (None, 32, 32, 227)          0         ['conv2d[0][0]',              
                                                                     'conv2d_1[0][0]',            
                                                                     'conv2d_2[0][0]',            
                                                                     'max_pooling2d[0][0]']       
                                                                                                  
==================================================================================================
Total params: 6272 (24.50 KB)
Trainable params: 6272 (24.50 KB)
Non-trainable params: 0 (0.00 Byte)
__________________________________________________________________________________________________
""";

    [Fact]
    public void NaiveInceptionBlockSummaryMatchesKeras215()
    {
        using var _ = Backend.NameScope();
        var input = new Input(shape: (32, 32, 3));
        var model = new Model(input, NaiveInceptionBlock(input, [64, 128, 32]), name: "naive_inception");
        Assert.Equal(InceptionSummary.ReplaceLineEndings("\n") + "\n", model.Summary());
    }

    [Fact]
    public void NaiveInceptionBlockRunsForwardAndBackward()
    {
        using var _ = Backend.NameScope();
        var input = new Input(shape: (8, 8, 3));
        var model = new Model(input, NaiveInceptionBlock(input, [4, 6, 2]));
        Assert.Equal(new Shape(8, 8, 15), model.ModelOutputShape);
        using var x = randn(2, 3, 8, 8).requires_grad_();
        using var y = model.Apply(x);
        Assert.Equal(new long[] { 2, 15, 8, 8 }, y.shape);
        // The pooled branch passes the input through: its 3 channels sit last and, being a 3x3 max, never fall below x.
        using var pooled = y.narrow(1, 12, 3);
        Assert.True(pooled.ge(x).all().item<bool>());
        using var loss = y.pow(Scalars.Two).sum();
        loss.backward();
        Assert.NotNull(x.grad);
        foreach (var w in model.TrainableWeights)
            Assert.True(w.Value.grad is not null, $"{w.Owner.Name}/{w.Name} has no gradient");
    }

    static SymbolicTensor ResidualBlock(SymbolicTensor x, int filters)
    {
        var shortcut = x;
        var y = new Conv2D(filters, 3, padding: Padding.Same, useBias: false).Apply(x);
        y = new BatchNormalization().Apply(y);
        y = new ReLU().Apply(y);
        y = new Conv2D(filters, 3, padding: Padding.Same, useBias: false).Apply(y);
        y = new BatchNormalization().Apply(y);
        y = Add.Of(y, shortcut);
        return new ReLU().Apply(y);
    }

    [Fact]
    public void ResidualBlockBuildsRunsAndUsesConnectedToColumn()
    {
        using var _ = Backend.NameScope();
        var input = new Input(shape: (6, 6, 4));
        var model = new Model(input, ResidualBlock(input, 4), name: "residual");
        model.train();
        using var x = randn(3, 4, 6, 6).requires_grad_();
        using var y = model.Apply(x);
        Assert.Equal(x.shape, y.shape);
        Assert.True(y.ge(Scalars.Zero).all().item<bool>());
        using var loss = y.sum();
        loss.backward();
        Assert.NotNull(x.grad);
        var summary = model.Summary();
        var lines = summary.Split('\n');
        Assert.Contains(lines, l => l.StartsWith(" Layer (type)") && l.Contains("Connected to"));
        Assert.All(lines.Where(l => l.StartsWith('_') || l.StartsWith('=')), l => Assert.Equal(98, l.Length));
        // The Add row lists both inputs; "['batch_normalization_1[0][0]'," is 31 wide, so Keras cuts at the 30-wide
        // column before the "'," it would prefer, and the comma starts the next line.
        int add = Array.FindIndex(lines, l => l.StartsWith(" add (Add)"));
        Assert.EndsWith("['batch_normalization_1[0][0]'", lines[add]);
        Assert.Equal(", 'input_1[0][0]']", lines[add + 1].Trim());
        // BN: 2 x (4 trainable + 4 moving) per layer, the moving half non-trainable.
        Assert.Contains("Non-trainable params: 16 (64.00 Byte)", summary);
        Assert.Equal(2 * 144 + 2 * 16, model.CountParams());
    }

    [Fact]
    public void MultiInputMultiOutputModelReturnsEveryOutput()
    {
        using var _ = Backend.NameScope();
        var image = new Input(shape: (5, 5, 2), name: "image");
        var meta = new Input(shape: 3, name: "meta");
        var features = new Flatten().Apply(new Conv2D(2, 3).Apply(image));
        var joined = Concatenate.Of([features, new Dense(4).Apply(meta)]);
        var classOut = new Dense(3, activation: "softmax", name: "class_out").Apply(joined);
        var boxOut = new Dense(4, name: "box_out").Apply(joined);
        var model = new Model([image, meta], [classOut, boxOut, features]);
        using var img = randn(2, 2, 5, 5);
        using var m = randn(2, 3);
        var outputs = model.ApplyAll([img, m], DataFormat.ChannelsFirst);
        Assert.Equal(3, outputs.Count);
        Assert.Equal(new long[] { 2, 3 }, outputs[0].shape);
        Assert.Equal(new long[] { 2, 4 }, outputs[1].shape);
        Assert.Equal(new long[] { 2, 18 }, outputs[2].shape);
        using (var sums = outputs[0].sum(1)) Assert.True(sums.allclose(ones(2), 1e-5, 1e-5));
        foreach (var o in outputs) o.Dispose();
        Assert.Throws<ShapeException>(() => model.ApplyAll([img], DataFormat.ChannelsFirst));
    }

    sealed class PropertyModel : Model
    {
        Conv2D Stem { get; } = new(4, 3, padding: Padding.Same, activation: "relu");
        List<Conv2D> Blocks { get; } = [new(4, 3, padding: Padding.Same), new(4, 3, padding: Padding.Same)];
        readonly GlobalAveragePooling2D pool = new();
        Dense Head { get; } = new(2);

        public override Tensor Call(Tensor inputs)
        {
            var x = Stem.Apply(inputs);
            foreach (var b in Blocks) x = b.Apply(x);
            return Head.Apply(pool.Apply(x));
        }
    }

    [Fact]
    public void SubclassedModelTracksAutoPropertiesAndLists()
    {
        using var _ = Backend.NameScope();
        var model = new PropertyModel();
        model.Build((6, 6, 3));
        Assert.Equal(5, model.Layers.Count);
        Assert.Equal((27 * 4 + 4) + 2 * (36 * 4 + 4) + (4 * 2 + 2), model.CountParams());
        Assert.Equal(model.CountParams(), model.parameters().Sum(p => p.numel()));
        using var y = model.Apply(randn(2, 3, 6, 6));
        Assert.Equal(new long[] { 2, 2 }, y.shape);
    }

    [Fact]
    public void GraphExecutorLeavesOnlyTheOutputAlive()
    {
        using var _ = Backend.NameScope();
        var input = new Input(shape: (8, 8, 2));
        var x = (SymbolicTensor)input;
        for (int i = 0; i < 6; i++) x = ResidualBlock(x, 2);
        var model = new Model(input, x);
        model.eval();
        using var data = randn(1, 2, 8, 8);
        using var noGrad = no_grad();
        var counts = new List<long>();
        using (var scope = NewDisposeScope())
        {
            for (int i = 0; i < 5; i++)
            {
                long before = scope.DisposablesCount;
                var y = model.Call(data);
                // Everything the graph computed on the way (about 50 tensors) is gone; only the output remains.
                Assert.Equal(before + 1, scope.DisposablesCount);
                y.Dispose();
                counts.Add(scope.DisposablesCount);
            }
        }
        Assert.All(counts, c => Assert.Equal(counts[0], c));
    }
}
