"""Sources: where networks and weights come from — the top of the code that reads things.

- :func:`load`, :func:`read_source` and :func:`convert` take a spec file (YAML/JSON), a model file of another tool
  (``.keras``, Keras model JSON, Hugging Face ``config.json``, ``.onnx``; told apart by content), ``zoo:NAME`` or
  parsed data, and hand the bytes to the reader of their kind: :mod:`layercalc.spec` (parse and validate a spec),
  the importers (:mod:`layercalc.importers`: a model file → spec data, plus a weights reader) or the zoo.
- :func:`read_weights` reads a weights file of any kind: a framework's own file by its importer, an ``.npz`` by
  :mod:`layercalc.weights`; :func:`run` is ``Network.run`` with such a file.

Everything below this module reads one kind of thing and never calls back up (docs/architecture.md). A source is
read once: the first bytes of the one open stream decide its kind, and a spec's text is the rest of that stream
(so a pipe, a FIFO or ``<(…)`` works like a file).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from . import zoo
from .blocks import fold
from .display import Assumptions
from .errors import SpecError, safe_text, shown
from .graph import Network
from .importers import KINDS, ONNX_FIRST_BYTE, ZIP_MAGIC, kind_of_data, spec_data
from .spec import file_errors, from_data, parse_text, read_capped, to_yaml

if TYPE_CHECKING:
    from .weights import WeightSources, WeightsSource

Source = Union[str, os.PathLike, Mapping, Network]

__all__ = ["KINDS", "Source", "convert", "from_parsed", "load", "parse_text", "read_file", "read_source",
           "read_weights", "run", "weight_sources", "weights_reader"]


# ------------------------------------------------------------------------------------------------------ networks

def load(source: Source) -> Network:
    """A ``Network`` from a spec file path (YAML or JSON), a model file of another tool, ``zoo:NAME``, a mapping
    (a spec, a Keras model JSON or a Hugging Face config) or a ``Network`` (returned as is)."""
    if isinstance(source, Network):
        return source
    if isinstance(source, Mapping):
        return from_parsed(source)
    if not isinstance(source, (str, os.PathLike)):
        raise SpecError(f"load: got {type(source).__name__} {shown(source)}: expected a spec file path (str or "
                        f"pathlib.Path), 'zoo:NAME', a mapping or a Network")
    text = os.fspath(source)
    if not isinstance(text, str):                     # a PathLike of bytes
        raise SpecError(f"load: got the path {shown(text)} as bytes: give it as str")
    if text.startswith("zoo:"):
        return zoo.load(text[4:])
    return from_data(read_file(text)[2], text)


def from_parsed(data: Any, origin: str = "spec") -> Network:
    """A ``Network`` from parsed data: a spec, or a Keras model JSON / Hugging Face config converted first."""
    return from_data(spec_data(data, origin), origin)


def read_source(source: Union[str, os.PathLike, Mapping]) -> tuple[str, Any]:
    """``(kind, spec data)`` of a spec or model file path, ``zoo:NAME`` or parsed data (kinds: :data:`KINDS`)."""
    kind, _, data = _read(source)
    return kind, data


def _read(source: Union[str, os.PathLike, Mapping]) -> tuple[str, Any, Any]:
    """``(kind, parsed, spec data)`` of any source :func:`read_source` takes (``parsed``: the data as the source
    holds it — a config before conversion — or None for a binary model file)."""
    if isinstance(source, Mapping):
        return kind_of_data(source), source, spec_data(source, "spec")
    text = os.fspath(source)
    if isinstance(text, str) and text.startswith("zoo:"):
        data = zoo.read(text[4:])
        return "layercalc", data, data
    return read_file(text)


def read_file(path: Union[str, os.PathLike]) -> tuple[str, Any, Any]:
    """``(kind, parsed, spec data)`` of the file at ``path``, read once: its first bytes tell a ``.keras`` archive
    (zip) or an ONNX model (protobuf) from text; text (at most :data:`~layercalc.spec.MAX_SPEC_BYTES`) is parsed
    — ``parsed`` — and a Keras model JSON or a Hugging Face config in it converted to spec data."""
    origin = safe_text(os.fspath(path))
    with file_errors(origin, "a spec file or a model file (.keras, .onnx, Keras JSON, Hugging Face config.json)"):
        with open(path, "rb") as stream:
            regular = stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
            head = stream.read(len(ZIP_MAGIC))
            if head.startswith(ZIP_MAGIC) or head[:1] == bytes([ONNX_FIRST_BYTE]) \
                    or os.fspath(path).lower().endswith(".onnx"):
                kind = "keras_archive" if head.startswith(ZIP_MAGIC) else "onnx"
                text = None
            else:
                kind, text = "text", read_capped(stream, origin, head)
    if text is None:
        if not regular:        # the importers read a model file by path, with its own size caps
            raise SpecError(f"{origin}: a {KINDS[kind]} read from a pipe or device; save it to a file first")
        if kind == "keras_archive":
            from .importers import keras  # deferred: the Keras importer (zipfile, h5 readers) for a .keras only
            return kind, None, keras.spec_from_archive(Path(path), origin)
        from .importers import onnx  # deferred: the ONNX importer (and the onnx package) for a .onnx only
        return kind, None, onnx.spec_from_file(Path(path), origin)
    parsed = parse_text(text, origin)
    return kind_of_data(parsed), parsed, spec_data(parsed, origin)


def convert(source: Union[str, os.PathLike, Mapping]) -> str:
    """A model file (``.keras``, Keras JSON, Hugging Face config.json, ``.onnx``), ``zoo:NAME`` or a spec, written
    as a layercalc YAML spec (what ``layercalc convert`` prints). The network is validated first: a source that
    cannot be analyzed gets the error ``summary`` would give, not a spec that fails later."""
    kind, raw, data = _read(source)
    origin = "spec" if isinstance(source, Mapping) else safe_text(os.fspath(source))
    from_data(data, origin)
    if kind != "layercalc":                 # an imported model's repeated blocks written once
        data = fold(data)
    where = "" if isinstance(source, Mapping) else f" {origin}"
    header = f"layercalc spec converted from the {KINDS[kind]}{where}" if kind != "layercalc" else ""
    if kind == "huggingface":           # the choices made for the config: the class built, the default input, …
        from .importers.huggingface import header_notes  # deferred: loaded only for a Hugging Face config
        header += "".join(f"\n{line}" for line in header_notes(raw, origin, data))
    return to_yaml(data, header)


# ------------------------------------------------------------------------------------------------------- weights

def weights_reader(path: Union[str, os.PathLike]) -> Optional[Callable[..., dict]]:
    """The reader of a framework's weights file at ``path``, told by content — a Keras ``.keras`` /
    ``.weights.h5`` (``keras.read_keras_weights``) or an ONNX file (``onnx.read_onnx_weights``), each called as
    ``reader(path, steps, channels_last, max_bytes)`` — or None for anything else (an ``.npz``, read by
    :func:`layercalc.weights.load_npz`)."""
    from .importers.keras import keras_weights_kind, read_keras_weights  # deferred: only for a weights file
    if keras_weights_kind(path) is not None:
        return read_keras_weights
    from .importers.onnx import is_onnx_file, read_onnx_weights  # deferred: only for a weights file
    if is_onnx_file(path):
        return read_onnx_weights
    return None


def read_weights(path: Union[str, os.PathLike], steps=None, channels_last: bool = False,
                 max_bytes: Optional[int] = None, config: Optional[Mapping] = None) -> dict[str, dict[str, Any]]:
    """The weights in the file at ``path`` as ``{layer: {param: array}}``, checked against the network's resolved
    ``steps``: a Keras or ONNX file by its importer (which converts its layouts to layercalc's), else an ``.npz``.
    A path that is not a regular file (``/dev/zero``) or larger than ``max_bytes`` is refused before it is read.
    ``config``: the network is this Hugging Face config's, so an ``.npz`` holds its transformers ``state_dict``
    (``np.savez(path, **state_dict)``), mapped by ``importers.huggingface.weights_from_state_dict`` (fused
    projections split, q/k/v packed, …)."""
    from .weights import check_weights_file, load_npz  # deferred: NumPy (~60 ms), which analysis never needs

    where = os.fspath(path)
    check_weights_file(where, max_bytes)
    reader = weights_reader(where)
    if reader is not None:
        return reader(where, steps, channels_last, max_bytes)
    if config is not None:
        from .importers.huggingface import weights_from_state_dict  # deferred: for a Hugging Face config only

        # the archive's keys as saved (split at their last dot without a network, then joined again): the
        # importer gives each to its layer; the headers, sizes and memory limit are checked as for any .npz
        saved = load_npz(where, None, channels_last, max_bytes)
        state_dict = {f"{module}.{name}": array for module, params in saved.items() for name, array in params.items()}
        return weights_from_state_dict(config, state_dict, safe_text(where))
    return load_npz(where, steps, channels_last, max_bytes)


def huggingface_config(source: Union[str, os.PathLike]) -> Optional[Mapping]:
    """The parsed Hugging Face config at ``source`` when it is one (a regular file: a pipe has no second reading),
    else None: what :func:`read_weights` needs to read a transformers ``state_dict`` saved as an ``.npz``."""
    where = os.fspath(source)
    if where == "-" or where.startswith("zoo:") or not os.path.isfile(where):
        return None
    kind, parsed, _ = read_file(where)
    return parsed if kind == "huggingface" else None


def weight_sources(network: Network, given: WeightsSource = None, seed: int = 0,
                   source: Optional[str] = None) -> WeightSources:
    """Which layers of ``network`` a run with ``given`` weights takes from them and which get random weights
    (seed); a framework's weights file is read (and converted) to know, an ``.npz`` for its keys only."""
    from . import weights  # deferred: NumPy (~60 ms), which analysis never needs

    steps = network.resolve()
    if isinstance(given, (str, os.PathLike)):
        source = source or os.fspath(given)
        weights.check_weights_file(given)
        reader = weights_reader(given)
        if reader is not None:
            given = reader(os.fspath(given), steps, network.channels_last, None)
    return weights.weight_sources(steps, network.channels_last, given, seed, source)


def run(network: Network, x: Any = None, weights: WeightsSource = None, seed: int = 0, dtype: Any = None,
        max_memory: Union[int, float, str, None] = None) -> Any:
    """:func:`layercalc.executor.run` with ``weights`` also a file of any kind (:func:`read_weights`, within the
    run's memory limit): what ``Network.run`` calls."""
    from . import executor  # deferred: NumPy (~60 ms), which analysis never needs

    steps = None
    if isinstance(weights, (str, os.PathLike)):
        limit = executor.memory_limit(max_memory)
        steps = network.resolve()                    # once: for the file's checks and the run
        weights = read_weights(weights, steps, network.channels_last, limit)
        max_memory = limit
    return executor.run(network, x=x, weights=weights, seed=seed, dtype=dtype, max_memory=max_memory, steps=steps)


def config_assumptions(raw, origin: str, spec) -> Assumptions:
    """What a Hugging Face config left open (see :class:`Assumptions`), from the importer's own account of it
    (``importers.huggingface.header_notes``: the class built, the input, the keys counted by a convention).

    >>> said = config_assumptions({"model_type": "llama", "torch_dtype": "bfloat16"}, "config.json", None)
    >>> said.built
    'LlamaModel (no architectures in the config: the base model)'
    >>> said.input, said.declared_dtype
    ('2048 tokens (the llama default max_position_embeddings, at most 2048)', 'bfloat16')
    """
    # deferred: the Hugging Face importer, for a config only
    from .importers.huggingface import CONFIG_DTYPES, config_dtype, header_notes

    built, *rest = header_notes(raw, origin, spec)
    said = Assumptions(built=built)
    for line in rest:
        if line.startswith("input: ") and said.input is None:
            said.input = line[len("input: "):].split("; --input")[0]
        else:
            said.more.append(line)
    declared = config_dtype(raw)
    if declared is not None and declared[1] in CONFIG_DTYPES:
        said.dtype_key, said.declared_dtype = declared
    elif declared is not None:
        said.more.append(f"{declared[0]} {safe_text(declared[1])}: not a dtype layercalc counts in, the default "
                         f"assumed (--dtype)")
    return said
