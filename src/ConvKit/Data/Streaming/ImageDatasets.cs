using System.Globalization;
using ConvKit.Data.Imaging;

namespace ConvKit.Data.Streaming;

/// <summary>Which part of a split dataset to load, Keras' <c>subset</c>.</summary>
public enum DatasetSubset
{
    /// <summary>The first (1 - validation_split) of the (shuffled) files.</summary>
    Training,

    /// <summary>The last validation_split of the (shuffled) files.</summary>
    Validation,
}

/// <summary>
/// Streaming image datasets from files, Keras' <c>keras.utils.image_dataset_from_directory</c> and a CSV/list-file
/// form. They return <see cref="DataLoader"/>s that decode on background workers.
/// </summary>
/// <remarks>
/// Differences from Keras, on purpose: pixels are scaled by <c>rescale</c> (default 1/255, giving [0, 1]; pass 1 for
/// Keras' [0, 255]); downscaling is antialiased by default (as torchvision v2; <c>antialias: false</c> for Keras'
/// plain bilinear); EXIF orientation is applied; an empty class folder, a single class or a folder without images
/// are errors instead of an empty or one-class dataset. Images of mixed sizes and modes (grayscale, RGB, RGBA, palette)
/// are converted to <c>colorMode</c> and resized to <c>imageSize</c>. Files that fail to decode are skipped with a
/// warning when the loader meets them (see <see cref="DataLoader"/>).
/// </remarks>
public static class ImageDatasets
{
    /// <summary>The file extensions listed as images (any case).</summary>
    public static IReadOnlyList<string> Extensions { get; } = [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"];

    // The key of the split's shuffle in SampleRandom: distinct from every epoch's.
    const int SplitKey = -1;

    /// <summary>
    /// A dataset of the images in <paramref name="directory"/>'s class subfolders, Keras' <c>image_dataset_from_directory</c>:
    /// labels inferred from the subfolder names sorted ordinally (or the order of <paramref name="classNames"/>),
    /// images found recursively in each class folder.
    /// </summary>
    /// <param name="directory">The folder holding one subfolder per class.</param>
    /// <param name="batchSize">Samples per batch.</param>
    /// <param name="imageSize">Size every image is resized to (Keras' default 256x256).</param>
    /// <param name="colorMode">Channels every image is converted to.</param>
    /// <param name="shuffle">Shuffle the files (for the split) and every epoch.</param>
    /// <param name="seed">Seed of the shuffles and augmentation; required with a validation split and shuffling, as in Keras.</param>
    /// <param name="validationSplit">Fraction of the files held out for validation (0 for none).</param>
    /// <param name="subset">Which part to return when <paramref name="validationSplit"/> is set.</param>
    /// <param name="cropToAspectRatio">Crop to the target aspect ratio before resizing instead of stretching.</param>
    /// <param name="antialias">Antialiased downscaling (default on).</param>
    /// <param name="followLinks">Descend into symbolic links to folders (a link loop is an error).</param>
    /// <param name="classNames">The class folders to use, in label order; null for every subfolder, sorted.</param>
    /// <param name="workers">Decoding threads (default <see cref="DataLoader.DefaultWorkers"/>).</param>
    /// <param name="augmentation">On-the-fly augmentation; null for none.</param>
    /// <param name="cache">Keep decoded samples so that epochs after the first do no decoding.</param>
    /// <param name="rescale">Factor applied to the uint8 pixels (default 1/255).</param>
    /// <param name="decodeOptions">Pixel budget and aspect-ratio bound.</param>
    /// <returns>The loader; its <see cref="DataLoader.Source"/> is an <see cref="ImageFileSource"/>.</returns>
    /// <exception cref="DatasetNotFoundException">The folder does not exist.</exception>
    /// <exception cref="DatasetFormatException">No class folder, a single class, an empty class folder, no images, a
    /// class name not found, or a symbolic-link loop; the message names the folder.</exception>
    /// <exception cref="InvalidOptionException">A validation split without a subset or seed, or a subset without a split.</exception>
    public static DataLoader ImageDatasetFromDirectory(string directory, int batchSize = 32, (int Height, int Width)? imageSize = null,
        ColorMode colorMode = ColorMode.Rgb, bool shuffle = true, long? seed = null, double validationSplit = 0, DatasetSubset? subset = null,
        bool cropToAspectRatio = false, bool antialias = true, bool followLinks = false, IReadOnlyList<string>? classNames = null,
        int? workers = null, ImageAugmentation? augmentation = null, DatasetCache cache = DatasetCache.None, float rescale = 1f / 255f,
        ImageDecodeOptions? decodeOptions = null)
    {
        CheckSplit(validationSplit, subset, shuffle, seed);
        var (files, names) = ListDirectory(directory, followLinks, classNames);
        long s = seed ?? Backend.NextSeed();
        if (subset is { } part) files = Split(files, validationSplit, shuffle, s, part, directory);
        var source = new ImageFileSource(files, names, imageSize ?? (256, 256), colorMode, cropToAspectRatio, antialias, decodeOptions);
        return new DataLoader(source, batchSize, shuffle, s, workers, augmentation: augmentation, cache: cache, rescale: rescale);
    }

    /// <summary>
    /// The same dataset as a list file: one <c>path,label</c> line per image (a header line <c>path,label</c> is
    /// skipped, as are empty lines and lines starting with #; fields may be double-quoted; relative paths are relative
    /// to the list file's folder). Labels are names: the classes are the distinct labels, sorted ordinally (numerically
    /// when every label is an integer).
    /// </summary>
    /// <param name="listFile">The CSV file.</param>
    /// <param name="batchSize">Samples per batch.</param>
    /// <param name="imageSize">Size every image is resized to (default 256x256).</param>
    /// <param name="colorMode">Channels every image is converted to.</param>
    /// <param name="shuffle">Shuffle the files (for the split) and every epoch.</param>
    /// <param name="seed">Seed of the shuffles; required with a validation split and shuffling.</param>
    /// <param name="validationSplit">Fraction of the files held out for validation.</param>
    /// <param name="subset">Which part to return when <paramref name="validationSplit"/> is set.</param>
    /// <param name="cropToAspectRatio">Crop to the target aspect ratio before resizing.</param>
    /// <param name="antialias">Antialiased downscaling (default on).</param>
    /// <param name="workers">Decoding threads.</param>
    /// <param name="augmentation">On-the-fly augmentation; null for none.</param>
    /// <param name="cache">Keep decoded samples.</param>
    /// <param name="rescale">Factor applied to the uint8 pixels.</param>
    /// <param name="decodeOptions">Pixel budget and aspect-ratio bound.</param>
    /// <returns>The loader.</returns>
    /// <exception cref="DatasetNotFoundException">The list file does not exist.</exception>
    /// <exception cref="DatasetFormatException">A malformed line (named by its number), no lines, or a single class.</exception>
    public static DataLoader ImageDatasetFromCsv(string listFile, int batchSize = 32, (int Height, int Width)? imageSize = null,
        ColorMode colorMode = ColorMode.Rgb, bool shuffle = true, long? seed = null, double validationSplit = 0, DatasetSubset? subset = null,
        bool cropToAspectRatio = false, bool antialias = true, int? workers = null, ImageAugmentation? augmentation = null,
        DatasetCache cache = DatasetCache.None, float rescale = 1f / 255f, ImageDecodeOptions? decodeOptions = null)
    {
        CheckSplit(validationSplit, subset, shuffle, seed);
        var (files, names) = ReadList(listFile);
        long s = seed ?? Backend.NextSeed();
        if (subset is { } part) files = Split(files, validationSplit, shuffle, s, part, listFile);
        var source = new ImageFileSource(files, names, imageSize ?? (256, 256), colorMode, cropToAspectRatio, antialias, decodeOptions);
        return new DataLoader(source, batchSize, shuffle, s, workers, augmentation: augmentation, cache: cache, rescale: rescale);
    }

    static void CheckSplit(double validationSplit, DatasetSubset? subset, bool shuffle, long? seed)
    {
        if (!(validationSplit >= 0 && validationSplit < 1))
            throw new InvalidOptionException(nameof(validationSplit), $"validation_split must be in [0, 1); received {validationSplit}.");
        if (validationSplit > 0 && subset is null)
            throw new InvalidOptionException(nameof(subset), "validation_split is set: pass subset (Training or Validation) to choose the part to load.");
        if (subset is not null && validationSplit == 0)
            throw new InvalidOptionException(nameof(validationSplit), "subset is set but validation_split is 0: set validation_split.");
        if (subset is { } s && !Enum.IsDefined(s)) throw new InvalidOptionException(nameof(subset), $"subset must be Training or Validation; received {(int)s}.");
        if (validationSplit > 0 && shuffle && seed is null)
            throw new InvalidOptionException(nameof(seed), "validation_split with shuffling needs a seed, so that the training and validation subsets do not overlap.");
    }

    /// <summary>
    /// Keras' split: the files are shuffled with the seed (when shuffling), then the last validation_split of them are
    /// the validation subset and the rest the training subset, so that two calls with one seed never overlap.
    /// </summary>
    internal static List<(string Path, int Label)> Split(List<(string Path, int Label)> files, double validationSplit, bool shuffle, long seed,
        DatasetSubset subset, string where)
    {
        int n = files.Count;
        int val = (int)(validationSplit * n);
        if (val == 0 || val == n)
            throw new DatasetFormatException($"'{where}': validation_split={validationSplit.ToString(CultureInfo.InvariantCulture)} of {n} images leaves an empty training or validation subset.");
        var order = shuffle ? SampleRandom.Permutation(n, seed, SplitKey) : Enumerable.Range(0, n).ToArray();
        var picked = subset == DatasetSubset.Training ? order.Take(n - val) : order.Skip(n - val);
        return picked.Select(i => files[i]).ToList();
    }

    /// <summary>The image files of the class subfolders (recursively) and the class names.</summary>
    internal static (List<(string Path, int Label)> Files, string[] ClassNames) ListDirectory(string directory, bool followLinks, IReadOnlyList<string>? classNames)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!Directory.Exists(directory)) throw new DatasetNotFoundException($"image folder '{directory}' does not exist.");
        var subfolders = Directory.GetDirectories(directory)
            .Where(d => followLinks || new DirectoryInfo(d).LinkTarget is null)
            .Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();
        string[] names;
        if (classNames is not null)
        {
            var missing = classNames.Where(c => !subfolders.Contains(c)).ToList();
            if (missing.Count > 0)
                throw new DatasetFormatException($"'{directory}': class_names lists {string.Join(", ", missing.Select(m => $"'{m}'"))}, which is not a subfolder (found {Describe(subfolders)}).");
            if (classNames.Distinct().Count() != classNames.Count) throw new DatasetFormatException($"'{directory}': class_names lists a class twice.");
            names = classNames.ToArray();
        }
        else names = subfolders.ToArray();
        if (names.Length == 0)
        {
            bool loose = Directory.EnumerateFiles(directory).Any(IsImage);
            throw new DatasetFormatException($"'{directory}': expected one subfolder per class holding its images, found no subfolder" +
                (loose ? " (the images lie directly in the folder: move them into one folder per class)." : "."));
        }
        if (names.Length == 1)
            throw new DatasetFormatException($"'{directory}': found a single class folder ('{names[0]}'); a classifier needs at least two classes (one subfolder per class).");
        var files = new List<(string, int)>();
        for (int c = 0; c < names.Length; c++)
        {
            var found = new List<string>();
            Walk(Path.Combine(directory, names[c]), followLinks, found, new HashSet<string>(StringComparer.Ordinal));
            found.Sort(StringComparer.Ordinal);
            if (found.Count == 0)
                throw new DatasetFormatException($"'{directory}': class folder '{names[c]}' holds no image (PNG, JPEG, BMP, GIF, WebP); remove it or add its images.");
            files.AddRange(found.Select(f => (f, c)));
        }
        return (files, names);
    }

    /// <summary>Whether the file name has an image extension.</summary>
    internal static bool IsImage(string path) => Extensions.Contains(Path.GetExtension(path), StringComparer.OrdinalIgnoreCase);

    static string Describe(List<string> names) => names.Count == 0 ? "none"
        : string.Join(", ", names.Take(5).Select(n => $"'{n}'")) + (names.Count > 5 ? $" and {names.Count - 5} more" : "");

    static void Walk(string folder, bool followLinks, List<string> found, HashSet<string> visiting)
    {
        string real;
        try
        {
            real = Path.GetFullPath(new DirectoryInfo(folder).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? folder);
        }
        catch (IOException e)
        {
            throw new DatasetFormatException($"'{folder}': cannot follow its symbolic link ({e.Message}); a symbolic-link loop?", e);
        }
        if (!visiting.Add(real))
            throw new DatasetFormatException($"'{folder}': symbolic-link loop (it leads back to '{real}', a folder already being listed); remove the link or do not follow links.");
        try
        {
            foreach (var f in Directory.EnumerateFiles(folder))
                if (IsImage(f)) found.Add(f);
            foreach (var d in Directory.EnumerateDirectories(folder))
            {
                if (!followLinks && new DirectoryInfo(d).LinkTarget is not null) continue;
                Walk(d, followLinks, found, visiting);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DatasetFormatException($"'{folder}': cannot list the folder: {e.Message}", e);
        }
        visiting.Remove(real);
    }

    static (List<(string Path, int Label)> Files, string[] ClassNames) ReadList(string listFile)
    {
        ArgumentNullException.ThrowIfNull(listFile);
        if (!File.Exists(listFile)) throw new DatasetNotFoundException($"list file '{listFile}' does not exist.");
        string[] lines;
        try { lines = File.ReadAllLines(listFile); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DatasetFormatException($"'{listFile}': cannot read the list file: {e.Message}", e);
        }
        var baseDir = Path.GetDirectoryName(Path.GetFullPath(listFile))!;
        var rows = new List<(string Path, string Label)>();
        bool first = true;
        for (int i = 0; i < lines.Length; i++)
        {
            var line = lines[i].Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var fields = ParseCsvLine(line, listFile, i + 1);
            if (fields.Count != 2)
                throw new DatasetFormatException($"'{listFile}' line {i + 1}: expected 2 fields (path,label), found {fields.Count}.");
            bool header = first && fields[0].Equals("path", StringComparison.OrdinalIgnoreCase) && fields[1].Equals("label", StringComparison.OrdinalIgnoreCase);
            first = false;
            if (header) continue;
            if (fields[0].Length == 0) throw new DatasetFormatException($"'{listFile}' line {i + 1}: the path is empty.");
            if (fields[1].Length == 0) throw new DatasetFormatException($"'{listFile}' line {i + 1}: the label is empty.");
            rows.Add((Path.IsPathRooted(fields[0]) ? fields[0] : Path.Combine(baseDir, fields[0]), fields[1]));
        }
        if (rows.Count == 0) throw new DatasetFormatException($"'{listFile}': no image lines (expected path,label per line).");
        var distinct = rows.Select(r => r.Label).Distinct(StringComparer.Ordinal).ToList();
        bool numeric = distinct.All(l => long.TryParse(l, NumberStyles.Integer, CultureInfo.InvariantCulture, out _));
        var names = (numeric ? distinct.OrderBy(l => long.Parse(l, CultureInfo.InvariantCulture)) : distinct.Order(StringComparer.Ordinal)).ToArray();
        if (names.Length == 1)
            throw new DatasetFormatException($"'{listFile}': every line has the label '{names[0]}'; a classifier needs at least two classes.");
        var index = names.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i, StringComparer.Ordinal);
        return (rows.Select(r => (r.Path, index[r.Label])).ToList(), names);
    }

    static List<string> ParseCsvLine(string line, string file, int number)
    {
        var fields = new List<string>();
        var sb = new System.Text.StringBuilder();
        int i = 0;
        while (true)
        {
            sb.Clear();
            if (i < line.Length && line[i] == '"')
            {
                i++;
                while (true)
                {
                    if (i >= line.Length) throw new DatasetFormatException($"'{file}' line {number}: a quoted field is not closed.");
                    if (line[i] == '"')
                    {
                        if (i + 1 < line.Length && line[i + 1] == '"') { sb.Append('"'); i += 2; continue; }
                        i++;
                        break;
                    }
                    sb.Append(line[i++]);
                }
                while (i < line.Length && line[i] == ' ') i++;
                if (i < line.Length && line[i] != ',') throw new DatasetFormatException($"'{file}' line {number}: text after a quoted field.");
            }
            else
            {
                while (i < line.Length && line[i] != ',') sb.Append(line[i++]);
            }
            fields.Add(sb.ToString().Trim());
            if (i >= line.Length) return fields;
            i++; // the comma
        }
    }
}
