using System.Net;
using System.Security.Cryptography;
using ConvKit.Data;

namespace ConvKit.Tests.Data;

public class DatasetResolverTests
{
    sealed class FakeHandler(Func<HttpRequestMessage, HttpResponseMessage> respond) : HttpMessageHandler
    {
        public List<string> Requests { get; } = [];
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            Requests.Add(request.RequestUri!.ToString());
            return Task.FromResult(respond(request));
        }
    }

    sealed class Recorder : IProgress<DownloadProgress>
    {
        public List<DownloadProgress> Reports { get; } = [];
        public void Report(DownloadProgress value) { lock (Reports) Reports.Add(value); }
    }

    static DatasetResolver Resolver(TempFolder tmp, string? env = null, HttpMessageHandler? handler = null, bool download = false) => new()
    {
        DataFolder = env,
        UserFolder = tmp["user"],
        SystemFolders = [tmp["sys1"], tmp["sys2"]],
        Handler = handler,
        AllowDownload = download,
    };

    [Fact]
    public void Order_ExplicitThenEnvThenUserThenSystem()
    {
        using var tmp = new TempFolder();
        var ds = Datasets.Mnist;
        foreach (var f in new[] { "explicit", "env/mnist", "user/mnist", "sys1/mnist", "sys2/mnist" })
            DataFiles.WriteIdxDataset(tmp[f]);
        Assert.Equal(tmp["explicit"], Resolver(tmp, tmp["env"]).Resolve(ds, tmp["explicit"]));
        Assert.Equal(tmp["env/mnist"], Resolver(tmp, tmp["env"]).Resolve(ds));
        Assert.Equal(tmp["user/mnist"], Resolver(tmp).Resolve(ds));
        Directory.Delete(tmp["user/mnist"], true);
        Assert.Equal(tmp["sys1/mnist"], Resolver(tmp).Resolve(ds));
        Directory.Delete(tmp["sys1/mnist"], true);
        Assert.Equal(tmp["sys2/mnist"], Resolver(tmp).Resolve(ds));
    }

    [Fact]
    [Trait("Catalogue", "Hostile")]
    public void IncompleteFolder_IsAnErrorNamingTheMissingFiles_NotAFallBackToAnotherCopy()
    {
        // Issue 12: CONVKIT_DATA/<name> lacking a file silently fell back to another copy (/usr/share/datasets).
        using var tmp = new TempFolder();
        DataFiles.WriteIdxDataset(tmp["user/kmnist"]);
        Directory.CreateDirectory(tmp["env/kmnist"]);
        DataFiles.WriteIdxPair(tmp["env/kmnist"], "train", 3, 28, 28, gzip: false); // no t10k files
        var fallback = Assert.Throws<DatasetNotFoundException>(() => Resolver(tmp, tmp["env"]).Resolve(Datasets.KMnist));
        Assert.Contains(tmp["env/kmnist"], fallback.Message);
        Assert.Contains("'t10k-images-idx3-ubyte.gz' and 't10k-labels-idx1-ubyte.gz' are missing", fallback.Message);
        var e = Assert.Throws<DatasetNotFoundException>(() => Resolver(tmp).Resolve(Datasets.KMnist, tmp["env/kmnist"]));
        Assert.Contains("t10k-images-idx3-ubyte.gz", e.Message);
        // An empty folder stands for nothing: the next location is used.
        Directory.Delete(tmp["env/kmnist"], recursive: true);
        Directory.CreateDirectory(tmp["env/kmnist"]);
        Assert.Equal(tmp["user/kmnist"], Resolver(tmp, tmp["env"]).Resolve(Datasets.KMnist));
    }

    [Fact]
    public void NotFoundOffline_ListsPlacesAndPackage()
    {
        using var tmp = new TempFolder();
        var e = Assert.Throws<DatasetNotFoundException>(() => Resolver(tmp).Resolve(Datasets.FashionMnist));
        Assert.Contains(tmp["user/fashion-mnist"], e.Message);
        Assert.Contains(tmp["sys2/fashion-mnist"], e.Message);
        Assert.Contains("CONVKIT_DATA", e.Message);
        Assert.Contains("apt-get install dataset-fashion-mnist", e.Message);
    }

    [Fact]
    public void NetworkFailure_IsNotFound_WithCause()
    {
        using var tmp = new TempFolder();
        var handler = new FakeHandler(_ => throw new HttpRequestException("no route to host"));
        var e = Assert.Throws<DatasetNotFoundException>(() => Resolver(tmp, handler: handler, download: true).Resolve(Datasets.Mnist));
        Assert.IsType<HttpRequestException>(e.InnerException);
        Assert.Contains("no route to host", e.Message);
        Assert.False(Directory.Exists(tmp["user/mnist"]), "a failed download left its (empty) dataset folder");
    }

    // A one-file dataset whose published checksum is that of 'published'.
    static DatasetInfo TestDataset(byte[] published) => new("tiny",
        [new DatasetFile("blob.bin", "https://example.invalid/blob.bin", published.Length, Convert.ToHexStringLower(SHA256.HashData(published)))],
        "blob.bin", null, p => File.Exists(Path.Combine(p, "blob.bin")) ? p : null, _ => throw new InvalidOperationException());

    static HttpResponseMessage Ok(byte[] body) => new(HttpStatusCode.OK) { Content = new ByteArrayContent(body) };

    [Fact]
    public void Download_VerifiedFileAppears_WithProgress()
    {
        using var tmp = new TempFolder();
        var body = RandomNumberGenerator.GetBytes(200_000);
        var handler = new FakeHandler(_ => Ok(body));
        var progress = new Recorder();
        var path = Resolver(tmp, handler: handler, download: true).Resolve(TestDataset(body), progress: progress);
        Assert.Equal(tmp["user/tiny"], path);
        Assert.Equal(body, File.ReadAllBytes(tmp["user/tiny/blob.bin"]));
        Assert.Single(Directory.GetFiles(path)); // no temporary file left
        Assert.Equal(new[] { "https://example.invalid/blob.bin" }, handler.Requests);
        lock (progress.Reports)
        {
            Assert.NotEmpty(progress.Reports);
            Assert.Contains(progress.Reports, r => r.BytesDone == body.Length && r.TotalBytes == body.Length && r.FileName == "blob.bin");
        }
    }

    [Theory]
    [InlineData("flipped")]
    [InlineData("longer")]
    [InlineData("shorter")]
    public void Download_ChecksumOrSizeMismatch_ThrowsAndLeavesNoFile(string corruption)
    {
        using var tmp = new TempFolder();
        var body = RandomNumberGenerator.GetBytes(100_000);
        var served = corruption switch
        {
            "flipped" => body.Select((b, i) => i == 5000 ? (byte)(b ^ 1) : b).ToArray(),
            "longer" => [.. body, 0],
            _ => body[..^1],
        };
        var resolver = Resolver(tmp, handler: new FakeHandler(_ => Ok(served)), download: true);
        var e = Assert.Throws<DatasetDownloadException>(() => resolver.Resolve(TestDataset(body)));
        Assert.Contains("https://example.invalid/blob.bin", e.Message);
        Assert.False(Directory.Exists(tmp["user/tiny"]), "a failed download left its (empty) dataset folder");
    }

    [Fact]
    public void Download_HttpError_IsNotFound()
    {
        using var tmp = new TempFolder();
        var resolver = Resolver(tmp, handler: new FakeHandler(_ => new HttpResponseMessage(HttpStatusCode.NotFound)), download: true);
        var e = Assert.Throws<DatasetNotFoundException>(() => resolver.Resolve(TestDataset([1, 2, 3])));
        Assert.Contains("404", e.Message);
    }

    [Fact]
    public void LoadThroughCatalogue_ReadsFoundFiles_WithClassNames()
    {
        using var tmp = new TempFolder();
        DataFiles.WriteIdxDataset(tmp["sys1/fashion-mnist"], trainCount: 12, testCount: 5, gzip: false);
        using var splits = Datasets.FashionMnist.Load(resolver: Resolver(tmp));
        Assert.Equal(12, splits.Train.Count);
        Assert.Equal(5, splits.Test.Count);
        Assert.Equal("Ankle boot", splits.Train.ClassNames[9]);
        Assert.Equal("T-shirt/top", splits.Test.ClassNames[0]);
    }

    [Fact]
    public void Get_ByName()
    {
        Assert.Same(Datasets.FashionMnist, Datasets.Get("Fashion_MNIST"));
        Assert.Same(Datasets.Cifar100, Datasets.Get("cifar100"));
        var e = Assert.Throws<UnknownNameException>(() => Datasets.Get("imagenet"));
        Assert.Contains("kmnist", e.Message);
    }

    [Fact]
    public void CatalogueChecksums_AreWellFormed()
    {
        foreach (var d in Datasets.All)
            foreach (var f in d.Files)
            {
                Assert.Matches("^[0-9a-f]{64}$", f.Sha256);
                Assert.EndsWith("/" + f.FileName, f.Url);
                Assert.True(f.Size > 0);
            }
    }
}
