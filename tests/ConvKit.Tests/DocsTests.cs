using System.Reflection;
using System.Text.RegularExpressions;
using ConvKit.Tests.Samples;

namespace ConvKit.Tests;

/// <summary>
/// Issue 13, sections 3 and 4: the README stays a user's guide that links its docs/ pages and samples, no link in the
/// documentation points nowhere, and every sample is in the solution and has a smoke test.
/// </summary>
public partial class DocsTests
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

    [GeneratedRegex(@"\]\(([^)\s#]+)(#[^)]*)?\)")]
    private static partial Regex MarkdownLink();

    static IEnumerable<string> MarkdownFiles() =>
        new[] { Path.Combine(Root, "README.md"), Path.Combine(Root, "samples", "README.md") }
            .Concat(Directory.GetFiles(Path.Combine(Root, "docs"), "*.md"));

    [Fact]
    public void TheReadmeIsAUsersGuideUnder250LinesThatLinksEveryDocsPageAndTheSamples()
    {
        var readme = File.ReadAllText(Path.Combine(Root, "README.md"));
        var lines = File.ReadAllLines(Path.Combine(Root, "README.md")).Length;
        Assert.True(lines <= 250, $"README.md has {lines} lines; move details to docs/ (issue 13: a user's guide under ~250 lines)");
        var docs = Directory.GetFiles(Path.Combine(Root, "docs"), "*.md").Select(Path.GetFileName).ToArray();
        Assert.True(docs.Length >= 8, $"docs/ holds {docs.Length} pages");
        foreach (var page in docs)
            Assert.True(readme.Contains($"(docs/{page})", StringComparison.Ordinal), $"README.md does not link docs/{page}");
        Assert.Contains("(samples/README.md)", readme);
        // The two quick-start commands, verbatim.
        Assert.Contains("./convkit train lenet5", readme);
        Assert.Contains("\n./test ", readme);
        // Engine internals live in docs/, not in the user's guide.
        foreach (var internals in new[] { "GLIBCXX_3.4.32", "mkldnn_reorder_conv2d_weight", "c10::SetCPUAllocator", "mallopt", "| workload |" })
            Assert.False(readme.Contains(internals, StringComparison.Ordinal), $"README.md still holds engine internals ('{internals}'); they belong in docs/");
    }

    [Fact]
    public void EveryRelativeLinkInTheDocumentationPointsToAFileThatExists()
    {
        var broken = new List<string>();
        foreach (var file in MarkdownFiles())
        {
            var text = File.ReadAllText(file);
            foreach (Match m in MarkdownLink().Matches(text))
            {
                var target = m.Groups[1].Value;
                if (target.Contains("://", StringComparison.Ordinal) || target.StartsWith("mailto:", StringComparison.Ordinal)) continue;
                var path = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(file)!, target));
                if (!File.Exists(path) && !Directory.Exists(path)) broken.Add($"{Path.GetRelativePath(Root, file)}: {target}");
            }
        }
        Assert.True(broken.Count == 0, "broken links:\n" + string.Join("\n", broken));
    }

    [Fact]
    public void EverySampleIsInTheSolutionTheSamplesReadmeAndTheSmokeTests()
    {
        var slnx = File.ReadAllText(Path.Combine(Root, "ConvKit.slnx"));
        var samplesReadme = File.ReadAllText(Path.Combine(Root, "samples", "README.md"));
        var tests = typeof(SamplesSmokeTests).GetMethods(BindingFlags.Public | BindingFlags.Instance)
            .Where(m => m.GetCustomAttribute<FactAttribute>() is not null).Select(m => m.Name).ToArray();
        var samples = Directory.GetDirectories(Path.Combine(Root, "samples")).Select(Path.GetFileName).OfType<string>().ToArray();
        for (var seed = 0; seed <= 4; seed++)
            Assert.Single(samples, s => s.StartsWith($"Seed{seed:000}.", StringComparison.Ordinal));
        foreach (var name in samples)
        {
            Assert.True(slnx.Contains($"samples/{name}/{name}.csproj", StringComparison.Ordinal), $"ConvKit.slnx does not list samples/{name}");
            Assert.True(samplesReadme.Contains($"({name}/Program.cs)", StringComparison.Ordinal), $"samples/README.md does not link {name}");
            var prefix = name[..name.IndexOf('.')];
            Assert.True(tests.Any(t => t.StartsWith(prefix, StringComparison.Ordinal)), $"SamplesSmokeTests has no test for {name}");
        }
    }
}
