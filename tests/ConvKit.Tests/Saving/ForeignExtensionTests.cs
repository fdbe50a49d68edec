using ConvKit.Callbacks;
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Tests.Saving;

// Issue 13: Save("model.h5") and ModelCheckpoint("file.hdf5") wrote safetensors under an HDF5 name.
public class ForeignExtensionTests
{
    static Sequential Tiny() => new([new InputLayer(new Shape(4)), new Dense(2)]);

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("model.h5")]
    [InlineData("model.hdf5")]
    [InlineData("MODEL.H5")]
    [InlineData("model.keras")]
    public void SaveAndSaveWeightsRefuseKerasExtensionsAndWriteNothing(string name)
    {
        var dir = Directory.CreateTempSubdirectory("convkit-ext-").FullName;
        try
        {
            var path = Path.Combine(dir, name);
            var model = Tiny();
            foreach (var save in new Action[] { () => model.Save(path), () => model.SaveWeights(path) })
            {
                var e = Assert.Throws<UnsupportedException>(save);
                Assert.Contains(path, e.Message);
                Assert.Contains("safetensors", e.Message);
                Assert.Contains(Path.ChangeExtension(name, ".safetensors"), e.Message);
            }
            Assert.Empty(Directory.GetFileSystemEntries(dir));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Theory]
    [Trait("Catalogue", "Hostile")]
    [InlineData("weights.{epoch:02d}-{val_loss:.2f}.hdf5")]
    [InlineData("best.h5")]
    public void ModelCheckpointRefusesKerasExtensionsWhenCreated(string template)
    {
        var e = Assert.Throws<UnsupportedException>(() => new ModelCheckpoint(template, saveBestOnly: true));
        Assert.StartsWith("ModelCheckpoint: ", e.Message);
        Assert.Contains(".safetensors", e.Message);
        Assert.Contains("LoadKerasWeights", e.Message);
    }

    [Fact]
    public void NativeAndOtherExtensionsStillSave()
    {
        var dir = Directory.CreateTempSubdirectory("convkit-ext-").FullName;
        try
        {
            var model = Tiny();
            model.Save(Path.Combine(dir, "m.safetensors"));
            model.SaveWeights(Path.Combine(dir, "w.bin"));
            Assert.NotNull(Model.Load(Path.Combine(dir, "m.safetensors")));
            _ = new ModelCheckpoint(Path.Combine(dir, "ckpt-{epoch}.safetensors"));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
