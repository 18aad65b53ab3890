"""Blocks and repeat in the spec format: naming, wiring, substitution and errors.

Every expected figure is derived by hand in the test (conv params = out·(in/groups)·k² + bias, …) or comes from a
hand-unrolled spec written without blocks.
"""

import copy
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import layercalc
from layercalc import GraphError, SpecError
from layercalc.blocks import MAX_LAYERS, expand


def analyze(spec):
    return layercalc.load(spec).analyze()


def names(report):
    return [entry.name for entry in report.layers]


def conv(out, k=3, **fields):
    return {"type": "conv2d", "out_channels": out, "kernel_size": k, **fields}


# A torchvision-style BasicBlock pair: identity shortcut, and a strided one with a 1×1 projection.
BASIC = {
    "params": {"planes": None},
    "layers": [
        {"name": "conv1", **conv("$planes", padding=1, bias=False)},
        {"name": "bn1", "type": "batchnorm2d"},
        {"name": "relu1", "type": "relu"},
        {"name": "conv2", **conv("$planes", padding=1, bias=False)},
        {"name": "bn2", "type": "batchnorm2d"},
        {"name": "add", "type": "add", "inputs": ["bn2", "in"]},
        {"name": "relu2", "type": "relu"},
    ],
}
BASIC_DOWN = {
    "params": {"planes": None, "stride": 2},
    "layers": [
        {"name": "conv1", **conv("$planes", stride="$stride", padding=1, bias=False)},
        {"name": "bn1", "type": "batchnorm2d"},
        {"name": "relu1", "type": "relu"},
        {"name": "conv2", **conv("$planes", padding=1, bias=False)},
        {"name": "bn2", "type": "batchnorm2d"},
        {"name": "downsample.0", **conv("$planes", k=1, stride="$stride", bias=False), "inputs": "in"},
        {"name": "downsample.1", "type": "batchnorm2d"},
        {"name": "add", "type": "add", "inputs": ["bn2", "downsample.1"]},
        {"name": "relu2", "type": "relu"},
    ],
}
BLOCK_LAYER_NAMES = ["conv1", "bn1", "relu1", "conv2", "bn2", "add", "relu2"]


def basic_params(cin, planes, down):
    """Hand count: two 3×3 convs without bias, two BNs (2·C each), and a 1×1 projection + BN when downsampling."""
    total = planes * cin * 9 + 2 * planes + planes * planes * 9 + 2 * planes
    if down:
        total += planes * cin + 2 * planes
    return total


# ------------------------------------------------------------------------------------------------- instances

def test_instance_prefixes_names_and_wires_the_block_input():
    spec = {"input": [8, 16, 16], "blocks": {"basic": BASIC},
            "layers": [conv(8, name="stem", padding=1), {"block": "basic", "name": "stage", "args": {"planes": 8}},
                       {"type": "flatten"}]}
    report = analyze(spec)
    assert names(report) == ["stem", *[f"stage.{n}" for n in BLOCK_LAYER_NAMES], "flatten_8"]
    assert report.layer("stage.conv1").inputs == ["stem"]
    assert report.layer("stage.add").inputs == ["stage.bn2", "stem"]          # 'in' = what feeds the instance
    assert report.layer("flatten_8").inputs == ["stage.relu2"]               # the block's last layer
    assert report.layer("stage.relu2").output_shape == [1, 8, 16, 16]
    assert report.totals.params == (8 * 8 * 9 + 8) + basic_params(8, 8, down=False)


def test_named_output_and_references_to_the_instance_name():
    block = {"params": ["c"], "output": "main",
             "layers": [{"name": "main", **conv("$c", k=1)}, {"name": "side", **conv(2, k=1), "inputs": "in"}]}
    spec = {"input": [3, 8, 8], "blocks": {"two": block},
            "layers": [{"block": "two", "name": "b", "args": {"c": 5}},
                       {"name": "after", "type": "relu"},                        # chains to b's output, not b.side
                       {"name": "cat", "type": "concat", "inputs": ["b", "b.side", "after"]}]}
    report = analyze(spec)
    assert report.layer("after").inputs == ["b.main"]
    assert report.layer("cat").inputs == ["b.main", "b.side", "after"]
    assert report.layer("cat").output_shape == [1, 5 + 2 + 5, 8, 8]
    assert report.totals.params == (5 * 3 + 5) + (2 * 3 + 2)


def test_forward_reference_to_an_instance_output():
    spec = {"input": [4, 6, 6], "blocks": {"c": {"params": {"n": 4}, "layers": [conv("$n", k=1, name="x")]}},
            "layers": [{"name": "sum", "type": "add", "inputs": ["input", "later"]},
                       {"block": "c", "name": "later", "inputs": "input"}]}
    report = analyze(spec)
    assert report.layer("sum").inputs == ["input", "later.x"]
    assert [e.name for e in report.layers] == ["later.x", "sum"]              # topological order


def test_concat_block_inception_style():
    """Four branches from the block input, concatenated: channels and params derived by hand."""
    inception = {
        "params": {"c1": None, "c3r": None, "c3": None, "pool_proj": None},
        "layers": [
            {"name": "branch1", **conv("$c1", k=1), "inputs": "in"},
            {"name": "branch2.0", **conv("$c3r", k=1), "inputs": "in"},
            {"name": "branch2.1", **conv("$c3", k=3, padding=1)},
            {"name": "branch3.0", "type": "maxpool2d", "kernel_size": 3, "stride": 1, "padding": 1, "inputs": "in"},
            {"name": "branch3.1", **conv("$pool_proj", k=1)},
            {"name": "cat", "type": "concat", "inputs": ["branch1", "branch2.1", "branch3.1"]},
        ]}
    spec = {"input": [192, 28, 28], "blocks": {"inception": inception},
            "layers": [{"block": "inception", "name": "inception3a",
                        "args": {"c1": 64, "c3r": 96, "c3": 128, "pool_proj": 32}}]}
    report = analyze(spec)
    assert report.outputs == ["inception3a.cat"]
    assert report.layer("inception3a.cat").output_shape == [1, 64 + 128 + 32, 28, 28]
    expected = (64 * 192 + 64) + (96 * 192 + 96) + (128 * 96 * 9 + 128) + (32 * 192 + 32)
    assert report.totals.params == expected


def test_nested_blocks_prefix_twice_and_reach_inner_layers():
    cbr = {"params": {"out": None, "k": 1}, "layers": [
        {"name": 0, **conv("$out", k="$k", bias=False)}, {"name": 1, "type": "batchnorm2d"},
        {"name": 2, "type": "relu6"}]}
    ir = {"params": {"hidden": None, "out": None}, "layers": [
        {"block": "cbr", "name": "conv.0", "args": {"out": "$hidden"}},
        {"block": "cbr", "name": "conv.1", "args": {"out": "$hidden", "k": 1}},
        {"name": "conv.2", **conv("$out", k=1, bias=False)},
        {"name": "add", "type": "add", "inputs": ["conv.2", "in"]},
        {"name": "tap", "type": "identity", "inputs": "conv.0.1"}]}             # a layer inside a nested instance
    spec = {"input": [4, 5, 5], "blocks": {"cbr": cbr, "ir": ir},
            "layers": [{"block": "ir", "name": "features.3", "args": {"hidden": 24, "out": 4}}]}
    report = analyze(spec)
    assert names(report)[:4] == ["features.3.conv.0.0", "features.3.conv.0.1", "features.3.conv.0.2",
                                 "features.3.conv.1.0"]
    assert report.layer("features.3.add").inputs == ["features.3.conv.2", "input"]
    assert report.layer("features.3.tap").inputs == ["features.3.conv.0.1"]
    expected = (24 * 4 + 2 * 24) + (24 * 24 + 2 * 24) + 4 * 24
    assert report.totals.params == expected


def test_substitution_forms_and_values_of_any_kind():
    block = {"params": {"k": None, "pad": None, "cfg": None},
             "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": "${k}", "padding": "$pad",
                         "name": "c"}, {"type": "$cfg", "name": "act"}]}
    spec = {"input": [1, 10, 12], "blocks": {"b": block},
            "layers": [{"block": "b", "name": "x", "args": {"k": [3, 5], "pad": [[1, 1], [0, 2]], "cfg": "tanh"}}]}
    report = analyze(spec)
    # H: 10 + 2 − 3 + 1 = 10; W: 12 + 2 − 5 + 1 = 10
    assert report.layer("x.c").output_shape == [1, 2, 10, 10]
    assert report.layer("x.act").type == "tanh"
    assert report.totals.params == 2 * 1 * 3 * 5 + 2


def test_unnamed_layers_inside_a_block_get_type_and_position():
    block = {"layers": [conv(4, k=1), {"type": "relu"}, {"repeat": 2, "type": "relu"}]}
    spec = {"input": [2, 3, 3], "blocks": {"b": block}, "layers": [{"block": "b", "name": "u"}]}
    assert names(analyze(spec)) == ["u.conv2d_0", "u.relu_1", "u.relu_2", "u.relu_3"]


def test_blocks_are_expanded_without_touching_the_callers_data():
    spec = {"input": [8, 16, 16], "blocks": {"basic": BASIC},
            "layers": [{"repeat": 2, "name": "layer1", "block": "basic", "args": {"planes": 8}}]}
    before = copy.deepcopy(spec)
    first = analyze(spec).totals.params
    assert spec == before
    assert analyze(spec).totals.params == first == 2 * basic_params(8, 8, down=False)


def test_spec_without_blocks_is_passed_through_unchanged():
    data = {"input": [3], "layers": [{"type": "linear", "out_features": 2}]}
    assert expand(data) is data


# ---------------------------------------------------------------------------------------------------- repeat

def test_repeat_of_blocks_names_like_torchvision_and_overrides_the_first():
    spec = {"input": [16, 32, 32], "blocks": {"basic": BASIC, "basic_down": BASIC_DOWN},
            "layers": [{"repeat": 3, "name": "layer2", "block": "basic", "args": {"planes": 32},
                        "first": {"block": "basic_down"}},
                       {"name": "pool", "type": "global_avgpool"}]}
    report = analyze(spec)
    assert names(report)[:9] == [f"layer2.0.{n}" for n in
                                 ["conv1", "bn1", "relu1", "conv2", "bn2", "downsample.0", "downsample.1", "add",
                                  "relu2"]]
    assert names(report)[9:16] == [f"layer2.1.{n}" for n in BLOCK_LAYER_NAMES]
    assert report.layer("layer2.0.downsample.0").inputs == ["input"]
    assert report.layer("layer2.1.conv1").inputs == ["layer2.0.relu2"]
    assert report.layer("layer2.2.add").inputs == ["layer2.2.bn2", "layer2.1.relu2"]
    assert report.layer("pool").inputs == ["layer2.2.relu2"]
    assert report.layer("layer2.0.relu2").output_shape == [1, 32, 16, 16]    # (32 + 2 − 3)//2 + 1 = 16
    assert report.totals.params == basic_params(16, 32, down=True) + 2 * basic_params(32, 32, down=False)


def test_first_merges_args_key_by_key():
    spec = {"input": [4, 8, 8], "blocks": {"d": BASIC_DOWN},
            "layers": [{"repeat": 2, "name": "s", "block": "d", "args": {"planes": 4, "stride": 1},
                        "first": {"args": {"stride": 2}}}]}
    report = analyze(spec)
    assert report.layer("s.0.conv1").output_shape == [1, 4, 4, 4]           # stride 2 on the first only
    assert report.layer("s.1.conv1").output_shape == [1, 4, 4, 4]
    assert report.layer("s.1.downsample.0").output_shape == [1, 4, 4, 4]    # stride 1, planes 4 kept


def test_repeat_of_a_plain_layer_with_and_without_a_name():
    spec = {"input": [10], "layers": [{"repeat": 3, "name": "fc", "type": "linear", "out_features": 10},
                                      {"repeat": 2, "type": "relu"},
                                      {"name": "out", "type": "identity", "inputs": "fc"}]}
    report = analyze(spec)
    assert names(report) == ["fc.0", "fc.1", "fc.2", "relu_3", "relu_4", "out"]
    assert report.layer("fc.1").inputs == ["fc.0"]
    assert report.layer("out").inputs == ["fc.2"]                            # the repeat's name = its last copy
    assert report.totals.params == 3 * (10 * 10 + 10)


def test_repeat_start_continues_a_flat_numbering():
    spec = {"input": [6], "layers": [
        {"name": "features.0", "type": "linear", "out_features": 6},
        {"repeat": 2, "name": "features", "start": 1, "type": "linear", "out_features": 6},
        {"repeat": 2, "name": "features", "start": 3, "type": "linear", "out_features": 4,
         "first": {"out_features": 5}},
        {"name": "head", "type": "identity", "inputs": "features"}]}
    report = analyze(spec)
    assert names(report) == ["features.0", "features.1", "features.2", "features.3", "features.4", "head"]
    assert report.layer("features.3").inputs == ["features.2"]
    assert report.layer("head").inputs == ["features.4"]
    assert report.totals.params == 3 * (6 * 6 + 6) + (6 * 5 + 5) + (5 * 4 + 4)


def test_repeat_names_copies_from_a_template():
    """torchvision's ViT names its blocks encoder.layers.encoder_layer_0 … _11 (an OrderedDict of names, not a
    Sequential's numbers): ``{i}`` in a repeat's name is the copy's number (from ``start``), inside blocks too."""
    block = {"layers": [{"name": "ln_1", "type": "layernorm"}, {"name": "mlp.0", "type": "linear", "out_features": 4}]}
    spec = {"input": [2, 4], "blocks": {"enc": block}, "layers": [
        {"repeat": 3, "name": "encoder.layers.encoder_layer_{i}", "block": "enc"},
        {"repeat": 2, "name": "head_{i}.fc", "start": 1, "type": "linear", "out_features": 4},
        {"name": "out", "type": "add", "inputs": ["head_2.fc", "encoder.layers.encoder_layer_2"]}]}
    report = analyze(spec)
    assert names(report) == [f"encoder.layers.encoder_layer_{k}.{layer}" for k in range(3) for layer in
                             ("ln_1", "mlp.0")] + ["head_1.fc", "head_2.fc", "out"]
    assert report.layer("encoder.layers.encoder_layer_1.ln_1").inputs == ["encoder.layers.encoder_layer_0.mlp.0"]
    assert report.layer("out").inputs == ["head_2.fc", "encoder.layers.encoder_layer_2.mlp.0"]
    inner = {"input": [4], "blocks": {"stack": {"layers": [{"repeat": 2, "name": "fc_{i}", "type": "linear",
                                                            "out_features": 4}]}},
             "layers": [{"block": "stack", "name": "s"}]}
    assert names(analyze(inner)) == ["s.fc_0", "s.fc_1"]


@pytest.mark.parametrize("name, why", [("layer_{j}", "holds a brace but no {i}"), ("a_{i}_{i}", "exactly once"),
                                       ("{i}}", "no other brace"), ("x{", "holds a brace but no {i}")])
def test_a_repeat_name_template_is_checked(name, why):
    spec = {"input": [4], "layers": [{"repeat": 2, "name": name, "type": "relu"}]}
    with pytest.raises(SpecError, match=re.escape(why)):
        analyze(spec)


def test_repeat_inputs_feed_the_first_copy_only():
    spec = {"input": [4], "layers": [{"name": "a", "type": "linear", "out_features": 4},
                                     {"name": "b", "type": "linear", "out_features": 4},
                                     {"repeat": 2, "name": "r", "type": "relu", "inputs": "a"}]}
    report = analyze(spec)
    assert report.layer("r.0").inputs == ["a"]
    assert report.layer("r.1").inputs == ["r.0"]


def test_repeat_count_from_an_argument():
    block = {"params": {"n": None}, "layers": [{"repeat": "$n", "name": "fc", "type": "linear", "out_features": 3}]}
    spec = {"input": [3], "blocks": {"mlp": block}, "layers": [{"block": "mlp", "name": "m", "args": {"n": 4}}]}
    assert names(analyze(spec)) == ["m.fc.0", "m.fc.1", "m.fc.2", "m.fc.3"]


@settings(max_examples=60)
@given(n=st.integers(1, 6), width=st.integers(1, 8), start=st.integers(0, 5), channels=st.integers(1, 6))
def test_repeat_equals_the_hand_unrolled_spec(n, width, start, channels):
    """A repeated bottleneck-like block gives exactly what the same layers written out one by one give."""
    block = {"params": {"w": None, "c": None}, "layers": [
        {"name": "conv1", **conv("$w", k=1, bias=False)}, {"name": "bn1", "type": "batchnorm2d"},
        {"name": "conv2", **conv("$c", k=3, padding=1)},
        {"name": "add", "type": "add", "inputs": ["conv2", "in"]}]}
    with_blocks = {"input": [channels, 5, 5], "blocks": {"b": block},
                   "layers": [{"repeat": n, "name": "stage", "start": start, "block": "b",
                               "args": {"w": width, "c": channels}}]}
    unrolled = []
    previous = "input"
    for i in range(start, start + n):
        p = f"stage.{i}."
        unrolled += [{"name": p + "conv1", **conv(width, k=1, bias=False), "inputs": [previous]},
                     {"name": p + "bn1", "type": "batchnorm2d"},
                     {"name": p + "conv2", **conv(channels, k=3, padding=1)},
                     {"name": p + "add", "type": "add", "inputs": [p + "conv2", previous]}]
        previous = p + "add"
    a, b = analyze(with_blocks), analyze({"input": [channels, 5, 5], "layers": unrolled})
    assert [(e.name, e.inputs, e.output_shape, e.params, e.macs) for e in a.layers] == \
           [(e.name, e.inputs, e.output_shape, e.params, e.macs) for e in b.layers]
    per_block = width * channels + 2 * width + channels * width * 9 + channels
    assert a.totals.params == n * per_block


# ---------------------------------------------------------------------------------------------------- errors

def spec_with(layers, blocks=None, input_=(4, 8, 8)):
    spec = {"input": list(input_), "layers": layers}
    if blocks is not None:
        spec["blocks"] = blocks
    return spec


SIMPLE = {"params": {"c": None, "k": 1}, "layers": [conv("$c", k="$k", name="conv")]}

ERRORS = [
    (spec_with([{"block": "basc", "name": "b"}], {"basic": BASIC}),
     ["layers[0]", "unknown block 'basc'", "did you mean 'basic'"]),
    (spec_with([{"block": "zzz", "name": "b"}], {"basic": BASIC}), ["unknown block 'zzz'", "(blocks: basic)"]),
    (spec_with([{"block": "basic", "name": "b"}], {"basic": BASIC}),
     ["layers[0] 'b'", "block 'basic' needs argument 'planes'"]),
    (spec_with([{"block": "basic", "name": "b", "args": {"plane": 4}}], {"basic": BASIC}),
     ["layers[0] 'b'", "unknown argument 'plane' for block 'basic'", "did you mean 'planes'"]),
    (spec_with([{"block": "basic", "name": "b", "args": [4]}], {"basic": BASIC}), ["'args' must be a mapping"]),
    (spec_with([{"repeat": 0, "type": "relu"}]), ["layers[0]", "'repeat' must be a positive integer, got 0"]),
    (spec_with([{"repeat": "3", "type": "relu"}]), ["'repeat' must be a positive integer, got '3'"]),
    (spec_with([{"repeat": True, "type": "relu"}]), ["'repeat' must be a positive integer, got True"]),
    (spec_with([{"repeat": 2, "start": -1, "name": "r", "type": "relu"}]), ["'start'", "got -1"]),
    (spec_with([{"repeat": 2, "type": "relu", "first": 3}]), ["'first' must be a mapping"]),
    (spec_with([{"repeat": 2, "type": "relu", "first": {"repeat": 3}}]), ["'first' cannot hold repeat"]),
    (spec_with([{"repeat": 2, "block": "s", "args": {"c": 4}}], {"s": SIMPLE}),
     ["a repeated block needs a 'name'"]),
    (spec_with([{"repeat": MAX_LAYERS + 1, "type": "relu"}]), ["expands to more than 100,000 layers"]),
    (spec_with([{"block": "a", "name": "x"}],
               {"a": {"layers": [{"block": "b", "name": "y"}]}, "b": {"layers": [{"block": "a", "name": "z"}]}}),
     ["block 'a' uses itself: a → b → a"]),
    (spec_with([{"block": "a", "name": "x"}], {"a": {"layers": [{"block": "a", "name": "y"}]}}),
     ["block 'a' uses itself: a → a"]),
    (spec_with([{"block": "s", "args": {"c": 4}}], {"s": SIMPLE}), ["a block instance needs a 'name'"]),
    (spec_with([{"block": "s", "name": "x", "args": {"c": 4}, "inputs": ["input", "input"]}], {"s": SIMPLE}),
     ["a block takes exactly one input, got 2"]),
    (spec_with([{"block": "s", "name": "x", "args": {"c": 4}, "stride": 2}], {"s": SIMPLE}),
     ["unknown field 'stride' in a block instance"]),
    (spec_with([{"block": "s", "name": "x", "args": {"c": 4}}],
               {"s": {"params": ["c"], "layers": [conv("$c", name="a"), {"type": "add", "inputs": ["a", "inn"]}]}}),
     ["layers[0] 'x' (block 's') layers[1]", "unknown input 'inn' in block 's'", "did you mean 'in'"]),
    (spec_with([{"block": "s", "name": "x"}], {"s": {"layers": [{"type": "relu", "inputs": "input"}]}}),
     ["unknown input 'input' in block 's'", "the block's input is 'in'"]),
    (spec_with([{"block": "s", "name": "x", "args": {"c": 4}}],
               {"s": {"params": ["c"], "output": "nope", "layers": [conv("$c", name="a")]}}),
     ["block 's' output 'nope' is not one of its layers"]),
    (spec_with([{"block": "s", "name": "x"}], {"s": {"layers": [{"type": "relu", "name": "a"},
                                                                 {"type": "relu", "name": "a"}]}}),
     ["duplicate name 'a' in block 's'"]),
    (spec_with([{"block": "s", "name": "x"}], {"s": {"layers": [{"type": "relu", "name": "in"}]}}),
     ["the name 'in' is reserved for the block's input"]),
    (spec_with([{"block": "s", "name": "x"}], {"s": {"params": ["c"], "layers": [conv("$cc")]}}),
     ["blocks.s.layers[0]", "'cc' is not a parameter of block 's'", "did you mean 'c'"]),
    (spec_with([{"block": "s", "name": "x"}], {"s": {"params": ["c"], "layers": [conv(3, name="conv_$c")]}}),
     ["'conv_$c'", "must be the whole value"]),
    (spec_with([conv("$c", name="top")]), ["layers[0] 'top'", "'$c' refers to a block argument",
                                           "not inside a block"]),
    (spec_with([{"block": "s", "name": "x"}], {"s": {"layer": []}}), ["blocks.s", "unknown field 'layer'",
                                                                       "did you mean 'layers'"]),
    (spec_with([{"block": "s", "name": "x"}], {"s": {"layers": []}}), ["blocks.s", "'layers' must be a non-empty"]),
    (spec_with([{"block": "s", "name": "x"}], {"s": {"params": {"1x": 2}, "layers": [conv(3)]}}),
     ["argument names must be identifiers"]),
    (spec_with([{"type": "relu"}], [1, 2]), ["blocks: expected a mapping"]),
    (spec_with([{"block": "s", "name": "b", "args": {"c": 4}}, {"name": "b", "type": "relu"}], {"s": SIMPLE}),
     ["layers[1] 'b'", "duplicate name 'b'"]),
    (spec_with([{"block": "s", "name": "x", "inputs": "x"}, {"type": "relu"}],
               {"s": {"output": "in", "layers": [{"type": "relu", "name": "r"}]}}),
     ["the input 'in' leads back to itself"]),
]


@pytest.mark.parametrize("spec, fragments", ERRORS)
def test_mistakes_are_one_line_spec_errors_naming_where(spec, fragments):
    with pytest.raises(SpecError) as info:
        layercalc.load(spec)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_a_layer_from_a_block_fails_validation_under_its_full_name():
    spec = spec_with([{"block": "s", "name": "stage", "args": {"c": 4, "k": 0}}], {"s": SIMPLE})
    with pytest.raises(SpecError, match=r"'stage\.conv' \(conv2d\).*kernel_size"):
        layercalc.load(spec)


def test_shape_errors_inside_an_instance_name_the_full_layer_name():
    spec = spec_with([{"block": "s", "name": "stage", "args": {"c": 4, "k": 9}}], {"s": SIMPLE})
    with pytest.raises(layercalc.ShapeError, match=r"'stage\.conv' \(conv2d\)"):
        layercalc.load(spec).analyze()


def test_an_instance_fed_by_its_own_output_is_a_cycle():
    spec = spec_with([{"block": "s", "name": "x", "inputs": "x"}], {"s": {"layers": [{"type": "relu", "name": "r"}]}})
    with pytest.raises(GraphError, match=r"'x\.r' \(relu\): takes its own output"):
        layercalc.load(spec).analyze()


def test_unknown_top_level_input_is_left_to_the_graph_check():
    spec = spec_with([{"block": "s", "name": "x", "args": {"c": 4}}, {"type": "relu", "inputs": "y"}],
                     {"s": SIMPLE})
    with pytest.raises(GraphError, match="unknown input 'y'"):
        layercalc.load(spec).analyze()


def test_yaml_spec_with_blocks(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("""
input: [3, 32, 32]
blocks:
  conv_bn:
    params: {out: ~, stride: 1}
    layers:
      - {name: 0, type: conv2d, out_channels: $out, kernel_size: 3, stride: $stride, padding: 1, bias: false}
      - {name: 1, type: batchnorm2d}
      - {name: 2, type: relu}
layers:
  - {repeat: 3, name: features, block: conv_bn, args: {out: 16}, first: {args: {stride: 2}}}
""")
    report = layercalc.load(path).analyze()
    assert names(report)[:4] == ["features.0.0", "features.0.1", "features.0.2", "features.1.0"]
    assert report.layer("features.2.2").output_shape == [1, 16, 16, 16]
    assert report.totals.params == (16 * 3 * 9 + 32) + 2 * (16 * 16 * 9 + 32)


# ------------------------------------------------------------------------------------------------------- fold

def _chain(prefix: str, count: int, start: int = 0) -> list[dict]:
    """``count`` residual blocks ``prefix.k``: fc → add(fc, block input)."""
    layers, previous = [], "input"
    for k in range(start, start + count):
        layers += [{"name": f"{prefix}.{k}.fc", "type": "linear", "out_features": 4},
                   {"name": f"{prefix}.{k}.add", "type": "add", "inputs": [f"{prefix}.{k}.fc", previous]}]
        previous = f"{prefix}.{k}.add"
    return layers


def test_fold_writes_identical_blocks_once_and_expands_back():
    from layercalc.blocks import fold
    flat = {"input": [4], "layers": [{"name": "stem", "type": "linear", "out_features": 4}] + _chain("h", 3, 1)}
    flat["layers"][1 + 1]["inputs"] = ["h.1.fc", "stem"]            # the first block reads the stem
    folded = fold(flat)
    assert folded["layers"][1] == {"repeat": 3, "name": "h", "block": "h", "start": 1}
    assert folded["blocks"]["h"]["layers"] == [{"name": "fc", "type": "linear", "out_features": 4},
                                               {"name": "add", "type": "add", "inputs": ["fc", "in"]}]
    assert layercalc.load(folded).analyze().model_dump() == layercalc.load(flat).analyze().model_dump()


def test_fold_writes_underscore_numbered_copies_as_a_template():
    """torchvision ViT's ``encoder.layers.encoder_layer_0`` … (what ``from_torch`` names them): folded to one
    ``{i}`` repeat, which expands back to the same layers; ``x_01`` (a leading 0) is not a copy number."""
    from layercalc.blocks import fold
    layers, previous = [{"name": "stem", "type": "linear", "out_features": 4}], "stem"
    for k in range(3):
        name = f"encoder.layers.encoder_layer_{k}"
        layers += [{"name": f"{name}.fc", "type": "linear", "out_features": 4},
                   {"name": f"{name}.add", "type": "add", "inputs": [f"{name}.fc", previous]}]
        previous = f"{name}.add"
    flat = {"input": [4], "layers": layers}
    folded = fold(flat)
    assert folded["layers"][1] == {"repeat": 3, "name": "encoder.layers.encoder_layer_{i}",
                                   "block": "encoder_layers_encoder_layer"}
    assert layercalc.load(folded).analyze().model_dump() == layercalc.load(flat).analyze().model_dump()
    padded = {"input": [4], "layers": [{**layer, "name": layer["name"].replace("_1.", "_01.")} for layer in layers]}
    padded["layers"][4]["inputs"] = ["encoder.layers.encoder_layer_01.fc", "encoder.layers.encoder_layer_0.add"]
    padded["layers"][6]["inputs"] = ["encoder.layers.encoder_layer_2.fc", "encoder.layers.encoder_layer_01.add"]
    assert all("repeat" not in entry for entry in fold(padded)["layers"])


def test_fold_leaves_blocks_that_read_other_tensors_flat():
    from layercalc.blocks import fold
    layers = _chain("h", 3)
    layers[5]["inputs"] = ["h.2.fc", "h.0.fc"]                       # block 2 reads inside block 0: not a repeat
    folded = fold({"input": [4], "layers": layers})
    assert "blocks" not in folded or all(entry.get("name") != "h" or entry.get("repeat", 0) < 3
                                         for entry in folded["layers"])
    assert layercalc.load(folded).analyze().model_dump() == layercalc.load(
        {"input": [4], "layers": layers}).analyze().model_dump()


def test_fold_keeps_a_different_first_block_and_specs_with_blocks_as_they_are():
    from layercalc.blocks import fold
    layers = _chain("h", 3)
    layers[0]["out_features"] = 4
    layers[0]["bias"] = False                                        # block 0 differs: blocks 1–2 fold
    folded = fold({"input": [4], "layers": layers})
    assert folded["layers"][-1] == {"repeat": 2, "name": "h", "block": "h", "start": 1}
    spec = {"input": [4], "blocks": {"b": {"layers": [{"type": "relu"}]}}, "layers": [{"block": "b"}]}
    assert fold(spec) == spec
