using System.Buffers.Binary;

namespace ConvKit.Saving;

/// <summary>
/// Checks the metadata of an HDF5 file against its own bounds before PureHDF reads it.
/// </summary>
/// <remarks>
/// PureHDF 2.2 sizes buffers from counts it finds in the file (<c>new byte[count]</c> for attribute data, fill values,
/// compact layouts, local heaps, global heap objects, enum values, link names) before it finds out that they overrun
/// the structure holding them, and follows B-tree children, header continuations and shared messages recursively
/// without cycle checks: one corrupted length made it allocate up to 2 GiB, a looping link could overflow the stack.
/// This walks every structure PureHDF decodes when <see cref="KerasH5"/> reads a file (superblock, object headers and
/// all their messages, symbol-table groups with their B-tree, symbol nodes and local heap, the global heap collections
/// of variable-length attributes), parsing each the way PureHDF does, and rejects any size that overruns its message,
/// block or the file, any cycle, and the features Keras never writes and this check does not follow: dense (fractal
/// heap) link and attribute storage, shared messages, soft and external links, external storage, driver info.
/// Whatever passes, PureHDF decodes with allocations bounded by the structures that hold them and finite recursion.
/// </remarks>
internal sealed class Hdf5Preflight
{
    const int MaxDatatypeDepth = 8, MaxContinuationDepth = 256;
    static ReadOnlySpan<byte> Signature => [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

    readonly Stream stream;
    readonly Func<string, string, Exception> error;
    readonly ulong length;
    ulong baseAddress;
    int offsetSize, lengthSize;
    long budget; // bytes of metadata this check may read: overlapping structures cannot make it quadratic
    readonly Queue<(ulong Address, string Path)> pendingHeaders = new();
    readonly HashSet<ulong> headers = [], snods = [], collections = [];
    readonly Dictionary<ulong, byte[]> heaps = [];
    readonly Dictionary<ulong, int> treeNodeLevels = [];
    string path = "/"; // the object being checked, for error messages

    Hdf5Preflight(Stream stream, Func<string, string, Exception> error)
    {
        this.stream = stream;
        this.error = error;
        length = (ulong)stream.Length;
        budget = 8 * stream.Length + (1 << 20);
    }

    /// <summary>Walks the metadata reachable from the superblock.</summary>
    /// <param name="stream">The file, seekable.</param>
    /// <param name="error">Makes the exception for a problem found in the object at an HDF5 path ("/" first).</param>
    /// <exception cref="Exception">What <paramref name="error"/> makes, when a structure overruns its bounds, loops, or
    /// uses an unsupported feature.</exception>
    public static void Check(Stream stream, Func<string, string, Exception> error) => new Hdf5Preflight(stream, error).Run();

    void Run()
    {
        ulong root = ReadSuperblock();
        pendingHeaders.Enqueue((root, "/"));
        while (pendingHeaders.TryDequeue(out var next))
        {
            path = next.Path;
            CheckObjectHeader(next.Address);
        }
    }

    Exception Bad(string problem) => error(path, problem);

    // ------------------------------------------------------------------ reading

    /// <summary>Reads <paramref name="count"/> bytes at an absolute position, which must lie inside the file.</summary>
    byte[] ReadAbsolute(ulong position, ulong count, string what)
    {
        if (position > length || count > length - position)
            throw Bad($"{what} ({count} bytes from byte {position}) runs past the end of the {length}-byte file");
        budget -= (long)count;
        if (budget < 0) throw Bad("the metadata structures overlap or repeat beyond any valid layout");
        var buffer = new byte[count];
        stream.Position = (long)position;
        stream.ReadExactly(buffer);
        return buffer;
    }

    /// <summary>Reads at an address relative to the base address, as PureHDF's SeekRelativeToBaseAddress does.</summary>
    Reader Read(ulong address, ulong count, string what)
    {
        if (address > ulong.MaxValue - baseAddress) throw Bad($"{what} has an invalid address {address}");
        return new Reader(this, ReadAbsolute(baseAddress + address, count, what), what);
    }

    /// <summary>Reads a structure whose size is known only after its fixed part: at most what the file still holds.</summary>
    Reader ReadUpTo(ulong address, ulong count, string what)
    {
        if (address > ulong.MaxValue - baseAddress || baseAddress + address > length)
            throw Bad($"{what} at address {address} lies beyond the end of the {length}-byte file");
        return Read(address, Math.Min(count, length - baseAddress - address), what);
    }

    bool IsUndefined(ulong address) => offsetSize == 8 ? address == ulong.MaxValue
        : (address & ((1UL << (8 * offsetSize)) - 1)) == (1UL << (8 * offsetSize)) - 1;

    /// <summary>A cursor over one structure's bytes; reading past them rejects the file.</summary>
    ref struct Reader(Hdf5Preflight owner, ReadOnlySpan<byte> data, string what)
    {
        readonly ReadOnlySpan<byte> data = data;
        int position;

        public readonly int Position => position;

        public readonly int Remaining => data.Length - position;

        ReadOnlySpan<byte> Take(ulong count)
        {
            if (count > (ulong)Remaining)
                throw owner.Bad($"{what} needs {count} more bytes at offset {position}, but only {Remaining} remain");
            var span = data.Slice(position, (int)count);
            position += (int)count;
            return span;
        }

        public void Skip(ulong count) => Take(count);

        public ReadOnlySpan<byte> Bytes(ulong count) => Take(count);

        /// <summary>The next <paramref name="count"/> bytes as a reader of their own, which cannot read past them.</summary>
        public Reader Sub(int count, string part) => new(owner, Take((ulong)count), part);

        public byte U8() => Take(1)[0];

        public ushort U16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2));

        public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

        public ulong Unsigned(int size)
        {
            Span<byte> eight = stackalloc byte[8];
            Take((ulong)size).CopyTo(eight);
            return BinaryPrimitives.ReadUInt64LittleEndian(eight);
        }

        public ulong Offset() => Unsigned(owner.offsetSize);

        public ulong Length() => Unsigned(owner.lengthSize);

        public readonly bool StartsWith(ReadOnlySpan<byte> signature) => data[position..].StartsWith(signature);

        /// <summary>A null-terminated string as PureHDF reads it (optionally padded to 8 bytes with its terminator).</summary>
        public void NullTerminated(bool pad)
        {
            int end = data[position..].IndexOf((byte)0);
            if (end < 0) throw owner.Bad($"{what} holds a string without a terminator at offset {position}");
            position += end + 1;
            if (pad) Skip((ulong)((8 - (end + 1) % 8) % 8));
        }
    }

    // ------------------------------------------------------------------ superblock

    ulong ReadSuperblock()
    {
        // PureHDF looks for the signature at 0, 512, 1536, 3584, ... (its step doubles after each miss).
        ulong position = 0, step = 512;
        Span<byte> signature = stackalloc byte[8];
        while (true)
        {
            if (position + 8 > length) throw Bad("no HDF5 signature found");
            stream.Position = (long)position;
            stream.ReadExactly(signature);
            if (signature.SequenceEqual(Signature)) break;
            position += step;
            step *= 2;
            if (position >= length) throw Bad("no HDF5 signature found");
        }
        var r = new Reader(this, ReadAbsolute(position, Math.Min(length - position, 128), "superblock"), "superblock");
        r.Skip(8);
        byte version = r.U8();
        if (version < 2)
        {
            r.Skip(4);
            (offsetSize, lengthSize) = (r.U8(), r.U8());
            CheckSizes();
            r.Skip(1 + 2 + 2 + 4 + (version == 1 ? 4UL : 0));
            baseAddress = r.Offset();
            r.Skip(3 * (ulong)offsetSize); // free space, end of file and driver info addresses
            r.Offset(); // root symbol table entry: link name offset, then the object header address
            return r.Offset();
        }
        if (version < 4)
        {
            (offsetSize, lengthSize) = (r.U8(), r.U8());
            CheckSizes();
            r.Skip(1);
            baseAddress = r.Offset();
            r.Skip(2 * (ulong)offsetSize); // superblock extension and end of file addresses
            return r.Offset();
        }
        throw Bad($"superblock version {version} is not supported");
    }

    void CheckSizes()
    {
        if (offsetSize is not (1 or 2 or 4 or 8) || lengthSize is not (1 or 2 or 4 or 8))
            throw Bad($"superblock sizes of offsets ({offsetSize}) and lengths ({lengthSize}) must be 1, 2, 4 or 8");
    }

    // ------------------------------------------------------------------ object headers

    void CheckObjectHeader(ulong address)
    {
        if (!headers.Add(address)) return;
        var what = $"object header at address {address}";
        var r = ReadUpTo(address, 16 + 4 + 16 + 4 + 8, what);
        var blocks = new Stack<(ulong Address, ulong Size, int Depth)>();
        int version;
        bool creationOrder = false;
        if (!r.StartsWith("OHDR"u8))
        {
            version = r.U8();
            if (version != 1) throw Bad($"{what} has neither version 1 nor an OHDR signature");
            r.Skip(1 + 2 + 4);
            uint size = r.U32();
            blocks.Push((address + (size > 0 ? 16UL : 12UL), size, 0));
        }
        else
        {
            r.Skip(4);
            version = r.U8();
            if (version != 2) throw Bad($"{what} has version {version}");
            byte flags = r.U8();
            creationOrder = (flags & 0x04) != 0;
            if ((flags & 0x20) != 0) r.Skip(16);
            if ((flags & 0x10) != 0) r.Skip(4);
            ulong size = r.Unsigned(1 << (flags & 0x03));
            blocks.Push((address + (ulong)r.Position, size, 0));
        }
        // PureHDF reads a block's continuations recursively after the block: no block may come back, and the chain
        // stays short enough for its stack.
        var seen = new HashSet<ulong>();
        while (blocks.TryPop(out var block))
        {
            if (block.Depth > MaxContinuationDepth) throw Bad($"{what} has more than {MaxContinuationDepth} nested continuation blocks");
            foreach (var (offset, size) in CheckMessages(address, block.Address, block.Size, version, creationOrder))
            {
                if (!seen.Add(offset)) throw Bad($"{what} continues into block {offset} twice");
                if (version == 1)
                {
                    blocks.Push((offset, size, block.Depth + 1));
                }
                else
                {
                    if (size < 8) throw Bad($"{what} has a continuation block of {size} bytes");
                    var signature = Read(offset, 4, $"continuation block of the {what}");
                    if (!signature.StartsWith("OCHK"u8)) throw Bad($"{what} continues into block {offset} without an OCHK signature");
                    blocks.Push((offset + 4, size - 8, block.Depth + 1));
                }
            }
        }
    }

    /// <summary>Checks the messages of one header block; returns its continuations.</summary>
    List<(ulong Offset, ulong Size)> CheckMessages(ulong header, ulong address, ulong size, int version, bool creationOrder)
    {
        var what = $"object header at address {header}";
        var r = Read(address, size, what);
        ulong prefix = version == 1 ? 8UL : creationOrder ? 6UL : 4UL, gap = version == 1 ? 0 : prefix;
        var continuations = new List<(ulong, ulong)>();
        ulong remaining = size;
        while (remaining > gap)
        {
            // PureHDF subtracts each message from the block size without checking: a message past the end would make
            // it read on through whatever follows.
            if (remaining < prefix) throw Bad($"{what} ends inside a message prefix");
            ushort type = version == 1 ? r.U16() : r.U8();
            ushort dataSize = r.U16();
            byte flags = r.U8();
            r.Skip(prefix - (version == 1 ? 5UL : 4UL));
            if (dataSize + prefix > remaining) throw Bad($"{what}: message type {type} of {dataSize} bytes overruns its block");
            // PureHDF rejects a message whose fields run past its size, but only after reading them: each field must
            // fit in the message before it is believed.
            var part = $"message type {type} of the {what}";
            var message = r.Sub(dataSize, part);
            CheckMessage(ref message, type, flags, part, continuations);
            remaining -= dataSize + prefix;
        }
        return continuations;
    }

    void CheckMessage(ref Reader r, ushort type, byte flags, string what, List<(ulong, ulong)> continuations)
    {
        // Shareable messages flagged shared hold a reference that PureHDF follows by decoding the other header,
        // recursively; Keras never shares messages.
        if ((flags & 0x02) != 0 && type is 0x01 or 0x03 or 0x04 or 0x05 or 0x0B or 0x0C)
            throw Bad($"{what} is shared (committed datatypes and shared messages are not supported)");
        switch (type)
        {
            case 0x01: Dataspace(ref r); break;
            case 0x02:
            case 0x15:
            {
                // Link info and attribute info: fractal heap and B-tree v2 addresses of dense storage.
                r.U8();
                byte f = r.U8();
                if ((f & 0x01) != 0) r.Skip(type == 0x02 ? 8UL : 2UL);
                ulong heap = r.Offset(), index = r.Offset();
                if (!IsUndefined(heap) || !IsUndefined(index))
                    throw Bad($"{what} uses dense (fractal heap) {(type == 0x02 ? "link" : "attribute")} storage, which is not supported");
                break;
            }
            case 0x03: Datatype(ref r, 0, what); break;
            case 0x04:
                r.Skip(r.U32());
                break;
            case 0x05: FillValue(ref r); break;
            case 0x06: Link(ref r, what); break;
            case 0x07: throw Bad($"{what}: external data storage is not supported");
            case 0x08: Layout(ref r); break;
            case 0x0B: FilterPipeline(ref r); break;
            case 0x0C: Attribute(ref r, what); break;
            case 0x0D: r.NullTerminated(pad: false); break;
            case 0x10: continuations.Add((r.Offset(), r.Length())); break;
            case 0x11:
            {
                ulong tree = r.Offset(), heap = r.Offset();
                CheckGroup(tree, heap);
                break;
            }
            case 0x14: throw Bad($"{what}: driver info messages are not supported");
        }
    }

    // ------------------------------------------------------------------ messages, parsed as PureHDF parses them

    /// <summary>Returns the element count PureHDF computes, or null where it throws before using it.</summary>
    ulong? Dataspace(ref Reader r)
    {
        byte version = r.U8(), rank = r.U8(), flags = r.U8();
        int type;
        if (version == 1)
        {
            type = rank > 0 ? 1 : 0;
            r.Skip(5);
        }
        else
        {
            type = r.U8();
        }
        ulong count = 1;
        for (int i = 0; i < rank; i++) count = unchecked(count * r.Length());
        if ((flags & 0x01) != 0) r.Skip((ulong)rank * (ulong)lengthSize);
        if ((flags & 0x02) != 0) r.Skip((ulong)rank * (ulong)lengthSize);
        return type switch { 0 => 1, 1 => count, 2 => 0, _ => null };
    }

    /// <summary>Returns the datatype's class and size; rejects nesting PureHDF would recurse into too deeply.</summary>
    (int Class, uint Size, bool NestedVariableLength) Datatype(ref Reader r, int depth, string what)
    {
        if (depth > MaxDatatypeDepth) throw Bad($"{what} nests datatypes more than {MaxDatatypeDepth} deep");
        byte classVersion = r.U8();
        int version = classVersion >> 4, cls = classVersion & 0x0F;
        byte bits0 = r.U8(), bits1 = r.U8();
        r.U8();
        uint size = r.U32();
        bool nestedVlen = false;
        switch (cls)
        {
            case 0: r.Skip(4); break; // fixed point
            case 1: r.Skip(12); break; // floating point
            case 2: r.Skip(2); break; // time
            case 3: break; // string
            case 4: r.Skip(4); break; // bit field
            case 5: r.Skip(bits0); break; // opaque: the tag
            case 6: // compound: PureHDF allocates the member array before reading any member
            {
                int members = bits0 | bits1 << 8;
                if ((ulong)members * 10 > (ulong)r.Remaining) throw Bad($"{what} claims {members} compound members");
                if (version is < 1 or > 3 && members > 0) throw Bad($"{what} has compound datatype version {version}");
                for (int i = 0; i < members; i++)
                {
                    r.NullTerminated(pad: version < 3);
                    if (version == 1) r.Skip(4 + 1 + 3 + 4 + 4 + 16);
                    else if (version == 2) r.Skip(4);
                    else
                    {
                        ulong bytes = MinByteCount(size);
                        if (bytes is < 1 or > 8) throw Bad($"{what} has a compound member offset of {bytes} bytes");
                        r.Skip(bytes);
                    }
                    var member = Datatype(ref r, depth + 1, what);
                    nestedVlen |= member.Class == 9 || member.NestedVariableLength;
                }
                break;
            }
            case 7: break; // reference
            case 8: // enumeration: names, then members × size value bytes
            {
                var baseType = Datatype(ref r, depth + 1, what);
                nestedVlen |= baseType.Class == 9 || baseType.NestedVariableLength;
                int members = bits0 | bits1 << 8;
                if (members > r.Remaining) throw Bad($"{what} claims {members} enumeration members");
                for (int i = 0; i < members; i++) r.NullTerminated(pad: version <= 2);
                r.Skip((ulong)members * size);
                break;
            }
            case 9: // variable length
            {
                var baseType = Datatype(ref r, depth + 1, what);
                nestedVlen |= baseType.Class == 9 || baseType.NestedVariableLength;
                break;
            }
            case 10: // array
            {
                byte rank = r.U8();
                if (version == 2) r.Skip(3);
                r.Skip(4UL * rank * (version == 2 ? 2UL : 1UL));
                var baseType = Datatype(ref r, depth + 1, what);
                nestedVlen |= baseType.Class == 9 || baseType.NestedVariableLength;
                break;
            }
            default: throw Bad($"{what} has datatype class {cls}");
        }
        return (cls, size, nestedVlen);
    }

    // PureHDF's MathUtils.FindMinByteCount: bytes needed for a compound member offset.
    static ulong MinByteCount(ulong value)
    {
        ulong bits = 1;
        while ((value >>= 1) != 0) bits++;
        return (bits + 7) >> 3;
    }

    void FillValue(ref Reader r)
    {
        byte version = r.U8();
        if (version is 1 or 2)
        {
            r.Skip(2);
            if (r.U8() == 1) r.Skip(r.U32());
        }
        else if (version == 3)
        {
            byte flags = r.U8();
            if ((flags & 0x10) == 0 && (flags & 0x20) != 0) r.Skip(r.U32());
        }
    }

    void Link(ref Reader r, string what)
    {
        r.U8();
        byte flags = r.U8();
        int type = (flags & 0x08) != 0 ? r.U8() : 0;
        if ((flags & 0x04) != 0) r.Skip(8);
        if ((flags & 0x10) != 0) r.Skip(1);
        var name = System.Text.Encoding.UTF8.GetString(r.Bytes(r.Unsigned(1 << (flags & 0x03))));
        if (type != 0) throw Bad($"{what} is a {(type == 1 ? "soft" : type == 64 ? "external" : "user-defined")} link, which is not supported");
        pendingHeaders.Enqueue((r.Offset(), Child(name)));
    }

    string Child(string name) => path == "/" ? "/" + name : path + "/" + name;

    void Layout(ref Reader r)
    {
        byte version = r.U8();
        if (version is not (1 or 2)) return; // versions 3 and 4 size compact data with 16 bits: nothing large to check
        byte rank = r.U8(), cls = r.U8();
        r.Skip(5);
        if (cls is 1 or 2) r.Offset();
        r.Skip(4UL * rank);
        if (cls == 0) r.Skip(r.U32());
    }

    void FilterPipeline(ref Reader r)
    {
        byte version = r.U8(), count = r.U8();
        if (count > 32) return; // PureHDF rejects it before allocating
        if (version == 1) r.Skip(6);
        for (int i = 0; i < count; i++)
        {
            ushort id = r.U16();
            ushort nameLength = version == 1 || id >= 256 ? r.U16() : (ushort)0;
            r.Skip(2);
            ushort clientValues = r.U16();
            if (nameLength > 0)
            {
                if (version == 1) r.NullTerminated(pad: true);
                else r.Skip(nameLength);
            }
            r.Skip(4UL * clientValues + (version == 1 && clientValues % 2 != 0 ? 4UL : 0));
        }
    }

    void Attribute(ref Reader r, string what)
    {
        byte version = r.U8();
        byte flags = r.U8(); // reserved in version 1
        if (version == 1) flags = 0;
        r.U16();
        ushort datatypeSize = r.U16(), dataspaceSize = r.U16();
        if (version == 3) r.Skip(1);
        r.NullTerminated(pad: version == 1);
        if ((flags & 0x03) != 0) throw Bad($"{what}: attributes with a shared datatype or dataspace are not supported");
        var type = Datatype(ref r, 0, what);
        if (version == 1) r.Skip((ulong)((datatypeSize + 7) / 8 * 8 - datatypeSize));
        var count = Dataspace(ref r);
        if (version == 1) r.Skip((ulong)((dataspaceSize + 7) / 8 * 8 - dataspaceSize));
        if (count is not { } n) return;
        // PureHDF allocates and reads (int)(count * size) bytes, then decodes count values of size bytes each (a
        // rented size-byte buffer per fixed-length string): the exact product must fit in the message, not only its
        // truncation to int.
        if (n != 0 && type.Size > (ulong)r.Remaining / n)
            throw Bad($"{what} claims {n} values of {type.Size} bytes, more than its message holds");
        if (type.Class != 9)
        {
            r.Skip(n * type.Size);
            return;
        }
        if (type.NestedVariableLength) throw Bad($"{what}: nested variable-length data is not supported");
        // Variable-length values point into global heap collections, which PureHDF reads whole.
        int stride = 4 + offsetSize + 4;
        for (ulong i = 0; i < n && r.Remaining >= stride; i++)
        {
            r.Skip(4);
            ulong collection = r.Offset();
            uint index = r.U32();
            if (collection != 0 || index != 0) CheckGlobalHeap(collection);
        }
    }

    // ------------------------------------------------------------------ groups and heaps

    void CheckGroup(ulong tree, ulong heap)
    {
        var names = CheckLocalHeap(heap);
        // B-tree v1 group nodes: PureHDF descends while a node's own level is above 0, so each child must be exactly
        // one level lower (which also rules out cycles).
        var nodes = new Stack<(ulong Address, int Level)>();
        nodes.Push((tree, -1));
        while (nodes.TryPop(out var n))
        {
            if (treeNodeLevels.TryGetValue(n.Address, out int known))
            {
                if (n.Level >= 0 && known != n.Level) throw Bad($"B-tree node {n.Address} is reached at levels {known} and {n.Level}");
                continue;
            }
            var what = $"B-tree node at address {n.Address}";
            var r = ReadUpTo(n.Address, 8 + 2UL * (ulong)offsetSize, what);
            if (!r.StartsWith("TREE"u8)) throw Bad($"{what} has no TREE signature");
            r.Skip(4);
            if (r.U8() != 0) throw Bad($"{what} is not a group node");
            int level = r.U8();
            if (n.Level >= 0 && level != n.Level) throw Bad($"{what} has level {level}, expected {n.Level}");
            treeNodeLevels[n.Address] = level;
            ushort entries = r.U16();
            ulong nodeSize = 8 + 2UL * (ulong)offsetSize + entries * (ulong)(lengthSize + offsetSize) + (ulong)lengthSize;
            r = Read(n.Address, nodeSize, what);
            r.Skip(8 + 2UL * (ulong)offsetSize);
            for (int i = 0; i < entries; i++)
            {
                r.Length(); // key: name offset in the local heap
                ulong child = r.Offset();
                if (level > 0) nodes.Push((child, level - 1));
                else CheckSymbolNode(child, names);
            }
        }
    }

    void CheckSymbolNode(ulong address, byte[] names)
    {
        if (!snods.Add(address)) return;
        var what = $"symbol table node at address {address}";
        var r = ReadUpTo(address, 8, what);
        if (!r.StartsWith("SNOD"u8)) throw Bad($"{what} has no SNOD signature");
        r.Skip(6);
        ushort count = r.U16();
        ulong entrySize = 2UL * (ulong)offsetSize + 8 + 16;
        r = Read(address, 8 + count * entrySize, what);
        r.Skip(8);
        for (int i = 0; i < count; i++)
        {
            string child = Child(Name(names, r.Offset()));
            pendingHeaders.Enqueue((r.Offset(), child));
            uint cache = r.U32();
            r.Skip(4);
            int before = r.Position;
            switch (cache)
            {
                case 0: break;
                case 1:
                    // PureHDF looks names up through this cached B-tree and heap rather than the group's own
                    // symbol table message; both are read with the size of lengths.
                    ulong tree = r.Length(), heap = r.Length();
                    var parent = path;
                    path = child;
                    CheckGroup(tree, heap);
                    path = parent;
                    break;
                case 2: throw Bad($"{what} holds a soft link, which is not supported");
                default: throw Bad($"{what} has an entry with cache type {cache}");
            }
            r.Skip((ulong)(16 - (r.Position - before)));
        }
    }

    /// <summary>Checks a local heap and returns its data segment (the link names of a group).</summary>
    byte[] CheckLocalHeap(ulong address)
    {
        if (heaps.TryGetValue(address, out var known)) return known;
        var what = $"local heap at address {address}";
        var r = Read(address, 8 + 2UL * (ulong)lengthSize + (ulong)offsetSize, what);
        if (!r.StartsWith("HEAP"u8)) throw Bad($"{what} has no HEAP signature");
        r.Skip(8);
        ulong size = r.Length();
        r.Length();
        ulong data = r.Offset();
        // PureHDF reads the whole data segment (ReadBytes((int)size)) on every name lookup.
        if (size > int.MaxValue || data > ulong.MaxValue - baseAddress || baseAddress + data > length || size > length - baseAddress - data)
            throw Bad($"{what} claims a {size}-byte data segment at {data}, beyond the end of the {length}-byte file");
        return heaps[address] = ReadAbsolute(baseAddress + data, size, what);
    }

    static string Name(byte[] heap, ulong offset)
    {
        if (offset >= (ulong)heap.Length) return "?";
        int end = Array.IndexOf(heap, (byte)0, (int)offset);
        return end < 0 ? "?" : System.Text.Encoding.UTF8.GetString(heap, (int)offset, end - (int)offset);
    }

    void CheckGlobalHeap(ulong address)
    {
        if (!collections.Add(address)) return;
        var what = $"global heap collection at address {address}";
        var r = ReadUpTo(address, 8 + (ulong)lengthSize, what);
        if (!r.StartsWith("GCOL"u8)) throw Bad($"{what} has no GCOL signature");
        r.Skip(8);
        ulong size = r.Length(), header = 8 + (ulong)lengthSize;
        if (size < header) throw Bad($"{what} is smaller than its header");
        r = Read(address, size, what);
        r.Skip(header);
        // PureHDF reads every object until one with index 0 or the collection's end, subtracting without checks.
        ulong remaining = size - header;
        while (remaining > header)
        {
            int start = r.Position;
            if (r.U16() == 0) break;
            r.Skip(2 + 4);
            ulong objectSize = r.Length();
            if (objectSize > (ulong)r.Remaining) throw Bad($"{what} holds an object of {objectSize} bytes, more than the collection");
            r.Skip((objectSize + 7) / 8 * 8);
            ulong consumed = (ulong)(r.Position - start);
            if (consumed > remaining) throw Bad($"{what} holds an object that overruns the collection");
            remaining -= consumed;
        }
    }
}
