namespace ConvKit.Cli;

/// <summary>The <c>convkit</c> command.</summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static int Main(string[] args)
    {
        ConvKit.Native.TorchNative.Initialize();
        Console.WriteLine(ConvKit.Native.TorchNative.Status);
        return 0;
    }
}
