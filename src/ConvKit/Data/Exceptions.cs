namespace ConvKit.Data;

/// <summary>A dataset file is malformed: truncated, wrong magic number, bad compression, inconsistent counts, ...</summary>
/// <remarks>The message names the file, the byte offset where known, and what was expected versus found.</remarks>
public class DatasetFormatException : InvalidFileException
{
    /// <summary>Creates the exception with a message.</summary>
    public DatasetFormatException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public DatasetFormatException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>A dataset's files were found nowhere and could not be downloaded.</summary>
/// <remarks>The message lists where the files are looked for and how to provide them.</remarks>
public class DatasetNotFoundException : ConvKitException
{
    /// <summary>Creates the exception with a message.</summary>
    public DatasetNotFoundException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public DatasetNotFoundException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>A download finished but its content is not the published file (size or SHA-256 mismatch).</summary>
public class DatasetDownloadException : InvalidFileException
{
    /// <summary>Creates the exception with a message.</summary>
    public DatasetDownloadException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public DatasetDownloadException(string message, Exception innerException) : base(message, innerException) { }
}
