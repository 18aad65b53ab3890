"""Shared by the benchmarks: make layercalc's modules load from bytecode, as an installed package does; let
transformers import beside the test extra's torchvision (:func:`torchvision_beside_cpu_torch`).

`pip install .` compiles every module at install time, and a plain Python writes `__pycache__` on first import.
An editable install under PYTHONDONTWRITEBYTECODE=1 (as on the project's machines) does neither, so every process
would compile layercalc from source — ~80 ms that no user pays and that torch (installed, so compiled) never pays.
"""

from __future__ import annotations

import compileall
import os
from pathlib import Path


def precompile_layercalc() -> str:
    """Write layercalc's bytecode (compileall writes it whatever PYTHONDONTWRITEBYTECODE says); return a note."""
    import layercalc
    package = Path(layercalc.__file__).resolve().parent
    ok = compileall.compile_dir(str(package), quiet=1)
    flag = os.environ.get("PYTHONDONTWRITEBYTECODE")
    return (f"layercalc bytecode written to {package}/__pycache__ ({'ok' if ok else 'FAILED'}; "
            f"PYTHONDONTWRITEBYTECODE={flag or 'unset'})")


def torchvision_beside_cpu_torch() -> None:
    """The test extra's torchvision wheel needs two operator schemas the CPU torch lacks, and transformers imports
    torchvision when it is installed: define them as the test suite does (tests/torchvision_oracle.py)."""
    import sys
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from torchvision_oracle import define_missing_schemas
    define_missing_schemas()
