// Seed 003: AlexNet and VGGNet written layer by layer with keras.Sequential, and their summaries.
// The seed only builds and summarizes them (ImageNet-sized, 1000 classes); this port also runs AlexNet once on a
// random 227x227 image to show the output is a probability per class. `--smoke` is the same program (it is fast).
using static TorchSharp.torch;

var smoke = args.Contains("--smoke");

var alexnet = new Sequential();
// 입력(컬러 이미지)의 크기지정 (the input: a colour image)
alexnet.Add(new Input(shape: (227, 227, 3)));
// 1번째 합성곱층 (1st convolution)
alexnet.Add(new Conv2D(filters: 96, kernelSize: 11, strides: 4, activation: "relu"));
// 1번째 풀링층 (1st pooling)
alexnet.Add(new MaxPooling2D(poolSize: 3, strides: 2));
// 2번째 합성곱층 - same 패딩 (2nd convolution, 'same' padding keeps the size)
alexnet.Add(new Conv2D(filters: 256, kernelSize: 5, padding: "same", activation: "relu"));
// 2번째 풀링층
alexnet.Add(new MaxPooling2D(poolSize: 3, strides: 2));
// 3번째, 4번째, 5번째 합성곱층
alexnet.Add(new Conv2D(filters: 384, kernelSize: 3, padding: "same", activation: "relu"));
alexnet.Add(new Conv2D(filters: 384, kernelSize: 3, padding: "same", activation: "relu"));
alexnet.Add(new Conv2D(filters: 256, kernelSize: 3, padding: "same", activation: "relu"));
// 3번째 풀링층
alexnet.Add(new MaxPooling2D(poolSize: 3, strides: 2));
// 완전 연결층에 전달하기 위해 1차원 배열로 변환 (flatten for the fully connected layers)
alexnet.Add(new Flatten());
alexnet.Add(new Dense(4096, activation: "relu"));
alexnet.Add(new Dropout(0.5));   // 드롭아웃 적용
alexnet.Add(new Dense(4096, activation: "relu"));
alexnet.Add(new Dropout(0.5));
// 출력층 - 1000개의 클래스에 대한 소프트맥스 (output: softmax over 1000 classes)
alexnet.Add(new Dense(1000, activation: "softmax"));
alexnet.PrintSummary();

// One random image through the network: (1, 1000) probabilities that sum to 1.
using (var image = rand(1, 227, 227, 3))
using (var probabilities = alexnet.Predict(image))
{
    Console.WriteLine($"alexnet.predict: shape ({string.Join(", ", probabilities.shape)}), sum {probabilities.sum().item<float>():F4}");
}

var vggnet = new Sequential();
vggnet.Add(new Input(shape: (224, 224, 3)));
// 1,2 번째 블록 : 64개와 128개의 합성곱 필터를 사용하는 블록 (blocks 1-2: 64 and 128 filters)
foreach (var nFilters in new[] { 64, 128 })
{
    // 2개의 합성곱층과 1개의 풀링층 추가 (two convolutions and a pooling layer)
    for (var i = 0; i < 2; i++)
        vggnet.Add(new Conv2D(filters: nFilters, kernelSize: 3, padding: "same", activation: "relu"));
    vggnet.Add(new MaxPooling2D(poolSize: 2, strides: 2));
}
// 3,4,5 번째 블록 : 256개와 512개의 합성곱 필터 (blocks 3-5: 256, 512 and 512 filters)
foreach (var nFilters in new[] { 256, 512, 512 })
{
    for (var i = 0; i < 3; i++)
        vggnet.Add(new Conv2D(filters: nFilters, kernelSize: 3, padding: "same", activation: "relu"));
    vggnet.Add(new MaxPooling2D(poolSize: 2, strides: 2));
}
vggnet.Add(new Flatten());
vggnet.Add(new Dense(4096, activation: "relu"));
vggnet.Add(new Dense(4096, activation: "relu"));
vggnet.Add(new Dense(1000, activation: "softmax"));
vggnet.PrintSummary();
if (smoke) Console.WriteLine("smoke run: done");
return 0;
