"""Reading a large ONNX file: layercalc's import against onnx-tool's profile, time and peak memory.

Run: python bench/bench_onnx_import.py [FILE.onnx ...] [--onnx-tool /tmp/ot/bin/python] [--repeat 3]

Without a file, torchvision's ResNet-50 is exported (weights inside the file, 102 MB) to a temporary folder, and
a copy with its weights as external data beside it. Each measurement is a fresh process with one thread
(OMP/OpenBLAS/MKL_NUM_THREADS=1): the libraries are imported first (not timed), then the file is read and counted
— layercalc: ``layercalc.load(path).analyze()`` (the ONNX import, shape inference, the layer-by-layer analysis);
onnx-tool: ``onnx_tool.model_profile(path)`` (its loading, shape inference and profile; its table is discarded).
Prints the median wall time of ``--repeat`` runs and the process' peak resident memory (``ru_maxrss``) next to
its resident memory after the imports, for each tool, and the ratios: layercalc's time / onnx-tool's, and
layercalc's peak / the file's size.

onnx-tool is never a dependency of layercalc: install it in a separate virtual environment for this benchmark
(``python -m venv /tmp/ot && /tmp/ot/bin/pip install onnx-tool onnx``) and pass its interpreter with
``--onnx-tool``; without it, only layercalc's figures are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

_LAYERCALC = """
import json, resource, sys, time
import layercalc, onnx, numpy
from layercalc.importers import onnx as _importer
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
report = layercalc.load(sys.argv[1]).analyze()
wall = time.perf_counter() - start
print(json.dumps({"wall": wall, "before": before, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "params": report.totals.params, "macs": report.totals.macs}))
"""

_ONNX_TOOL = """
import contextlib, io, json, resource, sys, time
import onnx, numpy, onnx_tool
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    onnx_tool.model_profile(sys.argv[1])
wall = time.perf_counter() - start
print(json.dumps({"wall": wall, "before": before, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _one_thread_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env


def _measure(python: str, script: str, path: Path, repeat: int) -> dict:
    runs = []
    for _ in range(repeat):
        out = subprocess.run([python, "-c", script, str(path)], capture_output=True, text=True,
                             env=_one_thread_env(), check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    result = dict(runs[-1])
    result["wall"] = statistics.median(r["wall"] for r in runs)
    result["peak"] = max(r["peak"] for r in runs)
    return result


def _export_resnet50(folder: Path) -> list[Path]:
    """torchvision's ResNet-50 (random weights) exported by the legacy exporter: weights inside, and a copy with
    them as external data beside it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import torchvision_beside_cpu_torch
    torchvision_beside_cpu_torch()
    import onnx
    import torch
    import torchvision

    inside = folder / "resnet50.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torchvision.models.resnet50().eval(), (torch.randn(1, 3, 224, 224),), str(inside),
                          dynamo=False)
    outside = folder / "external" / "resnet50.onnx"
    outside.parent.mkdir()
    onnx.save_model(onnx.load(str(inside)), str(outside), save_as_external_data=True, location="weights.bin")
    return [inside, outside]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--onnx-tool", default="/tmp/ot/bin/python",
                        help="a Python with onnx-tool installed (default /tmp/ot/bin/python)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = args.files or _export_resnet50(Path(tmp))
        peer = args.onnx_tool if Path(args.onnx_tool).exists() else None
        if peer is None:
            print(f"onnx-tool: no interpreter at {args.onnx_tool}; layercalc only")
        print("one thread; wall = median of", args.repeat, "fresh processes, imports not timed; memory = peak RSS")
        for path in files:
            size = path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob("*.bin"))
            lc = _measure(sys.executable, _LAYERCALC, path, args.repeat)
            external = " with external data" if size > path.stat().st_size else ""
            line = (f"{path.name} ({size / 2**20:.0f} MiB{external}): "
                    f"layercalc {lc['wall']:.2f} s, peak {lc['peak'] / 1024:.0f} MiB (after imports "
                    f"{lc['before'] / 1024:.0f}); params {lc['params']:,}, macs {lc['macs']:,}")
            print(line)
            if peer:
                ot = _measure(peer, _ONNX_TOOL, path, args.repeat)
                print(f"    onnx-tool {ot['wall']:.2f} s, peak {ot['peak'] / 1024:.0f} MiB (after imports "
                      f"{ot['before'] / 1024:.0f}); layercalc's time {lc['wall'] / ot['wall']:.2f}x onnx-tool's, "
                      f"peak {lc['peak'] / 1024 / (size / 2**20):.2f}x the file")
            else:
                print(f"    peak {lc['peak'] / 1024 / (size / 2**20):.2f}x the file")


if __name__ == "__main__":
    main()
