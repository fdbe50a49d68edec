using ConvKit.Applications;
using ConvKit.Cli;
using Microsoft.ML.OnnxRuntime;

namespace ConvKit.Tests.Cli;

public class ExportCommandTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void ExportWritesAModelWithTrainedWeightsThatOnnxRuntimeLoads()
    {
        var dir = Directory.CreateTempSubdirectory("convkit-export-");
        try
        {
            var options = new ModelOptions { InputShape = (16, 16, 1), Classes = 4 };
            using var model = ModelRegistry.Create("lenet5", options);
            var weights = Path.Combine(dir.FullName, "lenet5.weights.safetensors");
            model.SaveWeights(weights);
            var onnx = Path.Combine(dir.FullName, "lenet5.onnx");

            var (code, output, error) = Run("export", "lenet5", "--onnx", onnx, "--weights", weights, "--input-shape", "16,16,1", "--classes", "4");
            Assert.Equal("", error);
            Assert.Equal(0, code);
            Assert.Contains("opset 13", output);
            Assert.Contains("(N, 16, 16, 1)", output);
            // The fresh registry model got the saved weights: same graph, same bytes.
            Assert.Equal(model.ToOnnx(), File.ReadAllBytes(onnx));

            var nchw = Path.Combine(dir.FullName, "nchw.onnx");
            (code, output, _) = Run("export", "lenet5", "--onnx", nchw, "--channels-first", "--opset", "17", "--input-shape", "16,16,1");
            Assert.Equal(0, code);
            Assert.Contains("(N, 1, 16, 16)", output);
            using var session = new InferenceSession(nchw);
            Assert.Equal([-1, 1, 16, 16], session.InputMetadata.Values.Single().Dimensions);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    [Trait("Catalogue", "Hostile")] // existing before issue 12
    public void ExportErrorsAreReported()
    {
        var (code, _, error) = Run("export", "lenet5", "--onnx", "x.onnx", "--opset", "9");
        Assert.Equal(1, code);
        Assert.Contains("--opset must be 13 to 21; received 9", error);

        (code, _, error) = Run("export", "lenet5", "--onnx", "x.onnx", "--weights", "/nonexistent/w.bin");
        Assert.Equal(1, code);
        Assert.Contains("'/nonexistent/w.bin' does not exist", error);

        (code, _, error) = Run("export", "lenet5");
        Assert.NotEqual(0, code);
        Assert.Contains("--onnx", error);
    }
}
