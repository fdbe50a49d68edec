namespace ConvKit;

/// <summary>Base class of every error ConvKit reports.</summary>
public class ConvKitException : Exception
{
    /// <summary>Creates the exception with a message.</summary>
    public ConvKitException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    public ConvKitException(string message, Exception inner) : base(message, inner) { }
}
