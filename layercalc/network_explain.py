"""Every layer of a network explained: the worked formulas of ``summary --explain``, as library code (the CLI
prints what this returns)."""

from __future__ import annotations

from typing import Optional

from .explain import explain_layer
from .formatting import shape_text
from .graph import backward_of, gradient_flow
from .names import split_output
from .saved import SavedAccount, explain_saved


def explain_network(net, report, train: bool = False, past: int = 0,
                    saved: Optional[SavedAccount] = None, steps: Optional[list] = None) -> list[str]:
    """Every layer's worked formulas, in execution order: a line ``[index] name (type): inputs → output`` and the
    layer's explanation indented under it. ``report`` is ``net.analyze(past=past)`` (its receptive fields feed the
    explanations). ``train``: each layer's backward formulas too (:func:`backward_lines`); ``past``: a decode
    step's cached positions (layercalc.serving); ``saved`` (:func:`layercalc.saved.saved_tensors` of the same
    steps, ``summary --train``): what each layer keeps for backward. ``steps``: the resolved steps when the caller
    has them (a decode step's, :attr:`layercalc.serving.Serving.decode_steps`, whose fixed steps are not run: one
    line says so)."""
    by_name = {entry.name: entry for entry in report.layers}
    rank = len(net.input) - 1
    lines = []
    steps = net.resolve(past) if steps is None else steps
    flows = gradient_flow(steps) if train else [None] * len(steps)
    for position, (step, grads) in enumerate(zip(steps, flows)):
        source = step.inputs[0] if step.inputs else None
        if source is None:                             # a layer without inputs (a learnable tensor)
            input_rf = None
        elif source == "input":
            input_rf = ([1] * rank, [1] * rank) if rank >= 1 else None
        else:
            producer = by_name[split_output(source)[0]]
            input_rf = (producer.receptive_field, producer.jump) if producer.receptive_field else None
        ins = ", ".join(shape_text(s) for s in step.input_shapes)
        lines.append(f"[{step.index}] {step.name} ({step.layer.type_name}): {ins} → "
                     f"{shape_text(step.facts.output_shape)}")
        if past and step.fixed:                        # a decode step's layer made at the prefill: nothing to work
            lines += ["    " + note for note in step.facts.notes]
            continue
        lines += ["    " + line for line in explain_layer(step.layer, step.input_shapes, step.facts,
                                                          net.channels_last, report.dtype_bytes, input_rf)]
        if grads is not None:
            lines += ["    " + line for line in backward_lines(step, grads)]
        if saved is not None:
            lines += ["    " + line for line in explain_saved(step, saved.layers[position], saved.itemsize)]
    return lines


def backward_lines(step, grads) -> list[str]:
    """The worked backward formulas of one layer (its type's :meth:`~layercalc.layers.LayerBase.backward` lines,
    with the user's numbers) and the backward totals they add up to; why there is none, or that it is unknown."""
    backward = backward_of(step, grads)
    if backward is None:
        return [f"backward: unknown: the type {step.layer.type_name!r} does not state its backward pass (no "
                f"backward() method): no figure is guessed"]
    lines = list(backward.lines)
    if grads.flows:
        lines.append(f"backward MACs = input gradients {backward.input_macs:,} + weight gradients "
                     f"{backward.weight_macs:,} = {backward.macs:,}; backward FLOPs = 2·{backward.macs:,} + "
                     f"{backward.element_flops:,} element FLOPs = {backward.flops:,}")
    return lines
