"""Layer types: one module per family, each holding its types' descriptions, shape/cost rules, parameters, forward
steps and explanations side by side; :mod:`layercalc.layers.base` holds the protocol they follow and the registry.

| module | layer types |
|---|---|
| :mod:`~layercalc.layers.conv` | conv1d/2d/3d, conv_transpose1d/2d/3d, depthwise_conv1d/2d, separable_conv1d/2d |
| :mod:`~layercalc.layers.pooling` | maxpool, avgpool, adaptive_avgpool, adaptive_maxpool (1d/2d/3d), global_avgpool, global_maxpool |
| :mod:`~layercalc.layers.linear` | linear (dense) |
| :mod:`~layercalc.layers.reshape` | flatten, reshape, zero_pad |
| :mod:`~layercalc.layers.norm` | batchnorm1d/2d/3d, batchnorm (any rank), layernorm, groupnorm |
| :mod:`~layercalc.layers.activation` | dropout, relu, relu6, leaky_relu, sigmoid, tanh, gelu, silu (swish), hardswish, hardsigmoid, softmax, identity, rescaling, activation |
| :mod:`~layercalc.layers.merge` | add, mul, sub, div, concat |
| :mod:`~layercalc.layers.attention` | multi_head_attention (multihead_attention), scaled_dot_product_attention, matmul |

Importing this package registers every built-in type, family by family, in the order the schema and ``--help``
list them. Layer types of installed packages (entry point group ``layercalc.layers``) are loaded on first need
(:func:`~layercalc.layers.base.load_plugins`); a user's own type is one :func:`register_layer` call away.
"""

from .base import *  # noqa: F401,F403  (field types, Description, LayerBase, ParamSpec, the registry)
from .base import (ENTRY_POINT_GROUP, LAYER_CLASSES, LAYER_TYPES, MAX_RANK, Description, LayerBase,  # noqa: F401
                   ParamSpec, accepted_fields, field_spellings, layer_union, load_plugin_file, load_plugins,
                   parse_layer, register_layer, unregister_layer)

# The built-in families, in registration order (conv first: the order of the schema and of `layercalc --help`).
from .conv import *  # noqa: E402,F401,F403
from .pooling import *  # noqa: E402,F401,F403
from .linear import *  # noqa: E402,F401,F403
from .reshape import *  # noqa: E402,F401,F403
from .norm import *  # noqa: E402,F401,F403
from .activation import *  # noqa: E402,F401,F403
from .merge import *  # noqa: E402,F401,F403
from .sequence import *  # noqa: E402,F401,F403
# ---- issue 13 families (each line added when its module lands): attention, recurrent, tensor_ops
from .attention import *  # noqa: E402,F401,F403
from .tensor_ops import *  # noqa: E402,F401,F403
from .resample import *  # noqa: E402,F401,F403
from .recurrent import *  # noqa: E402,F401,F403
from .conv import _ConvBase, _ConvTransposeBase  # noqa: E402,F401  (family bases, for isinstance in tests)
from .pooling import _AdaptivePoolBase, _AvgPoolBase, _MaxPoolBase, _PoolBase  # noqa: E402,F401
from .norm import _BatchNormBase  # noqa: E402,F401
from .activation import _Activation  # noqa: E402,F401
