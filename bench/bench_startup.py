"""Start-up time of the installed `layercalc` command, end to end (target: `layercalc size 28 -k 3` under 0.3 s).

Run: python bench/bench_startup.py [--runs 21] [--command "size 28 -k 3"] [--all]

Each run is a fresh process (subprocess), as a user at a terminal would start it. Prints the median and the
quartiles of the wall time, and the median CPU time of the child (user + system), which is less disturbed by other
processes on a busy machine. For reference it also times a bare `python -c pass` with the same interpreter: the
floor no Python command can go below. It also times `summary examples/mnist_cnn.yaml` (which imports the Pydantic
layer models, YAML and tabulate); `--all` adds a calculator and `--help`.

The `layercalc` found on PATH may be a wrapper (pyenv's shim is a bash script that runs `pyenv exec`, adding
~0.1 s); the script the package installed next to the interpreter is timed as well when it differs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import precompile_layercalc


def time_command(argv: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and child-CPU seconds of ``runs`` fresh processes (one warm-up run first, not counted)."""
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    walls, cpus = [], []
    for _ in range(runs):
        before = os.times()
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        walls.append(time.perf_counter() - start)
        after = os.times()
        cpus.append((after.children_user - before.children_user) + (after.children_system - before.children_system))
        if done.returncode != 0:
            raise SystemExit(f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return walls, cpus


def report(label: str, walls: list[float], cpus: list[float], target: float | None = None) -> None:
    q1, median, q3 = statistics.quantiles(walls, n=4) if len(walls) >= 2 else (walls[0],) * 3
    verdict = ""
    if target is not None:
        verdict = f"  {'OK' if median < target else 'over'} target {target:.2f} s"
    print(f"{label:<48} median {median:.3f} s (quartiles {q1:.3f}–{q3:.3f}), CPU {statistics.median(cpus):.3f} s"
          f"{verdict}")


def installed_scripts() -> list[tuple[str, str]]:
    """The `layercalc` on PATH, and the script next to this interpreter if it is a different file."""
    found = []
    on_path = shutil.which("layercalc")
    if on_path:
        found.append(("layercalc (PATH)", on_path))
    beside = Path(sys.executable).with_name("layercalc")
    if beside.exists() and (not on_path or Path(on_path).resolve() != beside.resolve()):
        found.append(("layercalc (next to the interpreter)", str(beside)))
    if not found:
        raise SystemExit("layercalc is not installed: pip install -e .")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--command", default="size 28 -k 3", help="arguments after `layercalc`")
    parser.add_argument("--all", action="store_true", help="also time a calculator and --help")
    args = parser.parse_args()
    print(precompile_layercalc())

    print(f"{args.runs} runs each; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n")
    report("python -c pass (floor)", *time_command([sys.executable, "-c", "pass"], args.runs))
    examples = Path(__file__).resolve().parent.parent / "examples" / "mnist_cnn.yaml"
    commands = [args.command, f"summary {examples}"]
    if args.all:
        commands += ["conv2d -i 1x28x28 --out-channels 32 -k 3", "--help"]
    for label, script in installed_scripts():
        for command in commands:
            shown = command.replace(f"{examples.parent.parent}/", "") if command.startswith("summary") else command
            shown = shown if len(shown) < 40 else shown[:37] + "…"
            target = 0.3 if command == "size 28 -k 3" else None
            report(f"{label.split(' ')[0]} {shown}" + (" [shim]" if "PATH" in label and "shims" in script else ""),
                   *time_command([script, *shlex.split(command)], args.runs), target)


if __name__ == "__main__":
    main()
