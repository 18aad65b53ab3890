"""A fused activation: a layer followed by the activation its ``fused_activation()`` names (Keras' ``activation``
argument of Dense, Conv*, …), composed through the layer protocol alone — the rules add the activation's FLOPs
(:func:`fuse`), the executor runs its forward step on the layer's output (:func:`fused_forward`, memory:
:func:`fused_scratch`), and ``--explain`` shows the layer's lines, then the activation's (:func:`own_facts`,
:func:`explain_fused`). No layer type is named here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .explain import Explanation
from .rules import Context, Facts, Tensor, numel

if TYPE_CHECKING:
    from .layers.base import LayerBase

__all__ = ["fuse", "fused_forward", "fused_scratch", "own_facts", "explain_fused"]


def fuse(layer: LayerBase, facts: Facts, ctx: Context) -> None:
    """Add the fused activation of ``layer`` to its facts: its FLOPs, a note, and its own facts (for the forward
    step and the explanation) under ``geometry["fused"]``."""
    activation = layer.fused_activation()
    if activation is None:
        return
    extra = activation.infer([Tensor(facts.output_shape)], ctx)
    facts.flops += extra.flops
    facts.geometry["fused"] = extra
    facts.notes.append(f"fused activation {activation.type_name} (Keras' activation argument): no parameters, "
                       f"{extra.flops:,} FLOPs included")


def fused_forward(step: Any, y: Any, env: Any) -> Any:
    """The executor's step after the layer's own forward: its fused activation applied to its output ``y``."""
    import dataclasses
    activation = step.layer.fused_activation()
    if activation is None:
        return y
    own = dataclasses.replace(step, layer=activation, input_shapes=[step.facts.output_shape],
                              facts=step.facts.geometry["fused"])
    env.overwritable = [True]                       # the layer's fresh output: overwritten in place
    return activation.forward(own, [y], {}, env)


def fused_scratch(step: Any, itemsize: int, channels_last: bool) -> int:
    """Temporary bytes of the fused activation's step (for the executor's memory estimate)."""
    import dataclasses
    activation = step.layer.fused_activation()
    own = dataclasses.replace(step, layer=activation, input_shapes=[step.facts.output_shape],
                              facts=step.facts.geometry["fused"])
    return activation.scratch_bytes(own, itemsize, channels_last, True)[0] + numel(step.facts.output_shape) * itemsize


def own_facts(layer: LayerBase, facts: Facts) -> Facts:
    """The layer's facts without its fused activation (what its own explanation derives)."""
    import dataclasses
    extra = facts.geometry.get("fused") if layer.fused_activation() is not None else None
    return facts if extra is None else dataclasses.replace(facts, flops=facts.flops - extra.flops)


def explain_fused(c: Explanation, layer: LayerBase, facts: Facts, channels_last: bool) -> None:
    """The fused activation's lines of the explanation, after the layer's own."""
    activation = layer.fused_activation()
    if activation is None:
        return
    extra = facts.geometry["fused"]
    c.add(f"fused activation {activation.type_name} (Keras' activation argument), applied to the output: no "
          f"parameters")
    activation.explain(c, [facts.output_shape], extra, channels_last)
    c.result("FLOPs with the activation", f"{facts.flops - extra.flops:,} + {extra.flops:,}", facts.flops,
             facts.flops)
