"""Keras models imported (issue 14): ``model.to_json()`` and ``.keras`` files, read without Keras, agree with Keras
itself — its ``count_params()`` per layer and in total, its trainable / non-trainable split, every layer's output
shape, and (for the layer types Keras' names added) its forward pass.

Keras 3 on the torch backend is the oracle (a test extra); the importer never imports it, which one test checks
by running the import in a subprocess where ``import keras`` fails.
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from oracle_helpers import keras_on_torch

import layercalc
from layercalc import LayerCalcError
from layercalc.importers.keras import weights_from_keras

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------------------------- the models

def mnist(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
                             L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D(), L.Flatten(), L.Dropout(0.5),
                             L.Dense(10, activation="softmax")], name="mnist")


def resnet_tiny(keras):
    L = keras.layers
    x0 = keras.Input((32, 32, 3))
    x = L.ZeroPadding2D(((1, 2), (1, 2)))(x0)
    x = L.Conv2D(16, 4, strides=2, padding="valid", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    y = L.Conv2D(16, 3, padding="same")(x)
    y = L.BatchNormalization(center=False)(y)
    y = L.ReLU(max_value=6.0)(y)
    y = L.Conv2D(16, 2, padding="same", trainable=False)(y)        # even kernel: Keras pads more at the end
    x = L.Add()([x, y])
    z = L.Conv2D(8, 1, activation="sigmoid")(x)
    x = L.Concatenate()([x, z])
    x = L.MaxPooling2D(3, strides=2, padding="same")(x)
    x = L.AveragePooling2D(2, padding="same")(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10)(x)
    return keras.Model(x0, x, name="resnet_tiny")


def separable(keras):
    L = keras.layers
    x0 = keras.Input((16, 16, 4))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6")(x0)
    x = L.SeparableConv2D(8, 3, strides=2, padding="same", depth_multiplier=3)(x)
    x = L.Conv2DTranspose(6, 3, strides=2, padding="same", activation="relu")(x)
    x = L.Conv2DTranspose(4, 2, strides=3)(x)                       # Keras' 'valid': kernel narrower than stride
    x = L.UpSampling2D(2)(x)
    x = L.LayerNormalization()(x)
    x = L.GroupNormalization(groups=2)(x)
    x = L.GlobalMaxPooling2D()(x)
    x = L.Reshape((2, 2))(x)
    x = L.Permute((2, 1))(x)
    x = L.Flatten()(x)
    x = L.Dense(3, activation="gelu")(x)
    return keras.Model(x0, x, name="separable")


def text(keras):
    L = keras.layers
    x0 = keras.Input((20,))
    x = L.Embedding(100, 16)(x0)
    x = L.LSTM(12, return_sequences=True)(x)
    x = L.GRU(10, return_sequences=True)(x)
    x = L.GRU(9, reset_after=False, return_sequences=True)(x)
    x = L.SimpleRNN(8)(x)
    x = L.Dense(4, activation="tanh")(x)
    return keras.Model(x0, x, name="text")


def attention(keras):
    L = keras.layers
    x0 = keras.Input((10, 16))
    a = L.MultiHeadAttention(num_heads=4, key_dim=8)(x0, x0)
    x = L.LayerNormalization(epsilon=1e-6)(L.Add()([x0, a]))
    b = L.MultiHeadAttention(num_heads=2, key_dim=4, value_dim=6, output_shape=12)(x, x, x, use_causal_mask=True)
    x = L.Dense(16)(b)
    x = L.Conv1D(8, 3, padding="same")(x)
    x = L.MaxPooling1D(2)(x)
    x = L.UpSampling1D(2)(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(x0, x, name="attention")


MODELS = {"mnist": mnist, "resnet_tiny": resnet_tiny, "separable": separable, "text": text, "attention": attention}


def keras_split(model, keras) -> tuple[int, int]:
    size = lambda weights: sum(int(keras.ops.size(w)) for w in weights)  # noqa: E731
    return size(model.trainable_weights), size(model.non_trainable_weights)


def check_against_keras(report, model, keras) -> None:
    """Every layer's params (+ buffers: Keras' count includes its non-trainable weights) and output shape, the
    totals and Keras' trainable / non-trainable split."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        entry = report.layer(layer.name)
        assert entry.params + entry.buffers == layer.count_params(), layer.name
        assert tuple(entry.output_shape[1:]) == tuple(layer.output.shape[1:]), layer.name
    trainable, frozen = keras_split(model, keras)
    assert report.totals.params + report.totals.buffers == model.count_params()
    assert report.keras_params is not None
    assert (report.keras_params.total, report.keras_params.trainable, report.keras_params.non_trainable) == (
        model.count_params(), trainable, frozen)


@pytest.fixture(scope="module")
def keras():
    return keras_on_torch()


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_json_and_keras_file_agree_with_keras(kind, keras, tmp_path):
    model = MODELS[kind](keras)
    json_path = tmp_path / f"{kind}.json"
    json_path.write_text(model.to_json())
    keras_path = tmp_path / f"{kind}.keras"
    model.save(keras_path)
    from_json = layercalc.load(json_path).analyze()
    from_file = layercalc.load(keras_path).analyze()
    check_against_keras(from_json, model, keras)
    assert from_file.model_dump() == from_json.model_dump()
    assert from_json.layout == "NHWC"


def test_frozen_layer_and_batchnorm_split(keras):
    # resnet_tiny: BatchNormalization's moving statistics (2·16 twice) and the frozen 2×2 conv (2·2·16·16 + 16)
    model = resnet_tiny(keras)
    report = layercalc.load(json.loads(model.to_json())).analyze()
    # the frozen conv's weights stay parameters (as PyTorch counts a requires_grad=False weight); Keras' totals
    # count them non-trainable beside the moving statistics
    assert report.totals.buffers == 2 * 16 + 2 * 16
    assert report.keras_params.non_trainable == 2 * 16 + 2 * 16 + (2 * 2 * 16 * 16 + 16)
    frozen = [layer.name for layer in model.layers if not layer.trainable]
    assert len(frozen) == 1 and any("trainable: false" in note for note in report.layer(frozen[0]).notes)
    assert report.layer(frozen[0]).params == 2 * 2 * 16 * 16 + 16 and not report.layer(frozen[0]).trainable


@pytest.mark.parametrize("build", ["MobileNetV2", "ResNet50"])
def test_keras_applications(build, keras, tmp_path):
    model = getattr(keras.applications, build)(weights=None)
    path = tmp_path / "model.keras"
    model.save(path)
    report = layercalc.load(path).analyze()
    check_against_keras(report, model, keras)
    assert report.layers[-1].output_shape == [1, 1000]


# ------------------------------------------------------------------------------------------ forward passes

def keras_weights(model, keras) -> dict:
    """Keras' weights in layercalc's (PyTorch's) layouts, by layer name: the product's conversion (kept under this
    name for the test modules that import it)."""
    return weights_from_keras(model)


def forward_model(keras):
    L = keras.layers
    x0 = keras.Input((9, 9, 3))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, strides=2, padding="same", activation="relu6")(x0)
    x = L.BatchNormalization(center=False)(x)
    x = L.SeparableConv2D(5, 2, padding="same", activation="hard_silu")(x)
    x = L.ReLU(negative_slope=0.1, max_value=1.5)(x)
    x = L.Conv2D(4, 3, activation="leaky_relu")(x)
    x = L.Flatten()(x)
    x = L.Dense(6, activation="softmax")(x)
    return keras.Model(x0, x)


def test_forward_pass_equals_keras(keras):
    model = forward_model(keras)
    rng = np.random.default_rng(0)
    for layer in model.layers:                    # moving statistics away from 0 and 1, so they matter
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2, size=layer.moving_variance.shape).astype("float32"))
    x = rng.normal(size=(2, 9, 9, 3))
    expected = keras.ops.convert_to_numpy(model(x.astype("float32"), training=False)).astype(np.float64)
    net = layercalc.load(json.loads(model.to_json())).replace(batch=2, dtype="float64")
    got = net.run(x, weights=keras_weights(model, keras))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------- without Keras, the CLI, convert

def test_import_needs_no_keras(keras, tmp_path):
    model = resnet_tiny(keras)
    model.save(tmp_path / "m.keras")
    (tmp_path / "m.json").write_text(model.to_json())
    code = ("import sys, json; sys.modules['keras'] = None; sys.modules['tensorflow'] = None\n"
            "import layercalc\n"
            f"a = layercalc.load({str(tmp_path / 'm.keras')!r}).analyze()\n"
            f"b = layercalc.load({str(tmp_path / 'm.json')!r}).analyze()\n"
            "assert 'keras' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
            "k, j = a.keras_params, b.keras_params\n"
            "print(k.trainable, k.non_trainable, j.trainable, j.non_trainable)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    trainable, frozen = keras_split(model, keras)
    assert out.stdout.split() == [str(trainable), str(frozen)] * 2


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "layercalc", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})


def test_cli_summary_and_convert(keras, tmp_path):
    model = mnist(keras)
    path = tmp_path / "mnist.keras"
    model.save(path)
    out = cli("summary", str(path))
    assert out.returncode == 0, out.stderr
    trainable, frozen = keras_split(model, keras)
    assert (f"Keras: Total params {model.count_params():,} · Trainable params {trainable:,} · Non-trainable params "
            f"{frozen:,}") in out.stdout
    assert "conv2d+relu" in out.stdout
    converted = cli("convert", str(path))
    assert converted.returncode == 0, converted.stderr
    spec = tmp_path / "mnist.yaml"
    spec.write_text(converted.stdout)
    assert "type: MaxPooling2D" in converted.stdout
    assert layercalc.load(spec).analyze().model_dump() == layercalc.load(path).analyze().model_dump()


def test_hand_written_keras_spec_equals_import(keras):
    model = mnist(keras)
    imported = layercalc.load(json.loads(model.to_json())).analyze()
    layers = [{"type": "Conv2D", "filters": 32, "kernel_size": 3, "activation": "relu"},
              {"type": "MaxPooling2D", "pool_size": 2},
              {"type": "Conv2D", "filters": 64, "kernel_size": [3, 3], "activation": "relu"},
              {"type": "MaxPooling2D", "pool_size": [2, 2], "strides": 2, "padding": "valid"},
              {"type": "Flatten"},
              {"type": "Dropout", "rate": 0.5},
              {"type": "Dense", "units": 10, "activation": "softmax"}]
    names = [layer.name for layer in model.layers]          # Keras' names (numbered per session)
    assert [entry.name for entry in imported.layers] == names
    written = layercalc.load({"name": "mnist", "input": [28, 28, 1], "layout": "channels_last",
                              "layers": [{"name": name, **layer} for name, layer in zip(names, layers)]}).analyze()
    assert written.model_dump() == imported.model_dump()


# ------------------------------------------------------------------------------------------------ errors

def test_unknown_class_is_an_error(keras):
    data = json.loads(mnist(keras).to_json())
    data["config"]["layers"][2]["class_name"] = "FancyPooling2D"
    with pytest.raises(LayerCalcError, match=r"layer 2 'max_pooling2d\w*' \(Keras FancyPooling2D\): Keras layer class "
                                             r"'FancyPooling2D' has no layercalc type"):
        layercalc.load(data)


@pytest.mark.parametrize("layer, key, value, message", [
    (1, "activation", "elu", r"field 'activation': got 'elu': unknown or unsupported activation"),
    (1, "unheard_of", 3, r"config 'unheard_of' = 3 is not understood"),
    (7, "lora_rank", 4, r"layer 7 'dense\w*' \(Keras Dense\): config 'lora_rank' is 4; supported: null"),
    (1, "padding", "causal", r"field 'padding'"),
])
def test_unsupported_config_value_is_an_error(keras, layer, key, value, message):
    data = json.loads(mnist(keras).to_json())
    data["config"]["layers"][layer]["config"][key] = value
    with pytest.raises(LayerCalcError, match=message):
        layercalc.load(data).analyze()


def test_recurrent_activation_other_than_keras_default_is_refused(keras):
    data = json.loads(text(keras).to_json())
    data["config"]["layers"][2]["config"]["recurrent_activation"] = "hard_sigmoid"
    with pytest.raises(LayerCalcError, match=r"field 'recurrent_activation': got 'hard_sigmoid'"):
        layercalc.load(data)


def test_two_inputs_are_refused(keras):
    L = keras.layers
    a, b = keras.Input((4,)), keras.Input((4,))
    model = keras.Model([a, b], L.Add()([a, b]))
    with pytest.raises(LayerCalcError, match="layercalc networks have one input"):
        layercalc.load(json.loads(model.to_json()))


def test_zip_without_config_json(tmp_path):
    path = tmp_path / "x.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", "{}")
    with pytest.raises(LayerCalcError, match=r"a zip archive without config.json \(metadata.json\): not a Keras "
                                             r"\.keras file"):
        layercalc.load(path)


def test_oversized_config_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "bomb.keras"
    # 20 MiB of spaces: compresses to a few KiB, declares its real size
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "{" + " " * (20 * 2**20) + "}")
    assert path.stat().st_size < 2**20
    with pytest.raises(LayerCalcError, match=r"config.json declares 20,971,522 bytes uncompressed, more than the 16 "
                                             r"MiB"):
        layercalc.load(path)


def test_lying_declared_size_reads_no_more_than_declared(tmp_path):
    # a member whose header claims 10 bytes but holds far more: zipfile stops at the declared size (CRC error)
    path = tmp_path / "liar.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}) + " " * 10**6)
    raw = bytearray(path.read_bytes())
    info = zipfile.ZipFile(path).getinfo("config.json")
    for offset in (raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")):       # local header and central directory
        field = offset + (22 if raw[offset + 3] == 4 else 24)               # uncompressed size
        raw[field:field + 4] = (10).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    assert info.file_size > 10
    with pytest.raises(LayerCalcError):
        layercalc.load(path)


def test_keras_names_in_the_family_modules():
    from layercalc.layers import LAYER_TYPES
    from layercalc.layers.base import KERAS_CLASSES
    expected = {"Dense": "linear", "Conv2D": "conv2d", "Conv2DTranspose": "conv_transpose2d",
                "DepthwiseConv2D": "depthwise_conv2d", "SeparableConv2D": "separable_conv2d",
                "MaxPooling2D": "maxpool2d", "AveragePooling1D": "avgpool1d", "GlobalAveragePooling2D": "global_avgpool",
                "GlobalMaxPooling3D": "global_maxpool", "BatchNormalization": "batchnorm",
                "LayerNormalization": "layernorm", "GroupNormalization": "groupnorm", "ZeroPadding2D": "zero_pad",
                "UpSampling2D": "upsampling2d", "Flatten": "flatten", "Reshape": "reshape", "Permute": "permute",
                "Dropout": "dropout", "Activation": "activation", "ReLU": "relu", "Softmax": "softmax",
                "Add": "add", "Concatenate": "concat", "Multiply": "mul", "Embedding": "embedding", "LSTM": "lstm",
                "GRU": "gru", "SimpleRNN": "rnn", "MultiHeadAttention": "multi_head_attention"}
    for keras_name, type_name in expected.items():
        assert KERAS_CLASSES[keras_name] is LAYER_TYPES[type_name], keras_name
