"""Layer types: one module per family, each holding its types' descriptions, shape/cost rules, parameters, forward
steps and explanations side by side; :mod:`layercalc.layers.base` holds the protocol they follow and the registry.

| module | layer types |
|---|---|
| :mod:`~layercalc.layers.activation` | dropout, relu, relu6, leaky_relu, prelu, sigmoid, tanh, gelu, silu (swish), hardswish, hardsigmoid, softmax, identity, augmentation, rescaling, activation, pow, clamp, softcap |
| :mod:`~layercalc.layers.conv` | conv1d/2d/3d, conv_transpose1d/2d/3d |
| :mod:`~layercalc.layers.pooling` | maxpool1d/2d/3d, avgpool1d/2d/3d, adaptive_avgpool1d/2d/3d, adaptive_maxpool1d/2d/3d, global_avgpool, global_maxpool |
| :mod:`~layercalc.layers.linear` | linear (dense) |
| :mod:`~layercalc.layers.reshape` | flatten, reshape, zero_pad, pad, center_crop |
| :mod:`~layercalc.layers.norm` | batchnorm1d/2d/3d, batchnorm (any rank), layernorm, groupnorm, rmsnorm, normalization |
| :mod:`~layercalc.layers.merge` | add, mul, sub, div, concat |
| :mod:`~layercalc.layers.depthwise` | depthwise_conv1d/2d, separable_conv1d/2d |
| :mod:`~layercalc.layers.sequence` | embedding, position_embedding, parameter, rotary_embedding, extra_input |
| :mod:`~layercalc.layers.attention` | multi_head_attention, scaled_dot_product_attention, matmul, shifted_window_attention, relative_position_bias |
| :mod:`~layercalc.layers.tensor_ops` | permute, transpose, slice, split, chunk, select, roll, pixel_shuffle, pixel_unshuffle, channel_shuffle, mean, sum, opaque |
| :mod:`~layercalc.layers.resample` | upsample, resizing, upsampling1d/2d/3d |
| :mod:`~layercalc.layers.recurrent` | lstm, gru, rnn |
| :mod:`~layercalc.layers.moe` | moe (mixture_of_experts) |
| :mod:`~layercalc.layers.mla` | latent_attention (mla) |
| :mod:`~layercalc.layers.mask` | attention_mask |

(The first five are imported with this package, the rest in :data:`LATER_FAMILIES`' order; ``layercalc types``
lists every registered type with its aliases, and ``tests/test_library_jobs.py`` checks this table against the
registry.)

Importing this package registers the families a convolutional network needs (activation, conv, pooling, linear,
reshape); the others are imported on first need, in the order the schema and ``--help`` list them: one at a time
until a spec's type is known (:func:`load_families_until`), or all of them for the JSON Schema, the command list or
any name below read from this package (:func:`load_all_families`) — defining ~90 Pydantic models is most of
``layercalc summary``'s start-up. Layer types of
installed packages (entry point group ``layercalc.layers``) are loaded on first need, after the built-ins
(:func:`~layercalc.layers.base.load_plugins`); a user's own type is one :func:`register_layer` call away.
"""

import sys
from collections.abc import Callable

from . import base
from .base import *  # noqa: F401,F403  (field types, Description, LayerBase, ParamSpec, the registry)
from .base import (ENTRY_POINT_GROUP, LATER_FAMILIES, MAX_RANK, Description, LayerBase,  # noqa: F401
                   ParamSpec, accepted_fields, field_spellings, layer_union, load_families, load_plugin_file,
                   load_plugins, parse_layer, plugin_module, register_layer, unregister_layer)

# The families imported at start (conv imports activation first: the registration order, which is the order of the
# schema and of `layercalc --help`, begins with activation).
from .activation import *  # noqa: E402,F401,F403
from .conv import *  # noqa: E402,F401,F403
from .pooling import *  # noqa: E402,F401,F403
from .linear import *  # noqa: E402,F401,F403
from .reshape import *  # noqa: E402,F401,F403
from .conv import _ConvBase, _ConvTransposeBase  # noqa: E402,F401  (family bases, for isinstance in tests)
from .pooling import _AdaptivePoolBase, _AvgPoolBase, _MaxPoolBase, _PoolBase  # noqa: E402,F401
from .activation import _Activation  # noqa: E402,F401

#: the registry's tables: complete only once every family is imported, so read through __getattr__ below (the
#: objects of layers.base themselves, wherever they are read)
_REGISTRY = ("LAYER_TYPES", "LAYER_CLASSES", "KERAS_CLASSES")
for _name in _REGISTRY:
    globals().pop(_name, None)


def load_all_families() -> None:
    """Import the families of :data:`LATER_FAMILIES` not yet imported: their types register."""
    load_families()


def load_families_until(done: "Callable[[], bool]") -> None:
    """Import the families of :data:`LATER_FAMILIES` in order, one at a time, until ``done()`` (a spec's type is
    known)."""
    load_families(until=done)


def __getattr__(name: str) -> object:
    """``LAYER_TYPES`` and the other tables, complete; a class of a family not imported at start (``layers.LSTM``)."""
    load_all_families()
    if name in _REGISTRY:
        return getattr(base, name)
    for family in LATER_FAMILIES:
        module = sys.modules[f"{__name__}.{family}"]
        if name in getattr(module, "__all__", ()):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
