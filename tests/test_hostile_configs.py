"""Hostile and malformed model files (issue 19 §2): Hugging Face configs and Keras files whose values have the wrong
type, are nested too deeply, declare huge arrays or use archive features layercalc cannot read. Each is either read
as what it says or refused with one line naming the key (or the file's member), exit status 2 on the command line —
never a traceback, an "internal error" (exit 1), a silently rounded number, or gigabytes read before a size check.

The corpora mutate valid configs: every key of GPT-2, BERT, Llama-3.2, Qwen2, Mistral and ViT configs (their
published files, 2 layers) and every value of Keras model JSONs made by Keras itself, set in turn to a list, a
mapping, a string, a negative number, 2**70, NaN, infinity, a fraction, ``true`` and null.
"""

from __future__ import annotations

import copy
import json
import math
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from test_import_huggingface import (
    BERT_CONFIG,
    GPT2_CONFIG,
    LLAMA32_CONFIG,
    MISTRAL_CONFIG,
    QWEN2_CONFIG,
    VIT_CONFIG,
)

import layercalc
from layercalc import LayerCalcError
from layercalc.blocks import MAX_LAYERS

ROOT = Path(__file__).resolve().parent.parent

#: the hostile values each key or value is set to in turn
HOSTILE = {"a list": [1, 2], "a mapping": {"a": 1}, "a string": "12", "a negative number": -3, "2**70": 2 ** 70,
           "NaN": math.nan, "infinity": math.inf, "a fraction": 2.5, "true": True, "zero": 0, "null": None,
           "2**53 as a float": 9007199254740993.0}


def cli(*args: object, timeout: float = 60) -> subprocess.CompletedProcess:
    """The command line in a subprocess, as a user runs it (exit status, stderr)."""
    return subprocess.run([sys.executable, "-m", "layercalc", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def assert_refused_in_one_line(done: subprocess.CompletedProcess, *parts: str) -> str:
    """Exit status 2, one line on stderr that is not an internal error and names ``parts``."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, (done.returncode, done.stderr)
    assert "internal error" not in lines[0] and "Traceback" not in done.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------------------ Hugging Face configs

BASES = {"gpt2": dict(GPT2_CONFIG, n_layer=2), "bert": dict(BERT_CONFIG, num_hidden_layers=2),
         "llama": dict(LLAMA32_CONFIG, num_hidden_layers=2), "qwen2": dict(QWEN2_CONFIG, num_hidden_layers=2),
         "mistral": dict(MISTRAL_CONFIG, num_hidden_layers=2),
         "vit": dict(VIT_CONFIG, num_hidden_layers=2, id2label={"0": "cat", "1": "dog"})}

#: keys the families read that the published configs leave out
OPTIONAL_KEYS = ["head_dim", "rope_parameters", "rope_scaling", "partial_rotary_factor", "num_labels", "id2label",
                 "n_inner", "pooler_output_size", "pooler_act", "qkv_bias", "is_decoder", "sliding_window",
                 "use_sliding_window", "architectures", "model_type", "_name_or_path", "image_size", "patch_size",
                 "num_channels", "attention_bias", "mlp_bias", "token_classification_bias", "rope_theta",
                 "add_cross_attention", "position_embedding_type", "tie_word_embeddings"]


@pytest.mark.parametrize("family", list(BASES))
def test_every_key_set_to_a_hostile_value_is_read_or_refused_by_name(family):
    base = BASES[family]
    layercalc.load(base).analyze()                                   # the unmutated config is read
    refused = 0
    for key in sorted(set(base) | set(OPTIONAL_KEYS)):
        for kind, value in HOSTILE.items():
            started = time.perf_counter()
            try:
                layercalc.load({**base, key: value}).analyze()      # a key the family does not read, or a value
            except LayerCalcError as exc:                             # it takes: read as what it says
                refused += 1
                message = str(exc)
                assert "\n" not in message and repr(key) in message, (key, kind, message)
            assert time.perf_counter() - started < 5, (key, kind)
    assert refused > 50


@pytest.mark.parametrize(("key", "value", "why"), [
    ("vocab_size", 9007199254740993.0, "too large to be an exact whole number"),    # reads as 2**53
    ("vocab_size", 2 ** 53 * 1.0, "too large to be an exact whole number"),
    ("n_layer", 2.5, "not a whole number"),
    ("n_layer", True, "a boolean"),
    ("n_embd", -64, "≥ 1"),
    ("n_head", 2 ** 70, "larger than any size a framework can hold"),
    ("n_positions", math.nan, "not a whole number"),
    ("n_inner", [64], "a list"),
    ("vocab_size", {"size": 5}, "a mapping"),
    ("layer_norm_epsilon", 10 ** 400, "a positive number"),                        # no float holds it
])
def test_integer_keys_are_never_rounded_nor_coerced(key, value, why):
    with pytest.raises(LayerCalcError) as caught:
        layercalc.load({**BASES["gpt2"], key: value})
    assert f"config key {key!r}" in str(caught.value) and why in str(caught.value)


def test_a_float_that_is_a_whole_number_below_2_to_the_53_is_that_number():
    report = layercalc.load({**BASES["gpt2"], "vocab_size": 50257.0}).analyze()
    assert report.totals.params == layercalc.load(BASES["gpt2"]).analyze().totals.params


def test_exact_float_text_in_a_file_is_refused_on_the_command_line(tmp_path):
    path = tmp_path / "config.json"
    text = json.dumps(BASES["gpt2"]).replace('"vocab_size": 50257', '"vocab_size": 9007199254740993.0')
    path.write_text(text, encoding="utf-8")
    assert_refused_in_one_line(cli("summary", path), "'vocab_size'", "exact whole number")


@pytest.mark.parametrize(("config", "parts"), [
    ({"model_type": ["gpt2"], "n_layer": 2}, ["'model_type'", "['gpt2']", "expected a string"]),
    ({"model_type": {"name": "gpt2"}, "n_layer": 2}, ["'model_type'", "{'name': 'gpt2'}", "expected a string"]),
    ({"architectures": "GPT2LMHeadModel", "model_type": "gpt2"}, ["'architectures'", "a list of class names"]),
    ({"architectures": ["GPT2LMHeadModel", 7], "model_type": "gpt2"}, ["'architectures'", "a list of class names"]),
    ({"model_type": "gpt2", "n_layer": "2"}, ["'n_layer'", "a string"]),
])
def test_wrong_types_of_model_type_and_architectures_exit_2_naming_the_key(tmp_path, config, parts):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    assert_refused_in_one_line(cli("summary", path), *parts)


def test_a_config_nested_too_deeply_is_refused_before_a_value_is_shown():
    deep: list = []
    for _ in range(5000):                       # beyond Python's recursion limit for repr
        deep = [deep]
    with pytest.raises(LayerCalcError, match=r"'n_layer'.*nested more than 100 levels"):
        layercalc.load({**BASES["gpt2"], "n_layer": deep})


@pytest.mark.parametrize("family", ["gpt2", "bert", "llama", "vit"])
def test_a_layer_count_beyond_the_cap_is_refused_before_any_block_is_copied(family):
    key = "n_layer" if family == "gpt2" else "num_hidden_layers"
    started = time.perf_counter()
    with pytest.raises(LayerCalcError, match=rf"config key '{key}': got 4611686018427387904: .* blocks of \d+ layers "
                                             rf"are more than the {MAX_LAYERS:,} layers a network may have"):
        layercalc.load({**BASES[family], key: 2 ** 62})
    assert time.perf_counter() - started < 1          # counted, not expanded up to the cap


def test_header_notes_show_only_values_they_have_read():
    # a sliding_window that is not a number would have gone into convert's header comment as it was
    from layercalc.importers.huggingface import header_notes

    with pytest.raises(LayerCalcError, match="'sliding_window'"):
        header_notes({**BASES["mistral"], "sliding_window": "4096\nlayers: []"})


# ------------------------------------------------------------------------------------------------- Keras files

@pytest.fixture(scope="module")
def keras_jsons():
    """A Functional and a Sequential model's JSON, written by Keras itself."""
    from oracle_helpers import keras_on_torch

    keras = keras_on_torch()
    L = keras.layers
    x0 = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(4, 3, padding="same", activation="relu")(x0)
    x = L.BatchNormalization()(x)
    y = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.Add()([x, y])
    x = L.MaxPooling2D()(x)
    x = L.Reshape((16, 4))(x)
    x = L.MultiHeadAttention(2, 4)(x, x)
    x = L.LSTM(5)(x)
    x = L.Dense(3)(x)
    functional = json.loads(keras.Model(x0, x, name="functional").to_json())
    sequential = json.loads(keras.Sequential([keras.Input((20,)), L.Embedding(50, 8), L.GRU(4), L.Dense(2)],
                                             name="sequential").to_json())
    return {"functional": functional, "sequential": sequential}


#: keys whose values the importer drops unread (dtype policies, initializers, build and compile settings): their
#: mutations are all read the same way, and make the corpus slower, not stronger
_DROPPED_UNREAD = ("dtype", "build_config", "compile_config", "module", "registered_name")


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _DROPPED_UNREAD or key.endswith(("_initializer", "_regularizer", "_constraint")):
                continue
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


def _mutated(data, path, value):
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
@pytest.mark.parametrize("model", ["functional", "sequential"])
def test_every_keras_value_set_to_a_hostile_value_is_read_or_refused_in_one_line(keras_jsons, model):
    data = keras_jsons[model]
    layercalc.load(data).analyze()
    values = {**{k: HOSTILE[k] for k in ("a list", "a mapping", "a string", "a negative number", "2**70", "true")},
              "control characters": "x\x1b[2J\ny"}
    refused = 0
    for path in list(_paths(data))[1:]:
        for kind, value in values.items():
            try:
                layercalc.load(_mutated(data, path, value)).analyze()
            except LayerCalcError as exc:
                refused += 1
                message = str(exc)
                assert "\n" not in message and "\x1b" not in message, (path, kind, message)
    assert refused > 100


def _archive(path: Path, config: str, weights: bytes | None = None, method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr("metadata.json", "{}")
        archive.writestr("config.json", config)
        if weights is not None:
            archive.writestr("model.weights.h5", weights)
    return path


#: the smallest Keras model: Dense(3) on 4 features
DENSE = json.dumps({"class_name": "Sequential", "config": {"name": "dense", "layers": [
    {"class_name": "InputLayer", "config": {"batch_shape": [None, 4], "name": "input"}},
    {"class_name": "Dense", "config": {"name": "fc", "units": 3}}]}})


def _patch_member(path: Path, name: str, **fields: int) -> None:
    """Rewrite a member's general-purpose flags (``flag``) or compression method (``method``) in both of its zip
    headers: what an encrypting or a zstd-writing zip tool records."""
    raw = bytearray(path.read_bytes())
    encoded = name.encode()
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = raw.find(signature)
        while at >= 0:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if raw[name_at:name_at + len(encoded)] == encoded:
                if "flag" in fields:
                    struct.pack_into("<H", raw, at + offset, fields["flag"])
                if "method" in fields:
                    struct.pack_into("<H", raw, at + offset + 2, fields["method"])
            at = raw.find(signature, at + 4)
    path.write_bytes(bytes(raw))


def test_a_keras_config_nested_100000_deep_exits_2(tmp_path):
    nested = "[" * 100_000 + "]" * 100_000
    config = DENSE.replace('"units": 3', f'"units": {nested}')
    done = cli("summary", _archive(tmp_path / "deep.keras", config))
    assert_refused_in_one_line(done, "deep.keras: config.json", "nested too deeply")
    # a depth JSON itself reads, beyond what a model needs: refused by the same bound
    config = DENSE.replace('"units": 3', f'"units": {"[" * 900 + "]" * 900}')
    with pytest.raises(LayerCalcError, match="nested more than 100 levels"):
        layercalc.load(_archive(tmp_path / "deep900.keras", config))


@pytest.mark.parametrize(("fields", "parts"), [
    ({"method": 93}, ["config.json is compressed with zip method 93 (zstd)", "stored, deflate"]),
    ({"method": 99}, ["config.json is compressed with zip method 99", "stored, deflate"]),
    ({"flag": 1}, ["config.json is encrypted: refused"]),
])
def test_an_unreadable_zip_member_exits_2_naming_it(tmp_path, fields, parts):
    path = _archive(tmp_path / "model.keras", DENSE, method=zipfile.ZIP_STORED)
    _patch_member(path, "config.json", **fields)
    assert_refused_in_one_line(cli("summary", path), *parts)


def test_a_corrupt_compressed_member_is_one_line(tmp_path):
    path = _archive(tmp_path / "model.keras", DENSE + " " * 1000)
    raw = bytearray(path.read_bytes())
    start = raw.find(b"PK\x03\x04", raw.find(b"config.json") - 30) + 30 + len("config.json")
    raw[start:start + 8] = b"\xff" * 8                              # the deflate stream's first bytes
    path.write_bytes(bytes(raw))
    assert_refused_in_one_line(cli("summary", path), "model.keras: config.json")


def test_300000_keras_layers_are_refused_before_any_is_built():
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 4]}}]
    layers += [{"class_name": "ReLU", "config": {}}] * 300_000
    started = time.perf_counter()
    with pytest.raises(LayerCalcError, match=rf"the model has 300,001 layers; a network may have at most "
                                             rf"{MAX_LAYERS:,}"):
        layercalc.load({"class_name": "Sequential", "config": {"layers": layers}})
    assert time.perf_counter() - started < 1                # a count: nothing walked, nothing built


def test_control_characters_of_keras_names_are_escaped_in_messages():
    config = json.loads(DENSE)
    config["class_name"] = "Functional"
    config["config"]["layers"] = [
        {"class_name": "InputLayer", "name": "in\x1b[2J", "config": {"batch_shape": [None, 4]}},
        {"class_name": "InputLayer", "name": "second", "config": {"batch_shape": [None, 4]}}]
    with pytest.raises(LayerCalcError) as caught:
        layercalc.load(config)
    assert "a second input (after 'in\\x1b[2J')" in str(caught.value) and "\x1b" not in str(caught.value)


# -------------------------------------------------------------------------------------------------- Keras weights

#: the network of DENSE as a spec (a .weights.h5 holds no configuration)
DENSE_NETWORK = {"input": [4], "layout": "channels_last", "layers": [{"name": "fc", "type": "Dense", "units": 3}]}


def _h5_weights(path: Path, kernel_shape: tuple, name: str = "fc") -> Path:
    """A .weights.h5 as Keras 3 writes one for a Dense layer: layers/dense/vars/0 (kernel) and 1 (bias), the layer's
    name on vars. The kernel is declared, never written: HDF5 allocates nothing, the file stays small."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as store:
        holder = store.create_group("layers/dense/vars")
        holder.attrs["name"] = name
        holder.create_dataset("0", shape=kernel_shape, dtype="float32")
        holder.create_dataset("1", data=[0.0, 0.0, 0.0], dtype="float32")
        store.create_group("vars")
    return path


@pytest.fixture
def no_big_reads(monkeypatch):
    """Reading a dataset of more than a million values fails the test: the refusal must come first."""
    h5py = pytest.importorskip("h5py")
    read = h5py.Dataset.__getitem__

    def guarded(self, key):
        if self.size > 10 ** 6:
            raise AssertionError(f"{self.name}: {self.size:,} values read before any size check")
        return read(self, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", guarded)


def test_a_small_weights_file_declaring_a_huge_kernel_is_refused_unread(tmp_path, no_big_reads):
    from layercalc.importers.keras import weights_from_keras

    path = _h5_weights(tmp_path / "huge.weights.h5", (30000, 30000))
    assert path.stat().st_size < 20_000
    with pytest.raises(LayerCalcError, match=r"huge\.weights\.h5: weights for layers\[0\] 'fc' \(linear\): the file "
                                             r"declares 900,000,003 values \(\[30000, 30000\], \[3\]\), far more than "
                                             r"the layer's parameters hold"):
        weights_from_keras(path, network=DENSE_NETWORK)


def test_the_right_shapes_still_load(tmp_path):
    from layercalc.importers.keras import weights_from_keras

    weights = weights_from_keras(_h5_weights(tmp_path / "ok.weights.h5", (4, 3)), network=DENSE_NETWORK)
    assert weights["fc"]["weight"].shape == (3, 4) and weights["fc"]["bias"].shape == (3,)


def test_a_keras_archive_whose_weights_inflate_far_beyond_the_network_is_refused(tmp_path):
    from layercalc.importers.keras import weights_from_keras

    # 256 MiB of zeros compress to about 256 KiB; the network's weights are 15 numbers
    path = tmp_path / "bomb.keras"
    chunk = bytes(2 ** 24)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("config.json", DENSE)
        with archive.open("model.weights.h5", "w") as member:
            for _ in range(16):
                member.write(chunk)
    assert path.stat().st_size < 2 * 2 ** 20
    with pytest.raises(LayerCalcError, match=r"bomb\.keras: model\.weights\.h5 declares 268,435,456 bytes "
                                             r"uncompressed, more than the [\d,]+ bytes this network's weights may "
                                             r"take: refused unread"):
        weights_from_keras(path)


def test_a_weights_member_whose_declared_size_lies_reads_no_more_than_the_cap(tmp_path):
    from layercalc.importers.keras import read_member

    path = tmp_path / "liar.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.weights.h5", bytes(10 ** 6))
    raw = bytearray(path.read_bytes())
    for offset in (raw.find(b"PK\x03\x04"), raw.find(b"PK\x01\x02")):        # claim 100 bytes uncompressed
        struct.pack_into("<I", raw, offset + (22 if raw[offset + 3] == 4 else 24), 100)
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as archive, pytest.raises(LayerCalcError, match="cannot be decompressed|inflates"):
        read_member(archive, "model.weights.h5", "liar.keras", 1000, "1,000 bytes")
