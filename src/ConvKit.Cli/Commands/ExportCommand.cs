using System.CommandLine;
using ConvKit.Applications;
using ConvKit.Saving;

namespace ConvKit.Cli.Commands;

/// <summary>
/// <c>convkit export &lt;name&gt; --onnx out.onnx</c>: writes a zoo model (optionally with trained weights saved by
/// ModelCheckpoint) as an ONNX file for inference.
/// </summary>
public static class ExportCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliConsole console)
    {
        var name = new Argument<string>("name") { Description = "A zoo name (see 'convkit models'), or what 'convkit train' wrote: the run folder, its model folder or model.safetensors." };
        var onnx = new Option<string?>("--onnx") { Description = "Destination .onnx file." };
        var triton = TritonOptions.Create();
        var weights = new Option<string?>("--weights") { Description = "Weights to load first (by layer name): a file written by SaveWeights, Save or ModelCheckpoint for the same model and options, a Keras .h5, or a run/model folder written by 'convkit train'." };
        var opset = new Option<int>("--opset") { Description = $"ONNX opset, {OnnxExport.MinOpset} to {OnnxExport.MaxOpset}.", DefaultValueFactory = _ => 13 };
        var channelsFirst = new Option<bool>("--channels-first") { Description = "Image inputs and outputs NCHW instead of Keras' NHWC." };
        var inputShape = new Option<string?>("--input-shape") { Description = "Input shape as height,width,channels, e.g. 32,32,3." };
        var classes = new Option<int?>("--classes") { Description = "Number of classes of the classifier." };
        var noTop = new Option<bool>("--no-top") { Description = "Leave out the classifier (include_top=false)." };
        var pooling = new Option<string?>("--pooling") { Description = "Global pooling without the top: avg or max." };
        pooling.AcceptOnlyFromAmong("avg", "max");
        var command = new Command("export", "Export a zoo model to ONNX (inference: dropout off, batch norm on moving statistics).");
        command.Arguments.Add(name);
        foreach (var o in (Option[])[onnx, weights, opset, channelsFirst, inputShape, classes, noTop, pooling, .. triton.All]) command.Options.Add(o);
        var threads = ThreadsOption.Create();
        command.Options.Add(threads);
        command.SetAction(parse => console.Guard(() =>
        {
            ThreadsOption.Apply(parse, threads);
            var path = parse.GetValue(onnx);
            var tritonRepo = triton.Check(parse, onnxGiven: path is not null);
            int opsetValue = parse.GetValue(opset);
            if (opsetValue is < OnnxExport.MinOpset or > OnnxExport.MaxOpset)
                throw new InvalidOptionException("--opset", $"--opset must be {OnnxExport.MinOpset} to {OnnxExport.MaxOpset}; received {opsetValue}.");
            if (tritonRepo is null && string.IsNullOrWhiteSpace(path)) throw new InvalidOptionException("--onnx", "--onnx must name a file; received an empty value.");
            if (tritonRepo is null && Directory.Exists(path)) throw new InvalidOptionException("--onnx", $"--onnx '{path}' is a folder; name the .onnx file to write.");
            if (tritonRepo is null && Path.GetDirectoryName(Path.GetFullPath(path!)) is { } parent && !Directory.Exists(parent))
                throw new InvalidOptionException("--onnx", $"--onnx '{path}': the folder '{parent}' does not exist.");
            if (parse.GetValue(classes) is { } c && c < 1) throw new InvalidOptionException("--classes", $"--classes must be positive; received {c}.");
            bool zooOptionsGiven = parse.GetValue(noTop) || parse.GetValue(inputShape) is not null || parse.GetValue(classes) is not null || parse.GetValue(pooling) is not null;
            var options = zooOptionsGiven ? new ModelOptions
            {
                IncludeTop = !parse.GetValue(noTop),
                InputShape = parse.GetValue(inputShape) is { } s ? SummaryCommand.ParseShape(s) : null,
                Classes = parse.GetValue(classes),
                Pooling = parse.GetValue(pooling) switch { "avg" => PoolingMode.Avg, "max" => PoolingMode.Max, _ => PoolingMode.None },
            } : null;
            using var resolved = ModelResolver.Resolve(parse.GetValue(name)!, parse.GetValue(weights), options);
            var model = resolved.Model;
            var exportOptions = new OnnxExportOptions { Opset = parse.GetValue(opset), ChannelsLast = !parse.GetValue(channelsFirst) };
            if (tritonRepo is not null) return TritonOptions.Write(console, model, tritonRepo.Value, exportOptions);
            path ??= "";
            try
            {
                OnnxExport.Save(model, path, exportOptions);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new ConvKitException($"cannot write '{path}': {AtomicFile.Explain(e, path)}", e);
            }
            string Dims(Shape s) => s.Rank == 3 && !exportOptions.ChannelsLast ? $"(N, {s[2]}, {s[0]}, {s[1]})" : "(N, " + string.Join(", ", s) + ")";
            var input = model.Inputs[0];
            console.Output.WriteLine(FormattableString.Invariant(
                $"wrote {path} ({new FileInfo(path).Length:N0} bytes, opset {exportOptions.Opset}): input '{input.Layer.Name}' {Dims(input.Shape)}, outputs {string.Join(", ", model.Outputs.Select(o => $"'{o.Layer.Name}' {Dims(o.Shape)}"))}"));
            return 0;
        }));
        return command;
    }
}
