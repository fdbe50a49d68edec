using System.Runtime.InteropServices;
using ConvKit.Layers;
using ConvKit.Models;
using static TorchSharp.torch;

namespace ConvKit.Tests.Layers;

/// <summary>Misuse catalogue: every mistake gives a ConvKit exception naming the layer and the offending values.</summary>
public class MisuseTests
{
    sealed record Case(Type Expected, Action Act, params string[] MessageContains);

    sealed class NoCallModel : Model
    {
        readonly Dense dense = new(2);
    }

    static readonly Dictionary<string, Case> Cases = new()
    {
        ["filters <= 0"] = new(typeof(LayerArgumentException), () => new Conv2D(0, 3, name: "bad_conv"), "bad_conv", "filters=0"),
        ["kernel_size <= 0"] = new(typeof(LayerArgumentException), () => new Conv2D(2, (3, 0), name: "k0"), "k0", "kernel_size=(3, 0)"),
        ["strides <= 0"] = new(typeof(LayerArgumentException), () => new Conv2D(2, 3, strides: (1, -1), name: "s_neg"), "s_neg", "strides=(1, -1)"),
        ["kernel larger than a valid input"] = new(typeof(ShapeException),
            () => new Sequential([new Conv2D(2, 5, inputShape: (4, 4, 1), name: "big_kernel")]), "big_kernel", "(5, 5)", "(None, 4, 4, 1)"),
        ["negative padding"] = new(typeof(LayerArgumentException), () => new ZeroPadding2D((1, -2), (0, 0), name: "zp"), "zp", "-2"),
        ["adaptive pooling to nothing"] = new(typeof(LayerArgumentException), () => new AdaptiveAveragePooling2D((6, 0), name: "ap"), "ap", "output_size=(6, 0)"),
        ["adaptive pooling of a vector"] = new(typeof(ShapeException),
            () => new AdaptiveAveragePooling2D(2, name: "ap_vec").Apply(new Input(shape: 8)), "ap_vec", "(None, 8)"),
        ["groups not dividing filters"] = new(typeof(LayerArgumentException), () => new Conv2D(5, 3, groups: 2, name: "g5"), "g5", "filters=5", "groups=2"),
        ["groups not dividing channels"] = new(typeof(LayerArgumentException),
            () => new Conv2D(4, 3, groups: 2, name: "g2").Apply(new Input(shape: (8, 8, 3))), "g2", "3 channels", "groups=2"),
        ["dilation with strides"] = new(typeof(LayerArgumentException), () => new Conv2D(2, 3, strides: 2, dilationRate: 2, name: "ds"), "ds", "strides=(2, 2)", "dilation_rate=(2, 2)"),
        ["channel mismatch in Add"] = new(typeof(ShapeException),
            () => new Add(name: "add_bad").Apply(new Input(shape: (8, 8, 4)), new Input(shape: (8, 8, 3))), "add_bad", "(None, 8, 8, 4)", "(None, 8, 8, 3)"),
        ["Concatenate of different spatial sizes"] = new(typeof(ShapeException),
            () => new Concatenate(name: "cat").Apply(new Input(shape: (8, 8, 3)), new Input(shape: (4, 4, 3))), "cat", "(None, 4, 4, 3)"),
        ["Dense on a 4-D input"] = new(typeof(ShapeException), () => new Dense(3, name: "fc").Apply(new Input(shape: (8, 8, 3))), "fc", "(None, 8, 8, 3)", "Flatten"),
        ["disconnected output"] = new(typeof(GraphException), () =>
        {
            var a = new Input(shape: 4, name: "in_a");
            var b = new Input(shape: 4, name: "in_b");
            _ = new Model(a, new Dense(2).Apply(b), name: "broken");
        }, "broken", "in_b"),
        ["duplicate names, functional"] = new(typeof(GraphException), () =>
        {
            var x = new Input(shape: 4);
            _ = new Model(x, new Dense(2, name: "twin").Apply(new Dense(2, name: "twin").Apply(x)), name: "dup");
        }, "twin", "dup"),
        ["duplicate names, Sequential"] = new(typeof(GraphException),
            () => new Sequential([new Dense(2, name: "twin", inputShape: 3), new Dense(2, name: "twin")]), "twin"),
        ["Dropout rate 1.5"] = new(typeof(LayerArgumentException), () => new Dropout(1.5, name: "drop"), "drop", "rate=1.5"),
        ["BN momentum 2"] = new(typeof(LayerArgumentException), () => new BatchNormalization(momentum: 2, name: "bn"), "bn", "momentum=2"),
        ["pooling larger than input"] = new(typeof(ShapeException), () => new MaxPooling2D(5, name: "mp").Apply(new Input(shape: (3, 3, 1))), "mp", "(5, 5)", "(None, 3, 3, 1)"),
        ["wrong input rank"] = new(typeof(ShapeException), () => new Conv2D(2, 3, name: "c_rank").Apply(new Input(shape: 10)), "c_rank", "(None, 10)"),
        ["model called on a tensor of the wrong shape"] = new(typeof(ShapeException), () =>
        {
            var m = new Sequential([new Conv2D(2, 3, inputShape: (8, 8, 3), name: "c_built"), new Flatten(), new Dense(2)], name: "built");
            using var x = zeros(1, 4, 8, 8);
            m.Apply(x).Dispose();
        }, "(None, 8, 8, 3)", "(None, 8, 8, 4)"),
        ["built layer applied to other channels"] = new(typeof(ShapeException), () =>
        {
            var conv = new Conv2D(2, 3, name: "c_once");
            using (var a = zeros(1, 3, 5, 5)) conv.Apply(a).Dispose();
            using var b = zeros(1, 4, 5, 5);
            conv.Apply(b).Dispose();
        }, "c_once", "(None, 5, 5, 3)", "(None, 5, 5, 4)"),
        ["unknown activation"] = new(typeof(LayerArgumentException), () => new Conv2D(2, 3, activation: "relux"), "activation", "relux"),
        ["unknown initializer"] = new(typeof(LayerArgumentException), () => new Dense(2, kernelInitializer: "glorot_unifrom"), "initializer", "glorot_unifrom"),
        ["Sequential with an Add layer"] = new(typeof(ShapeException), () => new Sequential([new Input(shape: 4), new Add(name: "merge")], name: "seq_add"), "seq_add", "merge"),
        ["model with zero inputs"] = new(typeof(GraphException), () =>
        {
            var x = new Input(shape: 4);
            _ = new Model([], [new Dense(2).Apply(x)], name: "no_inputs");
        }, "no_inputs", "input"),
        ["subclassed model without Call"] = new(typeof(GraphException), () => new NoCallModel().Build(new Shape(3)), "no_call_model", "Call"),
        ["Input with empty shape"] = new(typeof(LayerArgumentException), () => new Input(shape: new Shape()), "shape"),
        ["Dense units 0"] = new(typeof(LayerArgumentException), () => new Dense(0, name: "d0"), "d0", "units=0"),
        ["LRN negative radius"] = new(typeof(LayerArgumentException), () => new LocalResponseNormalization(depthRadius: -1, name: "lrn"), "lrn", "depth_radius=-1"),
        ["Ops padding string"] = new(typeof(LayerArgumentException), () =>
        {
            using var x = zeros(1, 1, 4, 4);
            using var w = zeros(1, 1, 3, 3);
            Ops.Conv2D(x, w, [1], "FULL").Dispose();
        }, "Ops.Conv2D", "FULL"),
        ["Ops four strides with channel stride"] = new(typeof(LayerArgumentException), () =>
        {
            using var x = zeros(1, 4, 4, 1);
            using var w = zeros(3, 3, 1, 1);
            Ops.Conv2D(x, w, [1, 2, 2, 2], "SAME", DataFormat.ChannelsLast).Dispose();
        }, "Ops.Conv2D", "strides=[1, 2, 2, 2]"),
        ["Ops filters for other channels"] = new(typeof(ShapeException), () =>
        {
            using var x = zeros(1, 3, 5, 5);
            using var w = zeros(4, 2, 3, 3);
            Ops.Conv2D(x, w, [1], "VALID").Dispose();
        }, "Ops.Conv2D", "3 channels", "(4, 2, 3, 3)"),
        ["Ops pool window larger than input"] = new(typeof(ShapeException), () =>
        {
            using var x = zeros(1, 1, 2, 2);
            Ops.MaxPool2D(x, [3], [1], "VALID").Dispose();
        }, "Ops.MaxPool2D", "(3, 3)"),
        ["Ops zero stride"] = new(typeof(LayerArgumentException), () =>
        {
            using var x = zeros(1, 1, 4, 4);
            Ops.AvgPool2D(x, [2], [0], "SAME").Dispose();
        }, "Ops.AvgPool2D", "strides=[0]"),
    };

    public static TheoryData<string> CaseNames() => new(Cases.Keys);

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void MisuseGivesAConvKitErrorNamingTheProblem(string caseName)
    {
        using var _ = Backend.NameScope();
        var c = Cases[caseName];
        var e = Record.Exception(c.Act);
        Assert.NotNull(e);
        Assert.IsNotType<ExternalException>(e);
        Assert.IsAssignableFrom<ConvKitException>(e);
        Assert.IsType(c.Expected, e);
        foreach (var part in c.MessageContains) Assert.Contains(part, e.Message);
    }

    [Fact]
    public void CatalogueHasAtLeast25Cases() => Assert.True(Cases.Count >= 25);
}
