"""PyTorch's own account of the tensors autograd keeps for backward, the oracle of layercalc's saved-activation
figures (tests/test_training_memory.py).

``torch.autograd.graph.saved_tensors_hooks`` sees every tensor an autograd node saves, as the forward pass saves it;
tensors are de-duplicated by storage (``untyped_storage().data_ptr()``: a view and its base, or one tensor saved by
two nodes, are one allocation) and a storage is counted whole (``untyped_storage().nbytes()``: a saved slice keeps
its whole base alive). Storages of parameters are excluded (they are held anyway, as weights).
"""

from __future__ import annotations

import torch


def saved_storages(model: torch.nn.Module, *args, **kwargs) -> tuple[dict[int, int], object]:
    """Run ``model(*args, **kwargs)`` with grad enabled; every distinct non-parameter storage autograd saved →
    its bytes, and the output."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    seen: dict[int, int] = {}
    keep = []                                   # hold the saved tensors: a freed storage's address may be reused

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params and ptr not in seen:
            seen[ptr] = storage.nbytes()
        keep.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(*args, **kwargs)
    return seen, out


def saved_bytes(model: torch.nn.Module, *args, **kwargs) -> int:
    """The bytes of the distinct storages autograd keeps for backward (parameters excluded)."""
    seen, _ = saved_storages(model, *args, **kwargs)
    return sum(seen.values())


def saved_by_module(model: torch.nn.Module, *args, **kwargs) -> dict[str, int]:
    """The bytes of :func:`saved_storages`, each storage under the innermost module running when it was first saved
    (``""``: outside every submodule), for comparing layer by layer."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in model.buffers()}
    stack = [""]
    seen: set[int] = set()
    by_module: dict[str, int] = {}
    keep = []

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in params and ptr not in seen:
            seen.add(ptr)
            by_module[stack[-1]] = by_module.get(stack[-1], 0) + storage.nbytes()
        keep.append(t)
        return t

    def enter(name):
        return lambda module, args: stack.append(name)       # (returns None: the arguments unchanged)

    def leave(module, args, output):
        stack.pop()                                         # (returns None: the output unchanged)

    hooks = []
    for name, module in model.named_modules():
        if name:
            hooks.append(module.register_forward_pre_hook(enter(name)))
            hooks.append(module.register_forward_hook(leave))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(*args, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    return by_module
