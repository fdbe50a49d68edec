namespace ConvKit;

/// <summary>A layer or model argument is invalid. The message names the layer, the argument and the value.</summary>
public class LayerArgumentException : InvalidOptionException
{
    /// <summary>Creates the exception.</summary>
    public LayerArgumentException(string layer, string argument, string message)
        : base(argument, $"{layer}: invalid argument '{argument}': {message}")
    {
        Layer = layer;
        Argument = argument;
    }

    /// <summary>The layer (type and name) whose argument is wrong.</summary>
    public string Layer { get; }

    /// <summary>The argument name, in Keras' spelling.</summary>
    public string Argument { get; }
}

/// <summary>A layer received inputs whose shapes it cannot handle, or a graph is malformed.</summary>
public class ShapeException : ConvKitException
{
    /// <summary>Creates the exception.</summary>
    public ShapeException(string message) : base(message) { }
}

/// <summary>A model's graph cannot be built or run as described (disconnected, duplicate names, not built).</summary>
public class GraphException : ConvKitException
{
    /// <summary>Creates the exception.</summary>
    public GraphException(string message) : base(message) { }
}

/// <summary>Training or evaluation targets do not fit the loss, a metric or the model's output (dtype, shape, a label
/// out of range, a non-finite value). The message names the loss or metric, the shapes and dtypes, and the fix.</summary>
public class TargetException : ConvKitException
{
    /// <summary>Creates the exception.</summary>
    public TargetException(string message) : base(message) { }
}

/// <summary>
/// An option or argument is invalid: out of range, of the wrong kind, or inconsistent with another. The message names
/// the option as the caller wrote it (a CLI option such as <c>--batch-size</c>, or an argument in Keras' spelling such
/// as <c>batch_size</c>), the value received and what is accepted.
/// </summary>
public class InvalidOptionException : ConvKitException
{
    /// <summary>Creates the exception; <paramref name="message"/> is the whole message and names the option.</summary>
    public InvalidOptionException(string option, string message) : base(message) => Option = option;

    /// <summary>Creates the exception with the error that caused it.</summary>
    public InvalidOptionException(string option, string message, Exception inner) : base(message, inner) => Option = option;

    /// <summary>The option or argument, as the caller wrote it (<c>--epochs</c>, <c>batch_size</c>).</summary>
    public string Option { get; }
}

/// <summary>
/// A name does not name anything of its kind: a model in the zoo, a dataset, a layer of a model, a registered layer
/// class, a loss, metric or optimizer, a log or history key. The message lists the names that exist (or a few).
/// </summary>
public class UnknownNameException : ConvKitException
{
    /// <summary>Creates the exception; <paramref name="message"/> is the whole message.</summary>
    public UnknownNameException(string kind, string name, string message) : base(message)
    {
        Kind = kind;
        Name = name;
    }

    /// <summary>What was looked up: "model", "dataset", "layer", "loss", "metric", "optimizer", "log key", ...</summary>
    public string Kind { get; }

    /// <summary>The name that was not found.</summary>
    public string Name { get; }
}

/// <summary>
/// A file's content is not what ConvKit reads: the wrong format, truncated or malformed, an unknown version, or a failed
/// size or SHA-256 check. The message names the file and what was expected versus found.
/// </summary>
public class InvalidFileException : ConvKitException
{
    /// <summary>Creates the exception with a message that names the file.</summary>
    public InvalidFileException(string message) : base(message) { }

    /// <summary>Creates the exception with a message that names the file and the error that caused it.</summary>
    public InvalidFileException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>
/// A valid request that ConvKit does not support: a layer with no ONNX lowering, a subclassed model saved as a
/// graph, an unregistered layer class to save. The message says what is not supported and what to do instead.
/// </summary>
public class UnsupportedException : ConvKitException
{
    /// <summary>Creates the exception.</summary>
    public UnsupportedException(string message) : base(message) { }
}

/// <summary>Argument checks that fail with <see cref="InvalidOptionException"/> (null stays .NET's ArgumentNullException).</summary>
internal static class Require
{
    /// <summary>Refuses a value below 1, naming the argument.</summary>
    public static void Positive(long value, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(value))] string name = "")
    {
        if (value <= 0) throw new InvalidOptionException(name, $"{name} must be positive; received {value}.");
    }

    /// <summary>Refuses a negative value, naming the argument.</summary>
    public static void NonNegative(double value, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(value))] string name = "")
    {
        if (!(value >= 0)) throw new InvalidOptionException(name, $"{name} must be >= 0; received {KerasFormat.Repr(value)}.");
    }

    /// <summary>Refuses null (ArgumentNullException), an empty or a blank string (InvalidOptionException), naming the argument.</summary>
    public static void NotBlank([System.Diagnostics.CodeAnalysis.NotNull] string? value, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(value))] string name = "")
    {
        ArgumentNullException.ThrowIfNull(value, name);
        if (string.IsNullOrWhiteSpace(value)) throw new InvalidOptionException(name, $"{name} must not be empty; received '{value}'.");
    }
}
