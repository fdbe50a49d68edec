using System.Runtime.CompilerServices;

namespace ConvKit.Tests;

static class TestSetup
{
    // Tests may touch TorchSharp before any ConvKit type; make the native fix explicit.
    [ModuleInitializer]
    internal static void Init() => ConvKit.Native.TorchNative.Initialize();
}
