"""The bundled NumPy executor: runs a network's real forward pass (inference mode) on the CPU.

It walks the steps of ``Network.resolve()`` and applies each layer with the *resolved* geometry the analysis
computed (padding actually applied, 'same' resolved, transposed-conv crop and output padding, the avg-pool divisor
rule), so analysis and execution agree on what each layer does; output sizes and multiply-accumulates are then
produced by the arrays themselves, which is what ``layercalc verify`` checks against the report.

- Weights use PyTorch layouts: conv ``[out, in/groups, *k]``, transposed conv ``[in, out/groups, *k]``, linear
  ``[out, in]``, BatchNorm ``weight``/``bias``/``running_mean``/``running_var``. Missing ones are initialized like
  PyTorch (Kaiming-uniform: U(±1/√fan_in) for weights and biases; norm weight 1, bias 0, running mean 0, var 1)
  from ``seed``, one generator per layer so a layer's weights do not depend on the others.
- BatchNorm uses running statistics, dropout is the identity.
- Convolution is im2col on strided views + one BLAS matrix product per chunk (see :mod:`layercalc.kernels`).
- Before running, the peak memory is estimated (weights + live activations + workspace) and the run is refused
  with a ``ResourceError`` above ``max_memory``. Each activation is freed after its last consumer, and
  element-wise layers overwrite a dying input instead of allocating.
"""

from __future__ import annotations

import fractions
import math
import numbers
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import numpy.typing as npt

from . import kernels as K
from .errors import (
    NumericError,
    ResourceError,
    ShapeError,
    SpecError,
    layer_label,
    whole_number_problem,
)
from .formatting import human_bytes
from .graph import produced
from .layers.base import not_runnable
from .names import INPUT
from .weights import (
    IGNORED_PARAMS,
    Weights,
    WeightsSource,
    check_weights,
    drop_derived_buffers,
    drop_tied_copies,
    first_line,
    init_params,
    normalize_weights,
    param_shapes,
)

if TYPE_CHECKING:
    from .graph import Network


#: fraction of the available memory a run may use by default
DEFAULT_MEMORY_FRACTION = 0.8

# ------------------------------------------------------------------------------------------------------- dtype

def resolve_dtype(network, dtype=None) -> np.dtype:
    """float32 unless float64 is asked for (here or by the spec's ``dtype``)."""
    if dtype is None:
        dtype = "float64" if network.dtype == "float64" else "float32"
    try:
        resolved = np.dtype(dtype)
    except (TypeError, ValueError, SyntaxError, KeyError):     # np.dtype's ways of refusing a name
        raise SpecError(f"dtype {dtype!r}: the executor runs float32 or float64") from None
    if resolved not in (np.float32, np.float64):
        raise SpecError(f"dtype {dtype!r}: the executor runs float32 or float64")
    return resolved


# ------------------------------------------------------------------------------------------------------ memory

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
          "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}


def parse_bytes(text: Union[str, int, float]) -> int:
    """``"512M"``, ``"2GB"``, ``"1.5 GiB"``, ``1000000`` → bytes (K/M/G alone are binary, KB/MB/GB decimal).

    >>> parse_bytes("2G"), parse_bytes("2GB"), parse_bytes("1.5 KiB"), parse_bytes(1000)
    (2147483648, 2000000000, 1536, 1000)
    """
    if isinstance(text, numbers.Real) and not isinstance(text, bool) and not _is_bool(text):
        if isinstance(text, numbers.Integral):
            count = int(text)
        elif math.isfinite(float(text)):
            count = int(float(text))
        else:
            raise SpecError(f"max memory {text!r}: must be a finite number of bytes")
        if count <= 0:
            raise SpecError(f"max memory {text!r}: must be positive")
        if count > MAX_MEMORY_BYTES:
            raise SpecError(f"max memory {text!r}: larger than any memory (at most 2**64 bytes)")
        return count
    shown = repr(text) if len(repr(text)) <= 40 else f"{repr(text)[:30]}… ({len(str(text))} characters)"
    match = re.fullmatch(r"\s*([0-9]*)(\.[0-9]+)?\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(3).lower() if match else None
    if not match or not (match.group(1) or match.group(2)) or unit not in _UNITS:
        raise SpecError(f"max memory {shown}: expected a positive size such as 512M, 2G, 1.5GB or a number of bytes")
    whole = match.group(1).lstrip("0")
    if len(whole) > 24:                     # before any conversion: Python refuses int() of 4,300+ digits
        raise SpecError(f"max memory {shown}: larger than any memory (at most 2**64 bytes)")
    count = int(fractions.Fraction(f"{whole or 0}{match.group(2) or ''}") * _UNITS[unit])
    if count <= 0:
        raise SpecError(f"max memory {shown}: must be at least 1 byte")
    if count > MAX_MEMORY_BYTES:
        raise SpecError(f"max memory {shown}: larger than any memory (at most 2**64 bytes)")
    return count


#: the largest memory limit taken (16 EiB): anything above is a typo, not a machine
MAX_MEMORY_BYTES = 2**64


def _is_bool(value) -> bool:
    return getattr(getattr(value, "dtype", None), "kind", None) == "b"


def check_seed(seed) -> int:
    """The seed as an int: a whole number (not a boolean, a string or a fraction)."""
    problem = whole_number_problem(seed)
    if problem is None and isinstance(seed, (list, tuple, dict, set)):
        problem = f"{seed!r} is a {type(seed).__name__}, not a whole number"
    if problem is not None:
        raise SpecError(f"seed: {problem}")
    return int(seed)


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
        return int(text)
    except (OSError, ValueError):
        return None


def available_memory() -> int:
    """Bytes this process can still use: MemAvailable (Linux) or physical RAM, capped by a cgroup limit."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            available = 8 * 2**30                 # no way to know: assume a small machine
    limit = _read_int("/sys/fs/cgroup/memory.max")  # containers are killed at their cgroup limit, not at RAM
    if limit is not None:
        available = min(available, max(limit - (_read_int("/sys/fs/cgroup/memory.current") or 0), 0))
    return available


def default_memory_limit() -> int:
    return int(DEFAULT_MEMORY_FRACTION * available_memory())


def memory_limit(max_memory: Union[int, float, str, None] = None) -> int:
    """The bytes a run may use: ``max_memory`` (bytes or a size string, :func:`parse_bytes`), else the default
    share of the available memory."""
    return default_memory_limit() if max_memory is None else parse_bytes(max_memory)


@dataclass
class MemoryEstimate:
    """Peak bytes of a run.

    - ``weights``: the arrays passed in (``weights=``), held for the whole run, and the parameters of layers others
      are tied to (made once, kept). Other weights that are *not* passed in are initialized one layer at a time
      and dropped after it, so they are part of that layer's temporaries.
    - ``activations``: the largest sum of live activations plus one layer's temporaries (its parameters and their
      reordered copy, padded input, …).
    - ``workspace``: the im2col buffer, kept for the whole run, so added in full.
    """
    weights: int
    activations: int
    workspace: int
    peak_step: str = ""

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.workspace

    def describe(self) -> str:
        at = f" at {self.peak_step}" if self.peak_step else ""
        if self.weights:
            held = f"weights held for the run (passed in, or shared by tied layers) {human_bytes(self.weights)}"
        else:
            held = "no weights passed in: each layer's are made when it runs, counted in its temporaries"
        return (f"{human_bytes(self.total)} (activations and one layer's temporaries {human_bytes(self.activations)}"
                f"{at}, im2col workspace {human_bytes(self.workspace)}, {held})")


def _numel(shape) -> int:
    return math.prod(shape)


def _step_scratch(step, itemsize: int, channels_last: bool, weights_given: bool = False) -> tuple[int, int]:
    """(temporary bytes while the step runs, im2col workspace bytes) beyond its inputs and output: the layer type's
    own bound (:meth:`LayerBase.scratch_bytes`). ``weights_given``: its weights were passed in (already held)."""
    return step.layer.scratch_bytes(step, itemsize, channels_last, weights_given)


def estimate_memory(steps, input_shape, dtype, channels_last: bool, given_weights: Optional[Weights] = None
                    ) -> MemoryEstimate:
    """Estimate the peak memory of executing ``steps`` (from ``Network.resolve()``)."""
    run_dtype = np.dtype(dtype)
    itemsize = run_dtype.itemsize
    last_use: dict[str, int] = {}
    for position, step in enumerate(steps):
        for src in step.inputs:
            last_use[src] = position
    size = {INPUT: _numel(input_shape) * itemsize}
    live = size[INPUT]
    peak, peak_step, workspace = live, "", 0
    for position, step in enumerate(steps):
        made = produced(step.name, step.facts)
        for name, shape in made:
            size[name] = _numel(shape) * itemsize
        out = sum(size[name] for name, _ in made)
        given = (given_weights or {}).get(step.name, {})
        # every parameter passed in, contiguous and already in the run's dtype: used as is, never made, converted
        # or reshaped into a copy
        weights_given = set(param_shapes(step, channels_last)) <= set(given) and all(
            np.asarray(v).dtype == run_dtype and np.asarray(v).flags.c_contiguous
            for k, v in given.items() if k not in IGNORED_PARAMS)
        temporaries, chunk = _step_scratch(step, itemsize, channels_last, weights_given)
        workspace = max(workspace, chunk)
        if live + out + temporaries > peak:
            peak, peak_step = live + out + temporaries, layer_label(step.index, step.name, step.layer.type_name)
        live += out
        for src in set(step.inputs):
            if last_use.get(src) == position:
                live -= size[src]
    # the outputs are made C-contiguous at the end (a copy of each one that is a strided view) while all are live
    final = sum(size[name] for step in steps for name, _ in produced(step.name, step.facts) if name not in last_use)
    if live + final > peak:
        peak, peak_step = live + final, "the end (the outputs made contiguous)"
    held = sum(np.asarray(v).nbytes for params in (given_weights or {}).values() for v in params.values())
    # parameters shared by tied layers are kept for the whole run (made once, read by each layer that uses them)
    by_name = {step.name: step for step in steps}
    owners = {step.layer.tied_to for step in steps if step.layer.tied_to is not None}
    held += sum(_numel(spec.shape) * itemsize for owner in owners for spec in
                by_name[owner].layer.param_specs(by_name[owner], channels_last).values())
    return MemoryEstimate(weights=held, activations=peak, workspace=workspace, peak_step=peak_step)


#: what reading a damaged or hostile file raises, caught where files are read (and turned into one line)
# ------------------------------------------------------------------------------------------- forward steps

@dataclass
class Env:
    """What a layer's forward step (:meth:`LayerBase.forward`) needs besides its inputs and parameters."""
    channels_last: bool
    workspace: K.Workspace
    counter: K.MacCounter = field(default_factory=K.MacCounter)
    overwritable: list[bool] = field(default_factory=list)   # per input: may the layer write into it?
    feed: Optional[np.ndarray] = None        # a network-input layer's array (extra_input: LayerBase.input_shape)

    @property
    def channel_axis(self) -> int:
        return -1 if self.channels_last else 1

    def to_channels_last(self, x: np.ndarray) -> np.ndarray:
        return x if self.channels_last else np.moveaxis(x, 1, -1)

    def from_channels_last(self, y: np.ndarray) -> np.ndarray:
        return y if self.channels_last else np.moveaxis(y, -1, 1)

    def out_for(self, x: np.ndarray, index: int = 0) -> Optional[np.ndarray]:
        """``x`` itself when the layer may overwrite it (its last use, not shared), else None (allocate)."""
        return x if self.overwritable[index] else None


# ------------------------------------------------------------------------------------------------------ running

def all_finite(array: np.ndarray) -> bool:
    """No inf or NaN in ``array``, without an array-sized temporary: the sum of squares (one BLAS pass over the
    memory, in any order) is finite only if every element is; when it is not (an inf, a NaN, or finite values so
    large their squares overflow), the exact answer comes from min and max (NaN propagates through both)."""
    if array.dtype.kind != "f" or array.size == 0:
        return True
    with np.errstate(all="ignore"):
        return _all_finite(array)


def _all_finite(array: np.ndarray) -> bool:
    order = sorted(range(array.ndim), key=lambda axis: -abs(array.strides[axis]))
    memory_order = array.transpose(order)
    if memory_order.flags.c_contiguous and array.dtype in (np.float32, np.float64):
        flat = memory_order.reshape(-1)
        if np.isfinite(np.dot(flat, flat)):
            return True
    elif np.isfinite(np.add.reduce(array, axis=None)):
        return True
    return bool(np.isfinite(array.min()) and np.isfinite(array.max()))


def _split_inputs(network, x) -> tuple[Any, dict[str, Any]]:
    """The first input's array and the others' by name: ``x`` is one array (a network with one input, or the first
    of several, the others drawn), a list or tuple of one array per input in :meth:`Network.input_shapes`' order,
    or a mapping by input name."""
    if not isinstance(x, (list, tuple, dict)) or (isinstance(x, (list, tuple)) and len(network.input_shapes()) == 1):
        return x, {}
    names = list(network.input_shapes())
    listed = ", ".join(f"{name} {shape}" for name, shape in network.input_shapes().items())
    if isinstance(x, dict):
        unknown = [str(name) for name in x if name not in names]
        if unknown:
            raise ShapeError(f"input: {', '.join(map(repr, unknown))} is not an input of the network; its inputs: "
                             f"{listed}")
        given = dict(x)
    else:
        if len(x) != len(names):
            raise ShapeError(f"input: got {len(x)} arrays; the network has {len(names)} input"
                             f"{'s' if len(names) > 1 else ''}: {listed} (one array per input, in this order)")
        given = dict(zip(names, x))
    return given.pop(INPUT, None), given


def _with_input(network, x, dtype):
    """The network (re-batched to the array's batch) and the input array converted to ``dtype``."""
    if x is None:
        return network, None
    converted = _input_array(x, INPUT, tuple(network.input), dtype)
    if converted.shape[0] != network.batch:
        network = network.model_copy(update={"batch": int(converted.shape[0])})
    return network, converted


def _input_array(x, name: str, expected: tuple[int, ...], dtype, batch: Optional[int] = None) -> np.ndarray:
    """The array given for the network input ``name`` (shape ``[batch, *expected]``), checked and converted."""
    try:
        array = np.asarray(K.as_numpy(x))
    except (ValueError, TypeError) as e:            # ragged nested lists
        raise ShapeError(f"{name}: not an array of numbers ({first_line(e)})") from None
    if array.dtype.kind not in "fiub":
        raise ShapeError(f"{name}: expected numbers, got an array of {array.dtype}")
    if array.ndim != len(expected) + 1 or array.shape[1:] != expected or array.shape[0] < 1:
        whose = "the spec's input" if name == INPUT else f"the input {name!r}"
        raise ShapeError(f"{name}: expected an array of shape [batch, {', '.join(map(str, expected))}] ({whose} "
                         f"{list(expected)} after a batch dim), got {list(array.shape)}")
    if batch is not None and array.shape[0] != batch:
        raise ShapeError(f"{name}: a batch of {array.shape[0]} (shape {list(array.shape)}), the first input's is "
                         f"{batch}: every input of the network has the same batch")
    if not all_finite(array):
        bad = ~np.isfinite(array)
        first = [int(i) for i in np.argwhere(bad)[0]]
        count = int(bad.sum())
        raise ShapeError(f"{name}: {count} of its {array.size} values {'is' if count == 1 else 'are'} NaN or "
                         f"infinite (the first at {first}: {float(array[tuple(first)])}); the executor needs "
                         f"finite numbers")
    with np.errstate(all="ignore"):
        converted = array.astype(dtype, copy=False)
    if converted is not array and not all_finite(converted):
        raise ShapeError(f"{name}: values up to {float(np.max(np.abs(array))):.6g} exceed the range of {dtype} "
                         f"(largest {float(np.finfo(dtype).max):.6g}); run in float64 (dtype='float64', "
                         f"--dtype float64) or scale the input down")
    return converted


def _draw_input(rng, shape, readers: list, dtype) -> np.ndarray:
    """A random input: token ids below the smallest vocabulary of the embeddings reading it, else N(0, 1)."""
    counts = [n for step in readers for n in [step.layer.index_count()] if n is not None]
    if counts:
        return rng.integers(0, min(counts), size=shape).astype(dtype)
    return rng.standard_normal(shape, dtype=dtype)


def execute(network, x=None, weights=None, seed: int = 0, dtype=None, max_memory=None,
            on_layer: Optional[Callable[[int, int, Any, np.ndarray, int], None]] = None,
            on_estimate: Optional[Callable[[MemoryEstimate], None]] = None,
            steps: Optional[list] = None) -> dict[str, np.ndarray]:
    """Run the forward pass; returns ``{output_name: array}``.

    ``on_layer(done, total, step, output, macs)`` is called after each layer with its output array and the
    multiply-accumulates the layer performed; ``on_estimate(estimate)`` once the memory estimate is accepted.
    Raises ``NumericError`` naming the first layer whose output holds an inf or NaN (a float overflow), and
    ``ResourceError`` for a run above ``max_memory`` (refused before it starts) or out of memory. ``steps``: the
    network's ``resolve()`` when the caller made it already (for the batch of ``x``, if given).
    """
    seed = check_seed(seed)
    dtype = resolve_dtype(network, dtype)
    limit = memory_limit(max_memory)
    where = {"step": None}
    try:
        with np.errstate(all="ignore"):          # overflow is detected per layer below, not printed by NumPy
            return _execute(network, x, weights, seed, dtype, limit, on_layer, on_estimate, where, steps)
    except MemoryError:
        at = f" at {where['step']}" if where["step"] else ""
        raise ResourceError(f"{network.name or 'network'}: ran out of memory{at}; use a smaller batch or a lower "
                            f"--max-memory (max_memory=) so the run is refused up front") from None


def _execute(network, x, weights, seed, dtype, limit, on_layer, on_estimate, where, steps=None
             ) -> dict[str, np.ndarray]:
    batch = network.batch
    x, others = _split_inputs(network, x)
    network, x = _with_input(network, x, dtype)
    if steps is None or network.batch != batch:         # re-batched to the input's batch: resolved again
        steps = network.resolve()
    for step in steps:
        if not step.layer.runnable():             # before anything is estimated, read or allocated
            raise not_runnable(step)
    channels_last = network.channels_last
    given = normalize_weights(weights, steps, channels_last, limit)
    drop_derived_buffers(steps, given)
    check_weights(steps, given, channels_last)
    drop_tied_copies(steps, given)
    estimate = estimate_memory(steps, network.input_shape, dtype, channels_last, given)
    if estimate.total > limit:
        raise ResourceError(f"{network.name or 'network'}: estimated peak memory {estimate.describe()} exceeds the "
                            f"limit of {human_bytes(limit)}; use a smaller batch or raise the memory limit")
    if on_estimate is not None:
        on_estimate(estimate)
    protected: list[np.ndarray] = []          # the caller's arrays: never written into
    rng = np.random.default_rng([seed % 2**63, 2**32])
    if x is None:
        x = _draw_input(rng, network.input_shape, [step for step in steps if INPUT in step.inputs], dtype)
    else:
        protected.append(x)
    feeds: dict[str, np.ndarray] = {}         # the other inputs of the network (extra_input layers)
    for step in steps:
        if step.layer.input_shape() is None:
            continue
        shape = step.facts.output_shape
        if step.name in others:
            feeds[step.name] = _input_array(others.pop(step.name), step.name, tuple(shape[1:]), dtype, network.batch)
            protected.append(feeds[step.name])
        else:
            feeds[step.name] = _draw_input(rng, shape, [s for s in steps if step.name in s.inputs], dtype)

    last_use: dict[str, int] = {}
    for position, step in enumerate(steps):
        for src in step.inputs:
            last_use[src] = position
    tensors: dict[str, np.ndarray] = {INPUT: x}
    del x
    by_name = {step.name: step for step in steps}
    # parameters of the layers others are tied to: made once, kept for the run
    shared: dict[str, Optional[dict[str, np.ndarray]]] = {
        step.layer.tied_to: None for step in steps if step.layer.tied_to is not None}
    workspace = K.Workspace.for_run(estimate.workspace)
    try:
        for position, step in enumerate(steps):
            where["step"] = layer_label(step.index, step.name, step.layer.type_name)
            inputs = [tensors[src] for src in step.inputs]
            env = Env(channels_last, workspace, feed=feeds.pop(step.name, None))
            env.overwritable = [_may_overwrite(src, position, step, tensors, last_use, protected)
                                for src in step.inputs]
            params = _params_of(step, given, seed, dtype, channels_last, shared, by_name)
            output = step.layer.forward(step, inputs, params, env)
            del inputs, params
            made = produced(step.name, step.facts)
            arrays = list(output) if step.facts.outputs is not None else [output]
            if len(arrays) != len(made):
                raise AssertionError(f"{where['step']}: the forward step made {len(arrays)} outputs, the rule "
                                     f"{len(made)}")
            if not step.layer.keeps_finite and not all(all_finite(array) for array in arrays):
                raise NumericError(f"{where['step']}: output holds infinities or NaN: {np.dtype(dtype).name} "
                                   f"overflowed on these inputs and weights; run in float64 (--dtype float64, "
                                   f"dtype='float64') or scale the input down")
            for src in set(step.inputs):
                if last_use[src] == position:
                    del tensors[src]
            for (name, _), array in zip(made, arrays):
                tensors[name] = array
            if on_layer is not None:
                on_layer(position + 1, len(steps), step, output, env.counter.macs)
    finally:
        workspace.release()
    where["step"] = "the end (outputs made contiguous)"
    return {name: np.ascontiguousarray(tensors[name]) for step in steps for name, _ in produced(step.name, step.facts)
            if name not in last_use}


def _params_of(step, given, seed: int, dtype, channels_last: bool, shared: dict, by_name: dict) -> dict:
    """A layer's parameters for its forward step: its own, or (``tied_to``) its owner's, made once and kept
    (``shared`` holds a key, None until made, for every layer others are tied to)."""
    owner = step.layer.tied_to
    if owner is None:
        if shared.get(step.name) is not None:
            return shared[step.name]
        params = init_params(step, given.get(step.name, {}), seed, dtype, channels_last)
        if step.name in shared:
            shared[step.name] = params
        return params
    if shared[owner] is None:
        target = by_name[owner]
        shared[owner] = init_params(target, given.get(owner, {}), seed, dtype, channels_last)
    return {param: shared[owner][param] for param in step.layer.param_specs(step, channels_last)}


def _may_overwrite(src: str, position: int, step, tensors, last_use, protected) -> bool:
    """A layer may write into an input only at its last use, if it is read once by the layer, is writeable,
    is not the caller's array and shares no memory with another live tensor (views made by flatten, identity…)."""
    if last_use[src] != position or step.inputs.count(src) != 1:
        return False
    array = tensors[src]
    if not array.flags.writeable or any(np.may_share_memory(array, given) for given in protected):
        return False
    return not any(np.may_share_memory(array, other) for name, other in tensors.items() if name != src)


def run(network: Network, x: Optional[npt.ArrayLike] = None, weights: WeightsSource = None, seed: int = 0,
        dtype: Optional[npt.DTypeLike] = None, max_memory: Union[int, float, str, None] = None,
        steps: Optional[list] = None) -> Union[np.ndarray, dict[str, np.ndarray]]:
    """Execute ``network``'s forward pass (inference mode) and return its output.

    ``x``: input array ``[batch, *network.input]`` (random normal from ``seed`` when omitted; its batch size
    overrides the spec's). ``weights``: ``{layer_name: {"weight": …, "bias": …}}`` in PyTorch layouts, a flat
    ``{"layer.param": array}`` mapping or an ``.npz`` path; missing ones are initialized from ``seed``.
    ``dtype``: float32 (default) or float64. ``max_memory``: bytes or a size string (default 80 % of the available
    memory); a run estimated above it raises ``ResourceError`` before starting.

    Returns an ndarray when the network has one output, else ``{output_name: ndarray}``. ``steps``: as
    :func:`execute` takes them.
    """
    outputs = execute(network, x=x, weights=weights, seed=seed, dtype=dtype, max_memory=max_memory, steps=steps)
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs
