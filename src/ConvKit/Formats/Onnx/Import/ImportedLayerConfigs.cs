using System.Text.Json.Nodes;
using ConvKit.Layers;
using ConvKit.Saving;

namespace ConvKit.Formats.Onnx;

/// <summary>
/// Native-format configs (Keras' get_config/from_config) of the layers the ONNX importer introduced, so that an imported
/// model saves and loads as any other (<c>convkit import</c> writes a model folder with <see cref="Models.Model.Save"/>).
/// </summary>
internal static class ImportedLayerConfigs
{
    static JsonArray Longs(IEnumerable<long> v) => [.. v.Select(x => (JsonNode)x)];

    static JsonArray Ints(IEnumerable<int> v) => [.. v.Select(x => (JsonNode)x)];

    static long[] LongsOf(JsonNode? n) => ((JsonArray)n!).Select(x => (long)x!).ToArray();

    static int[] IntsOf(JsonNode? n) => ((JsonArray)n!).Select(x => (int)x!).ToArray();

    static DataFormat FormatOf(JsonNode? n) => Enum.Parse<DataFormat>((string)n!);

    public static void Register()
    {
        LayerRegistry.Register<Reshape>("Reshape", l => new JsonObject { ["target_shape"] = Longs(l.TargetShape), ["data_format"] = l.DataFormat.ToString() },
            (c, name) => new Reshape(LongsOf(c["target_shape"]), FormatOf(c["data_format"]), name));
        LayerRegistry.Register<Permute>("Permute", l => new JsonObject { ["dims"] = Ints(l.Dims), ["data_format"] = l.DataFormat.ToString() },
            (c, name) => new Permute(IntsOf(c["dims"]), FormatOf(c["data_format"]), name));
        LayerRegistry.Register<Slice>("Slice", l => new JsonObject { ["axis"] = l.Axis, ["start"] = l.Start, ["length"] = l.Length },
            (c, name) => new Slice((int)c["axis"]!, (int)c["start"]!, (int)c["length"]!, name));
        LayerRegistry.Register<Arithmetic>("Arithmetic", l => new JsonObject
        {
            ["operator"] = l.Operator.ToString(),
            ["constant_shape"] = l.ConstantShape is { } s ? Longs(s) : null,
            ["constant_first"] = l.ConstantFirst,
            ["constant_trainable"] = l.ConstantTrainable,
        }, (c, name) => c["constant_shape"] is JsonArray
            ? new Arithmetic(Enum.Parse<ArithmeticOperator>((string)c["operator"]!), LongsOf(c["constant_shape"]), (bool)c["constant_first"]!, (bool)c["constant_trainable"]!, name)
            : new Arithmetic(Enum.Parse<ArithmeticOperator>((string)c["operator"]!), name));
        LayerRegistry.Register<PaddedPooling2D>("PaddedPooling2D", l => new JsonObject
        {
            ["kind"] = l.Kind.ToString(),
            ["pool_size"] = Ints([l.PoolSize.Height, l.PoolSize.Width]),
            ["strides"] = Ints([l.Strides.Height, l.Strides.Width]),
            ["pads"] = Ints([l.Pads.Top, l.Pads.Left, l.Pads.Bottom, l.Pads.Right]),
            ["ceil_mode"] = l.CeilMode,
            ["count_include_pad"] = l.CountIncludePad,
        }, (c, name) =>
        {
            var p = IntsOf(c["pool_size"]);
            var s = IntsOf(c["strides"]);
            var pads = IntsOf(c["pads"]);
            return new PaddedPooling2D(Enum.Parse<PoolingKind>((string)c["kind"]!), (p[0], p[1]), (s[0], s[1]), (pads[0], pads[1], pads[2], pads[3]),
                (bool)c["ceil_mode"]!, (bool)c["count_include_pad"]!, name);
        });
    }
}
