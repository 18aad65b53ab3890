"""A layer type of your own, in one file: LayerScale (CaiT's and ConvNeXt's learned per-channel scale, timm's
``LayerScale``: ``x · γ`` with γ one number per channel, starting small), which layercalc lacks as a type.

A layer type is a Pydantic model with a ``type`` field and an ``infer`` rule; ``param_specs``, ``forward`` and
``explain`` are optional (without ``forward`` the type can be analyzed but not run), and so is ``backward`` (without
it, ``summary --train`` reports the layer's backward as unknown). ``register_layer`` makes it
work everywhere the built-ins do: YAML/JSON specs, the Python API, ``summary`` in every format, the JSON Schema,
its own calculator (``layercalc layer_scale ...``) and ``verify``/``run``.

Use it from the command line with ``--plugin`` (or the ``LAYERCALC_PLUGINS`` environment variable)::

    layercalc --plugin examples/custom_layer.py layer_scale --input 16x8x8 --dim 16 --explain
    layercalc --plugin examples/custom_layer.py summary examples/custom_layer_specs/conv_layer_scale.yaml
    layercalc --plugin examples/custom_layer.py verify examples/custom_layer_specs/conv_layer_scale.yaml

or from Python: ``import custom_layer`` (this file) before loading a spec that uses ``type: layer_scale``. An
installed package registers its types through the ``layercalc.layers`` entry point group instead::

    [project.entry-points."layercalc.layers"]
    my_layers = "my_package.layers"
"""

from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import Field

import layercalc
from layercalc.layers import LayerBase, ParamSpec, register_layer
from layercalc.rules import Backward, Facts, split_channels


@register_layer
class LayerScale(LayerBase):
    """``x · γ`` with a learned scale γ per channel (the layout's channel axis), initialized to ``init_values``."""

    type: Literal["layer_scale"] = "layer_scale"
    dim: Optional[int] = Field(None, ge=1, description="the channel count; inferred from the input when not given")
    init_values: float = Field(1e-5, description="γ's initial value (timm's default)")

    def infer(self, inputs, ctx):
        x = inputs[0]
        if len(x.shape) < 2:
            raise ctx.fail(f"needs an input with a channel dim, got {list(x.shape)}")
        _, channels, _ = split_channels(x.shape, ctx.channels_last)
        if self.dim is not None and self.dim != channels:
            raise ctx.fail(f"dim {self.dim} must be the input's {channels} channels")
        # one multiply per element; γ is learned: one parameter per channel
        return Facts(output_shape=x.shape, params=channels, flops=math.prod(x.shape), rf=x.rf,
                     geometry={"channels": channels})

    def param_specs(self, step, channels_last):
        return {"gamma": ParamSpec((step.facts.geometry["channels"],), "[channels]", init=self.init_values)}

    def forward(self, step, xs, params, env):
        x, gamma = xs[0], params["gamma"]
        shape = [1] * x.ndim
        shape[env.channel_axis] = gamma.size           # along the layout's channel axis
        return x * gamma.reshape(shape)

    def backward(self, step, grads):
        # For training figures (summary --train): no matmul, so 0 MACs; the input's gradient dY·γ is a multiply per
        # element (when the input needs one), γ's gradient Σ dY·x per channel a multiply and an add per element (when
        # γ is trained). Without this method the layer's backward is reported as unknown.
        elements = math.prod(step.facts.output_shape)
        to_input = elements if grads.inputs[0] else 0
        to_gamma = 2 * elements if grads.weights else 0
        return Backward(element_flops=to_input + to_gamma, lines=[
            f"backward: 0 MACs; input gradient dY·γ {to_input:,} + γ's gradient Σ dY·x {to_gamma:,} element FLOPs"])

    def explain(self, c, input_shapes, facts, channels_last):
        channels = facts.geometry["channels"]
        elements = math.prod(input_shapes[0])
        c.result("params", f"γ: one per channel = {channels}", channels, facts.params)
        c.result("FLOPs", f"1 per element (x·γ) · {elements:,}", elements, facts.flops)


if __name__ == "__main__":
    net = layercalc.load({"input": [16, 8, 8], "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
        {"type": "layer_scale", "init_values": 1e-6}]})
    print(net.analyze().totals)
