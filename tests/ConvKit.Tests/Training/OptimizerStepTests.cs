using ConvKit.Training;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using OptimizerHelper = TorchSharp.Modules.OptimizerHelper;
using static TorchSharp.torch;

namespace ConvKit.Tests.Training;

/// <summary>
/// ConvKit steps TorchSharp's optimizers with <see cref="ScalarSafe"/>'s overrides, which keep their Scalars alive. They
/// must compute what TorchSharp's own step computes, bit for bit: a small convolutional network trains side by side
/// with each, and after every step the weights and TorchSharp's serialized optimizer state (options and per-parameter
/// state, as save_state_dict writes them) must be the same bytes.
/// </summary>
public class OptimizerStepTests
{
    delegate optim.Optimizer Create(IEnumerable<Parameter> parameters, double lr);

    /// <summary>Each configuration as TorchSharp builds it and as ConvKit does: every option TorchSharp has, Keras' defaults too.</summary>
    static readonly Dictionary<string, (Create TorchSharp, Create ConvKit)> Configurations = new()
    {
        ["SGD"] = ((p, lr) => optim.SGD(p, lr), (p, lr) => new ScalarSafe.SGD(p, lr)),
        ["SGD momentum"] = ((p, lr) => optim.SGD(p, lr, momentum: 0.9), (p, lr) => new ScalarSafe.SGD(p, lr, momentum: 0.9)),
        ["SGD momentum, dampening, weight decay, maximize"] = (
            (p, lr) => optim.SGD(p, lr, momentum: 0.8, dampening: 0.1, weight_decay: 0.01, maximize: true),
            (p, lr) => new ScalarSafe.SGD(p, lr, momentum: 0.8, dampening: 0.1, weight_decay: 0.01, maximize: true)),
        ["SGD nesterov, weight decay"] = (
            (p, lr) => optim.SGD(p, lr, momentum: 0.9, weight_decay: 0.01, nesterov: true),
            (p, lr) => new ScalarSafe.SGD(p, lr, momentum: 0.9, weight_decay: 0.01, nesterov: true)),
        ["Adam"] = ((p, lr) => optim.Adam(p, lr, 0.9, 0.999, 1e-7), (p, lr) => new ScalarSafe.Adam(p, lr, 0.9, 0.999, 1e-7)),
        ["Adam amsgrad, weight decay, maximize"] = (
            (p, lr) => optim.Adam(p, lr, 0.8, 0.99, 1e-6, weight_decay: 0.01, amsgrad: true, maximize: true),
            (p, lr) => new ScalarSafe.Adam(p, lr, 0.8, 0.99, 1e-6, weight_decay: 0.01, amsgrad: true, maximize: true)),
        ["AdamW"] = ((p, lr) => optim.AdamW(p, lr, 0.9, 0.999, 1e-7, weight_decay: 0.004), (p, lr) => new ScalarSafe.AdamW(p, lr, 0.9, 0.999, 1e-7, weight_decay: 0.004)),
        ["AdamW no decay"] = ((p, lr) => optim.AdamW(p, lr, 0.9, 0.999, 1e-7), (p, lr) => new ScalarSafe.AdamW(p, lr, 0.9, 0.999, 1e-7)),
        ["AdamW amsgrad, maximize"] = (
            (p, lr) => optim.AdamW(p, lr, 0.8, 0.99, 1e-6, weight_decay: 0.01, amsgrad: true, maximize: true),
            (p, lr) => new ScalarSafe.AdamW(p, lr, 0.8, 0.99, 1e-6, weight_decay: 0.01, amsgrad: true, maximize: true)),
        ["RMSprop"] = ((p, lr) => optim.RMSProp(p, lr, alpha: 0.9, eps: 1e-7), (p, lr) => new ScalarSafe.RMSProp(p, lr, alpha: 0.9, eps: 1e-7)),
        ["RMSprop momentum, weight decay"] = (
            (p, lr) => optim.RMSProp(p, lr, alpha: 0.9, eps: 1e-7, weight_decay: 0.01, momentum: 0.9),
            (p, lr) => new ScalarSafe.RMSProp(p, lr, alpha: 0.9, eps: 1e-7, weight_decay: 0.01, momentum: 0.9)),
        ["RMSprop centered"] = (
            (p, lr) => optim.RMSProp(p, lr, alpha: 0.9, eps: 1e-7, centered: true),
            (p, lr) => new ScalarSafe.RMSProp(p, lr, alpha: 0.9, eps: 1e-7, centered: true)),
        ["RMSprop centered, momentum, maximize"] = (
            (p, lr) => optim.RMSProp(p, lr, alpha: 0.95, eps: 1e-6, momentum: 0.5, centered: true, maximize: true),
            (p, lr) => new ScalarSafe.RMSProp(p, lr, alpha: 0.95, eps: 1e-6, momentum: 0.5, centered: true, maximize: true)),
    };

    public static TheoryData<string> Names => [.. Configurations.Keys];

    [Theory]
    [MemberData(nameof(Names))]
    public void StepIsBitIdenticalToTorchSharps(string name)
    {
        const double lr = 0.05;
        using var scope = NewDisposeScope();
        var (torchSharp, convKit) = Configurations[name];
        var reference = Weights();
        var ours = Weights();
        using var referenceOptimizer = torchSharp(reference, lr);
        using var ourOptimizer = convKit(ours, lr);
        Assert.NotEqual(referenceOptimizer.GetType(), ourOptimizer.GetType());
        using var data = new Generator(11);
        for (int step = 1; step <= 8; step++)
        {
            if (step == 5) // what LearningRateScheduler and ReduceLROnPlateau do between steps
                foreach (var o in new[] { referenceOptimizer, ourOptimizer })
                    foreach (var g in o.ParamGroups) g.LearningRate = lr / 3;
            var x = randn([4, 3, 8, 8], generator: data);
            var y = randint(0, 3, [4], generator: data);
            foreach (var (weights, optimizer) in new[] { (reference, referenceOptimizer), (ours, ourOptimizer) })
            {
                optimizer.zero_grad();
                Loss(weights, x, y).backward();
                optimizer.step();
            }
            for (int i = 0; i < reference.Length; i++)
                Assert.True(Bits(reference[i]).SequenceEqual(Bits(ours[i])), $"{name}, step {step}: weight {i} differs");
            Assert.True(State(referenceOptimizer).SequenceEqual(State(ourOptimizer)), $"{name}, step {step}: optimizer state differs");
        }
        var initial = Weights();
        for (int i = 0; i < 4; i++) Assert.False(Bits(ours[i]).SequenceEqual(Bits(initial[i])), $"{name}: weight {i} did not train");
        Assert.True(Bits(ours[4]).SequenceEqual(Bits(initial[4])), $"{name}: the weight without a gradient moved");
    }

    [Fact]
    public void ConvKitsOptimizersStepWithTheScalarSafeOverrides()
    {
        using var scope = NewDisposeScope();
        Parameter[] weights = [new(randn(3))];
        (Optimizer Optimizer, Type Expected)[] cases =
        [
            (new SGD(), typeof(ScalarSafe.SGD)), (new Adam(), typeof(ScalarSafe.Adam)),
            (new AdamW(), typeof(ScalarSafe.AdamW)), (new RMSprop(), typeof(ScalarSafe.RMSProp)),
        ];
        foreach (var (optimizer, expected) in cases)
        {
            optimizer.Build(weights);
            Assert.IsType(expected, optimizer.TorchOptimizer);
            optimizer.TorchOptimizer!.Dispose();
        }
    }

    /// <summary>A convolution, a dense layer and a weight no loss uses (its gradient stays null, its step is skipped).</summary>
    static Parameter[] Weights()
    {
        using var g = new Generator(5);
        using var scale = 0.3.ToScalar();
        return
        [
            new(randn([4, 3, 3, 3], generator: g).mul_(scale)), new(randn([4], generator: g).mul_(scale)),
            new(randn([3, 4 * 6 * 6], generator: g).mul_(scale)), new(randn([3], generator: g).mul_(scale)),
            new(randn([5], generator: g)),
        ];
    }

    static Tensor Loss(Parameter[] w, Tensor x, Tensor y)
    {
        var hidden = nn.functional.relu(nn.functional.conv2d(x, w[0], w[1])).flatten(1);
        return nn.functional.cross_entropy(nn.functional.linear(hidden, w[2], w[3]), y);
    }

    static int[] Bits(Tensor t) => t.detach().data<float>().Select(BitConverter.SingleToInt32Bits).ToArray();

    /// <summary>TorchSharp's own serialization of the optimizer: type name, every group's options, every parameter's state.</summary>
    static byte[] State(optim.Optimizer optimizer)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true))
            ((OptimizerHelper)optimizer).save_state_dict(writer);
        return stream.ToArray();
    }
}
