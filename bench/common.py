"""Shared by the start-up benchmarks: make layercalc's modules load from bytecode, as an installed package does.

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
