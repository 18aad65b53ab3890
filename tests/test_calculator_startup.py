"""A per-layer calculator registers its own command only (issue 20, item 7): no other calculator is generated and
no family after the one that holds its type is imported — the rest of the ~96 commands and the transformer and
recurrent families were most of `layercalc conv2d`'s start-up."""

import subprocess
import sys
from pathlib import Path

import typer

from layercalc.cli import get_app

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys
from layercalc.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("families:", sorted(m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("layercalc.layers.")
                          and m.rsplit(".", 1)[1] in ("norm", "merge", "attention", "recurrent", "sequence")))
print("exit:", code)
"""


def probe(*args: str) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_a_calculator_imports_only_the_families_up_to_its_own():
    out = probe("conv2d", "-i", "1x28x28", "--out-channels", "32", "-k", "3")
    assert "families: []" in out and "exit: 0" in out
    assert "params           320" in out                       # 3·3·1·32 + 32
    out = probe("lstm", "-i", "5x10", "--hidden-size", "20")
    # PyTorch's LSTM: 4 gates · (input 10·20 + hidden 20·20 + two biases 2·20) = 4·640 = 2,560 params
    assert "2,560" in out and "exit: 0" in out
    assert "'recurrent'" in out


def test_the_one_command_app_and_the_full_one():
    one = typer.main.get_command(get_app(True, "dense"))
    assert set(one.commands) == {"dense"}                      # an alias: its own calculator
    full = typer.main.get_command(get_app(True))
    assert {"conv2d", "dense", "lstm", "summary", "types", "draw"} <= set(full.commands)


def test_an_unknown_name_still_gets_suggestions():
    out = probe("conv2x", "-i", "3")
    assert "no such command 'conv2x'. Did you mean 'conv2d'" in out and "exit: 2" in out
