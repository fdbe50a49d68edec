using ConvKit.Cli;

namespace ConvKit.Tests.Cli;

public class CommandTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void ModelsListsTheMatchingModelsWithTheirMetadata()
    {
        var (code, output, error) = Run("models", "resnet2*");
        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.Contains("resnet20", output);
        Assert.Contains("274,042", output);
        Assert.Contains("40.81 M", output); // MACs computed from the built model
        Assert.Contains("(32, 32, 3)", output);
        Assert.Contains("CIFAR-10 91.25", output);
        Assert.DoesNotContain("resnet50", output);
    }

    [Fact]
    public void ModelsWithoutMatchIsAnError()
    {
        var (code, _, error) = Run("models", "nothing*");
        Assert.Equal(1, code);
        Assert.Equal("error: no model matches 'nothing*'.", error.Trim());
    }

    [Fact]
    public void SummaryPrintsKerasTableForOptions()
    {
        var (code, output, error) = Run("summary", "lenet5", "--input-shape", "32,32,1", "--classes", "5", "--macs");
        Assert.Equal(0, code);
        Assert.Equal("", error);
        Assert.StartsWith("Model: \"lenet5\"", output);
        Assert.Contains(" input_1 (InputLayer)        [(None, 32, 32, 1)]", output);
        Assert.Contains(" dense_2 (Dense)             (None, 5)", output);
        Assert.Contains("Total MACs per sample:", output);
    }

    [Fact]
    public void SummaryWithoutTopAndPooling()
    {
        var (code, output, _) = Run("summary", "resnet20", "--no-top", "--pooling", "max");
        Assert.Equal(0, code);
        Assert.Contains(" max_pool (GlobalMaxPooling  (None, 64)", output);
        Assert.DoesNotContain("predictions", output);
    }

    [Theory]
    [InlineData("error: unknown model 'resnet5'. Did you mean: resnet50", "summary", "resnet5")]
    [InlineData("error: model 'vgg16': invalid argument 'pooling'", "summary", "vgg16", "--pooling", "avg")]
    [InlineData("error: model 'vgg16': invalid argument 'input_shape': input size must be at least 32x32", "summary", "vgg16", "--input-shape", "16,16,3")]
    [InlineData("error: --input-shape must have three values", "summary", "vgg16", "--input-shape", "32,32")]
    public void ErrorsAreOneLineWithExitCode1(string expected, params string[] args)
    {
        var (code, output, error) = Run(args);
        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.StartsWith(expected, error);
        Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.DoesNotContain("   at ", error);
    }

    [Fact]
    public void InvalidPoolingValueIsRejectedByTheParser()
    {
        var (code, _, error) = Run("summary", "vgg16", "--no-top", "--pooling", "mean");
        Assert.Equal(1, code);
        Assert.Contains("mean", error);
    }
}
