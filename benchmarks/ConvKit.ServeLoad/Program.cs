// Load generator for `convkit serve` (issue 16): closed-loop clients on loopback only, bounded in requests and time,
// JSON or binary tensors; prints throughput, p50/p95/p99 latency, answers by status, its own CPU use and the server's
// RSS; with --verify, compares every answer with single-threaded Predict of the same model file.
//
//   dotnet run -c Release --project benchmarks/ConvKit.ServeLoad -- save-model resnet20 /tmp/serve/resnet20
//   ./convkit serve /tmp/serve/resnet20 --port 8080 &
//   dotnet run -c Release --project benchmarks/ConvKit.ServeLoad -- run --url http://127.0.0.1:8080 --model resnet20 \
//       --concurrency 1,8,32,128 --requests 2000 --seconds 20 --format binary [--verify /tmp/serve/resnet20] [--server-pid PID]
using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using ConvKit;
using ConvKit.Applications;
using ConvKit.Models;
using TorchSharp;
using static TorchSharp.torch;

ConvKit.Native.TorchNative.Initialize();
if (args.Length == 0 || args[0] is not ("run" or "save-model"))
{
    Console.Error.WriteLine("usage: save-model ZOO_NAME DIR | run --url URL --model NAME [--concurrency 1,8,32,128] [--requests N] [--seconds S] [--format binary|json] [--verify MODEL_DIR] [--server-pid PID] [--inputs 64]");
    return 2;
}
if (args[0] == "save-model")
{
    // A model folder with fixed random weights (batch-norm statistics away from 0/1), so that the server and the
    // verifier load the same weights.
    manual_seed(16);
    var name = args[1];
    var model = name == "resnet20" ? ModelRegistry.Create(name, new ModelOptions { InputShape = (32, 32, 3) }) : ModelRegistry.Create(name, new ModelOptions());
    using (no_grad())
        foreach (var bn in model.Layers.OfType<ConvKit.Layers.BatchNormalization>())
        {
            using var tenth = 0.1.ToScalar();
            using var half = 0.5.ToScalar();
            bn.MovingMean!.copy_(randn(bn.MovingMean.shape).mul(tenth));
            bn.MovingVariance!.copy_(rand(bn.MovingVariance.shape).add(half));
        }
    int classes = model.ModelOutputShape[0];
    Directory.CreateDirectory(args[2]);
    TrainedModelFolder.Save(args[2], model, new TrainedModelInfo(name, "random", Enumerable.Range(0, classes).Select(i => $"class {i}").ToArray())
    {
        InputShape = model.ModelInputShape.ToArray(),
        Preprocessing = nameof(Preprocessing.None),
    });
    Console.WriteLine($"saved {name} to {args[2]}");
    return 0;
}

string Arg(string name, string fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
}

var url = new Uri(Arg("--url", "http://127.0.0.1:8080"));
if (!IPAddress.TryParse(url.Host, out var ip) ? url.Host != "localhost" : !IPAddress.IsLoopback(ip))
{
    Console.Error.WriteLine($"error: --url must be a loopback address (127.0.0.1, ::1, localhost); received {url.Host}.");
    return 2;
}
string modelName = Arg("--model", "resnet20");
var levels = Arg("--concurrency", "1,8,32,128").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
int maxRequests = int.Parse(Arg("--requests", "2000"), CultureInfo.InvariantCulture);
double maxSeconds = double.Parse(Arg("--seconds", "20"), CultureInfo.InvariantCulture);
bool binary = Arg("--format", "binary") == "binary";
string? verify = Arg("--verify", "") is { Length: > 0 } v ? v : null;
int serverPid = int.Parse(Arg("--server-pid", "0"), CultureInfo.InvariantCulture);
int inputCount = int.Parse(Arg("--inputs", "64"), CultureInfo.InvariantCulture);
if (maxRequests < 1 || maxRequests > 1_000_000 || maxSeconds <= 0 || maxSeconds > 3600 || levels.Any(c => c < 1 || c > 4096))
{
    Console.Error.WriteLine("error: --requests 1..1000000, --seconds 0..3600, --concurrency 1..4096 each.");
    return 2;
}

using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = levels.Max(), PooledConnectionLifetime = TimeSpan.FromMinutes(30) }) { BaseAddress = url, Timeout = TimeSpan.FromSeconds(120) };
using var meta = JsonDocument.Parse(await http.GetStringAsync($"/v2/models/{modelName}"));
var shape = meta.RootElement.GetProperty("inputs")[0].GetProperty("shape").EnumerateArray().Skip(1).Select(e => e.GetInt32()).ToArray();
int sampleSize = shape.Aggregate(1, (a, b) => a * b);

// A pool of inputs, and their expected answers from single-threaded Predict when verifying.
var rng = new Random(16);
var inputs = Enumerable.Range(0, inputCount).Select(_ => Enumerable.Range(0, sampleSize).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray()).ToArray();
float[][]? expected = null;
if (verify is not null)
{
    using var resolved = ModelResolver.Resolve(verify);
    expected = inputs.Select(x =>
    {
        using var t = tensor(x, [1, .. shape.Select(d => (long)d)]);
        using var y = resolved.Model.Predict(t);
        return y.contiguous().data<float>().ToArray();
    }).ToArray();
}
var bodies = inputs.Select(x => binary ? BinaryBody(x) : (Encoding.UTF8.GetBytes(JsonBody(x)), 0)).ToArray();

Console.WriteLine($"# {modelName} at {url}, {(binary ? "binary" : "JSON")} tensors, up to {maxRequests} requests or {maxSeconds} s per level{(verify is null ? "" : ", verified against Predict")}");
Console.WriteLine("concurrency  requests  ok      503   other  mismatches  req/s    p50 ms  p95 ms  p99 ms  client CPU %  server RSS MB (max)");
foreach (int concurrency in levels)
{
    var latencies = new double[maxRequests];
    int issued = 0, done = 0, ok = 0, busy = 0, other = 0, mismatches = 0;
    long maxRss = 0;
    var deadline = Stopwatch.StartNew();
    var cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
    using var sampler = new Timer(_ => { if (serverPid > 0) Interlocked.Exchange(ref maxRss, Math.Max(Interlocked.Read(ref maxRss), Rss(serverPid))); }, null, 0, 200);
    await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async c =>
    {
        while (deadline.Elapsed.TotalSeconds < maxSeconds)
        {
            int n = Interlocked.Increment(ref issued) - 1;
            if (n >= maxRequests) return;
            int which = n % inputs.Length;
            var (body, headerLength) = bodies[which];
            var content = new ByteArrayContent(body);
            if (headerLength > 0) content.Headers.Add("Inference-Header-Content-Length", headerLength.ToString(CultureInfo.InvariantCulture));
            long start = Stopwatch.GetTimestamp();
            try
            {
                using var response = await http.PostAsync($"/v2/models/{modelName}/infer", content);
                var answer = await response.Content.ReadAsByteArrayAsync();
                latencies[n] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    Interlocked.Increment(ref ok);
                    if (expected is not null && !SameBits(Read(response, answer), expected[which])) Interlocked.Increment(ref mismatches);
                }
                else if (response.StatusCode == HttpStatusCode.ServiceUnavailable) Interlocked.Increment(ref busy);
                else Interlocked.Increment(ref other);
            }
            catch (HttpRequestException)
            {
                latencies[n] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                Interlocked.Increment(ref other);
            }
            Interlocked.Increment(ref done);
        }
    }));
    double seconds = deadline.Elapsed.TotalSeconds;
    double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpu0).TotalSeconds / seconds * 100;
    var sorted = latencies.Take(done).Order().ToArray();
    double P(double q) => sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"{concurrency,11}  {done,8}  {ok,6}  {busy,5}  {other,5}  {(expected is null ? "-" : mismatches.ToString(CultureInfo.InvariantCulture)),10}  {ok / seconds,7:0}  {P(0.5),6:0.0}  {P(0.95),6:0.0}  {P(0.99),6:0.0}  {cpu,12:0}  {(serverPid > 0 ? (maxRss / 1024.0).ToString("0", CultureInfo.InvariantCulture) : "-"),8}"));
}
return 0;

(byte[] Body, int HeaderLength) BinaryBody(float[] x)
{
    var header = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new
    {
        inputs = new[] { new { name = "input", shape = new[] { 1 }.Concat(shape).ToArray(), datatype = "FP32", parameters = new { binary_data_size = x.Length * 4 } } },
        outputs = new[] { new { name = "output", parameters = new { binary_data = true } } },
    }));
    var body = new byte[header.Length + x.Length * 4];
    header.CopyTo(body, 0);
    for (int i = 0; i < x.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(body.AsSpan(header.Length + i * 4), x[i]);
    return (body, header.Length);
}

string JsonBody(float[] x) => JsonSerializer.Serialize(new
{
    inputs = new[] { new { name = "input", shape = new[] { 1 }.Concat(shape).ToArray(), datatype = "FP32", data = x } },
});

// Bit for bit (float equality would take -0 for 0 and refuse NaN for NaN).
static bool SameBits(float[] a, float[] b) =>
    System.Runtime.InteropServices.MemoryMarshal.Cast<float, int>(a.AsSpan()).SequenceEqual(System.Runtime.InteropServices.MemoryMarshal.Cast<float, int>(b.AsSpan()));

static float[] Read(HttpResponseMessage response, byte[] body)
{
    if (response.Headers.TryGetValues("Inference-Header-Content-Length", out var values))
    {
        int length = int.Parse(values.Single(), CultureInfo.InvariantCulture);
        var result = new float[(body.Length - length) / 4];
        for (int i = 0; i < result.Length; i++) result[i] = BinaryPrimitives.ReadSingleLittleEndian(body.AsSpan(length + i * 4));
        return result;
    }
    using var doc = JsonDocument.Parse(body);
    return doc.RootElement.GetProperty("outputs")[0].GetProperty("data").EnumerateArray().Select(e => e.GetSingle()).ToArray();
}

// Resident set of a process in KiB (Linux /proc), 0 when unknown.
static long Rss(int pid)
{
    try
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }
    catch (IOException)
    {
    }
    return 0;
}
