using ConvKit.Data;
using static TorchSharp.torch;
using static ConvKit.Tests.Ranges;

namespace ConvKit.Tests.Data;

public class BatchIteratorTests
{
    [Fact]
    public void ShuffledEpochs_CoverAllSamples_InNewOrders_Reproducibly()
    {
        using var x = Arange(10, ScalarType.Float32).reshape(10, 1, 1, 1);
        using var y = Arange(10, ScalarType.Int64);
        var it = new BatchIterator(x, y, 4, shuffle: true, generator: new Generator(5));
        Assert.Equal(3, it.BatchesPerEpoch);
        var e1 = Collect(it);
        var e2 = Collect(it);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i), e1.Order());
        Assert.Equal(Enumerable.Range(0, 10).Select(i => (long)i), e2.Order());
        Assert.NotEqual(e1, e2);
        var again = new BatchIterator(x, y, 4, shuffle: true, generator: new Generator(5));
        Assert.Equal(e1, Collect(again));
    }

    static List<long> Collect(BatchIterator it)
    {
        var order = new List<long>();
        foreach (var (bx, by) in it.Epoch())
        {
            using (bx)
            using (by)
            {
                // x and y stay paired: x holds the float of the label.
                Assert.Equal(by.data<long>().ToArray().Select(v => (float)v), bx.data<float>().ToArray());
                order.AddRange(by.data<long>().ToArray());
            }
        }
        return order;
    }

    [Fact]
    public void Sequential_AndDropLast()
    {
        using var x = Arange(10, ScalarType.Float32).reshape(10, 1);
        using var y = Arange(10, ScalarType.Int64);
        var sizes = new BatchIterator(x, y, 4, shuffle: false).Epoch().Select(b => { using (b.X) using (b.Y) return b.Y.data<long>().ToArray(); }).ToList();
        Assert.Equal(new long[] { 0, 1, 2, 3 }, sizes[0]);
        Assert.Equal(new long[] { 8, 9 }, sizes[2]);
        var dropped = new BatchIterator(x, y, 4, shuffle: false, dropLast: true);
        Assert.Equal(2, dropped.BatchesPerEpoch);
        Assert.Equal(2, dropped.Epoch().Count(b => { b.X.Dispose(); b.Y.Dispose(); return true; }));
        using var y9 = Arange(9, ScalarType.Int64);
        Assert.Throws<ShapeException>(() => new BatchIterator(x, y9, 4));
    }
}
