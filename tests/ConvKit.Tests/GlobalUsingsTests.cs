using System.Runtime.CompilerServices;
using System.Xml.Linq;

namespace ConvKit.Tests;

// Issue 13: a port of a seed must not need seven `using ConvKit.*` lines. build/ConvKit.props makes the everyday
// namespaces global usings; these tests keep that file complete and unambiguous as the library grows.
public class GlobalUsingsTests
{
    static string RepoRoot([CallerFilePath] string here = "") => Path.GetFullPath(Path.Combine(Path.GetDirectoryName(here)!, "..", ".."));

    static string[] PropsNamespaces() =>
        XDocument.Load(Path.Combine(RepoRoot(), "src", "ConvKit", "build", "ConvKit.props"))
            .Descendants("Using").Select(u => (string)u.Attribute("Include")!).ToArray();

    static Type[] PublicTypes() => typeof(Shape).Assembly.GetExportedTypes().Where(t => !t.IsNested).ToArray();

    [Fact]
    public void EveryPublicNamespaceButTheEnginesIsAGlobalUsing()
    {
        var expected = PublicTypes().Select(t => t.Namespace!).Where(n => n != "ConvKit.Native").Distinct().Order();
        Assert.Equal(expected, PropsNamespaces().Order());
    }

    [Fact]
    public void NoTwoPublicTypesOfTheGlobalNamespacesShareAName()
    {
        var namespaces = PropsNamespaces().ToHashSet();
        var clashes = PublicTypes().Where(t => namespaces.Contains(t.Namespace!)).GroupBy(t => t.Name)
            .Where(g => g.Count() > 1).Select(g => string.Join(" / ", g.Select(t => t.FullName))).ToList();
        Assert.Empty(clashes);
    }

    [Fact]
    public void ThePackageShipsTheProps()
    {
        var csproj = XDocument.Load(Path.Combine(RepoRoot(), "src", "ConvKit", "ConvKit.csproj"));
        var item = csproj.Descendants("None").Single(n => (string?)n.Attribute("Include") == @"build\ConvKit.props");
        Assert.Equal("true", (string?)item.Attribute("Pack"));
        Assert.Contains("buildTransitive", (string?)item.Attribute("PackagePath"));
    }
}
