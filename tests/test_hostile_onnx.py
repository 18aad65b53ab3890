"""Hostile ONNX files (issue 19 §2): a corpus built here with onnx.helper, each file run through the CLI
(``layercalc summary``) in a subprocess with a timeout.

Each case must end in exit status 2 with one line on stderr saying what is wrong (never "internal error", never a
traceback), or give the right answer, derived by hand in the case. Every case is bounded: at most
:data:`CPU_SECONDS` of CPU time (``os.wait4``) and :data:`MAX_RSS` of memory (the child's own peak, ``VmHWM``).
No file is read that the command did not name: external data is read only from beside the model (the
working-directory tests put a "secret" where the old resolution looked). The checks of initializers against
their layers run in-process (``layercalc.load``: a LayerCalcError is the CLI's exit 2), one of them through the CLI.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

import layercalc

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

#: the most CPU time (user + system) and resident memory one case may use
CPU_SECONDS = 10.0
MAX_RSS = 2 << 30
#: a hang is a failure, not a stuck test run
TIMEOUT = 120.0
ROOT = Path(__file__).resolve().parent.parent

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY-----"


# ------------------------------------------------------------------------------------------------ building

def tensor(name: str, dtype: int, dims: list[int], raw: Optional[bytes] = None) -> Any:
    """A TensorProto with exactly the given dims and data (onnx.helper.make_tensor refuses inconsistent ones)."""
    t = TensorProto()
    t.name, t.data_type = name, dtype
    t.dims.extend(dims)
    if raw is not None:
        t.raw_data = raw
    return t


def external(name: str, dtype: int, dims: list[int], location: str, **entries: Any) -> Any:
    """A tensor whose data is in another file, at ``location``."""
    t = tensor(name, dtype, dims)
    t.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, **entries}.items():
        entry = t.external_data.add()
        entry.key, entry.value = key, str(value)
    return t


def model(nodes: list, inits: list = (), shape: Optional[list] = (1, 3, 8, 8), opset: int = 17,
          output: str = "y") -> Any:
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))] if shape is not None else []
    graph = helper.make_graph(nodes, "hostile", inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT,
                                                                                        None)],
                              initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def save(path: Path, m: Any) -> Path:
    path.write_bytes(m.SerializeToString() if not isinstance(m, bytes) else m)
    return path


def const(name: str, value: Any, dtype: int = TensorProto.INT64) -> Any:
    array = np.asarray(value)
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_v", dtype, list(array.shape),
                                                                              array.reshape(-1).tolist()))


def floats(name: str, *dims: int) -> Any:
    return numpy_helper.from_array(np.ones(dims, np.float32), name)


def ints(name: str, values: list[int]) -> Any:
    return numpy_helper.from_array(np.array(values, np.int64), name)


def relu_after(name: str) -> Any:
    return helper.make_node("Relu", [name], ["y"])


# ------------------------------------------------------------------------------------------------- running

@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    cpu: float
    rss: int


#: the child: layercalc's command, then its peak resident memory (VmHWM: this process's own, unlike ru_maxrss,
#: which a child inherits from the parent that forked it) written to the file named first
CHILD = """
import atexit, runpy, sys
def peak(path=sys.argv[1]):
    try:
        status = open("/proc/self/status").read()
    except OSError:
        return
    kb = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), "0")
    open(path, "w").write(kb)
atexit.register(peak)
sys.argv = ["layercalc", *sys.argv[2:]]
runpy.run_module("layercalc", run_name="__main__")
"""


def run_cli(*args: str, cwd: Optional[Path] = None) -> Run:
    """``python -m layercalc ARGS`` in a child process: its exit status, output, CPU time and peak memory."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as peak:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, peak.name, *args], stdout=out, stderr=err, cwd=cwd,
                                env=env)
        deadline = time.monotonic() + TIMEOUT
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                pytest.fail(f"layercalc {' '.join(args)}: still running after {TIMEOUT:g} s")
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        rss = int(peak.read() or 0) * 1024
        return Run(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                   usage.ru_utime + usage.ru_stime, rss)


def bounded(run: Run) -> None:
    assert run.cpu <= CPU_SECONDS, f"{run.cpu:.1f} s of CPU"
    assert run.rss <= MAX_RSS, f"{run.rss / 2 ** 20:.0f} MiB"


def refused(run: Run, *fragments: str) -> str:
    """Exit 2, nothing on stdout, one line on stderr holding each fragment."""
    bounded(run)
    lines = run.stderr.strip().splitlines()
    assert run.code == 2, (run.code, run.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("layercalc: error: "), run.stderr[-2000:]
    assert "internal error" not in lines[0] and "Traceback" not in run.stderr
    assert run.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def load_refused(path: Path, *fragments: str) -> str:
    """``layercalc.load`` in this process raises a LayerCalcError (the CLI's exit 2) of one line holding each
    fragment."""
    with pytest.raises(layercalc.LayerCalcError) as info:
        layercalc.load(path)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def summary(path: Path, cwd: Optional[Path] = None) -> Run:
    return run_cli("summary", str(path), "--format", "json", cwd=cwd)


def answer(run: Run) -> dict:
    """The summary's JSON (exit 0)."""
    import json
    bounded(run)
    assert run.code == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


# --------------------------------------------------------------------------------------- external data

def test_external_data_is_not_read_from_the_working_directory(tmp_path):
    """The location is relative: resolved against the model's folder, never the working directory (where a
    ``secret.bin`` waits). Missing beside the model: refused; present beside it: read from there."""
    home, models = tmp_path / "home", tmp_path / "models"
    home.mkdir()
    models.mkdir()
    (home / "secret.bin").write_bytes(SECRET)
    shape = external("shape", TensorProto.INT64, [2], "secret.bin", offset=0, length=16)
    path = save(models / "m.onnx", model([helper.make_node("Reshape", ["x", "shape"], ["y"])], [shape]))
    line = refused(summary(path, cwd=home), "initializer 'shape'", "'secret.bin'", "no such file beside the model")
    assert "OPENSSH" not in line and str(int.from_bytes(SECRET[:8], "little")) not in line
    # beside the model: the values it holds ([1, 192]: 3·8·8 per example) are the reshape's target
    np.array([1, 192], np.int64).tofile(models / "secret.bin")
    report = answer(summary(path, cwd=home))
    assert report["layers"][-1]["output_shape"] == [1, 192]
    assert report["totals"]["params"] == 0


@pytest.mark.parametrize("location, fragment", [
    ("../secret.bin", "no absolute path, no '..'"),
    ("sub/../../secret.bin", "no absolute path, no '..'"),
    ("{home}/secret.bin", "no absolute path, no '..'"),
    ("link.bin", "symbolic link"),
    ("fifo", "not a regular file"),
    ("", "inside the model's folder"),
])
def test_external_data_outside_the_model_folder_is_refused(tmp_path, monkeypatch, location, fragment):
    home, models = tmp_path / "home", tmp_path / "models"
    home.mkdir()
    models.mkdir()
    (home / "secret.bin").write_bytes(SECRET + bytes(64))
    (models / "link.bin").symlink_to(home / "secret.bin")
    os.mkfifo(models / "fifo")
    shape = external("shape", TensorProto.INT64, [2], location.format(home=home))
    path = save(models / "m.onnx", model([helper.make_node("Reshape", ["x", "shape"], ["y"])], [shape]))
    monkeypatch.chdir(home)
    line = load_refused(path, "initializer 'shape' is stored in another file", fragment)
    assert "OPENSSH" not in line


@pytest.mark.parametrize("entries, fragment", [
    ({"length": 1 << 40}, "need 16 bytes"),                      # a declared length its dims contradict
    ({"offset": 1 << 40}, "past the end of the file"),
    ({"offset": 8}, "past the end of the file"),                  # 8 + 16 > 16
    ({"offset": "x"}, "must be whole numbers"),
])
def test_external_data_bounded_by_its_dims_and_the_file(tmp_path, entries, fragment):
    np.array([1, 192], np.int64).tofile(tmp_path / "shape.bin")
    shape = external("shape", TensorProto.INT64, [2], "shape.bin", **entries)
    path = save(tmp_path / "m.onnx", model([helper.make_node("Reshape", ["x", "shape"], ["y"])], [shape]))
    load_refused(path, "initializer 'shape'", fragment)


def test_external_constant_node_value_is_read_beside_the_model(tmp_path, monkeypatch):
    """A Constant node's value may be external data too; onnx's reference evaluator would resolve it against the
    working directory (and onnx's checker looks for it there)."""
    home, models = tmp_path / "home", tmp_path / "models"
    home.mkdir()
    models.mkdir()
    np.array([1, 3, 64], np.int64).tofile(home / "c.bin")            # the decoy: a valid but wrong shape
    value = external("c", TensorProto.INT64, [3], "c.bin", length=24)
    nodes = [helper.make_node("Constant", [], ["shape"], value=value),
             helper.make_node("Reshape", ["x", "shape"], ["y"])]
    path = save(models / "m.onnx", model(nodes))
    refused(summary(path, cwd=home), "'c.bin'", "no such file beside the model")
    np.array([1, 12, 16], np.int64).tofile(models / "c.bin")
    assert answer(summary(path, cwd=home))["layers"][-1]["output_shape"] == [1, 12, 16]
    (home / "c.bin").unlink()                                        # nothing in the working directory
    monkeypatch.chdir(home)
    assert layercalc.load(path).analyze().layers[-1].output_shape == [1, 12, 16]


# -------------------------------------------------------------------------------- initializers vs layers

def conv(w: str = "w", b: Optional[str] = None, **attrs: Any) -> Any:
    return helper.make_node("Conv", ["x", w, *([b] if b else [])], ["y"], **attrs)


@pytest.mark.parametrize("nodes, inits, fragments", [
    # a conv weight of the wrong group size: [8, 2, 3, 3] on 3 channels, one group
    ([conv()], [floats("w", 8, 2, 3, 3)], ["(Conv)", "'w' (weight) has shape [8, 2, 3, 3], expected [8, 3, 3, 3]"]),
    # a depthwise kernel that does not fit: group 3 on 3 channels needs [.., 1, k, k]
    ([conv(group=3)], [floats("w", 6, 3, 3, 3)], ["expected [6, 1, 3, 3]"]),
    ([conv(group=2)], [floats("w", 8, 1, 3, 3)], ["group 2 must divide the input's 3 channels"]),
    ([conv(kernel_shape=[5, 5])], [floats("w", 8, 3, 3, 3)], ["expected [8, 3, 5, 5]"]),
    ([conv(b="b")], [floats("w", 8, 3, 3, 3), floats("b", 5)], ["'b' (bias) has shape [5], expected [8]"]),
    # a transposed kernel: [in, out/group, k, k]
    ([helper.make_node("ConvTranspose", ["x", "w"], ["y"])], [floats("w", 4, 2, 3, 3)],
     ["(ConvTranspose)", "'w' (weight) has shape [4, 2, 3, 3], expected [3, 2, 3, 3]"]),
    ([helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"])], [floats("w", 3, 2, 3, 3), floats("b", 3)],
     ["'b' (bias) has shape [3], expected [2]"]),
    ([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])],
     [floats("s", 3), floats("b", 3), floats("m", 5), floats("v", 3)],
     ["(BatchNormalization)", "'m' (mean) has shape [5], expected [3]"]),
    ([helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"])], [floats("s", 3), floats("b", 4)],
     ["'b' (B) has shape [4], expected [3]"]),
    ([helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1)], [floats("s", 8), floats("b", 7)],
     ["(LayerNormalization)", "'b' (bias) has shape [7], expected [8]"]),
    ([helper.make_node("LayerNormalization", ["x", "s"], ["y"], axis=-2)], [floats("s", 8)],
     ["'s' (scale) has shape [8], expected [8, 8]"]),
    # a Gemm / MatMul weight of the wrong inner size, a bias of the wrong length
    ([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w", "c"], ["y"], transB=1)],
     [floats("w", 10, 190), floats("c", 10)], ["(Gemm)", "'w' (weight) has shape [10, 190], expected [10, 192]"]),
    ([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w", "c"], ["y"], transB=1)],
     [floats("w", 10, 192), floats("c", 1)], ["'c' (C, the bias) has shape [1], expected [10]"]),
    ([helper.make_node("MatMul", ["x", "w"], ["y"])], [floats("w", 7, 4)], ["(MatMul)", "expected [8, 4]"]),
    ([helper.make_node("Add", ["x", "p"], ["y"])], [floats("p", 5, 8)], ["'p' (operand) has shape [5, 8]"]),
    ([helper.make_node("Concat", ["x", "p"], ["y"], axis=1)], [floats("p", 1, 2, 8, 7)],
     ["'p' (input) has shape [1, 2, 8, 7], expected [1, 2, 8, 8]"]),
], ids=["conv-group", "depthwise", "group-divides", "kernel-shape", "conv-bias", "transposed", "transposed-bias",
        "batchnorm", "instancenorm", "layernorm-bias", "layernorm-axis", "gemm-inner", "gemm-bias", "matmul-inner",
        "operand", "concat"])
def test_initializer_contradicting_its_layer_is_refused(tmp_path, nodes, inits, fragments):
    """Counted from the input's shapes before, the file's own sizes ignored: now refused, naming the node, the
    initializer, its shape and the expected shape."""
    load_refused(save(tmp_path / "m.onnx", model(nodes, inits)), *fragments)


def test_initializer_contradicting_its_layer_through_the_cli(tmp_path):
    path = save(tmp_path / "m.onnx", model([conv()], [floats("w", 8, 2, 3, 3)]))
    refused(summary(path), "node 0 '(no name)' (Conv): initializer 'w' (weight) has shape [8, 2, 3, 3], expected "
                           "[8, 3, 3, 3] (8 outputs, the input's 3 channels in 1 group(s), kernel [3, 3])")


def test_initializers_that_fit_give_the_hand_count(tmp_path):
    """The same checks accept what fits: conv 3→8, k3, bias on 8×8 (6×6 out): 8·3·9 + 8 = 224 params,
    8·6·6·27 = 7,776 MACs; a depthwise conv 3→6 (group 3, [6, 1, 3, 3]): 54 + 6 params, 6·36·9 = 1,944 MACs."""
    path = save(tmp_path / "m.onnx", model([conv(b="b")], [floats("w", 8, 3, 3, 3), floats("b", 8)]))
    totals = layercalc.load(path).analyze().totals
    assert (totals.params, totals.macs) == (224, 7776)
    path = save(tmp_path / "d.onnx", model([conv(b="b", group=3)], [floats("w", 6, 1, 3, 3), floats("b", 6)]))
    totals = layercalc.load(path).analyze().totals
    assert (totals.params, totals.macs) == (60, 1944)


def test_a_tensor_written_twice_is_refused(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="first"), helper.make_node("Sigmoid", ["x"], ["y"],
                                                                                    name="second")]
    refused(summary(save(tmp_path / "m.onnx", model(nodes))),
            "node 1 'second' (Sigmoid) writes tensor 'y', which node 0 'first' (Relu) already writes")
    nodes = [helper.make_node("Relu", ["x"], ["w"]), relu_after("w")]
    load_refused(save(tmp_path / "i.onnx", model(nodes, [floats("w", 3)])),
                 "writes tensor 'w', which an initializer already writes")


# --------------------------------------------------------------------------------------------- bounded

def folded(op_nodes: list, last: str) -> Any:
    """Constant nodes computing ``last`` (never used by the network), then a Relu of the input."""
    return model([*op_nodes, helper.make_node("Shape", [last], ["unused"]), relu_after("x")])


@pytest.mark.parametrize("nodes, last, fragment", [
    ([const("a", 0), const("b", 10 ** 9), const("c", 1), helper.make_node("Range", ["a", "b", "c"], ["r"])],
     "r", "(Range): its value 'r' would have 1,000,000,000 elements"),
    ([const("s", [10 ** 5, 10 ** 4]), helper.make_node("ConstantOfShape", ["s"], ["r"])],
     "r", "would have 1,000,000,000 elements"),
    ([const("v", [1, 2]), const("n", [10 ** 8]), helper.make_node("Tile", ["v", "n"], ["r"])],
     "r", "would have 200,000,000 elements"),
    ([const("v", [1]), const("n", [10 ** 4, 10 ** 5]), helper.make_node("Expand", ["v", "n"], ["r"])],
     "r", "would have 1,000,000,000 elements"),
    ([const("v", [1, 2]), const("p", [0, 10 ** 9]), helper.make_node("Pad", ["v", "p"], ["r"])],
     "r", "would have 1,000,000,002 elements"),
    ([const("a", np.arange(40000)), const("b", np.arange(40000).reshape(40000, 1)),
      helper.make_node("Add", ["a", "b"], ["r"])], "r", "would have 1,600,000,000 elements"),
], ids=["range", "constant-of-shape", "tile", "expand", "pad", "broadcast"])
def test_folding_is_sized_before_it_is_computed(tmp_path, nodes, last, fragment):
    """Each made 10⁸–10⁹ elements (tens of seconds, gigabytes) before the size was checked."""
    path = save(tmp_path / "m.onnx", folded(nodes, last))
    refused(summary(path), fragment, "at most 1,048,576 elements")


def test_constant_loop_is_never_iterated(tmp_path):
    """A Loop of 10¹⁵ trips on constants: the reference evaluator iterated it (a hang); a node with a subgraph is
    never evaluated."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond"], ["cond_out"]), helper.make_node("Add", ["v", "one"], ["v_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("v", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.INT64, [])],
        initializer=[numpy_helper.from_array(np.array(1, np.int64), "one")])
    nodes = [const("trips", 10 ** 15), const("cond", True, TensorProto.BOOL), const("v0", 0),
             helper.make_node("Loop", ["trips", "cond", "v0"], ["v"], body=body),
             helper.make_node("Reshape", ["x", "v"], ["y"])]
    refused(summary(save(tmp_path / "m.onnx", model(nodes))), "(Loop)", "not supported")


def test_nodes_counted_before_anything_is_built(tmp_path):
    """200,000 Relu nodes: refused at the layer limit before any is mapped (it took 10 s to build them)."""
    names = ["x", *(f"t{k}" for k in range(199_999)), "y"]
    nodes = [helper.make_node("Relu", [a], [b]) for a, b in zip(names, names[1:])]
    line = refused(summary(save(tmp_path / "m.onnx", model(nodes))), "200,000 nodes", "100,000")
    assert "layers" in line


# ------------------------------------------------------------------------------------- exit 2, not 1

def test_empty_initializer_declaring_a_billion_elements(tmp_path):
    shape = tensor("shape", TensorProto.INT64, [10 ** 9])
    refused(summary(save(tmp_path / "m.onnx", model([helper.make_node("Reshape", ["x", "shape"], ["y"])],
                                                    [shape]))),
            "initializer 'shape' has dims [1000000000]", "holds 0 values")


@pytest.mark.parametrize("scale", [math.nan, math.inf, -2.0, 0.0])
def test_resize_scales_not_finite_or_positive(tmp_path, scale):
    """NaN and inf were internal errors (int(nan)); 0 and -2 a layer's message that did not name the node."""
    scales = numpy_helper.from_array(np.array([1, 1, scale, 2], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")
    path = save(tmp_path / "m.onnx", model([node], [scales]))
    with pytest.raises(layercalc.LayerCalcError, match=r"\(Resize\): scales \[1\.0, 1\.0, .*\] must be one "
                                                        r"positive finite number per dim"):
        layercalc.load(path)
    if math.isnan(scale):
        refused(summary(path), "(Resize)", "scales")


def test_reshape_allowzero(tmp_path):
    """ONNX's Reshape: a 0 in the shape copies the input's dim, unless ``allowzero=1``, where it is a dim of size
    0 — for [1, 3, 8, 8] (192 elements per example) the shape [1, 0, 64] is [1, 3, 64], or 0 elements (refused)."""
    shape = ints("shape", [1, 0, 64])
    path = save(tmp_path / "copy.onnx", model([helper.make_node("Reshape", ["x", "shape"], ["y"])], [shape]))
    assert layercalc.load(path).analyze().layers[-1].output_shape == [1, 3, 64]
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], allowzero=1)
    path = save(tmp_path / "zero.onnx", model([node], [shape]))
    refused(summary(path), "(Reshape): shape [1, 0, 64] with allowzero=1 has a dim of size 0: 0 elements, but the "
                           "input [1, 3, 8, 8] has 192")


# ------------------------------------------------------------------------------------- the wider corpus

def _truncated(tmp: Path) -> Path:
    whole = model([conv()], [floats("w", 8, 3, 3, 3)]).SerializeToString()
    return save(tmp / "m.onnx", whole[: len(whole) // 2])


def _huge_input_dim(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([relu_after("x")], shape=[1, 3, 2 ** 62, 2 ** 62]))


def _future_opset(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([relu_after("x")], opset=10_000))


def _cycle(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([helper.make_node("Add", ["x", "b"], ["a"]),
                                       helper.make_node("Relu", ["a"], ["b"]), relu_after("a")]))


def _if_subgraph(tmp: Path) -> Path:
    branch = helper.make_graph([helper.make_node("Relu", ["x"], ["z"])], "branch", [],
                               [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)])
    nodes = [const("c", True, TensorProto.BOOL),
             helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)]
    return save(tmp / "m.onnx", model(nodes))


def _float_data_in_int64(tmp: Path) -> Path:
    shape = tensor("shape", TensorProto.INT64, [2])
    shape.float_data.extend([1.0, 192.0])
    return save(tmp / "m.onnx", model([helper.make_node("Reshape", ["x", "shape"], ["y"])], [shape]))


def _raw_data_short(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([conv()], [tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], bytes(12))]))


def _huge_weight_dims(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([conv()], [tensor("w", TensorProto.FLOAT, [2 ** 63 - 1, 3, 3, 3],
                                                        bytes(4))]))


def _negative_dims(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([conv()], [tensor("w", TensorProto.FLOAT, [-8, 3, 3, 3])]))


def _duplicate_initializers(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([conv()], [floats("w", 8, 3, 3, 3), floats("w", 4, 3, 3, 3)]))


def _unknown_dtype(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([conv()], [tensor("w", 999, [8, 3, 3, 3], bytes(864))]))


def _missing_conv_weight(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([helper.make_node("Conv", ["x"], ["y"])]))


def _attribute_of_wrong_type(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([conv(group="two")], [floats("w", 8, 3, 3, 3)]))


def _shape_start_of_wrong_type(tmp: Path) -> Path:
    nodes = [helper.make_node("Shape", ["x"], ["s"], start="a"), helper.make_node("Reshape", ["x", "s"], ["y"])]
    return save(tmp / "m.onnx", model(nodes))


def _zero_dim_input(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([relu_after("x")], shape=[1, 3, 0, 8]))


def _negative_dim_input(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([relu_after("x")], shape=[1, 3, -8, 8]))


def _no_input(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([const("y", [1.0], TensorProto.FLOAT)], shape=None))


def _missing_input(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([helper.make_node("Add", ["x", "nowhere"], ["y"])]))


def _unknown_op(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([helper.make_node("FancyOp", ["x"], ["y"], domain="com.example")]))


def _zero_sized_weight(tmp: Path) -> Path:
    return save(tmp / "m.onnx", model([conv()], [tensor("w", TensorProto.FLOAT, [0, 3, 3, 3], b"")]))


def _gather_scalar_out_of_range(tmp: Path) -> Path:
    nodes = [helper.make_node("Gather", ["x", "i"], ["y"], axis=1)]
    return save(tmp / "m.onnx", model(nodes, [ints("i", [5])]))


CORPUS: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "truncated": (_truncated, ("not a readable ONNX model",)),
    "not-protobuf": (lambda tmp: save(tmp / "m.onnx", b"\x08\x07garbage that is not a protobuf"),
                     ("not a readable ONNX model",)),
    "cycle": (_cycle, ("(Add)",)),
    "if-subgraph": (_if_subgraph, ("(If)", "not supported")),
    "float-data-in-int64": (_float_data_in_int64, ("initializer 'shape'", "holds 0 values in int64_data",
                                                   "float_data")),
    "raw-data-short": (_raw_data_short, ("initializer 'w' has dims [8, 3, 3, 3]", "holds 12 bytes")),
    "dims-2^63": (_huge_weight_dims, ("initializer 'w'", "holds 4 bytes")),
    "negative-dims": (_negative_dims, ("initializer 'w' has dims [-8, 3, 3, 3]", "negative")),
    "duplicate-initializers": (_duplicate_initializers, ("two initializers are named 'w'",)),
    "unknown-dtype": (_unknown_dtype, ("element type 999",)),
    "missing-conv-weight": (_missing_conv_weight, ("(Conv): not a valid Conv node", "input size 1")),
    "attribute-type": (_attribute_of_wrong_type, ("(Conv): not a valid Conv node", "group")),
    "shape-start-type": (_shape_start_of_wrong_type, ("(Shape): not a valid Shape node", "start")),
    "zero-dim-input": (_zero_dim_input, ("dim 2 is 0",)),
    "negative-dim-input": (_negative_dim_input, ("dim 2 is -8",)),
    "no-input": (_no_input, ("0 inputs",)),
    "missing-input": (_missing_input, ("'nowhere'",)),
    "unknown-op": (_unknown_op, ("'FancyOp' of domain 'com.example' is not supported",)),
    "zero-sized-weight": (_zero_sized_weight, ("'out_channels': got 0",)),
    "gather-out-of-range": (_gather_scalar_out_of_range, ("(Gather): indices [5] must be integers in [-3, 2]",)),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_hostile_corpus(tmp_path, case):
    """Exit 2 and one line naming the problem (the fragments), bounded in time and memory."""
    build, fragments = CORPUS[case]
    refused(summary(build(tmp_path), cwd=tmp_path), *fragments)


@pytest.mark.parametrize("build, elements", [(_huge_input_dim, 3 * 2 ** 124), (_future_opset, 192)])
def test_right_answers_in_the_corpus(tmp_path, build, elements):
    """Files that are valid, however odd: a relu of [1, 3, 2⁶², 2⁶²] (exact integers: 3·2¹²⁴ elements, one FLOP
    each) and an opset from the future (its Relu is ONNX's latest Relu)."""
    report = answer(summary(build(tmp_path)))
    assert report["totals"]["flops"] == elements and report["totals"]["params"] == 0


@pytest.mark.parametrize("nodes, inits, fragments", [
    ([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 0, 1, 2])], [],
     ["(Transpose): perm [0, 0, 1, 2] is not a permutation of the 4 dims"]),
    ([helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w", "c"], ["y"])],
     [floats("w", 192), floats("c", 10)], ["(Gemm): B 'w' [192] must be 2-d"]),
    # ONNX axes lie in [-rank, rank - 1]: 99 is not the last axis of a 4-d tensor
    ([helper.make_node("Softmax", ["x"], ["y"], axis=99)], [], ["(Softmax): axis 99 is out of range for a 4-d"]),
    ([helper.make_node("LayerNormalization", ["x", "s"], ["y"], axis=2 ** 40)], [floats("s", 8)],
     ["axis 1099511627776 is out of range"]),
    ([helper.make_node("Slice", ["x", "s", "e", "a"], ["y"])], [ints("s", [0, 0]), ints("e", [1, 2]),
                                                                 ints("a", [2, 2])], ["axes [2, 2] name a dim twice"]),
    # a node ONNX's own shape inference refuses: its reason, not "export with static input sizes"
    ([conv(strides=[0, 0])], [floats("w", 8, 3, 3, 3)], ["(Conv)", "strides must only contain positive values"]),
], ids=["transpose-perm", "gemm-1d-weight", "softmax-axis", "layernorm-axis", "slice-axes", "conv-strides-0"])
def test_invalid_nodes_refused(tmp_path, nodes, inits, fragments):
    """An internal error (a perm with a repeated axis, a 1-d Gemm weight) or a silent guess (axis 99 read as the
    last) before."""
    load_refused(save(tmp_path / "m.onnx", model(nodes, inits)), *fragments)


def shape_chain(links: int) -> Any:
    """``links`` times: Shape → Abs → Reshape (ONNX's data propagation does not follow Abs, so each link's shape
    is known only after the previous link is folded: one round of folding — shape inference on the whole graph —
    per link)."""
    nodes, y = [], "x"
    for k in range(links):
        nodes += [helper.make_node("Shape", [y], [f"s{k}"]), helper.make_node("Abs", [f"s{k}"], [f"a{k}"]),
                  helper.make_node("Reshape", [y, f"a{k}"], [f"y{k}"])]
        y = f"y{k}"
    return model([*nodes, relu_after(y)])


def test_folding_rounds_are_bounded(tmp_path):
    """A chain needing a round per link cost links × nodes (4 s for 400 links, hours for 30,000): the rounds are
    capped by the work they do; a short chain is still folded whole."""
    assert layercalc.load(save(tmp_path / "short.onnx", shape_chain(20))).analyze().layers[-1].output_shape == \
        [1, 3, 8, 8]
    refused(summary(save(tmp_path / "long.onnx", shape_chain(3000))), "(Shape): operator 'Shape' was not evaluated",
            "stopped after 27 rounds", "9,001 nodes", "250,000 nodes inferred")      # 250,000 // 9,001
