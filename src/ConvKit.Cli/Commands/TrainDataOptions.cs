using System.CommandLine;
using System.Globalization;
using ConvKit.Data;
using ConvKit.Data.Streaming;

namespace ConvKit.Cli.Commands;

/// <summary>
/// The options of <c>convkit train</c> for a folder of your own images (<c>--data DIR</c> with one subfolder per
/// class): <c>--val-data</c>, <c>--image-size</c>, <c>--cache</c>, <c>--workers</c>; and how <c>--data</c>'s layout is
/// told apart from a built-in dataset's files.
/// </summary>
public static class TrainDataOptions
{
    /// <summary>The options, to add to the command.</summary>
    public sealed class Set
    {
        /// <summary><c>--val-data DIR</c>.</summary>
        public Option<string?> ValData { get; } = new("--val-data") { Description = "Folder of validation images, one subfolder per class (with --data DIR of class folders; default: --validation-split of --data)." };

        /// <summary><c>--image-size H[xW]</c>.</summary>
        public Option<string?> ImageSize { get; } = new("--image-size") { Description = "Size images are resized to, H or HxW (with --data DIR of class folders; default: the model's input size)." };

        /// <summary><c>--cache memory|disk</c>.</summary>
        public Option<string?> Cache { get; } = new("--cache") { Description = "Keep decoded images (uint8) in memory or on disk so epochs after the first do no decoding: memory or disk." };

        /// <summary><c>--workers N</c>.</summary>
        public Option<int?> Workers { get; } = new("--workers") { Description = $"Image decoding threads (default {DataLoader.DefaultWorkers} here: half the logical processors, at most 4)." };

        /// <summary>Every option.</summary>
        public Option[] All => [ValData, ImageSize, Cache, Workers];

        /// <summary>The values given.</summary>
        public TrainDataSettings Read(ParseResult parse) =>
            new(parse.GetValue(ValData), parse.GetValue(ImageSize), parse.GetValue(Cache), parse.GetValue(Workers));
    }

    /// <summary>What <c>--data</c> names.</summary>
    public enum Layout
    {
        /// <summary>No <c>--data</c>, or a built-in dataset's file or folder.</summary>
        BuiltIn,

        /// <summary>A folder with one subfolder of images per class.</summary>
        ClassFolders,
    }

    // Files of the built-in datasets (IDX for the MNIST family, CIFAR's binary batches or its archives).
    static bool IsBuiltInFile(string name) =>
        name.Contains("-idx", StringComparison.OrdinalIgnoreCase) || name.Contains("ubyte", StringComparison.OrdinalIgnoreCase)
        || name.StartsWith("cifar", StringComparison.OrdinalIgnoreCase) || name.StartsWith("data_batch", StringComparison.OrdinalIgnoreCase)
        || name.StartsWith("test_batch", StringComparison.OrdinalIgnoreCase) || name is "train.bin" or "test.bin" or "batches.meta.txt";

    /// <summary>
    /// Tells which layout <paramref name="data"/> has: class folders (subfolders holding images, no built-in dataset
    /// file at the top), or a built-in dataset's files (a file, or a folder of them).
    /// </summary>
    /// <exception cref="ConvKitException">The folder holds both layouts, images without class folders, or class folders
    /// without images; the message names --data. An empty folder is left to the built-in dataset's loader, which says what
    /// files it expects there.</exception>
    public static Layout Detect(string? data)
    {
        if (data is null || File.Exists(data) || !Directory.Exists(data)) return Layout.BuiltIn;
        string[] files, folders;
        try
        {
            files = Directory.GetFiles(data).Select(f => Path.GetFileName(f)).ToArray();
            folders = Directory.GetDirectories(data);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConvKitException($"--data '{data}' cannot be listed: {e.Message}", e);
        }
        bool builtIn = files.Any(IsBuiltInFile) || folders.Any(f => IsBuiltInFolder(Path.GetFileName(f)));
        var imageFolders = folders.Where(HoldsImages).ToList();
        // An empty folder is where a built-in dataset's files may go: its loader says which files and where from.
        if (files.Length == 0 && folders.Length == 0) return Layout.BuiltIn;
        if (builtIn && imageFolders.Count > 0)
            throw new ConvKitException($"--data '{data}' is ambiguous: it holds a built-in dataset's files ({string.Join(", ", files.Where(IsBuiltInFile).Take(3))}) " +
                $"and class folders of images ({string.Join(", ", imageFolders.Take(3).Select(Path.GetFileName))}); point --data at one of them.");
        if (imageFolders.Count > 0) return Layout.ClassFolders;
        if (builtIn) return Layout.BuiltIn;
        if (files.Any(IsImage))
            throw new ConvKitException($"--data '{data}' holds images directly: move them into one subfolder per class (the subfolder names are the class names).");
        if (folders.Length > 0 && files.Length == 0)
            throw new ConvKitException($"--data '{data}' has subfolders but no images in them (PNG, JPEG, BMP, GIF, WebP): give a folder with one subfolder of images per class, or a built-in dataset's files.");
        return Layout.BuiltIn; // its loader names the files it expected
    }

    static bool IsImage(string path) => ImageDatasets.Extensions.Contains(Path.GetExtension(path), StringComparer.OrdinalIgnoreCase);

    static bool IsBuiltInFolder(string name) => name.StartsWith("cifar", StringComparison.OrdinalIgnoreCase) || name.Contains("mnist", StringComparison.OrdinalIgnoreCase);

    static bool HoldsImages(string folder)
    {
        try
        {
            return Directory.EnumerateFiles(folder, "*", new EnumerationOptions { RecurseSubdirectories = true, MaxRecursionDepth = 4, IgnoreInaccessible = true })
                .Any(IsImage);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>Parses <c>--image-size</c>: H or HxW, each 1..4096.</summary>
    /// <exception cref="ConvKitException">Malformed or out of range; the message names --image-size.</exception>
    public static (int Height, int Width) ParseImageSize(string text)
    {
        var parts = text.Trim().ToLowerInvariant().Split('x');
        if (parts.Length is 1 or 2 && parts.All(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v is >= 1 and <= 4096))
        {
            int h = int.Parse(parts[0], CultureInfo.InvariantCulture);
            return (h, parts.Length == 2 ? int.Parse(parts[1], CultureInfo.InvariantCulture) : h);
        }
        throw new ConvKitException($"--image-size must be H or HxW with sizes from 1 to 4096 (e.g. 64 or 96x128); received '{text}'.");
    }

    /// <summary>Parses <c>--cache</c>.</summary>
    /// <exception cref="ConvKitException">Not memory or disk; the message names --cache.</exception>
    public static DatasetCache ParseCache(string? text) => text?.ToLowerInvariant() switch
    {
        null => DatasetCache.None,
        "memory" => DatasetCache.Memory,
        "disk" => DatasetCache.Disk,
        _ => throw new ConvKitException($"--cache must be memory or disk; received '{text}'."),
    };

    /// <summary>Checks the folder options by their CLI names, before anything is loaded.</summary>
    /// <exception cref="ConvKitException">An option is invalid or used without <c>--data DIR</c> of class folders.</exception>
    public static void Validate(TrainDataSettings d, Layout layout)
    {
        if (d.Workers is { } w && (w < 0 || w > 64)) throw new ConvKitException($"--workers must be between 0 and 64; received {w}.");
        if (d.ImageSize is { } size) ParseImageSize(size);
        ParseCache(d.Cache);
        if (layout != Layout.ClassFolders)
        {
            var given = new[] { ("--val-data", d.ValData is not null), ("--image-size", d.ImageSize is not null), ("--cache", d.Cache is not null), ("--workers", d.Workers is not null) }
                .Where(p => p.Item2).Select(p => p.Item1).ToList();
            if (given.Count > 0)
                throw new ConvKitException($"{string.Join(", ", given)} apply to --data DIR with one subfolder of images per class; the built-in datasets load in memory.");
            return;
        }
        if (d.ValData is { } v)
        {
            if (!Directory.Exists(v)) throw new ConvKitException($"--val-data '{v}' does not exist (give a folder with one subfolder of images per class).");
            if (Detect(v) != Layout.ClassFolders) throw new ConvKitException($"--val-data '{v}' is not a folder of class subfolders of images.");
        }
    }
}

/// <summary>The folder options' values (null: not given).</summary>
/// <param name="ValData">--val-data.</param>
/// <param name="ImageSize">--image-size.</param>
/// <param name="Cache">--cache.</param>
/// <param name="Workers">--workers.</param>
public sealed record TrainDataSettings(string? ValData = null, string? ImageSize = null, string? Cache = null, int? Workers = null);
