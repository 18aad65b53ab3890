"""Training memory: weights, gradients, optimizer state and saved activations of one training step, by optimizer
and precision, and the step's peak.

The model of a training step (docs/conventions.md, "Training memory"), P the trainable parameters, T their tensors:

- **weights**: every parameter and buffer, in the weights' dtype (fp32: 4 bytes; mixed precision: the 16-bit
  working copy, 2 bytes);
- **gradients**: one per trainable parameter, in the weights' dtype (a frozen layer — ``trainable: false`` — has
  none, and no optimizer state);
- **master weights** (mixed precision only): the float32 copy of the trainable parameters the optimizer updates;
- **optimizer state**, float32, as ``optimizer.state`` holds it after ``step()`` in torch 2.13 with default
  options: SGD none; SGD with momentum a ``momentum_buffer`` per parameter (4·P); Adam and AdamW ``exp_avg`` and
  ``exp_avg_sq`` per parameter and a float32 ``step`` scalar per parameter tensor (8·P + 4·T);
- **saved activations**: what autograd keeps for backward (:mod:`layercalc.saved`), in the activations' dtype
  (fp32: 4 bytes; mixed precision: 2), tensors of a fixed dtype (int64 indices) at their own; with full
  recomputation, their peak as :func:`layercalc.saved.recomputed_bytes` defines it;
- **backward transient**: the largest, over the layers, of the gradients alive while one layer's backward runs —
  the gradient of its outputs and those of its inputs that need one — in the activations' dtype.

The peak of a training step is their sum: everything a steady-state step (the second and later, when gradients
and optimizer state exist) holds at the point of backward where the transient is largest. Mixed precision with
Adam gives the ZeRO paper's 16 bytes per parameter (2 weights + 2 gradients + 4 master + 4 + 4 moments, Rajbhandari
et al. 2020, §3.1) plus 4 bytes per tensor for ``step``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from pydantic import BaseModel, ConfigDict, Field

from .errors import SpecError, shown
from .graph import Network, gradient_flow
from .rules import numel, produced
from .saved import SavedAccount, recomputed_bytes, saved_tensors

if TYPE_CHECKING:
    from .graph import Step

#: optimizer → (float32 bytes of state per trainable parameter, per trainable parameter tensor)
OPTIMIZER_STATE = {"sgd": (0, 0), "momentum": (4, 0), "adam": (8, 4), "adamw": (8, 4)}
#: precision → (bytes per weight and gradient, bytes per activation, float32 master copy)
PRECISIONS = {"fp32": (4, 4, False), "bf16-mixed": (2, 2, True), "fp16-mixed": (2, 2, True)}


class TrainingMemory(BaseModel):
    """The memory of one training step, in bytes (see the module's docstring for what each figure counts)."""
    model_config = ConfigDict(defer_build=True)

    optimizer: str = Field(description="sgd, momentum (SGD with momentum), adam or adamw")
    precision: str = Field(description="fp32, bf16-mixed or fp16-mixed (16-bit weights, gradients and activations, "
                                       "float32 master weights and optimizer state)")
    recompute: bool = Field(description="full activation recomputation: each repeated block checkpointed")
    trainable_params: int
    frozen_params: int = Field(description="params of layers with trainable: false: no gradient, no state")
    param_tensors: int = Field(description="trainable parameter tensors (Adam keeps a step scalar for each)")
    weight_bytes: int = Field(description="params and buffers in the weights' dtype")
    gradient_bytes: int = Field(description="one gradient per trainable param, in the weights' dtype")
    master_weight_bytes: int = Field(description="mixed precision: float32 copy of the trainable params; else 0")
    optimizer_state_bytes: int = Field(description="optimizer.state after step(): float32")
    saved_bytes: Optional[int] = Field(description="activations saved for backward, in the activations' dtype "
                                                   "(with recompute: their peak); null: a layer type not modeled")
    backward_transient_bytes: int = Field(description="largest gradients of one layer's outputs and inputs alive "
                                                      "at once during backward")
    peak_bytes: Optional[int] = Field(description="the sum of the above: a steady-state training step's peak")
    layer_saved_bytes: list[Optional[int]] = Field(description="each layer's saved_bytes in the activations' "
                                                               "dtype, in the report's layer order (execution order)")
    unknown: list[str] = Field(default_factory=list, description="layers whose saved tensors are not modeled")


def activation_itemsize(precision: str) -> int:
    """Bytes per element of the activations (saved for backward, and their gradients) at ``precision``."""
    return PRECISIONS[check_choice("precision", precision, PRECISIONS)][1]


def check_choice(option: str, value: str, choices) -> str:
    if value not in choices:
        raise SpecError(f"{option}: got {shown(value)}; one of: {', '.join(choices)}")
    return value


def training_memory(net: Network, optimizer: str = "adam", precision: str = "fp32", recompute: bool = False,
                    steps: Optional[list[Step]] = None, account: Optional[SavedAccount] = None) -> TrainingMemory:
    """The memory of one training step of ``net`` (``steps``: its :meth:`Network.resolve`, when already made;
    ``account``: :func:`~layercalc.saved.saved_tensors` of those steps at the precision's activation size, when
    already made — the command line's ``--train`` shows it per layer too)."""
    check_choice("optimizer", optimizer, OPTIMIZER_STATE)
    check_choice("precision", precision, PRECISIONS)
    steps = net.resolve() if steps is None else steps
    weight_size, activation_size, master = PRECISIONS[precision]
    trainable = frozen = tensors = buffers = 0
    for step in steps:
        params = step.facts.params
        if not step.layer.trainable:
            frozen += params
        else:
            trainable += params
            if params:          # tied layers (params 0 here) use their owner's tensors
                tensors += sum(1 for spec in step.layer.param_specs(step, net.channels_last).values()
                               if not spec.buffer)
        buffers += step.facts.buffers
    if account is None:
        account = saved_tensors(steps, gradient_flow(steps), activation_size, net.channels_last)
    saved = recomputed_bytes(steps, account, activation_size) if recompute else account.total
    per_param, per_tensor = OPTIMIZER_STATE[optimizer]
    weights = (trainable + frozen + buffers) * weight_size
    gradients = trainable * weight_size
    masters = trainable * 4 if master else 0
    state = trainable * per_param + tensors * per_tensor
    transient = backward_transient(steps, account, activation_size)
    peak = None if saved is None else weights + gradients + masters + state + saved + transient
    return TrainingMemory.model_construct(
        optimizer=optimizer, precision=precision, recompute=recompute, trainable_params=trainable,
        frozen_params=frozen, param_tensors=tensors, weight_bytes=weights, gradient_bytes=gradients,
        master_weight_bytes=masters, optimizer_state_bytes=state, saved_bytes=saved,
        backward_transient_bytes=transient, peak_bytes=peak,
        layer_saved_bytes=[entry.bytes for entry in account.layers], unknown=account.unknown)


def backward_transient(steps: list[Step], account: SavedAccount, itemsize: int) -> int:
    """The largest gradients alive at once while one layer's backward runs: its outputs' and its inputs' that
    need one (the module's docstring)."""
    largest = 0
    for step, entry in zip(steps, account.layers):
        if not entry.grads.any:
            continue
        outputs = sum(numel(shape) for _, shape in produced(step.name, step.facts))
        inputs = sum(numel(shape) for shape, grad in zip(step.input_shapes, entry.grads.inputs) if grad)
        largest = max(largest, (outputs + inputs) * itemsize)
    return largest

