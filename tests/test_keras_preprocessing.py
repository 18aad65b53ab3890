"""Keras' preprocessing and augmentation layers (issue 22 §5), as the keras.io tutorials put them before a model:
RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomContrast, RandomBrightness (the identity at
inference, with a note), Rescaling, Normalization (adapted: mean, variance and count are non-trainable weights),
Resizing and CenterCrop (their inference arithmetic and shapes).

Oracle: Keras 3 on the torch backend — each layer's output shape and ``count_params()``, the model's trainable /
non-trainable split, and the output of ``model(x, training=False)`` against layercalc's executor on the weights of
the saved ``.keras`` file.
"""

import numpy as np
import pytest
from oracle_helpers import keras_on_torch
from test_import_keras import check_against_keras

import layercalc
from layercalc import LayerCalcError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def keras():
    return keras_on_torch()


def augmented_cnn(keras, adapt_on=None):
    """keras.io's image classification from scratch, small: augmentation, rescaling, normalization, then a CNN."""
    L = keras.layers
    normalization = L.Normalization()
    model = keras.Sequential([
        keras.Input((20, 24, 3)),
        L.RandomFlip("horizontal"), L.RandomRotation(0.1), L.RandomZoom(0.2, 0.1), L.RandomTranslation(0.1, 0.2),
        L.RandomContrast(0.3), L.RandomBrightness(0.2),
        L.Rescaling(1.0 / 255, offset=-0.5),
        normalization,
        L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(), L.Dropout(0.5),
        L.Dense(5, activation="softmax")], name="augmented_cnn")
    if adapt_on is not None:
        normalization.adapt(adapt_on)
    return model


def resized_cnn(keras):
    L = keras.layers
    x0 = keras.Input((18, 22, 3))
    x = L.Resizing(12, 16)(x0)                            # down-sampling: bilinear, half-pixel centres
    x = L.CenterCrop(10, 12)(x)
    y = L.Resizing(24, 27, interpolation="nearest")(x)    # up-sampling, nearest
    y = L.Normalization(axis=None, mean=0.25, variance=4.0)(y)
    y = L.Conv2D(3, 3, strides=2)(y)
    z = L.Normalization(mean=[0.1, -0.2, 0.3], variance=[1.0, 2.0, 0.5], invert=True)(x)
    z = L.Conv2D(3, 3, strides=1)(z)
    z = L.CenterCrop(6, 8)(z)
    z = L.Resizing(11, 12)(z)
    return keras.Model(x0, [y, z], name="resized_cnn")


@pytest.fixture(scope="module")
def saved(keras, tmp_path_factory):
    folder = tmp_path_factory.mktemp("preprocessing")
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, size=(16, 20, 24, 3)).astype("float32")
    out = {}
    for name, model in (("augmented_cnn", augmented_cnn(keras, adapt_on=images)), ("resized_cnn", resized_cnn(keras))):
        path = folder / f"{name}.keras"
        model.save(path)
        out[name] = (model, path)
    return out


@pytest.mark.parametrize("name", ["augmented_cnn", "resized_cnn"])
def test_shapes_and_params_agree_with_keras(name, keras, saved):
    model, path = saved[name]
    report = layercalc.load(path).analyze()
    check_against_keras(report, model, keras)


def test_normalization_weights_are_keras_non_trainable_params(keras, saved):
    model, path = saved["augmented_cnn"]
    report = layercalc.load(path).analyze()
    layer = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    entry = report.layer(layer.name)
    # mean (3) + variance (3) + count (1): Keras' count_params() and its non-trainable weights
    assert (entry.params, entry.buffers) == (0, 2 * 3 + 1) == (0, layer.count_params())
    assert sum(int(np.prod(w.shape)) for w in layer.non_trainable_weights) == 7
    # FLOPs: subtract and divide per element, √ and max per statistic: 2·20·24·3 + 2·3
    assert entry.flops == 2 * 20 * 24 * 3 + 2 * 3
    constants = layercalc.load(saved["resized_cnn"][1]).analyze()
    assert all(e.buffers == 0 for e in constants.layers if e.type == "normalization")


def test_augmentations_are_the_identity_with_a_note(saved):
    model, path = saved["augmented_cnn"]
    report = layercalc.load(path).analyze()
    augmentations = [e for e in report.layers if e.type == "augmentation"]
    assert [e.name for e in augmentations] == [layer.name for layer in model.layers[:6]]
    for entry in augmentations:
        assert (entry.params, entry.flops, entry.output_shape) == (0, 0, [1, 20, 24, 3])
        assert any("the identity at inference" in note for note in entry.notes)
    kinds = {note.split(":")[0] for e in augmentations for note in e.notes}
    assert kinds == {"RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
                     "RandomBrightness"}


@pytest.mark.parametrize("name", ["augmented_cnn", "resized_cnn"])
def test_run_equals_keras_at_inference(name, keras, saved):
    model, path = saved[name]
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, size=(2, *model.input_shape[1:])).astype("float32")
    expected = model(x, training=False)
    expected = expected if isinstance(expected, (list, tuple)) else [expected]
    got = layercalc.load(path).replace(batch=2).run(x, weights=str(path))
    got = list(got.values()) if isinstance(got, dict) else [got]
    assert len(got) == len(expected)
    for ours, theirs in zip(got, expected):
        theirs = keras.ops.convert_to_numpy(theirs)
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=2e-4, atol=2e-4)


def test_resizing_flops_and_center_crop_offsets(saved):
    report = layercalc.load(saved["resized_cnn"][1]).analyze()
    resize = next(e for e in report.layers if e.type == "resizing")
    # bilinear: per output element 2² multiplies + 3 adds = 7; 12·16·3 outputs
    assert resize.output_shape == [1, 12, 16, 3] and resize.flops == 7 * 12 * 16 * 3
    crop = next(e for e in report.layers if e.type == "center_crop")
    assert crop.output_shape == [1, 10, 12, 3] and crop.flops == 0


@pytest.mark.parametrize("layer, message", [
    ("Resizing(8, 8, crop_to_aspect_ratio=True)", "crop_to_aspect_ratio: true is not supported"),
    ("Resizing(8, 8, interpolation='bicubic')", "interpolation 'bicubic' is not supported"),
    ("Resizing(8, 8, antialias=True)", "antialias: true is not supported"),
    ("CenterCrop(30, 8)", "smaller than the crop 30×8"),
])
def test_what_is_not_supported_is_one_line(layer, message, keras, tmp_path):
    L = keras.layers  # noqa: F841  (the layer text names it)
    model = keras.Sequential([keras.Input((20, 24, 3)), eval(f"L.{layer}")])
    path = tmp_path / "model.keras"
    model.save(path)
    with pytest.raises(LayerCalcError, match=message) as info:
        layercalc.load(path).analyze()
    assert "\n" not in str(info.value)


def test_normalization_axis_none_is_one_statistic(keras, tmp_path):
    # Keras' axis=None (saved as null, not the default -1): one mean and one variance for every element, + count
    L = keras.layers
    normalization = L.Normalization(axis=None)
    model = keras.Sequential([keras.Input((4, 5)), normalization, L.Normalization(axis=(1, 2))])
    rng = np.random.default_rng(2)
    data = rng.normal(3.0, 2.0, size=(8, 4, 5)).astype("float32")
    normalization.adapt(data)
    model.layers[1].adapt(data)
    path = tmp_path / "model.keras"
    model.save(path)
    report = layercalc.load(path).analyze()
    check_against_keras(report, model, keras)
    assert [e.buffers for e in report.layers] == [1 + 1 + 1, 2 * 4 * 5 + 1]
    got = layercalc.load(path).replace(batch=8).run(data, weights=str(path))
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(data, training=False)), rtol=1e-4, atol=1e-4)


def tutorial_models(keras):
    """keras.io's pattern: ``data_augmentation = keras.Sequential([...])`` called on the input of the model, in a
    Functional model and inside a Sequential one, and a nested Sequential holding weights (an adapted
    Normalization and a conv)."""
    L = keras.layers
    rng = np.random.default_rng(3)
    augmentation = keras.Sequential([L.RandomFlip("horizontal"), L.RandomRotation(0.1)], name="data_augmentation")
    normalization = L.Normalization()
    normalization.adapt(rng.uniform(0, 255, size=(8, 12, 12, 3)).astype("float32"))
    stem = keras.Sequential([keras.Input((12, 12, 3)), normalization, L.Conv2D(4, 3, padding="same")], name="stem")
    x0 = keras.Input((12, 12, 3))
    x = augmentation(x0)
    x = stem(x)
    x = L.Conv2D(6, 3, strides=2, activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    functional = keras.Model(x0, L.Dense(3)(x), name="tutorial_functional")
    sequential = keras.Sequential([keras.Input((12, 12, 3)),
                                   keras.Sequential([L.RandomZoom(0.1), L.RandomContrast(0.1)], name="aug2"),
                                   L.Rescaling(1 / 255), L.Conv2D(2, 3), L.Flatten(), L.Dense(2)],
                                  name="tutorial_sequential")
    return {"functional": functional, "sequential": sequential}


@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_a_nested_sequential_is_read_in_place(kind, keras, tmp_path):
    model = tutorial_models(keras)[kind]
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    net = layercalc.load(path)
    report = net.analyze()
    nested = [layer for layer in model.layers if isinstance(layer, keras.Sequential)]
    inner = [layer for model_ in nested for layer in model_.layers]
    # every inner layer is a layer of the network, with Keras' shape and count; the outer ones too
    for layer in inner:
        entry = report.layer(layer.name)
        assert entry.params + entry.buffers == layer.count_params(), layer.name
        assert tuple(entry.output_shape[1:]) == tuple(layer.output.shape[1:]), layer.name
    assert report.totals.params + report.totals.buffers == model.count_params()
    for layer in model.layers:
        if not isinstance(layer, (keras.Sequential, keras.layers.InputLayer)):
            assert tuple(report.layer(layer.name).output_shape[1:]) == tuple(layer.output.shape[1:])
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 255, size=(2, 12, 12, 3)).astype("float32")
    got = net.replace(batch=2).run(x, weights=str(path))
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4)


def test_a_nested_functional_model_is_refused_in_one_line(keras, tmp_path):
    L = keras.layers
    y0 = keras.Input((4,))
    inner = keras.Model(y0, L.Dense(2)(y0), name="inner")
    x0 = keras.Input((4,))
    model = keras.Model(x0, L.Dense(1)(inner(x0)))
    path = tmp_path / "nested.keras"
    model.save(path)
    with pytest.raises(LayerCalcError, match="a Functional model nested as a layer: not supported") as info:
        layercalc.load(path)
    assert "\n" not in str(info.value)
