// torchvision's ResNet (v1.5: stride in the 3x3 convolution, convolutions without bias, BN epsilon 1e-5) with ConvKit
// layers, named after torchvision's state-dict keys ('layer1.0.conv1' becomes 'layer1_0_conv1') so that its published
// weights load with LoadTorchvisionWeights. Padding is explicit (ZeroPadding2D + 'valid'), as torchvision pads
// symmetrically where Keras 'same' would pad asymmetrically at stride 2.
using ConvKit.Layers;
using ConvKit.Models;

namespace ConvKit.Applications;

/// <summary>torchvision's ResNet variant (resnet18_tv ... resnet152_tv).</summary>
public static class TorchvisionResNet
{
    const double Epsilon = 1e-5;
    const double Momentum = 0.9; // torchvision's momentum 0.1 in Keras' convention

    static SymbolicTensor Conv(SymbolicTensor x, int filters, int kernel, int stride, int pad, string name)
    {
        if (pad > 0) x = new ZeroPadding2D(pad, name: name + "_pad").Apply(x);
        return new Conv2D(filters, kernel, strides: stride, useBias: false, name: name).Apply(x);
    }

    static SymbolicTensor Bn(SymbolicTensor x, string name) => new BatchNormalization(momentum: Momentum, epsilon: Epsilon, name: name).Apply(x);

    static SymbolicTensor Relu(SymbolicTensor x, string name) => new Activation("relu", name: name).Apply(x);

    static SymbolicTensor Block(SymbolicTensor x, ResNet.BlockKind kind, int planes, int stride, bool downsample, string p)
    {
        var identity = x;
        SymbolicTensor y;
        if (kind == ResNet.BlockKind.Basic)
        {
            y = Relu(Bn(Conv(x, planes, 3, stride, 1, p + "_conv1"), p + "_bn1"), p + "_relu1");
            y = Bn(Conv(y, planes, 3, 1, 1, p + "_conv2"), p + "_bn2");
        }
        else
        {
            y = Relu(Bn(Conv(x, planes, 1, 1, 0, p + "_conv1"), p + "_bn1"), p + "_relu1");
            y = Relu(Bn(Conv(y, planes, 3, stride, 1, p + "_conv2"), p + "_bn2"), p + "_relu2");
            y = Bn(Conv(y, planes * 4, 1, 1, 0, p + "_conv3"), p + "_bn3");
        }
        if (downsample)
            identity = Bn(Conv(x, planes * (kind == ResNet.BlockKind.Basic ? 1 : 4), 1, stride, 0, p + "_downsample_0"), p + "_downsample_1");
        return Relu(new Add(name: p + "_add").Apply(y, identity), p + "_out");
    }

    internal static Func<ResolvedOptions, Model> Build(ResNet.Spec spec, string name) => o => Build(spec, name, o);

    /// <summary>Builds torchvision's ResNet for a depth (<see cref="ResNet.ResNet50"/> etc.).</summary>
    public static Model Build(ResNet.Spec spec, string name, ResolvedOptions o)
    {
        var inputs = Heads.Input(o);
        var x = Relu(Bn(Conv(inputs, 64, 7, 2, 3, "conv1"), "bn1"), "relu");
        x = new ZeroPadding2D(1, name: "maxpool_pad").Apply(x); // after ReLU, zeros pad like torch's -inf
        x = new MaxPooling2D(3, strides: 2, name: "maxpool").Apply(x);
        int inplanes = 64;
        for (int s = 0; s < spec.Blocks.Count; s++)
        {
            int planes = 64 << s;
            for (int b = 0; b < spec.Blocks[s]; b++)
            {
                int stride = b == 0 && s > 0 ? 2 : 1;
                bool downsample = b == 0 && (stride != 1 || inplanes != planes * spec.Expansion);
                x = Block(x, spec.Block, planes, stride, downsample, $"layer{s + 1}_{b}");
                inplanes = planes * spec.Expansion;
            }
        }
        if (o.IncludeTop)
        {
            x = new GlobalAveragePooling2D(name: "avgpool").Apply(x);
            x = new Dense(o.Classes, activation: o.ClassifierActivation, name: "fc").Apply(x);
        }
        else x = Heads.Pool(x, o.Pooling, "avgpool", "maxpool_global");
        return new Model(inputs, x, name);
    }
}
