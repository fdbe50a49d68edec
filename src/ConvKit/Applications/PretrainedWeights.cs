// keras.applications' published ImageNet weights: canonical file names, URLs and the MD5 hashes Keras passes to
// get_file(file_hash=...) (32 hex digits, which Keras' 'auto' algorithm treats as MD5), and a local cache.
using System.Security.Cryptography;
using ConvKit.Models;
using ConvKit.Saving;

namespace ConvKit.Applications;

/// <summary>One published weights file.</summary>
/// <param name="FileName">Canonical file name, e.g. <c>vgg16_weights_tf_dim_ordering_tf_kernels.h5</c>.</param>
/// <param name="Url">Where Keras downloads it from.</param>
/// <param name="Md5">The MD5 hash Keras checks (hex).</param>
public sealed record PretrainedFile(string FileName, string Url, string Md5);

/// <summary>
/// A directory of downloaded weights files: <c>CONVKIT_WEIGHTS</c>, else <c>~/.convkit/weights</c>. Files are verified
/// against Keras' published MD5 on every resolve; missing files are downloaded when online (set
/// <c>CONVKIT_OFFLINE=1</c> to never download).
/// </summary>
/// <param name="Directory">The cache directory.</param>
/// <param name="Offline">Never download; a missing file is an error naming where to put it.</param>
public sealed record WeightsCache(string Directory, bool Offline = false)
{
    const string Base = "https://storage.googleapis.com/tensorflow/keras-applications/";

    static readonly Dictionary<string, (PretrainedFile Top, PretrainedFile NoTop)> Keras = new(StringComparer.OrdinalIgnoreCase)
    {
        ["vgg16"] = Pair("vgg16", "vgg16/vgg16", "64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc"),
        ["vgg19"] = Pair("vgg19", "vgg19/vgg19", "cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6"),
        ["resnet50"] = Pair("resnet50", "resnet/resnet50", "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626"),
        ["resnet101"] = Pair("resnet101", "resnet/resnet101", "f1aeb4b969a6efcfb50fad2f0c20cfc5", "88cf7a10940856eca736dc7b7e228a21"),
        ["resnet152"] = Pair("resnet152", "resnet/resnet152", "100835be76be38e30d865e96f2aaae62", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
        ["inception_v3"] = Pair("inception_v3", "inception_v3/inception_v3", "9a0d58056eeedaa3f26cb7ebd46da564", "bcbd6486424b2319ff4ef7d526e38f63"),
    };

    static (PretrainedFile, PretrainedFile) Pair(string stem, string urlStem, string top, string noTop) =>
        (new($"{stem}_weights_tf_dim_ordering_tf_kernels.h5", $"{Base}{urlStem}_weights_tf_dim_ordering_tf_kernels.h5", top),
         new($"{stem}_weights_tf_dim_ordering_tf_kernels_notop.h5", $"{Base}{urlStem}_weights_tf_dim_ordering_tf_kernels_notop.h5", noTop));

    /// <summary>The cache from the environment: <c>CONVKIT_WEIGHTS</c> or <c>~/.convkit/weights</c>; <c>CONVKIT_OFFLINE=1</c> forbids downloads.</summary>
    public static WeightsCache Default => new(
        Environment.GetEnvironmentVariable("CONVKIT_WEIGHTS") is { Length: > 0 } d ? d
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".convkit", "weights"),
        Environment.GetEnvironmentVariable("CONVKIT_OFFLINE") is "1" or "true");

    /// <summary>Registry names with published Keras ImageNet weights.</summary>
    public static IReadOnlyCollection<string> KerasModels => Keras.Keys;

    /// <summary>The published Keras ImageNet file of a registry model, with or without its top.</summary>
    /// <exception cref="LayerArgumentException">No Keras weights are published for that model.</exception>
    public static PretrainedFile KerasImageNet(string model, bool includeTop) =>
        Keras.TryGetValue(model, out var pair) ? (includeTop ? pair.Top : pair.NoTop)
            : throw new LayerArgumentException($"model '{model}'", "weights",
                $"keras.applications publishes no ImageNet weights for '{model}'; 'imagenet' is available for {string.Join(", ", Keras.Keys)}. Pass the path of a weights file instead.");

    /// <summary>The path of a verified copy of the file, downloading it when absent and allowed.</summary>
    /// <exception cref="ConvKitException">The file is absent and cannot be downloaded (the message names the file and
    /// the directory to put it in), or its MD5 differs from the published one.</exception>
    public string Resolve(PretrainedFile file)
    {
        var path = Path.Combine(Directory, file.FileName);
        if (!File.Exists(path))
        {
            if (Offline)
                throw new ConvKitException(
                    $"weights file '{file.FileName}' is not in the weights cache and downloads are off (CONVKIT_OFFLINE). Download it from {file.Url} and put it in '{Directory}' (or set CONVKIT_WEIGHTS to the directory holding it).");
            Download(file, path);
        }
        Verify(file, path);
        return path;
    }

    static void Verify(PretrainedFile file, string path)
    {
        string actual;
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20))
            actual = Convert.ToHexStringLower(MD5.HashData(fs));
        if (!string.Equals(actual, file.Md5, StringComparison.OrdinalIgnoreCase))
            throw new ConvKitException(
                $"weights file '{path}' has MD5 {actual} but Keras publishes {file.Md5} for {file.FileName}: the file is corrupt or a different file. Delete it and download it again from {file.Url}.");
    }

    void Download(PretrainedFile file, string path)
    {
        System.IO.Directory.CreateDirectory(Directory);
        var temp = path + ".part";
        try
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(30) };
            using (var response = http.GetAsync(file.Url, HttpCompletionOption.ResponseHeadersRead).GetAwaiter().GetResult())
            {
                response.EnsureSuccessStatusCode();
                using var body = response.Content.ReadAsStream();
                using var output = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
                body.CopyTo(output);
            }
            Verify(file, temp);
            File.Move(temp, path, overwrite: true);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
        {
            File.Delete(temp);
            throw new ConvKitException(
                $"weights file '{file.FileName}' is not in the weights cache and could not be downloaded from {file.Url} ({e.Message}). Download it and put it in '{Directory}' (or set CONVKIT_WEIGHTS to the directory holding it).", e);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }
}

/// <summary>Loads the weights named by <see cref="ModelOptions.Weights"/> into a freshly built model.</summary>
internal static class WeightsOption
{
    public static void Apply(Model model, ModelInfo info, ResolvedOptions o, string weights, WeightsCache? cache)
    {
        string registryName = info.Name;
        string path;
        if (string.Equals(weights, "imagenet", StringComparison.OrdinalIgnoreCase))
        {
            var published = WeightsCache.KerasImageNet(registryName, o.IncludeTop);
            if (o.IncludeTop && o.Classes != 1000)
                throw new LayerArgumentException($"model '{registryName}'", "weights",
                    $"weights='imagenet' with include_top=true needs classes=1000; received classes={o.Classes}.");
            path = (cache ?? WeightsCache.Default).Resolve(published);
        }
        else
        {
            path = weights;
            if (Directory.Exists(path))
                throw new LayerArgumentException($"model '{registryName}'", "weights", $"'{path}' is a directory, not a weights file.");
            if (!File.Exists(path))
                throw new LayerArgumentException($"model '{registryName}'", "weights",
                    $"must be null, 'imagenet' or the path of a weights file; '{weights}' does not exist.");
        }
        var kind = FileSignature.Detect(path);
        if (kind == FileKind.SafeTensors)
        {
            // What ConvKit itself wrote (Save, SaveWeights, ModelCheckpoint, 'convkit train') loads by layer name;
            // other safetensors files are torchvision state dicts.
            bool native;
            using (var st = SafeTensors.Read(path)) native = st.Metadata.ContainsKey(ModelFormat.FormatKey);
            if (native) model.LoadWeights(path, WeightsFormat.Native);
            else model.LoadWeights(path, WeightsFormat.Torchvision, new LoadWeightsOptions { StateDict = info.StateDict ?? StateDictMapping.Default });
        }
        else if (kind == FileKind.Hdf5 || kind == FileKind.Unknown)
        {
            var file = KerasH5.Read(path);
            // Keras' default is topological order; match by name when every layer name is in the file (ConvKit's names
            // follow keras.applications), so that files saved with other automatic numbering still load.
            var names = file.Layers.Where(l => l.Weights.Count > 0).Select(l => l.Name).ToHashSet();
            bool byName = KerasWeightsLoader.WeightedLayers(model).All(l => names.Contains(l.Name));
            KerasWeightsLoader.Load(model, file, new LoadWeightsOptions { ByName = byName });
        }
        else throw new WrongFileFormatException(path, kind, "a weights file (.safetensors or Keras .h5)");
        ThrowIfNonFinite(model, path);
    }

    /// <summary>Refuses weights with NaN/Inf values, naming the first layer and weight that has them.</summary>
    internal static void ThrowIfNonFinite(Model model, string path)
    {
        foreach (var (key, w) in ModelFormat.NamedWeights(model))
            if (w.Value.is_floating_point() && ModelFormat.NonFiniteCount(w.Value) is > 0 and var bad)
                throw new WeightsMismatchException(path, w.Owner.Name, w.Name, $"{bad} NaN/Inf value{(bad == 1 ? "" : "s")} in '{key}'; the weights are unusable.");
    }
}
