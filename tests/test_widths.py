"""Every default output fits the terminal (issue 20): each `layercalc …` command of the README's and docs' console
blocks, and the everyday commands people try first, run at COLUMNS=80 and 120 with no line wider than that.

A command naming a file that is not in the repository (the docs' `model.onnx`, `config.json`) is left out, and said
so by the test that lists them. ``--wide`` gives every line in full; error lines wrap when a width is asked for.
"""

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from layercalc.cli import get_app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WIDTHS = (80, 120)

#: file names the docs use for the reader's own files (not in the repository)
FILE_WORD = re.compile(r"\.(onnx|keras|h5|json|npy|npz|yaml|yml|py)$")


def documented_commands() -> list[str]:
    """The ``layercalc …`` lines of every ```console and ```sh block: ``$ layercalc …`` (console) or
    ``layercalc …`` (sh), comments and pipes cut off."""
    commands = []
    for path in DOCS:
        for kind, block in re.findall(r"```(console|sh|shell|bash)\n(.*?)```", path.read_text(), re.S):
            for line in block.splitlines():
                line = line.strip()
                if kind == "console":
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                line = line.split(" #", 1)[0].split(" | ", 1)[0].strip()
                if line.startswith("layercalc "):
                    commands.append(line)
    return commands


def runnable(command: str) -> bool:
    """Every file the command names exists (relative to the repository), and it writes no file."""
    words = shlex.split(command)
    if any(a in ("-o", "--output") and FILE_WORD.search(b) for a, b in zip(words, words[1:])):
        return False
    return all((ROOT / w).exists() for w in words[1:] if FILE_WORD.search(w) and not w.startswith("-"))


EVERYDAY = [
    "layercalc solve --input 28 --output 14",
    "layercalc solve --input 7 --output 14 --transposed",
    "layercalc solve --input 3 --output 1000 -k 3",
    "layercalc size 224 -k 7 -s 2 -p 3 --explain",
    "layercalc size 28 -k 3 -s 2",
    "layercalc verify examples/mnist_cnn.yaml",
    "layercalc verify examples/residual_small.yaml",
    "layercalc run examples/mnist_cnn.yaml",
    "layercalc zoo",
    "layercalc conv2d --input 1x28x28 --out-channels 32 -k 3 --explain",
    "layercalc conv1d -i 3x50 --out-channels 8 -k 5 -s 2 -p 1 --explain",
    "layercalc multi_head_attention -i 10x64 --num-heads 4 --explain",
    "layercalc maxpool2d -i 64x11x11 -k 2 --explain",
    "layercalc linear -i 25,088 --out-features 4096 --explain",
    "layercalc types",
    # (draw writes DOT, Mermaid or SVG: file formats, never cut to a width, like CSV and JSON)
    "layercalc chart zoo:resnet18",
    "layercalc chart zoo:gpt2 --input 64",
    "layercalc --help",
    "layercalc conv2d --help",
    "layercalc solve --help",
]
SUMMARIES = [
    "layercalc summary zoo:resnet50",
    "layercalc summary zoo:gpt2 --depth 1",
    "layercalc summary zoo:llama3_8b",
    "layercalc summary examples/mnist_cnn.yaml",
    "layercalc summary zoo:resnet18 --train",
    "layercalc summary zoo:gpt2 --train --precision bf16-mixed --optimizer adamw --recompute",
    "layercalc summary zoo:llama3_8b --train --numbers human",
    "layercalc summary zoo:lenet5 --train --optimizer sgd",
    "layercalc summary zoo:gpt2 --train --input 256",
    "layercalc summary zoo:llama3_8b --train --depth 1",
    "layercalc summary zoo:llama3_8b --past 8191 --dtype bfloat16",
    "layercalc summary zoo:gpt2 --past 127 --new-tokens 4",
    "layercalc summary examples/mnist_cnn.yaml --explain",
    "layercalc summary zoo:resnet18 --explain --train",
    "layercalc summary zoo:gpt2 --input 16 --explain",
]


def cases() -> list:
    out = []
    for command in dict.fromkeys(documented_commands() + EVERYDAY + SUMMARIES):
        if not runnable(command):
            continue
        marks: list = []                        # (summary fits since the display branch: no case is pending)
        out += [pytest.param(command, width, marks=marks, id=f"{width}:{command[10:70]}") for width in WIDTHS]
    return out


def wide_lines(text: str, width: int) -> list[str]:
    return [line for line in text.split("\n") if len(line) > width]


@pytest.mark.parametrize("command, width", cases())
def test_default_output_fits_the_terminal(command, width, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner(env={"COLUMNS": str(width)}).invoke(get_app(), shlex.split(command)[1:])
    assert result.exit_code == 0, (command, result.stdout, result.stderr)
    wide = wide_lines(result.stdout + result.stderr, width)
    assert not wide, f"{command}: {len(wide)} line(s) wider than {width}:\n" + "\n".join(wide[:5])


def test_the_docs_commands_are_found_and_most_run():
    commands = documented_commands()
    assert any(c.startswith("layercalc conv2d") for c in commands)       # the README's session
    assert any(c.startswith("layercalc solve") for c in commands)
    skipped = [c for c in commands if not runnable(c)]
    # the docs' model.onnx / model.keras / config.json stand for the reader's own files
    assert all(re.search(r"model\.|config\.json|x\.npy|-o ", c) for c in skipped), skipped


def test_wide_gives_every_line_in_full():
    """--wide: the solve table keeps its full `L_out = …` check column, whatever COLUMNS says."""
    args = ["solve", "--input", "28", "--output", "14", "--limit", "1"]
    narrow = CliRunner(env={"COLUMNS": "80"}).invoke(get_app(), args).stdout
    wide = CliRunner(env={"COLUMNS": "80"}).invoke(get_app(), [*args, "--wide"]).stdout
    # floor((28 + 2·0 − 1·(1 − 1) − 1) / 2) + 1 = 14: kernel 1, stride 2, padding 0, dilation 1
    assert "L_out = floor((28 + 2·0 − 1·(1 − 1) − 1) / 2) + 1 = 14" in wide
    assert "floor((28+2·0−1·(1−1)−1)/2)+1 = 14" in narrow and "L_out" not in narrow.split("\n", 2)[2]
    assert max(map(len, wide.splitlines())) > 80


def test_width_option_sets_the_width_anywhere():
    args = ["conv2d", "-i", "1x28x28", "--out-channels", "32", "-k", "3"]
    at_50 = CliRunner(env={"COLUMNS": "120"}).invoke(get_app(), [*args, "--width", "50"]).stdout
    at_60 = CliRunner(env={"COLUMNS": "120"}).invoke(get_app(), ["--width=60", *args]).stdout
    assert max(map(len, at_50.splitlines())) <= 50 < max(map(len, at_60.splitlines())) <= 60
    # the same figures, only laid out differently: 3·3·1·32 + 32 = 320 params, 26·26·32·9 = 194,688 MACs
    for text in (at_50, at_60):
        assert "320" in text and "194,688" in text


@pytest.mark.parametrize("value", ["abc", "0", "-3", ""])
def test_a_bad_width_is_one_line_and_exit_2(value):
    result = CliRunner().invoke(get_app(), ["size", "28", "-k", "3", "--width", value])
    assert result.exit_code == 2 and result.stderr.startswith("layercalc: error: --width")
    assert result.stderr.count("\n") == 1


def test_error_lines_wrap_at_the_width_asked_for_and_stay_one_line_in_a_pipe():
    args = ["conv2d", "-i", "1x2x2", "--out-channels", "4", "-k", "5"]       # a kernel larger than the input
    piped = CliRunner().invoke(get_app(), args)
    assert piped.exit_code == 2 and piped.stderr.count("\n") == 1 and len(piped.stderr) > 60
    fitted = CliRunner().invoke(get_app(), [*args, "--width", "60"])
    assert fitted.exit_code == 2
    lines = fitted.stderr.rstrip("\n").split("\n")
    assert len(lines) > 1 and all(len(line) <= 60 for line in lines)
    assert lines[0].startswith("layercalc: error: ") and all(line.startswith("    ") for line in lines[1:])
    # the same words, only broken into lines
    assert " ".join(fitted.stderr.split()) == " ".join(piped.stderr.split())


def test_verify_table_keeps_both_values_of_a_differing_layer_when_narrowed():
    from layercalc.cli.execute import verify_table
    from layercalc.terminal import UNLIMITED
    from layercalc.verify import LayerCheck

    name = "model.layers.31.self_attn.q_proj_with_a_long_name"
    checks = [LayerCheck(0, "conv1", "conv2d", [1, 64, 112, 112], [1, 64, 112, 112], 118_013_952, 118_013_952),
              LayerCheck(1, name, "linear", [1, 8, 4096], [1, 8, 4095], 134_217_728, 134_184_960)]
    wide = verify_table(checks, "exact", UNLIMITED)
    assert wide.splitlines()[0].split() == ["#", "name", "type", "expected", "shape", "actual", "shape",
                                            "expected", "MACs", "actual", "MACs", "ok"]
    assert name in wide and "134,217,728" in wide and "134,184,960" in wide
    narrow = verify_table(checks, "exact", 80)
    lines = narrow.splitlines()
    assert max(map(len, lines)) <= 80
    assert "[1, 8, 4096] ≠ [1, 8, 4095]" in lines[3] and lines[3].endswith("✗")
    assert "134,217,728 ≠ 134,184,960" in lines[3]        # a difference exactly, though "134 M" both
    assert lines[2].endswith("✓") and "[1, 64, 112, 112]" in lines[2]
