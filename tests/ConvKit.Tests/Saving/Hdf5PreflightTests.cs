using System.Buffers.Binary;
using System.Text;
using ConvKit.Saving;

namespace ConvKit.Tests.Saving;

/// <summary>
/// One corruption per hazard PureHDF 2.2 has on its own (found by the fuzz test or in its source): each must end in a
/// KerasH5FormatException that says what is wrong, with an allocation bounded by the file, not by the claimed size.
/// keras_weights.h5 is h5py's default layout: superblock 0, 8-byte offsets and lengths, version 1 object headers.
/// </summary>
public class Hdf5PreflightTests
{
    static readonly byte[] Source = File.ReadAllBytes(Path.Combine(SafeTensorsFixtures.Dir, "keras_weights.h5"));

    static KerasH5FormatException Rejected(byte[] image, string expected)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<KerasH5FormatException>(() => KerasH5.Read(new MemoryStream(image, writable: false), "bad.h5"));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Contains(expected, e.Message);
        Assert.True(allocated < 64 * 1024 * 1024 + image.Length, $"allocated {allocated} bytes: {e.Message}");
        return e;
    }

    static int Find(byte[] image, string signature, int from = 0) =>
        image.AsSpan(from).IndexOf(Encoding.ASCII.GetBytes(signature)) is var i and >= 0 ? from + i : throw new InvalidOperationException(signature);

    /// <summary>The messages of the root group's (version 1) object header, continuation blocks included: type,
    /// offset of the data, size.</summary>
    static IEnumerable<(int Type, int Data, int Size)> RootMessages(byte[] image)
    {
        int header = (int)BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(64)); // root symbol table entry
        Assert.Equal(1, image[header]);
        var blocks = new Queue<(int Start, int Size)>();
        blocks.Enqueue((header + 16, (int)BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(header + 8))));
        while (blocks.TryDequeue(out var block))
        {
            for (int at = block.Start; at < block.Start + block.Size;)
            {
                int type = BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(at));
                int size = BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(at + 2));
                if (type == 0x10)
                    blocks.Enqueue(((int)BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(at + 8)), (int)BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(at + 16))));
                yield return (type, at + 8, size);
                at += 8 + size;
            }
        }
    }

    static (int Data, int DatatypeSize, int Dataspace) LayerNamesAttribute(byte[] image)
    {
        foreach (var (type, data, _) in RootMessages(image))
        {
            if (type != 0x0C) continue;
            int nameSize = BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(data + 2));
            if (Encoding.ASCII.GetString(image, data + 8, nameSize - 1) != "layer_names") continue;
            int datatype = data + 8 + (nameSize + 7) / 8 * 8;
            int datatypeSize = BinaryPrimitives.ReadUInt16LittleEndian(image.AsSpan(data + 4));
            return (datatype, datatypeSize, datatype + (datatypeSize + 7) / 8 * 8);
        }
        throw new InvalidOperationException("no layer_names attribute");
    }

    [Theory]
    [InlineData(0x40000000u, 4UL)]         // 4 strings of 1 GiB: the product truncated to int is 0
    [InlineData(16u, 0x10000000UL)]        // 256 Mi strings of 16 bytes
    public void AnAttributeClaimingMoreValuesThanItsMessageHoldsIsRejected(uint stringSize, ulong count)
    {
        var image = (byte[])Source.Clone();
        var (datatype, _, dataspace) = LayerNamesAttribute(image);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(datatype + 4), stringSize);
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(dataspace + 8), count); // first dimension
        Rejected(image, "more than its message holds");
    }

    [Fact]
    public void ALocalHeapLargerThanTheFileIsRejected()
    {
        var image = (byte[])Source.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(Find(image, "HEAP") + 8), 0x7FFF_FFF0);
        Rejected(image, "data segment");
    }

    [Fact]
    public void ABTreeNodeThatIsItsOwnChildIsRejected()
    {
        // PureHDF descends while the node it reads has a level above 0: a node pointing at itself recursed forever.
        var image = (byte[])Source.Clone();
        int node = Find(image, "TREE");
        image[node + 5] = 1; // level
        BinaryPrimitives.WriteUInt16LittleEndian(image.AsSpan(node + 6), 1); // entries
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(node + 8 + 16 + 8), (ulong)node); // first child
        Rejected(image, "is reached at levels 1 and 0");
    }

    [Fact]
    public void AnObjectHeaderThatContinuesIntoItselfIsRejected()
    {
        // PureHDF reads continuation blocks recursively: a block continuing into itself overflowed the stack.
        var image = (byte[])Source.Clone();
        int header = (int)BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(64));
        var (_, data, _) = RootMessages(image).First(m => m.Type == 0x0C && m.Size >= 16); // an attribute
        BinaryPrimitives.WriteUInt16LittleEndian(image.AsSpan(data - 8), 0x10); // now a continuation message
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(data), (ulong)header + 16); // into the header's own block
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(data + 8), BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(header + 8)));
        Rejected(image, "twice");
    }

    [Fact]
    public void AStructureErrorNamesTheLayerAndWeightOfTheObjectAtFault()
    {
        // h5py writes the last dataset's object header at the end of the file.
        var e = Rejected(Source[..^1], "runs past the end");
        Assert.Equal("predictions", e.LayerName);
        Assert.Equal("predictions/bias:0", e.WeightName);
        Assert.Contains("object '/predictions/predictions/bias:0'", e.Message);
    }
}
