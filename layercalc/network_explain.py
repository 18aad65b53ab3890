"""Every layer of a network explained: the worked formulas of ``summary --explain``, as library code (the CLI
prints what this returns)."""

from __future__ import annotations

from typing import Optional

from .explain import explain_layer
from .formatting import shape_text
from .names import split_output
from .saved import SavedAccount, explain_saved


def explain_network(net, report, saved: Optional[SavedAccount] = None) -> list[str]:
    """Every layer's worked formulas, in execution order: a line ``[index] name (type): inputs → output`` and the
    layer's explanation indented under it. ``report`` is ``net.analyze()`` (its receptive fields feed the
    explanations). ``saved`` (:func:`layercalc.saved.saved_tensors` of the same steps, ``summary --train``): what
    each layer keeps for backward, after its formulas."""
    by_name = {entry.name: entry for entry in report.layers}
    rank = len(net.input) - 1
    lines = []
    for position, step in enumerate(net.resolve()):
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
        lines += ["    " + line for line in explain_layer(step.layer, step.input_shapes, step.facts,
                                                          net.channels_last, report.dtype_bytes, input_rf)]
        if saved is not None:
            lines += ["    " + line for line in explain_saved(step, saved.layers[position], saved.itemsize)]
    return lines
