namespace ConvKit.Serving;

/// <summary>A serving option is invalid; <see cref="Option"/> is its CLI name.</summary>
public sealed class ServingOptionException : ConvKitException
{
    /// <summary>Creates the exception; the message reads "OPTION REASON.".</summary>
    public ServingOptionException(string option, string reason) : base($"{option} {reason}.") => Option = option;

    /// <summary>The option by its CLI name (e.g. <c>--max-batch</c>).</summary>
    public string Option { get; }
}

/// <summary>
/// A request the server refuses: the HTTP status and a message for the client, sent as <c>application/problem+json</c>
/// (never with a stack trace).
/// </summary>
public sealed class InferenceRequestException : ConvKitException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="status">HTTP status code (4xx, or 503/504 when the server cannot take it now).</param>
    /// <param name="message">What is wrong, naming the input, field, shape or limit.</param>
    public InferenceRequestException(int status, string message) : base(message) => Status = status;

    /// <summary>The HTTP status code.</summary>
    public int Status { get; }

    /// <summary>Seconds after which the client may retry (503 answers), else null.</summary>
    public int? RetryAfterSeconds { get; init; }
}
