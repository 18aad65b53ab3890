"""The JSON Schema design tools validate specs against."""

import json

import layercalc
from layercalc.layers import LAYER_TYPES


def test_schema_lists_every_layer_type():
    schema = layercalc.schema()
    mapping = schema["properties"]["layers"]["items"]["discriminator"]["mapping"]
    assert set(mapping) == set(LAYER_TYPES)
    assert schema["required"] == ["input", "layers"]
    json.dumps(schema)                                  # serializable as is


def test_schema_describes_conv_fields_with_pytorch_names():
    conv = layercalc.schema()["$defs"]["Conv2d"]
    assert conv["required"] == ["out_channels", "kernel_size"]
    assert conv["additionalProperties"] is False
    padding_forms = conv["properties"]["padding"]["anyOf"]
    assert {"enum": ["same", "valid"], "type": "string"} in padding_forms


def test_a_network_round_trips_through_json():
    net = layercalc.load("examples/mnist_cnn.yaml")
    again = layercalc.load(json.loads(net.model_dump_json(exclude_none=True)))
    assert again.analyze().totals == net.analyze().totals
