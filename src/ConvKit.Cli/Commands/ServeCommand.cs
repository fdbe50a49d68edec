using System.CommandLine;
using ConvKit.Applications;
using ConvKit.Quantization;
using ConvKit.Serving;
using Microsoft.Extensions.Logging;

namespace ConvKit.Cli.Commands;

/// <summary>
/// <c>convkit serve MODEL_OR_RUN... [--port 8080] [--host 127.0.0.1] [--max-batch] [--max-delay-ms] [--workers]
/// [--queue] [--no-batch-invariance] [--threads]</c>: an Open Inference Protocol (KServe v2) server for one or more models, with dynamic
/// batching, an image endpoint and Prometheus metrics, until SIGTERM or Ctrl+C (which drain in-flight requests).
/// </summary>
public static class ServeCommand
{
    /// <summary>Creates the command.</summary>
    public static Command Create(CliConsole console)
    {
        var defaults = new ServingOptions();
        var models = new Argument<string[]>("models")
        {
            Description = "Models to serve: a zoo name (see 'convkit models'), or what 'convkit train' wrote (run folder, model folder, model.safetensors), or an int8 .onnx written by 'convkit quantize' (ONNX Runtime runs it); NAME=MODEL serves it as NAME. Default names: the zoo name, else the run folder's name (RUN-int8 for RUN/quantized/model.int8.onnx).",
            Arity = ArgumentArity.OneOrMore,
        };
        var weights = new Option<string?>("--weights") { Description = "Weights for zoo models: 'imagenet', a .h5 / .safetensors file, or a run/model folder. Default: random weights." };
        var port = new Option<int>("--port") { Description = "TCP port; 0 picks a free one (printed at start).", DefaultValueFactory = _ => defaults.Port };
        var host = new Option<string>("--host") { Description = "Address to bind: 127.0.0.1 (this machine only), 0.0.0.0 or :: (every interface), or another IP.", DefaultValueFactory = _ => defaults.Host };
        var maxBatch = new Option<int>("--max-batch") { Description = "Most samples run together in one forward pass; 1 turns dynamic batching off.", DefaultValueFactory = _ => defaults.MaxBatch };
        var maxDelay = new Option<double>("--max-delay-ms") { Description = "How long the oldest queued request waits for others to join its batch.", DefaultValueFactory = _ => defaults.MaxDelayMs };
        var workers = new Option<int>("--workers") { Description = "Inference workers per model, each running one batch at a time.", DefaultValueFactory = _ => defaults.Workers };
        var queue = new Option<int>("--queue") { Description = "Requests that may wait per model; beyond it the server answers 503 with Retry-After.", DefaultValueFactory = _ => defaults.QueueCapacity };
        var maxBody = new Option<double>("--max-body-mb") { Description = "Largest request body in MiB (answered 413 beyond).", DefaultValueFactory = _ => defaults.MaxBodyBytes / (1024.0 * 1024) };
        var maxPixels = new Option<long>("--max-pixels") { Description = "Pixel budget of an uploaded image, checked on its header before decoding.", DefaultValueFactory = _ => defaults.MaxPixels };
        var timeout = new Option<double>("--timeout-s") { Description = "Seconds allowed per request, from its body's first byte to its answer (408 / 504 beyond).", DefaultValueFactory = _ => defaults.RequestTimeout.TotalSeconds };
        var apiKeyFile = new Option<string?>("--api-key-file") { Description = "A file holding an API key: requests (but health checks) must then send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'." };
        var noBatchInvariance = new Option<bool>("--no-batch-invariance") { Description = "Let answers depend on the batch they run in (by an ulp or two; Dense layers then run as one matrix product per batch). By default each answer is bit-identical to 'predict' on that input alone, checked at warm-up." };
        var logFormat = new Option<string>("--log-format") { Description = "Log lines on standard error: json (structured, one object per line) or text.", DefaultValueFactory = _ => "json" };
        logFormat.AcceptOnlyFromAmong("json", "text");
        var command = new Command("serve", "Serve models over the Open Inference Protocol (KServe v2 REST: /v2/models/NAME/infer with JSON or binary tensors), plus /v2/models/NAME/classify for JPEG/PNG images and Prometheus /metrics. Requests are batched dynamically. SIGTERM or Ctrl+C stops taking requests, answers those in flight and exits 0.");
        command.Arguments.Add(models);
        foreach (var o in new Option[] { weights, port, host, maxBatch, maxDelay, workers, queue, maxBody, maxPixels, timeout, apiKeyFile, noBatchInvariance, logFormat }) command.Options.Add(o);
        var threads = ThreadsOption.Create();
        command.Options.Add(threads);
        command.SetAction(parse => console.Guard(() =>
        {
            ThreadsOption.Apply(parse, threads);
            double mb = parse.GetValue(maxBody);
            if (!double.IsFinite(mb) || mb <= 0 || mb > 4096) throw new ServingOptionException("--max-body-mb", $"must be between 0 and 4096; received {mb}");
            double seconds = parse.GetValue(timeout);
            if (!double.IsFinite(seconds) || seconds <= 0 || seconds > 3600) throw new ServingOptionException("--timeout-s", $"must be between 0 and 3600 seconds; received {seconds}");
            var options = new ServingOptions
            {
                Host = parse.GetValue(host)!,
                Port = parse.GetValue(port),
                MaxBatch = parse.GetValue(maxBatch),
                MaxDelayMs = parse.GetValue(maxDelay),
                Workers = parse.GetValue(workers),
                QueueCapacity = parse.GetValue(queue),
                MaxBodyBytes = (long)(mb * 1024 * 1024),
                MaxPixels = parse.GetValue(maxPixels),
                RequestTimeout = TimeSpan.FromSeconds(seconds),
                ApiKey = parse.GetValue(apiKeyFile) is { } keyFile ? ReadKey(keyFile) : null,
            };
            options.Validate();
            bool json = parse.GetValue(logFormat) == "json";
            var served = new List<ServedModel>();
            try
            {
                foreach (var spec in parse.GetValue(models)!)
                {
                    var (name, source) = Split(spec);
                    if (QuantizeCommand.IsInt8File(source))
                    {
                        if (parse.GetValue(weights) is not null)
                            throw new ServingOptionException("--weights", $"does not apply to the int8 model '{source}' (written by 'convkit quantize'; its weights are in the file)");
                        var quantized = QuantizedModel.Load(source);
                        try
                        {
                            served.Add(new ServedModel(name ?? DefaultName(source), quantized, ownsModel: true, batchInvariant: !parse.GetValue(noBatchInvariance)));
                        }
                        catch
                        {
                            quantized.Dispose();
                            throw;
                        }
                        continue;
                    }
                    var resolved = ModelResolver.Resolve(source, parse.GetValue(weights));
                    try
                    {
                        served.Add(ServedModel.FromResolved(name ?? DefaultName(resolved), resolved, batchInvariant: !parse.GetValue(noBatchInvariance)));
                    }
                    finally
                    {
                        resolved.Dispose();
                    }
                }
            }
            catch
            {
                foreach (var m in served) m.Dispose();
                throw;
            }
            var server = ConvKitServer.Create(served, options, logging =>
            {
                logging.SetMinimumLevel(LogLevel.Information)
                    .AddFilter("Microsoft", LogLevel.Warning)
                    .AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Information)
                    .AddConsole(c => c.LogToStandardErrorThreshold = LogLevel.Trace);
                if (json) logging.AddJsonConsole(j => { j.UseUtcTimestamp = true; j.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ"; });
                else logging.AddSimpleConsole(t => { t.SingleLine = true; t.UseUtcTimestamp = true; t.TimestampFormat = "HH:mm:ss.fff "; });
            });
            try
            {
                server.StartAsync().GetAwaiter().GetResult();
                foreach (var url in server.Urls) console.Output.WriteLine($"listening on {url}");
                foreach (var m in served) console.Output.WriteLine($"  {m.Name}: POST {server.Urls.FirstOrDefault()}/v2/models/{m.Name}/infer  (input {m.InputShape.ToBatchString()}, output {m.OutputShape.ToBatchString()})");
                console.Output.Flush();
                server.WarmUp.ContinueWith(t =>
                {
                    if (t.IsCompletedSuccessfully)
                    {
                        console.Output.WriteLine("ready");
                        console.Output.Flush();
                    }
                }, TaskScheduler.Default);
                server.WaitForShutdownAsync().GetAwaiter().GetResult();
            }
            finally
            {
                server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            console.Output.WriteLine("stopped: in-flight requests answered");
            return 0;
        }));
        return command;
    }

    /// <summary>NAME=MODEL, or MODEL alone.</summary>
    static (string? Name, string Source) Split(string spec)
    {
        int eq = spec.IndexOf('=');
        if (eq > 0 && spec[..eq].All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-')) return (spec[..eq], spec[(eq + 1)..]);
        return (null, spec);
    }

    /// <summary>The zoo name, else the run folder's (or model folder's) name, made safe for URLs.</summary>
    /// <summary>An int8 file's name in URLs: RUN-int8 for what 'convkit quantize' wrote inside a run
    /// (RUN/quantized/model.int8.onnx), else the file name without .onnx.</summary>
    static string DefaultName(string quantizedFile)
    {
        var full = Path.GetFullPath(quantizedFile);
        var folder = Path.GetDirectoryName(full)!;
        string name = Path.GetFileName(full) == QuantizeCommand.FileName && Path.GetFileName(folder) == "quantized" && Path.GetDirectoryName(folder) is { } run
            ? Path.GetFileName(run) + "-int8"
            : Path.GetFileNameWithoutExtension(full);
        return Safe(name);
    }

    static string DefaultName(ResolvedModel resolved)
    {
        string name = resolved.Kind == ModelSourceKind.Zoo ? resolved.Source : Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(resolved.Source)));
        if (resolved.Kind != ModelSourceKind.Zoo && resolved.ModelFilePath is { } file)
        {
            var folder = Path.GetDirectoryName(Path.GetFullPath(file))!;
            if (Path.GetFileName(folder) == TrainedModelFolder.RunModelFolder) folder = Path.GetDirectoryName(folder)!;
            name = Path.GetFileName(folder);
        }
        return Safe(name);
    }

    static string Safe(string name)
    {
        var safe = new string(name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' ? c : '-').ToArray()).Trim('.');
        return safe.Length == 0 ? "model" : safe.Length > 128 ? safe[..128] : safe;
    }

    static string ReadKey(string file)
    {
        string text;
        try
        {
            var info = new FileInfo(file);
            if (!info.Exists) throw new ServingOptionException("--api-key-file", $"'{file}' does not exist");
            if (info.Length > 4096) throw new ServingOptionException("--api-key-file", $"'{file}' is {info.Length} bytes; a key file holds one line");
            text = File.ReadAllText(file).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ServingOptionException("--api-key-file", $"'{file}' cannot be read: {e.Message}");
        }
        if (text.Length == 0) throw new ServingOptionException("--api-key-file", $"'{file}' is empty");
        return text;
    }
}
