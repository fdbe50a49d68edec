namespace ConvKit;

/// <summary>Base class of the errors ConvKit reports.</summary>
public class ConvKitException : Exception
{
    /// <summary>Creates the exception with a message.</summary>
    public ConvKitException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the exception that caused it.</summary>
    public ConvKitException(string message, Exception innerException) : base(message, innerException) { }
}
