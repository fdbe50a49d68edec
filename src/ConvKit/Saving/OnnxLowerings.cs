using ConvKit.Layers;
using ConvKit.Native;
using static TorchSharp.ScalarExtensionMethods;
using static TorchSharp.torch;

namespace ConvKit.Saving;

/// <summary>The ONNX lowerings of ConvKit's built-in layers (graph values in the internal NCHW layout).</summary>
internal static class OnnxLowerings
{
    public static void RegisterBuiltIns()
    {
        OnnxExport.Register<Conv2D>(Conv2D);
        OnnxExport.Register<Conv2DTranspose>(Conv2DTranspose);
        Formats.Onnx.ImportedLayerLowerings.Register();
        OnnxExport.Register<Dense>(Dense);
        OnnxExport.Register<Flatten>((c, _) => c.Graph.AddNode("Flatten", [c.Inputs[0]], [c.Output], [OnnxAttribute.Int("axis", 1)], name: c.Output));
        OnnxExport.Register<MaxPooling2D>(MaxPool);
        OnnxExport.Register<MaxPool2D>(MaxPool);
        OnnxExport.Register<AveragePooling2D>(AvgPool);
        OnnxExport.Register<AvgPool2D>(AvgPool);
        OnnxExport.Register<AdaptiveAveragePooling2D>(AdaptiveAvgPool);
        OnnxExport.Register<GlobalAveragePooling2D>((c, l) => GlobalPool(c, "GlobalAveragePool", l.KeepDims));
        OnnxExport.Register<GlobalMaxPooling2D>((c, l) => GlobalPool(c, "GlobalMaxPool", l.KeepDims));
        OnnxExport.Register<BatchNormalization>(BatchNorm);
        OnnxExport.Register<Dropout>((c, _) => c.Graph.AddNode("Identity", [c.Inputs[0]], [c.Output], name: c.Output));
        OnnxExport.Register<Activation>((c, l) => c.Activation(l.Function, c.Inputs[0], c.Output, c.InputShapes[0].Rank + 1));
        OnnxExport.Register<ReLU>((c, l) => c.Activation(l.Function, c.Inputs[0], c.Output, c.InputShapes[0].Rank + 1));
        OnnxExport.Register<Softmax>((c, l) => c.Activation(l.Function, c.Inputs[0], c.Output, c.InputShapes[0].Rank + 1));
        OnnxExport.Register<LeakyReLU>((c, l) =>
            c.Graph.AddNode("LeakyRelu", [c.Inputs[0]], [c.Output], [OnnxAttribute.Float("alpha", (float)l.Alpha)], name: c.Output));
        OnnxExport.Register<ELU>((c, l) =>
            c.Graph.AddNode("Elu", [c.Inputs[0]], [c.Output], [OnnxAttribute.Float("alpha", (float)l.Alpha)], name: c.Output));
        OnnxExport.Register<Add>((c, _) => c.Graph.AddNode("Sum", c.Inputs, [c.Output], name: c.Output));
        OnnxExport.Register<Concatenate>((c, l) => c.Graph.AddNode("Concat", c.Inputs, [c.Output],
            [OnnxAttribute.Int("axis", Layout.ToInternalAxis(l.Axis, c.InputShapes[0].Rank + 1))], name: c.Output));
        OnnxExport.Register<ZeroPadding2D>((c, l) =>
        {
            // ONNX pads: all beginnings (N, C, H, W), then all ends.
            var pads = c.Constant(new long[] { 0, 0, l.Top, l.Left, 0, 0, l.Bottom, l.Right }, 8);
            c.Graph.AddNode("Pad", [c.Inputs[0], pads], [c.Output], [OnnxAttribute.String("mode", "constant")], name: c.Output);
        });
        OnnxExport.Register<LocalResponseNormalization>((c, l) =>
            // ConvKit (TensorFlow) divides by (bias + alpha * sum)^beta; ONNX by (bias + alpha / size * sum)^beta.
            c.Graph.AddNode("LRN", [c.Inputs[0]], [c.Output],
            [
                OnnxAttribute.Int("size", l.Size), OnnxAttribute.Float("alpha", (float)(l.Alpha * l.Size)),
                OnnxAttribute.Float("beta", (float)l.Beta), OnnxAttribute.Float("bias", (float)l.Bias),
            ], name: c.Output));
        OnnxExport.Register<Rescaling>((c, l) =>
        {
            var scale = c.Constant([(float)l.Scale]);
            if (l.Offset == 0)
            {
                c.Graph.AddNode("Mul", [c.Inputs[0], scale], [c.Output], name: c.Output);
                return;
            }
            var scaled = c.NewName("scaled");
            c.Graph.AddNode("Mul", [c.Inputs[0], scale], [scaled], name: scaled);
            c.Graph.AddNode("Add", [scaled, c.Constant([(float)l.Offset])], [c.Output], name: c.Output);
        });
    }

    static void Conv2D(OnnxLayerContext c, Conv2D l)
    {
        var x = c.InputShapes[0];
        var ins = new List<string> { c.Inputs[0], c.Weight(l.Kernel!, "kernel") };
        if (l.Bias is { } b) ins.Add(c.Weight(b, "bias"));
        var attrs = new List<OnnxAttribute>
        {
            OnnxAttribute.Ints("kernel_shape", l.KernelSize.Height, l.KernelSize.Width),
            OnnxAttribute.Ints("strides", l.Strides.Height, l.Strides.Width),
            OnnxAttribute.Ints("dilations", l.DilationRate.Height, l.DilationRate.Width),
            OnnxAttribute.Int("group", l.Groups),
            Pads(x, l.KernelSize, l.Strides, l.Padding, l.DilationRate),
        };
        var conv = l.Activation.IsLinear ? c.Output : c.NewName("conv");
        c.Graph.AddNode("Conv", ins, [conv], attrs, name: conv);
        if (!l.Activation.IsLinear) c.Activation(l.Activation, conv, c.Output, 4);
    }

    static void Conv2DTranspose(OnnxLayerContext c, Conv2DTranspose l)
    {
        var ins = new List<string> { c.Inputs[0], c.Weight(l.Kernel!, "kernel") };
        if (l.Bias is { } b) ins.Add(c.Weight(b, "bias"));
        // The crop does not depend on the input size, so these attributes hold for a free one too. ONNX pads crop;
        // output_padding adds the zero cells a negative crop (a kernel shorter than its stride, Keras' output_padding) means.
        var (top, bottom, left, right) = l.Crop;
        var attrs = new List<OnnxAttribute>
        {
            OnnxAttribute.Ints("kernel_shape", l.KernelSize.Height, l.KernelSize.Width),
            OnnxAttribute.Ints("strides", l.Strides.Height, l.Strides.Width),
            OnnxAttribute.Ints("dilations", l.DilationRate.Height, l.DilationRate.Width),
            OnnxAttribute.Int("group", l.Groups),
            OnnxAttribute.Ints("pads", Math.Max(top, 0), Math.Max(left, 0), Math.Max(bottom, 0), Math.Max(right, 0)),
            OnnxAttribute.Ints("output_padding", Math.Max(-bottom, 0), Math.Max(-right, 0)),
        };
        var y = l.Activation.IsLinear ? c.Output : c.NewName("conv_transpose");
        c.Graph.AddNode("ConvTranspose", ins, [y], attrs, name: y);
        if (!l.Activation.IsLinear) c.Activation(l.Activation, y, c.Output, 4);
    }

    /// <summary>
    /// Explicit [top, left, bottom, right] pads, so that Keras' asymmetric 'same' (the odd pixel bottom/right) survives;
    /// SAME_UPPER (the same rule) when the spatial size is only known at run time.
    /// </summary>
    static OnnxAttribute Pads(Shape x, Size2 kernel, Size2 strides, Padding padding, Size2 dilation)
    {
        if (padding == Padding.Same && (x[0] == Shape.Unknown || x[1] == Shape.Unknown))
            return OnnxAttribute.String("auto_pad", "SAME_UPPER");
        var (top, bottom) = ConvArithmetic.Pads(x[0], kernel.Height, strides.Height, padding, dilation.Height);
        var (left, right) = ConvArithmetic.Pads(x[1], kernel.Width, strides.Width, padding, dilation.Width);
        return OnnxAttribute.Ints("pads", top, left, bottom, right);
    }

    static void Dense(OnnxLayerContext c, Dense l)
    {
        int rank = c.InputShapes[0].Rank + 1;
        var y = l.Activation.IsLinear ? c.Output : c.NewName("linear");
        if (rank == 2)
        {
            var ins = new List<string> { c.Inputs[0], c.Weight(l.Kernel!, "kernel") };
            if (l.Bias is { } b) ins.Add(c.Weight(b, "bias"));
            c.Graph.AddNode("Gemm", ins, [y], [OnnxAttribute.Int("transB", 1)], name: y);
        }
        else
        {
            // Gemm is 2-D only: MatMul broadcasts over the leading axes.
            var kernelT = c.Exporter.DerivedWeight(l, l.Kernel!, "kernel_transposed", () => l.Kernel!.detach().t().contiguous());
            var product = l.Bias is null ? y : c.NewName("matmul");
            c.Graph.AddNode("MatMul", [c.Inputs[0], kernelT], [product], name: product);
            if (l.Bias is { } b) c.Graph.AddNode("Add", [product, c.Weight(b, "bias")], [y], name: y);
        }
        if (!l.Activation.IsLinear) c.Activation(l.Activation, y, c.Output, rank);
    }

    static void MaxPool(OnnxLayerContext c, MaxPooling2D l) =>
        // ONNX MaxPool pads with -inf implicitly, as Keras' 'same' max pooling does.
        c.Graph.AddNode("MaxPool", [c.Inputs[0]], [c.Output],
        [
            OnnxAttribute.Ints("kernel_shape", l.PoolSize.Height, l.PoolSize.Width),
            OnnxAttribute.Ints("strides", l.Strides.Height, l.Strides.Width),
            Pads(c.InputShapes[0], l.PoolSize, l.Strides, l.Padding, 1),
        ], name: c.Output);

    static void AvgPool(OnnxLayerContext c, AveragePooling2D l) =>
        // count_include_pad=0 divides by the cells inside the input, which is Keras' 'same' average.
        c.Graph.AddNode("AveragePool", [c.Inputs[0]], [c.Output],
        [
            OnnxAttribute.Ints("kernel_shape", l.PoolSize.Height, l.PoolSize.Width),
            OnnxAttribute.Ints("strides", l.Strides.Height, l.Strides.Width),
            Pads(c.InputShapes[0], l.PoolSize, l.Strides, l.Padding, 1),
            OnnxAttribute.Int("count_include_pad", 0),
        ], name: c.Output);

    /// <summary>
    /// ONNX has no adaptive pooling, but adaptive average pooling is linear and separable: along each axis it multiplies
    /// by a constant (output, input) averaging matrix A (A[i, j] = 1 / |window i| for j in window i). With x in
    /// (N, C, H, W): y = A_h · x · A_wᵀ, two MatMuls; an axis whose size does not change is skipped (A is the identity).
    /// </summary>
    static void AdaptiveAvgPool(OnnxLayerContext c, AdaptiveAveragePooling2D l)
    {
        var x = c.InputShapes[0];
        var (oh, ow) = (l.OutputSize.Height, l.OutputSize.Width);
        if (x[0] == Shape.Unknown || x[1] == Shape.Unknown)
        {
            if (oh != 1 || ow != 1)
                throw new UnsupportedException($"{c.Layer.Describe}: ONNX has no adaptive pooling; its lowering needs the input's height and width, which are unknown. Export with a fixed input shape.");
            c.Graph.AddNode("GlobalAveragePool", [c.Inputs[0]], [c.Output], name: c.Output);
            return;
        }
        int h = x[0], w = x[1];
        bool poolH = h != oh, poolW = w != ow;
        if (!poolH && !poolW)
        {
            c.Graph.AddNode("Identity", [c.Inputs[0]], [c.Output], name: c.Output);
            return;
        }
        string input = c.Inputs[0];
        if (poolW)
        {
            // x · A_wᵀ: (N, C, H, W) x (W, OW).
            var product = poolH ? c.NewName("pooled_width") : c.Output;
            c.Graph.AddNode("MatMul", [input, c.Constant(AveragingMatrix(w, ow, transpose: true), w, ow)], [product], name: product);
            input = product;
        }
        if (poolH)
            // A_h · x: (OH, H) x (N, C, H, OW), broadcast over N and C.
            c.Graph.AddNode("MatMul", [c.Constant(AveragingMatrix(h, oh, transpose: false), oh, h), input], [c.Output], name: c.Output);
    }

    /// <summary>Row-major (output, input) averaging matrix of an adaptive pooling axis, or its transpose.</summary>
    static float[] AveragingMatrix(int input, int output, bool transpose)
    {
        var m = new float[input * output];
        for (int i = 0; i < output; i++)
        {
            var (start, end) = ConvArithmetic.AdaptiveWindow(input, output, i);
            for (int j = start; j < end; j++) m[transpose ? j * output + i : i * input + j] = 1f / (end - start);
        }
        return m;
    }

    static void GlobalPool(OnnxLayerContext c, string op, bool keepDims)
    {
        // The ONNX ops keep (N, C, 1, 1), which is the internal layout of keepdims=True.
        if (keepDims)
        {
            c.Graph.AddNode(op, [c.Inputs[0]], [c.Output], name: c.Output);
            return;
        }
        var pooled = c.NewName("pooled");
        c.Graph.AddNode(op, [c.Inputs[0]], [pooled], name: pooled);
        c.Graph.AddNode("Flatten", [pooled], [c.Output], [OnnxAttribute.Int("axis", 1)], name: c.Output);
    }

    static void BatchNorm(OnnxLayerContext c, BatchNormalization l)
    {
        int rank = c.InputShapes[0].Rank + 1;
        int axis = Layout.ToInternalAxis(l.Axis, rank);
        var mean = l.MovingMean!;
        var variance = l.MovingVariance!;
        long n = mean.shape[0];
        if (axis == 1 && rank >= 3)
        {
            // scale=False / center=False: the op still takes gamma and beta, as ones and zeros.
            using var ones = TorchSharp.torch.ones(n);
            using var zeros = TorchSharp.torch.zeros(n);
            var gamma = l.Gamma is { } g ? c.Weight(g, "gamma") : c.Constant(ones.data<float>().ToArray(), n);
            var beta = l.Beta is { } b ? c.Weight(b, "beta") : c.Constant(zeros.data<float>().ToArray(), n);
            c.Graph.AddNode("BatchNormalization", [c.Inputs[0], gamma, beta, c.Weight(mean, "moving_mean"), c.Weight(variance, "moving_variance")],
                [c.Output], [OnnxAttribute.Float("epsilon", (float)l.Epsilon)], name: c.Output);
            return;
        }
        // Any other axis (or a 2-D input): the inference transform folded into y = x * s + t, broadcast along the axis.
        using var scope = NewDisposeScope();
        using var epsilon = l.Epsilon.ToScalar();
        var inv = variance.detach().to(float64).add(epsilon, Scalars.One).rsqrt();
        var s = l.Gamma is { } gm ? gm.detach().to(float64) * inv : inv;
        var t = (l.Beta is { } bt ? bt.detach().to(float64) : TorchSharp.torch.zeros(n, dtype: float64)) - mean.detach().to(float64) * s;
        long[] dims = [n, .. Enumerable.Repeat(1L, rank - 1 - axis)];
        var sName = c.Constant(s.to(float32).data<float>().ToArray(), dims);
        var tName = c.Constant(t.to(float32).data<float>().ToArray(), dims);
        var scaled = c.NewName("scaled");
        c.Graph.AddNode("Mul", [c.Inputs[0], sName], [scaled], name: scaled);
        c.Graph.AddNode("Add", [scaled, tName], [c.Output], name: c.Output);
    }

    public static void Activation(OnnxLayerContext c, ActivationFunction f, string input, string output, int rank)
    {
        void Unary(string op, params OnnxAttribute[] attrs) => c.Graph.AddNode(op, [input], [output], attrs, name: output);
        if (ReferenceEquals(f, Activations.Linear)) Unary("Identity");
        else if (ReferenceEquals(f, Activations.ReLU)) Unary("Relu");
        else if (ReferenceEquals(f, Activations.Tanh)) Unary("Tanh");
        else if (ReferenceEquals(f, Activations.Sigmoid)) Unary("Sigmoid");
        else if (ReferenceEquals(f, Activations.Softmax)) Unary("Softmax", OnnxAttribute.Int("axis", rank == 4 ? 1 : -1));
        else if (ReferenceEquals(f, Activations.Elu)) Unary("Elu", OnnxAttribute.Float("alpha", 1f));
        else if (ReferenceEquals(f, Activations.Selu)) Unary("Selu"); // ONNX's default alpha and gamma are SELU's constants
        else if (ReferenceEquals(f, Activations.Softplus)) Unary("Softplus");
        else if (ReferenceEquals(f, Activations.HardSigmoid)) Unary("HardSigmoid", OnnxAttribute.Float("alpha", 1f / 6), OnnxAttribute.Float("beta", 0.5f));
        else if (ReferenceEquals(f, Activations.HardSwish)) Unary("HardSwish");
        else if (ReferenceEquals(f, Activations.ReLU6))
            c.Graph.AddNode("Clip", [input, c.Constant([0f]), c.Constant([6f])], [output], name: output);
        else if (ReferenceEquals(f, Activations.Swish))
        {
            var sig = c.NewName("sigmoid");
            c.Graph.AddNode("Sigmoid", [input], [sig], name: sig);
            c.Graph.AddNode("Mul", [input, sig], [output], name: output);
        }
        else if (ReferenceEquals(f, Activations.Gelu))
        {
            // Exact GELU (torch's default): x * (1 + erf(x / sqrt 2)) / 2; the Gelu op only exists from opset 20.
            string Step(string op, string hint, params string[] ins)
            {
                var name = c.NewName(hint);
                c.Graph.AddNode(op, ins, [name], name: name);
                return name;
            }
            var scaled = Step("Mul", "gelu_scaled", input, c.Constant([(float)(1 / Math.Sqrt(2))]));
            var erf = Step("Erf", "gelu_erf", scaled);
            var plus = Step("Add", "gelu_plus1", erf, c.Constant([1f]));
            var half = Step("Mul", "gelu_half", input, c.Constant([0.5f]));
            c.Graph.AddNode("Mul", [half, plus], [output], name: output);
        }
        else if (f.Name == "leaky_relu" && LeakySlope(f) is { } slope) Unary("LeakyRelu", OnnxAttribute.Float("alpha", (float)slope));
        else
            throw new UnsupportedException($"{c.Layer.Describe}: activation '{f.Name}' has no ONNX lowering (a custom ActivationFunction). Use a built-in activation, or put the computation in a layer and register its lowering with OnnxExport.Register.");
    }

    /// <summary>
    /// The negative slope of a leaky ReLU made by <see cref="Activations.LeakyReLUWith"/> (which keeps no slope), read
    /// off the function and checked, so that a custom function that merely shares the name is not mistaken for one.
    /// </summary>
    static double? LeakySlope(ActivationFunction f)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = tensor(new double[] { -3, -1, 0, 2.5 });
        var y = f.Apply(x.clone()).to(float64).data<double>().ToArray();
        double slope = -y[1];
        double[] expected = [-3 * slope, -slope, 0, 2.5];
        for (int i = 0; i < 4; i++)
            if (Math.Abs(y[i] - expected[i]) > 1e-9 * (1 + Math.Abs(expected[i]))) return null;
        return slope;
    }
}
