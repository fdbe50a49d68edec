using System.Reflection;
using System.Reflection.Emit;
using ConvKit.Cli.Commands;
using ConvKit.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace ConvKit.Tests.Native;

/// <summary>
/// Reads the compiled IL of ConvKit, ConvKit.Cli and these tests for Scalars nothing keeps alive across the native call (see
/// ConvKit.Native.Scalars): an implicit conversion, a <c>ToScalar()</c> handed straight to a call instead of stored, or
/// a call to a TorchSharp method that makes such a Scalar itself, found by reading TorchSharp's own IL the same way
/// (<c>a.add(b)</c>, <c>t * 0.5</c>, <c>square()</c>, <c>arange(n)</c>...). It covers code no test runs, where the
/// finalizer count of <see cref="ScalarLifetimeTests"/> covers virtual calls and delegates, which this does not follow
/// (TorchSharp's optimizers' own step() made Scalars in every step; ConvKit overrides it, see ConvKit.Training.ScalarSafe).
/// </summary>
public class ScalarIlTests
{
    /// <summary>TorchSharp methods ConvKit calls knowing they leave Scalars behind, with the reason.</summary>
    static readonly Dictionary<string, string> Accepted = new()
    {
        ["TorchSharp.torch+nn+functional.softplus"] = "beta and threshold become Scalars inside; no overload takes them",
        ["TorchSharp.Modules.SummaryWriter.add_histogram"] = "TorchSharp's histogram binning (TensorBoard histograms only)",
    };

    [Fact]
    public void ConvKitMakesNoScalarItCannotKeepAlive() =>
        AssertNoScalarsLeft([typeof(Model).Assembly, typeof(TrainCommand).Assembly], Accepted, _ => false);

    /// <summary>
    /// The tests run in parallel, so one test's temporary Scalar can be freed by a GC another test started and fail the
    /// run; they follow ConvKit's rule, apart from the types below, which make such Scalars on purpose.
    /// </summary>
    [Fact]
    public void TheTestsMakeNoScalarTheyCannotKeepAlive() =>
        AssertNoScalarsLeft([typeof(ScalarIlTests).Assembly], new(), method => DeliberateInTests.Contains(OutermostType(method).Name)
            || (method.DeclaringType == typeof(ScalarIlTests) && ReaderSamples.Contains(method.Name)));

    /// <summary>
    /// Test types whose temporaries are the point: <see cref="ScalarLifetimeTests"/> reproduces TorchSharp's bug with
    /// plain <c>x * 0.5</c> and must keep doing so (its collection runs alone, so the race stays its own).
    /// </summary>
    static readonly HashSet<string> DeliberateInTests = ["ScalarLifetimeTests", "ScalarLifetimeCollection"];

    /// <summary>The code <see cref="TheReaderFindsTheTemporaries"/> shows the reader, wrong on purpose (never run).</summary>
    static readonly HashSet<string> ReaderSamples = [nameof(Implicit), nameof(Inline)];

    static Type OutermostType(MethodBase method)
    {
        var type = method.DeclaringType!;
        while (type.DeclaringType is { } outer) type = outer;
        return type;
    }

    static void AssertNoScalarsLeft(Assembly[] assemblies, Dictionary<string, string> accepted, Func<MethodBase, bool> skip)
    {
        var leaving = TorchSharpMethodsThatLeaveScalars();
        var findings = new List<string>();
        var used = new HashSet<string>();
        foreach (var assembly in assemblies)
            foreach (var method in Methods(assembly).Where(m => !skip(m)))
                foreach (var (offset, why) in Findings(method, leaving))
                {
                    if (why is Finding.LeftByTorchSharp left && accepted.ContainsKey(left.Name)) used.Add(left.Name);
                    else findings.Add($"{method.DeclaringType}.{method.Name} IL_{offset:x4}: {why}");
                }
        Assert.True(findings.Count == 0, $"{findings.Count} Scalars nothing keeps alive (pass an explicit Scalar, see ConvKit.Native.Scalars):\n" + string.Join("\n", findings));
        Assert.Empty(accepted.Keys.Except(used)); // an accepted call that is gone
    }

    /// <summary>The reader finds what it should: in TorchSharp, and in code written the obvious way.</summary>
    [Fact]
    public void TheReaderFindsTheTemporaries()
    {
        var leaving = TorchSharpMethodsThatLeaveScalars();
        string[] Found(string name) =>
            Findings(typeof(ScalarIlTests).GetMethod(name, BindingFlags.NonPublic | BindingFlags.Static)!, leaving).Select(f => f.Why.ToString()).ToArray();

        Assert.Equal(3, Found(nameof(Implicit)).Length); // 0.5 converted here; a.add(b) and square() inside TorchSharp
        Assert.Contains(Found(nameof(Implicit)), f => f.Contains("add(Tensor)"));
        Assert.Contains(Found(nameof(Implicit)), f => f.Contains("square()"));
        Assert.Single(Found(nameof(Inline)));
        Assert.Empty(Found(nameof(Explicit)));
    }

    static Tensor Implicit(Tensor a, Tensor b) => a.mul(0.5).add(b).square();

    static Tensor Inline(Tensor a) => a.mul(0.5.ToScalar());

    static Tensor Explicit(Tensor a, Tensor b)
    {
        using var half = 0.5.ToScalar();
        using var one = 1.ToScalar();
        return a.mul(half).add(b, one);
    }

    abstract record Finding
    {
        public sealed record Implicit(MethodBase Conversion) : Finding
        {
            public override string ToString() => $"implicit {Describe(Conversion)}";
        }

        public sealed record NotStored(MethodBase ToScalar) : Finding
        {
            public override string ToString() => $"{Describe(ToScalar)} passed on without a variable to keep it";
        }

        public sealed record LeftByTorchSharp(MethodBase Method) : Finding
        {
            public string Name => $"{Method.DeclaringType!.FullName}.{Method.Name}";
            public override string ToString() => $"{Describe(Method)} makes a Scalar it leaves to the finalizer";
        }
    }

    static IEnumerable<(int Offset, Finding Why)> Findings(MethodBase method, HashSet<(Module, int)> leaving)
    {
        var code = Instructions(method).ToList();
        for (int i = 0; i < code.Count; i++)
        {
            if (code[i].Callee is not { } callee) continue;
            if (IsImplicitConversion(callee)) yield return (code[i].Offset, new Finding.Implicit(callee));
            else if (IsToScalar(callee) && !(i + 1 < code.Count && IsStore(code[i + 1].OpCode)))
                yield return (code[i].Offset, new Finding.NotStored(callee));
            else if (leaving.Contains(Key(callee)))
                yield return (code[i].Offset, new Finding.LeftByTorchSharp(callee));
        }
    }

    /// <summary>
    /// TorchSharp methods that make a Scalar (implicitly or with ToScalar) without disposing one, or that call such a
    /// method, following calls as written (no virtual dispatch).
    /// </summary>
    static HashSet<(Module, int)> TorchSharpMethodsThatLeaveScalars()
    {
        var torchSharp = typeof(Scalar).Module;
        var calls = Methods(typeof(Scalar).Assembly).ToDictionary(Key, m => Instructions(m).Select(c => c.Callee).OfType<MethodBase>().ToList());
        var leaving = calls.Where(kv => kv.Value.Any(c => IsImplicitConversion(c) || IsToScalar(c)) && !kv.Value.Any(IsScalarDispose))
            .Select(kv => kv.Key).ToHashSet();
        for (bool grew = true; grew;)
        {
            grew = false;
            foreach (var (method, callees) in calls)
                if (!leaving.Contains(method) && callees.Any(c => c.Module == torchSharp && leaving.Contains(Key(c))))
                    grew = leaving.Add(method);
        }
        return leaving;
    }

    static bool IsImplicitConversion(MethodBase m) => m.DeclaringType == typeof(Scalar) && m.Name == "op_Implicit";
    static bool IsToScalar(MethodBase m) => m.DeclaringType == typeof(ScalarExtensionMethods) && m.Name.StartsWith("To") && m.Name.EndsWith("Scalar");
    static bool IsScalarDispose(MethodBase m) => m.DeclaringType == typeof(Scalar) && m.Name == nameof(Scalar.Dispose);

    static bool IsStore(OpCode op) =>
        op == OpCodes.Stloc || op == OpCodes.Stloc_S || op == OpCodes.Stloc_0 || op == OpCodes.Stloc_1 || op == OpCodes.Stloc_2
        || op == OpCodes.Stloc_3 || op == OpCodes.Stsfld || op == OpCodes.Stfld;

    static (Module, int) Key(MethodBase m) => (m.Module, m.MetadataToken);

    static string Describe(MethodBase m) =>
        $"{m.DeclaringType!.Name}.{m.Name}({string.Join(", ", m.GetParameters().Select(p => p.ParameterType.Name))})";

    internal static IEnumerable<MethodBase> Methods(Assembly assembly)
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        return assembly.GetTypes().SelectMany(t => t.GetMethods(all).Cast<MethodBase>().Concat(t.GetConstructors(all)));
    }

    static readonly Dictionary<short, OpCode> OpCodesByValue = typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!).ToDictionary(op => op.Value);

    /// <summary>A method body's instructions, with the called (or loaded, ldftn) method resolved.</summary>
    internal static IEnumerable<(int Offset, OpCode OpCode, MethodBase? Callee)> Instructions(MethodBase method)
    {
        var il = method.GetMethodBody()?.GetILAsByteArray() ?? [];
        var typeArguments = method.DeclaringType is { IsGenericType: true } t ? t.GetGenericArguments() : null;
        var methodArguments = method.IsGenericMethod ? method.GetGenericArguments() : null;
        for (int i = 0; i < il.Length;)
        {
            int offset = i;
            var op = OpCodesByValue[il[i] == 0xFE ? (short)(0xFE00 | il[i + 1]) : il[i]];
            i += op.Size;
            MethodBase? callee = op.OperandType == OperandType.InlineMethod
                ? method.Module.ResolveMethod(BitConverter.ToInt32(il, i), typeArguments, methodArguments) : null;
            i += op.OperandType switch
            {
                OperandType.InlineNone => 0,
                OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                OperandType.InlineVar => 2,
                OperandType.InlineI8 or OperandType.InlineR => 8,
                OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, i),
                _ => 4,
            };
            yield return (offset, op, callee);
        }
    }
}
