"""How the small ONNX files beside this script were made (not run in CI; the files are committed).

Each exporter lives in its own throwaway virtual environment outside the repository, never in the
project's environment:

    python3 -m venv /tmp/venv-tf && /tmp/venv-tf/bin/pip install "tensorflow-cpu==2.15.1" tf2onnx "onnx==1.16.2"
    /tmp/venv-tf/bin/python tests/data/onnx/make_fixtures.py keras      # -> keras_tiny.onnx (tf2onnx 1.17)

    python3 -m venv /tmp/venv-pd && /tmp/venv-pd/bin/pip install paddlepaddle paddle2onnx packaging
    /tmp/venv-pd/bin/python tests/data/onnx/make_fixtures.py paddle     # -> paddle_tiny.onnx (paddle2onnx 2.1)

Weights are seeded random (no download); the files are small CNNs with the patterns of real exports:
Keras: an NHWC input, a Rescaling layer inside the graph (raw 0-255 pixels in), Conv2D, BatchNorm,
DepthwiseConv2D, MaxPooling, UpSampling2D, GlobalAveragePooling and a Dense softmax head;
Paddle: NCHW input, Conv2D/BatchNorm/ReLU/Hardswish, a squeeze-excitation block, AvgPool, Linear.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def keras() -> None:
    import numpy as np
    import tensorflow as tf
    import tf2onnx

    tf.keras.utils.set_random_seed(0)
    layers = tf.keras.layers
    inputs = tf.keras.Input((32, 32, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = layers.Conv2D(8, 3, padding="same", name="conv1")(x)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(x)
    x = layers.Activation("swish", name="swish")(x)
    x = layers.Conv2D(12, 1, name="pw")(x)
    x = layers.MaxPooling2D(2, name="pool")(x)
    x = layers.UpSampling2D(2, name="up")(x)
    x = layers.Conv2D(16, 3, strides=2, padding="valid", activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(5, activation="softmax", name="head")(x)
    model = tf.keras.Model(inputs, outputs, name="keras_tiny")
    bn = model.get_layer("bn1")  # non-trivial statistics
    rng = np.random.default_rng(0)
    bn.set_weights([w + rng.uniform(0.1, 0.5, w.shape).astype(np.float32) for w in bn.get_weights()])
    spec = (tf.TensorSpec((None, 32, 32, 3), tf.float32, name="image"),)
    path = os.path.join(HERE, "keras_tiny.onnx")
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=13, output_path=path)
    print(path, os.path.getsize(path))


def paddle() -> None:
    import paddle
    from paddle import nn

    paddle.seed(0)

    class SE(nn.Layer):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2D(1)
            self.fc1 = nn.Conv2D(c, c // 2, 1)
            self.fc2 = nn.Conv2D(c // 2, c, 1)

        def forward(self, x):  # type: ignore[no-untyped-def]
            s = nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(self.pool(x)))))
            return x * s

    class Tiny(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2D(3, 8, 3, stride=2, padding=1)
            self.bn1 = nn.BatchNorm2D(8)
            self.conv2 = nn.Conv2D(8, 8, 3, padding=1, groups=8)
            self.bn2 = nn.BatchNorm2D(8)
            self.se = SE(8)
            self.conv3 = nn.Conv2D(8, 16, 1)
            self.pool = nn.AvgPool2D(2)
            self.fc = nn.Linear(16, 4)

        def forward(self, x):  # type: ignore[no-untyped-def]
            x = nn.functional.relu(self.bn1(self.conv1(x)))
            x = nn.functional.hardswish(self.bn2(self.conv2(x)))
            x = self.se(x)
            x = self.pool(nn.functional.relu(self.conv3(x)))
            x = paddle.mean(x, axis=[2, 3])
            return self.fc(x)

    model = Tiny()
    for bn in (model.bn1, model.bn2):  # non-trivial statistics
        bn._mean.set_value(paddle.uniform(bn._mean.shape, min=-0.5, max=0.5))
        bn._variance.set_value(paddle.uniform(bn._variance.shape, min=0.5, max=2.0))
    model.eval()
    prefix = os.path.join(HERE, "paddle_tiny")
    spec = [paddle.static.InputSpec([1, 3, 32, 32], "float32", "x")]
    paddle.onnx.export(model, prefix, input_spec=spec, opset_version=13)
    print(prefix + ".onnx", os.path.getsize(prefix + ".onnx"))


if __name__ == "__main__":
    {"keras": keras, "paddle": paddle}[sys.argv[1]]()
