using ConvKit.Formats.Onnx;

namespace ConvKit.Models;

public partial class Model
{
    /// <summary>
    /// Imports an ONNX CNN as a trainable functional model (see <see cref="OnnxImport"/>): ONNX's NCHW semantics are
    /// kept; <c>Predict</c>/<c>Fit</c> take NHWC batches, <c>Apply</c> takes NCHW.
    /// </summary>
    /// <exception cref="OnnxImportException">The file is corrupt, hostile, or uses what ConvKit does not import.</exception>
    public static Model FromOnnx(string path, OnnxImportOptions? options = null) => OnnxImport.Load(path, options);
}
