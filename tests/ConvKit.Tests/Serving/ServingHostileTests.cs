using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using ConvKit.Applications;
using ConvKit.Serving;
using ConvKit.Tests.Data.Imaging;
using ConvKit.Tests.Training;
using static ConvKit.Tests.Serving.ServingHarness;

namespace ConvKit.Tests.Serving;

/// <summary>
/// Hostile clients against one real server: each gets a 4xx problem+json naming what is wrong (no stack trace), and
/// after all of them the server is up and its answers still bit-identical to Predict. Also the image endpoint.
/// </summary>
[Collection(nameof(GlobalRandomCollection))]
[Trait("Catalogue", "Hostile")]
public class ServingHostileTests
{
    const string Lenet = "/v2/models/lenet5/infer";

    static string Body(string inputs) => "{\"inputs\":[" + inputs + "]}";

    static string Ones(int n) => string.Join(",", Enumerable.Repeat("0.5", n));

    public static TheoryData<string, string, string> BadJson() => new()
    {
        { "malformed", "{\"inputs\": [", "malformed JSON" },
        { "array", "[1,2,3]", "must be a JSON object" },
        { "no inputs", "{\"id\":\"x\"}", "needs \"inputs\"" },
        { "wrong name", Body($"{{\"name\":\"images\",\"shape\":[1,28,28,1],\"datatype\":\"FP32\",\"data\":[{Ones(784)}]}}"), "has no input 'images'; its input is 'input'" },
        { "wrong dtype", Body($"{{\"name\":\"input\",\"shape\":[1,28,28,1],\"datatype\":\"INT64\",\"data\":[{Ones(784)}]}}"), "datatype 'INT64'; model 'lenet5' takes FP32" },
        { "wrong shape", Body($"{{\"name\":\"input\",\"shape\":[1,32,32,3],\"datatype\":\"FP32\",\"data\":[{Ones(784)}]}}"), "has shape [1,32,32,3]; model 'lenet5' takes [-1,28,28,1]" },
        { "no batch dim", Body($"{{\"name\":\"input\",\"shape\":[28,28,1],\"datatype\":\"FP32\",\"data\":[{Ones(784)}]}}"), "has shape [28,28,1]" },
        { "too few values", Body($"{{\"name\":\"input\",\"shape\":[1,28,28,1],\"datatype\":\"FP32\",\"data\":[{Ones(700)}]}}"), "needs 784 values; \"data\" has 700" },
        { "too many values", Body($"{{\"name\":\"input\",\"shape\":[1,28,28,1],\"datatype\":\"FP32\",\"data\":[{Ones(800)}]}}"), "more values than its shape holds (784)" },
        { "NaN string", Body($"{{\"name\":\"input\",\"shape\":[1,28,28,1],\"datatype\":\"FP32\",\"data\":[\"NaN\",{Ones(783)}]}}"), "element 0 of \"data\" is the string \"NaN\", not a number" },
        { "overflow", Body($"{{\"name\":\"input\",\"shape\":[1,28,28,1],\"datatype\":\"FP32\",\"data\":[1e39,{Ones(783)}]}}"), "outside FP32's finite range" },
        { "zero batch", Body("{\"name\":\"input\",\"shape\":[0,28,28,1],\"datatype\":\"FP32\",\"data\":[]}"), "batch of 0" },
        { "huge batch", Body("{\"name\":\"input\",\"shape\":[100000000,28,28,1],\"datatype\":\"FP32\",\"data\":[]}"), "batch of 100000000" },
        { "deep nesting", new string('[', 5000), "malformed JSON" },
        { "wrong output", "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,28,28,1],\"datatype\":\"FP32\",\"data\":[" + Ones(784) + "]}],\"outputs\":[{\"name\":\"probs\"}]}", "no output 'probs'" },
    };

    [Theory]
    [MemberData(nameof(BadJson))]
    public async Task BadInferRequestsGet400NamingTheProblem(string kind, string body, string expected)
    {
        await using var h = await StartAsync(null, "lenet5");
        using var response = await h.Client.PostAsync(Lenet, new StringContent(body, Encoding.UTF8, "application/json"));
        var detail = await ReadProblem(response, 400);
        Assert.True(detail.Contains(expected, StringComparison.Ordinal), $"{kind}: {detail}");
        await AssertStillCorrect(h);
    }

    [Theory]
    [InlineData("nan", "holds NaN at element 5")]
    [InlineData("infinity", "holds Infinity at element 5")]
    [InlineData("short binary", "the binary section has 3132 bytes")]
    [InlineData("header length", "Inference-Header-Content-Length is 999999")]
    public async Task BadBinaryRequestsGet400(string kind, string expected)
    {
        await using var h = await StartAsync(null, "lenet5");
        var m = h.Reference("lenet5");
        var input = RandomInput(m, 1, 1);
        if (kind == "nan") input[5] = float.NaN;
        if (kind == "infinity") input[5] = float.PositiveInfinity;
        var content = BinaryRequest(m, input, 1);
        var bytes = await content.ReadAsByteArrayAsync();
        if (kind == "short binary") bytes = bytes[..^4];
        var sent = new ByteArrayContent(bytes);
        sent.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        sent.Headers.Add("Inference-Header-Content-Length", kind == "header length" ? "999999" : content.Headers.GetValues("Inference-Header-Content-Length").Single());
        var detail = await ReadProblem(await h.Client.PostAsync(Lenet, sent), 400);
        Assert.True(detail.Contains(expected, StringComparison.Ordinal), $"{kind}: {detail}");
        await AssertStillCorrect(h);
    }

    [Fact]
    public async Task A100MegabyteBodyIsRefusedWith413BeforeItIsRead()
    {
        await using var h = await StartAsync(new ServingOptions { MaxBodyBytes = 4 << 20 }, "lenet5");
        // Declared: refused on its Content-Length.
        using (var declared = new HttpRequestMessage(HttpMethod.Post, Lenet) { Content = new ByteArrayContent(new byte[100 << 20]) })
        {
            declared.Headers.ExpectContinue = true;
            Assert.Contains("exceeds 4194304 bytes (--max-body-mb)", await ReadProblem(await h.Client.SendAsync(declared), 413));
        }
        // Chunked, without a length: refused once 4 MiB have arrived.
        var chunked = new StreamContent(new MemoryStream(new byte[100 << 20]));
        using (var request = new HttpRequestMessage(HttpMethod.Post, Lenet) { Content = chunked })
        {
            request.Headers.TransferEncodingChunked = true;
            try
            {
                using var response = await h.Client.SendAsync(request);
                Assert.Contains("exceeds 4194304 bytes", await ReadProblem(response, 413));
            }
            catch (HttpRequestException)
            {
                // The server may close the connection while the client still sends; what matters is that it stays up.
            }
        }
        await AssertStillCorrect(h);
        Assert.True(Environment.WorkingSet < 3L << 30);
    }

    [Fact]
    public async Task ASlowClientGets408AndATruncatedUploadLeavesTheServerUp()
    {
        await using var h = await StartAsync(new ServingOptions { RequestTimeout = TimeSpan.FromSeconds(1) }, "lenet5");
        var uri = new Uri(h.BaseUrl);
        // Slow: headers promise 5000 bytes, 10 arrive, then nothing.
        using (var slow = new TcpClient())
        {
            await slow.ConnectAsync(uri.Host, uri.Port);
            var stream = slow.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes($"POST {Lenet} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{\"inputs\":"));
            var answer = await ReadAll(stream, TimeSpan.FromSeconds(20));
            Assert.StartsWith("HTTP/1.1 408", answer);
            Assert.Contains("application/problem+json", answer);
            Assert.Contains("not received within 1 s (--timeout-s)", answer);
        }
        // Truncated: the client promises 5000 bytes, sends 100 and hangs up.
        using (var truncated = new TcpClient())
        {
            await truncated.ConnectAsync(uri.Host, uri.Port);
            var stream = truncated.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes($"POST {Lenet} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + new string(' ', 100)));
            truncated.Client.Shutdown(SocketShutdown.Send);
            await ReadAll(stream, TimeSpan.FromSeconds(20));
        }
        await AssertStillCorrect(h);
    }

    static async Task<string> ReadAll(NetworkStream stream, TimeSpan limit)
    {
        using var cancel = new CancellationTokenSource(limit);
        var buffer = new MemoryStream();
        var chunk = new byte[4096];
        try
        {
            int n;
            while ((n = await stream.ReadAsync(chunk, cancel.Token)) > 0)
            {
                buffer.Write(chunk, 0, n);
                var text = Encoding.UTF8.GetString(buffer.ToArray());
                if (text.Contains("\r\n\r\n") && text.Contains("\"detail\"") && text.TrimEnd().EndsWith('}')) break;
            }
        }
        catch (IOException)
        {
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    [Fact]
    public async Task ClassifyAnswersTheTopClassesOfAPngOrJpegAsPredictDoes()
    {
        await using var h = await StartAsync(null, "lenet5", "resnet20");
        var png = ImageFiles.Sample("png");
        var jpg = ImageFiles.Sample("jpg");
        var dir = Directory.CreateTempSubdirectory("convkit-serve-").FullName;
        try
        {
            foreach (var (model, bytes, type) in new[] { ("resnet20", png, "image/png"), ("lenet5", jpg, "image/jpeg") })
            {
                var file = Path.Combine(dir, "image" + (type == "image/png" ? ".png" : ".jpg"));
                File.WriteAllBytes(file, bytes);
                using var classifier = new ImageClassifier(h.Reference(model), Preprocessing.None);
                var expected = classifier.Predict([file], 3)[0].Top;

                var raw = new ByteArrayContent(bytes);
                raw.Headers.ContentType = new MediaTypeHeaderValue(type);
                using var doc = System.Text.Json.JsonDocument.Parse(await (await h.Client.PostAsync($"/v2/models/{model}/classify?top=3", raw)).Content.ReadAsStringAsync());
                var top = doc.RootElement.GetProperty("predictions").EnumerateArray().ToArray();
                Assert.Equal(3, top.Length);
                for (int i = 0; i < 3; i++)
                {
                    Assert.Equal(expected[i].Index, top[i].GetProperty("index").GetInt32());
                    Assert.Equal(expected[i].Name, top[i].GetProperty("class").GetString());
                    Assert.Equal(expected[i].Probability, top[i].GetProperty("probability").GetDouble(), 5);
                }

                using var form = new MultipartFormDataContent();
                var part = new ByteArrayContent(bytes);
                part.Headers.ContentType = new MediaTypeHeaderValue(type);
                form.Add(part, "image", Path.GetFileName(file));
                using var multipart = System.Text.Json.JsonDocument.Parse(await (await h.Client.PostAsync($"/v2/models/{model}/classify?top=3", form)).Content.ReadAsStringAsync());
                Assert.Equal(expected[0].Index, multipart.RootElement.GetProperty("predictions")[0].GetProperty("index").GetInt32());
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("bomb", "exceeds the pixel budget")]
    [InlineData("truncated", "truncated PNG")]
    [InlineData("junk", "not an image")]
    [InlineData("empty", "has no image")]
    [InlineData("top", "'top' must be an integer from 1 to 1000")]
    [InlineData("text", "classify takes a JPEG/PNG body")]
    public async Task BadImagesGet4xxNamingTheProblem(string kind, string expected)
    {
        await using var h = await StartAsync(null, "lenet5");
        var png = ImageFiles.Sample("png");
        byte[] body = kind switch
        {
            "bomb" => ImageFiles.PngHeader(30000, 30000),
            "truncated" => png[..^20],
            "junk" => new byte[64],
            "empty" => [],
            _ => png,
        };
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue(kind == "text" ? "text/plain" : "image/png");
        using var response = await h.Client.PostAsync("/v2/models/lenet5/classify" + (kind == "top" ? "?top=0" : ""), content);
        var detail = await ReadProblem(response, kind == "text" ? 415 : 400);
        Assert.True(detail.Contains(expected, StringComparison.Ordinal), $"{kind}: {detail}");
        await AssertStillCorrect(h);
    }

    [Fact]
    public async Task UnknownRoutesAndMethodsGetProblems()
    {
        await using var h = await StartAsync(null, "lenet5");
        Assert.Contains("no endpoint GET /v3", await ReadProblem(await h.Client.GetAsync("/v3"), 404));
        Assert.Contains("no model 'nope'", await ReadProblem(await h.Client.PostAsync("/v2/models/nope/infer", new StringContent("{}")), 404));
        await AssertStillCorrect(h);
    }

    /// <summary>A correct request after hostile ones: bit-identical to Predict.</summary>
    static async Task AssertStillCorrect(ServingHarness h)
    {
        var m = h.Reference("lenet5");
        var input = RandomInput(m, 2, 42);
        using var response = await h.Client.PostAsync(Lenet, BinaryRequest(m, input, 2));
        AssertBitIdentical(h.ExpectedAlone("lenet5", input, 2), await ReadOutput(response), "answer after hostile requests");
        Assert.Equal(HttpStatusCode.OK, (await h.Client.GetAsync("/v2/health/live")).StatusCode);
    }
}
