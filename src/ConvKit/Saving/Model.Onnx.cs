using ConvKit.Saving;

namespace ConvKit.Models;

public partial class Model
{
    /// <summary>
    /// Exports the model to an ONNX file for inference (dropout off, batch normalization on its moving statistics),
    /// with a symbolic batch dimension <c>N</c>. Image inputs and outputs are NHWC like Keras unless
    /// <paramref name="channelsLast"/> is false (then NCHW, ConvKit's internal layout). Input and output names are the
    /// Keras names of the input and output layers.
    /// </summary>
    /// <param name="path">Destination .onnx file (written atomically).</param>
    /// <param name="opset">Default-domain opset, 13 to 21.</param>
    /// <param name="channelsLast">Whether image inputs/outputs are NHWC (true) or NCHW (false).</param>
    /// <exception cref="ConvKitException">The model is subclassed or not built, a layer has no ONNX lowering (see
    /// <see cref="OnnxExport.Register{TLayer}"/>), or the opset is out of range.</exception>
    /// <exception cref="IOException">The file cannot be written.</exception>
    public void ExportOnnx(string path, int opset = 13, bool channelsLast = true) =>
        OnnxExport.Save(this, path, new OnnxExportOptions { Opset = opset, ChannelsLast = channelsLast });

    /// <summary>The ONNX model bytes (see <see cref="ExportOnnx"/>).</summary>
    /// <param name="opset">Default-domain opset, 13 to 21.</param>
    /// <param name="channelsLast">Whether image inputs/outputs are NHWC (true) or NCHW (false).</param>
    /// <returns>The serialized <c>ModelProto</c>.</returns>
    /// <exception cref="ConvKitException">See <see cref="ExportOnnx"/>.</exception>
    public byte[] ToOnnx(int opset = 13, bool channelsLast = true) =>
        OnnxExport.ToBytes(this, new OnnxExportOptions { Opset = opset, ChannelsLast = channelsLast });
}
