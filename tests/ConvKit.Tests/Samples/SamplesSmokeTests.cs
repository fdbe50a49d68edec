using System.Diagnostics;
using System.Text;

namespace ConvKit.Tests.Samples;

/// <summary>
/// Issue 13, section 4: every program in samples/ (one per seed notebook) is built with the solution and run here in
/// smoke mode as a child process, so an API change that breaks a sample fails the suite. Each run must exit 0, print
/// the figures the seed prints (parameter totals, accuracy) and finish within its time budget.
/// </summary>
[Trait("Category", "Slow")]
public class SamplesSmokeTests
{
    static readonly TimeSpan Budget = TimeSpan.FromSeconds(60); // each sample aims at < 20 s on 2 idle cores

    static string Root
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "ConvKit.slnx"))) return d.FullName;
            throw new InvalidOperationException("ConvKit.slnx not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>The built sample's dll, in the configuration and framework this test assembly was built for.</summary>
    internal static string SampleDll(string name)
    {
        // AppContext.BaseDirectory is tests/ConvKit.Tests/bin/<config>/<tfm>/
        var baseDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        var tfm = baseDir.Name;
        var config = baseDir.Parent!.Name;
        var dll = Path.Combine(Root, "samples", name, "bin", config, tfm, name + ".dll");
        Assert.True(File.Exists(dll), $"sample {name} is not built ({dll} is missing): build ConvKit.slnx, which lists it");
        return dll;
    }

    internal static (int ExitCode, string Stdout, string Stderr) Run(string name, params string[] args)
    {
        var host = Environment.ProcessPath is { } pp && Path.GetFileNameWithoutExtension(pp) == "dotnet" ? pp : "dotnet";
        var psi = new ProcessStartInfo(host)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Directory.CreateTempSubdirectory("convkit-sample-").FullName,
            StandardOutputEncoding = Encoding.UTF8,
        };
        psi.ArgumentList.Add(SampleDll(name));
        foreach (var a in args) psi.ArgumentList.Add(a);
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        using var process = new Process { StartInfo = psi };
        process.OutputDataReceived += (_, e) => { if (e.Data is { } l) lock (stdout) stdout.AppendLine(l); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is { } l) lock (stderr) stderr.AppendLine(l); };
        try
        {
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            if (!process.WaitForExit(Budget))
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
                Assert.Fail($"sample {name} did not finish within {Budget.TotalSeconds:F0} s; stdout so far:\n{stdout}\nstderr:\n{stderr}");
            }
            process.WaitForExit(); // drains the asynchronous readers
            return (process.ExitCode, stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Directory.Delete(psi.WorkingDirectory, recursive: true);
        }
    }

    static string RunSmoke(string name)
    {
        var (code, stdout, stderr) = Run(name, "--smoke");
        Assert.True(code == 0, $"sample {name} --smoke exited with {code}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        return stdout;
    }

    static void NeedsFashionMnist()
    {
        // The samples read Fashion-MNIST as the library does; the test command (./test) installs Debian's package.
        var installed = "/usr/share/datasets/fashion-mnist";
        if (Environment.GetEnvironmentVariable("CONVKIT_DATA") is null
            && !Directory.Exists(Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".convkit", "datasets", "fashion-mnist")))
            Assert.True(Directory.Exists(installed), $"{installed} is missing: apt-get install dataset-fashion-mnist");
    }

    static double AccuracyAfter(string stdout, string label)
    {
        var line = stdout.Split('\n').LastOrDefault(l => l.Contains(label, StringComparison.Ordinal));
        Assert.True(line is not null, $"no '{label}' line in:\n{stdout}");
        var text = line[(line.IndexOf(label, StringComparison.Ordinal) + label.Length)..].Trim().TrimEnd('%').Split(' ')[0];
        return double.Parse(text, System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public void Seed000ApplicationsPrintKerasTotals()
    {
        var stdout = RunSmoke("Seed000.Applications");
        Assert.Contains("Model: \"vgg16\"\nTotal params: 138357544 (527.79 MB)", stdout.ReplaceLineEndings("\n"));
        Assert.Contains("Model: \"vgg19\"\nTotal params: 143667240 (548.05 MB)", stdout.ReplaceLineEndings("\n"));
        Assert.Contains("Model: \"inception_v3\"\nTotal params: 23851784 (90.99 MB)", stdout.ReplaceLineEndings("\n"));
        Assert.Contains("Model: \"resnet50\"\nTotal params: 25636712 (97.80 MB)", stdout.ReplaceLineEndings("\n"));
        Assert.Contains("Non-trainable params: 53120 (207.50 KB)", stdout);
    }

    [Fact]
    public void Seed001CnnBasicsRunsEveryPart()
    {
        NeedsFashionMnist();
        var stdout = RunSmoke("Seed001.CnnBasics");
        Assert.Contains("conv_layer: (1, 28, 28, 16) -> (1, 26, 26, 32)", stdout);
        Assert.Contains("SimpleCNN: (1, 28, 28, 1) -> (1, 26, 26, 32), 320 params", stdout);
        Assert.Contains("receptive field of 2 stacked 3x3 convolutions: 5x5, of 3: 7x7", stdout);
        Assert.Contains("(512, 28, 28, 1)", stdout);
        Assert.Contains("Total params: 61706 (241.04 KB)", stdout);                 // subclassed LeNet-5
        Assert.Contains("VGG16 (subclassed, CIFAR-10 shape): 33638218 params", stdout);
        Assert.Equal(2, CountOf(stdout, "Total params: 48522 (189.54 KB)"));         // Sequential and functional
        Assert.Contains("Total params: 387296 (1.48 MB)", stdout);                  // naive inception block
        Assert.Contains("GoogLeNet (CIFAR-10 shape): 7033402 params", stdout);
        Assert.Contains("ResNet (CIFAR-10 shape): 11188362 params", stdout);
        Assert.InRange(AccuracyAfter(stdout, "LeNet-5 test accuracy:"), 0.0, 1.0);
    }

    [Fact]
    public void Seed002ClassicCnnsTrainsLeNetWithTheScheduleAndCheckpoint()
    {
        NeedsFashionMnist();
        var stdout = RunSmoke("Seed002.ClassicCnns");
        Assert.Contains("Total params: 545546 (2.08 MB)", stdout);                  // LeNet-5 (tanh, 'same')
        Assert.Contains("Epoch 2/2", stdout);
        Assert.Contains("val_accuracy improved from", stdout);                      // ModelCheckpoint(saveBestOnly)
        Assert.InRange(AccuracyAfter(stdout, "test accuracy:"), 0.0, 100.0);
        Assert.Contains("Total params: 62383848 (237.98 MB)", stdout);              // AlexNet with batch norm
        Assert.Contains("Model: \"inception_v1\"", stdout);
        Assert.Contains("Total params: 6994392 (26.68 MB)", stdout);
        Assert.Contains("Total params: 75904 (296.50 KB)", stdout);                 // bottleneck residual block
    }

    [Fact]
    public void Seed003AlexNetAndVggMatchKerasTotals()
    {
        var stdout = RunSmoke("Seed003.AlexNetVgg");
        Assert.Contains("Total params: 62378344 (237.95 MB)", stdout);              // AlexNet (Sequential)
        Assert.Contains("alexnet.predict: shape (1, 1000), sum 1.0000", stdout);
        Assert.Contains("Total params: 138357544 (527.79 MB)", stdout);             // VGG-16, as keras.applications'
    }

    static int CountOf(string text, string part)
    {
        var n = 0;
        for (var i = text.IndexOf(part, StringComparison.Ordinal); i >= 0; i = text.IndexOf(part, i + part.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    [Fact]
    public void Seed004Cifar100CnnRunsAndLearns()
    {
        NeedsFashionMnist();
        var stdout = RunSmoke("Seed004.Cifar100Cnn");
        Assert.Contains("입력데이터 크기 :  (512, 32, 32, 3)", stdout);
        Assert.Contains(" dense_1 (Dense)             (None, 100)               25700", stdout);
        Assert.Contains("Total params: 325956 (1.24 MB)", stdout);
        // 16 Adam steps on 512 images: well above the 1% of guessing among 100 classes (0.6 seen).
        Assert.InRange(AccuracyAfter(stdout, "test accuracy:"), 0.2, 1.0);
    }
}
