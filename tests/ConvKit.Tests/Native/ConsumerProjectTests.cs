using System.Diagnostics;

namespace ConvKit.Tests.Native;

/// <summary>
/// A separate console project that only references ConvKit (no explicit TorchNative.Initialize call) builds and trains
/// a step: ConvKit's module initializer makes TorchSharp load on Debian 12 for library consumers too.
/// </summary>
public class ConsumerProjectTests
{
    [Fact]
    [Trait("Category", "Slow")]
    public async Task AProjectReferencingConvKitRunsTorchSharpWithoutSetup()
    {
        var repo = FindRepoRoot();
        var dir = Directory.CreateTempSubdirectory("convkit-consumer-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "Consumer.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <Nullable>enable</Nullable>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally>
                    <NoWarn>NU1603</NoWarn>
                  </PropertyGroup>
                  <ItemGroup>
                    <ProjectReference Include="{Path.Combine(repo, "src", "ConvKit", "ConvKit.csproj")}" />
                  </ItemGroup>
                </Project>
                """);
            // Directory.Build.props/Packages.props of the repo must not apply: the consumer lives outside it.
            File.WriteAllText(Path.Combine(dir, "Program.cs"), """
                using ConvKit.Layers;
                using ConvKit.Models;
                using static TorchSharp.torch;
                var model = new Sequential([new Dense(4, activation: "relu", inputShape: 3), new Dense(2)]);
                model.Compile(optimizer: "sgd", loss: "sparse_categorical_crossentropy");
                var history = model.Fit(randn(8, 3), tensor(new long[] { 0, 1, 0, 1, 0, 1, 0, 1 }), epochs: 1, verbose: 0);
                Console.WriteLine($"ok {history["loss"][0]:F3} {ConvKit.Native.TorchNative.Status}");
                """);
            var psi = new ProcessStartInfo("dotnet", ["run", "-c", "Release"])
            {
                WorkingDirectory = dir,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using var p = Process.Start(psi)!;
            var stdoutTask = p.StandardOutput.ReadToEndAsync();
            var stderrTask = p.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
            await p.WaitForExitAsync(timeout.Token);
            string stdout = await stdoutTask, stderr = await stderrTask;
            Assert.True(p.ExitCode == 0, $"exit {p.ExitCode}\n{stdout}\n{stderr}");
            Assert.StartsWith("ok ", stdout.Trim().Split('\n')[^1]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    static string FindRepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "ConvKit.slnx"))) return d.FullName;
        throw new InvalidOperationException("ConvKit.slnx not found above " + AppContext.BaseDirectory);
    }
}
