"""`layercalc convert` / `layercalc.convert`: any source written as a spec that reads back to the same network."""

import pytest
from typer.testing import CliRunner

import layercalc
from layercalc import zoo
from layercalc.cli import get_app
from layercalc.spec import parse_text


@pytest.mark.parametrize("name", zoo.list_models())
def test_a_converted_zoo_spec_gives_the_same_report(name):
    text = layercalc.convert(f"zoo:{name}")
    again = layercalc.load(parse_text(text, f"{name}.yaml"))
    original = zoo.load(name)
    assert again.analyze().model_dump() == original.analyze().model_dump()


def test_converted_specs_keep_blocks_and_write_one_layer_per_line():
    text = layercalc.convert("zoo:gpt2")
    assert "blocks:\n  block:\n" in text
    assert "  - {repeat: 12, name: transformer.h, block: block}\n" in text


def test_convert_refuses_what_summary_refuses(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [10]\nlayers:\n  - {type: linear, out_features: 0}\n")
    with pytest.raises(layercalc.LayerCalcError, match="out_features"):
        layercalc.convert(bad)


def test_cli_convert_writes_the_file(tmp_path):
    out = tmp_path / "mnist.yaml"
    result = CliRunner().invoke(get_app(), ["convert", "zoo:mnist_cnn", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert layercalc.load(out).analyze().totals.params == 93_322   # Keras' count for its classic MNIST convnet
