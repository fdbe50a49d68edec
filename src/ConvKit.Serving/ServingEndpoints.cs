// The HTTP surface of ConvKitServer: routes, the guard every request passes (API key, timeout, errors as
// problem+json, metrics, one structured log line), and the handlers.
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using ConvKit.Applications;
using ConvKit.Data.Imaging;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using Prometheus;
using static TorchSharp.torch;

namespace ConvKit.Serving;

internal sealed class ServingEndpoints(IReadOnlyDictionary<string, (ServedModel Model, DynamicBatcher Batcher)> models,
    ServingOptions options, ServingMetrics metrics, ILogger log)
{
    const int MaxTop = 1000;
    readonly byte[]? apiKey = options.ApiKey is { } k ? Encoding.UTF8.GetBytes(k) : null;
    static readonly string Version = typeof(ConvKitServer).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    public void Map(WebApplication app)
    {
        app.Use(Guard);
        app.MapGet("/v2", () => Json(w =>
        {
            w.WriteString("name", "convkit");
            w.WriteString("version", Version);
            w.WriteStartArray("extensions");
            w.WriteStringValue("binary_tensor_data");
            w.WriteStringValue("classify");
            w.WriteEndArray();
        }));
        app.MapGet("/v2/health/live", () => Json(w => w.WriteBoolean("live", true)));
        app.MapGet("/v2/health/ready", () =>
        {
            bool ready = models.Values.All(m => m.Model.IsReady);
            return Json(w => w.WriteBoolean("ready", ready), ready ? 200 : 503);
        });
        app.MapGet("/v2/models/{name}", (string name) => Metadata(Find(name)));
        app.MapGet("/v2/models/{name}/versions/{version}", (string name, string version) => Metadata(Find(name, version)));
        app.MapGet("/v2/models/{name}/ready", (string name) => Ready(Find(name)));
        app.MapGet("/v2/models/{name}/versions/{version}/ready", (string name, string version) => Ready(Find(name, version)));
        app.MapPost("/v2/models/{name}/infer", (HttpContext c, string name) => Infer(c, name, null));
        app.MapPost("/v2/models/{name}/versions/{version}/infer", (HttpContext c, string name, string version) => Infer(c, name, version));
        app.MapPost("/v2/models/{name}/classify", (HttpContext c, string name) => Classify(c, name));
        app.MapMetrics("/metrics", metrics.Registry);
        app.MapFallback((HttpContext c) => throw new InferenceRequestException(404, $"no endpoint {c.Request.Method} {InferProtocol.Clip(c.Request.Path.Value)}; see GET /v2 and /v2/models/NAME."));
    }

    // ---- the guard ----

    async Task Guard(HttpContext c, RequestDelegate next)
    {
        long start = Stopwatch.GetTimestamp();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(c.RequestAborted);
        timeout.CancelAfter(options.RequestTimeout);
        c.Items[typeof(CancellationTokenSource)] = timeout;
        string? error = null;
        try
        {
            if (apiKey is not null && !c.Request.Path.StartsWithSegments("/v2/health") && !Authorized(c.Request))
            {
                c.Response.Headers.WWWAuthenticate = "Bearer";
                throw new InferenceRequestException(401, "missing or wrong API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'.");
            }
            await next(c).ConfigureAwait(false);
        }
        catch (Exception e) when (c.RequestAborted.IsCancellationRequested && e is OperationCanceledException or IOException or BadHttpRequestException)
        {
            error = "client disconnected";
            c.Response.StatusCode = 499; // nginx's "client closed request", for the log and metrics only
        }
        catch (Exception e)
        {
            var (status, message) = Describe(e, c);
            error = message;
            if (status >= 500 && status != 503 && status != 504) log.LogError(e, "request {Method} {Path} failed", c.Request.Method, c.Request.Path.Value);
            if (!c.Response.HasStarted)
            {
                c.Response.Clear();
                if (e is InferenceRequestException { RetryAfterSeconds: { } retry }) c.Response.Headers.RetryAfter = retry.ToString(System.Globalization.CultureInfo.InvariantCulture);
                if (status == 401) c.Response.Headers.WWWAuthenticate = "Bearer";
                await Problem(c, status, message).ConfigureAwait(false);
            }
            else c.Abort();
        }
        finally
        {
            double seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            var (model, endpoint) = Labels(c.Request.Path);
            if (endpoint is not null) metrics.Request(model!, endpoint, c.Response.StatusCode, seconds);
            if (c.Response.StatusCode >= 400)
                log.LogWarning("{Method} {Path} -> {Status} in {ElapsedMs:0.0} ms: {Error}", c.Request.Method, InferProtocol.Clip(c.Request.Path.Value), c.Response.StatusCode, seconds * 1000,
                    error ?? Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(c.Response.StatusCode)); // a readiness 503 has no exception
            else if (log.IsEnabled(LogLevel.Debug))
                log.LogDebug("{Method} {Path} -> {Status} in {ElapsedMs:0.0} ms", c.Request.Method, c.Request.Path.Value, c.Response.StatusCode, seconds * 1000);
        }
    }

    bool Authorized(HttpRequest request)
    {
        string? given = request.Headers["X-API-Key"].FirstOrDefault();
        if (given is null && request.Headers.Authorization.FirstOrDefault() is { } auth && auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            given = auth["Bearer ".Length..].Trim();
        return given is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), apiKey);
    }

    (int Status, string Message) Describe(Exception e, HttpContext c) => e switch
    {
        InferenceRequestException r => (r.Status, r.Message),
        BadHttpRequestException b when b.StatusCode == 413 => (413, $"the request body exceeds {options.MaxBodyBytes} bytes (--max-body-mb)."),
        BadHttpRequestException b => (b.StatusCode, "bad request: " + b.Message),
        OperationCanceledException => c.Items.ContainsKey("phase:inference")
            ? (504, $"the request was not answered within {options.RequestTimeout.TotalSeconds:0.###} s (--timeout-s).")
            : (408, $"the request body was not received within {options.RequestTimeout.TotalSeconds:0.###} s (--timeout-s)."),
        ImageDecodeException d => (400, d.Message),
        ShapeException s => (400, s.Message),
        _ => (500, "internal server error (logged on the server)."),
    };

    (string? Model, string? Endpoint) Labels(PathString path)
    {
        var parts = (path.Value ?? "").Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length < 3 || parts[0] != "v2" || parts[1] != "models") return (null, null);
        string model = models.ContainsKey(parts[2]) ? parts[2] : "unknown"; // client-chosen names would make unbounded label sets
        string endpoint = parts[^1] switch { "infer" => "infer", "classify" => "classify", "ready" => "ready", _ => "metadata" };
        return (model, endpoint);
    }

    static Task Problem(HttpContext c, int status, string message)
    {
        c.Response.StatusCode = status;
        c.Response.ContentType = "application/problem+json";
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("type", "about:blank");
            w.WriteString("title", ReasonPhrases(status));
            w.WriteNumber("status", status);
            w.WriteString("detail", message);
            w.WriteEndObject();
        }
        return c.Response.Body.WriteAsync(buffer.WrittenMemory).AsTask();
    }

    static string ReasonPhrases(int status) => Microsoft.AspNetCore.WebUtilities.ReasonPhrases.GetReasonPhrase(status) is { Length: > 0 } p ? p : "Error";

    static IResult Json(Action<Utf8JsonWriter> body, int status = 200)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }
        return new JsonBytes(buffer.WrittenSpan.ToArray(), status);
    }

    // ---- models ----

    (ServedModel Model, DynamicBatcher Batcher) Find(string name, string? version = null)
    {
        if (!models.TryGetValue(name, out var entry))
            throw new InferenceRequestException(404, $"no model '{InferProtocol.Clip(name)}'; this server serves {string.Join(", ", models.Keys.Select(k => $"'{k}'"))}.");
        if (version is not null && version != "1")
            throw new InferenceRequestException(404, $"model '{name}' has version 1 only; version '{InferProtocol.Clip(version)}' does not exist.");
        return entry;
    }

    static IResult Metadata((ServedModel Model, DynamicBatcher) entry)
    {
        var m = entry.Model;
        return Json(w =>
        {
            w.WriteString("name", m.Name);
            w.WriteStartArray("versions");
            w.WriteStringValue("1");
            w.WriteEndArray();
            w.WriteString("platform", m.Platform);
            Tensor("inputs", ServedModel.InputName, m.InputShape);
            Tensor("outputs", ServedModel.OutputName, m.OutputShape);
            if (m.ClassNames is { } names)
            {
                w.WriteStartObject("parameters");
                w.WriteString("preprocessing", m.Preprocessing.ToString());
                w.WriteStartArray("class_names");
                foreach (var n in names) w.WriteStringValue(n);
                w.WriteEndArray();
                w.WriteEndObject();
            }

            void Tensor(string field, string name, Shape shape)
            {
                w.WriteStartArray(field);
                w.WriteStartObject();
                w.WriteString("name", name);
                w.WriteString("datatype", "FP32");
                w.WriteStartArray("shape");
                w.WriteNumberValue(-1);
                foreach (var d in shape.Dims) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteEndObject();
                w.WriteEndArray();
            }
        });
    }

    static IResult Ready((ServedModel Model, DynamicBatcher) entry) =>
        Json(w =>
        {
            w.WriteString("name", entry.Model.Name);
            w.WriteBoolean("ready", entry.Model.IsReady);
        }, entry.Model.IsReady ? 200 : 503);

    static void RequireReady(ServedModel model)
    {
        if (!model.IsReady) throw new InferenceRequestException(503, $"model '{model.Name}' is warming up; retry when /v2/models/{model.Name}/ready answers 200.") { RetryAfterSeconds = 1 };
    }

    static CancellationToken Timeout(HttpContext c) => ((CancellationTokenSource)c.Items[typeof(CancellationTokenSource)]!).Token;

    async Task<byte[]> ReadBody(HttpContext c, CancellationToken cancel)
    {
        long limit = options.MaxBodyBytes;
        if (c.Request.ContentLength is long declared && declared > limit)
            throw new InferenceRequestException(413, $"the request body of {declared} bytes exceeds {limit} bytes (--max-body-mb).");
        using var buffer = new MemoryStream(c.Request.ContentLength is long n ? (int)n : 64 * 1024);
        var chunk = new byte[64 * 1024];
        while (true)
        {
            int read = await c.Request.Body.ReadAsync(chunk, cancel).ConfigureAwait(false);
            if (read == 0) break;
            if (buffer.Length + read > limit) throw new InferenceRequestException(413, $"the request body exceeds {limit} bytes (--max-body-mb).");
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    async Task Infer(HttpContext c, string name, string? version)
    {
        var (model, batcher) = Find(name, version);
        RequireReady(model);
        var cancel = Timeout(c);
        var body = await ReadBody(c, cancel).ConfigureAwait(false);
        long? jsonLength = null;
        if (c.Request.Headers[InferProtocol.HeaderLength].FirstOrDefault() is { } h)
            jsonLength = long.TryParse(h, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var l) ? l
                : throw new InferenceRequestException(400, $"{InferProtocol.HeaderLength} must be a byte count; received '{InferProtocol.Clip(h)}'.");
        var request = InferProtocol.Parse(body, jsonLength, model, MaxSamplesPerRequest);
        c.Items["phase:inference"] = true;
        var output = await batcher.InferAsync(request.Input, request.Samples, cancel).ConfigureAwait(false);
        var (answer, headerLength) = InferProtocol.Write(model, request, output);
        if (headerLength is { } hl)
        {
            c.Response.Headers[InferProtocol.HeaderLength] = hl.ToString(System.Globalization.CultureInfo.InvariantCulture);
            c.Response.ContentType = "application/octet-stream";
        }
        else c.Response.ContentType = "application/json";
        c.Response.ContentLength = answer.Length;
        await c.Response.Body.WriteAsync(answer, c.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>Samples one request may carry (a larger batch runs alone, so it is bounded as the body is).</summary>
    int MaxSamplesPerRequest => Math.Max(options.MaxBatch, 256);

    async Task Classify(HttpContext c, string name)
    {
        var (model, batcher) = Find(name);
        if (!model.CanClassify)
            throw new InferenceRequestException(400, $"model '{model.Name}' takes {model.InputShape} and outputs {model.OutputShape}; classify needs an image input (height, width, 1 or 3) and class scores.");
        RequireReady(model);
        int top = 5;
        if (c.Request.Query["top"].FirstOrDefault() is { } t && (!int.TryParse(t, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out top) || top < 1 || top > MaxTop))
            throw new InferenceRequestException(400, $"query parameter 'top' must be an integer from 1 to {MaxTop}; received '{InferProtocol.Clip(t)}'.");
        var cancel = Timeout(c);
        byte[] image;
        string source = "uploaded image";
        if (c.Request.HasFormContentType)
        {
            var form = await c.Request.ReadFormAsync(cancel).ConfigureAwait(false);
            var file = form.Files.FirstOrDefault() ?? throw new InferenceRequestException(400, "the multipart form holds no file; send the image as a file field (curl -F image=@cat.jpg).");
            source = $"uploaded file '{InferProtocol.Clip(file.FileName)}'";
            using var stream = new MemoryStream((int)Math.Min(file.Length, options.MaxBodyBytes));
            await file.CopyToAsync(stream, cancel).ConfigureAwait(false);
            image = stream.ToArray();
        }
        else
        {
            var type = c.Request.ContentType;
            if (type is not null && !type.StartsWith("image/", StringComparison.OrdinalIgnoreCase) && !type.StartsWith("application/octet-stream", StringComparison.OrdinalIgnoreCase))
                throw new InferenceRequestException(415, $"classify takes a JPEG/PNG body (Content-Type image/jpeg, image/png or application/octet-stream) or a multipart form; received '{InferProtocol.Clip(type)}'.");
            image = await ReadBody(c, cancel).ConfigureAwait(false);
        }
        if (image.Length == 0) throw new InferenceRequestException(400, "the request has no image: send JPEG or PNG bytes as the body, or a multipart file.");

        int height = model.InputShape[0], width = model.InputShape[1], channels = model.InputShape[2];
        var decoded = ImageDecoder.Decode(source, image, channels, new ImageDecodeOptions { MaxPixels = options.MaxPixels });
        var pixels = new float[height * width * channels];
        ImageResizer.ResizeCenterCrop(decoded, height, width, pixels);
        float[] input;
        using (NewDisposeScope())
        {
            var x = tensor(pixels, [1, height, width, channels]);
            input = ImageClassifier.Preprocess(x, model.Preprocessing).contiguous().data<float>().ToArray();
        }
        c.Items["phase:inference"] = true;
        var scores = await batcher.InferAsync(input, 1, cancel).ConfigureAwait(false);
        var probabilities = Probabilities(scores);
        var order = Enumerable.Range(0, probabilities.Length).OrderByDescending(i => probabilities[i]).ThenBy(i => i).Take(top);
        var result = Json(w =>
        {
            w.WriteString("model_name", model.Name);
            w.WriteStartArray("predictions");
            foreach (int i in order)
            {
                w.WriteStartObject();
                w.WriteNumber("index", i);
                w.WriteString("class", model.ClassNames![i]);
                w.WriteNumber("probability", probabilities[i]);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
        await result.ExecuteAsync(c).ConfigureAwait(false);
    }

    /// <summary>The scores as probabilities: as they are when they already are (a softmax top), else their softmax
    /// (ImageClassifier's rule).</summary>
    static double[] Probabilities(float[] scores)
    {
        bool isProbability = scores.All(s => s >= 0) && Math.Abs(scores.Sum(s => (double)s) - 1) < 1e-3;
        if (isProbability) return scores.Select(s => (double)s).ToArray();
        double max = scores.Max();
        var e = scores.Select(s => Math.Exp(s - max)).ToArray();
        double sum = e.Sum();
        return e.Select(v => v / sum).ToArray();
    }
}

/// <summary>A JSON body already written, with its status.</summary>
internal sealed class JsonBytes(byte[] body, int status) : IResult
{
    public Task ExecuteAsync(HttpContext httpContext)
    {
        httpContext.Response.StatusCode = status;
        httpContext.Response.ContentType = "application/json";
        httpContext.Response.ContentLength = body.Length;
        return httpContext.Response.Body.WriteAsync(body).AsTask();
    }
}
