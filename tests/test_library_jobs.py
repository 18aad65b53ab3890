"""Library jobs done once, in one place (issue 19 §1): ``verify`` resolves the network once; one name for the
network's input; one byte formatter (the report's, ``formatting.human_bytes``) in every message."""

import ast
from pathlib import Path

import pytest

import layercalc
from layercalc import ResourceError, executor
from layercalc.formatting import human_bytes
from layercalc.graph import Network
from layercalc.verify import verify

ROOT = Path(__file__).resolve().parent.parent


def test_verify_resolves_the_network_once(monkeypatch):
    net = layercalc.load(str(ROOT / "examples" / "mnist_cnn.yaml"))
    calls = []
    original = Network.resolve

    def counting(self):
        calls.append(self.name)
        return original(self)

    monkeypatch.setattr(Network, "resolve", counting)
    result = verify(net)
    # before: once each for the weights' sources, the report and the run (and the weights file, when given)
    assert result.ok and len(calls) == 1


def test_verify_with_an_input_of_another_batch_resolves_it_once(monkeypatch):
    import numpy as np

    net = layercalc.load({"input": [4], "layers": [{"type": "linear", "out_features": 3}]})
    calls = []
    original = Network.resolve

    def counting(self):
        calls.append(self.batch)
        return original(self)

    monkeypatch.setattr(Network, "resolve", counting)
    result = verify(net, x=np.ones((5, 4), np.float32))
    assert result.ok and calls == [5]                  # the network re-batched to the input's 5, resolved once
    assert result.checks[0].actual_shape == [5, 3]


def _top_level_assignments(value: str) -> list[str]:
    """``module.NAME`` for every top-level ``NAME = value`` (a string constant) in layercalc/."""
    found = []
    for path in sorted((ROOT / "layercalc").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value == value:
                found += [f"{path.relative_to(ROOT)}:{t.id}" for t in node.targets if isinstance(t, ast.Name)]
    return found


def test_one_name_for_the_network_input():
    # before: graph.INPUT, executor.INPUT and blocks.NETWORK_INPUT, three constants of one idea
    assert _top_level_assignments("input") == ["layercalc/names.py:INPUT"]


def test_one_byte_formatter():
    """Only formatting.py spells byte units (its table of binary prefixes, read by ``human_bytes``)."""
    spelled = []
    for path in sorted((ROOT / "layercalc").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if any(isinstance(c, ast.Constant) and c.value in ("GiB", "MiB", "KiB") for c in ast.walk(node)):
                spelled.append(f"{path.relative_to(ROOT)}:{getattr(node, 'name', None) or ast.unparse(node)[:20]}")
    # before: executor.format_bytes ("1.50 GiB") beside formatting.human_bytes ("1.5 GiB")
    assert spelled == ["layercalc/formatting.py:_BINARY = [(2 ** 40,"]


def test_the_executor_says_bytes_as_the_report_does():
    net = layercalc.load({"input": [4096], "layers": [{"type": "linear", "out_features": 4096}]})
    # 4096·4096 + 4096 parameters of 4 bytes = 67,125,248 bytes: 64.0 MiB, refused under a 1.5 MiB limit
    with pytest.raises(ResourceError, match=r"exceeds the limit of 1\.5 MiB; ") as caught:
        executor.run(net, max_memory="1.5MiB")
    assert human_bytes(3 * 2**20 // 2) == "1.5 MiB" and "1.50 MiB" not in str(caught.value)


def test_the_family_table_of_layers_matches_the_registry():
    """The table in ``layercalc.layers``' docstring lists every family module and each one's types (first names;
    ``conv1d/2d/3d`` for conv1d, conv2d, conv3d), nothing more."""
    import re

    import layercalc.layers as layers
    from layercalc.layers.base import _type_names

    layers.load_all_families()
    registry: dict[str, set[str]] = {}
    for cls in layers.LAYER_CLASSES:
        registry.setdefault(cls.__module__.rsplit(".", 1)[1], set()).add(_type_names(cls)[0])
    table: dict[str, set[str]] = {}
    for module, types in re.findall(r"^\| :mod:`~layercalc\.layers\.(\w+)` \| (.+) \|$", layers.__doc__, re.M):
        names = set()
        for token in re.sub(r"\([^)]*\)", "", types).split(","):
            first, *more = token.strip().split("/")
            names.add(first)
            names |= {first[:-len(m)] + m for m in more}          # conv1d/2d/3d → conv2d, conv3d
        table[module] = names
    assert table == registry
