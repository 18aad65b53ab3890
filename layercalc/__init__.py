"""layercalc: shapes, parameters, MACs/FLOPs, memory and receptive fields of neural-network layers, without a
deep-learning framework.

>>> import layercalc
>>> net = layercalc.load({"input": [1, 28, 28], "layers": [{"type": "conv2d", "out_channels": 32, "kernel_size": 3}]})
>>> report = net.analyze()
>>> report.layers[0].output_shape, report.totals.params
([1, 32, 26, 26], 320)
"""

from .errors import GraphError, LayerCalcError, ResourceError, ShapeError, SpecError
from .graph import Network
from .layers import *  # noqa: F401,F403  (the layer models: Conv2d, Linear, …)
from .layers import LAYER_TYPES
from .report import LayerReport, Report, Totals
from .spec import load, schema

__version__ = "0.1.0"

__all__ = ["Network", "Report", "LayerReport", "Totals", "load", "schema", "LAYER_TYPES",
           "LayerCalcError", "SpecError", "ShapeError", "GraphError", "ResourceError", "__version__"]
