"""Small reference models that fit a Nano 33 BLE, used by the demo, benchmarks and tests."""

from __future__ import annotations

from tfmot_edgeplus._compat import keras


def small_cnn(input_shape=(28, 28, 1), classes: int = 10, width: int = 16, hidden: int = 0,
              name: str = "small_cnn"):
    """Conv-BN-ReLU, a depthwise-separable block, a 3x3 conv and a Dense classifier on the
    flattened 3x3 map (about 13k parameters at width 16): every layer type the scheme
    quantizes, small enough for a Nano 33 BLE and for 2-core CI. BatchNorm momentum 0.9 so
    that its statistics settle within the few hundred steps our runs take. ``hidden > 0``
    adds a ReLU Dense layer of that width (named ``fc``) before the classifier: a two-layer
    head for QCore."""
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw2")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn_dw2")(x)
    x = keras.layers.ReLU(name="relu_dw2")(x)
    x = keras.layers.Conv2D(2 * width, 1, use_bias=False, name="pw2")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.MaxPooling2D(name="pool3")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def imu_cnn(window: int = 100, channels: int = 6, classes: int = 7, width: int = 16,
            hidden: int = 0, name: str = "imu_cnn"):
    """1-D CNN for IMU windows (samples x channels). ``hidden > 0`` adds a ReLU Dense layer
    of that width (named ``fc``) before the classifier: a two-layer head for QCore."""
    inputs = keras.Input((window, channels), name="imu")
    conv = keras.layers.Conv1D
    x = conv(width, 5, strides=2, padding="same", activation="relu", name="conv1")(inputs)
    x = conv(2 * width, 5, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = conv(2 * width, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def imu_deep_cnn(window: int = 100, channels: int = 6, classes: int = 7, width: int = 24,
                 name: str = "imu_deep_cnn"):
    """A deeper 1-D CNN for IMU windows: three stages of two Conv1D-BatchNorm-ReLU layers
    (``width``, 2x and 4x channels; the second layer of each stage strides 2), global average
    pooling and a Dense classifier; about 56k parameters at width 24. The hard IMU task of
    the benchmark bed (``benchmarks/_tasks.py``): deep enough that 2-3 bit weights and little
    data hurt. BatchNorm momentum 0.9, as :func:`small_cnn`."""
    L = keras.layers
    inputs = keras.Input((window, channels), name="imu")
    x = inputs
    for stage, filters in enumerate((width, 2 * width, 4 * width), start=1):
        for layer, (kernel, stride) in enumerate(((5 if stage == 1 else 3, 1), (3, 2)), start=1):
            tag = f"s{stage}c{layer}"
            x = L.Conv1D(filters, kernel, strides=stride, padding="same", use_bias=False,
                         name=f"conv_{tag}")(x)
            x = L.BatchNormalization(momentum=0.9, name=f"bn_{tag}")(x)
            x = L.ReLU(name=f"relu_{tag}")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    outputs = L.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def _inverted_residual(x, expand: int, out: int, stride: int, name: str, add: bool = False):
    L = keras.layers
    inp = x
    x = L.Conv2D(expand, 1, use_bias=False, name=f"{name}_expand")(x)
    x = L.BatchNormalization(name=f"{name}_expand_bn")(x)
    x = L.ReLU(6.0, name=f"{name}_expand_relu")(x)
    if stride == 2:
        x = L.ZeroPadding2D(((0, 1), (0, 1)), name=f"{name}_pad")(x)
    x = L.DepthwiseConv2D(3, strides=stride, padding="same" if stride == 1 else "valid",
                          use_bias=False, name=f"{name}_dw")(x)  # fmt: skip
    x = L.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = L.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = L.Conv2D(out, 1, use_bias=False, name=f"{name}_project")(x)
    x = L.BatchNormalization(name=f"{name}_project_bn")(x)
    return L.Add(name=f"{name}_add")([inp, x]) if add else x


def mbv2_micro(
    input_shape=(24, 24, 1), classes: int = 10, name: str = "mbv2_micro", width: int = 1
):
    """The MobileNetV2 pattern at a few thousand parameters (``width`` multiplies every
    channel count): a stride-2 stem conv, inverted residual blocks (1x1 expand, ZeroPadding2D
    + stride-2 depthwise, 1x1 projection, a residual add), global average pooling and a Dense
    classifier. Large early feature maps and a tiny tail: what patch-based inference is for,
    small enough for unit tests."""
    L = keras.layers
    w = int(width)
    inp = keras.Input(tuple(input_shape), name="image")
    x = L.Conv2D(8 * w, 3, strides=2, padding="same", use_bias=False, name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    x = _inverted_residual(x, 16 * w, 8 * w, 2, "b1")
    x = _inverted_residual(x, 24 * w, 8 * w, 1, "b2", add=True)
    x = _inverted_residual(x, 24 * w, 16 * w, 2, "b3")
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(classes, name="logits")(x), name=name)


def reference_model(input_shape, classes: int):
    """The reference model for a task: :func:`small_cnn` for images (H, W, C),
    :func:`imu_cnn` for windows (samples, channels)."""
    input_shape = tuple(input_shape)
    if len(input_shape) == 3:
        return small_cnn(input_shape, classes)
    if len(input_shape) == 2:
        return imu_cnn(input_shape[0], input_shape[1], classes)
    raise ValueError(
        f"No reference model for inputs of shape {input_shape}: images are (H, W, C) and "
        "sensor windows (samples, channels)."
    )


def compile_classifier(model, learning_rate: float = 1e-3):
    """Adam + sparse categorical cross-entropy on logits + accuracy."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def mobilenet_v2(input_shape=(96, 96, 1), alpha: float = 0.35, classes: int = 10):
    """Keras' MobileNetV2 (random init, logits out), BatchNormalization momentum 0.9."""

    m = keras.applications.MobileNetV2(
        alpha=alpha,
        input_shape=tuple(input_shape),
        weights=None,
        classes=classes,
        classifier_activation=None,
    )
    for layer in m.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return m
