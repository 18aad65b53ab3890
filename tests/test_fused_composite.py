"""The fused activation (Keras' ``activation`` argument of a conv or dense layer) is one composite layer: its figures,
forward step and explanation are the layer's followed by the activation layer's, composed in one place
(layercalc/layers/fused.py), and the engines know nothing about it."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

import layercalc

PACKAGE = pathlib.Path(layercalc.__file__).parent
ENGINES = [PACKAGE / name for name in ("graph.py", "executor.py", "explain.py", "rules.py", "report.py",
                                       "formatting.py")] + sorted((PACKAGE / "cli").glob("*.py"))


def _words(tree: ast.AST) -> set[str]:
    """Every identifier of a module (names, attributes, arguments, imports, definitions) and every one-word string
    constant (a dict key such as geometry["fused"]); prose (docstrings, messages) is left out."""
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            words.add(node.name)
        elif isinstance(node, ast.arg):
            words.add(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            words.add(node.arg)
        elif isinstance(node, ast.alias):
            words.update(filter(None, (node.name, node.asname)))
        elif isinstance(node, ast.ImportFrom) and node.module:
            words.update(node.module.split("."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            words.add(node.value)
    return words


@pytest.mark.parametrize("path", ENGINES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_engines_do_not_know_the_fused_activation(path):
    words = _words(ast.parse(path.read_text(encoding="utf-8")))
    assert not [w for w in words if "fused" in w.lower()]


def test_the_checker_sees_what_the_engines_used_to_call():
    # the former branches of rules/executor/explain/graph, as written there before the composite
    before = ("if layer.fused_activation() is not None:\n    from .fused import fuse\n    fuse(layer, facts, ctx)\n"
              "extra = facts.geometry['fused']\n")
    assert {"fused_activation", "fused", "fuse"} <= _words(ast.parse(before))


def _pair(fused: dict, activation: dict, input_: list[int]):
    """The same network written with the activation fused and as a layer of its own."""
    one = layercalc.load({"input": input_, "layers": [fused]})
    two = layercalc.load({"input": input_, "layers": [{k: v for k, v in fused.items() if k != "activation"},
                                                      activation]})
    return one, two


@pytest.mark.parametrize("fused, activation, input_", [
    ({"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "activation": "relu"},
     {"type": "relu"}, [3, 8, 8]),
    ({"type": "conv_transpose2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "activation": "sigmoid"},
     {"type": "sigmoid"}, [3, 5, 5]),
    ({"type": "depthwise_conv2d", "kernel_size": 3, "depth_multiplier": 2, "activation": "relu6"},
     {"type": "relu6"}, [3, 7, 7]),
    ({"type": "separable_conv2d", "out_channels": 5, "kernel_size": 3, "activation": "swish"},
     {"type": "silu"}, [3, 7, 7]),
    ({"type": "linear", "out_features": 6, "activation": "softmax"}, {"type": "softmax"}, [4, 10]),
])
def test_composite_is_the_layer_then_the_activation(fused, activation, input_):
    one, two = _pair(fused, activation, input_)
    a, (b, c) = one.analyze().layers[0], two.analyze().layers
    assert (a.output_shape, a.params, a.macs) == (c.output_shape, b.params + c.params, b.macs + c.macs)
    assert a.flops == b.flops + c.flops
    assert a.activation == c.type
    assert a.receptive_field == b.receptive_field and a.jump == b.jump
    assert any(f"{c.flops:,} FLOPs included" in note for note in a.notes)
    x = np.random.default_rng(0).standard_normal([1, *input_])
    np.testing.assert_allclose(one.run(x, dtype="float64"), two.run(x, dtype="float64"), rtol=1e-12, atol=1e-12)


def test_explanation_is_the_layers_lines_then_the_activations():
    from layercalc.explain import explain_layer

    one, two = _pair({"type": "conv2d", "out_channels": 4, "kernel_size": 3, "activation": "relu"},
                     {"type": "relu"}, [3, 8, 8])
    fused, = one.resolve()
    conv, relu = two.resolve()
    lines = explain_layer(fused.layer, fused.input_shapes, fused.facts)
    own = explain_layer(conv.layer, conv.input_shapes, conv.facts)
    activation = explain_layer(relu.layer, relu.input_shapes, relu.facts)
    # the conv's own formulas (its FLOPs without the activation's) come first, then the activation's
    assert lines[:own.index(next(line for line in own if line.startswith("output bytes")))] == \
        own[:own.index(next(line for line in own if line.startswith("output bytes")))]
    assert activation[0] in lines
    assert f"FLOPs with the activation = {conv.facts.flops:,} + {relu.facts.flops:,} = " \
           f"{conv.facts.flops + relu.facts.flops:,}" in lines
    assert not any("⚠" in line for line in lines)
