"""Reading sources at the edges (issue 19): a spec read once (pipes, FIFOs, ``<(…)``), layer mappings with keys
that are not text, weights paths that are not regular files, and plugin layer types that fail — each one line,
exit 2 (130 for Ctrl-C), never a hang or an internal error.

Expected figures by hand: the spec below is ``linear 4 → 3`` (4·3 + 3 = 15 parameters) then a ReLU.
"""

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

import layercalc
from layercalc import LayerCalcError, ResourceError, SpecError, sources

ROOT = Path(__file__).resolve().parent.parent

SPEC_TEXT = "input: [4]\nlayers:\n  - {type: linear, out_features: 3}\n  - {type: relu}\n"
SPEC_PARAMS = 4 * 3 + 3


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "layercalc", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "internal error" not in result.stderr
    return lines[0]


# ------------------------------------------------------------------------------------------- a source read once

def _write_fifo(path: Path, text: str) -> threading.Thread:
    """A writer that opens the FIFO (blocking until a reader opens it), writes ``text`` and closes: the writer
    has finished before the reader's second open, if it made one."""
    def write() -> None:
        with open(path, "w") as stream:
            stream.write(text)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_summary_of_a_fifo_reads_it_once(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    writer = _write_fifo(fifo, SPEC_TEXT)
    # before: the kind was sniffed from a first open, the text read from a second, which waited for a writer that
    # had already gone (a hang, cut here by the timeout)
    result = cli("summary", str(fifo), "--format", "json", timeout=30)
    writer.join(5)
    assert result.returncode == 0, result.stderr
    assert f'"params": {SPEC_PARAMS}' in result.stdout


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_library_load_of_a_fifo(tmp_path):
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    code = (f"import layercalc; print(layercalc.load({str(fifo)!r}).analyze().totals.params)")
    reader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT)
    writer = _write_fifo(fifo, SPEC_TEXT)
    out, err = reader.communicate(timeout=30)
    writer.join(5)
    assert reader.returncode == 0, err
    assert out.strip() == str(SPEC_PARAMS)


@pytest.mark.skipif(sys.platform == "win32" or not Path("/bin/bash").exists(), reason="needs bash")
def test_process_substitution():
    # `<(printf …)` is /dev/fd/N, a pipe: before, the second open read nothing ("got NoneType")
    printf = SPEC_TEXT.replace("\n", "\\n")
    command = f"{sys.executable} -m layercalc summary <(printf '{printf}') --format json"
    result = subprocess.run(["/bin/bash", "-c", command], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert result.returncode == 0, result.stderr
    assert f'"params": {SPEC_PARAMS}' in result.stdout


def test_read_file_tells_kinds_from_one_read(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_TEXT)
    kind, parsed, data = sources.read_file(spec)
    assert kind == "layercalc" and parsed == data and data["input"] == [4]
    model_json = tmp_path / "model.json"
    model_json.write_text('{"class_name": "Sequential", "config": {"layers": [{"class_name": "InputLayer", '
                          '"config": {"batch_shape": [null, 4]}}, {"class_name": "Dense", "config": '
                          '{"units": 3}}]}}')
    kind, parsed, data = sources.read_file(model_json)
    assert kind == "keras" and parsed["class_name"] == "Sequential" and "layers" in data
    assert layercalc.load(model_json).analyze().totals.params == 4 * 3 + 3


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_model_file_from_a_pipe_is_refused_in_one_line(tmp_path):
    fifo = tmp_path / "model.keras"
    os.mkfifo(fifo)
    writer = _write_fifo(fifo, "PK\x03\x04 not really a zip")
    result = cli("summary", str(fifo), timeout=30)
    writer.join(5)
    assert result.returncode == 2
    assert "read from a pipe or device; save it to a file first" in one_error_line(result)


# ------------------------------------------------------------------------------- layer mappings with other keys

def test_integer_key_in_a_layer_mapping():
    spec = {"input": [4], "layers": [{"type": "linear", "out_features": 3}, {1: 2, "type": "relu"}]}
    # before: TypeError "keywords must be strings" from Pydantic
    with pytest.raises(SpecError, match=r"^layers\[1\] \(relu\): the key 1 \(int\) is not a field name"):
        layercalc.load(spec)
    with pytest.raises(SpecError, match=r"the key 2\.5 \(float\) is not a field name"):
        layercalc.load({"input": [4], "layers": [{2.5: 1, "type": "relu"}]})


def test_integer_key_at_the_top_of_a_spec():
    with pytest.raises(SpecError, match=r"^spec: the key 7 \(int\) is not a field name"):
        layercalc.load({"input": [4], 7: 1, "layers": [{"type": "relu"}]})


def test_integer_key_in_yaml_is_one_line_exit_2(tmp_path):
    path = tmp_path / "intkey.yaml"
    path.write_text("input: [4]\nlayers:\n  - {1: 2, type: relu}\n")
    result = cli("summary", str(path))
    assert result.returncode == 2
    assert "layers[0] (relu): the key 1 (int) is not a field name" in one_error_line(result)


# ------------------------------------------------------------------------------------ weights paths, bounded

def test_weights_from_a_device_are_refused_before_reading():
    # before: /dev/zero was opened as a Keras/ONNX/.npz candidate and read (zipfile seeks and scans it)
    with pytest.raises(SpecError, match="/dev/zero: is not a regular file"):
        sources.read_weights("/dev/zero")
    result = cli("run", "zoo:lenet5", "--weights", "/dev/zero", timeout=60)
    assert result.returncode == 2
    assert "/dev/zero: is not a regular file" in one_error_line(result)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_weights_from_a_fifo_are_refused_without_waiting(tmp_path):
    fifo = tmp_path / "w.npz"
    os.mkfifo(fifo)              # no writer: any open for reading would block for ever
    result = cli("verify", str(ROOT / "examples" / "mnist_cnn.yaml"), "--weights", str(fifo), timeout=60)
    assert result.returncode == 2
    assert "is not a regular file" in one_error_line(result)


def test_weights_file_larger_than_the_memory_limit(tmp_path):
    big = tmp_path / "big.npz"
    with open(big, "wb") as stream:          # sparse: 64 GiB declared by its size, nothing written
        stream.truncate(64 * 2**30)
    with pytest.raises(ResourceError, match=r"big\.npz: the weights file holds 64 GiB, above the memory limit"):
        sources.read_weights(big, max_bytes=2**20)
    net = layercalc.load(SPEC_TEXT_AS_DATA)
    with pytest.raises(ResourceError, match="above the memory limit"):
        net.run(weights=str(big), max_memory="1M")


SPEC_TEXT_AS_DATA = {"input": [4], "layers": [{"type": "linear", "out_features": 3}, {"type": "relu"}]}


# ------------------------------------------------------------------------------------------ plugin layer types

PLUGIN = '''
from typing import Literal
from layercalc.layers import LayerBase, register_layer


@register_layer
class Broken(LayerBase):
    type: Literal["broken_infer"] = "broken_infer"

    def infer(self, inputs, ctx):
        return 1 / 0


@register_layer
class Silent(LayerBase):
    type: Literal["silent_infer"] = "silent_infer"

    def infer(self, inputs, ctx):
        pass
'''


@pytest.fixture
def plugin_file(tmp_path):
    path = tmp_path / "my_layers.py"
    path.write_text(PLUGIN)
    return path


def _spec_with(tmp_path, type_name: str) -> Path:
    spec = tmp_path / f"{type_name}.yaml"
    spec.write_text(f"input: [4]\nlayers:\n  - {{type: {type_name}, name: mine}}\n")
    return spec


def test_plugin_infer_raising_is_the_plugins_bug(tmp_path, plugin_file):
    # before: "internal error: ZeroDivisionError: division by zero — this is a bug in layercalc", exit 1
    result = cli("--plugin", str(plugin_file), "summary", str(_spec_with(tmp_path, "broken_infer")))
    assert result.returncode == 2
    line = one_error_line(result)
    assert "the plugin layer type 'broken_infer'" in line and f"plugin file {plugin_file}" in line
    assert "ZeroDivisionError: division by zero" in line and "a bug in the plugin" in line


def test_plugin_infer_returning_none_is_the_plugins_bug(tmp_path, plugin_file):
    result = cli("--plugin", str(plugin_file), "summary", str(_spec_with(tmp_path, "silent_infer")))
    assert result.returncode == 2
    line = one_error_line(result)
    assert "'silent_infer'" in line and f"plugin file {plugin_file}" in line
    assert "infer() returned None, not Facts" in line and "a bug in the plugin" in line


def test_plugin_bug_in_the_library_names_the_module():
    from typing import Literal

    from layercalc.layers import LayerBase, register_layer, unregister_layer

    namespace: dict = {"Literal": Literal, "LayerBase": LayerBase}
    exec(textwrap.dedent('''
        class Odd(LayerBase):
            type: Literal["odd_infer"] = "odd_infer"

            def infer(self, inputs, ctx):
                raise KeyError("oops")
    '''), namespace)
    odd = namespace["Odd"]
    odd.__module__ = "my_package.layers"
    register_layer(odd)
    try:
        with pytest.raises(LayerCalcError, match=r"'odd_infer' \(module my_package\.layers\) failed in infer\(\): "
                                                 r"KeyError: 'oops'"):
            layercalc.load({"input": [4], "layers": [{"type": "odd_infer"}]}).analyze()
    finally:
        unregister_layer(odd)


def test_ctrl_c_while_a_plugin_loads(tmp_path):
    path = tmp_path / "slow_plugin.py"
    path.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGINT)\n")
    result = cli("--plugin", str(path), "summary", "zoo:lenet5")
    # before: a KeyboardInterrupt traceback
    assert result.returncode == 130
    assert one_error_line(result) == "layercalc: interrupted"
