using System.Text.Json.Nodes;
using ConvKit.Layers;

namespace ConvKit.Saving;

/// <summary>
/// A layer that can describe its constructor arguments (Keras' <c>get_config</c>) and be rebuilt from them
/// (<c>from_config</c>). Implement it on a custom layer and call <see cref="LayerRegistry.Register{T}()"/> once so
/// <see cref="Models.Model.Load"/> can rebuild models that contain it.
/// </summary>
public interface IConfigurableLayer<TSelf> where TSelf : Layer, IConfigurableLayer<TSelf>
{
    /// <summary>The constructor arguments, as JSON; the registry adds "name" and "trainable" itself.</summary>
    JsonObject GetConfig();

    /// <summary>Builds a layer from <see cref="GetConfig"/>'s output; <paramref name="name"/> is the saved layer name.</summary>
    static abstract TSelf FromConfig(JsonObject config, string name);
}

/// <summary>
/// Maps layer classes to (get_config, from_config) pairs by a stable class name, as Keras' serialization registry.
/// Every built-in layer is registered; custom layers register with <see cref="Register{T}(string, Func{T, JsonObject}, Func{JsonObject, string, T})"/>.
/// A registered class name can also name a subclassed <see cref="Models.Model"/>, whose factory rebuilds it from its config.
/// </summary>
public static class LayerRegistry
{
    sealed record Entry(string ClassName, Type Type, Func<Layer, JsonObject> GetConfig, Func<JsonObject, string, Layer> FromConfig);

    static readonly Dictionary<string, Entry> ByName = new(StringComparer.Ordinal);
    static readonly Dictionary<Type, Entry> ByType = new();
    static readonly object Gate = new();

    static LayerRegistry() => RegisterBuiltIns();

    /// <summary>Registers <typeparamref name="T"/> under <paramref name="className"/> (replacing an earlier registration of that name or type).</summary>
    /// <exception cref="InvalidOptionException">The class name is empty.</exception>
    public static void Register<T>(string className, Func<T, JsonObject> getConfig, Func<JsonObject, string, T> fromConfig) where T : Layer
    {
        Require.NotBlank(className);
        ArgumentNullException.ThrowIfNull(getConfig);
        ArgumentNullException.ThrowIfNull(fromConfig);
        var e = new Entry(className, typeof(T), l => getConfig((T)l), (c, n) => fromConfig(c, n));
        lock (Gate)
        {
            if (ByName.TryGetValue(className, out var old)) ByType.Remove(old.Type);
            if (ByType.TryGetValue(typeof(T), out var oldT)) ByName.Remove(oldT.ClassName);
            ByName[className] = e;
            ByType[typeof(T)] = e;
        }
    }

    /// <summary>Registers a layer that implements <see cref="IConfigurableLayer{TSelf}"/>, under its type name.</summary>
    public static void Register<T>() where T : Layer, IConfigurableLayer<T> =>
        Register<T>(typeof(T).Name, l => l.GetConfig(), T.FromConfig);

    /// <summary>Whether <paramref name="className"/> is registered.</summary>
    public static bool IsRegistered(string className)
    {
        lock (Gate) return ByName.ContainsKey(className);
    }

    internal static bool TryGetClassName(Layer layer, out string className)
    {
        lock (Gate)
        {
            if (ByType.TryGetValue(layer.GetType(), out var e))
            {
                className = e.ClassName;
                return true;
            }
        }
        className = "";
        return false;
    }

    /// <summary>An input's config: its declared shape, and Keras' data_format when channels-first.</summary>
    internal static JsonObject InputLayerConfig(InputLayer l)
    {
        var config = new JsonObject { ["shape"] = ShapeJson(l.DeclaredShape) };
        if (l.DataFormat == DataFormat.ChannelsFirst) config["data_format"] = "channels_first";
        return config;
    }

    /// <summary>The data format of an input's config: channels-last unless it says channels_first.</summary>
    internal static DataFormat InputDataFormat(JsonObject? config) => (string?)config?["data_format"] switch
    {
        null or "channels_last" => DataFormat.ChannelsLast,
        "channels_first" => DataFormat.ChannelsFirst,
        var other => throw new InvalidFileException($"InputLayer config has data_format '{other}'; expected channels_last or channels_first."),
    };

    internal static JsonObject GetConfig(Layer layer)
    {
        Entry? e;
        lock (Gate) ByType.TryGetValue(layer.GetType(), out e);
        if (e is null)
            throw new UnsupportedException($"{layer.Describe}: its class {layer.GetType().FullName} is not registered for saving. " +
                "Register it with LayerRegistry.Register<T>(className, getConfig, fromConfig), or save weights only with SaveWeights.");
        return e.GetConfig(layer);
    }

    internal static Layer FromConfig(string className, JsonObject config, string name, string file)
    {
        Entry? e;
        lock (Gate) ByName.TryGetValue(className, out e);
        if (e is null)
            throw new UnknownNameException("layer class", className, $"'{file}': layer '{name}' has class '{className}', which is not registered. " +
                "Call LayerRegistry.Register<T>(\"" + className + "\", getConfig, fromConfig) before Model.Load.");
        Layer layer;
        try
        {
            layer = e.FromConfig(config, name);
        }
        catch (Exception ex) when (ex is InvalidFileException or InvalidOperationException or FormatException or NullReferenceException or KeyNotFoundException or System.Text.Json.JsonException or ArgumentException)
        {
            throw new InvalidFileException($"'{file}': cannot rebuild layer '{name}' ({className}) from its config {config.ToJsonString()}: {ex.Message}", ex);
        }
        if (layer.Name != name)
            throw new ConvKitException($"'{file}': the factory for '{className}' named the layer '{layer.Name}' instead of '{name}'.");
        return layer;
    }

    // ------------------------------------------------------------------ built-in layers

    static JsonArray Arr(Size2 s) => [s.Height, s.Width];

    static Size2 S2(JsonNode? n) => n is JsonArray a ? new Size2((int)a[0]!, (int)a[1]!) : (int)n!;

    static JsonArray? ShapeJson(Shape? s) => s is { } v ? new JsonArray(v.ToArray().Select(d => (JsonNode?)JsonValue.Create(d)).ToArray()) : null;

    internal static Shape? ShapeOf(JsonNode? n) => n is JsonArray a ? new Shape(a.Select(d => (int)d!).ToArray()) : null;

    static string Pad(Padding p) => p == Padding.Same ? "same" : "valid";

    static Padding PadOf(JsonNode? n) => (string?)n == "same" ? Padding.Same : Padding.Valid;

    // An initializer is its name, or Keras' {"class_name": ..., "config": {...}} when it has parameters (Constant(0.2)).
    static JsonNode? InitJson(Initializer i) => i.Parameters.Count == 0 ? JsonValue.Create(i.Name) : new JsonObject
    {
        ["class_name"] = i.Name,
        ["config"] = new JsonObject(i.Parameters.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value)))),
    };

    /// <exception cref="LayerArgumentException">An unknown initializer or a missing parameter.</exception>
    static Initializer? Init(JsonNode? n) => n switch
    {
        null => null,
        JsonObject o => Initializers.FromConfig((string)o["class_name"]!,
            (o["config"] as JsonObject)?.ToDictionary(kv => kv.Key, kv => (double)kv.Value!)),
        _ => Initializers.Get((string)n!),
    };

    static JsonNode? L2Json(L2? r) => r is null ? null : new JsonObject { ["l2"] = r.Factor };

    static L2? L2Of(JsonNode? n) => n is JsonObject o ? new L2((double)o["l2"]!) : null;

    static ActivationFunction Act(JsonNode? n, JsonNode? alpha) =>
        (string?)n == "leaky_relu" && alpha is not null ? Activations.LeakyReLUWith((double)alpha) : Activations.Get((string?)n);

    static void RegisterBuiltIns()
    {
        Formats.Onnx.ImportedLayerConfigs.Register();
        Register<Conv2D>("Conv2D", l => new JsonObject
        {
            ["filters"] = l.Filters, ["kernel_size"] = Arr(l.KernelSize), ["strides"] = Arr(l.Strides), ["padding"] = Pad(l.Padding),
            ["dilation_rate"] = Arr(l.DilationRate), ["groups"] = l.Groups, ["activation"] = l.Activation.Name, ["use_bias"] = l.UseBias,
            ["kernel_initializer"] = InitJson(l.KernelInitializer), ["bias_initializer"] = InitJson(l.BiasInitializer),
            ["kernel_regularizer"] = L2Json(l.KernelRegularizer), ["input_shape"] = ShapeJson(l.InputShape),
        }, (c, name) => new Conv2D((int)c["filters"]!, S2(c["kernel_size"]), S2(c["strides"]), PadOf(c["padding"]), S2(c["dilation_rate"]),
            (int)c["groups"]!, Act(c["activation"], null), (bool)c["use_bias"]!, Init(c["kernel_initializer"]), Init(c["bias_initializer"]),
            L2Of(c["kernel_regularizer"]), ShapeOf(c["input_shape"]), name));
        Register<Conv2DTranspose>("Conv2DTranspose", l => new JsonObject
        {
            ["filters"] = l.Filters, ["kernel_size"] = Arr(l.KernelSize), ["strides"] = Arr(l.Strides), ["padding"] = Pad(l.Padding),
            ["output_padding"] = l.OutputPadding is { } op ? Arr(op) : null, ["dilation_rate"] = Arr(l.DilationRate), ["groups"] = l.Groups,
            ["activation"] = l.Activation.Name, ["use_bias"] = l.UseBias,
            ["kernel_initializer"] = InitJson(l.KernelInitializer), ["bias_initializer"] = InitJson(l.BiasInitializer),
            ["kernel_regularizer"] = L2Json(l.KernelRegularizer), ["input_shape"] = ShapeJson(l.InputShape),
        }, (c, name) => new Conv2DTranspose((int)c["filters"]!, S2(c["kernel_size"]), S2(c["strides"]), PadOf(c["padding"]),
            c["output_padding"] is JsonNode op ? S2(op) : null, S2(c["dilation_rate"]), (int?)c["groups"] ?? 1, Act(c["activation"], null),
            (bool)c["use_bias"]!, Init(c["kernel_initializer"]), Init(c["bias_initializer"]), L2Of(c["kernel_regularizer"]),
            ShapeOf(c["input_shape"]), name));
        Register<Dense>("Dense", l => new JsonObject
        {
            ["units"] = l.Units, ["activation"] = l.Activation.Name, ["use_bias"] = l.UseBias,
            ["kernel_initializer"] = InitJson(l.KernelInitializer), ["bias_initializer"] = InitJson(l.BiasInitializer),
            ["kernel_regularizer"] = L2Json(l.KernelRegularizer), ["input_shape"] = ShapeJson(l.InputShape),
        }, (c, name) => new Dense((int)c["units"]!, Act(c["activation"], null), (bool)c["use_bias"]!, Init(c["kernel_initializer"]),
            Init(c["bias_initializer"]), L2Of(c["kernel_regularizer"]), ShapeOf(c["input_shape"]), name));
        Register<Flatten>("Flatten", l => new JsonObject { ["input_shape"] = ShapeJson(l.InputShape) },
            (c, name) => new Flatten(ShapeOf(c["input_shape"]), name));
        RegisterPooling<MaxPooling2D>("MaxPooling2D", (p, s, pad, n) => new MaxPooling2D(p, s, pad, n));
        RegisterPooling<MaxPool2D>("MaxPool2D", (p, s, pad, n) => new MaxPool2D(p, s, pad, n));
        RegisterPooling<AveragePooling2D>("AveragePooling2D", (p, s, pad, n) => new AveragePooling2D(p, s, pad, n));
        RegisterPooling<AvgPool2D>("AvgPool2D", (p, s, pad, n) => new AvgPool2D(p, s, pad, n));
        Register<AdaptiveAveragePooling2D>("AdaptiveAveragePooling2D", l => new JsonObject { ["output_size"] = Arr(l.OutputSize) },
            (c, name) => new AdaptiveAveragePooling2D(S2(c["output_size"]), name));
        Register<GlobalAveragePooling2D>("GlobalAveragePooling2D", l => new JsonObject { ["keepdims"] = l.KeepDims },
            (c, name) => new GlobalAveragePooling2D((bool)c["keepdims"]!, name));
        Register<GlobalMaxPooling2D>("GlobalMaxPooling2D", l => new JsonObject { ["keepdims"] = l.KeepDims },
            (c, name) => new GlobalMaxPooling2D((bool)c["keepdims"]!, name));
        Register<BatchNormalization>("BatchNormalization", l => new JsonObject
        {
            ["axis"] = l.Axis, ["momentum"] = l.Momentum, ["epsilon"] = l.Epsilon, ["center"] = l.Center, ["scale"] = l.Scale,
            ["beta_initializer"] = InitJson(l.BetaInitializer), ["gamma_initializer"] = InitJson(l.GammaInitializer),
            ["moving_mean_initializer"] = InitJson(l.MovingMeanInitializer), ["moving_variance_initializer"] = InitJson(l.MovingVarianceInitializer),
        }, (c, name) => new BatchNormalization((int)c["axis"]!, (double)c["momentum"]!, (double)c["epsilon"]!, (bool)c["center"]!, (bool)c["scale"]!,
            Init(c["beta_initializer"]), Init(c["gamma_initializer"]), Init(c["moving_mean_initializer"]), Init(c["moving_variance_initializer"]), name));
        Register<Dropout>("Dropout", l => new JsonObject { ["rate"] = l.Rate }, (c, name) => new Dropout((double)c["rate"]!, name));
        Register<Activation>("Activation", l => new JsonObject { ["activation"] = l.Function.Name },
            (c, name) => new Activation(Act(c["activation"], null), name));
        Register<ReLU>("ReLU", _ => [], (_, name) => new ReLU(name));
        Register<Softmax>("Softmax", _ => [], (_, name) => new Softmax(name));
        Register<LeakyReLU>("LeakyReLU", l => new JsonObject { ["alpha"] = l.Alpha }, (c, name) => new LeakyReLU((double)c["alpha"]!, name));
        Register<ELU>("ELU", l => new JsonObject { ["alpha"] = l.Alpha }, (c, name) => new ELU((double)c["alpha"]!, name));
        Register<Add>("Add", _ => [], (_, name) => new Add(name));
        Register<Concatenate>("Concatenate", l => new JsonObject { ["axis"] = l.Axis }, (c, name) => new Concatenate((int)c["axis"]!, name));
        Register<ZeroPadding2D>("ZeroPadding2D", l => new JsonObject { ["padding"] = new JsonArray(new JsonArray(l.Top, l.Bottom), new JsonArray(l.Left, l.Right)) },
            (c, name) =>
            {
                var p = (JsonArray)c["padding"]!;
                return new ZeroPadding2D(((int)p[0]![0]!, (int)p[0]![1]!), ((int)p[1]![0]!, (int)p[1]![1]!), name);
            });
        Register<LocalResponseNormalization>("LocalResponseNormalization", l => new JsonObject
        {
            ["depth_radius"] = l.DepthRadius, ["bias"] = l.Bias, ["alpha"] = l.Alpha, ["beta"] = l.Beta,
        }, (c, name) => new LocalResponseNormalization((int)c["depth_radius"]!, (double)c["bias"]!, (double)c["alpha"]!, (double)c["beta"]!, name));
        Register<Rescaling>("Rescaling", l => new JsonObject { ["scale"] = l.Scale, ["offset"] = l.Offset, ["input_shape"] = ShapeJson(l.InputShape) },
            (c, name) => new Rescaling((double)c["scale"]!, (double)c["offset"]!, ShapeOf(c["input_shape"]), name));
        Register<InputLayer>("InputLayer", InputLayerConfig,
            (c, name) => new InputLayer(ShapeOf(c["shape"]) ?? throw new InvalidFileException("InputLayer config needs a shape"), name, InputDataFormat(c)));
    }

    static void RegisterPooling<T>(string className, Func<Size2, Size2, Padding, string, T> make) where T : Pooling2D =>
        Register<T>(className, l => new JsonObject { ["pool_size"] = Arr(l.PoolSize), ["strides"] = Arr(l.Strides), ["padding"] = Pad(l.Padding) },
            (c, name) => make(S2(c["pool_size"]), S2(c["strides"]), PadOf(c["padding"]), name));
}
