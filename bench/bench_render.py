"""Rendering a report is linear in its layers (issue 20): the time per layer of ``summary``'s table (folded and
``--expand``), its JSON (``model_dump``) and its CSV, for a ``repeat`` spec of 1k, 10k and 100k layers.

    python bench/bench_render.py

Prints seconds per 1,000 layers for each size: linear work keeps them flat across the rows (the ratio column
compares with the 1k run). The analysis itself is timed too, for scale. No figure here is asserted by a test.
"""

from __future__ import annotations

import time

import layercalc
from layercalc.formatting import render_report
from layercalc.terminal import UNLIMITED


def spec(layers: int) -> dict:
    """``layers`` layers: a linear 64 → 64 and a relu, repeated."""
    return {"name": f"mlp{layers}", "input": [64],
            "blocks": {"pair": {"layers": [{"name": "fc", "type": "linear", "out_features": 64},
                                           {"name": "act", "type": "relu"}]}},
            "layers": [{"repeat": layers // 2, "name": "blk", "block": "pair"}]}


def main() -> None:
    jobs = {
        "analyze": lambda net: net.analyze(),
        "table (folded)": lambda r: render_report(r, "table", width=80),
        "table --expand": lambda r: render_report(r, "table", width=UNLIMITED, expand=True),
        "json": lambda r: render_report(r, "json"),
        "csv": lambda r: render_report(r, "csv"),
    }
    first: dict[str, float] = {}
    print(f"{'job':<16} {'layers':>8} {'seconds':>9} {'s/1k layers':>12} {'ratio to 1k':>12}")
    for layers in (1_000, 10_000, 100_000):
        net = layercalc.load(spec(layers))
        report = net.analyze()
        for name, job in jobs.items():
            subject = net if name == "analyze" else report
            start = time.perf_counter()
            job(subject)
            seconds = time.perf_counter() - start
            per_k = seconds / layers * 1000
            first.setdefault(name, per_k)
            print(f"{name:<16} {layers:>8,} {seconds:>9.3f} {per_k:>12.4f} {per_k / first[name]:>12.2f}")


if __name__ == "__main__":
    main()
