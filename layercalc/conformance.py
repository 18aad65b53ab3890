"""One conformance check for every layer type, built-in or user-defined (like Keras' ``run_layer_test``).

:func:`check_layer_type` takes a layer class, the fields of one description and the shapes reaching it, and checks
what every type promises:

1. the description round-trips through its spec form (``model_dump`` → the spec parser → an equal description);
2. the type is registered and appears in the JSON Schema under its ``type`` name;
3. its rule (``infer``) accepts the shapes;
4. its backward (``backward``), where the type states one, with every input requiring a gradient and (a type
   with parameters) with none: whole non-negative counts, and no weight gradient without trainable parameters;
5. where it has a forward step: the executed output has the shape the rule predicts, the parameters and buffers it
   allocates (its ``param_specs``) add up to the counted params and buffers, and the multiply-adds it performs (as
   the kernels count them) match the counted MACs.

It raises :class:`ConformanceError` (a :class:`~layercalc.errors.LayerCalcError`) naming the check that failed and
what differs — a real exception, so the checks hold under ``python -O`` too — and returns the facts it checked. Use
it in the tests of your own layer types::

    from layercalc.conformance import check_layer_type
    check_layer_type(PixelShuffle, {"upscale_factor": 2}, [[8, 4, 4]])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from . import kernels
from .errors import LayerCalcError
from .executor import Env
from .graph import Step, backward_of
from .layers import LAYER_TYPES, LayerBase, parse_layer
from .rules import Backward, Context, Facts, Gradients, ReceptiveField, Tensor
from .spec import schema
from .weights import init_params


class ConformanceError(LayerCalcError):
    """A layer type breaks one of the promises :func:`check_layer_type` checks (its message names which)."""


def _require(holds: bool, check: str, message: str) -> None:
    if not holds:
        raise ConformanceError(f"conformance check '{check}' failed: {message}")


@dataclass
class Conformance:
    """What was checked for one description: the facts of its rule and, when it ran, what the executor saw."""
    layer: LayerBase
    facts: Facts
    ran: bool
    output_shape: Optional[tuple[int, ...]] = None
    allocated_params: Optional[int] = None
    allocated_buffers: Optional[int] = None
    performed_macs: Optional[int] = None
    #: the backward with every input requiring a gradient (None: the type does not state it)
    backward: Optional[Backward] = None


def check_layer_type(cls: type[LayerBase], fields: dict[str, Any], input_shapes: Sequence[Sequence[int]],
                     batch: int = 2, channels_last: bool = False, seed: int = 0) -> Conformance:
    """Check one description of ``cls`` on ``input_shapes`` (each one example, batch excluded); see the module
    docstring for what is checked."""
    layer = cls(**fields)
    type_name = layer.type_name

    # 1. spec round trip: what a spec file holds comes back as the same description
    dumped = layer.model_dump(exclude_none=True)
    again = parse_layer(dumped, 0)
    _require(again == layer, "spec round trip",
             f"{type_name}: the spec form {dumped} reads back as {again!r}, not {layer!r}")

    # 2. registered, and in the JSON Schema under its type name
    _require(LAYER_TYPES.get(type_name) is cls, "registered", f"{type_name}: not registered (register_layer)")
    layer_schema = schema()["$defs"]["Layer"]
    mapping = layer_schema.get("discriminator", {}).get("mapping", {})
    _require(type_name in mapping, "in the JSON Schema", f"{type_name}: missing from the JSON Schema's layer types")

    # 3. the rule
    shapes = [(batch, *shape) for shape in input_shapes]
    tensors = [Tensor(shape, ReceptiveField.of_input(len(shape) - 2) if len(shape) > 2 else None) for shape in shapes]
    facts = layer.infer(tensors, Context(f"{type_name} (conformance)", channels_last, batch))
    result = Conformance(layer, facts, ran=False)
    names = [f"input{i}" for i in range(len(shapes))]
    step = Step(0, f"{type_name}_0", layer, names, shapes, facts)

    # 4. the backward, where stated: with every input requiring a gradient, and (with parameters) with none
    weights = facts.params > 0
    for needed in ([True, False] if weights else [True]):
        backward = backward_of(step, Gradients((needed,) * len(shapes), weights))
        if needed:
            result.backward = backward
        if backward is None:
            break
        counts = (backward.input_macs, backward.weight_macs, backward.element_flops)
        _require(all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts), "backward counted",
                 f"{type_name}: backward() gave {counts} (input MACs, weight MACs, element FLOPs): whole numbers ≥ 0")
        _require(weights or backward.weight_macs == 0, "backward counted",
                 f"{type_name}: {backward.weight_macs} weight-gradient MACs without trainable parameters")
    if not cls.runnable():
        return result

    # 5. the forward step, on random inputs, with the executor's own parameter allocation and MAC counter
    specs = layer.param_specs(step, channels_last)
    params = init_params(step, {}, seed, np.float64, channels_last)
    result.allocated_params = sum(math.prod(spec.shape) for spec in specs.values() if not spec.buffer)
    result.allocated_buffers = sum(math.prod(spec.shape) for spec in specs.values() if spec.buffer)
    _require(set(params) == set(specs), "parameters allocated",
             f"{type_name}: init_params made {sorted(params)}, param_specs {sorted(specs)}")
    for name, spec in specs.items():
        _require(params[name].shape == spec.shape, "parameters allocated",
                 f"{type_name}: {name} allocated {params[name].shape}, spec {spec}")
    _require(result.allocated_params == facts.params, "parameters counted",
             f"{type_name}: allocates {result.allocated_params} parameters, the rule counts {facts.params}")
    _require(result.allocated_buffers == facts.buffers, "buffers counted",
             f"{type_name}: allocates {result.allocated_buffers} buffer values, the rule counts {facts.buffers}")

    rng = np.random.default_rng(seed)
    count = layer.index_count()                   # token ids for an embedding, real numbers otherwise
    xs = [rng.integers(0, count, size=shape).astype(np.float64) if count else rng.standard_normal(shape)
          for shape in shapes]
    _, workspace_bytes = layer.scratch_bytes(step, 8, channels_last, False)
    env = Env(channels_last, kernels.Workspace(max(workspace_bytes, 1)))
    env.overwritable = [False] * len(xs)
    output = layer.forward(step, xs, params, env)
    result.ran = True
    arrays = list(output) if facts.outputs is not None else [output]      # a layer with several outputs: each
    made = [tuple(array.shape) for array in arrays]
    result.output_shape = made[0]
    result.performed_macs = env.counter.macs
    predicted = [tuple(shape) for shape in facts.output_shapes]
    _require(made == predicted, "output shape",
             f"{type_name}: the forward step made {made}, the rule predicts {predicted}")
    _require(result.performed_macs == facts.macs, "MACs counted",
             f"{type_name}: the forward step performed {result.performed_macs} multiply-adds, the rule counts "
             f"{facts.macs}")
    return result
