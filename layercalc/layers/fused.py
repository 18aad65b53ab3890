"""A fused activation: a layer followed by the activation its ``activation`` field names (Keras' ``activation``
argument of Dense, Conv*, Conv*Transpose, DepthwiseConv*, SeparableConv*), seen by the engines as one layer.

:class:`FusedActivation` is the one place that composes the two: a layer type lists it first among its bases
(``class Conv2d(FusedActivation, _ConvBase)``), and each protocol method below is the type's own (the next class in
the method resolution order) followed by the activation layer's — the facts (FLOPs added, a note), the forward step
(applied to the fresh output, in place), the scratch bytes and the worked explanation (the layer's lines, then the
activation's). The graph, the executor, the explanation and the rules call the protocol as for any layer.
"""

import dataclasses
from typing import TYPE_CHECKING, Optional, cast

from ..explain import Explanation
from ..rules import Backward, Context, Facts, Gradients, Tensor, numel
from .activation import activation_layer
from .base import GradFlow, LayerBase, LayerMixin, Saved

if TYPE_CHECKING:
    import numpy as np

    from ..executor import Env
    from ..graph import Step

__all__ = ["FusedActivation"]

#: the key of the activation's own facts in the layer's ``Facts.geometry`` (for its forward step and explanation)
_OWN_FACTS = "fused"


class FusedActivation(LayerMixin):
    """The layer's protocol methods followed by its fused activation's (none when ``activation`` is null)."""
    if TYPE_CHECKING:
        activation: Optional[str]             # a field of each layer type that lists this class (activation_field)

    def fused_activation(self) -> Optional[LayerBase]:
        """The activation layer applied to the output after the layer's own step; None: no fused activation."""
        return activation_layer(self.activation)

    def output_activation(self) -> Optional[str]:
        activation = self.fused_activation()
        return None if activation is None else activation.type_name

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        facts = super().infer(inputs, ctx)
        activation = self.fused_activation()
        if activation is None:
            return facts
        extra = activation.infer([Tensor(facts.output_shape)], ctx)
        facts.flops += extra.flops
        facts.geometry[_OWN_FACTS] = extra
        facts.notes.append(f"fused activation {activation.type_name} (Keras' activation argument): no parameters, "
                           f"{extra.flops:,} FLOPs included")
        return facts

    def _activation_step(self, activation: LayerBase, step: "Step") -> "Step":
        """The activation's own step: the layer's output as its input, its own facts."""
        return dataclasses.replace(step, layer=activation, input_shapes=[step.facts.output_shape],
                                   facts=step.facts.geometry[_OWN_FACTS])

    def forward(self, step: "Step", xs: "list[np.ndarray]", params: "dict[str, np.ndarray]",
                env: "Env") -> "np.ndarray":
        y = super().forward(step, xs, params, env)
        activation = self.fused_activation()
        if activation is None:
            return y
        env.overwritable = [True]                       # the layer's fresh output: overwritten in place
        return activation.forward(self._activation_step(activation, step), [y], {}, env)

    def saved_for_backward(self, step: "Step", grads: GradFlow) -> list[Saved]:
        own = super().saved_for_backward(step, grads)
        activation = self.fused_activation()
        # the activation runs on the layer's output, which needs a gradient whenever the layer is recorded
        inner = [] if activation is None else activation.saved_for_backward(
            self._activation_step(activation, step), GradFlow((grads.any,), False, grads.itemsize,
                                                              grads.channels_last))
        if own is None or inner is None:      # every layer with a fused activation, and every activation, says
            raise NotImplementedError(f"{self.type_name}: saved tensors not modeled")      # (never reached)
        if activation is None:
            return own
        # its "input" is the layer's pre-activation result: a tensor of the layer's own
        return own + [Saved("extra", f"the pre-activation result, kept by the fused {activation.type_name}",
                            numel=numel(step.facts.output_shape)) if item.kind == "input" else item
                      for item in inner]

    def scratch_bytes(self, step: "Step", itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        temporary, workspace = super().scratch_bytes(step, itemsize, channels_last, weights_given)
        activation = self.fused_activation()
        if activation is None:
            return temporary, workspace
        # the activation runs after the layer's step, on its output (held meanwhile)
        own = activation.scratch_bytes(self._activation_step(activation, step), itemsize, channels_last, True)[0]
        return max(temporary, own + numel(step.facts.output_shape) * itemsize), workspace

    def backward(self, step: "Step", grads: Gradients) -> Backward:
        # the layer types that list this class (linear, the convs) all state their backward
        own = cast(Backward, super().backward(step, grads))
        activation = self.fused_activation()
        if activation is None:
            return own
        # the activation's derivative is applied to the output gradient before any of the layer's own gradients
        extra = step.facts.geometry[_OWN_FACTS].flops
        own.element_flops += extra
        own.lines.append(f"backward of the fused {activation.type_name}: its forward element work again = "
                         f"{extra:,} FLOPs")
        return own

    def explain(self, c: Explanation, input_shapes: list[tuple[int, ...]], facts: Facts,
                channels_last: bool) -> None:
        activation = self.fused_activation()
        if activation is None:
            super().explain(c, input_shapes, facts, channels_last)
            return
        extra = facts.geometry[_OWN_FACTS]
        # the layer's own lines derive its figures without the activation's FLOPs
        super().explain(c, input_shapes, dataclasses.replace(facts, flops=facts.flops - extra.flops), channels_last)
        c.add(f"fused activation {activation.type_name} (Keras' activation argument), applied to the output: no "
              f"parameters")
        activation.explain(c, [facts.output_shape], extra, channels_last)
        c.result("FLOPs with the activation", f"{facts.flops - extra.flops:,} + {extra.flops:,}", facts.flops,
                 facts.flops)
