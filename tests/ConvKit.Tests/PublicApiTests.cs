using System.Reflection;
using ConvKit.Models;
using ConvKit.Tests.Native;

namespace ConvKit.Tests;

/// <summary>
/// Issue 13's consistency rules, checked over the public surface of ConvKit.dll by reflection and by reading IL, so that
/// a new type or method that breaks one fails here rather than in review.
/// </summary>
public class PublicApiTests
{
    static readonly Assembly ConvKit = typeof(Model).Assembly;

    static Type[] PublicTypes() => ConvKit.GetExportedTypes();

    [Fact]
    public void NoPublicTypeIsNamedLikeItsNamespace()
    {
        var offenders = PublicTypes().Where(t => !t.IsNested && t.Namespace is { } ns && ns.Split('.')[^1] == t.Name)
            .Select(t => t.FullName).ToList();
        Assert.Empty(offenders);
    }

    [Fact]
    public void EveryPublicExceptionDerivesFromConvKitException()
    {
        var offenders = PublicTypes().Where(t => typeof(Exception).IsAssignableFrom(t) && !typeof(ConvKitException).IsAssignableFrom(t))
            .Select(t => t.FullName).ToList();
        Assert.Empty(offenders);
        // And each says what it means: its name ends in Exception and its class is documented as one meaning (one type).
        Assert.All(PublicTypes().Where(t => typeof(Exception).IsAssignableFrom(t)), t => Assert.EndsWith("Exception", t.Name));
    }

    /// <summary>
    /// Only DefaultOutput (internal), the one place that picks the console as the default writer, may touch
    /// System.Console: callbacks print through Callback.Output, PrintSummary through its writer (Keras' print_fn).
    /// </summary>
    [Fact]
    public void NoMethodButTheDefaultOutputTouchesTheConsole()
    {
        var findings = new List<string>();
        foreach (var method in ScalarIlTests.Methods(ConvKit))
        {
            var owner = method.DeclaringType!;
            while (owner.DeclaringType is { } outer) owner = outer;
            if (owner.FullName == "ConvKit.DefaultOutput") continue;
            foreach (var (offset, _, callee) in ScalarIlTests.Instructions(method))
                if (callee?.DeclaringType == typeof(Console))
                    findings.Add($"{method.DeclaringType}.{method.Name} IL_{offset:x4}: Console.{callee.Name}");
        }
        Assert.True(findings.Count == 0, "write through a TextWriter (Callback.Output, a writer argument), not Console:\n" + string.Join("\n", findings));
    }

    /// <summary>The scanner sees a Console call where there is one (so the test above can fail).</summary>
    [Fact]
    public void TheConsoleScanFindsTheDefaultOutput()
    {
        var type = ConvKit.GetType("ConvKit.DefaultOutput", throwOnError: true)!;
        var getter = type.GetProperty("Out", BindingFlags.Public | BindingFlags.Static)!.GetMethod!;
        Assert.Contains(ScalarIlTests.Instructions(getter), i => i.Callee?.DeclaringType == typeof(Console));
    }

    [Fact]
    public void TheEverydayTypesLiveInTheRootNamespace()
    {
        foreach (var t in new[] { typeof(Shape), typeof(Padding), typeof(DataFormat), typeof(Backend) })
            Assert.Equal("ConvKit", t.Namespace);
    }

    [Fact]
    public void LayoutAndPaddingAreClosedTypesNotStrings()
    {
        Assert.True(typeof(DataFormat).IsEnum);
        Assert.True(typeof(Padding).IsValueType);
        // Everywhere a public member takes or gives a padding, it is the Padding type (strings convert to it).
        var stringPaddings = PublicTypes().SelectMany(t => t.GetMethods().Cast<MethodBase>().Concat(t.GetConstructors()))
            .SelectMany(m => m.GetParameters().Where(p => p.Name == "padding" && p.ParameterType == typeof(string)).Select(_ => $"{m.DeclaringType}.{m.Name}"))
            .Where(n => !n.StartsWith("ConvKit.Ops.", StringComparison.Ordinal) && !n.StartsWith("ConvKit.Padding.", StringComparison.Ordinal)) // TF's "SAME"/"VALID" strings
            .ToList();
        Assert.Empty(stringPaddings);
    }
}
