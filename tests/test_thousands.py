"""Numbers written with thousands separators (issue 20, item 4): ``-i 25,088`` is one number of 25,088 — VGG's
flattened 7·7·512 features — never the shape [25, 88]; a text that reads both ways is refused with the two ways to
write it; shapes written with commas (``1,28,28``) stay shapes."""

import pytest
from typer.testing import CliRunner

from layercalc.cli import get_app
from layercalc.cli.options import parse_int, parse_ints, parse_shape
from layercalc.errors import SpecError

runner = CliRunner()


@pytest.mark.parametrize("text, shape", [
    ("25,088", [25088]),             # 088 is no size anyone writes: one number
    ("1,000", [1000]),               # the shape reading would hold a 0
    ("1,000,000", [1000000]),
    ("1x25,088", [1, 25088]),        # x separates the sizes; the comma groups thousands inside one
    ("2,048x7x7", [2048, 7, 7]),
    ("1,28,28", [1, 28, 28]),        # 28 is two digits: no thousands grouping, a shape
    ("7,7,512", [7, 7, 512]),
    ("3,32,20", [3, 32, 20]),
    ("1x28x28", [1, 28, 28]),
])
def test_each_reading(text, shape):
    assert parse_shape(text) == shape


@pytest.mark.parametrize("text", ["3,224,224", "64,128", "1,224"])
def test_a_text_that_reads_both_ways_is_refused_with_the_fix(text):
    with pytest.raises(SpecError) as info:
        parse_shape(text)
    parts = text.split(",")
    message = str(info.value)
    assert f"write {'x'.join(parts)} for a shape or {''.join(parts)} for a number" in message
    assert message.startswith("--input: ")


def test_a_comma_inside_a_size_must_group_thousands():
    with pytest.raises(SpecError, match="mixes ','"):
        parse_shape("1x2,04")


def test_integer_options_read_grouped_numbers():
    assert parse_int("1,024", "--out-channels") == 1024
    assert parse_ints("1,024", "--kernel-size") == 1024
    assert parse_ints("3,5", "--kernel-size") == [3, 5]
    with pytest.raises(SpecError):
        parse_int("1,02", "--out-channels")


def test_the_calculator_counts_25088_inputs_not_a_shape_of_25_by_88():
    # VGG-16's classifier[0]: 25,088 → 4,096 with bias = 25,088·4,096 + 4,096 = 102,764,544 params
    result = runner.invoke(get_app(), ["linear", "-i", "25,088", "--out-features", "4096", "--wide"])
    assert result.exit_code == 0, result.stderr
    assert "102,764,544" in result.stdout and "[1, 25088]" in result.stdout
    refused = runner.invoke(get_app(), ["linear", "-i", "3,224,224", "--out-features", "10"])
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1
    assert "3x224x224 for a shape or 3224224 for a number" in refused.stderr


def test_whole_number_options_of_the_general_commands_read_grouped_numbers():
    # floor((1,024 − 3) / 1) + 1 = 1,022
    result = runner.invoke(get_app(False), ["size", "1,024", "-k", "3", "-q"])
    assert result.exit_code == 0 and result.stdout.strip() == "1022"
    summary = runner.invoke(get_app(False), ["summary", "zoo:vgg16", "-i", "3,224,224", "-f", "json"])
    assert summary.exit_code == 2 and "3x224x224 for a shape" in summary.stderr
