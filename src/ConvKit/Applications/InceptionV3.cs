// Inception v3 (Szegedy et al. 2016) exactly as keras.applications.InceptionV3 (keras/src/applications/inception_v3.py).
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>
/// keras.applications' InceptionV3: a stem of conv2d_bn blocks, mixed0-mixed10, then avg_pool and predictions.
/// Layer names follow Keras (automatic conv2d_N / batch_normalization_N / activation_N, named concatenations), so Keras
/// weight files map by name.
/// </summary>
public static class InceptionV3
{
    /// <summary>Keras' conv2d_bn: Conv2D without bias, BatchNormalization(scale=False), ReLU; padding defaults to "same".</summary>
    public static SymbolicTensor Conv2dBn(SymbolicTensor x, int filters, int rows, int cols, Padding? padding = null, int strides = 1)
    {
        x = new Conv2D(filters, (rows, cols), strides: strides, padding: padding ?? Padding.Same, useBias: false).Apply(x);
        x = new BatchNormalization(scale: false).Apply(x);
        return new Activation("relu").Apply(x);
    }

    static SymbolicTensor AvgPool3(SymbolicTensor x) => new AveragePooling2D(3, strides: 1, padding: Padding.Same).Apply(x);

    static SymbolicTensor Concat(string? name, params SymbolicTensor[] xs) => new Concatenate(axis: -1, name: name).Apply(xs);

    /// <summary>Builds the model.</summary>
    public static Model Build(ResolvedOptions o)
    {
        var inputs = Heads.Input(o);
        var x = Conv2dBn(inputs, 32, 3, 3, Padding.Valid, strides: 2);
        x = Conv2dBn(x, 32, 3, 3, Padding.Valid);
        x = Conv2dBn(x, 64, 3, 3);
        x = new MaxPooling2D(3, strides: 2).Apply(x);
        x = Conv2dBn(x, 80, 1, 1, Padding.Valid);
        x = Conv2dBn(x, 192, 3, 3, Padding.Valid);
        x = new MaxPooling2D(3, strides: 2).Apply(x);

        // mixed 0, 1, 2: 35 x 35 x 256/288/288
        foreach (var (pool, name) in new[] { (32, "mixed0"), (64, "mixed1"), (64, "mixed2") })
        {
            var b1x1 = Conv2dBn(x, 64, 1, 1);
            var b5x5 = Conv2dBn(Conv2dBn(x, 48, 1, 1), 64, 5, 5);
            var b3x3dbl = Conv2dBn(Conv2dBn(Conv2dBn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3);
            var bPool = Conv2dBn(AvgPool3(x), pool, 1, 1);
            x = Concat(name, b1x1, b5x5, b3x3dbl, bPool);
        }

        // mixed 3: 17 x 17 x 768
        {
            var b3x3 = Conv2dBn(x, 384, 3, 3, Padding.Valid, strides: 2);
            var b3x3dbl = Conv2dBn(Conv2dBn(Conv2dBn(x, 64, 1, 1), 96, 3, 3), 96, 3, 3, Padding.Valid, strides: 2);
            var bPool = new MaxPooling2D(3, strides: 2).Apply(x);
            x = Concat("mixed3", b3x3, b3x3dbl, bPool);
        }

        // mixed 4, 5, 6, 7: 17 x 17 x 768, with 7x7 factorised into 1x7 and 7x1
        foreach (var (f, name) in new[] { (128, "mixed4"), (160, "mixed5"), (160, "mixed6"), (192, "mixed7") })
        {
            var b1x1 = Conv2dBn(x, 192, 1, 1);
            var b7x7 = Conv2dBn(Conv2dBn(Conv2dBn(x, f, 1, 1), f, 1, 7), 192, 7, 1);
            var b7x7dbl = Conv2dBn(x, f, 1, 1);
            b7x7dbl = Conv2dBn(b7x7dbl, f, 7, 1);
            b7x7dbl = Conv2dBn(b7x7dbl, f, 1, 7);
            b7x7dbl = Conv2dBn(b7x7dbl, f, 7, 1);
            b7x7dbl = Conv2dBn(b7x7dbl, 192, 1, 7);
            var bPool = Conv2dBn(AvgPool3(x), 192, 1, 1);
            x = Concat(name, b1x1, b7x7, b7x7dbl, bPool);
        }

        // mixed 8: 8 x 8 x 1280
        {
            var b3x3 = Conv2dBn(Conv2dBn(x, 192, 1, 1), 320, 3, 3, Padding.Valid, strides: 2);
            var b7x7x3 = Conv2dBn(x, 192, 1, 1);
            b7x7x3 = Conv2dBn(b7x7x3, 192, 1, 7);
            b7x7x3 = Conv2dBn(b7x7x3, 192, 7, 1);
            b7x7x3 = Conv2dBn(b7x7x3, 192, 3, 3, Padding.Valid, strides: 2);
            var bPool = new MaxPooling2D(3, strides: 2).Apply(x);
            x = Concat("mixed8", b3x3, b7x7x3, bPool);
        }

        // mixed 9, 10: 8 x 8 x 2048
        for (int i = 0; i < 2; i++)
        {
            var b1x1 = Conv2dBn(x, 320, 1, 1);
            var b3x3 = Conv2dBn(x, 384, 1, 1);
            b3x3 = Concat($"mixed9_{i}", Conv2dBn(b3x3, 384, 1, 3), Conv2dBn(b3x3, 384, 3, 1));
            var b3x3dbl = Conv2dBn(Conv2dBn(x, 448, 1, 1), 384, 3, 3);
            b3x3dbl = Concat(null, Conv2dBn(b3x3dbl, 384, 1, 3), Conv2dBn(b3x3dbl, 384, 3, 1));
            var bPool = Conv2dBn(AvgPool3(x), 192, 1, 1);
            x = Concat($"mixed{9 + i}", b1x1, b3x3, b3x3dbl, bPool);
        }

        if (o.IncludeTop)
        {
            x = new GlobalAveragePooling2D(name: "avg_pool").Apply(x);
            x = new Dense(o.Classes, activation: o.ClassifierActivation, name: "predictions").Apply(x);
        }
        else x = Heads.Pool(x, o.Pooling);
        return new Model(inputs, x, "inception_v3");
    }
}
