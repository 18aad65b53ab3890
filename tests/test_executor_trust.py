"""The executor's results can be trusted or are refused: overflow is reported (never an all-NaN output with exit 0),
files are written and read as named and checked before they are read (hostile .npy/.npz headers, zip bombs,
damaged archives), the input agrees with --batch, random weights are said to be random, memory is checked before
any work that grows with the batch, arguments are validated, and the memory estimate bounds the measured peak."""

from __future__ import annotations

import importlib.util
import io
import pathlib
import struct
import time
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

import layercalc
from layercalc import executor, kernels
from layercalc.cli import get_app
from layercalc.errors import LayerCalcError, ResourceError
from layercalc.verify import verify

ROOT = pathlib.Path(__file__).resolve().parent.parent
MNIST_CNN = str(ROOT / "examples" / "mnist_cnn.yaml")
runner = CliRunner()

LINEAR_SPEC = {"input": [512], "layers": [{"name": "fc1", "type": "linear", "out_features": 8},
                                          {"name": "act", "type": "relu"},
                                          {"name": "fc2", "type": "linear", "out_features": 3}]}
LINEAR_YAML = ("input: [512]\nlayers:\n  - {name: fc1, type: linear, out_features: 8}\n  - {name: act, type: relu}\n"
               "  - {name: fc2, type: linear, out_features: 3}\n")


def invoke(*args):
    return runner.invoke(get_app(), [*map(str, args), "--wide"])      # whole lines (fitting them: test_widths.py)


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("layercalc: error: "), result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def files(tmp_path):
    (tmp_path / "lin.yaml").write_text(LINEAR_YAML)
    return tmp_path


def ones_weights():
    return {"fc1": {"weight": np.ones((8, 512)), "bias": np.zeros(8)}}


# ------------------------------------------------------------------------------------------- 1. overflow

def test_overflow_names_the_first_layer_and_suggests_float64():
    net = layercalc.load(LINEAR_SPEC)
    x = np.full((2, 512), 1e38)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # NumPy prints no RuntimeWarning either
        with pytest.raises(LayerCalcError) as info:
            net.run(x=x, weights=ones_weights())
        message = str(info.value)
        assert "\n" not in message and "layers[0] 'fc1' (linear)" in message and "float64" in message
        with pytest.raises(LayerCalcError, match="'fc1'"):
            verify(net, x=x, weights=ones_weights())   # not a pass on meaningless numbers
        out = net.run(x=x, weights=ones_weights(), dtype="float64")
    assert np.isfinite(out).all()


def test_overflow_hidden_by_a_later_relu_is_still_found():
    """fc1 overflows to −inf, the ReLU turns it into 0: the final output is finite but wrong."""
    net = layercalc.load(LINEAR_SPEC)
    weights = {"fc1": {"weight": -np.ones((8, 512)), "bias": np.zeros(8)}}
    with pytest.raises(LayerCalcError, match="layers\\[0\\] 'fc1'"):
        net.run(x=np.full((1, 512), 1e38), weights=weights)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_refused_up_front(bad):
    net = layercalc.load(LINEAR_SPEC)
    x = np.ones((2, 512), dtype=np.float32)
    x[1, 7] = bad
    with pytest.raises(LayerCalcError) as info:
        net.run(x=x)
    assert "input" in str(info.value) and "[1, 7]" in str(info.value)


def test_input_beyond_float32_range_is_refused():
    with pytest.raises(LayerCalcError, match="float64"):
        layercalc.load(LINEAR_SPEC).run(x=np.full((1, 512), 1e300))


def test_cli_run_overflow_is_exit_2_without_warnings(files):
    np.save(files / "big.npy", np.full((2, 512), 1e38, dtype=np.float32))
    np.savez(files / "w.npz", **{"fc1.weight": np.ones((8, 512), np.float32)})
    result = invoke("run", files / "lin.yaml", "-i", files / "big.npy", "--weights", files / "w.npz")
    assert_one_line_error(result, "'fc1' (linear)", "--dtype float64")
    result = invoke("verify", files / "lin.yaml", "--weights", files / "w.npz", "--batch", 1, "--no-progress",
                    "--seed", 0)
    assert result.exit_code == 0                       # random input: no overflow


# ------------------------------------------------------------------------------------------- 2. --output

@pytest.mark.parametrize("name", ["out.bin", "out", "out.npy"])
def test_run_writes_exactly_the_named_file(files, name):
    result = invoke("run", files / "lin.yaml", "-o", files / name)
    assert result.exit_code == 0, result.stderr
    assert f"wrote {files / name}" in result.stdout
    assert (files / name).is_file() and not (files / (name + ".npy")).exists()
    assert np.load(files / name).shape == (1, 3)


# ------------------------------------------------------------------------------------------- 3. --batch / shape

def test_batch_that_disagrees_with_the_input_is_refused(files):
    np.save(files / "x.npy", np.ones((2, 512), dtype=np.float32))
    assert_one_line_error(invoke("run", files / "lin.yaml", "-i", files / "x.npy", "--batch", 5), "2", "5",
                          "--batch")
    assert invoke("run", files / "lin.yaml", "-i", files / "x.npy", "--batch", 2).exit_code == 0
    np.save(files / "wrong.npy", np.ones((2, 511), dtype=np.float32))
    assert_one_line_error(invoke("run", files / "lin.yaml", "-i", files / "wrong.npy"), "[2, 511]", "512")


def test_library_input_shape_disagreement_names_both_shapes():
    with pytest.raises(LayerCalcError) as info:
        layercalc.load(LINEAR_SPEC).run(x=np.ones((2, 256)))
    assert "[2, 256]" in str(info.value) and "512" in str(info.value)


# ------------------------------------------------------------------------------------------- 4. random weights

def test_weight_sources_say_which_layers_are_random(files):
    net = layercalc.load(LINEAR_SPEC)
    assert executor.weight_sources(net, None, 0).describe() == \
        "weights: random (seed 0) for all 2 layers with parameters"
    partial = executor.weight_sources(net, {"fc1": {"weight": np.ones((8, 512))}}, 3, "w.npz")
    # fc1's weight comes from the file: "random for all" would misstate it
    assert partial.describe() == "weights: from w.npz for 1 layer (some in part); random (seed 3) for 2: fc1 (bias), fc2"
    both = executor.weight_sources(net, ones_weights(), 0, "w.npz")
    assert both.describe() == "weights: from w.npz for 1 layer; random (seed 0) for 1: fc2"
    assert both.given == ["fc1"] and list(both.random) == ["fc2"]
    result = verify(net, weights=ones_weights())
    assert result.weights.describe() == "weights: from the weights passed in for 1 layer; random (seed 0) for 1: fc2"

    np.savez(files / "w.npz", **{"fc1.weight": np.ones((8, 512), np.float32), "fc1.bias": np.zeros(8, np.float32)})
    result = invoke("run", files / "lin.yaml", "--weights", files / "w.npz")
    assert result.exit_code == 0
    assert f"weights: from {files / 'w.npz'} for 1 layer; random (seed 0) for 1: fc2" in result.stdout
    result = invoke("verify", files / "lin.yaml", "--no-progress")
    assert "weights: random (seed 0) for all 2 layers with parameters" in result.stdout


def test_weight_keys_matching_no_layer_or_parameter_are_errors(files):
    net = layercalc.load(LINEAR_SPEC)
    with pytest.raises(LayerCalcError, match="no layer named 'fc3'"):
        net.run(weights={"fc3": {"weight": np.ones((3, 8))}})
    with pytest.raises(LayerCalcError, match="unexpected key 'fc1.gamma'"):
        net.run(weights={"fc1": {"gamma": np.ones(8)}})
    np.savez(files / "extra.npz", **{"fc9.weight": np.ones(3, np.float32)})
    assert_one_line_error(invoke("run", files / "lin.yaml", "--weights", files / "extra.npz"), "fc9")


# ------------------------------------------------------------------------------------------- 5. memory first

def test_chunk_bytes_is_the_largest_chunk_without_listing_them():
    for batch in (1, 3, 64):
        for rows in (1, 7, 300):
            for per_position in (4, 108, 5000):
                plan = kernels.chunk_plan(batch, (rows, 31), per_position)
                largest = max((n1 - n0) * (h1 - h0) * 31 * per_position for n0, n1, h0, h1 in plan)
                assert kernels.chunk_bytes(batch, (rows, 31), per_position) == largest
    start = time.perf_counter()
    kernels.chunk_bytes(10**12, (224, 224), 64 * 9 * 4)
    assert time.perf_counter() - start < 0.01


@pytest.mark.parametrize("batch", [10**6, 10**7])
def test_huge_batch_is_refused_before_any_work(batch):
    start = time.perf_counter()
    result = invoke("verify", "zoo:vgg16", "--batch", batch, "--no-progress")
    assert_one_line_error(result, "exceeds the limit")
    assert time.perf_counter() - start < 10


def test_memory_error_becomes_a_resource_error(monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError()

    from layercalc.layers import Linear
    monkeypatch.setattr(Linear, "forward", no_memory)
    with pytest.raises(ResourceError) as info:
        layercalc.load(LINEAR_SPEC).run()
    assert "out of memory" in str(info.value) and "'fc1'" in str(info.value)


# ------------------------------------------------------------------------------------------- 6. hostile files

def npy_header(shape, descr="<f4") -> bytes:
    """An .npy 1.0 header declaring ``shape`` (no data)."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple(shape)}, }}"
    text += " " * ((64 - (10 + len(text) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def test_npy_header_declaring_1e11_elements_is_refused_before_reading(files):
    (files / "huge.npy").write_bytes(npy_header((10**11, 512)) + b"\0" * 64)
    tracemalloc.start()
    try:
        result = invoke("run", files / "lin.yaml", "-i", files / "huge.npy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line_error(result, "huge.npy")
    assert peak < 50 * 2**20
    with pytest.raises(LayerCalcError, match="truncated"):
        executor.load_array(files / "huge.npy", max_bytes=2**70)


def test_npz_member_whose_header_disagrees_with_its_size_is_refused(files):
    with zipfile.ZipFile(files / "lie.npz", "w") as archive:
        archive.writestr("fc1.weight.npy", npy_header((10**11,)) + b"\0" * 64)
    result = invoke("run", files / "lin.yaml", "--weights", files / "lie.npz")
    assert_one_line_error(result, "lie.npz", "fc1.weight")


def test_zip_bomb_is_refused_before_it_is_inflated(files):
    """64 MiB of zeros compress to ~64 KiB: the header's shape is checked against the layer's parameter (and the
    size against the memory limit) before the member is decompressed."""
    with zipfile.ZipFile(files / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("fc1.weight.npy", "w") as member:
            member.write(npy_header((4096, 4096)))
            block = bytes(2**20)
            for _ in range(64):
                member.write(block)
    assert (files / "bomb.npz").stat().st_size < 2**20
    tracemalloc.start()
    try:
        result = invoke("run", files / "lin.yaml", "--weights", files / "bomb.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line_error(result, "'fc1.weight' has shape [4096, 4096]", "[8, 512]")
    assert peak < 32 * 2**20
    with pytest.raises(ResourceError, match="bomb.npz"):
        executor.load_weights(files / "bomb.npz", max_bytes=2**20)


def test_damaged_archives_are_one_line(files):
    np.savez_compressed(files / "good.npz", **{"fc1.weight": np.ones((8, 512), np.float32)})
    data = (files / "good.npz").read_bytes()
    (files / "truncated.npz").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF                  # inside the compressed member: bad CRC or bad deflate stream
    (files / "flipped.npz").write_bytes(bytes(flipped))
    (files / "text.npz").write_text("not a zip at all")
    for name in ("truncated.npz", "flipped.npz", "text.npz"):
        assert_one_line_error(invoke("run", files / "lin.yaml", "--weights", files / name), name)
        with pytest.raises(LayerCalcError):
            layercalc.load(LINEAR_SPEC).run(weights=str(files / name))


def test_crc_mismatch_is_one_line(files):
    buffer = io.BytesIO()
    np.save(buffer, np.ones((8, 512), np.float32))
    payload = buffer.getvalue()
    with zipfile.ZipFile(files / "crc.npz", "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("fc1.weight.npy", payload)
    data = bytearray((files / "crc.npz").read_bytes())
    data[data.index(payload[-64:]) + 10] ^= 0x01      # one bit of the stored data: only the CRC notices
    (files / "crc.npz").write_bytes(bytes(data))
    assert_one_line_error(invoke("run", files / "lin.yaml", "--weights", files / "crc.npz"), "crc.npz")


def test_pickled_arrays_are_never_loaded(files):
    np.save(files / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert_one_line_error(invoke("run", files / "lin.yaml", "-i", files / "objects.npy"), "objects.npy")
    with zipfile.ZipFile(files / "objects.npz", "w") as archive:
        archive.writestr("fc1.weight.npy", (files / "objects.npy").read_bytes())
    assert_one_line_error(invoke("run", files / "lin.yaml", "--weights", files / "objects.npz"), "objects.npz")


def test_input_archive_and_truncated_input_are_one_line(files):
    np.savez(files / "x.npz", a=np.ones((1, 512)))
    assert_one_line_error(invoke("run", files / "lin.yaml", "-i", files / "x.npz"), "x.npz")
    np.save(files / "x.npy", np.ones((4, 512), np.float32))
    data = (files / "x.npy").read_bytes()
    (files / "cut.npy").write_bytes(data[:-100])
    assert_one_line_error(invoke("run", files / "lin.yaml", "-i", files / "cut.npy"), "cut.npy", "truncated")


# ------------------------------------------------------------------------------------------- 7. arguments

@pytest.mark.parametrize("kwargs", [
    {"max_memory": float("nan")}, {"max_memory": float("inf")}, {"max_memory": -1}, {"max_memory": "9" * 5000},
    {"seed": "a"}, {"seed": True}, {"seed": 2.5}, {"dtype": "int7"}, {"dtype": [1]},
    {"weights": {"fc1": {"weight": [[1.0, 2.0], [3.0]]}}}, {"weights": {"fc1": {"weight": "abc"}}},
    {"weights": 5}, {"weights": {"fc1": "abc"}}, {"x": [[1.0, 2.0], [3.0]]},
])
@pytest.mark.parametrize("entry", ["run", "verify"])
def test_bad_library_arguments_are_one_line_layercalc_errors(kwargs, entry):
    net = layercalc.load(LINEAR_SPEC)
    call = net.run if entry == "run" else (lambda **kw: verify(net, **kw))
    with pytest.raises(LayerCalcError) as info:
        call(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["9" * 5000, "1e400", "nan", "inf", "-5", "0"])
def test_bad_max_memory_on_the_command_line(files, value):
    assert_one_line_error(invoke("run", files / "lin.yaml", "--max-memory", value), "--max-memory")


def test_parse_bytes_keeps_its_answers():
    assert executor.parse_bytes("512M") == 512 * 2**20
    assert executor.parse_bytes("1.5 GiB") == 3 * 2**29
    assert executor.parse_bytes(".5K") == 512
    assert executor.parse_bytes(10**6) == 10**6 and executor.parse_bytes(2.0e9) == 2 * 10**9


# ------------------------------------------------------------------------------------------- 8/9. estimate bound

@pytest.fixture(scope="module")
def bench_memory():
    spec = importlib.util.spec_from_file_location("bench_memory", ROOT / "bench" / "bench_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_memory_covers_every_layer_type(bench_memory):
    assert set(layercalc.layers.LAYER_TYPES) <= set(bench_memory.layer_specs())


@pytest.mark.parametrize("label", ["gelu", "gelu tanh", "leaky_relu", "adaptive_maxpool3d", "adaptive_maxpool2d 63",
                                   "zero_pad", "concat", "conv_transpose2d", "groupnorm NHWC", "softmax"])
def test_memory_estimate_bounds_the_peak_of_each_kind(bench_memory, label):
    estimate, peak = bench_memory.measure(bench_memory.build(label, mib=4))
    assert peak <= estimate + bench_memory.ALLOWANCE, (label, estimate, peak)


def test_gelu_blocks_give_the_same_numbers():
    x = np.random.default_rng(0).standard_normal((3, 50_000)).astype(np.float32) * 4
    whole = kernels._gelu_erf(x)
    assert np.array_equal(kernels.gelu(x), whole)
    assert np.array_equal(kernels.gelu(x.T), whole.T)           # a strided view
    y = x.copy()
    assert np.array_equal(kernels.gelu(y, out=y), whole)          # in place
    assert np.array_equal(kernels.gelu(x, "tanh"), kernels._gelu_tanh(x))
    slope = np.float32(0.1)
    expected = np.where(x > 0, x, x * slope)
    assert np.array_equal(kernels.leaky_relu(x, 0.1), expected)
    assert np.array_equal(kernels.leaky_relu(x.copy(), 0.1, out=None), expected)
    z = x.copy()
    assert np.array_equal(kernels.leaky_relu(z, 0.1, out=z), expected)
