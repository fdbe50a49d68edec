ConvKit.Native.TorchNative.Initialize();
Console.WriteLine(ConvKit.Native.TorchNative.Status);
