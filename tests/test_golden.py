"""Behaviour preserved: every zoo network's and example's full JSON report and worked explanation, the JSON Schema
and one calculator answer per layer type are byte for byte what tests/golden/ recorded.

The recorded files were made before the code was reorganized into layer families (issue 12) and checked against
the zoo's published figures (tests/test_zoo.py) and PyTorch (tests/test_zoo_torch.py); a difference here is a
changed figure or text. To record an intended change: ``python tests/golden/generate.py``, then read the diff.
"""

import difflib
import importlib.util
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"

_spec = importlib.util.spec_from_file_location("golden_generate", GOLDEN / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)


@pytest.fixture(scope="module")
def current() -> dict[str, str]:
    return generate.outputs()


def test_every_recorded_output_is_still_made(current):
    recorded = sorted(p.name for p in GOLDEN.iterdir() if p.suffix in (".json", ".txt"))
    assert sorted(current) == recorded


@pytest.mark.parametrize("name", sorted(p.name for p in GOLDEN.iterdir() if p.suffix in (".json", ".txt")))
def test_output_unchanged(name, current):
    expected = (GOLDEN / name).read_text()
    actual = current.get(name)
    assert actual is not None, f"{name} is no longer made"
    if actual != expected:
        diff = "".join(list(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), "recorded",
                                                 "now", n=1))[:60])
        pytest.fail(f"{name} changed:\n{diff}")
