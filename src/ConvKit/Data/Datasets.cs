namespace ConvKit.Data;

/// <summary>A named dataset: where its files come from and how to load them.</summary>
public sealed class DatasetInfo
{
    readonly Func<string, string?> locate;
    readonly Func<string, DatasetSplits> load;

    internal DatasetInfo(string name, IReadOnlyList<DatasetFile> files, string expectation, string? packageHint,
        Func<string, string?> locate, Func<string, DatasetSplits> load)
    {
        Name = name;
        Files = files;
        Expectation = expectation;
        PackageHint = packageHint;
        this.locate = locate;
        this.load = load;
    }

    /// <summary>Name, also the folder name under each data folder (e.g. <c>fashion-mnist</c>).</summary>
    public string Name { get; }

    /// <summary>The canonical files, with their published sizes and SHA-256.</summary>
    public IReadOnlyList<DatasetFile> Files { get; }

    /// <summary>Human-readable description of the files a folder must hold.</summary>
    public string Expectation { get; }

    /// <summary>How to install the dataset from an operating-system package, when one exists.</summary>
    public string? PackageHint { get; }

    /// <summary>The path to load from if <paramref name="path"/> (a folder, or an archive) holds this dataset, else null.</summary>
    public string? Locate(string path) => locate(path);

    /// <summary>
    /// Loads the train and test splits, finding the files with <paramref name="resolver"/> (default
    /// <see cref="DatasetResolver.Default"/>) and downloading them if needed. The caller owns the result.
    /// </summary>
    /// <exception cref="DatasetNotFoundException">The files are nowhere and cannot be downloaded.</exception>
    /// <exception cref="DatasetDownloadException">A download does not match its published SHA-256.</exception>
    /// <exception cref="DatasetFormatException">A file is malformed.</exception>
    public DatasetSplits Load(string? path = null, IProgress<DownloadProgress>? progress = null, DatasetResolver? resolver = null) =>
        load((resolver ?? DatasetResolver.Default).Resolve(this, path, progress));

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>The built-in datasets, like <c>keras.datasets</c>.</summary>
public static class Datasets
{
    static readonly string[] IdxFiles =
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"];

    /// <summary>MNIST handwritten digits, 60000 + 10000 grey 28x28 images, classes "0".."9".</summary>
    public static DatasetInfo Mnist { get; } = IdxDataset("mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/",
        [9912422, 28881, 1648877, 4542],
        // Published by TensorFlow Datasets (url_checksums/mnist.txt) for the same LeCun files.
        ["440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
         "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"],
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], packageHint: null);

    /// <summary>Fashion-MNIST (Zalando), 60000 + 10000 grey 28x28 images of 10 clothing classes.</summary>
    public static DatasetInfo FashionMnist { get; } = IdxDataset("fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        [26421880, 29515, 4422102, 5148],
        // TensorFlow Datasets url_checksums/fashion_mnist.txt. Debian's dataset-fashion-mnist re-compresses the files
        // (same content, different gzip header), so its .gz files have other hashes; local files are not hashed.
        ["3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
         "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"],
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        packageHint: "On Debian/Ubuntu: apt-get install dataset-fashion-mnist (installs /usr/share/datasets/fashion-mnist).");

    /// <summary>Kuzushiji-MNIST, 60000 + 10000 grey 28x28 images of 10 cursive hiragana (romanized class names).</summary>
    public static DatasetInfo KMnist { get; } = IdxDataset("kmnist", "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        [18165135, 29497, 3041136, 5120],
        // TensorFlow Datasets url_checksums/kmnist.txt.
        ["51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4", "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
         "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5", "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"],
        ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"], packageHint: null);

    /// <summary>CIFAR-10, 50000 + 10000 RGB 32x32 images of 10 classes.</summary>
    public static DatasetInfo Cifar10 { get; } = new("cifar10",
        // TensorFlow Datasets url_checksums/cifar10.txt.
        [new DatasetFile("cifar-10-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", 170052171,
            "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd")],
        "cifar-10-binary.tar.gz or its extracted cifar-10-batches-bin folder", null,
        p => LocateCifar(p, "cifar-10-binary.tar.gz", "cifar-10-batches-bin", "data_batch_1.bin"),
        p => Cifar.Load10(p));

    /// <summary>CIFAR-100, 50000 + 10000 RGB 32x32 images of 100 fine classes (see <see cref="Cifar.Load100"/> for coarse labels).</summary>
    public static DatasetInfo Cifar100 { get; } = new("cifar100",
        // TensorFlow Datasets url_checksums/cifar100.txt.
        [new DatasetFile("cifar-100-binary.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz", 168513733,
            "58a81ae192c23a4be8b1804d68e518ed807d710a4eb253b1f2a199162a40d8ec")],
        "cifar-100-binary.tar.gz or its extracted cifar-100-binary folder", null,
        p => LocateCifar(p, "cifar-100-binary.tar.gz", "cifar-100-binary", "train.bin"),
        p => Cifar.Load100(p, CifarLabelMode.Fine));

    /// <summary>All built-in datasets.</summary>
    public static IReadOnlyList<DatasetInfo> All { get; } = [Mnist, FashionMnist, KMnist, Cifar10, Cifar100];

    /// <summary>The dataset called <paramref name="name"/> (case-insensitive; '_' may stand for '-').</summary>
    /// <exception cref="UnknownNameException">No dataset has that name.</exception>
    public static DatasetInfo Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string key = name.Trim().Replace('_', '-');
        return All.FirstOrDefault(d => string.Equals(d.Name, key, StringComparison.OrdinalIgnoreCase))
            ?? throw new UnknownNameException("dataset", name, $"Unknown dataset '{name}'; known: {string.Join(", ", All.Select(d => d.Name))}.");
    }

    static DatasetInfo IdxDataset(string name, string baseUrl, long[] sizes, string[] sha256, string[] classNames, string? packageHint)
    {
        var files = IdxFiles.Select((f, i) => new DatasetFile(f + ".gz", baseUrl + f + ".gz", sizes[i], sha256[i])).ToList();
        return new DatasetInfo(name, files, "the four IDX files " + string.Join(", ", IdxFiles.Select(f => f + ".gz")) + " (gzip or raw)",
            packageHint, LocateIdx, folder => LoadIdx(folder, classNames));
    }

    static string? LocateIdx(string folder) =>
        Directory.Exists(folder) && IdxFiles.All(f => IdxPath(folder, f) is not null) ? folder : null;

    static string? IdxPath(string folder, string baseName)
    {
        foreach (var candidate in new[] { baseName + ".gz", baseName })
        {
            var p = Path.Combine(folder, candidate);
            if (File.Exists(p)) return p;
        }
        return null;
    }

    static DatasetSplits LoadIdx(string folder, IReadOnlyList<string> classNames)
    {
        var train = Idx.Load(IdxPath(folder, IdxFiles[0])!, IdxPath(folder, IdxFiles[1])!, classNames);
        try
        {
            var test = Idx.Load(IdxPath(folder, IdxFiles[2])!, IdxPath(folder, IdxFiles[3])!, classNames);
            // Found now, not after an epoch of training: the test split must hold images of the training size.
            if (test.Height != train.Height || test.Width != train.Width || test.Channels != train.Channels)
            {
                var message = $"{folder}: the test images ({IdxPath(folder, IdxFiles[2])}) are {test.Height}x{test.Width}x{test.Channels}, " +
                    $"the training images ({IdxPath(folder, IdxFiles[0])}) {train.Height}x{train.Width}x{train.Channels}; both splits must have one image size.";
                test.Dispose();
                throw new DatasetFormatException(message);
            }
            return new DatasetSplits(train, test);
        }
        catch
        {
            train.Dispose();
            throw;
        }
    }

    static string? LocateCifar(string path, string archive, string subfolder, string probe)
    {
        if (File.Exists(path)) return path.EndsWith(".tar.gz", StringComparison.OrdinalIgnoreCase) ? path : null;
        if (!Directory.Exists(path)) return null;
        bool found = File.Exists(Path.Combine(path, probe)) || File.Exists(Path.Combine(path, subfolder, probe))
                     || File.Exists(Path.Combine(path, archive));
        return found ? path : null;
    }
}
