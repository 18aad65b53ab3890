"""Start-up of `layercalc summary` for several checkouts, interleaved (one run of each per round), so that a noisy
machine disturbs them alike. Each checkout's package is put on PYTHONPATH and its bytecode compiled first.

Run: python bench/bench_startup_compare.py DIR [DIR ...] [--rounds 25] [--command "summary examples/mnist_cnn.yaml"]

Make a checkout of an older commit with `git worktree add /tmp/old <commit>`. Prints the median, first quartile and
minimum wall time per checkout.

`--instructions` counts instead the instructions each checkout's command executes, once, under valgrind's callgrind
(needs `valgrind`; ~50 times slower than a run): the same on every run (PYTHONHASHSEED=0), so differences of a
percent show on a machine whose wall times vary by tens of percent. Printed with the ratio to the first checkout.
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="checkouts of layercalc (their layercalc/ package is timed)")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--command", default="summary examples/mnist_cnn.yaml")
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind instead")
    args = parser.parse_args()
    argv = [sys.executable, "-m", "layercalc", *shlex.split(args.command)]
    for d in args.dirs:
        compileall.compile_dir(os.path.join(d, "layercalc"), quiet=1)
    if args.instructions:
        count_instructions(args.dirs, argv, args.command)
        return
    times: dict[str, list[float]] = {d: [] for d in args.dirs}
    for _ in range(args.rounds):
        for d in args.dirs:
            start = time.perf_counter()
            subprocess.run(argv, cwd=d, env={**os.environ, "PYTHONPATH": d}, stdout=subprocess.DEVNULL, check=True)
            times[d].append(time.perf_counter() - start)
    print(f"`layercalc {args.command}`, {args.rounds} interleaved rounds")
    for d, values in times.items():
        values.sort()
        print(f"{d:40s} median {statistics.median(values):.3f} s  first quartile {values[len(values) // 4]:.3f} s  "
              f"min {values[0]:.3f} s")


def count_instructions(dirs: list[str], argv: list[str], command: str) -> None:
    if shutil.which("valgrind") is None:
        sys.exit("--instructions needs valgrind on PATH")
    print(f"`layercalc {command}`: instructions executed (callgrind)")
    first = None
    for d in dirs:
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out", *argv], cwd=d,
                                  env={**os.environ, "PYTHONPATH": d, "PYTHONHASHSEED": "0"},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            sys.exit(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
        count = int(found.group(1))
        first = first or count
        print(f"{d:40s} {count:>15,}  ratio {count / first:.3f}")


if __name__ == "__main__":
    main()
