"""Keras weights in layercalc (issue: "weights exported from the framework load into verify"): a Keras 3 model saved
as a ``.keras`` file (or its ``.weights.h5``) runs in layercalc's NumPy executor with its own weights and gives
Keras' outputs — through :func:`layercalc.importers.keras.weights_from_keras` and through ``layercalc run/verify
--weights``.

Keras 3 on the torch backend is the oracle: ``model.predict`` on the same input. Every model's weights are first
drawn at random (moving statistics away from 0 and 1, biases non-zero), so a parameter mapped to the wrong place
or left at its initial value changes the output.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from oracle_helpers import keras_on_torch

import layercalc
from layercalc import LayerCalcError
from layercalc.importers.keras import weights_from_keras

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def keras():
    return keras_on_torch()


# ----------------------------------------------------------------------------------------------- the models

def convnet(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(8, 3, activation="relu"), L.BatchNormalization(),
                             L.MaxPooling2D(), L.Conv2D(16, (3, 3), activation="relu"), L.BatchNormalization(),
                             L.MaxPooling2D(), L.Flatten(), L.Dropout(0.5), L.Dense(10, activation="softmax")],
                            name="mnist")


def depthwise(keras):
    L = keras.layers
    x0 = keras.Input((9, 9, 4))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6")(x0)
    x = L.SeparableConv2D(6, 3, depth_multiplier=3, strides=2)(x)
    x = L.SeparableConv2D(4, 2, use_bias=False)(x)
    x = L.Conv2D(6, 1, groups=2)(x)
    x = L.DepthwiseConv2D(2, use_bias=False)(x)
    return keras.Model(x0, x)


def conv_transpose(keras):
    L = keras.layers
    x0 = keras.Input((5, 6, 3))
    x = L.Conv2DTranspose(4, 3, strides=2)(x0)
    x = L.Conv2DTranspose(2, (2, 3), strides=2, padding="same", use_bias=False)(x)
    return keras.Model(x0, x)


def lstm(keras):
    L = keras.layers
    x0 = keras.Input((7,))
    x = L.Embedding(20, 6)(x0)
    x = L.LSTM(5, return_sequences=True)(x)
    x = L.LSTM(4, use_bias=False)(x)
    return keras.Model(x0, L.Dense(3)(x))


def gru(reset_after):
    def build(keras):
        L = keras.layers
        x0 = keras.Input((6,))
        x = L.Embedding(12, 5)(x0)
        x = L.GRU(4, reset_after=reset_after, return_sequences=True)(x)
        return keras.Model(x0, L.GRU(3, reset_after=reset_after)(x))
    return build


def simple_rnn(keras):
    L = keras.layers
    x0 = keras.Input((6, 3))
    x = L.SimpleRNN(4, return_sequences=True)(x0)
    return keras.Model(x0, L.SimpleRNN(5, activation="relu")(x))


def attention(use_bias):
    def build(keras):
        L = keras.layers
        x0 = keras.Input((5, 8))
        x = L.MultiHeadAttention(2, 4, use_bias=use_bias)(x0, x0)            # torch's shapes, Keras' 3 kernels
        x = L.LayerNormalization()(x)
        other = L.Dense(6)(x0)
        # key_dim·heads ≠ E, value_dim, output_shape and a key/value of other features: separate projections
        x = L.MultiHeadAttention(3, 5, value_dim=2, output_shape=7, use_bias=use_bias)(x, other)
        x = L.LayerNormalization(center=False)(x)
        return keras.Model(x0, x)
    return build


MODELS = {"convnet": convnet, "depthwise": depthwise, "conv_transpose": conv_transpose, "lstm": lstm,
          "gru_reset_after": gru(True), "gru_reset_before": gru(False), "simple_rnn": simple_rnn,
          "attention": attention(True), "attention_no_bias": attention(False)}


def randomize(model, keras, seed=0):
    """Every weight drawn afresh (Keras' initial biases are zeros, its moving statistics 0 and 1)."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if weight.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 2, size=shape)
        else:
            value = rng.normal(0, 0.5, size=shape)
        weight.assign(value.astype("float32"))
    return model


def sample(model, seed=1, batch=2):
    """An input for ``model``: token ids below the vocabulary for an Embedding, normal values otherwise."""
    rng = np.random.default_rng(seed)
    shape = (batch, *model.inputs[0].shape[1:])
    first = model.layers[1] if type(model.layers[0]).__name__ == "InputLayer" else model.layers[0]
    if type(first).__name__ == "Embedding":
        return rng.integers(0, first.input_dim, size=shape).astype("float32")
    return rng.normal(size=shape).astype("float32")


def assert_close(got, expected):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(expected).max())))


@pytest.fixture(scope="module")
def saved(keras, tmp_path_factory):
    """Each model randomized and saved as a .keras file, with an input and Keras' output on it."""
    folder = tmp_path_factory.mktemp("keras_weights")
    out = {}
    for kind, build in MODELS.items():
        model = randomize(build(keras), keras)
        path = folder / f"{kind}.keras"
        model.save(path)
        x = sample(model)
        out[kind] = (model, path, x, model.predict(x, verbose=0))
    return out


# ------------------------------------------------------------------------------------------ the forward pass

@pytest.mark.parametrize("kind", sorted(MODELS))
def test_run_with_keras_weights_equals_keras(kind, saved):
    model, path, x, expected = saved[kind]
    weights = weights_from_keras(path)
    assert set(weights) == {layer.name for layer in model.layers if layer.weights}
    got = layercalc.load(path).run(x, weights=weights)
    assert got.shape == expected.shape
    assert_close(got, expected)


def test_every_keras_variable_is_used(saved):
    """Each layer's parameters hold as many numbers as Keras saved for it (nothing dropped, nothing made up)."""
    for model, path, _, _ in saved.values():
        weights = weights_from_keras(path)
        for layer in model.layers:
            if layer.weights:
                assert sum(np.size(a) for a in weights[layer.name].values()) == layer.count_params(), layer.name


def test_mapping_is_not_the_identity(saved):
    """A kernel transposed the wrong way round, or GRU gates left in Keras' order, would change the output: the
    oracle comparison above is sensitive to them (checked here by breaking one on purpose)."""
    model, path, x, expected = saved["gru_reset_after"]
    weights = weights_from_keras(path)
    name = next(layer.name for layer in model.layers if type(layer).__name__ == "GRU")
    h = weights[name]["weight_ih_l0"].shape[0] // 3
    swapped = {**weights, name: {**weights[name], "weight_ih_l0": np.concatenate(
        [weights[name]["weight_ih_l0"][h:2 * h], weights[name]["weight_ih_l0"][:h], weights[name]["weight_ih_l0"][2 * h:]])}}
    got = layercalc.load(path).run(x, weights=swapped)
    assert np.abs(got - expected).max() > 1e-3


def test_live_model_and_weights_h5(keras, saved, tmp_path):
    model, path, x, expected = saved["convnet"]
    from_file = weights_from_keras(path)
    from_model = weights_from_keras(model)
    h5 = tmp_path / "convnet.weights.h5"
    model.save_weights(h5)
    from_h5 = weights_from_keras(h5, network=path)
    for other in (from_model, from_h5):
        assert other.keys() == from_file.keys()
        for name, params in from_file.items():
            assert other[name].keys() == params.keys()
            for param, array in params.items():
                np.testing.assert_array_equal(other[name][param], array)
    # the network may be given as parsed Keras JSON too, and the path may go to run() directly
    net = layercalc.load(json.loads(model.to_json()))
    assert_close(net.run(x, weights=str(h5)), expected)
    assert_close(net.run(x, weights=path), expected)


def test_frozen_layer_and_trained_moving_statistics(keras, tmp_path):
    """One training step moves BatchNormalization's moving mean and variance (and the trainable weights); a frozen
    layer's weights stay where they were; the order Keras saves them in (trainable first) is followed."""
    L = keras.layers
    model = keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(4, 3, name="frozen_conv"), L.BatchNormalization(name="bn"),
                              L.Conv2D(3, 3, name="conv"), L.BatchNormalization(scale=False, name="bn_shift"),
                              L.GlobalAveragePooling2D(), L.Dense(2)])
    randomize(model, keras, seed=3)
    model.get_layer("frozen_conv").trainable = False
    model.get_layer("bn_shift").trainable = False               # frozen BN: β and the moving statistics kept
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    rng = np.random.default_rng(4)
    before = keras.ops.convert_to_numpy(model.get_layer("bn").moving_mean.value).copy()
    model.fit(rng.normal(2, 3, size=(16, 8, 8, 2)).astype("float32"), rng.normal(size=(16, 2)).astype("float32"),
              epochs=1, batch_size=16, verbose=0)
    after = keras.ops.convert_to_numpy(model.get_layer("bn").moving_mean.value)
    assert np.abs(after - before).max() > 1e-3                  # the step moved the statistics
    path = tmp_path / "trained.keras"
    model.save(path)
    x = rng.normal(size=(3, 8, 8, 2)).astype("float32")
    weights = weights_from_keras(path)
    np.testing.assert_array_equal(weights["bn"]["running_mean"], after)
    assert set(weights["bn_shift"]) == {"bias", "running_mean", "running_var"}
    assert_close(layercalc.load(path).run(x, weights=weights), model.predict(x, verbose=0))


# ------------------------------------------------------------------------------------------------- the CLI

def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "layercalc", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("kind", ["convnet", "lstm", "attention"])
def test_cli_run_and_verify(kind, saved, tmp_path):
    model, path, x, expected = saved[kind]
    np.save(tmp_path / "x.npy", x)
    out = cli("run", str(path), "--weights", str(path), "--input", str(tmp_path / "x.npy"), "--output",
              str(tmp_path / "y.npy"))
    assert out.returncode == 0, out.stderr
    assert f"weights: from {path} for all" in out.stdout + out.stderr
    assert_close(np.load(tmp_path / "y.npy"), expected)
    checked = cli("verify", str(path), "--weights", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"weights: from {path} for all" in checked.stdout + checked.stderr


def test_cli_weights_h5(saved, tmp_path):
    model, path, x, expected = saved["depthwise"]
    h5 = tmp_path / "m.weights.h5"
    model.save_weights(h5)
    np.save(tmp_path / "x.npy", x)
    out = cli("run", str(path), "-w", str(h5), "-i", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"))
    assert out.returncode == 0, out.stderr
    assert_close(np.load(tmp_path / "y.npy"), expected)


# ------------------------------------------------------------------------------------------------- errors

def test_without_h5py_names_the_extra(saved, tmp_path):
    _, path, _, _ = saved["convnet"]
    code = ("import sys; sys.modules['h5py'] = None\n"
            "import layercalc\n"
            "from layercalc.importers.keras import weights_from_keras\n"
            "try:\n"
            f"    weights_from_keras({str(path)!r})\n"
            "except layercalc.LayerCalcError as exc:\n"
            "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("reading Keras weights (HDF5: model.weights.h5, .weights.h5) needs h5py: pip "
                                  "install 'layercalc[keras]'")
    cli_out = subprocess.run([sys.executable, "-c", "import sys; sys.modules['h5py'] = None\n"
                              "from layercalc.cli import main; sys.argv = ['layercalc'] + sys.argv[1:]; main()",
                              "verify", str(path), "--weights", str(path)], capture_output=True, text=True)
    assert cli_out.returncode == 2
    assert "pip install 'layercalc[keras]'" in cli_out.stderr


def test_weights_of_another_model(keras, saved, tmp_path):
    L = keras.layers
    _, path, x, _ = saved["convnet"]
    # other layer names: which one is named
    other = keras.Sequential([keras.Input((28, 28, 1)), L.Flatten(), L.Dense(10, name="head")])
    other.save(tmp_path / "other.keras")
    with pytest.raises(LayerCalcError, match=r"other\.keras: holds the weights of a Keras layer 'head'; the network "
                                             r"has no layer of that name") as caught:
        layercalc.load(path).run(x, weights=tmp_path / "other.keras")
    assert "\n" not in str(caught.value)
    # the same names, other sizes: the layer, the parameter and both shapes are named
    wider = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(8, 3, activation="relu"), L.BatchNormalization(),
                              L.MaxPooling2D(), L.Conv2D(12, (3, 3), activation="relu"), L.BatchNormalization(),
                              L.MaxPooling2D(), L.Flatten(), L.Dropout(0.5), L.Dense(10, activation="softmax")])
    for own, theirs in zip(saved["convnet"][0].layers, wider.layers):
        theirs.name = own.name                           # Keras numbers names per session: make them the same
    wider.save(tmp_path / "wider.keras")
    conv = saved["convnet"][0].layers[3].name
    with pytest.raises(LayerCalcError, match=rf"wider\.keras: weights for layers\[3\] '{conv}' \(conv2d\): "
                                             rf"'{conv}\.weight' has shape \[12, 8, 3, 3\], expected \[16, 8, 3, 3\]") \
            as caught:
        weights_from_keras(tmp_path / "wider.keras", network=path)
    assert "\n" not in str(caught.value)
    out = cli("verify", str(path), "--weights", str(tmp_path / "wider.keras"))
    assert out.returncode == 2 and "has shape [12, 8, 3, 3], expected [16, 8, 3, 3]" in out.stderr


def test_use_bias_that_differs_is_named(keras, tmp_path):
    L = keras.layers
    with_bias = keras.Sequential([keras.Input((4,)), L.Dense(3, name="fc")])
    with_bias.save(tmp_path / "bias.keras")
    spec = {"input": [4], "layout": "channels_last", "layers": [{"name": "fc", "type": "Dense", "units": 3,
                                                                  "use_bias": False}]}
    with pytest.raises(LayerCalcError, match=r"weights for layers\[0\] 'fc' \(linear\): Keras Dense saved 2 "
                                             r"variables \[4, 3\], \[3\]; this layer takes kernel"):
        weights_from_keras(tmp_path / "bias.keras", network=spec)


def test_h5_needs_a_network_and_other_files_are_refused(saved, tmp_path):
    model, path, _, _ = saved["simple_rnn"]
    h5 = tmp_path / "m.weights.h5"
    model.save_weights(h5)
    with pytest.raises(LayerCalcError, match=r"m\.weights\.h5: a \.weights\.h5 file holds no model configuration"):
        weights_from_keras(h5)
    (tmp_path / "w.npz").write_bytes(b"PK\x05\x06" + bytes(18))          # an empty zip: no model.weights.h5
    with pytest.raises(LayerCalcError, match=r"w\.npz: not a Keras weights file"):
        weights_from_keras(tmp_path / "w.npz")
    with pytest.raises(LayerCalcError, match=r"expected a keras\.Model or the path"):
        weights_from_keras(42)
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(h5.read_bytes()[:200])
    with pytest.raises(LayerCalcError, match=r"broken\.weights\.h5: cannot read Keras weights"):
        weights_from_keras(broken, network=path)


def test_a_type_without_a_mapping_refuses_the_variables(keras, tmp_path):
    """Keras weights given to a layer whose type has no Keras mapping (an RMSNorm where the file has a
    LayerNormalization): refused, naming the layer and what was saved — never run on random weights instead."""
    L = keras.layers
    model = keras.Sequential([keras.Input((3, 4)), L.LayerNormalization(name="ln")])
    model.save(tmp_path / "ln.keras")
    spec = {"input": [3, 4], "layers": [{"name": "ln", "type": "rmsnorm"}]}
    with pytest.raises(LayerCalcError, match=r"ln\.keras: weights for layers\[0\] 'ln' \(rmsnorm\): Keras layer saved "
                                             r"2 variables \[4\], \[4\], and layercalc's 'rmsnorm' type has no mapping "
                                             r"of Keras weights"):
        weights_from_keras(tmp_path / "ln.keras", network=spec)


def test_weights_without_layer_names_are_refused(saved, tmp_path):
    """Keras 3 stores each layer under a group named after its class (dense, dense_1, …) and the layer's own name as
    an attribute: without it the weights cannot be placed, and the file is refused rather than guessed at."""
    import h5py

    model, path, _, _ = saved["convnet"]
    h5 = tmp_path / "nameless.weights.h5"
    model.save_weights(h5)
    with h5py.File(h5, "r+") as store:
        del store["layers/dense/vars"].attrs["name"]
    with pytest.raises(LayerCalcError, match=r"layers/dense has no layer name"):
        weights_from_keras(h5, network=path)


def test_data_outside_the_file_is_refused(saved, tmp_path):
    """HDF5 can point a dataset at another file's bytes (external storage, external links): a crafted weights file
    would read files of this machine into the run's weights. Keras writes none of it, so it is refused."""
    import h5py

    model, path, _, _ = saved["convnet"]
    secret = tmp_path / "secret.bin"
    secret.write_bytes(bytes(range(40)))
    stored = tmp_path / "external.weights.h5"
    model.save_weights(stored)
    with h5py.File(stored, "r+") as store:
        del store["layers/dense/vars/1"]                                   # the bias: 10 float32, 40 bytes
        store["layers/dense/vars"].create_dataset("1", shape=(10,), dtype="float32", external=[(str(secret), 0, 40)])
    with pytest.raises(LayerCalcError, match=r"/layers/dense/vars/1 keeps its data outside the file: refused"):
        weights_from_keras(stored, network=path)
    linked = tmp_path / "linked.weights.h5"
    model.save_weights(linked)
    with h5py.File(linked, "r+") as store:
        del store["layers/dense/vars/0"]
        store["layers/dense/vars/0"] = h5py.ExternalLink(str(stored), "/layers/dense/vars/0")
    with pytest.raises(LayerCalcError, match=r"/layers/dense/vars/0 is a link \(ExternalLink\): refused"):
        weights_from_keras(linked, network=path)
