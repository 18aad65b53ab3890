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

# The lazy names below, as type checkers should see them (imported on first use), and every layer model that
# `from layercalc import Conv2d` gives (the lazy __getattr__ would give Any): tests/test_display.py checks this list
# against layercalc.layers.
if _typing.TYPE_CHECKING:
    from .graph import Network
    from .importers.torch import from_torch
    from .layers import LAYER_TYPES
    from .layers.activation import GELU as GELU
    from .layers.activation import Activation as Activation
    from .layers.activation import Augmentation as Augmentation
    from .layers.activation import Clamp as Clamp
    from .layers.activation import Dropout as Dropout
    from .layers.activation import Hardsigmoid as Hardsigmoid
    from .layers.activation import Hardswish as Hardswish
    from .layers.activation import Identity as Identity
    from .layers.activation import LeakyReLU as LeakyReLU
    from .layers.activation import Pow as Pow
    from .layers.activation import PReLU as PReLU
    from .layers.activation import ReLU as ReLU
    from .layers.activation import ReLU6 as ReLU6
    from .layers.activation import Rescaling as Rescaling
    from .layers.activation import Sigmoid as Sigmoid
    from .layers.activation import SiLU as SiLU
    from .layers.activation import Softcap as Softcap
    from .layers.activation import Softmax as Softmax
    from .layers.activation import Tanh as Tanh
    from .layers.attention import MatMul as MatMul
    from .layers.attention import MultiHeadAttention as MultiHeadAttention
    from .layers.attention import RelativePositionBias as RelativePositionBias
    from .layers.attention import ScaledDotProductAttention as ScaledDotProductAttention
    from .layers.attention import ShiftedWindowAttention as ShiftedWindowAttention
    from .layers.base import LayerBase as LayerBase
    from .layers.conv import Conv1d as Conv1d
    from .layers.conv import Conv2d as Conv2d
    from .layers.conv import Conv3d as Conv3d
    from .layers.conv import ConvTranspose1d as ConvTranspose1d
    from .layers.conv import ConvTranspose2d as ConvTranspose2d
    from .layers.conv import ConvTranspose3d as ConvTranspose3d
    from .layers.depthwise import DepthwiseConv1d as DepthwiseConv1d
    from .layers.depthwise import DepthwiseConv2d as DepthwiseConv2d
    from .layers.depthwise import SeparableConv1d as SeparableConv1d
    from .layers.depthwise import SeparableConv2d as SeparableConv2d
    from .layers.linear import Linear as Linear
    from .layers.mask import AttentionMask as AttentionMask
    from .layers.merge import Add as Add
    from .layers.merge import Concat as Concat
    from .layers.merge import Div as Div
    from .layers.merge import Mul as Mul
    from .layers.merge import Sub as Sub
    from .layers.mla import LatentAttention as LatentAttention
    from .layers.moe import MixtureOfExperts as MixtureOfExperts
    from .layers.norm import BatchNorm as BatchNorm
    from .layers.norm import BatchNorm1d as BatchNorm1d
    from .layers.norm import BatchNorm2d as BatchNorm2d
    from .layers.norm import BatchNorm3d as BatchNorm3d
    from .layers.norm import GroupNorm as GroupNorm
    from .layers.norm import LayerNorm as LayerNorm
    from .layers.norm import Normalization as Normalization
    from .layers.norm import RMSNorm as RMSNorm
    from .layers.pooling import AdaptiveAvgPool1d as AdaptiveAvgPool1d
    from .layers.pooling import AdaptiveAvgPool2d as AdaptiveAvgPool2d
    from .layers.pooling import AdaptiveAvgPool3d as AdaptiveAvgPool3d
    from .layers.pooling import AdaptiveMaxPool1d as AdaptiveMaxPool1d
    from .layers.pooling import AdaptiveMaxPool2d as AdaptiveMaxPool2d
    from .layers.pooling import AdaptiveMaxPool3d as AdaptiveMaxPool3d
    from .layers.pooling import AvgPool1d as AvgPool1d
    from .layers.pooling import AvgPool2d as AvgPool2d
    from .layers.pooling import AvgPool3d as AvgPool3d
    from .layers.pooling import GlobalAvgPool as GlobalAvgPool
    from .layers.pooling import GlobalMaxPool as GlobalMaxPool
    from .layers.pooling import MaxPool1d as MaxPool1d
    from .layers.pooling import MaxPool2d as MaxPool2d
    from .layers.pooling import MaxPool3d as MaxPool3d
    from .layers.recurrent import GRU as GRU
    from .layers.recurrent import LSTM as LSTM
    from .layers.recurrent import RNN as RNN
    from .layers.resample import Resizing as Resizing
    from .layers.resample import Upsample as Upsample
    from .layers.resample import UpSampling1d as UpSampling1d
    from .layers.resample import UpSampling2d as UpSampling2d
    from .layers.resample import UpSampling3d as UpSampling3d
    from .layers.reshape import CenterCrop as CenterCrop
    from .layers.reshape import Flatten as Flatten
    from .layers.reshape import Pad as Pad
    from .layers.reshape import Reshape as Reshape
    from .layers.reshape import ZeroPad as ZeroPad
    from .layers.sequence import Embedding as Embedding
    from .layers.sequence import ExtraInput as ExtraInput
    from .layers.sequence import Parameter as Parameter
    from .layers.sequence import PositionEmbedding as PositionEmbedding
    from .layers.sequence import RotaryEmbedding as RotaryEmbedding
    from .layers.tensor_ops import ChannelShuffle as ChannelShuffle
    from .layers.tensor_ops import Chunk as Chunk
    from .layers.tensor_ops import Mean as Mean
    from .layers.tensor_ops import Opaque as Opaque
    from .layers.tensor_ops import Permute as Permute
    from .layers.tensor_ops import PixelShuffle as PixelShuffle
    from .layers.tensor_ops import PixelUnshuffle as PixelUnshuffle
    from .layers.tensor_ops import Roll as Roll
    from .layers.tensor_ops import Select as Select
    from .layers.tensor_ops import Slice as Slice
    from .layers.tensor_ops import Split as Split
    from .layers.tensor_ops import Sum as Sum
    from .layers.tensor_ops import Transpose as Transpose
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
