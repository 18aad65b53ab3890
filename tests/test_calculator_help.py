"""A calculator's --help states each switch's default as the layer model has it (issue 19: `multi_head_attention
--help` said "--qkv-bias … default off" while the projections' biases are on by default)."""

import typer
from typer.testing import CliRunner

from layercalc.cli import get_app
from layercalc.cli.calculators import _layer_fields, field_kind
from layercalc.layers import LAYER_CLASSES, LAYER_TYPES

runner = CliRunner()


def option_help(type_name: str) -> dict[str, str]:
    group = typer.main.get_command(get_app())
    with group.make_context("layercalc", [type_name, "--help"], resilient_parsing=True) as ctx:
        command = group.get_command(ctx, type_name)
    return {param.name: " ".join((param.help or "").split()) for param in command.params}


def test_every_bool_option_states_the_model_default():
    checked = 0
    for cls in LAYER_CLASSES:
        name = cls.model_fields["type"].default
        helps = None
        for field, info in _layer_fields(cls):
            if field_kind(field, info.annotation) != "bool":
                continue
            helps = helps or option_help(name)
            text = helps[field]
            if info.default is True:
                assert "default on" in text and "default off" not in text, (name, field, text)
            elif info.default is False:
                assert "default off" in text and "default on" not in text, (name, field, text)
            else:      # decided by another field or the layer's rule: the help must not claim on or off
                assert "default on" not in text and "default off" not in text, (name, field, text)
                assert "default" in text, (name, field, text)
            checked += 1
    assert checked >= 40


def test_qkv_bias_is_on_by_default_as_its_help_says():
    helps = option_help("multi_head_attention")
    assert "default off" not in helps["qkv_bias"] and "default: bias" in helps["qkv_bias"]
    # E = 64: four projections E·E + E each = 4·(4,096 + 64) = 16,640 with every bias; qkv off drops 3·64
    on = runner.invoke(get_app(), ["multi_head_attention", "-i", "10x64", "--num-heads", "4", "--json"])
    off = runner.invoke(get_app(), ["multi_head_attention", "-i", "10x64", "--num-heads", "4", "--no-qkv-bias",
                                    "--json"])
    assert '"params": 16640' in on.stdout and '"params": 16448' in off.stdout
    assert LAYER_TYPES["multi_head_attention"].model_fields["qkv_bias"].default is None
