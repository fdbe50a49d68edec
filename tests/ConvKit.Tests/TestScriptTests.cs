namespace ConvKit.Tests;

/// <summary>Issue 12, section 1: the README's test command installs what the tests need, and CI runs exactly it.</summary>
public class TestScriptTests
{
    static string Root
    {
        get
        {
            for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "ConvKit.slnx"))) return d.FullName;
            throw new InvalidOperationException("ConvKit.slnx not found above " + AppContext.BaseDirectory);
        }
    }

    [Fact]
    public void TheReadmeTestCommandIsTheScriptCiRunsAndItInstallsWhatTheTestsNeed()
    {
        var readme = File.ReadAllText(Path.Combine(Root, "README.md"));
        var quickStart = readme[readme.IndexOf("## Quick start", StringComparison.Ordinal)..readme.IndexOf("## Defining models", StringComparison.Ordinal)];
        Assert.Contains("\n./test ", quickStart);
        Assert.DoesNotContain("\ndotnet test", quickStart); // the bare command fails on a fresh machine

        var ci = File.ReadAllLines(Path.Combine(Root, ".ci", "run")).Where(l => l.Length > 0 && !l.StartsWith('#')).ToArray();
        Assert.Equal("exec ./test", ci[^1]);
        Assert.DoesNotContain(ci, l => l.Contains("apt-get", StringComparison.Ordinal) || l.Contains("dotnet", StringComparison.Ordinal));

        var script = File.ReadAllText(Path.Combine(Root, "test"));
        Assert.Contains("exec dotnet test ConvKit.slnx -c Release \"$@\"", script);
        // What the tests that need them say is missing: FullModelImportTests (Python) and FashionMnistTests (the data).
        foreach (var package in new[] { "dataset-fashion-mnist", "python3-numpy", "python3-h5py", "python3-torch", "python3-torchvision" })
        {
            Assert.Contains(package, script);
            Assert.Contains(package, quickStart);
        }
        if (!OperatingSystem.IsWindows())
            Assert.True((File.GetUnixFileMode(Path.Combine(Root, "test")) & UnixFileMode.UserExecute) != 0, "./test is not executable");
    }
}
