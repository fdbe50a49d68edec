using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace ConvKit.Benchmarks;

/// <summary>
/// Hand-written TorchSharp versions of the benchmark models: the baseline that ConvKit must match. They do the same
/// math as ConvKit's zoo entries (lenet5 of seed 001 and He et al.'s ResNet-20 with projection shortcuts).
/// </summary>
static class RawTorch
{
    public sealed class LeNet5 : nn.Module<Tensor, Tensor>
    {
        readonly TorchSharp.Modules.Conv2d conv1 = nn.Conv2d(1, 6, 5, padding: 2);
        readonly TorchSharp.Modules.Conv2d conv2 = nn.Conv2d(6, 16, 5);
        readonly TorchSharp.Modules.Linear fc1 = nn.Linear(400, 120), fc2 = nn.Linear(120, 84), fc3 = nn.Linear(84, 10);

        public LeNet5() : base("lenet5") => RegisterComponents();

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var y = F.max_pool2d(F.relu(conv1.forward(x)), 2);
            y = F.max_pool2d(F.relu(conv2.forward(y)), 2);
            y = F.relu(fc1.forward(y.flatten(1)));
            y = F.relu(fc2.forward(y));
            return fc3.forward(y).MoveToOuterDisposeScope();
        }
    }

    sealed class Basic : nn.Module<Tensor, Tensor>
    {
        readonly TorchSharp.Modules.Conv2d c1, c2;
        readonly TorchSharp.Modules.BatchNorm2d b1, b2;
        readonly TorchSharp.Modules.Conv2d? sc;
        readonly TorchSharp.Modules.BatchNorm2d? scBn;

        public Basic(int cin, int cout, int stride) : base("basic")
        {
            c1 = nn.Conv2d(cin, cout, 3, stride: stride, padding: 1, bias: false);
            b1 = nn.BatchNorm2d(cout);
            c2 = nn.Conv2d(cout, cout, 3, padding: 1, bias: false);
            b2 = nn.BatchNorm2d(cout);
            if (stride != 1 || cin != cout)
            {
                sc = nn.Conv2d(cin, cout, 1, stride: stride, bias: false);
                scBn = nn.BatchNorm2d(cout);
            }
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            var y = F.relu(b1.forward(c1.forward(x)));
            y = b2.forward(c2.forward(y));
            var shortcut = sc is null ? x : scBn!.forward(sc.forward(x));
            return F.relu(y + shortcut);
        }
    }

    public sealed class ResNet20 : nn.Module<Tensor, Tensor>
    {
        readonly TorchSharp.Modules.Conv2d stem = nn.Conv2d(3, 16, 3, padding: 1, bias: false);
        readonly TorchSharp.Modules.BatchNorm2d stemBn = nn.BatchNorm2d(16);
        readonly TorchSharp.Modules.ModuleList<nn.Module<Tensor, Tensor>> blocks = new();
        readonly TorchSharp.Modules.Linear fc = nn.Linear(64, 10);

        public ResNet20() : base("resnet20")
        {
            int cin = 16;
            foreach (var (cout, stride) in new[] { (16, 1), (32, 2), (64, 2) })
                for (int i = 0; i < 3; i++)
                {
                    blocks.Add(new Basic(cin, cout, i == 0 ? stride : 1));
                    cin = cout;
                }
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var y = F.relu(stemBn.forward(stem.forward(x)));
            foreach (var b in blocks) y = b.forward(y);
            return fc.forward(y.mean([2, 3])).MoveToOuterDisposeScope();
        }
    }

    /// <summary>The idiomatic TorchSharp training loop: SGD with momentum, cross-entropy, one dispose scope per step.</summary>
    public static double TrainImagesPerSecond(nn.Module<Tensor, Tensor> model, Tensor x, Tensor y, int batch, double seconds)
    {
        model.train();
        var opt = optim.SGD(model.parameters(), 0.01, momentum: 0.9);
        long n = x.shape[0];
        int steps = 0;
        void Step(int i)
        {
            using var scope = NewDisposeScope();
            long start = (i * (long)batch) % (n - batch + 1);
            var xb = x.narrow(0, start, batch);
            var yb = y.narrow(0, start, batch);
            opt.zero_grad();
            var loss = F.cross_entropy(model.forward(xb), yb);
            loss.backward();
            opt.step();
        }
        for (int i = 0; i < 3; i++) Step(i);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (sw.Elapsed.TotalSeconds < seconds) Step(steps++);
        return steps * (double)batch / sw.Elapsed.TotalSeconds;
    }

    /// <summary>Inference throughput under inference mode.</summary>
    public static double InferImagesPerSecond(nn.Module<Tensor, Tensor> model, Tensor x, double seconds)
    {
        model.eval();
        using var _ = inference_mode();
        for (int i = 0; i < 2; i++) model.forward(x).Dispose();
        int n = 0;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (sw.Elapsed.TotalSeconds < seconds || n < 3)
        {
            model.forward(x).Dispose();
            n++;
        }
        return n * (double)x.shape[0] / sw.Elapsed.TotalSeconds;
    }
}
