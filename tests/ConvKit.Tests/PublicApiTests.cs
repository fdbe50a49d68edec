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
    /// Exceptions by meaning: ConvKit's own code throws no .NET exception for bad input, so that one meaning has one
    /// type everywhere (InvalidOptionException for an argument or CLI option, UnknownNameException for a name that names
    /// nothing, ShapeException, InvalidFileException for a file's content, UnsupportedException). Allowed: .NET's
    /// contract exceptions for null arguments and disposed objects, and the few internal spots listed below, each caught
    /// and reported under a ConvKit type before it leaves the library.
    /// </summary>
    [Fact]
    public void NoMethodThrowsADotNetExceptionForBadInput()
    {
        var allowed = new HashSet<Type> { typeof(ArgumentNullException), typeof(ObjectDisposedException) };
        var exempt = new Dictionary<string, string>
        {
            ["ConvKit.Native.ElfVersionPatcher"] = "internal; the native loader catches it and falls back",
            ["ConvKit.Native.PackedConvolution"] = "internal; its ExternalException is libtorch's, wrapped by Layer.Apply with the layer and shapes",
            ["ConvKit.Saving.AtomicFile"] = "internal fsync failures (IOException), caught and reported as 'cannot write' with the path",
            ["ConvKit.Saving.KerasWeightsLoader"] = "weights loading: one LoadWeights entry point replaces it (issue 14, s7c)",
            ["ConvKit.Data.Imaging.ImageDecoder.Open"] = "maps open(2)'s errno to .NET's I/O types, which Read catches and reports as ImageDecodeException",
        };
        var findings = new List<string>();
        foreach (var assembly in new[] { ConvKit, typeof(ConvKit.Cli.Commands.CliConsole).Assembly })
            foreach (var method in ScalarIlTests.Methods(assembly))
            {
                var owner = method.DeclaringType!;
                while (owner.DeclaringType is { } outer) owner = outer;
                if (exempt.ContainsKey(owner.FullName!) || exempt.ContainsKey($"{method.DeclaringType!.FullName}.{method.Name}")) continue;
                // Compiler-written code: collection-expression wrappers' read-only members, iterators' Reset.
                if (owner.Name.StartsWith("<>z__", StringComparison.Ordinal) || method.Name == "System.Collections.IEnumerator.Reset") continue;
                foreach (var (offset, op, callee) in ScalarIlTests.Instructions(method))
                {
                    if (callee?.DeclaringType is not { } type || !typeof(Exception).IsAssignableFrom(type)) continue;
                    if (type.Assembly == assembly || typeof(ConvKitException).IsAssignableFrom(type) || allowed.Contains(type)) continue;
                    bool throws = (op == System.Reflection.Emit.OpCodes.Newobj && callee is ConstructorInfo)
                        || (callee.IsStatic && callee.Name.StartsWith("ThrowIf", StringComparison.Ordinal));
                    if (throws) findings.Add($"{method.DeclaringType}.{method.Name} IL_{offset:x4}: {type.Name}.{callee.Name}");
                }
            }
        Assert.True(findings.Count == 0, "throw a ConvKitException type by meaning, not a .NET one:\n" + string.Join("\n", findings));
    }

    /// <summary>The scan above sees a .NET exception where there is one (so it can fail).</summary>
    [Fact]
    public void TheExceptionScanFindsAnExemptThrow()
    {
        var type = ConvKit.GetType("ConvKit.Native.ElfVersionPatcher", throwOnError: true)!;
        var found = ScalarIlTests.Methods(ConvKit).Where(m => m.DeclaringType == type)
            .SelectMany(m => ScalarIlTests.Instructions(m)).Any(i => i.Callee?.DeclaringType == typeof(BadImageFormatException));
        Assert.True(found);
    }

    /// <summary>Each meaning has its ConvKit type, and the specific types sit under the meaning they carry.</summary>
    [Fact]
    public void ExceptionTypesFormOneTaxonomyOfMeanings()
    {
        Assert.True(typeof(InvalidOptionException).IsAssignableFrom(typeof(LayerArgumentException)));
        foreach (var t in new[] { typeof(ConvKit.Saving.SafeTensorsFormatException), typeof(ConvKit.Saving.WrongFileFormatException),
                     typeof(ConvKit.Saving.CheckpointException), typeof(ConvKit.Data.DatasetFormatException),
                     typeof(ConvKit.Data.DatasetDownloadException), typeof(ConvKit.Data.Imaging.ImageDecodeException) })
            Assert.True(typeof(InvalidFileException).IsAssignableFrom(t), $"{t.Name} is about a file's content: an InvalidFileException");
        foreach (var t in new[] { typeof(InvalidOptionException), typeof(UnknownNameException), typeof(InvalidFileException),
                     typeof(UnsupportedException), typeof(ShapeException) })
            Assert.Equal(typeof(ConvKitException), t.BaseType);
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

    /// <summary>
    /// The public way to compute is Keras': Call (overridden by subclassed models and custom layers), Apply/ApplyAll
    /// (model(x)) and Predict. Forward is the engine's entry point and stays internal.
    /// </summary>
    [Fact]
    public void NoPublicOrProtectedForward()
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;
        var offenders = PublicTypes().SelectMany(t => t.GetMethods(all).Where(m => m.Name == "Forward" && (m.IsPublic || m.IsFamily || m.IsFamilyOrAssembly)))
            .Select(m => $"{m.DeclaringType}.{m.Name}").Distinct().ToList();
        Assert.Empty(offenders);
        Assert.NotNull(typeof(Model).GetMethod("Forward", BindingFlags.NonPublic | BindingFlags.Instance)); // the check looks at a real name
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
