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
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np
import numpy.typing as npt

from . import kernels as K
from .errors import (
    LayerCalcError,
    NumericError,
    ResourceError,
    ShapeError,
    SpecError,
    did_you_mean,
    layer_label,
    whole_number_problem,
)
from .graph import produced
from .layers.base import not_runnable

if TYPE_CHECKING:
    from .graph import Network

INPUT = "input"

#: parameters a torchvision state_dict holds that are bookkeeping, not state the forward pass reads
IGNORED_PARAMS = {"num_batches_tracked"}

#: fraction of the available memory a run may use by default
DEFAULT_MEMORY_FRACTION = 0.8

Weights = Mapping[str, Mapping[str, Any]]
#: what ``weights=`` takes: ``{layer: {param: array}}``, a flat ``{"layer.param": array}`` mapping, or an .npz path
WeightsSource = Union[Mapping[str, Any], str, "os.PathLike[str]", None]


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


def format_bytes(count: int) -> str:
    """Bytes in binary units, for error messages and the verify table.

    >>> format_bytes(3 * 2**30 // 2)
    '1.50 GiB'
    """
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.2f} {unit}"
    return f"{count} B"


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
            held = f"weights held for the run (passed in, or shared by tied layers) {format_bytes(self.weights)}"
        else:
            held = "no weights passed in: each layer's are made when it runs, counted in its temporaries"
        return (f"{format_bytes(self.total)} (activations and one layer's temporaries {format_bytes(self.activations)}"
                f"{at}, im2col workspace {format_bytes(self.workspace)}, {held})")


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


# ------------------------------------------------------------------------------------------------------ weights

#: what reading a damaged or hostile file raises, caught where files are read (and turned into one line)
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, RuntimeError, NotImplementedError,
                KeyError)

_NPY_MAGIC = b"\x93NUMPY"


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _npy_header(stream, where: str, kinds: str = "fiub") -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data bytes)`` from an .npy header, read before any data; refuses pickled objects and
    anything but numbers."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise SpecError(f"{where}: .npy format version {version[0]}.{version[1]} is not read (1.0 and 2.0 are)")
    if dtype.hasobject:
        raise SpecError(f"{where}: holds Python objects (a pickled array), which are never loaded; save numbers")
    if dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None:
        raise SpecError(f"{where}: holds {dtype} values, expected numbers")
    return tuple(int(n) for n in shape), dtype, math.prod(shape) * dtype.itemsize


def load_array(path, what: str = "--input", max_bytes: Optional[int] = None,
               check_shape: Optional[Callable[[tuple[int, ...]], None]] = None) -> np.ndarray:
    """Read one array from an ``.npy`` file, checking its header first: numbers only (never pickled objects), the
    data the header declares present in the file, within ``max_bytes``, and ``check_shape(shape)`` passed —
    all before the data is read."""
    where = f"{what}: {path}"
    try:
        with open(os.fspath(path), "rb") as f:
            magic = f.read(len(_NPY_MAGIC))
            if magic[:2] == b"PK":
                raise SpecError(f"{where}: an .npz archive of several arrays; expected one array (.npy)")
            if magic != _NPY_MAGIC:
                raise SpecError(f"{where}: not a readable .npy array (no .npy header: np.save writes one)")
            f.seek(0)
            shape, dtype, nbytes = _npy_header(f, where)
            present = os.fstat(f.fileno()).st_size - f.tell()
            if present < nbytes:
                raise SpecError(f"{where}: truncated: the header declares shape {list(shape)} {dtype} "
                                f"({nbytes} bytes of data), the file holds {present}")
            if max_bytes is not None and nbytes > max_bytes:
                raise ResourceError(f"{where}: shape {list(shape)} {dtype} is {format_bytes(nbytes)}, above the "
                                    f"memory limit of {format_bytes(max_bytes)}")
            if check_shape is not None:
                check_shape(shape)
            f.seek(0)
            return np.lib.format.read_array(f, allow_pickle=False)
    except LayerCalcError:
        raise
    except FileNotFoundError:
        raise SpecError(f"{where}: no such file") from None
    except MemoryError:
        raise ResourceError(f"{where}: not enough memory to read the array") from None
    except _READ_ERRORS as e:
        raise SpecError(f"{where}: not a readable .npy array ({_first_line(e)})") from None


def split_weight_key(key: str, layer_names: Optional[Any] = None) -> tuple[str, str]:
    """``(layer, param)`` of a weights key ``"<layer>.<param>"``. Layer names may hold dots (``layer1.0.conv1``);
    knowing the layers, the key's longest prefix that names one is the layer and the rest, dots written ``_``, the
    parameter — so a framework's nested keys load as they are (``attn.qkv.weight`` → layer ``attn``, parameter
    ``qkv_weight``; ``self_attention.out_proj.weight`` → ``out_proj_weight``); a key that is itself a layer's name
    is that ``parameter`` layer's ``weight`` (``class_token``). Otherwise the key is split at its last dot.

    >>> split_weight_key("layer1.0.conv1.weight"), split_weight_key("b.attn.qkv.weight", {"b.attn"})
    (('layer1.0.conv1', 'weight'), ('b.attn', 'qkv_weight'))
    """
    if layer_names is not None and key in layer_names:     # a learnable tensor of its own (a `parameter` layer)
        return key, "weight"
    layer, param = key.rsplit(".", 1)
    if layer_names is None or layer in layer_names:
        return layer, param
    parts = key.split(".")
    for cut in range(len(parts) - 2, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in layer_names:
            return prefix, "_".join(parts[cut:])
    return layer, param


def is_weight_key(key: str, layer_names: Optional[Any] = None) -> bool:
    """``key`` can name a parameter: ``"<layer>.<param>"``, or (knowing the layers) a layer's own name — how
    PyTorch saves an ``nn.Parameter`` attribute of the model itself (torchvision's ViT: ``class_token``), which
    :func:`split_weight_key` reads as that ``parameter`` layer's ``weight``."""
    return "." in key or (layer_names is not None and key in layer_names)


def load_weights(path, steps=None, channels_last: bool = False,
                 max_bytes: Optional[int] = None) -> dict[str, dict[str, np.ndarray]]:
    """Read an ``.npz`` of ``"<layer_name>.<param>"`` arrays (a PyTorch state_dict saved with ``np.savez``).

    Layer names may contain dots (``layer1.0.conv1.weight``): keys are split by :func:`split_weight_key`. Every member's
    .npy header is read first: numbers only (never pickled objects), the member's declared uncompressed size equal
    to what its header describes, the total within ``max_bytes`` and, given the network's ``steps``, every key a
    parameter of a layer with its shape — all before any array is decompressed (a small file can declare or
    inflate to gigabytes).

    A Keras ``.keras`` file or ``.weights.h5`` file (told by content) is read by the Keras importer, which converts
    Keras' layouts to these (:func:`layercalc.importers.keras.read_keras_weights`); an ONNX file (told by content)
    by the ONNX importer, which maps its initializers onto the layers it imports
    (:func:`layercalc.importers.onnx.read_onnx_weights`).
    """
    where = os.fspath(path)
    from .importers import weights_reader
    reader = weights_reader(where)
    if reader is not None:
        return reader(where, steps, channels_last, max_bytes)
    try:
        archive = zipfile.ZipFile(where)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such weights file") from None
    except MemoryError:
        raise ResourceError(f"{path}: not enough memory to read the weights") from None
    except _READ_ERRORS as e:
        single = False
        try:
            with open(where, "rb") as f:
                single = f.read(len(_NPY_MAGIC)) == _NPY_MAGIC
        except OSError:
            pass
        if single:
            raise SpecError(f"{path}: holds a single array; weights must be an .npz archive of "
                            f"'<layer_name>.<param>' arrays (np.savez)") from None
        raise SpecError(f"{path}: cannot read weights ({_first_line(e)}); expected an .npz archive") from None
    by_name = {step.name: step for step in steps} if steps is not None else None
    nested: dict[str, dict[str, np.ndarray]] = {}
    try:
        with archive:
            members, total, seen = [], 0, set()
            for info in archive.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                if key in seen:
                    raise SpecError(f"{path}: key {key!r} appears twice in the archive")
                seen.add(key)
                if not is_weight_key(key, by_name):
                    raise SpecError(f"{path}: key {key!r} is not '<layer_name>.<param>' (e.g. 'conv1.weight')")
                with archive.open(info) as member:
                    shape, dtype, nbytes = _npy_header(member, f"{path}: key {key!r}", "fiu")
                    header = member.tell()
                if info.file_size != header + nbytes:
                    raise SpecError(f"{path}: key {key!r}: the archive declares {info.file_size} bytes but its "
                                    f"header describes shape {list(shape)} {dtype} ({header + nbytes} bytes): a "
                                    f"damaged or crafted file")
                layer, param = split_weight_key(key, by_name)
                if by_name is not None:
                    _check_param(by_name, layer, param, shape, dtype, channels_last)
                total += nbytes
                members.append((info, layer, param))
            if max_bytes is not None and total > max_bytes:
                raise ResourceError(f"{path}: the weights' arrays hold {format_bytes(total)}, above the memory "
                                    f"limit of {format_bytes(max_bytes)}")
            for info, layer, param in members:
                with archive.open(info) as member:
                    nested.setdefault(layer, {})[param] = np.lib.format.read_array(member, allow_pickle=False)
    except LayerCalcError:
        raise
    except MemoryError:
        raise ResourceError(f"{path}: not enough memory to read the weights") from None
    except _READ_ERRORS as e:
        raise SpecError(f"{path}: damaged weights archive ({_first_line(e)})") from None
    return nested


def normalize_weights(weights, steps=None, channels_last: bool = False,
                      max_bytes: Optional[int] = None) -> dict[str, dict[str, Any]]:
    """A path (``.npz``, ``.keras``, ``.weights.h5``, ``.onnx``), a nested mapping ``{layer: {param: array}}`` or a
    flat one ``{"layer.param": array}``."""
    if weights is None:
        return {}
    if isinstance(weights, (str, os.PathLike)):
        return load_weights(weights, steps, channels_last, max_bytes)
    if not isinstance(weights, Mapping):
        raise SpecError(f"weights: expected a mapping {{layer_name: {{param: array}}}} or an .npz path, "
                        f"got {type(weights).__name__}")
    nested: dict[str, dict[str, Any]] = {}
    layer_names = {step.name for step in steps} if steps is not None else None
    for key, value in weights.items():
        if isinstance(value, Mapping):
            nested.setdefault(str(key), {}).update({param: K.as_numpy(array) for param, array in value.items()})
        elif is_weight_key(str(key), layer_names):
            layer, param = split_weight_key(str(key), layer_names)
            nested.setdefault(layer, {})[param] = K.as_numpy(value)
        else:
            raise SpecError(f"weights: key {key!r} is neither a layer name with a mapping of arrays nor "
                            f"'<layer_name>.<param>'")
    return nested


def _channels(shape, channels_last: bool) -> int:
    return shape[-1] if channels_last else shape[1]


def param_shapes(step, channels_last: bool) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each parameter a layer reads: its PyTorch shape and how that shape is made (for messages)."""
    return {name: (spec.shape, spec.layout) for name, spec in step.layer.param_specs(step, channels_last).items()}


def check_weights(steps, weights: dict[str, dict[str, Any]], channels_last: bool) -> None:
    """Every given array names a layer and a parameter it has, with the right shape (one-line ``SpecError``)."""
    by_name = {step.name: step for step in steps}
    for name, params in weights.items():
        _check_layer(by_name, name)
        if not isinstance(params, Mapping):
            raise SpecError(f"weights for layer {name!r}: expected a mapping {{param: array}}, got "
                            f"{type(params).__name__}")
        for param, value in params.items():
            if param in IGNORED_PARAMS:
                continue
            try:
                array = np.asarray(value)
            except (ValueError, TypeError) as e:       # ragged nested lists, objects NumPy cannot hold
                step = by_name[name]
                raise SpecError(f"weights for {layer_label(step.index, step.name, step.layer.type_name)}: "
                                f"'{name}.{param}' is not an array of numbers ({_first_line(e)})") from None
            _check_param(by_name, name, param, array.shape, array.dtype, channels_last)


def _check_layer(by_name, name: str):
    step = by_name.get(name)
    if step is None:
        names = ", ".join(list(by_name)[:8]) + (" …" if len(by_name) > 8 else "")
        raise SpecError(f"weights: no layer named {name!r} in the network"
                        f"{did_you_mean(name, by_name) or f' (layer names: {names})'}")
    return step


def drop_tied_copies(steps, weights: dict[str, dict[str, Any]]) -> None:
    """A tied layer's own copy of its owner's weights (a framework's ``state_dict`` lists a shared tensor under
    both names: GPT-2's ``lm_head.weight`` and ``transformer.wte.weight``) is dropped when it equals the owner's;
    a copy that differs, or one given without the owner's, is an error (which one should the run use?)."""
    by_name = {step.name: step for step in steps}
    for name in [n for n in weights if n in by_name and by_name[n].layer.tied_to is not None]:
        step, owner = by_name[name], by_name[name].layer.tied_to
        label = layer_label(step.index, step.name, step.layer.type_name)
        mine, theirs = weights[name], weights.get(owner, {})
        for param, value in mine.items():
            if param in IGNORED_PARAMS:
                continue
            if param not in theirs or not np.array_equal(np.asarray(value), np.asarray(theirs[param])):
                raise SpecError(f"weights for {label}: its parameters are those of {owner!r} (tied_to), but "
                                f"'{name}.{param}' is {'given without' if param not in theirs else 'not equal to'} "
                                f"'{owner}.{param}': give them under {owner!r} only")
        del weights[name]


def drop_derived_buffers(steps, weights: dict[str, dict[str, Any]]) -> None:
    """Tensors a layer computes itself (:meth:`~layercalc.layers.base.LayerBase.derived_buffers`: Swin's
    ``relative_position_index``), given with its weights as a framework's ``state_dict`` holds them, are dropped
    once they equal the layer's own: a different one describes another layer (one-line ``SpecError``)."""
    by_name = {step.name: step for step in steps}
    for name, params in weights.items():
        step = by_name.get(name)
        if step is None or not isinstance(params, Mapping):
            continue                                     # check_weights says what is wrong
        derived = step.layer.derived_buffers(step)
        for param in [p for p in params if p in derived]:
            try:
                given = np.asarray(params[param])
            except (ValueError, TypeError):
                given = None
            if given is None or not np.array_equal(given, derived[param]):
                label = layer_label(step.index, step.name, step.layer.type_name)
                shown = f"shape {list(given.shape)}" if given is not None else "not an array"
                raise SpecError(f"weights for {label}: '{name}.{param}' ({shown}) is not the "
                                f"{list(derived[param].shape)} {param} this layer computes from its fields: the "
                                f"weights are those of a differently configured layer")
            del params[param]


def _check_param(by_name, name: str, param: str, shape, dtype, channels_last: bool) -> None:
    """``name.param`` is a parameter of a layer of the network, holding numbers of its shape."""
    step = _check_layer(by_name, name)
    if param in IGNORED_PARAMS or param in step.layer.derived_buffers(step):   # (drop_derived_buffers checks those)
        return
    label = layer_label(step.index, step.name, step.layer.type_name)
    expected = param_shapes(step, channels_last)
    if param not in expected:
        accepted = ", ".join(f"{name}.{p}" for p in expected) or "none: the layer has no parameters"
        raise SpecError(f"weights for {label}: unexpected key '{name}.{param}' (accepted: {accepted})")
    if dtype.kind not in "fiu":
        raise SpecError(f"weights for {label}: '{name}.{param}' holds {dtype} values, expected numbers")
    want, how = expected[param]
    if tuple(shape) != want:
        raise SpecError(f"weights for {label}: '{name}.{param}' has shape {list(shape)}, expected "
                        f"{list(want)} ({how})")


def init_params(step, given: Mapping[str, Any], seed: int, dtype, channels_last: bool) -> dict[str, np.ndarray]:
    """The layer's parameters in ``dtype``: the given arrays, the rest initialized as its :class:`ParamSpec` says
    (PyTorch's ``reset_parameters``: U(±1/√fan_in) for conv and linear, ones and zeros for norms), from a generator
    seeded by (seed, layer index), so the same seed gives the same weights."""
    params: dict[str, np.ndarray] = {}
    rng = None
    for param, spec in step.layer.param_specs(step, channels_last).items():
        if param in given:
            params[param] = np.asarray(given[param], dtype=dtype)
        elif spec.init == "uniform":
            rng = rng or np.random.default_rng([seed % 2**63, step.index])
            bound = 1.0 / math.sqrt(spec.fan_in)
            values = rng.random(spec.shape, dtype=dtype)
            values *= 2 * bound
            values -= bound
            params[param] = values
        elif spec.init == "normal":
            rng = rng or np.random.default_rng([seed % 2**63, step.index])
            params[param] = rng.standard_normal(spec.shape, dtype=dtype)
        elif spec.init == "ones":
            params[param] = np.ones(spec.shape, dtype=dtype)
        elif spec.init == "zeros":
            params[param] = np.zeros(spec.shape, dtype=dtype)
        else:                                            # a constant (PReLU's 0.25)
            params[param] = np.full(spec.shape, spec.init, dtype=dtype)
    return params


# ------------------------------------------------------------------------------------------- forward steps

@dataclass
class Env:
    """What a layer's forward step (:meth:`LayerBase.forward`) needs besides its inputs and parameters."""
    channels_last: bool
    workspace: K.Workspace
    counter: K.MacCounter = field(default_factory=K.MacCounter)
    overwritable: list[bool] = field(default_factory=list)   # per input: may the layer write into it?

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


def _with_input(network, x, dtype):
    """The network (re-batched to the array's batch) and the input array converted to ``dtype``."""
    if x is None:
        return network, None
    try:
        array = np.asarray(K.as_numpy(x))
    except (ValueError, TypeError) as e:            # ragged nested lists
        raise ShapeError(f"input: not an array of numbers ({_first_line(e)})") from None
    if array.dtype.kind not in "fiub":
        raise ShapeError(f"input: expected numbers, got an array of {array.dtype}")
    expected = tuple(network.input)
    if array.ndim != len(expected) + 1 or array.shape[1:] != expected or array.shape[0] < 1:
        raise ShapeError(f"input: expected an array of shape [batch, {', '.join(map(str, expected))}] (the spec's "
                         f"input {list(expected)} after a batch dim), got {list(array.shape)}")
    if not all_finite(array):
        bad = ~np.isfinite(array)
        first = [int(i) for i in np.argwhere(bad)[0]]
        count = int(bad.sum())
        raise ShapeError(f"input: {count} of its {array.size} values {'is' if count == 1 else 'are'} NaN or "
                         f"infinite (the first at {first}: {float(array[tuple(first)])}); the executor needs "
                         f"finite numbers")
    if array.shape[0] != network.batch:
        network = network.model_copy(update={"batch": int(array.shape[0])})
    with np.errstate(all="ignore"):
        converted = array.astype(dtype, copy=False)
    if converted is not array and not all_finite(converted):
        raise ShapeError(f"input: values up to {float(np.max(np.abs(array))):.6g} exceed the range of {dtype} "
                         f"(largest {float(np.finfo(dtype).max):.6g}); run in float64 (dtype='float64', "
                         f"--dtype float64) or scale the input down")
    return network, converted


@dataclass
class WeightSources:
    """Where each layer's parameters came from: the weights given, or drawn from the seed."""
    source: str                               # the .npz path, or "the weights passed in"
    seed: int
    given: list[str] = field(default_factory=list)       # layers whose every parameter was given
    random: dict[str, list[str]] = field(default_factory=dict)   # layer → its parameters drawn from the seed

    def describe(self) -> str:
        """One line: ``weights: from w.npz for 10 layers; random (seed 0) for 2: conv1, fc``; a layer given only
        some of its parameters is named with the ones drawn from the seed: ``fc (bias)``."""
        total = len(self.given) + len(self.random)
        if total == 0:
            return "weights: none (no layer has parameters)"
        layers = f"all {total} layers" if total != 1 else "the one layer"
        if not self.random:
            return f"weights: from {self.source} for {layers} with parameters"
        if not self.given and not any(self._partial(n) for n in self.random):
            return f"weights: random (seed {self.seed}) for {layers} with parameters"
        taken = len(self.given) + sum(1 for n in self.random if self._partial(n))
        return (f"weights: from {self.source} for {taken} layer{'s' if taken != 1 else ''}"
                f"{' (some in part)' if taken > len(self.given) else ''}; random (seed {self.seed}) for "
                f"{len(self.random)}: {self._names()}")

    def _partial(self, name: str) -> bool:
        return bool(self._given_params.get(name))

    def _names(self) -> str:
        shown = [f"{n} ({', '.join(p)})" if self._partial(n) else n for n, p in list(self.random.items())[:8]]
        return ", ".join(shown) + (f" … ({len(self.random) - 8} more)" if len(self.random) > 8 else "")

    _given_params: dict = field(default_factory=dict, repr=False)


def weight_sources(network, weights=None, seed: int = 0, source: Optional[str] = None) -> WeightSources:
    """Which layers of ``network`` a run with ``weights`` takes from them and which get random weights (seed).

    ``weights`` as for :func:`run` (a path is read for its keys only)."""
    from .importers import weights_reader
    steps = network.resolve()
    reader = weights_reader(weights) if isinstance(weights, (str, os.PathLike)) else None
    if reader is not None:
        source = source or os.fspath(weights)          # a framework's own keys: read and converted to know which
        weights = reader(os.fspath(weights), steps, network.channels_last, None)
    if isinstance(weights, (str, os.PathLike)):
        source = source or os.fspath(weights)
        try:
            with zipfile.ZipFile(os.fspath(weights)) as archive:
                keys = [i.filename[:-4] if i.filename.endswith(".npy") else i.filename for i in archive.infolist()]
        except _READ_ERRORS as e:
            raise SpecError(f"{weights}: cannot read weights ({_first_line(e)}); expected an .npz archive") from None
        given: dict[str, set] = {}
        layer_names = {step.name for step in steps}
        for key in keys:
            if is_weight_key(key, layer_names):
                layer, param = split_weight_key(key, layer_names)
                given.setdefault(layer, set()).add(param)
    else:
        given = {name: set(params) for name, params in normalize_weights(weights, steps).items()}
    result = WeightSources(source=source or "the weights passed in", seed=seed)
    for step in steps:
        wanted = param_shapes(step, network.channels_last)
        if not wanted or step.layer.tied_to is not None:     # a tied layer's parameters are its owner's
            continue
        have = given.get(step.name, set())
        missing = [p for p in wanted if p not in have]
        if missing:
            result.random[step.name] = missing
            result._given_params[step.name] = [p for p in wanted if p in have]
        else:
            result.given.append(step.name)
    return result


def execute(network, x=None, weights=None, seed: int = 0, dtype=None, max_memory=None,
            on_layer: Optional[Callable[[int, int, Any, np.ndarray, int], None]] = None,
            on_estimate: Optional[Callable[[MemoryEstimate], None]] = None) -> dict[str, np.ndarray]:
    """Run the forward pass; returns ``{output_name: array}``.

    ``on_layer(done, total, step, output, macs)`` is called after each layer with its output array and the
    multiply-accumulates the layer performed; ``on_estimate(estimate)`` once the memory estimate is accepted.
    Raises ``NumericError`` naming the first layer whose output holds an inf or NaN (a float overflow), and
    ``ResourceError`` for a run above ``max_memory`` (refused before it starts) or out of memory.
    """
    seed = check_seed(seed)
    dtype = resolve_dtype(network, dtype)
    limit = default_memory_limit() if max_memory is None else parse_bytes(max_memory)
    where = {"step": None}
    try:
        with np.errstate(all="ignore"):          # overflow is detected per layer below, not printed by NumPy
            return _execute(network, x, weights, seed, dtype, limit, on_layer, on_estimate, where)
    except MemoryError:
        at = f" at {where['step']}" if where["step"] else ""
        raise ResourceError(f"{network.name or 'network'}: ran out of memory{at}; use a smaller batch or a lower "
                            f"--max-memory (max_memory=) so the run is refused up front") from None


def _execute(network, x, weights, seed, dtype, limit, on_layer, on_estimate, where) -> dict[str, np.ndarray]:
    network, x = _with_input(network, x, dtype)
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
                            f"limit of {format_bytes(limit)}; use a smaller batch or raise the memory limit")
    if on_estimate is not None:
        on_estimate(estimate)
    protected = None
    if x is None:
        rng = np.random.default_rng([seed % 2**63, 2**32])
        counts = [n for step in steps if INPUT in step.inputs for n in [step.layer.index_count()] if n is not None]
        if counts:                            # token ids for an embedding: whole numbers below its vocabulary
            x = rng.integers(0, min(counts), size=network.input_shape).astype(dtype)
        else:
            x = rng.standard_normal(network.input_shape, dtype=dtype)
    else:
        protected = x                         # the caller's array: never written into

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
            env = Env(channels_last, workspace)
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
    if not array.flags.writeable or (protected is not None and np.may_share_memory(array, protected)):
        return False
    return not any(np.may_share_memory(array, other) for name, other in tensors.items() if name != src)


def run(network: Network, x: Optional[npt.ArrayLike] = None, weights: WeightsSource = None, seed: int = 0,
        dtype: Optional[npt.DTypeLike] = None, max_memory: Union[int, float, str, None] = None,
        ) -> Union[np.ndarray, dict[str, np.ndarray]]:
    """Execute ``network``'s forward pass (inference mode) and return its output.

    ``x``: input array ``[batch, *network.input]`` (random normal from ``seed`` when omitted; its batch size
    overrides the spec's). ``weights``: ``{layer_name: {"weight": …, "bias": …}}`` in PyTorch layouts, a flat
    ``{"layer.param": array}`` mapping or an ``.npz`` path; missing ones are initialized from ``seed``.
    ``dtype``: float32 (default) or float64. ``max_memory``: bytes or a size string (default 80 % of the available
    memory); a run estimated above it raises ``ResourceError`` before starting.

    Returns an ndarray when the network has one output, else ``{output_name: ndarray}``.
    """
    outputs = execute(network, x=x, weights=weights, seed=seed, dtype=dtype, max_memory=max_memory)
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs
