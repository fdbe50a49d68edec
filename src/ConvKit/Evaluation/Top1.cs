using static TorchSharp.torch;

namespace ConvKit.Evaluation;

/// <summary>Top-1 accuracy of class scores against integer labels, shared by the evaluations that have only outputs
/// (an int8 model, test-time augmentation) rather than a compiled model's metrics.</summary>
internal static class Top1
{
    /// <summary>The fraction of rows of <paramref name="scores"/> (N, classes) whose largest entry is at the row's label
    /// in <paramref name="labels"/> (N); NaN for no rows. The caller has checked the shapes.</summary>
    public static double Accuracy(Tensor scores, Tensor labels)
    {
        long n = scores.shape[0];
        if (n == 0) return double.NaN;
        using var predicted = scores.argmax(1);
        using var target = labels.to_type(ScalarType.Int64);
        using var right = predicted.eq(target);
        using var count = right.sum();
        return (double)count.item<long>() / n;
    }
}
