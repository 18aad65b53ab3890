"""layercalc: shapes, parameters, MACs/FLOPs, memory and receptive fields of neural-network layers, without a
deep-learning framework.

>>> import layercalc
>>> net = layercalc.load({"input": [1, 28, 28], "layers": [{"type": "conv2d", "out_channels": 32, "kernel_size": 3}]})
>>> report = net.analyze()
>>> report.layers[0].output_shape, report.totals.params
([1, 32, 26, 26], 320)
"""

import typing as _typing  # (private: dir(layercalc) lists the public API only)

from .errors import GraphError, LayerCalcError, NumericError, ResourceError, ShapeError, SpecError

if _typing.TYPE_CHECKING:        # the lazy names below, as type checkers should see them (imported on first use)
    from .graph import Network
    from .importers.torch import from_torch
    from .layers import LAYER_TYPES
    from .report import LayerReport, Report, Totals
    from .sizing import SizeResult, size
    from .solving import SolveAnswer, SolveResult, solve
    from .sources import convert, load
    from .spec import schema

__version__ = "0.1.0"

# The rest is imported on first use (PEP 562): importing Pydantic and defining the models costs ~0.15 s, which the
# command line must not pay for `layercalc size` (start-up target 0.3 s). `layercalc.Network` etc. behave as usual.
_LAZY = {"Network": "graph", "LayerReport": "report", "Report": "report", "Totals": "report",
         "load": "sources", "schema": "spec", "convert": "sources", "from_torch": "importers.torch",
         "LAYER_TYPES": "layers",
         "size": "sizing", "SizeResult": "sizing", "solve": "solving", "SolveResult": "solving",
         "SolveAnswer": "solving"}


def __getattr__(name: str) -> _typing.Any:
    import importlib
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if not name.startswith("_"):
        try:                          # `from layercalc import zoo` asks here before importing the submodule
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
        layers = importlib.import_module(".layers", __name__)   # the layer models: Conv2d, Linear, …
        if name in _layer_model_names(layers):
            return getattr(layers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _layer_model_names(layers: _typing.Any) -> set[str]:
    return {cls.__name__ for cls in layers.LAYER_CLASSES} | {"Layer", "LayerBase"}


def __dir__() -> list[str]:
    from . import layers  # deferred: the layer models (Pydantic, ~0.15 s), as for every lazy name above
    public = {n for n in globals() if not n.startswith("_")} | {"__version__"}
    return sorted(public | set(_LAZY) | _layer_model_names(layers))

__all__ = ["Network", "Report", "LayerReport", "Totals", "load", "schema", "convert", "from_torch", "LAYER_TYPES",
           "size", "SizeResult", "solve", "SolveResult", "SolveAnswer",
           "LayerCalcError", "SpecError", "ShapeError", "GraphError", "ResourceError", "NumericError", "__version__"]
