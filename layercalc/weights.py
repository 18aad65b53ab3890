"""Weights: reading ``.npz``/``.npy`` arrays safely, matching keys to layers, checking shapes, initialising.

Below the executor and the importers, which both use it: the executor for the arrays a run reads, the importers
(Keras, ONNX, Hugging Face) to check the weights they convert against the layers they made. Reading a *framework's*
file (``.keras``, ``.weights.h5``, ``.onnx``) is the importers' job, chosen by :func:`layercalc.sources.read_weights`;
this module reads NumPy's own files only, and never unpickles anything.

- Keys are ``"<layer>.<param>"`` (a PyTorch ``state_dict`` saved with ``np.savez``): :func:`split_weight_key` finds
  the layer (names may hold dots) and the parameter (docs/weights.md says how frameworks' keys map).
- Every array is checked against the parameter it fills (:func:`check_weights`): a layer of that name, a parameter
  it has, the shape its :class:`~layercalc.layers.base.ParamSpec` gives.
- Parameters not given are initialised as PyTorch does (:func:`init_params`), from a seed.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from .errors import LayerCalcError, ResourceError, SpecError, did_you_mean, layer_label, safe_text
from .formatting import human_bytes
from .kernels import as_numpy

#: parameters a torchvision state_dict holds that are bookkeeping, not state the forward pass reads
IGNORED_PARAMS = {"num_batches_tracked"}

Weights = Mapping[str, Mapping[str, Any]]
#: what ``weights=`` takes: ``{layer: {param: array}}``, a flat ``{"layer.param": array}`` mapping, or a file path
WeightsSource = Union[Mapping[str, Any], str, "os.PathLike[str]", None]




READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, RuntimeError, NotImplementedError,
                KeyError)

NPY_MAGIC = b"\x93NUMPY"


def first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def npy_header(stream, where: str, kinds: str = "fiub") -> tuple[tuple[int, ...], np.dtype, int]:
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
            magic = f.read(len(NPY_MAGIC))
            if magic[:2] == b"PK":
                raise SpecError(f"{where}: an .npz archive of several arrays; expected one array (.npy)")
            if magic != NPY_MAGIC:
                raise SpecError(f"{where}: not a readable .npy array (no .npy header: np.save writes one)")
            f.seek(0)
            shape, dtype, nbytes = npy_header(f, where)
            present = os.fstat(f.fileno()).st_size - f.tell()
            if present < nbytes:
                raise SpecError(f"{where}: truncated: the header declares shape {list(shape)} {dtype} "
                                f"({nbytes} bytes of data), the file holds {present}")
            if max_bytes is not None and nbytes > max_bytes:
                raise ResourceError(f"{where}: shape {list(shape)} {dtype} is {human_bytes(nbytes)}, above the "
                                    f"memory limit of {human_bytes(max_bytes)}")
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
    except READ_ERRORS as e:
        raise SpecError(f"{where}: not a readable .npy array ({first_line(e)})") from None


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


def check_weights_file(path, max_bytes: Optional[int] = None) -> None:
    """Refuse, before reading a byte, a weights path that is not a regular file (``/dev/zero``, a FIFO, a
    directory: their size is unknown, a read may never end) or whose size is above ``max_bytes`` (the arrays could
    not be held)."""
    where = safe_text(os.fspath(path))
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SpecError(f"{where}: no such weights file") from None
    except OSError as e:
        raise SpecError(f"{where}: cannot read weights: {e.strerror or e}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, pipe or socket)"
        raise SpecError(f"{where}: is {kind}; weights are read from a file (.npz, .keras, .weights.h5, .onnx)")
    if max_bytes is not None and info.st_size > max_bytes:
        raise ResourceError(f"{where}: the weights file holds {human_bytes(info.st_size)}, above the memory limit "
                            f"of {human_bytes(max_bytes)}")


def load_npz(path, steps=None, channels_last: bool = False,
             max_bytes: Optional[int] = None) -> dict[str, dict[str, np.ndarray]]:
    """Read an ``.npz`` of ``"<layer_name>.<param>"`` arrays (a PyTorch state_dict saved with ``np.savez``).

    Layer names may contain dots (``layer1.0.conv1.weight``): keys are split by :func:`split_weight_key`. The path
    must be a regular file (:func:`check_weights_file`); every member's .npy header is read first: numbers only
    (never pickled objects), the member's declared uncompressed size equal to what its header describes, the total
    within ``max_bytes`` and, given the network's ``steps``, every key a parameter of a layer with its shape — all
    before any array is decompressed (a small file can declare or inflate to gigabytes).

    A framework's own weights file (``.keras``, ``.weights.h5``, ``.onnx``) is read by its importer:
    :func:`layercalc.sources.read_weights` tells them apart by content.
    """
    where = os.fspath(path)
    check_weights_file(where, max_bytes)
    try:
        archive = zipfile.ZipFile(where)
    except FileNotFoundError:
        raise SpecError(f"{path}: no such weights file") from None
    except MemoryError:
        raise ResourceError(f"{path}: not enough memory to read the weights") from None
    except READ_ERRORS as e:
        single = False
        try:
            with open(where, "rb") as f:
                single = f.read(len(NPY_MAGIC)) == NPY_MAGIC
        except OSError:
            pass
        if single:
            raise SpecError(f"{path}: holds a single array; weights must be an .npz archive of "
                            f"'<layer_name>.<param>' arrays (np.savez)") from None
        raise SpecError(f"{path}: cannot read weights ({first_line(e)}); expected an .npz archive") from None
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
                    shape, dtype, nbytes = npy_header(member, f"{path}: key {key!r}", "fiu")
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
                raise ResourceError(f"{path}: the weights' arrays hold {human_bytes(total)}, above the memory "
                                    f"limit of {human_bytes(max_bytes)}")
            for info, layer, param in members:
                with archive.open(info) as member:
                    nested.setdefault(layer, {})[param] = np.lib.format.read_array(member, allow_pickle=False)
    except LayerCalcError:
        raise
    except MemoryError:
        raise ResourceError(f"{path}: not enough memory to read the weights") from None
    except READ_ERRORS as e:
        raise SpecError(f"{path}: damaged weights archive ({first_line(e)})") from None
    return nested


def normalize_weights(weights, steps=None, channels_last: bool = False,
                      max_bytes: Optional[int] = None) -> dict[str, dict[str, Any]]:
    """An ``.npz`` path (:func:`load_npz`), a nested mapping ``{layer: {param: array}}`` or a flat one
    ``{"layer.param": array}``, as ``{layer: {param: array}}``."""
    if weights is None:
        return {}
    if isinstance(weights, (str, os.PathLike)):
        return load_npz(weights, steps, channels_last, max_bytes)
    if not isinstance(weights, Mapping):
        raise SpecError(f"weights: expected a mapping {{layer_name: {{param: array}}}} or an .npz path, "
                        f"got {type(weights).__name__}")
    nested: dict[str, dict[str, Any]] = {}
    layer_names = {step.name for step in steps} if steps is not None else None
    for key, value in weights.items():
        if isinstance(value, Mapping):
            nested.setdefault(str(key), {}).update({param: as_numpy(array) for param, array in value.items()})
        elif is_weight_key(str(key), layer_names):
            layer, param = split_weight_key(str(key), layer_names)
            nested.setdefault(layer, {})[param] = as_numpy(value)
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
                                f"'{name}.{param}' is not an array of numbers ({first_line(e)})") from None
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


def weight_sources(steps, channels_last: bool, weights=None, seed: int = 0,
                   source: Optional[str] = None) -> WeightSources:
    """Which layers of a network (its resolved ``steps``) a run with ``weights`` takes from them and which get
    random weights (seed). ``weights`` as :func:`normalize_weights` takes them (an ``.npz`` path is read for its keys
    only; :func:`layercalc.sources.weight_sources` takes a framework's file too)."""
    if isinstance(weights, (str, os.PathLike)):
        source = source or os.fspath(weights)
        try:
            with zipfile.ZipFile(os.fspath(weights)) as archive:
                keys = [i.filename[:-4] if i.filename.endswith(".npy") else i.filename for i in archive.infolist()]
        except READ_ERRORS as e:
            raise SpecError(f"{weights}: cannot read weights ({first_line(e)}); expected an .npz archive") from None
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
        wanted = param_shapes(step, channels_last)
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
