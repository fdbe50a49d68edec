namespace ConvKit;

/// <summary>A layer or model argument is invalid. The message names the layer, the argument and the value.</summary>
public class LayerArgumentException : ConvKitException
{
    /// <summary>Creates the exception.</summary>
    public LayerArgumentException(string layer, string argument, string message)
        : base($"{layer}: invalid argument '{argument}': {message}")
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
