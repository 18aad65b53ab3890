"""The README's examples are real: its YAML specs load, its Python snippet runs and prints what it says."""

import re
from pathlib import Path

import yaml

import layercalc

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def yaml_blocks() -> list[dict]:
    return [yaml.safe_load(text) for text in re.findall(r"```yaml\n(.*?)```", README, re.S)]


def test_the_blocks_example_is_the_start_of_a_resnet():
    spec = next(b for b in yaml_blocks() if isinstance(b, dict) and "blocks" in b)
    report = layercalc.load(spec).analyze()
    stem = 7 * 7 * 3 * 64                                   # conv1, no bias
    basic = 2 * (3 * 3 * 64 * 64) + 2 * (2 * 64)            # two 3×3 convs + two BatchNorms (weight and bias)
    assert report.totals.params == stem + 2 * basic
    assert report.layers[-1].name == "layer1.1.relu2"
    assert report.layers[-1].output_shape == [1, 64, 112, 112]


def test_the_spec_format_example_loads():
    spec = next(b for b in yaml_blocks() if isinstance(b, dict) and b.get("name") == "mnist-cnn")
    report = layercalc.load(spec).analyze()
    assert report.layers[-1].output_shape == [1, 32, 13, 13]     # floor((28 − 3 + 1) / 2) = 13


def test_the_library_snippet_runs(capsys):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    # the snippet's own network: conv 3·3·1·32 + 32 = 320; 2×2 pool → 32·13·13 = 5,408 features; dense 5,408·10 + 10
    assert f'"params": {320 + 5408 * 10 + 10}' in printed
    report = layercalc.load("examples/mnist_cnn.yaml").analyze()
    assert report.totals.params == 93_322                     # the README's comment; Keras' published summary
    assert report.layers[0].output_shape == [1, 32, 26, 26]


def session_commands() -> list[tuple[str, str]]:
    session = re.search(r"```console\n(.*?)```", README, re.S).group(1)
    parts = re.split(r"^\$ ", session, flags=re.M)[1:]
    return [(part.split("\n", 1)[0], part.split("\n", 1)[1].rstrip()) for part in parts]


def test_the_readme_session_is_what_the_cli_prints(monkeypatch):
    import shlex

    from typer.testing import CliRunner

    from layercalc.cli import get_app

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    commands = session_commands()
    assert len(commands) >= 4
    for command, shown in commands:
        args = shlex.split(command)
        assert args[0] == "layercalc"
        result = CliRunner(env={"COLUMNS": "80"}).invoke(get_app(), args[1:])      # the session is at 80 columns
        assert result.exit_code == 0, command
        assert result.stdout.rstrip() == shown, command
