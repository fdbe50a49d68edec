using ConvKit;
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

    /// <summary>Flatten + Dense(10) on 28x28x1: almost no compute, for measuring per-batch overhead.</summary>
    public sealed class Tiny : nn.Module<Tensor, Tensor>
    {
        readonly TorchSharp.Modules.Linear fc = nn.Linear(784, 10);

        public Tiny() : base("tiny") => RegisterComponents();

        public override Tensor forward(Tensor x)
        {
            using var flat = x.flatten(1);
            return fc.forward(flat);
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

    /// <summary>VGG-16 as keras.applications.VGG16 (= torchvision's configuration D, no dropout at inference).</summary>
    public sealed class Vgg16 : nn.Module<Tensor, Tensor>
    {
        readonly TorchSharp.Modules.ModuleList<TorchSharp.Modules.Conv2d> convs = new();
        readonly int[] poolAfter = [1, 3, 6, 9, 12];
        readonly TorchSharp.Modules.Linear fc1 = nn.Linear(512 * 7 * 7, 4096), fc2 = nn.Linear(4096, 4096), fc3 = nn.Linear(4096, 1000);

        public Vgg16() : base("vgg16")
        {
            int cin = 3;
            foreach (var (filters, count) in new[] { (64, 2), (128, 2), (256, 3), (512, 3), (512, 3) })
                for (int i = 0; i < count; i++)
                {
                    convs.Add(nn.Conv2d(cin, filters, 3, padding: 1));
                    cin = filters;
                }
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var y = x;
            for (int i = 0; i < convs.Count; i++)
            {
                y = F.relu(convs[i].forward(y));
                if (poolAfter.Contains(i)) y = F.max_pool2d(y, 2);
            }
            y = F.relu(fc1.forward(y.flatten(1)));
            y = F.relu(fc2.forward(y));
            return fc3.forward(y).MoveToOuterDisposeScope();
        }
    }

    sealed class Bottleneck : nn.Module<Tensor, Tensor>
    {
        readonly TorchSharp.Modules.Conv2d c1, c2, c3;
        readonly TorchSharp.Modules.BatchNorm2d b1, b2, b3;
        readonly TorchSharp.Modules.Conv2d? sc;
        readonly TorchSharp.Modules.BatchNorm2d? scBn;

        // Keras ResNet v1: stride in the first 1x1 convolution, biased convolutions, projection on each stage's first block.
        public Bottleneck(int cin, int filters, int stride, bool project) : base("bottleneck")
        {
            c1 = nn.Conv2d(cin, filters, 1, stride: stride);
            b1 = nn.BatchNorm2d(filters, eps: 1.001e-5);
            c2 = nn.Conv2d(filters, filters, 3, padding: 1);
            b2 = nn.BatchNorm2d(filters, eps: 1.001e-5);
            c3 = nn.Conv2d(filters, 4 * filters, 1);
            b3 = nn.BatchNorm2d(4 * filters, eps: 1.001e-5);
            if (project)
            {
                sc = nn.Conv2d(cin, 4 * filters, 1, stride: stride);
                scBn = nn.BatchNorm2d(4 * filters, eps: 1.001e-5);
            }
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            var y = F.relu(b1.forward(c1.forward(x)));
            y = F.relu(b2.forward(c2.forward(y)));
            y = b3.forward(c3.forward(y));
            var shortcut = sc is null ? x : scBn!.forward(sc.forward(x));
            return F.relu(y + shortcut);
        }
    }

    /// <summary>ResNet-50 v1 as keras.applications.ResNet50 (not torchvision's v1.5).</summary>
    public sealed class ResNet50 : nn.Module<Tensor, Tensor>
    {
        readonly TorchSharp.Modules.Conv2d stem = nn.Conv2d(3, 64, 7, stride: 2, padding: 3);
        readonly TorchSharp.Modules.BatchNorm2d stemBn = nn.BatchNorm2d(64, eps: 1.001e-5);
        readonly TorchSharp.Modules.ModuleList<nn.Module<Tensor, Tensor>> blocks = new();
        readonly TorchSharp.Modules.Linear fc = nn.Linear(2048, 1000);

        public ResNet50() : base("resnet50")
        {
            int cin = 64;
            int[] counts = [3, 4, 6, 3];
            for (int s = 0; s < 4; s++)
                for (int b = 0; b < counts[s]; b++)
                {
                    int filters = 64 << s;
                    blocks.Add(new Bottleneck(cin, filters, b == 0 && s > 0 ? 2 : 1, b == 0));
                    cin = 4 * filters;
                }
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var y = F.relu(stemBn.forward(stem.forward(x)));
            y = F.max_pool2d(y, 3, 2, 1);
            foreach (var b in blocks) y = b.forward(y);
            return fc.forward(y.mean([2, 3])).MoveToOuterDisposeScope();
        }
    }

    /// <summary>
    /// One training epoch doing the work Keras' fit does: a fresh permutation, batches gathered with index_select
    /// (keeping channels-last memory when <paramref name="x"/> has it), SGD step, and the mean loss and accuracy
    /// accumulated on the device and read once at the end.
    /// </summary>
    public static (double Loss, double Accuracy) TrainEpoch(nn.Module<Tensor, Tensor> model, optim.Optimizer opt, Tensor x, Tensor y,
        int batch, Generator generator, long samples = -1)
    {
        model.train();
        long n = samples < 0 ? x.shape[0] : samples;
        using var perm = randperm(x.shape[0], generator: generator);
        using var lossSum = zeros(1, dtype: float64);
        using var correct = zeros(1, dtype: float64);
        for (long start = 0; start < n; start += batch)
        {
            using var scope = NewDisposeScope();
            long len = Math.Min(batch, n - start);
            var idx = perm.narrow(0, start, len);
            var xb = Gather(x, idx);
            var yb = y.index_select(0, idx);
            opt.zero_grad();
            var logits = model.forward(xb);
            var loss = F.cross_entropy(logits, yb);
            loss.backward();
            opt.step();
            using (no_grad())
            {
                lossSum.add_(loss.detach(), alpha: len);
                correct.add_(logits.argmax(1).eq(yb).sum());
            }
        }
        return (lossSum.item<double>() / n, correct.item<double>() / n);
    }

    /// <summary>
    /// Samples <paramref name="idx"/> of <paramref name="x"/>: channels-last data stays channels-last (as ConvKit's Fit
    /// gathers it), NCHW-contiguous data ('plain') gets index_select's NCHW result.
    /// </summary>
    static Tensor Gather(Tensor x, Tensor idx) =>
        x.dim() == 4 && x.stride(1) == 1 && x.shape[1] > 1 ? Layout.SelectSamples(x, idx) : x.index_select(0, idx);
}
