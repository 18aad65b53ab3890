"""The JSON Schema design tools validate specs against: it must accept what the loader accepts (every example,
every zoo network, Keras spellings, blocks) and reject what the loader rejects for a structural reason."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

import layercalc
from layercalc.layers import LAYER_TYPES

ROOT = Path(__file__).resolve().parent.parent
SPEC_FILES = sorted(ROOT.glob("examples/*.yaml")) + sorted((ROOT / "layercalc" / "zoo").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator():
    schema = layercalc.schema()
    jsonschema.Draft202012Validator.check_schema(schema)          # a valid JSON Schema document
    return jsonschema.Draft202012Validator(schema)


def test_schema_lists_every_layer_type():
    schema = layercalc.schema()
    mapping = schema["$defs"]["Layer"]["discriminator"]["mapping"]
    assert set(mapping) == set(LAYER_TYPES)
    assert schema["required"] == ["input", "layers"]
    json.dumps(schema)                                  # serializable as is


def test_schema_describes_conv_fields_with_pytorch_and_keras_names():
    conv = layercalc.schema()["$defs"]["Conv2d"]
    assert conv["required"] == ["kernel_size"]
    assert {"anyOf": [{"required": ["out_channels"]}, {"required": ["filters"]}]} in conv["allOf"]
    assert conv["additionalProperties"] is False
    assert {"strides", "use_bias", "dilation_rate"} <= set(conv["properties"])
    padding_forms = conv["properties"]["padding"]["anyOf"]
    assert {"enum": ["same", "valid"], "type": "string"} in padding_forms


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_bundled_spec_is_valid_under_the_schema(validator, path):
    data = yaml.safe_load(path.read_text())
    errors = [e.message for e in validator.iter_errors(data)]
    assert errors == []
    layercalc.load(path).analyze()                     # and the loader agrees


@pytest.mark.parametrize("bad", [
    {"input": [1, 28, 28], "layers": [{"type": "conv2d", "out_chanels": 8, "kernel_size": 3}]},   # misspelled field
    {"input": [1, 28, 28], "layers": [{"type": "conv2d", "kernel_size": 3}]},                     # missing out_channels
    {"input": [1, 28, 28], "layers": [{"type": "convolution", "out_channels": 8, "kernel_size": 3}]},  # unknown type
    {"input": [1, 28, 28], "layers": [{"type": "conv2d", "out_channels": 0, "kernel_size": 3}]},  # not positive
    {"input": [1, 28, 28], "layers": [{"type": "relu"}], "batchsize": 2},                         # unknown top field
    {"layers": [{"type": "relu"}]},                                                               # no input
    {"input": [3], "layers": []},                                                                  # no layers
    {"input": [3], "layers": "relu"},                                                              # not a list
    {"input": [4], "layers": [{"block": "b", "argz": {}}]},                                        # bad instance field
    {"input": [4], "blocks": {"b": {"params": {"n": None}}}, "layers": [{"block": "b"}]},          # block without layers
])
def test_structural_mistakes_are_refused_by_both_the_schema_and_the_loader(validator, bad):
    assert list(validator.iter_errors(bad)), "the schema accepted it"
    with pytest.raises(layercalc.LayerCalcError):
        layercalc.load(bad).analyze()


def test_blocks_and_repeat_validate(validator):
    spec = {"input": [8, 16, 16],
            "blocks": {"unit": {"params": {"width": None},
                                "layers": [{"name": "conv", "type": "conv2d", "out_channels": "$width",
                                            "kernel_size": 3, "padding": 1},
                                           {"name": "add", "type": "add", "inputs": ["conv", "in"]}]}},
            "layers": [{"repeat": 2, "name": "stage", "block": "unit", "args": {"width": 8}},
                       {"type": "flatten"}, {"type": "dense", "units": 10}]}
    assert list(validator.iter_errors(spec)) == []
    report = layercalc.load(spec).analyze()
    # two 3×3 convs 8→8 with bias: 2·(3·3·8·8 + 8) = 1,168; dense 8·16·16 → 10: 20,480 + 10
    assert report.totals.params == 2 * (3 * 3 * 8 * 8 + 8) + 8 * 16 * 16 * 10 + 10
    assert [layer.name for layer in report.layers][:2] == ["stage.0.conv", "stage.0.add"]


def test_a_network_round_trips_through_json():
    net = layercalc.load("examples/mnist_cnn.yaml")
    again = layercalc.load(json.loads(net.model_dump_json(exclude_none=True)))
    assert again.analyze().totals == net.analyze().totals


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_reports_are_valid_instances_of_their_own_schema(path):
    # analyze() fills the report models without validation (start-up time): validating the dump must give back
    # an equal report, i.e. every value already had its declared type
    from layercalc.report import Report
    report = layercalc.load(path).analyze()
    assert Report.model_validate_json(report.model_dump_json()) == report
    assert all(type(v) is int for e in report.layers for v in (e.params, e.macs, e.flops, e.buffers))
