using ConvKit.Applications;

namespace ConvKit.Tests.Applications;

/// <summary>
/// Summaries of vgg16 and resnet50 against golden text in Keras 2.15's format. What was checked against real Keras
/// printouts: vgg16's first rows (seed 000/001) and totals (FACTS); resnet50's rows input_1 to conv3_block2_1_bn (a TF 2.x
/// printout of keras.applications.ResNet50), its 177 layers and its totals. The remaining rows follow from the same code.
/// </summary>
[Trait("Category", "Slow")]
public class GoldenSummaryTests
{
    static string Golden(string name) =>
        File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Applications", "Golden", name + ".txt")).ReplaceLineEndings("\n");

    [Fact]
    public void Vgg16SummaryMatchesGolden()
    {
        using var model = ModelRegistry.Create("vgg16");
        var text = model.Summary();
        Assert.Equal(Golden("vgg16"), text);
        Assert.Contains("Total params: 138357544 (527.79 MB)", text);
        Assert.Contains(" block5_pool (MaxPooling2D)  (None, 7, 7, 512)         0         ", text);
    }

    [Fact]
    public void ResNet50SummaryMatchesGolden()
    {
        using var model = ModelRegistry.Create("resnet50");
        Assert.Equal(177, model.Layers.Count); // keras.applications.ResNet50().layers
        var text = model.Summary();
        Assert.Equal(Golden("resnet50"), text);
        Assert.Contains("Non-trainable params: 53120 (207.50 KB)", text);
    }
}
