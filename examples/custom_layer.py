"""A layer type of your own, in one file: PReLU (``torch.nn.PReLU``, Keras ``PReLU``), which layercalc lacks.

A layer type is a Pydantic model with a ``type`` field and an ``infer`` rule; ``param_specs``, ``forward`` and
``explain`` are optional (without ``forward`` the type can be analyzed but not run), and so is ``backward`` (without
it, ``summary --train`` reports the layer's backward as unknown). ``register_layer`` makes it
work everywhere the built-ins do: YAML/JSON specs, the Python API, ``summary`` in every format, the JSON Schema,
its own calculator (``layercalc prelu ...``) and ``verify``/``run``.

Use it from the command line with ``--plugin`` (or the ``LAYERCALC_PLUGINS`` environment variable)::

    layercalc --plugin examples/custom_layer.py prelu --input 16x8x8 --num-parameters 16 --explain
    layercalc --plugin examples/custom_layer.py summary examples/custom_layer_specs/conv_prelu.yaml
    layercalc --plugin examples/custom_layer.py verify examples/custom_layer_specs/conv_prelu.yaml

or from Python: ``import custom_layer`` (this file) before loading a spec that uses ``type: prelu``. An installed
package registers its types through the ``layercalc.layers`` entry point group instead::

    [project.entry-points."layercalc.layers"]
    my_layers = "my_package.layers"
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

import layercalc
from layercalc.layers import LayerBase, ParamSpec, register_layer
from layercalc.rules import Backward, Facts, split_channels


@register_layer
class PReLU(LayerBase):
    """max(0, x) + a·min(0, x) with a learnable slope ``a``: one for all channels, or one per channel."""

    type: Literal["prelu"] = "prelu"
    num_parameters: int = Field(1, ge=1, description="1 (one slope shared by all channels) or the channel count")
    init: float = Field(0.25, description="initial slope (PyTorch's default)")

    def infer(self, inputs, ctx):
        x = inputs[0]
        _, channels, _ = split_channels(x.shape, ctx.channels_last) if len(x.shape) >= 2 else (x.shape[0], 1, ())
        if self.num_parameters not in (1, channels):
            raise ctx.fail(f"num_parameters {self.num_parameters} must be 1 or the input's {channels} channels")
        elements = math.prod(x.shape)
        # 2 FLOPs per element (a compare and a multiply), like leaky_relu; the slope is learned: num_parameters
        return Facts(output_shape=x.shape, params=self.num_parameters, flops=2 * elements, rf=x.rf)

    def param_specs(self, step, channels_last):
        return {"weight": ParamSpec((self.num_parameters,), "[num_parameters]", init=self.init)}

    def forward(self, step, xs, params, env):
        import numpy as np

        x, slope = xs[0], params["weight"]
        if slope.size > 1:                       # one slope per channel, along the layout's channel axis
            shape = [1] * x.ndim
            shape[env.channel_axis] = slope.size
            slope = slope.reshape(shape)
        return np.where(x >= 0, x, slope * x)

    def backward(self, step, grads):
        # For training figures (summary --train): no matmul, so 0 MACs; the derivative costs what the forward does
        # (a compare and a multiply per element) and the slope's gradient Σ dY·x over the negative inputs a multiply
        # and an add per element. Without this method the layer's backward is reported as unknown.
        elements = math.prod(step.facts.output_shape)
        slope = 2 * elements if grads.weights else 0
        return Backward(element_flops=2 * elements + slope, lines=[
            f"backward: 0 MACs; derivative 2·{elements:,} + slope gradient {slope:,} element FLOPs"])

    def explain(self, c, input_shapes, facts, channels_last):
        elements = math.prod(input_shapes[0])
        c.result("params", f"num_parameters = {self.num_parameters} (slope"
                 f"{' per channel' if self.num_parameters > 1 else ' shared by all channels'})",
                 self.num_parameters, facts.params)
        c.result("FLOPs", f"2 per element (compare, multiply) · {elements:,}", 2 * elements, facts.flops)


if __name__ == "__main__":
    net = layercalc.load({"input": [16, 8, 8], "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
        {"type": "prelu", "num_parameters": 16}]})
    print(net.analyze().totals)
