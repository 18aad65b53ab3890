"""Start-up of `layercalc summary` for several checkouts, interleaved (one run of each per round), so that a noisy
machine disturbs them alike. Each checkout's package is put on PYTHONPATH and its bytecode compiled first.

Run: python bench/bench_startup_compare.py DIR [DIR ...] [--rounds 25] [--command "summary examples/mnist_cnn.yaml"]

Make a checkout of an older commit with `git worktree add /tmp/old <commit>`. Prints the median, first quartile and
minimum wall time per checkout.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shlex
import statistics
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="checkouts of layercalc (their layercalc/ package is timed)")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--command", default="summary examples/mnist_cnn.yaml")
    args = parser.parse_args()
    argv = [sys.executable, "-m", "layercalc", *shlex.split(args.command)]
    for d in args.dirs:
        compileall.compile_dir(os.path.join(d, "layercalc"), quiet=1)
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


if __name__ == "__main__":
    main()
