// Seed 000: the classic ImageNet networks from keras.applications, and their summaries.
// The seed loads weights='imagenet'; pass --imagenet to do the same (downloaded once into ~/.convkit/weights and
// MD5-checked, or read from there offline). Without it the models are built with Keras' random initialization, which
// prints the same summaries. `--smoke` prints only each model's totals instead of the whole tables.

var smoke = args.Contains("--smoke");
string? weights = args.Contains("--imagenet") ? "imagenet" : null;

// vgg_net_16 = tf.keras.applications.VGG16(include_top=True, weights='imagenet', input_tensor=None,
//                                          input_shape=None, pooling=None, classes=1000)
using (var vggNet16 = Zoo.VGG16(new ModelOptions { IncludeTop = true, Weights = weights, InputShape = null,
                                                             Pooling = PoolingMode.None, Classes = 1000 }))
    Show(vggNet16);

using (var vggNet19 = Zoo.VGG19(new ModelOptions { IncludeTop = true, Weights = weights, InputShape = null,
                                                             Pooling = PoolingMode.None, Classes = 1000 }))
    Show(vggNet19);

using (var inception3Net = Zoo.InceptionV3(new ModelOptions { IncludeTop = true, Weights = weights,
                                                                        Pooling = PoolingMode.None, Classes = 1000 }))
    Show(inception3Net);

using (var resnet50 = Zoo.ResNet50(new ModelOptions { IncludeTop = true, Weights = weights,
                                                               Pooling = PoolingMode.None, Classes = 1000 }))
    Show(resnet50);
return 0;

// model.summary(); in smoke mode the table's header and its last lines (the totals).
void Show(Model model)
{
    var summary = model.Summary();
    if (!smoke)
    {
        Console.Write(summary);
        return;
    }
    var lines = summary.Split('\n');
    Console.WriteLine(lines[0]);
    foreach (var line in lines.Where(l => l.Contains("params:", StringComparison.Ordinal))) Console.WriteLine(line);
}
