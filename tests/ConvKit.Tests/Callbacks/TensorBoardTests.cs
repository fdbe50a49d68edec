using ConvKit.Callbacks;
using ConvKit.Tests.Training;
using ConvKit.Training;
using Google.Protobuf;

namespace ConvKit.Tests.Callbacks;

public class TensorBoardTests
{
    [Fact]
    public void EventFilesParseBackIntoTheLoggedValues()
    {
        var (x, y) = TestData.Separable(32);
        var model = TestData.Mlp();
        model.Compile(optimizer: new SGD(0.05), loss: "sparse_categorical_crossentropy", metrics: ["accuracy"]);
        var dir = Directory.CreateTempSubdirectory("convkit-tb").FullName;
        try
        {
            var h = model.Fit(x, y, batchSize: 8, epochs: 3, verbose: 0, validationSplit: 0.25,
                callbacks: [new TensorBoard(dir, histogramFreq: 1, updateFreq: 2)]);
            var train = EventReader.ReadDir(Path.Combine(dir, "train"));
            var validation = EventReader.ReadDir(Path.Combine(dir, "validation"));
            for (int e = 0; e < 3; e++)
            {
                Assert.Equal((float)h["loss"][e], train.Scalar("epoch_loss", e));
                Assert.Equal((float)h["accuracy"][e], train.Scalar("epoch_accuracy", e));
                Assert.Equal((float)h["val_loss"][e], validation.Scalar("epoch_loss", e));
            }
            // 3 batches per epoch, batch scalars every 2 batches: steps 2, 4, 6, 8.
            Assert.Equal(new long[] { 2, 4, 6, 8 }, train.Steps("batch_loss"));
            Assert.Contains(train.Tags, t => t == "dense/kernel_0");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Reads TFRecord files of Event protos: records are length (u64 LE), masked CRC32C of the length, data, masked
    /// CRC32C of the data. Event: wall_time=1 (double), step=2 (int64), summary=5; Summary.value=1;
    /// Summary.Value: tag=1, simple_value=2 (float), histo=5.
    /// </summary>
    sealed class EventReader
    {
        readonly List<(string Tag, long Step, float? Value)> entries = [];

        public IEnumerable<string> Tags => entries.Select(e => e.Tag).Distinct();

        public float Scalar(string tag, long step) =>
            entries.Single(e => e.Tag == tag && e.Step == step && e.Value is not null).Value!.Value;

        public long[] Steps(string tag) => entries.Where(e => e.Tag == tag).Select(e => e.Step).ToArray();

        public static EventReader ReadDir(string dir)
        {
            var reader = new EventReader();
            var files = Directory.GetFiles(dir, "events.out.tfevents.*");
            Assert.NotEmpty(files);
            foreach (var f in files) reader.Read(File.ReadAllBytes(f));
            return reader;
        }

        void Read(byte[] bytes)
        {
            int pos = 0;
            while (pos < bytes.Length)
            {
                ulong len = BitConverter.ToUInt64(bytes, pos);
                Assert.Equal(MaskedCrc(bytes.AsSpan(pos, 8)), BitConverter.ToUInt32(bytes, pos + 8));
                pos += 12;
                var data = bytes.AsSpan(pos, (int)len);
                Assert.Equal(MaskedCrc(data), BitConverter.ToUInt32(bytes, pos + (int)len));
                ParseEvent(data.ToArray());
                pos += (int)len + 4;
            }
        }

        void ParseEvent(byte[] data)
        {
            var input = new CodedInputStream(data);
            long step = 0;
            var values = new List<(string, float?)>();
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                switch (WireFormat.GetTagFieldNumber(tag))
                {
                    case 2: step = input.ReadInt64(); break;
                    case 5: values.AddRange(ParseSummary(input.ReadBytes())); break;
                    default: input.SkipLastField(); break;
                }
            }
            foreach (var (t, v) in values) entries.Add((t, step, v));
        }

        static IEnumerable<(string, float?)> ParseSummary(ByteString bytes)
        {
            var input = bytes.CreateCodedInput();
            var result = new List<(string, float?)>();
            uint tag;
            while ((tag = input.ReadTag()) != 0)
            {
                if (WireFormat.GetTagFieldNumber(tag) != 1) { input.SkipLastField(); continue; }
                var v = input.ReadBytes().CreateCodedInput();
                string name = "";
                float? value = null;
                uint t;
                while ((t = v.ReadTag()) != 0)
                {
                    switch (WireFormat.GetTagFieldNumber(t))
                    {
                        case 1: name = v.ReadString(); break;
                        case 2: value = v.ReadFloat(); break;
                        default: v.SkipLastField(); break;
                    }
                }
                result.Add((name, value));
            }
            return result;
        }

        static uint MaskedCrc(ReadOnlySpan<byte> data)
        {
            uint crc = Crc32C(data);
            return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
        }

        static readonly uint[] Table = Enumerable.Range(0, 256).Select(i =>
        {
            uint c = (uint)i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
            return c;
        }).ToArray();

        static uint Crc32C(ReadOnlySpan<byte> data)
        {
            uint crc = 0xFFFFFFFFu;
            foreach (var b in data) crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
            return crc ^ 0xFFFFFFFFu;
        }
    }
}
