namespace ConvKit.Layers;

/// <summary>One sliding-window step of a stack, for <see cref="ConvArithmetic.Trace"/>.</summary>
/// <param name="Kernel">Window size.</param>
/// <param name="Stride">Step between windows.</param>
/// <param name="Padding">Keras padding mode.</param>
/// <param name="Dilation">Spacing between window taps.</param>
/// <param name="Name">A label for the row.</param>
public readonly record struct ConvStep(int Kernel, int Stride = 1, Padding Padding = default, int Dilation = 1, string? Name = null);

/// <summary>
/// Receptive field of one output position along one axis: it sees <see cref="Size"/> input pixels, neighbouring outputs
/// are <see cref="Jump"/> input pixels apart, and the first output is centred on input coordinate <see cref="Start"/>
/// (0 = centre of the first input pixel; negative when padding shifts it outside).
/// </summary>
/// <param name="Size">Receptive field size in input pixels.</param>
/// <param name="Jump">Distance in input pixels between adjacent outputs.</param>
/// <param name="Start">Input coordinate of the centre of the first output's field.</param>
public readonly record struct ReceptiveField(long Size, long Jump, double Start)
{
    /// <summary>The field of an input pixel.</summary>
    public static ReceptiveField Identity => new(1, 1, 0);

    /// <summary>The field after a window of <paramref name="kernel"/> taps, stride, dilation and leading padding.</summary>
    public ReceptiveField Then(int kernel, int stride, int dilation, int padBefore)
    {
        long effective = (long)(kernel - 1) * dilation + 1;
        return new(Size + (effective - 1) * Jump, Jump * stride, Start + ((effective - 1) / 2.0 - padBefore) * Jump);
    }

    /// <summary>The wider of two fields (used where branches merge).</summary>
    public static ReceptiveField Max(ReceptiveField a, ReceptiveField b) => a.Size >= b.Size ? a : b;
}

/// <summary>One row of <see cref="ConvArithmetic.Trace"/>.</summary>
/// <param name="Step">The step.</param>
/// <param name="InputSize">Size entering the step.</param>
/// <param name="OutputSize">Size leaving it.</param>
/// <param name="PadBefore">Padding added before (top/left).</param>
/// <param name="PadAfter">Padding added after (bottom/right).</param>
/// <param name="Field">Receptive field of one output of this step on the stack's input.</param>
public readonly record struct ConvTraceRow(ConvStep Step, int InputSize, int OutputSize, int PadBefore, int PadAfter, ReceptiveField Field);

/// <summary>
/// All output-size arithmetic of convolution and pooling, in one place, exactly as Keras computes it.
/// </summary>
public static class ConvArithmetic
{
    /// <summary>
    /// Output length along one axis. 'valid': floor((n - (k-1)·d - 1) / s) + 1; 'same': ceil(n / s).
    /// Returns 0 when a 'valid' window does not fit (never -1, which would read as an unknown size); -1 for an
    /// unknown input.
    /// </summary>
    public static int OutputLength(int input, int kernel, int stride, Padding padding, int dilation = 1)
    {
        if (input == Shape.Unknown) return Shape.Unknown;
        if (padding == Padding.Same) return (input + stride - 1) / stride;
        long effective = (long)(kernel - 1) * dilation + 1;
        long span = input - effective;
        return span < 0 ? 0 : (int)(span / stride + 1);
    }

    /// <summary>
    /// Keras' 'same' padding along one axis: total = max(0, (out - 1)·s + (k - 1)·d + 1 - n), before = total / 2,
    /// after = total - before (the odd pixel goes after: bottom/right).
    /// </summary>
    public static (int Before, int After) SamePadding(int input, int kernel, int stride, int dilation = 1)
    {
        int output = OutputLength(input, kernel, stride, Padding.Same, dilation);
        long total = Math.Max(0L, (long)(output - 1) * stride + (long)(kernel - 1) * dilation + 1 - input);
        int before = (int)(total / 2);
        return (before, (int)total - before);
    }

    /// <summary>Padding along one axis for a mode: zero for 'valid'.</summary>
    public static (int Before, int After) Pads(int input, int kernel, int stride, Padding padding, int dilation = 1) =>
        padding == Padding.Same ? SamePadding(input, kernel, stride, dilation) : (0, 0);

    /// <summary>
    /// Output length of a transposed convolution along one axis, as Keras' <c>deconv_output_length</c>: with no
    /// output padding, 'valid' gives n·s + max(k' - s, 0) and 'same' gives n·s; with output padding p,
    /// (n - 1)·s + k' - 2·pad + p where pad = k' / 2 for 'same', 0 for 'valid' (k' = (k - 1)·d + 1). -1 for an unknown input.
    /// </summary>
    public static int TransposedOutputLength(int input, int kernel, int stride, Padding padding, int? outputPadding = null, int dilation = 1)
    {
        if (input == Shape.Unknown) return Shape.Unknown;
        long effective = (long)(kernel - 1) * dilation + 1;
        if (outputPadding is not { } p)
            return (int)(padding == Padding.Same ? (long)input * stride : (long)input * stride + Math.Max(effective - stride, 0));
        long pad = padding == Padding.Same ? effective / 2 : 0;
        return (int)((long)(input - 1) * stride + effective - 2 * pad + p);
    }

    /// <summary>
    /// What a transposed convolution removes from the full result, (n - 1)·s + k', to reach
    /// <see cref="TransposedOutputLength"/>: TensorFlow's rule, <c>Before</c> = total / 2 and the rest after, where total
    /// = full - output. When the output is longer than the full result (a 'valid' kernel shorter than its stride, or
    /// output padding), <c>After</c> is negative: that many zero cells (plus the bias) are added after. Independent of
    /// the input length.
    /// </summary>
    public static (int Before, int After) TransposedCrop(int kernel, int stride, Padding padding, int? outputPadding = null, int dilation = 1)
    {
        // Any input length gives the same crop: take n = 1.
        long full = (long)(kernel - 1) * dilation + 1;
        long total = full - TransposedOutputLength(1, kernel, stride, padding, outputPadding, dilation);
        if (total <= 0) return (0, (int)total);
        return ((int)(total / 2), (int)(total - total / 2));
    }

    /// <summary>
    /// PyTorch's adaptive pooling window of output <paramref name="index"/> along one axis, when <paramref name="input"/>
    /// cells are pooled to <paramref name="output"/>: cells [floor(i·n / o), ceil((i + 1)·n / o)). Windows cover the
    /// input, overlap by at most one cell, and repeat cells when the output is larger than the input.
    /// </summary>
    public static (int Start, int End) AdaptiveWindow(int input, int output, int index)
    {
        long start = (long)index * input / output;
        long end = ((long)(index + 1) * input + output - 1) / output;
        return ((int)start, (int)end);
    }

    /// <summary>
    /// The output length of torch's max pooling with <c>ceil_mode=True</c> and no padding, and the zero cells to add
    /// after the input (bottom/right) so that a 'valid' pooling of the padded input has that length: the last window
    /// may hang over the edge, but must start inside the input.
    /// </summary>
    public static (int Output, int PadAfter) CeilModePooling(int input, int kernel, int stride)
    {
        if (input == Shape.Unknown) return (Shape.Unknown, 0);
        int output = (int)Math.Floor((input - kernel + stride - 1) / (double)stride) + 1;
        if ((long)(output - 1) * stride >= input) output--; // torch: the last window starts inside the input
        return output < 1 ? (0, 0) : (output, Math.Max(0, (output - 1) * stride + kernel - input));
    }

    /// <summary>
    /// Walks a stack of windows over an input of <paramref name="inputSize"/> pixels and reports, for each step, the
    /// output size, the padding and the receptive field, as one computes them by hand: "what output size and receptive
    /// field does this stack give?"
    /// </summary>
    /// <exception cref="ShapeException">A 'valid' window does not fit its input.</exception>
    public static IReadOnlyList<ConvTraceRow> Trace(int inputSize, params ConvStep[] steps)
    {
        var rows = new List<ConvTraceRow>();
        var field = ReceptiveField.Identity;
        int n = inputSize;
        foreach (var step in steps)
        {
            if (step.Kernel < 1 || step.Stride < 1 || step.Dilation < 1)
                throw new InvalidOptionException("steps", $"step {step}: kernel, stride and dilation must be positive");
            int output = OutputLength(n, step.Kernel, step.Stride, step.Padding, step.Dilation);
            if (output < 1)
                throw new ShapeException($"step {step.Name ?? rows.Count.ToString(System.Globalization.CultureInfo.InvariantCulture)}: a {step.Kernel}-wide window (dilation {step.Dilation}) does not fit an input of {n} with 'valid' padding");
            var (before, after) = Pads(n, step.Kernel, step.Stride, step.Padding, step.Dilation);
            field = field.Then(step.Kernel, step.Stride, step.Dilation, before);
            rows.Add(new ConvTraceRow(step, n, output, before, after, field));
            n = output;
        }
        return rows;
    }
}
