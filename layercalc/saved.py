"""The activations a training step keeps for backward: each layer's saved tensors, counted once.

Each layer type says what PyTorch's autograd keeps for its backward pass (:meth:`LayerBase.saved_for_backward`:
its input k, its output, or tensors of its own), given which of its inputs need a gradient. This module walks the
resolved layers in order and, knowing no layer by name:

- propagates *needs a gradient*: the network's inputs need none; a layer's outputs need one when any of its
  inputs does or it has trainable parameters (a layer with ``trainable: false`` has none);
- follows storage as PyTorch shares it: a layer whose output is a view of its input (``output_storage``: flatten,
  split, permute …) makes no new memory, and a tensor saved through a view keeps the whole storage alive;
- counts each storage once, in the layer that saves it first (ReLU's output is the next conv's input: one tensor),
  as ``torch.autograd.graph.saved_tensors_hooks`` de-duplicated by ``untyped_storage().data_ptr()`` sees them.

Full activation recomputation (:func:`recomputed_bytes`): every repeated block instance of two layers or more
(``layer3.2``, ``model.layers.7``: the names ``repeat:`` gives) is checkpointed as ``torch.utils.checkpoint``
does: its forward pass keeps only the block's inputs; in backward, one block at a time runs forward again and its
saved tensors live until its backward is done. The figure is the tensors kept throughout (what layers outside the
blocks save, and each block's inputs) plus the largest block's saved tensors.

The conventions are in docs/conventions.md, "Training memory".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from .display import instance_of
from .errors import layer_label
from .layers import GradFlow, Saved
from .names import INPUT
from .rules import Gradients, numel, produced

if TYPE_CHECKING:
    from .graph import Step

#: a saved tensor's identity: ("storage", tensor name of the storage's owner) or ("extra", layer, position) or
#: ("shared", key)
Key = tuple


@dataclass(slots=True)
class LayerSaved:
    """One layer's account: what it keeps (each item with its bytes and whether this layer keeps it first) and the
    bytes first kept by it. ``items`` is None for a type whose saved tensors are not modeled."""
    grads: GradFlow
    items: Optional[list[tuple[Saved, Key, int, bool]]]
    bytes: Optional[int]


@dataclass
class SavedAccount:
    """Every layer's saved tensors (in the order of the steps), the total (None when some type is not modeled:
    ``unknown`` names those layers) and the storage keys each layer keeps, for recomputation."""
    layers: list[LayerSaved]
    total: Optional[int]
    unknown: list[str] = field(default_factory=list)
    #: each tensor → the tensor whose storage it uses (itself, unless it is a view), and every tensor's shape
    roots: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: bytes per element of the activations counted (the training dtype)
    itemsize: int = 4


def saved_tensors(steps: list[Step], flows: list[Gradients], itemsize: int, channels_last: bool) -> SavedAccount:
    """What every layer keeps for backward, in bytes at ``itemsize`` bytes per element (the training dtype; a
    tensor of a fixed dtype — int64 indices — at its own), each storage counted once. ``flows``: which gradients
    each step makes (:func:`layercalc.graph.gradient_flow`, the one decision of it)."""
    root: dict[str, str] = {INPUT: INPUT}              # tensor → the tensor whose storage it uses
    contiguous: dict[str, bool] = {INPUT: True}
    shapes: dict[str, tuple[int, ...]] = {}
    seen: dict[Key, int] = {}
    parameters: set[str] = set()                       # tensors that are parameters: held as weights, not counted
    layers: list[LayerSaved] = []
    unknown: list[str] = []
    for step, flow in zip(steps, flows):
        for src, shape in zip(step.inputs, step.input_shapes):
            shapes.setdefault(src, shape)
        grads = GradFlow(flow.inputs, flow.weights, itemsize, channels_last)
        outputs = produced(step.name, step.facts)
        storage = step.layer.output_storage
        source = step.inputs[0] if step.inputs else ""
        for name, shape in outputs:
            shapes[name] = shape
            view = bool(source) and (storage in ("view", "strided")
                                     or (storage == "reshape" and contiguous.get(source, True)))
            root[name] = root.get(source, source) if view else name
            contiguous[name] = (storage != "strided") and (not view or contiguous.get(source, True))
            if storage == "parameter":
                parameters.add(name)
        listed = step.layer.saved_for_backward(step, grads)
        if listed is None:
            unknown.append(layer_label(step.index, step.name, step.layer.type_name))
            layers.append(LayerSaved(grads, None, None))
            continue
        items = []
        first_bytes = 0
        for position, item in enumerate(listed):
            size = item.itemsize or itemsize
            if item.kind == "extra":
                key: Key = ("shared", item.shared) if item.shared else ("extra", step.name, position)
                nbytes = item.numel * size
            else:
                tensor = step.inputs[item.index] if item.kind == "input" else outputs[item.index][0]
                owner = root.get(tensor, tensor)
                key = ("storage", owner)
                nbytes = 0 if owner in parameters else numel(shapes[owner]) * size
            first = key not in seen
            if first:
                seen[key] = nbytes
                first_bytes += nbytes
            items.append((item, key, nbytes, first))
        layers.append(LayerSaved(grads, items, first_bytes))
    total = None if unknown else sum(seen.values())
    return SavedAccount(layers, total, unknown, root, shapes, itemsize)


def recomputed_bytes(steps: list[Step], account: SavedAccount, itemsize: int) -> Optional[int]:
    """The saved activations at their peak with full recomputation (the module's docstring defines it): what is
    kept throughout plus the largest checkpointed block's own saved tensors. None when the account has no total."""
    if account.total is None:
        return None
    blocks = checkpoint_blocks(steps)
    member = {position: block for block, positions in enumerate(blocks) for position in positions}
    kept: dict[Key, int] = {}
    for position, entry in enumerate(account.layers):
        if position not in member:
            kept.update((key, nbytes) for _, key, nbytes, _ in entry.items or [])
    for positions in blocks:                      # a block's inputs from outside it are kept by the checkpoint
        made = {name for p in positions for name, _ in produced(steps[p].name, steps[p].facts)}
        for p in positions:
            for src, shape in zip(steps[p].inputs, steps[p].input_shapes):
                if src not in made:
                    owner = account.roots.get(src, src)
                    kept[("storage", owner)] = numel(account.shapes.get(owner, shape)) * itemsize
    largest = 0
    for positions in blocks:
        own: dict[Key, int] = {}
        for p in positions:
            own.update((key, nbytes) for _, key, nbytes, _ in account.layers[p].items or [] if key not in kept)
        largest = max(largest, sum(own.values()))
    return sum(kept.values()) + largest


def checkpoint_blocks(steps: list[Step]) -> list[list[int]]:
    """The positions of the layers of each checkpointed block: consecutive layers of one repeated instance
    (``layer3.2.*``), two or more of them."""
    blocks: list[list[int]] = []
    current: Optional[tuple[str, int]] = None
    for position, step in enumerate(steps):
        key = instance_of(step.name)
        if key is not None and key == current and blocks:
            blocks[-1].append(position)
        elif key is not None:
            blocks.append([position])
        current = key
    return [block for block in blocks if len(block) > 1]


def explain_saved(step: Step, entry: LayerSaved, itemsize: int) -> list[str]:
    """``--explain --train``: what the layer keeps for backward and why, each tensor with its size, and which of
    them an earlier layer keeps already (counted there); one line each, as every explanation line: the command
    fits them to the terminal (terminal.wrap_formula), which a line already broken here would break again."""
    grads = entry.grads
    if entry.items is None:
        return [f"saved for backward: not modeled for type {step.layer.type_name!r}"]
    if not entry.items:
        why = ("nothing here needs a gradient (no trainable parameter in or before it)" if not grads.any
               else "its backward needs no tensor of the forward pass")
        return [f"saved for backward: nothing: {why}"]
    lines = []
    for item, key, nbytes, first in entry.items:
        size = item.itemsize or itemsize
        if item.kind == "extra":
            label = "its own tensor"
            elements = item.numel
        else:
            tensor = step.inputs[item.index] if item.kind == "input" else produced(step.name, step.facts)[item.index][0]
            owner = key[1]
            label = f"{item.kind} {tensor}" + (f" (a view of {owner})" if owner != tensor else "")
            elements = nbytes // size if size else 0
        counted = (f"{elements:,} × {size} B = {nbytes:,} B" if first
                   else f"{nbytes:,} B, kept already by an earlier layer: counted there")
        lines.append(f"saved, {label}: {counted}; {item.what}")
    lines.append(f"saved for backward, first kept here = {entry.bytes:,} B")
    return lines
