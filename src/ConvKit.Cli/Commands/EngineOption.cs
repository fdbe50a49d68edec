using System.CommandLine;
using ConvKit.Models;
using ConvKit.Models.Inference;

namespace ConvKit.Cli.Commands;

/// <summary>
/// <c>--engine auto|torchsharp|onnxruntime</c> on 'convkit predict': the inference engine of the model
/// (<see cref="Model.InferenceEngine"/>). Default auto: the first two batches run on TorchSharp, the third on both
/// engines, and the faster serves the rest.
/// </summary>
public static class EngineOption
{
    /// <summary>The option.</summary>
    public static Option<string> Create() =>
        new("--engine")
        {
            Description = "Inference engine: auto (measure TorchSharp and ONNX Runtime on the third batch, keep the faster), torchsharp, or onnxruntime (a session from ConvKit's own ONNX export; falls back to torchsharp when the model cannot be exported).",
            DefaultValueFactory = _ => "auto",
        };

    /// <summary>The engine named by the parsed value.</summary>
    /// <exception cref="ConvKitException">The value is none of the three; the message names --engine.</exception>
    public static InferenceEngine Parse(ParseResult parse, Option<string> option) => parse.GetValue(option)?.ToLowerInvariant() switch
    {
        "auto" => InferenceEngine.Auto,
        "torchsharp" => InferenceEngine.TorchSharp,
        "onnxruntime" or "ort" => InferenceEngine.OnnxRuntime,
        var v => throw new ConvKitException($"--engine must be auto, torchsharp or onnxruntime; received '{v}'."),
    };
}
