// The Open Inference Protocol's (KServe v2) infer request and response in JSON, with the binary tensor data extension
// (https://github.com/kserve/open-inference-protocol, Triton's binary_data extension): a JSON header of
// Inference-Header-Content-Length bytes, then each tensor's raw little-endian bytes in order.
using System.Buffers;
using System.Buffers.Binary;
using System.Text.Json;

namespace ConvKit.Serving;

/// <summary>A parsed infer request: the input batch as row-major floats and how the answer is wanted.</summary>
internal sealed record InferRequest(string? Id, float[] Input, int Samples, bool BinaryOutput);

/// <summary>Reads infer requests and writes infer responses.</summary>
internal static class InferProtocol
{
    /// <summary>The header naming the length of the JSON part of a binary request or response.</summary>
    public const string HeaderLength = "Inference-Header-Content-Length";

    static readonly JsonDocumentOptions JsonOptions = new() { MaxDepth = 16 };

    static InferenceRequestException Bad(string message) => new(400, message);

    /// <summary>Parses <paramref name="body"/> (JSON, or JSON then binary tensors when <paramref name="jsonLength"/> is
    /// set) for <paramref name="model"/>.</summary>
    /// <exception cref="InferenceRequestException">400 naming what is wrong: JSON syntax, a missing or unknown field,
    /// the input's name, datatype, shape, element count, a non-finite value, or the binary section's size.</exception>
    public static InferRequest Parse(ReadOnlyMemory<byte> body, long? jsonLength, ServedModel model, int maxSamples)
    {
        if (jsonLength is { } n && (n <= 0 || n > body.Length))
            throw Bad($"{HeaderLength} is {n} but the body has {body.Length} bytes.");
        var json = jsonLength is { } l ? body[..(int)l] : body;
        var binary = jsonLength is { } m ? body[(int)m..] : ReadOnlyMemory<byte>.Empty;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, JsonOptions);
        }
        catch (JsonException e)
        {
            throw Bad($"malformed JSON in the infer request: {e.Message}");
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw Bad($"the infer request must be a JSON object; found {root.ValueKind}.");
            string? id = root.TryGetProperty("id", out var idElement) ? idElement.ValueKind == JsonValueKind.String ? idElement.GetString() : throw Bad("\"id\" must be a string.") : null;
            if (!root.TryGetProperty("inputs", out var inputs) || inputs.ValueKind != JsonValueKind.Array)
                throw Bad("the infer request needs \"inputs\": an array of tensors.");
            if (inputs.GetArrayLength() != 1)
                throw Bad($"model '{model.Name}' takes 1 input ('{ServedModel.InputName}'); the request has {inputs.GetArrayLength()}.");
            var input = inputs[0];
            if (input.ValueKind != JsonValueKind.Object) throw Bad("each element of \"inputs\" must be an object.");
            var name = input.TryGetProperty("name", out var nameElement) && nameElement.ValueKind == JsonValueKind.String ? nameElement.GetString() : throw Bad("the input needs a \"name\" string.");
            if (name != ServedModel.InputName) throw Bad($"model '{model.Name}' has no input '{Clip(name)}'; its input is '{ServedModel.InputName}'.");
            var datatype = input.TryGetProperty("datatype", out var typeElement) && typeElement.ValueKind == JsonValueKind.String ? typeElement.GetString() : throw Bad($"input '{name}' needs a \"datatype\" string.");
            if (datatype != "FP32") throw Bad($"input '{name}' has datatype '{Clip(datatype)}'; model '{model.Name}' takes FP32.");
            int samples = ParseShape(input, name, model, maxSamples);
            long count = (long)samples * model.SampleSize;

            long? binarySize = null;
            if (input.TryGetProperty("parameters", out var parameters) && parameters.ValueKind == JsonValueKind.Object &&
                parameters.TryGetProperty("binary_data_size", out var sizeElement))
                binarySize = sizeElement.TryGetInt64(out var size) && size >= 0 ? size : throw Bad($"input '{name}': \"binary_data_size\" must be a non-negative integer.");

            var data = new float[count];
            if (binarySize is { } bytes)
            {
                if (jsonLength is null) throw Bad($"input '{name}' has \"binary_data_size\" but the request has no {HeaderLength} header.");
                if (bytes != count * 4) throw Bad($"input '{name}' of shape {ShapeText(samples, model)} needs {count * 4} bytes of FP32 data; \"binary_data_size\" is {bytes}.");
                if (binary.Length != bytes) throw Bad($"input '{name}': the binary section has {binary.Length} bytes; \"binary_data_size\" says {bytes}.");
                var span = binary.Span;
                for (int i = 0; i < data.Length; i++) data[i] = BinaryPrimitives.ReadSingleLittleEndian(span.Slice(i * 4, 4));
            }
            else
            {
                if (!input.TryGetProperty("data", out var dataElement)) throw Bad($"input '{name}' has neither \"data\" nor \"binary_data_size\".");
                if (binary.Length != 0) throw Bad($"the request has {binary.Length} bytes after its JSON header but no input uses binary data.");
                long at = 0;
                Flatten(dataElement, data, ref at, name!);
                if (at != count) throw Bad($"input '{name}' of shape {ShapeText(samples, model)} needs {count} values; \"data\" has {at}.");
            }
            for (int i = 0; i < data.Length; i++)
                if (!float.IsFinite(data[i])) throw Bad($"input '{name}' holds {data[i]} at element {i}; the model takes finite numbers only.");

            bool binaryOutput = false;
            if (root.TryGetProperty("parameters", out var rootParameters) && rootParameters.ValueKind == JsonValueKind.Object &&
                rootParameters.TryGetProperty("binary_data_output", out var bdo))
                binaryOutput = bdo.ValueKind == JsonValueKind.True || (bdo.ValueKind != JsonValueKind.False ? throw Bad("\"binary_data_output\" must be true or false.") : false);
            if (root.TryGetProperty("outputs", out var outputs))
            {
                if (outputs.ValueKind != JsonValueKind.Array) throw Bad("\"outputs\" must be an array.");
                foreach (var o in outputs.EnumerateArray())
                {
                    var oname = o.ValueKind == JsonValueKind.Object && o.TryGetProperty("name", out var on) && on.ValueKind == JsonValueKind.String ? on.GetString() : throw Bad("each requested output needs a \"name\" string.");
                    if (oname != ServedModel.OutputName) throw Bad($"model '{model.Name}' has no output '{Clip(oname)}'; its output is '{ServedModel.OutputName}'.");
                    if (o.TryGetProperty("parameters", out var op) && op.ValueKind == JsonValueKind.Object && op.TryGetProperty("binary_data", out var bd))
                        binaryOutput = bd.ValueKind == JsonValueKind.True || (bd.ValueKind != JsonValueKind.False ? throw Bad("\"binary_data\" must be true or false.") : binaryOutput);
                }
            }
            return new InferRequest(id, data, samples, binaryOutput);
        }
    }

    static int ParseShape(JsonElement input, string? name, ServedModel model, int maxSamples)
    {
        if (!input.TryGetProperty("shape", out var shape) || shape.ValueKind != JsonValueKind.Array)
            throw Bad($"input '{name}' needs a \"shape\": an array of integers.");
        var dims = new List<long>();
        foreach (var d in shape.EnumerateArray())
            dims.Add(d.ValueKind == JsonValueKind.Number && d.TryGetInt64(out var v) ? v : throw Bad($"input '{name}': \"shape\" must hold integers."));
        var expected = model.InputShape.Dims.ToArray();
        bool fits = dims.Count == expected.Length + 1 && dims.Skip(1).Select(d => d).SequenceEqual(expected.Select(e => (long)e));
        if (!fits)
            throw Bad($"input '{name}' has shape [{string.Join(",", dims.Take(8))}{(dims.Count > 8 ? ",..." : "")}]; model '{model.Name}' takes [-1,{string.Join(",", expected)}] (batch first, Keras layout).");
        if (dims[0] < 1 || dims[0] > maxSamples)
            throw Bad($"input '{name}' has a batch of {dims[0]}; model '{model.Name}' takes 1 to {maxSamples} samples per request.");
        return (int)dims[0];
    }

    static void Flatten(JsonElement element, float[] data, ref long at, string name)
    {
        if (element.ValueKind == JsonValueKind.Array)
        {
            foreach (var e in element.EnumerateArray()) Flatten(e, data, ref at, name);
            return;
        }
        if (element.ValueKind != JsonValueKind.Number)
            throw Bad($"input '{name}': element {at} of \"data\" is {(element.ValueKind == JsonValueKind.String ? $"the string \"{Clip(element.GetString())}\"" : element.ValueKind.ToString())}, not a number (FP32 data are JSON numbers; NaN and infinity are refused).");
        if (at >= data.Length) throw Bad($"input '{name}': \"data\" has more values than its shape holds ({data.Length}).");
        if (!element.TryGetSingle(out var value) || !float.IsFinite(value))
            throw Bad($"input '{name}': element {at} of \"data\" ({Clip(element.GetRawText())}) is outside FP32's finite range.");
        data[at++] = value;
    }

    static string ShapeText(int samples, ServedModel model) => $"[{samples},{string.Join(",", model.InputShape.Dims.ToArray())}]";

    /// <summary>A client-given string as it may appear in a message: at most 64 characters, no control characters.</summary>
    public static string Clip(string? text)
    {
        if (text is null) return "";
        var clean = new string(text.Where(c => !char.IsControl(c)).Take(64).ToArray());
        return text.Length > 64 ? clean + "..." : clean;
    }

    /// <summary>Writes the response: JSON with the data inline, or (binary) the JSON header then the raw floats.
    /// Returns the bytes and, for binary answers, the JSON header's length.</summary>
    public static (byte[] Body, int? JsonLength) Write(ServedModel model, InferRequest request, float[] output)
    {
        var buffer = new ArrayBufferWriter<byte>(request.BinaryOutput ? 512 : 64 + output.Length * 12);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("model_name", model.Name);
            w.WriteString("model_version", "1");
            if (request.Id is not null) w.WriteString("id", request.Id);
            w.WriteStartArray("outputs");
            w.WriteStartObject();
            w.WriteString("name", ServedModel.OutputName);
            w.WriteString("datatype", "FP32");
            w.WriteStartArray("shape");
            w.WriteNumberValue(request.Samples);
            foreach (var d in model.OutputShape.Dims) w.WriteNumberValue(d);
            w.WriteEndArray();
            if (request.BinaryOutput)
            {
                w.WriteStartObject("parameters");
                w.WriteNumber("binary_data_size", output.Length * 4L);
                w.WriteEndObject();
            }
            else
            {
                w.WriteStartArray("data");
                foreach (var v in output) w.WriteNumberValue(v);
                w.WriteEndArray();
            }
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
        }
        if (!request.BinaryOutput) return (buffer.WrittenSpan.ToArray(), null);
        int jsonLength = buffer.WrittenCount;
        var body = new byte[jsonLength + output.Length * 4L];
        buffer.WrittenSpan.CopyTo(body);
        for (int i = 0; i < output.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(body.AsSpan(jsonLength + i * 4, 4), output[i]);
        return (body, jsonLength);
    }
}
