"""`layercalc types` (issue 20, item 8): every registered layer type, with its family, aliases, Python class and
Keras classes, fitting the terminal; `run` shows a progress bar on a terminal only."""

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from layercalc.cli import get_app
from layercalc.layers import KERAS_CLASSES, LAYER_CLASSES, LAYER_TYPES

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_every_registered_type_is_listed_once_with_its_names():
    result = runner.invoke(get_app(), ["types", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [e["class"] for e in entries] == [cls.__name__ for cls in LAYER_CLASSES]
    listed = {name: e for e in entries for name in [e["type"], *e["aliases"]]}
    assert set(listed) == set(LAYER_TYPES)                       # aliases included: dense, swish, …
    assert listed["dense"]["type"] == "linear" and listed["swish"]["type"] == "silu"
    keras = {k: e["type"] for e in entries for k in e["keras"]}
    assert keras == {name: cls.model_fields["type"].default for name, cls in KERAS_CLASSES.items()}
    assert listed["conv2d"]["family"] == "conv" and listed["lstm"]["family"] == "recurrent"


def test_the_text_lists_every_type_by_family_within_80_columns():
    result = runner.invoke(get_app(), ["types"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    assert max(map(len, result.stdout.splitlines())) <= 80
    rows = set(re.findall(r"^  (\w+)", result.stdout, re.M))
    assert {cls.model_fields["type"].default for cls in LAYER_CLASSES} <= rows
    assert f"{len(LAYER_CLASSES)} layer types" in result.stdout
    assert "MaxPool2d · Keras MaxPooling2D" in result.stdout


def test_the_readme_points_to_types_instead_of_a_partial_list():
    readme = (ROOT / "README.md").read_text()
    assert "layercalc types" in readme
    # the old hand-written list named about half of the types; none is kept to go stale
    assert "Layer types: `conv1d/2d/3d`" not in readme


def test_run_draws_no_bar_off_a_terminal(tmp_path):
    result = runner.invoke(get_app(), ["run", str(ROOT / "examples/mnist_cnn.yaml")])
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.startswith("linear_11: shape [1, 10] float32")


def test_run_progress_reaches_the_bar(monkeypatch):
    """--progress asks for the bar off a terminal too: every layer of the 12 reaches it, in order."""
    from layercalc.cli import execute

    calls = []

    class Recorder:
        def __init__(self, enabled, delay=0.5):
            self.enabled = enabled

        def __call__(self, done, total, name):
            calls.append((done, total, name))

        def close(self):
            pass

    monkeypatch.setattr(execute, "Progress", Recorder)
    result = runner.invoke(get_app(), ["run", str(ROOT / "examples/mnist_cnn.yaml"), "--progress"])
    assert result.exit_code == 0, result.stderr
    assert [c[0] for c in calls] == list(range(1, 13)) and calls[-1] == (12, 12, "linear_11")
