namespace ConvKit.Models.Inference;

/// <summary>
/// The ambient "this thread computes inference" flag that Predict, Evaluate and <see cref="InferenceModel"/> set
/// instead of switching the model's training flag (TorchSharp's <c>train()</c>/<c>eval()</c>, which is state shared by
/// every thread using the model). Layers read it through <see cref="Layers.Layer.IsTraining"/>: while it is on, no layer
/// trains (dropout and augmentation are identities, batch normalization uses and never updates its moving statistics),
/// on this thread only.
/// </summary>
internal static class InferenceContext
{
    [ThreadStatic] static int depth;

    /// <summary>Whether the current thread runs inside <see cref="Enter"/>.</summary>
    public static bool Active => depth > 0;

    /// <summary>Turns inference on for the current thread until the scope is disposed (scopes nest).</summary>
    public static Scope Enter()
    {
        depth++;
        return new Scope(true);
    }

    /// <summary>Leaves the inference context entered by <see cref="Enter"/>.</summary>
    public readonly struct Scope(bool entered) : IDisposable
    {
        /// <inheritdoc/>
        public void Dispose()
        {
            if (entered) depth--;
        }
    }
}
