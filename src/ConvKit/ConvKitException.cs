namespace ConvKit;

/// <summary>
/// Base class of every error ConvKit reports. The derived type says what the error means, the same type for the same
/// meaning everywhere: <see cref="InvalidOptionException"/> (an argument or CLI option; <see cref="LayerArgumentException"/>
/// for a layer's), <see cref="UnknownNameException"/> (a name that names nothing), <see cref="ShapeException"/> (shapes
/// or layouts that do not fit), <see cref="TargetException"/> (training targets), <see cref="GraphException"/> (a graph
/// that cannot be built), <see cref="InvalidFileException"/> (a file's format, content or integrity),
/// <see cref="UnsupportedException"/> (a valid request ConvKit does not support). ConvKitException itself is an
/// operation that failed for another reason: an I/O error with the path, a call refused while another runs, a stale
/// inference model, a libtorch failure with the layer and shapes.
/// </summary>
public class ConvKitException : Exception
{
    /// <summary>Creates the exception with a message.</summary>
    public ConvKitException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    public ConvKitException(string message, Exception inner) : base(message, inner) { }
}
