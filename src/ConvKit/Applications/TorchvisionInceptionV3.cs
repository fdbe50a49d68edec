// torchvision's Inception v3 (torchvision/models/inception.py; Szegedy et al. 2016) as its eval model (no AuxLogits, no transform_input).
using System.Text.RegularExpressions;
using ConvKit.Layers;
using ConvKit.Models;
using ConvKit.Saving;

namespace ConvKit.Applications;

/// <summary>
/// torchvision's Inception v3 (<c>inception_v3_tv</c>): the same network as keras.applications' InceptionV3 but with
/// torchvision's module structure and BasicConv2d (batch norm with a learned scale, epsilon 0.001). Layers are named
/// after the state-dict module paths (<c>Conv2d_1a_3x3_conv</c>, <c>Mixed_5b_branch5x5_1_bn</c>, <c>fc</c>).
/// </summary>
/// <remarks>
/// torchvision's names contain '_' themselves, so the registry maps layer names to state-dict keys with
/// <see cref="KeyOf"/>, and ignores the auxiliary classifier <c>AuxLogits</c> that the published weights hold. The
/// average poolings of InceptionA/C/E are <c>F.avg_pool2d(3, stride=1, padding=1)</c>, which counts the zero padding
/// (divides by 9 at the borders, unlike Keras' 'same'): a ZeroPadding2D and a 'valid' AveragePooling2D compute exactly
/// that. Like GoogLeNet's, the published weights expect [-1, 1] input (torchvision's <c>transform_input</c>).
/// </remarks>
public static partial class TorchvisionInceptionV3
{
    /// <summary>How torchvision's Inception v3 state dict maps onto this model: <see cref="KeyOf"/>, AuxLogits ignored.</summary>
    public static StateDictMapping StateDict { get; } = new(KeyOf, ["AuxLogits"]);

    [GeneratedRegex(@"^(?<module>Conv2d_\d[a-z]_\dx\d|Mixed_\d[a-z])_(?:(?<branch>\w+)_)?(?<leaf>conv|bn)$")]
    private static partial Regex BasicConvName();

    /// <summary>
    /// The state-dict prefix of a layer: a BasicConv2d's conv or bn, directly under a top-level module
    /// (<c>Conv2d_1a_3x3_bn</c> → <c>Conv2d_1a_3x3.bn</c>) or in a Mixed module's branch (<c>Mixed_6b_branch7x7_2_conv</c>
    /// → <c>Mixed_6b.branch7x7_2.conv</c>); other names (<c>fc</c>) are their own key.
    /// </summary>
    public static string KeyOf(string layerName)
    {
        var m = BasicConvName().Match(layerName);
        if (!m.Success) return layerName;
        var branch = m.Groups["branch"];
        return m.Groups["module"].Value + "." + (branch.Success ? branch.Value + "." : "") + m.Groups["leaf"].Value;
    }

    static SymbolicTensor Conv(SymbolicTensor x, int filters, Size2 kernel, string name, int stride = 1, Size2 padding = default) =>
        Torchvision.BasicConv2d(x, filters, kernel, name, stride, padding);

    /// <summary>F.avg_pool2d(x, 3, stride=1, padding=1) with count_include_pad=True.</summary>
    static SymbolicTensor AvgPool3(SymbolicTensor x, string name)
    {
        x = new ZeroPadding2D(1, name: name + "_pad").Apply(x);
        return new AveragePooling2D(3, strides: 1, name: name).Apply(x);
    }

    static SymbolicTensor MaxPool3(SymbolicTensor x, string name) => new MaxPooling2D(3, strides: 2, name: name).Apply(x);

    static SymbolicTensor Concat(string name, params SymbolicTensor[] xs) => new Concatenate(axis: -1, name: name).Apply(xs);

    static SymbolicTensor InceptionA(SymbolicTensor x, int poolFeatures, string p)
    {
        var b1x1 = Conv(x, 64, 1, p + "_branch1x1");
        var b5x5 = Conv(Conv(x, 48, 1, p + "_branch5x5_1"), 64, 5, p + "_branch5x5_2", padding: 2);
        var b3x3dbl = Conv(x, 64, 1, p + "_branch3x3dbl_1");
        b3x3dbl = Conv(b3x3dbl, 96, 3, p + "_branch3x3dbl_2", padding: 1);
        b3x3dbl = Conv(b3x3dbl, 96, 3, p + "_branch3x3dbl_3", padding: 1);
        var bPool = Conv(AvgPool3(x, p + "_avg_pool"), poolFeatures, 1, p + "_branch_pool");
        return Concat(p, b1x1, b5x5, b3x3dbl, bPool);
    }

    static SymbolicTensor InceptionB(SymbolicTensor x, string p)
    {
        var b3x3 = Conv(x, 384, 3, p + "_branch3x3", stride: 2);
        var b3x3dbl = Conv(x, 64, 1, p + "_branch3x3dbl_1");
        b3x3dbl = Conv(b3x3dbl, 96, 3, p + "_branch3x3dbl_2", padding: 1);
        b3x3dbl = Conv(b3x3dbl, 96, 3, p + "_branch3x3dbl_3", stride: 2);
        return Concat(p, b3x3, b3x3dbl, MaxPool3(x, p + "_max_pool"));
    }

    static SymbolicTensor InceptionC(SymbolicTensor x, int c7, string p)
    {
        var b1x1 = Conv(x, 192, 1, p + "_branch1x1");
        var b7x7 = Conv(x, c7, 1, p + "_branch7x7_1");
        b7x7 = Conv(b7x7, c7, (1, 7), p + "_branch7x7_2", padding: (0, 3));
        b7x7 = Conv(b7x7, 192, (7, 1), p + "_branch7x7_3", padding: (3, 0));
        var b7x7dbl = Conv(x, c7, 1, p + "_branch7x7dbl_1");
        b7x7dbl = Conv(b7x7dbl, c7, (7, 1), p + "_branch7x7dbl_2", padding: (3, 0));
        b7x7dbl = Conv(b7x7dbl, c7, (1, 7), p + "_branch7x7dbl_3", padding: (0, 3));
        b7x7dbl = Conv(b7x7dbl, c7, (7, 1), p + "_branch7x7dbl_4", padding: (3, 0));
        b7x7dbl = Conv(b7x7dbl, 192, (1, 7), p + "_branch7x7dbl_5", padding: (0, 3));
        var bPool = Conv(AvgPool3(x, p + "_avg_pool"), 192, 1, p + "_branch_pool");
        return Concat(p, b1x1, b7x7, b7x7dbl, bPool);
    }

    static SymbolicTensor InceptionD(SymbolicTensor x, string p)
    {
        var b3x3 = Conv(Conv(x, 192, 1, p + "_branch3x3_1"), 320, 3, p + "_branch3x3_2", stride: 2);
        var b7x7x3 = Conv(x, 192, 1, p + "_branch7x7x3_1");
        b7x7x3 = Conv(b7x7x3, 192, (1, 7), p + "_branch7x7x3_2", padding: (0, 3));
        b7x7x3 = Conv(b7x7x3, 192, (7, 1), p + "_branch7x7x3_3", padding: (3, 0));
        b7x7x3 = Conv(b7x7x3, 192, 3, p + "_branch7x7x3_4", stride: 2);
        return Concat(p, b3x3, b7x7x3, MaxPool3(x, p + "_max_pool"));
    }

    static SymbolicTensor InceptionE(SymbolicTensor x, string p)
    {
        var b1x1 = Conv(x, 320, 1, p + "_branch1x1");
        var b3x3 = Conv(x, 384, 1, p + "_branch3x3_1");
        b3x3 = Concat(p + "_branch3x3",
            Conv(b3x3, 384, (1, 3), p + "_branch3x3_2a", padding: (0, 1)),
            Conv(b3x3, 384, (3, 1), p + "_branch3x3_2b", padding: (1, 0)));
        var b3x3dbl = Conv(Conv(x, 448, 1, p + "_branch3x3dbl_1"), 384, 3, p + "_branch3x3dbl_2", padding: 1);
        b3x3dbl = Concat(p + "_branch3x3dbl",
            Conv(b3x3dbl, 384, (1, 3), p + "_branch3x3dbl_3a", padding: (0, 1)),
            Conv(b3x3dbl, 384, (3, 1), p + "_branch3x3dbl_3b", padding: (1, 0)));
        var bPool = Conv(AvgPool3(x, p + "_avg_pool"), 192, 1, p + "_branch_pool");
        return Concat(p, b1x1, b3x3, b3x3dbl, bPool);
    }

    /// <summary>Builds the model.</summary>
    public static Model Build(ResolvedOptions o)
    {
        var inputs = Heads.Input(o);
        var x = Conv(inputs, 32, 3, "Conv2d_1a_3x3", stride: 2);
        x = Conv(x, 32, 3, "Conv2d_2a_3x3");
        x = Conv(x, 64, 3, "Conv2d_2b_3x3", padding: 1);
        x = MaxPool3(x, "maxpool1");
        x = Conv(x, 80, 1, "Conv2d_3b_1x1");
        x = Conv(x, 192, 3, "Conv2d_4a_3x3");
        x = MaxPool3(x, "maxpool2");
        x = InceptionA(x, 32, "Mixed_5b");
        x = InceptionA(x, 64, "Mixed_5c");
        x = InceptionA(x, 64, "Mixed_5d");
        x = InceptionB(x, "Mixed_6a");
        x = InceptionC(x, 128, "Mixed_6b");
        x = InceptionC(x, 160, "Mixed_6c");
        x = InceptionC(x, 160, "Mixed_6d");
        x = InceptionC(x, 192, "Mixed_6e");
        x = InceptionD(x, "Mixed_7a");
        x = InceptionE(x, "Mixed_7b");
        x = InceptionE(x, "Mixed_7c");
        if (!o.IncludeTop) return new Model(inputs, Heads.Pool(x, o.Pooling, "avgpool", "maxpool_global"), "inception_v3_tv");
        x = new GlobalAveragePooling2D(name: "avgpool").Apply(x); // AdaptiveAvgPool2d((1, 1)); flatten
        x = new Dropout(0.5, name: "dropout").Apply(x);
        x = new Dense(o.Classes, activation: o.ClassifierActivation, name: "fc").Apply(x);
        return new Model(inputs, x, "inception_v3_tv");
    }
}
