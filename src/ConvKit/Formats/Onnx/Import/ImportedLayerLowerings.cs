using ConvKit.Layers;
using ConvKit.Saving;

namespace ConvKit.Formats.Onnx;

/// <summary>
/// ONNX export lowerings of the layers the importer introduced (graph values in the internal NCHW layout), so that an
/// imported model re-exports, and imported -> exported -> imported is idempotent.
/// </summary>
internal static class ImportedLayerLowerings
{
    public static void Register()
    {
        OnnxExport.Register<PaddedPooling2D>((c, l) =>
        {
            var attrs = new List<OnnxAttribute>
            {
                OnnxAttribute.Ints("kernel_shape", l.PoolSize.Height, l.PoolSize.Width),
                OnnxAttribute.Ints("strides", l.Strides.Height, l.Strides.Width),
                OnnxAttribute.Ints("pads", l.Pads.Top, l.Pads.Left, l.Pads.Bottom, l.Pads.Right),
                OnnxAttribute.Int("ceil_mode", l.CeilMode ? 1 : 0),
            };
            if (l.Kind == PoolingKind.Average) attrs.Add(OnnxAttribute.Int("count_include_pad", l.CountIncludePad ? 1 : 0));
            c.Graph.AddNode(l.Kind == PoolingKind.Max ? "MaxPool" : "AveragePool", [c.Inputs[0]], [c.Output], attrs, name: c.Output);
        });
        OnnxExport.Register<Arithmetic>((c, l) =>
        {
            var op = l.Operator switch
            {
                ArithmeticOperator.Add => "Add",
                ArithmeticOperator.Subtract => "Sub",
                ArithmeticOperator.Multiply => "Mul",
                _ => "Div",
            };
            if (l.Constant is not { } constant)
            {
                c.Graph.AddNode(op, [c.Inputs[0], c.Inputs[1]], [c.Output], name: c.Output);
                return;
            }
            var k = c.Weight(constant, "constant");
            c.Graph.AddNode(op, l.ConstantFirst ? [k, c.Inputs[0]] : [c.Inputs[0], k], [c.Output], name: c.Output);
        });
        OnnxExport.Register<Slice>((c, l) => c.Graph.AddNode("Slice",
            [c.Inputs[0], c.Constant([(long)l.Start], 1), c.Constant([(long)l.Start + l.Length], 1), c.Constant([(long)l.Axis], 1)],
            [c.Output], name: c.Output));
        OnnxExport.Register<Reshape>((c, l) =>
        {
            int inRank = c.InputShapes[0].Rank + 1, outRank = l.TargetShape.Count + 1;
            bool keras = l.DataFormat == DataFormat.ChannelsLast;
            var x = c.Inputs[0];
            if (keras && inRank == 4) x = Transpose(c, x, c.NewName("to_nhwc"), [0, 2, 3, 1]);
            var shape = c.Constant([0L, .. l.TargetShape], outRank);
            var y = keras && outRank == 4 ? c.NewName("reshaped") : c.Output;
            c.Graph.AddNode("Reshape", [x, shape], [y], name: y);
            if (keras && outRank == 4) Transpose(c, y, c.Output, [0, 3, 1, 2]);
        });
        OnnxExport.Register<Permute>((c, l) =>
        {
            int rank = l.Dims.Count + 1;
            long[] perm = [0, .. l.Dims.Select(d => (long)d)];
            if (l.DataFormat == DataFormat.ChannelsLast && rank == 4)
            {
                // internal (NCHW) -> Keras (NHWC) -> permuted -> internal: one transpose.
                long[] toKeras = [0, 2, 3, 1], toInternal = [0, 3, 1, 2];
                var composed = new long[4];
                for (int i = 0; i < 4; i++) composed[i] = toKeras[perm[toInternal[i]]];
                perm = composed;
            }
            Transpose(c, c.Inputs[0], c.Output, perm);
        });
    }

    static string Transpose(OnnxLayerContext c, string input, string output, long[] perm)
    {
        c.Graph.AddNode("Transpose", [input], [output], [OnnxAttribute.Ints("perm", perm)], name: output);
        return output;
    }
}
