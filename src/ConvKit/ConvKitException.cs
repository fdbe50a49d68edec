namespace ConvKit;

/// <summary>Base class of the errors ConvKit reports about invalid input, files and models.</summary>
public class ConvKitException : Exception
{
    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What went wrong.</param>
    public ConvKitException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The underlying cause.</param>
    public ConvKitException(string message, Exception innerException) : base(message, innerException) { }
}
