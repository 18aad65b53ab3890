"""ONNX files (``.onnx``) read as layercalc spec data, through the ``onnx`` package (the ``onnx`` extra).

Only the graph is read — field by field (:func:`_read_lean`: an initializer's large raw data is left in the file,
and shape inference never serializes it), else by ``onnx.load(..., load_external_data=False)`` — initializers' dims
for the parameters, and the values of small tensors that serve as shapes, axes, indices, masks or rotary tables
(transformer exports: :func:`_mask_spec`, :func:`_rotary`) — never the weights' values, except by
:func:`weights_from_onnx` (and ``--weights model.onnx``): while converting, each layer parameter's initializer and
its transform (a transpose, a reshape) are recorded (:class:`Source`) where the parameter is counted, and the weights
are those initializers, so that the network and its weights always agree.

A file is distrusted before it is read (:class:`TensorData`, :meth:`Importer.spec`): external data only from the
model's folder and only the bytes a tensor's dims need, every tensor's data against its dims, every node against
its operator's schema, one writer per tensor, the node count against the layer limit, a folded constant's size
before it is computed, and every initializer against the layer it becomes (:meth:`Importer.expect`).

Three steps:

1. **Shape subgraphs evaluated** (:func:`fold_constants`): a node whose inputs are all known values (``Constant``
   nodes, integer initializers, ``Shape``/``Size`` of a tensor whose static shape is known, earlier folded values)
   is run once by ``onnx.reference`` and replaced by its value; ONNX shape inference then runs again, so that
   ``Shape → Gather → Concat → Reshape`` or ``Shape → Slice → Resize`` chains as torch's exporter writes them end in
   constants and every tensor gets a static shape.
2. **Operators mapped** one by one (:data:`CONVERTERS`: one small function per operator) to layercalc layers.
   Parameters come from the initializers, each counted once: a layer whose initializers another layer already uses
   is ``tied_to`` it; a bias shared between convs that do not share their weights (torch's exporter stores the
   zero biases of BatchNorm folded into convs once) becomes one ``parameter`` layer added after each conv.
   An operator that cannot be mapped is an error naming the node (index and name) and the operator.
3. **The batch dim** stays dim 0 of every layercalc tensor (layercalc works per example), while an ONNX graph may move
   it (``nn.MultiheadAttention`` works on ``[L, N, E]`` and ``[L·N, E]``). Each ONNX tensor is therefore a *view* of a
   layercalc tensor (:class:`Act`): the ONNX axis holding the batch, possibly merged with outer and inner factors
   (``L·N``: outer L), and layercalc's tensor is the ONNX tensor with that batch moved to the front. Transposes that
   only move the batch then cost no layer, and reshapes that keep each example's elements together are per-example
   reshapes.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..blocks import MAX_LAYERS
from ..errors import LayerCalcError, ResourceError, SpecError, layer_label, safe_text, shown
from ..names import split_output
from ..spec import from_data
from . import ONNX_FIRST_BYTE, load_network

__all__ = ["spec_from_file", "CONVERTERS", "fold_constants", "weights_from_onnx", "read_onnx_weights",
           "is_onnx_file"]

EXTRA_HINT = "pip install 'layercalc[onnx]'"

#: input slots that hold shapes, axes, sizes, scales or bounds: an initializer read only there is a constant of the
#: graph's arithmetic, not a parameter
SHAPE_SLOTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Resize": (1, 2, 3), "Upsample": (1,), "Slice": (1, 2, 3, 4), "Unsqueeze": (1,),
    "Squeeze": (1,), "Expand": (1,), "Tile": (1,), "ConstantOfShape": (0,), "Split": (1,), "Pad": (1, 2, 3),
    "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,), "ReduceMin": (1,), "Clip": (1, 2), "Gather": (1,),
    "Range": (0, 1, 2), "TopK": (1,), "OneHot": (1, 2),
}
#: operators never folded (their output is not a function of their inputs)
NOT_FOLDED = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
#: the most elements a folded value may have (shape arithmetic is small): a node whose value would be larger is
#: refused before it is computed (its size is predicted from its inputs, :func:`_folded_size`)
MAX_FOLDED = 1 << 20
#: the most bytes of constants (integer initializers, Constant nodes' values) read from external data files
MAX_CONSTANT_BYTES = 64 << 20
#: the most work folding may do, as nodes inferred (each round of folding runs ONNX shape inference on the whole
#: graph again): a chain whose every link needs a round of its own (a shape computed by an operator ONNX's data
#: propagation does not follow) would otherwise cost nodes² — hours for 100,000 nodes; at least
#: :data:`MIN_FOLD_ROUNDS` rounds are always allowed (torch's exports need two or three)
MAX_FOLD_WORK = 250_000
MIN_FOLD_ROUNDS = 8
#: element types stored in fewer bits than numpy's item (packed two or four to a byte)
_PACKED_BITS = {"INT4": 4, "UINT4": 4, "FLOAT4E2M1": 4, "INT2": 2, "UINT2": 2}


def _onnx(origin: str) -> Any:
    try:
        import onnx
    except ImportError:
        raise SpecError(f"{origin}: reading ONNX files needs the onnx package: {EXTRA_HINT}") from None
    return onnx


# ------------------------------------------------------------------------------------------- the entry point

def spec_from_file(path: Path, origin: str) -> dict:
    """The layercalc spec data of the ONNX model at ``path`` (its external data, if any, beside it)."""
    onnx = _onnx(origin)
    model, lean = _read_model(onnx, path, origin)
    return Importer(model, origin, folder=Path(path).parent, model_file=Path(path) if lean else None).spec()


def _read_model(onnx: Any, path: Any, origin: str) -> tuple[Any, bool]:
    """The ModelProto at ``path``, and whether the large raw data of its graph's initializers was left in the file
    (:func:`_read_lean`); a file it cannot read so (not a regular file, an unusual encoding) is read whole by
    ``onnx.load``."""
    try:
        lean = _read_lean(onnx, Path(path))
    except Exception:                  # OSError, ValueError, protobuf's DecodeError: onnx.load says what it says
        lean = None
    if lean is not None:
        return lean, True
    try:
        return onnx.load(str(path), load_external_data=False), False
    except Exception as e:                         # protobuf's DecodeError, or a file that is not a ModelProto
        raise SpecError(f"{origin}: not a readable ONNX model: {safe_text(str(e)) or type(e).__name__}") from None


#: raw data of at least this many bytes is left in the file when the model is read (:func:`_read_lean`)
LEAN_BYTES = 1 << 16
#: the external-data key marking a tensor whose raw data is left in the model's own file (:func:`_read_lean`)
IN_MODEL_FILE = "layercalc:in_model_file"
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA, _TENSOR_EXTERNAL, _TENSOR_LOCATION = 7, 5, 9, 13, 14


def _read_lean(onnx: Any, path: Path) -> Optional[Any]:
    """The model at ``path`` read field by field (protobuf's wire format), each top-level initializer's raw data
    of :data:`LEAN_BYTES` or more left in the file: the tensor is marked as stored outside (ONNX's external data,
    key :data:`IN_MODEL_FILE`, with its offset and length in the model's file), and :class:`TensorData` reads
    it from there when it is needed — the weights of a 100 MB model are then neither held in memory nor copied
    by shape inference. None when the file is not a regular file or uses what this reader does not follow
    (``onnx.load`` then reads it whole, with its own messages)."""
    with open(path, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size < LEAN_BYTES:
            return None
        size = info.st_size
        model = onnx.ModelProto()
        rest = bytearray()
        for number, wire, start, end in _fields(stream, 0, size):
            if number == _MODEL_GRAPH and wire == 2:
                _read_graph(onnx, stream, model.graph, start, end, path)
            else:
                stream.seek(start)
                rest += _tag(number, wire, end - start) + stream.read(end - start)
        model.MergeFromString(bytes(rest))
    return model


#: the most fields of a graph read one by one (each node is one): more is left to ``onnx.load``'s C++ parser (a file
#: of millions of tiny fields would cost seconds of Python per million)
MAX_LEAN_FIELDS = 4 * MAX_LAYERS


def _read_graph(onnx: Any, stream: Any, graph: Any, start: int, end: int, path: Path) -> None:
    rest = bytearray()
    for count, (number, wire, begin, stop) in enumerate(_fields(stream, start, end)):
        if count > MAX_LEAN_FIELDS:
            raise ValueError("too many fields")
        if number == _GRAPH_INITIALIZER and wire == 2:
            kept = bytearray()
            raw: Optional[tuple[int, int]] = None
            for k, (n, w, b, e) in enumerate(_fields(stream, begin, stop)):
                if k > MAX_LEAN_FIELDS:
                    raise ValueError("too many fields")
                if n in (_TENSOR_EXTERNAL, _TENSOR_LOCATION):
                    raise ValueError("external data")   # already stored outside: read whole (onnx.load)
                if n == _TENSOR_RAW_DATA and w == 2 and e - b >= LEAN_BYTES:
                    raw = (b, e - b)
                    continue
                if n == _TENSOR_RAW_DATA:
                    raw = None                          # (protobuf: the last value of a field wins)
                stream.seek(b)
                kept += _tag(n, w, e - b) + stream.read(e - b)
            tensor = graph.initializer.add()
            tensor.ParseFromString(bytes(kept))
            if raw is not None:
                tensor.data_location = onnx.TensorProto.EXTERNAL
                for key, value in ((IN_MODEL_FILE, path.name), ("offset", str(raw[0])), ("length", str(raw[1]))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, value
        else:
            stream.seek(begin)
            rest += _tag(number, wire, stop - begin) + stream.read(stop - begin)
    graph.MergeFromString(bytes(rest))


def _varint(stream: Any) -> int:
    result, shift = 0, 0
    while True:
        byte = stream.read(1)
        if not byte:
            raise ValueError("truncated")
        result |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _tag(number: int, wire: int, length: int) -> bytes:
    """A field's key (and, length-delimited, its length) as protobuf writes it."""
    return _encode_varint(number << 3 | wire) + (_encode_varint(length) if wire == 2 else b"")


def _fields(stream: Any, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """The fields of the message in ``stream[start:end]``: ``(number, wire type, value start, value end)`` — a
    varint's or fixed value's own bytes, a length-delimited value's bytes after its length."""
    position = start
    while position < end:
        stream.seek(position)
        key = _varint(stream)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field 0")
        if wire == 0:
            begin = stream.tell()
            _varint(stream)
            stop = stream.tell()
        elif wire in (1, 5):
            begin = stream.tell()
            stop = begin + (8 if wire == 1 else 4)
        elif wire == 2:
            length = _varint(stream)
            begin = stream.tell()
            stop = begin + length
        else:
            raise ValueError("group")                 # deprecated groups: left to onnx.load
        if stop > end:
            raise ValueError("truncated")
        yield number, wire, begin, stop
        position = stop


# ------------------------------------------------------------------------------------------- tensors' data

@dataclass
class TensorData:
    """Reads the values of an ONNX file's tensors, each checked against its dims before it is read.

    A tensor stored as external data names a file by a ``location`` relative to the model: it is read only from
    the model's own folder (``folder``), never from the working directory — not through ``..``, an absolute path
    or a symbolic link, not from a device or a pipe — and only the bytes its dims need. ``onnx``'s own readers
    (``numpy_helper.to_array``, the reference evaluator) resolve a location against the working directory, so no
    tensor that still names another file is ever given to them.
    """
    onnx: Any
    origin: str
    folder: Optional[Path] = None          # the model's folder; None: external data is refused
    model_file: Optional[Path] = None      # the model's file when it was read lean: raw data left in it
    constant_bytes: int = 0                # read so far by :meth:`load_constants`

    def dtype_bits(self, tensor: Any, what: str) -> Optional[int]:
        """Bits per element of ``tensor``'s type (None for strings); an unknown type is an error."""
        onnx = self.onnx
        if tensor.data_type == onnx.TensorProto.STRING:
            return None
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
        except Exception:                       # KeyError: a code no ONNX version defines (0: UNDEFINED)
            raise SpecError(f"{self.origin}: {what} has element type {tensor.data_type}, which is not an ONNX "
                            f"tensor type") from None
        packed = {getattr(onnx.TensorProto, name, None): bits for name, bits in _PACKED_BITS.items()}
        return packed.get(tensor.data_type, dtype.itemsize * 8)

    def check(self, tensor: Any, what: str) -> None:
        """The tensor's dims are sizes and its data in the file holds exactly their elements (a 12-byte tensor
        declaring [10⁹] elements, float values in an int64 field, are refused here, before anything reads it)."""
        dims = [int(d) for d in tensor.dims]
        if any(d < 0 for d in dims):
            raise SpecError(f"{self.origin}: {what} has dims {dims}: a negative size")
        numel = math.prod(dims)
        bits = self.dtype_bits(tensor, what)
        if _is_external(self.onnx, tensor):
            entries = {e.key: e.value for e in tensor.external_data}
            if IN_MODEL_FILE in entries and bits is not None and self.model_file is not None:
                need = -(-numel * bits // 8)       # raw data left in the model's file: checked as in memory
                if entries.get("length") != str(need):
                    raise SpecError(f"{self.origin}: {what} has dims {dims} ({numel:,} elements, {need:,} bytes) "
                                    f"but its data holds {entries.get('length')} bytes")
            return                                 # checked where it is read (:meth:`external_bytes`)
        if tensor.HasField("raw_data"):
            if bits is None:
                raise SpecError(f"{self.origin}: {what} is a string tensor stored as raw bytes (not ONNX)")
            need = -(-numel * bits // 8)
            if len(tensor.raw_data) != need:
                raise SpecError(f"{self.origin}: {what} has dims {dims} ({numel:,} elements, {need:,} bytes) but "
                                f"its data holds {len(tensor.raw_data):,} bytes")
            return
        if bits is not None and bits < 8:
            return                                 # packed in int32_data: to_array's reshape checks it
        field_name = self.onnx.helper.tensor_dtype_to_field(tensor.data_type)
        count = len(getattr(tensor, field_name))
        per = 2 if tensor.data_type in (self.onnx.TensorProto.COMPLEX64, self.onnx.TensorProto.COMPLEX128) else 1
        if count != numel * per:
            other = [f.name for f, v in tensor.ListFields() if f.name.endswith("_data") and f.name != field_name]
            found = f"{count:,} values in {field_name}" + (f" (and data in {', '.join(other)}, which its type does "
                                                             f"not use)" if other else "")
            raise SpecError(f"{self.origin}: {what} has dims {dims} ({numel:,} elements) of type "
                            f"{self.onnx.TensorProto.DataType.Name(tensor.data_type)} but holds {found}")

    def array(self, tensor: Any, what: str, max_bytes: Optional[int] = None) -> Any:
        """The tensor's values as a NumPy array (external data read from beside the model, at most ``max_bytes``
        of it)."""
        self.check(tensor, what)
        if _is_external(self.onnx, tensor):
            tensor = self.in_file(tensor, self.external_bytes(tensor, what, max_bytes))
        try:
            return self.onnx.numpy_helper.to_array(tensor)
        except MemoryError:
            raise ResourceError(f"{self.origin}: not enough memory to read {what}") from None
        except Exception as e:                     # a packed tensor whose data does not match its dims
            raise SpecError(f"{self.origin}: cannot read {what} ({safe_text(str(e))[:120]})") from None

    def in_file(self, tensor: Any, data: bytes) -> Any:
        """A copy of ``tensor`` holding ``data`` as its raw data."""
        copy = self.onnx.TensorProto()
        copy.CopyFrom(tensor)
        del copy.external_data[:]
        copy.data_location = self.onnx.TensorProto.DEFAULT
        copy.raw_data = data
        return copy

    def external_bytes(self, tensor: Any, what: str, max_bytes: Optional[int]) -> bytes:
        """The bytes of a tensor stored as external data: its ``location`` is a file inside the model's folder, its
        ``length`` (when given) the bytes its dims need, and ``offset + length`` within the file."""
        entries = {e.key: e.value for e in tensor.external_data}
        if IN_MODEL_FILE in entries:
            if self.model_file is None:
                raise SpecError(f"{self.origin}: {what} names external data by layercalc's own key "
                                f"{IN_MODEL_FILE!r}: not an ONNX location")
            return self._read_at(self.model_file, f"{self.origin}: {what}", what, tensor, entries, max_bytes)
        location = entries.get("location", "")
        where = f"{self.origin}: {what} is stored in another file ({shown(location)})"
        if self.folder is None:
            raise SpecError(f"{where}, but the model was not read from a folder it could be beside")
        parts = location.replace("\\", "/").split("/")
        if not location or "\0" in location or os.path.isabs(location) or location[:1] in "/\\" or \
                re.match(r"[A-Za-z]:", location) or ".." in parts:
            raise SpecError(f"{where}: external data is read only from a file inside the model's folder (no "
                            f"absolute path, no '..')")
        folder = os.path.realpath(self.folder)
        path = os.path.join(folder, os.path.normpath(location))
        if os.path.realpath(path) != path:
            raise SpecError(f"{where}: the path goes through a symbolic link; external data is read only from a "
                            f"file inside the model's folder")
        return self._read_at(Path(path), where, what, tensor, entries, max_bytes)

    def _read_at(self, path: Path, where: str, what: str, tensor: Any, entries: dict[str, str],
                 max_bytes: Optional[int]) -> bytes:
        """The bytes its dims need, at ``offset`` in the regular file ``path``."""
        bits = self.dtype_bits(tensor, what)
        if bits is None:
            raise SpecError(f"{where}: string tensors cannot be stored as external data")
        dims = [int(d) for d in tensor.dims]
        need = -(-math.prod(dims) * bits // 8)
        try:
            offset = int(entries.get("offset", "0"))
            length = int(entries["length"]) if "length" in entries else None
        except ValueError:
            raise SpecError(f"{where}: its offset {shown(entries.get('offset'))} and length "
                            f"{shown(entries.get('length'))} must be whole numbers") from None
        if offset < 0 or (length is not None and length != need):
            raise SpecError(f"{where}: offset {offset}, length {length}, but its dims {dims} need {need:,} bytes")
        if max_bytes is not None and need > max_bytes:
            raise ResourceError(f"{where}: its {need:,} bytes are above the limit of {max_bytes:,}")
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                         | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise SpecError(f"{where}: no such file beside the model") from None
        except OSError as e:
            raise SpecError(f"{where}: cannot open it: {e.strerror or e}") from None
        with os.fdopen(fd, "rb") as stream:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise SpecError(f"{where}: not a regular file")
            if offset + need > info.st_size:
                raise SpecError(f"{where}: offset {offset:,} + {need:,} bytes is past the end of the file "
                                f"({info.st_size:,} bytes)")
            stream.seek(offset)
            data = stream.read(need)
        if len(data) != need:
            raise SpecError(f"{where}: the file changed while it was read")
        return data

    def load_constants(self, tensors: Iterator[tuple[Any, str]]) -> None:
        """Constants stored as external data (integer initializers, attributes' tensors) read into the model, so
        that folding and the reference evaluator see them in the file: each of at most :data:`MAX_FOLDED` elements
        and :data:`MAX_CONSTANT_BYTES` in all; a larger one is left unread (a node reading it is not folded)."""
        for tensor, what in tensors:
            if not _is_external(self.onnx, tensor):
                continue
            self.check(tensor, what)
            if math.prod(int(d) for d in tensor.dims) > MAX_FOLDED:
                continue
            data = self.external_bytes(tensor, what, MAX_CONSTANT_BYTES - self.constant_bytes)
            self.constant_bytes += len(data)
            tensor.CopyFrom(self.in_file(tensor, data))


def _is_external(onnx: Any, tensor: Any) -> bool:
    return tensor.HasField("data_location") and tensor.data_location == onnx.TensorProto.EXTERNAL


def _attribute_tensors(graph: Any, inner: bool = False) -> Iterator[tuple[Any, str]]:
    """Every tensor held by the nodes' attributes (a Constant's value, ConstantOfShape's fill value), and the
    initializers of subgraphs (``inner``), at any depth, each with a description for messages."""
    if inner:
        for init in graph.initializer:
            yield init, f"initializer {shown(init.name)} of subgraph {shown(graph.name)}"
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: Any) -> Iterator[tuple[Any, str]]:
    """The tensors of one node's attributes, its subgraphs' included."""
    for a in node.attribute:
        what = f"attribute {shown(a.name)} of node {shown(node.name or node.op_type)}"
        if a.HasField("t"):
            yield a.t, what
        for t in a.tensors:
            yield t, what
        for sparse in (*([a.sparse_tensor] if a.HasField("sparse_tensor") else []), *a.sparse_tensors):
            yield sparse.values, what
            yield sparse.indices, what
        for sub in (*([a.g] if a.HasField("g") else []), *a.graphs):
            yield from _attribute_tensors(sub, inner=True)


# ---------------------------------------------------------------------------------------------------- weights

def is_onnx_file(path: Any) -> bool:
    """The file at ``path`` begins as an ONNX ModelProto (``ir_version``'s tag byte, 0x08): by content, as
    :func:`layercalc.sources.read_file` tells model files."""
    try:
        with open(path, "rb") as stream:
            return stream.read(1) == bytes([ONNX_FIRST_BYTE])
    except OSError:
        return False


def weights_from_onnx(path: Any, network: Any = None, max_bytes: Optional[int] = None) -> dict[str, dict[str, Any]]:
    """An ONNX file's weights — its initializers — as ``{layer_name: {param: array}}`` in layercalc's (PyTorch's)
    layouts, ready for ``net.run(x, weights=...)`` and ``verify``.

    ``network``: the network they are for (a ``Network``, or anything :func:`layercalc.load` reads); default the
    file's own, as :func:`spec_from_file` imports it. Each parameter's initializer (and its transpose or reshape)
    is the one the importer counted for it, so ``layercalc.load(path)`` and these weights always agree; weights of
    a layer the network does not have, or of another shape, are a SpecError naming the layer; ``max_bytes`` caps
    the arrays read.
    """
    if network is None:
        return read_onnx_weights(path, max_bytes=max_bytes)
    net = load_network(network)
    return read_onnx_weights(path, net.resolve(), net.channels_last, max_bytes)


def read_onnx_weights(path: Any, steps: Optional[list] = None, channels_last: bool = False,
                      max_bytes: Optional[int] = None, origin: Optional[str] = None) -> dict[str, dict[str, Any]]:
    """The initializers of the ONNX file at ``path`` for a network's resolved ``steps`` (default: the file's own
    network), each parameter as the importer mapped it, checked against the layers' parameters."""
    import numpy as np

    from ..weights import check_weights  # deferred: NumPy (~60 ms), only when weights are read

    origin = origin or safe_text(str(path))
    onnx = _onnx(origin)
    model, lean = _read_model(onnx, path, origin)
    inits = {i.name: i for i in model.graph.initializer}
    imp = Importer(model, origin, folder=Path(path).parent, model_file=Path(path) if lean else None)
    spec = imp.spec()
    if steps is None:
        net = from_data(spec, origin)
        steps, channels_last = net.resolve(), net.channels_last
    needed = {src.init for params in imp.sources.values() for src in params.values()}
    needed |= {init for checks in imp.fixed.values() for _, init, _ in checks}
    total = 0
    for name in sorted(needed):
        init = inits[name]
        total += math.prod(init.dims) * onnx.helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
    if max_bytes is not None and total > max_bytes:
        raise ResourceError(f"{origin}: the weights' arrays hold {total:,} bytes, above the memory limit of "
                            f"{max_bytes:,}")
    assert imp.data is not None                      # set by imp.spec(), which checked each initializer's dims
    # external data is read from beside the model only, and only the bytes its dims need
    values = {name: imp.data.array(inits[name], f"initializer {shown(name)}") for name in sorted(needed)}
    by_name = {step.name: step for step in steps}
    for layer, checks in imp.fixed.items():
        for role, name, value in checks:
            if not np.all(values[name] == value):
                step = by_name.get(layer)
                label = layer_label(step.index, step.name, step.layer.type_name) if step else shown(layer)
                raise SpecError(f"{origin}: {label}: its {role} {shown(name)} is counted by another layer "
                                f"(the exporter stores equal tensors once), so layercalc reads it as {value:g} "
                                f"everywhere (affine: false), but it holds other values")
    weights: dict[str, dict[str, Any]] = {}
    for layer, params in imp.sources.items():
        step = by_name.get(layer)
        expected = step.layer.param_specs(step, channels_last) if step is not None else {}
        converted = weights.setdefault(layer, {})
        for param, src in params.items():
            array = src.apply(values[src.init])
            want = expected[param].shape if param in expected else None
            # a bias stored [1, out], a scale [C, 1, 1]: the same dims but for 1s, read in the layer's shape (any
            # other difference is left for check_weights to report)
            if want is not None and [d for d in array.shape if d != 1] == [d for d in want if d != 1]:
                array = array.reshape(want)
            converted[param] = np.ascontiguousarray(array)
    # in the network's order: the first layer that differs is reported
    weights = {**{s.name: weights[s.name] for s in steps if s.name in weights}, **weights}
    try:
        check_weights(steps, weights, channels_last)
    except LayerCalcError as exc:
        raise SpecError(f"{origin}: {exc}") from None
    return weights


# ------------------------------------------------------------------------------------------------ tensors

@dataclass(frozen=True)
class Act:
    """An ONNX activation as a view of a layercalc tensor.

    ``shape`` is the ONNX tensor's static shape; axis ``b`` holds the batch, merged as ``outer·N·inner`` (row major:
    ``outer`` slower than the batch, ``inner`` faster). The layercalc tensor ``tensor`` is
    ``[N, *shape[:b], outer?, inner?, *shape[b + 1:]]`` (factors of 1 left out): the same elements, the batch first.
    """
    tensor: str
    shape: tuple[int, ...]
    b: int = 0
    outer: int = 1
    inner: int = 1

    def labels(self) -> list[Any]:
        """layercalc's dims, each named: ``"n"`` (batch), an ONNX axis (int), ``"o"``/``"i"`` (the batch's factors)."""
        rest: list[Any] = (["o"] if self.outer > 1 else []) + (["i"] if self.inner > 1 else [])
        return ["n", *range(self.b), *rest, *range(self.b + 1, len(self.shape))]

    def t_shape(self, batch: int) -> tuple[int, ...]:
        sizes = {"n": batch, "o": self.outer, "i": self.inner}
        return tuple(sizes[x] if isinstance(x, str) else self.shape[x] for x in self.labels())

    def t_axis(self, axis: int) -> Optional[int]:
        """layercalc's dim for ONNX ``axis`` (None: the axis holding the batch)."""
        return None if axis == self.b else self.labels().index(axis)

    @property
    def plain(self) -> bool:
        """The ONNX tensor is layercalc's: the batch alone on axis 0."""
        return self.b == 0 and self.outer == 1 and self.inner == 1


def _batch_position(shape: tuple[int, ...], pre: int, post: int, batch: int) -> Optional[tuple[int, int, int]]:
    """Where the batch sits in ``shape`` for a tensor with ``pre`` blocks before it and ``post`` elements after it:
    ``(axis, outer, inner)``, or None when no axis holds the batch with whole factors.

    >>> _batch_position((10, 2, 32), pre=10, post=32, batch=2), _batch_position((20, 32), 10, 32, 2)
    ((1, 1, 1), (0, 10, 1))
    >>> _batch_position((10, 8, 8), pre=10, post=32, batch=2)
    (1, 1, 4)
    """
    found = []
    before = 1
    for k, size in enumerate(shape):
        if pre % before == 0:
            outer = pre // before
            if size % (outer * batch) == 0:
                inner = size // (outer * batch)
                if inner * math.prod(shape[k + 1:]) == post:
                    found.append((k, outer, inner))
                    break
        before *= size
        if before > pre:
            break
    if batch != 1 or not shape:
        return found[0] if found else None
    # A batch of 1 fits anywhere (the same elements in the same order): [17, 1·2, 16] is also [17·1, 2, 16], and
    # which one the exporter meant shows only later (nn.MultiheadAttention's [L·N, E] then [L, N·H, d]). It is
    # read alone on the first axis of size 1, else as the outermost factor of dim 0: every other dim stays free
    # for the operations that follow (a product over the last dims, a softmax)
    return next(((k, 1, 1) for k, size in enumerate(shape) if size == 1), (0, 1, shape[0]))


# ------------------------------------------------------------------------------------------ constant folding

def _attrs(onnx: Any, node: Any) -> dict[str, Any]:
    """A node's attributes; floats (stored as float32) as their shortest float32 text reads (1e-05, not
    9.999999747378752e-06)."""
    import numpy as np

    result = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if a.type == onnx.AttributeProto.FLOAT:
            value = float(str(np.float32(value)))
        result[a.name] = value
    return result


def _static(onnx: Any, value_info: Any) -> Optional[tuple[int, ...]]:
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    dims = t.tensor_type.shape.dim
    if not all(d.HasField("dim_value") for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims)


def _infer(onnx: Any, model: Any) -> dict[str, tuple[int, ...]]:
    """Static shapes of every value ONNX shape inference can give (with its partial data propagation)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:                               # inference is an aid: a model it rejects keeps what it has
        inferred = model
    g = inferred.graph
    shapes = {}
    for v in (*g.value_info, *g.input, *g.output):
        s = _static(onnx, v)
        if s is not None:
            shapes[v.name] = s
    for init in g.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    return shapes


def _evaluate(onnx: Any, node: Any, feeds: dict[str, Any], opsets: Any) -> list[Any]:
    """Run one node on known inputs with ONNX's reference implementation."""
    import numpy as np
    from onnx.reference import ReferenceEvaluator

    if node.op_type == "Constant":
        a = _attrs(onnx, node)
        if "value" in a:
            return [onnx.numpy_helper.to_array(a["value"])]
        for key, dtype in (("value_float", np.float32), ("value_int", np.int64), ("value_floats", np.float32),
                           ("value_ints", np.int64)):
            if key in a:
                return [np.array(a[key], dtype=dtype)]
    if node.op_type == "GatherElements":         # (onnx 1.23's reference fails on a [1, L] index of a [1, P] table)
        data, index = feeds[node.input[0]], feeds[node.input[1]]
        axis = int(_attrs(onnx, node).get("axis", 0)) % max(data.ndim, 1)
        if index.dtype.kind not in "iu" or np.any(index < -data.shape[axis]) or np.any(index >= data.shape[axis]):
            raise ValueError("indices out of range")
        return [np.take_along_axis(data, np.where(index < 0, index + data.shape[axis], index), axis)]
    inputs = [onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(feeds[name].dtype),
                                                 feeds[name].shape) for name in dict.fromkeys(node.input) if name]
    outputs = [onnx.helper.make_empty_tensor_value_info(name) for name in node.output if name]
    graph = onnx.helper.make_graph([node], "fold", inputs, outputs)
    model = onnx.helper.make_model(graph, opset_imports=list(opsets))
    results = ReferenceEvaluator(model).run(None, {name: feeds[name] for name in node.input if name})
    return [np.asarray(r) for r in results]


#: operators whose value has the elements of their inputs broadcast together, computed in time linear in them
_BROADCASTING = {
    "Add", "Sub", "Mul", "Div", "Mod", "Pow", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And",
    "Or", "Xor", "Where", "Min", "Max", "Sum", "Mean", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor",
}
#: operators whose value (each of their values) has the elements of their first input
_SAME_SIZE = {
    "Cast", "CastLike", "Identity", "Neg", "Abs", "Floor", "Ceil", "Round", "Sqrt", "Reciprocal", "Exp", "Log",
    "Sign", "Not", "BitwiseNot", "Relu", "Sigmoid", "Tanh", "Erf", "Clip", "IsNaN", "IsInf", "Softmax", "Trilu",
    "Cos", "Sin",
    "CumSum", "EyeLike", "Squeeze", "Unsqueeze", "Reshape", "Flatten", "Transpose", "Dropout",
}
#: operators whose value has at most as many elements as their inputs together
_SHRINKING = {"Slice", "Split", "Concat", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
              "ArgMax", "ArgMin", "GatherElements", "TopK", "ScatterND", "ScatterElements"}


def _broadcast(shapes: list[tuple[int, ...]]) -> Optional[tuple[int, ...]]:
    """NumPy's broadcast of ``shapes`` (Python integers: no overflow), None when they do not broadcast."""
    rank = max((len(s) for s in shapes), default=0)
    result = []
    for k in range(rank):
        sizes = {s[k - rank + len(s)] for s in shapes if k - rank + len(s) >= 0} - {1}
        if len(sizes) > 1 or any(d < 0 for d in sizes):
            return None
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)


def _folded_size(onnx: Any, node: Any, values: dict[str, Any]) -> Optional[int]:
    """The elements of the value ``node`` computes from the known ``values`` of its inputs, predicted before it is
    computed; None when it cannot be predicted (the node is then not folded). Exact for the operators that make
    large values from small inputs (ConstantOfShape, Range, Tile, Expand, Pad, OneHot, broadcasting arithmetic);
    an upper bound for those that cannot grow their inputs."""
    import numpy as np

    op = node.op_type
    ins: list[Any] = [values[name] if name else None for name in node.input]
    a = _attrs(onnx, node)

    def ints(k: int) -> Optional[list[int]]:
        if k >= len(ins) or ins[k] is None or ins[k].dtype.kind not in "iub":
            return None
        return [int(v) for v in ins[k].reshape(-1)]

    present = [v for v in ins if v is not None]
    if op == "Constant":
        value = a.get("value")
        return math.prod(value.dims) if value is not None else 1 + sum(len(a.get(k, ())) for k in
                                                                         ("value_floats", "value_ints"))
    if op in _BROADCASTING:
        shape = _broadcast([tuple(int(d) for d in v.shape) for v in present])
        return None if shape is None else math.prod(shape)
    if op in _SAME_SIZE:
        return int(present[0].size) if present else None
    if op in _SHRINKING:
        return sum(int(v.size) for v in present)
    if op == "ConstantOfShape":
        dims = ints(0)
        return None if dims is None or any(d < 0 for d in dims) else math.prod(dims)
    if op == "Range":
        if len(ins) < 3 or any(v is None or v.size != 1 for v in ins[:3]):
            return None
        start, limit, delta = (v.reshape(-1)[0].item() for v in ins[:3])
        if not all(math.isfinite(float(v)) for v in (start, limit, delta)) or delta == 0:
            return None
        steps = (limit - start) / delta if not all(isinstance(v, int) for v in (start, limit, delta)) else \
            -(-(limit - start) // delta)
        return max(math.ceil(steps), 0)
    if op == "Tile":
        repeats = ints(1)
        return None if repeats is None or any(r < 0 for r in repeats) else int(ins[0].size) * math.prod(repeats)
    if op == "Expand":
        dims = ints(1)
        shape = None if dims is None else _broadcast([tuple(int(d) for d in ins[0].shape), tuple(dims)])
        return None if shape is None else math.prod(shape)
    if op == "Pad":
        pads = ints(1) if len(ins) > 1 else [int(v) for v in a.get("pads", [])]
        x = ins[0]
        if pads is None or len(pads) != 2 * x.ndim or len(ins) > 3 and ins[3] is not None:
            return None
        dims = [d + pads[k] + pads[k + x.ndim] for k, d in enumerate(x.shape)]
        return None if any(d < 0 for d in dims) else math.prod(dims)
    if op == "OneHot":
        depth = ins[1] if len(ins) > 1 else None
        if depth is None or depth.size != 1 or not np.isfinite(depth).all():
            return None
        return int(ins[0].size) * max(int(depth.reshape(-1)[0]), 0)
    if op == "Gather":
        data, index = ins[0], ins[1] if len(ins) > 1 else None
        if index is None or data.ndim == 0:
            return None
        axis = int(a.get("axis", 0)) % data.ndim
        return int(index.size) * (int(data.size) // max(int(data.shape[axis]), 1))
    return None


def fold_constants(onnx: Any, model: Any, constant_inits: set[str], data: Optional[TensorData] = None,
                   too_large: Optional[dict[str, int]] = None,
                   stopped: Optional[list[int]] = None) -> tuple[Any, dict[str, Any], dict]:
    """Evaluate every node computable from known values; return the reduced model, the known values (name →
    array) and the static shapes of the remaining tensors.

    Known values: ``Constant`` nodes, the initializers in ``constant_inits`` (read through ``data``; one still
    stored in another file stays unknown), ``Shape``/``Size`` of a tensor with a static shape, and what is computed
    from them. Repeats shape inference and folding until nothing changes. A node is evaluated only when the size of
    its value, predicted from its inputs (:func:`_folded_size`), is at most :data:`MAX_FOLDED` elements; the outputs
    of a node predicted larger are recorded in ``too_large`` (name → elements). Nodes with subgraphs (Loop, If,
    Scan) are never evaluated: their work is not bounded by their inputs' sizes. At most
    ``max(MIN_FOLD_ROUNDS, MAX_FOLD_WORK // nodes)`` rounds are run; when folding stops for that, the number of
    rounds is appended to ``stopped``.
    """
    import numpy as np

    data = data or TensorData(onnx, "the model")
    g = model.graph
    values: dict[str, Any] = {}
    for init in g.initializer:
        if init.name in constant_inits and not _is_external(onnx, init):
            values[init.name] = data.array(init, f"initializer {shown(init.name)}")
    subgraph_types = {onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS}

    def never_folded(node: Any) -> bool:
        return (node.op_type in NOT_FOLDED or node.domain not in ("", "ai.onnx")
                or any(a.type in subgraph_types for a in node.attribute)
                or any(_is_external(onnx, t) for t, _ in _node_tensors(node)))

    skipped = {k for k, node in enumerate(g.node) if never_folded(node)}
    folded: set[int] = set()
    rounds, most = 0, max(MIN_FOLD_ROUNDS, MAX_FOLD_WORK // max(len(g.node), 1))
    while True:
        shapes = _infer(onnx, model)
        if rounds == most:
            if stopped is not None:
                stopped.append(rounds)
            return model, values, shapes
        rounds += 1
        progress = False
        for k, node in enumerate(g.node):
            if k in folded or k in skipped:
                continue
            result: Optional[list[Any]] = None
            if node.op_type in ("Shape", "Size") and node.input and node.input[0] in shapes:
                shape = shapes[node.input[0]]
                if node.op_type == "Size":
                    result = [np.array(math.prod(shape), dtype=np.int64)]
                else:
                    a = _attrs(onnx, node)
                    start, end = a.get("start", 0), a.get("end", len(shape))
                    if not (isinstance(start, int) and isinstance(end, int)):
                        continue                    # an invalid node: the converter names it
                    result = [np.array(shape[start:end], dtype=np.int64)]
            elif all(not name or name in values for name in node.input) and (node.input or node.op_type ==
                                                                               "Constant"):
                try:
                    size = _folded_size(onnx, node, values)
                except Exception:                   # an invalid node (attributes of the wrong type): not folded
                    size = None
                if size is not None and size > MAX_FOLDED and too_large is not None:
                    too_large.update((name, size) for name in node.output if name)
                if size is None or size > MAX_FOLDED:
                    continue
                try:
                    result = _evaluate(onnx, node, values, model.opset_import)
                except Exception:
                    result = None                 # left as a node: the converter names it if it matters
            if result is None or any(r.size > MAX_FOLDED for r in result):
                continue
            values.update(zip(node.output, result))
            folded.add(k)
            progress = True
        if not progress:
            return model, values, shapes
        # the folded values become initializers, so that the next inference sees them as constants
        kept = [n for k, n in enumerate(g.node) if k not in folded]
        needed = {name for n in kept for name in n.input} | {o.name for o in g.output}
        have = {i.name for i in g.initializer}
        new_inits = [onnx.numpy_helper.from_array(np.asarray(values[name]), name) for name in needed
                     if name in values and name not in have]
        graph = onnx.helper.make_graph(kept, g.name, list(g.input), list(g.output),
                                       initializer=[*g.initializer, *new_inits], value_info=[])
        model = onnx.helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
        g = model.graph
        folded = set()
        skipped = {k for k, node in enumerate(g.node) if never_folded(node)}


# ----------------------------------------------------------------------------------------------- the importer

class Unsupported(Exception):
    """A node that cannot be mapped; turned into a SpecError naming the node."""


@dataclass
class Layer:
    spec: dict
    node: int                       # the ONNX node's index (-1: made for an initializer)


@dataclass(frozen=True)
class Source:
    """Where one layer parameter's values come from: initializer ``init``, then ``ops`` in order — ``("T", ())``
    transposes a matrix, ``("reshape", shape)`` keeps the element order, ``("permute", axes)`` moves axes,
    ``("first", (axis,))`` keeps index 0 of an axis (one example of a per-example copy) — giving
    the parameter in its layer type's (PyTorch's) layout. Recorded by the converter that counts the parameter."""
    init: str
    ops: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def apply(self, array: Any) -> Any:
        for op, arg in self.ops:
            if op == "T":
                array = array.T
            elif op == "reshape":
                array = array.reshape(arg)
            elif op == "first":                    # one example of a per-example copy
                array = array.take([0], axis=arg[0])
            else:
                array = array.transpose(arg)
        return array


@dataclass
class Importer:
    """One ONNX model being mapped to spec data."""
    model: Any
    origin: str
    batch: int = 1
    layers: list[Layer] = field(default_factory=list)
    acts: dict[str, Act] = field(default_factory=dict)          # ONNX value → its layercalc view
    values: dict[str, Any] = field(default_factory=dict)        # ONNX value → known constant (array)
    params: dict[str, tuple[int, ...]] = field(default_factory=dict)   # parameter initializer → dims
    param_alias: dict[str, tuple[str, bool]] = field(default_factory=dict)  # value → (initializer, transposed)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    users: dict[str, list[int]] = field(default_factory=dict)   # parameter initializer → owner nodes, in order
    owner: dict[str, str] = field(default_factory=dict)         # parameter initializer → layer counting it
    role_maps: dict[str, dict[str, str]] = field(default_factory=dict)  # layer → {role: initializer}
    param_layers: dict[tuple[str, tuple[int, ...]], str] = field(default_factory=dict)
    sources: dict[str, dict[str, Source]] = field(default_factory=dict)   # layer → {param: its initializer}
    fixed: dict[str, list[tuple[str, str, float]]] = field(default_factory=dict)  # layer → (role, init, value)
    names: set[str] = field(default_factory=set)
    fused: dict[int, int] = field(default_factory=dict)         # Add node → the MatMul it is the bias of
    gelu: dict[int, str] = field(default_factory=dict)          # last node of an Erf-based GELU → its input
    rotary: dict[int, tuple[str, str, str]] = field(default_factory=dict)  # RoPE's Add → (input, cos, sin)
    rotary_slices: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # RoPE's Add → its two Slices
    lazy: dict[str, Callable[[Act], str]] = field(default_factory=dict)  # value → its layer, made to broadcast
    kinds: dict[str, str] = field(default_factory=dict)         # initializer → the dynamo exporter's InputSpec kind
    inits: dict[str, Any] = field(default_factory=dict)         # the file's initializers by name
    scope_count: dict[str, int] = field(default_factory=dict)   # torch module scope → its operators
    consumers: dict[str, list[int]] = field(default_factory=dict)
    node: Any = None
    index: int = -1
    nodes: list[Any] = field(default_factory=list)
    onnx: Any = None
    folder: Optional[Path] = None                               # the model's folder: where its external data is
    model_file: Optional[Path] = None                           # the model's file, when read lean (_read_lean)
    data: Optional[TensorData] = None
    too_large: dict[str, int] = field(default_factory=dict)     # value → elements, not folded for its size
    fold_stopped: list[int] = field(default_factory=list)       # the rounds run, when folding stopped early

    # ------------------------------------------------------------------------------------------- the whole graph

    def spec(self) -> dict:
        onnx = self.onnx = _onnx(self.origin)
        data = self.data = TensorData(onnx, self.origin, self.folder, self.model_file)
        g = self.model.graph
        if len(g.node) > MAX_LAYERS:
            # counted before anything is built: each node becomes at most one layer, and a network has at most
            # MAX_LAYERS of them
            raise SpecError(f"{self.origin}: the graph has {len(g.node):,} nodes, above layercalc's limit of "
                            f"{MAX_LAYERS:,} layers")
        inits = {}
        for init in g.initializer:
            if init.name in inits:
                raise SpecError(f"{self.origin}: two initializers are named {shown(init.name)}: a tensor has one "
                                f"value")
            data.check(init, f"initializer {shown(init.name)}")
            inits[init.name] = init
        self.inits = inits
        self._check_writers(g, inits)
        constant_inits = self._constant_initializers(g, inits)
        # constants stored in another file read from beside the model before anything else looks at them (onnx's
        # checker would look for the file in the working directory)
        data.load_constants((inits[name], f"initializer {shown(name)}") for name in sorted(constant_inits))
        data.load_constants(_attribute_tensors(g))
        self._check_nodes(g)
        inputs = [v for v in g.input if v.name not in inits]
        if len(inputs) != 1:
            names = ", ".join(safe_text(v.name) for v in inputs) or "none"
            raise SpecError(f"{self.origin}: the graph has {len(inputs)} inputs ({names}); layercalc networks take "
                            f"one input")
        x = inputs[0]
        dims = list(x.type.tensor_type.shape.dim)
        if len(dims) < 2:
            raise SpecError(f"{self.origin}: input {safe_text(x.name)!r} has {len(dims)} dim(s); expected the batch "
                            f"dim first, then at least one more")
        for k, d in enumerate(dims[1:], start=1):
            if d.HasField("dim_value") and d.dim_value < 1:
                raise SpecError(f"{self.origin}: input {shown(x.name)} dim {k} is {d.dim_value}: sizes are "
                                f"positive")
            if not d.HasField("dim_value"):
                raise SpecError(f"{self.origin}: input {safe_text(x.name)!r} dim {k} is dynamic "
                                f"({safe_text(d.dim_param) or '?'}): layercalc needs static sizes beyond the batch; "
                                f"export with a fixed input size (torch.onnx.export without dynamic_axes for it)")
        self.batch = int(dims[0].dim_value) if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else 1
        static_batch = dims[0].HasField("dim_value") and dims[0].dim_value > 0
        dims[0].Clear()
        dims[0].dim_value = self.batch               # a dynamic batch is read as 1 (the spec's default batch)
        input_shape = tuple(int(d.dim_value) for d in dims)

        model, self.values, self.shapes = fold_constants(onnx, self.model, constant_inits, data, self.too_large,
                                                         self.fold_stopped)
        self.params = {name: tuple(int(d) for d in init.dims) for name, init in inits.items()
                       if name not in constant_inits}
        # the dynamo exporter marks a module's parameters and buffers (its other initializers are folded values)
        key = "pkg.torch.export.graph_signature.InputSpec.kind"
        self.kinds = {v.name: p.value for v in self.model.graph.value_info for p in v.metadata_props
                      if p.key == key and v.name in inits}
        g = model.graph
        nodes = list(g.node)
        self._prepare(nodes)
        self.acts[x.name] = Act("input", input_shape)
        for k, node in enumerate(nodes):
            self.node, self.index = node, k
            if k in self.gelu:
                x = self.act(self.gelu[k])
                name = self.emit({"type": "gelu"}, [x.tensor], name=self.name_for(fallback="gelu", module=True))
                self.acts[node.output[0]] = Act(name, x.shape, x.b, x.outer, x.inner)
                continue
            if k in self.rotary:
                try:
                    _rotary(self, node)
                except Unsupported as e:
                    raise SpecError(f"{self._where()}: {e}") from None
                continue
            if k in self.fused:
                continue
            big = next((name for name in node.output if name in self.too_large), None)
            if big is not None:
                raise SpecError(f"{self._where()}: its value {shown(big)} would have {self.too_large[big]:,} "
                                f"elements: layercalc computes constants (shape arithmetic) of at most "
                                f"{MAX_FOLDED:,} elements")
            convert = CONVERTERS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
            if convert is None:
                why = (f"operator {node.op_type!r} is not supported" if node.domain in ("", "ai.onnx") else
                       f"operator {node.op_type!r} of domain {node.domain!r} is not supported")
                raise SpecError(f"{self._where()}: {why} by layercalc's ONNX importer (see docs/importers.md "
                                f"for the operators it maps); it is not counted as zero")
            try:
                convert(self, node)
            except Unsupported as e:
                raise SpecError(f"{self._where()}: {e}") from None
        if not self.layers:
            raise SpecError(f"{self.origin}: the graph computes nothing layercalc counts (no layer)")
        self._finish_output(g)
        spec: dict[str, Any] = {"name": safe_text(g.name or Path(self.origin).stem)[:200] or "onnx model",
                                "input": list(input_shape[1:])}
        if static_batch and self.batch != 1:
            spec["batch"] = self.batch
        spec["layers"] = self._layer_list()
        return spec

    def _check_nodes(self, g: Any) -> None:
        """Each node of an ONNX operator is what its schema says (its number of inputs and outputs, its
        attributes' types), before anything reads it; operators without a schema are named later, as unsupported."""
        onnx = self.onnx
        checker = onnx.checker.C.CheckerContext()
        checker.ir_version = self.model.ir_version
        checker.opset_imports = {o.domain: int(o.version) for o in self.model.opset_import}
        for k, node in enumerate(g.node):
            if node.domain not in ("", "ai.onnx") or not onnx.defs.has(node.op_type) or \
                    any(a.g.node or a.graphs for a in node.attribute) or \
                    any(_is_external(onnx, t) for t, _ in _node_tensors(node)):
                continue        # never mapped: a node with subgraphs (Loop, If), a constant left in another file
            try:
                onnx.checker.check_node(node, checker)
            except Exception as e:                 # onnx's ValidationError: inputs or attributes the schema refuses
                self.node, self.index = node, k
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise SpecError(f"{self._where()}: not a valid {safe_text(node.op_type)[:80]} node: "
                                f"{safe_text(first)[:200]}") from None
        self.node, self.index = None, -1

    def _check_writers(self, g: Any, inits: dict[str, Any]) -> None:
        """Each tensor has one writer: a node writing a tensor that another node, an initializer or the graph's
        input already holds would be counted twice (or replace a value the file gives)."""
        writer: dict[str, str] = {v.name: "the graph's input" for v in g.input if v.name not in inits}
        writer.update((name, "an initializer") for name in inits)
        for k, node in enumerate(g.node):
            label = f"node {k} {shown(node.name or '(no name)')} ({safe_text(node.op_type)[:80]})"
            for name in node.output:
                if not name:
                    continue
                if name in writer:
                    raise SpecError(f"{self.origin}: {label} writes tensor {shown(name)}, which {writer[name]} "
                                    f"already writes: each tensor has one value")
                writer[name] = label

    def _constant_initializers(self, g: Any, inits: dict[str, Any]) -> set[str]:
        """Initializers that are shapes, axes or indices: integer-typed, or read only at a shape slot."""
        onnx = self.onnx
        slots: dict[str, set[bool]] = {}
        for node in g.node:
            for j, name in enumerate(node.input):
                if name in inits:
                    slots.setdefault(name, set()).add(j in SHAPE_SLOTS.get(node.op_type, ()))
        floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
        return {name for name, init in inits.items()
                if init.data_type not in floats or slots.get(name, {False}) == {True}}

    def _prepare(self, nodes: list[Any]) -> None:
        """Aliases of initializers (Identity, a 2-d Transpose), MatMul + bias Add pairs, and each parameter's
        users (the nodes that read it, a fused Add counted as its MatMul)."""
        for node in nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(id(node))
        for node in nodes:
            src = node.input[0] if node.input else ""
            if node.op_type == "Identity" and self._init_of(src):
                self.param_alias[node.output[0]] = self.param_alias.get(src, (src, False))
            elif node.op_type == "Transpose" and self._init_of(src) and len(self._param_dims(src)) == 2:
                perm = _attrs(self.onnx, node).get("perm", [1, 0])
                init, transposed = self.param_alias.get(src, (src, False))
                self.param_alias[node.output[0]] = (init, transposed != (list(perm) == [1, 0]))
        position = {id(n): k for k, n in enumerate(nodes)}
        for k, node in enumerate(nodes):
            if node.op_type != "MatMul" or len(node.input) != 2 or not self._init_of(node.input[1]):
                continue
            after = self.consumers.get(node.output[0], [])
            if len(after) != 1:
                continue
            add = nodes[position[after[0]]]
            if add.op_type != "Add":
                continue
            other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
            dims = self._param_dims(node.input[1])
            if self._init_of(other) and self._param_dims(other)[-1:] == dims[-1:] and \
                    math.prod(self._param_dims(other)) == dims[-1]:
                self.fused[position[id(add)]] = k
        self._find_erf_gelu(nodes, position)
        self._find_rotary(nodes, position)
        for node in nodes:
            scope = _scope(node.name)[0]
            self.scope_count[scope] = self.scope_count.get(scope, 0) + 1
        for k, node in enumerate(nodes):
            if node.op_type in ("Identity", "Transpose") and node.output[0] in self.param_alias:
                self.fused[k] = -1                       # an alias: no layer of its own
                continue
            owner = self.fused.get(k, k)
            for name in node.input:
                init = self._init_of(name)
                if init and owner not in self.users.setdefault(init, []):
                    self.users[init].append(owner)
        self.nodes = nodes

    def _find_erf_gelu(self, nodes: list[Any], position: dict[int, int]) -> None:
        """GELU written out as exporters before opset 20 write it, ``x·0.5·(1 + erf(x/√2))`` (Div, Erf, Add,
        Mul, Mul, the last two in either order): one ``gelu`` layer, at the last node."""
        producer = {o: k for k, n in enumerate(nodes) for o in n.output}

        def only_user(name: str) -> Any:
            users = self.consumers.get(name, [])
            return nodes[position[users[0]]] if len(users) == 1 else None

        def is_const(name: str, target: float) -> bool:
            v = self.values.get(name)
            return v is not None and v.size == 1 and abs(float(v.reshape(-1)[0]) - target) < 1e-4

        def other(node: Any, name: str) -> str:
            return node.input[1] if node.input[0] == name else node.input[0]

        for erf in nodes:
            if erf.op_type != "Erf" or erf.input[0] not in producer:
                continue
            div = nodes[producer[erf.input[0]]]
            if div.op_type == "Div" and is_const(div.input[1], math.sqrt(2)):
                x = div.input[0]
            elif div.op_type == "Mul" and any(is_const(n, 1 / math.sqrt(2)) for n in div.input):
                x = div.input[0] if is_const(div.input[1], 1 / math.sqrt(2)) else div.input[1]
            else:
                continue
            add = only_user(erf.output[0])
            if only_user(div.output[0]) is not erf or add is None or add.op_type != "Add":
                continue
            if not is_const(other(add, erf.output[0]), 1.0):
                continue
            first = only_user(add.output[0])
            if first is None or first.op_type != "Mul":
                continue
            half = other(first, add.output[0])
            skipped = [div, erf, add]
            last: Optional[Any] = None
            if half == x:                                   # (x·(1 + erf))·0.5
                last = only_user(first.output[0])
                if last is None or last.op_type != "Mul" or not is_const(other(last, first.output[0]), 0.5):
                    continue
                skipped.append(first)
            elif half in producer:                          # (x·0.5)·(1 + erf)
                scaled = nodes[producer[half]]
                if scaled.op_type != "Mul" or only_user(half) is not first or \
                        not (x in scaled.input and is_const(other(scaled, x), 0.5)):
                    continue
                last = first
                skipped.append(scaled)
            if last is None:
                continue
            for node in skipped:
                self.fused[position[id(node)]] = -1
            self.gelu[position[id(last)]] = x

    def _is_constant(self, name: str) -> bool:
        """A value known without the network input: folded, or an initializer the exporter did not mark as a
        module's parameter or buffer (the dynamo exporter's folded tables)."""
        return name in self.values or (name in self.params and self.kinds.get(name) is None and
                                       self._init_of(name) == name and bool(self.kinds))

    def _find_rotary(self, nodes: list[Any], position: dict[int, int]) -> None:
        """Rotary position embedding written out as Hugging Face's ``apply_rotary_pos_emb`` is exported:
        ``x·cos + cat(−x[..., h:], x[..., :h])·sin`` (Mul, Slice, Slice, Neg, Concat, Mul, Add) with constant
        tables: one ``rotary_embedding`` layer at the Add (its tables checked when it is converted)."""
        producer = {o: k for k, n in enumerate(nodes) for o in n.output}

        def made_by(name: str, op: str) -> Any:
            node = nodes[producer[name]] if name in producer else None
            return node if node is not None and node.op_type == op else None

        def only_users(name: str, users: list[Any]) -> bool:
            return {id(u) for u in users} >= set(self.consumers.get(name, [])) and \
                len(self.consumers.get(name, [])) == 1

        def split(mul: Any) -> Optional[tuple[str, str]]:
            a, b = mul.input[0], mul.input[1]
            if self._is_constant(b) and not self._is_constant(a):
                return a, b
            if self._is_constant(a) and not self._is_constant(b):
                return b, a
            return None

        for add in nodes:
            if add.op_type != "Add" or len(add.input) != 2:
                continue
            muls = [made_by(name, "Mul") for name in add.input]
            if None in muls:
                continue
            for m_cos, m_sin in ((muls[0], muls[1]), (muls[1], muls[0])):
                first, second = split(m_cos), split(m_sin)
                if first is None or second is None:
                    continue
                x, cos = first
                rotated, sin = second
                cat = made_by(rotated, "Concat")
                if cat is None or len(cat.input) != 2:
                    continue
                neg = made_by(cat.input[0], "Neg")
                low = made_by(cat.input[1], "Slice")
                high = made_by(neg.input[0], "Slice") if neg is not None else None
                if low is None or high is None or low.input[0] != x or high.input[0] != x:
                    continue
                group = [m_cos, m_sin, cat, neg, low, high]
                if not (only_users(m_cos.output[0], [add]) and only_users(m_sin.output[0], [add]) and
                        only_users(rotated, [m_sin]) and only_users(neg.output[0], [cat]) and
                        only_users(low.output[0], [cat]) and only_users(high.output[0], [neg])):
                    continue
                for node in group:
                    self.fused[position[id(node)]] = -1
                self.rotary[position[id(add)]] = (x, cos, sin)
                self.rotary_slices[position[id(add)]] = (low, high)
                break

    # -------------------------------------------------------------------------------------------- look-ups

    def _where(self) -> str:
        name = safe_text(self.node.name) if self.node is not None and self.node.name else "(no name)"
        return f"{self.origin}: node {self.index} {name!r} ({self.node.op_type})"

    def _init_of(self, name: str) -> Optional[str]:
        """The parameter initializer ``name`` is (directly or through Identity/Transpose), else None."""
        if name in self.param_alias:
            return self.param_alias[name][0]
        return name if name in self.params else None

    def source(self, name: str, transpose: bool = False) -> Source:
        """Where the values of ``name`` (an initializer, or an Identity/Transpose of one) come from, read
        transposed when ``transpose``: composed with the alias' own transposition."""
        init, transposed = self.param_alias.get(name, (name, False))
        return Source(init, (("T", ()),) if transposed != transpose else ())

    def _param_dims(self, name: str) -> tuple[int, ...]:
        init, transposed = self.param_alias.get(name, (name, False))
        dims = self.params[init]
        return tuple(reversed(dims)) if transposed else dims

    def attrs(self, node: Any) -> dict[str, Any]:
        return _attrs(self.onnx, node)

    def expect(self, role: str, name: str, expected: tuple[int, ...], why: str = "",
               leading_ones: bool = False) -> None:
        """The initializer ``name`` (the layer's ``role``) has the shape the layer it becomes computes with: else an
        error naming it, its shape and the expected one (the layer would count the input's shapes, not the
        file's). ``leading_ones``: ``[1, C]`` is also ``[C]`` (a value broadcast over the leading dims)."""
        init = self._init_of(name)
        if init is None:
            raise Unsupported(f"{role} {shown(name)} must be an initializer")
        dims = self._param_dims(name)
        expected = tuple(int(d) for d in expected)
        fits = dims == expected or (leading_ones and len(dims) > len(expected) and
                                    dims[len(dims) - len(expected):] == expected and
                                    all(d == 1 for d in dims[:len(dims) - len(expected)]))
        if not fits:
            raise Unsupported(f"initializer {shown(init)} ({role}) has shape {list(dims)}, expected "
                              f"{list(expected)}" + (f" ({why})" if why else ""))

    def act(self, name: str, what: str = "input") -> Act:
        if name in self.acts:
            return self.acts[name]
        if self._init_of(name):
            raise Unsupported(f"{what} {safe_text(name)!r} is an initializer (a parameter) where layercalc needs a "
                              f"tensor computed from the network input")
        if name in self.values:
            raise Unsupported(f"{what} {safe_text(name)!r} is a constant where layercalc needs a tensor computed "
                              f"from the network input")
        raise Unsupported(f"{what} {safe_text(name)!r} is not computed by any mapped node")

    def const(self, name: str, what: str) -> Any:
        if not name:
            return None
        if name not in self.values:
            raise Unsupported(f"{what} ({safe_text(name)!r}) must be a constant (or computed from shapes), but it "
                              f"depends on the data")
        return self.values[name]

    def constant_value(self, name: str, what: str, bounded: bool = True) -> Any:
        """The values of a constant operand: folded, or an initializer that is no module parameter (read; at most
        :data:`MAX_FOLDED` elements when ``bounded``, else as many as the file holds)."""
        if name in self.values:
            return self.values[name]
        if not self._is_constant(name):
            raise Unsupported(f"{what} {safe_text(name)!r} must be a constant")
        if bounded and math.prod(self.params[name]) > MAX_FOLDED:
            raise Unsupported(f"{what} {safe_text(name)!r} has {math.prod(self.params[name]):,} elements: "
                              f"layercalc reads constants of at most {MAX_FOLDED:,}")
        return self.read_initializer(name)

    def read_initializer(self, name: str) -> Any:
        """The values of initializer ``name`` (external or lean data read from beside the model or from it)."""
        assert self.data is not None                   # set by spec()
        return self.data.array(self.inits[name], f"initializer {shown(name)}")

    def scalar_initializer(self, name: str) -> bool:
        """A one-element float initializer that no module owns (the dynamo exporter's 0.5, √d, ε): a constant."""
        init = self._init_of(name)
        return init == name and math.prod(self.params[name]) == 1 and self.kinds.get(name) not in ("PARAMETER",
                                                                                                   "BUFFER")

    def out_shape(self, k: int = 0) -> tuple[int, ...]:
        name = self.node.output[k]
        if name not in self.shapes:
            if self.fold_stopped:
                raise Unsupported(f"the static shape of output {safe_text(name)!r} is unknown: "
                                  f"{self.fold_stopped_text()}")
            problem = self._inference_problem()
            raise Unsupported(f"the static shape of output {safe_text(name)!r} is unknown (ONNX shape inference "
                              + (f"refuses the graph: {problem})" if problem else
                                 "gave none); export with static input sizes"))
        return self.shapes[name]

    def fold_stopped_text(self) -> str:
        return (f"evaluating the graph's shape arithmetic stopped after {self.fold_stopped[0]} rounds of ONNX shape "
                f"inference on its {len(self.model.graph.node):,} nodes (layercalc's limit: {MAX_FOLD_WORK:,} nodes "
                f"inferred)")

    def _inference_problem(self) -> str:
        """Why ONNX shape inference fails on the model (its strict mode's first line), or "" when it does not:
        said where a node's shape is missing (an invalid attribute, operands that do not broadcast)."""
        try:
            self.onnx.shape_inference.infer_shapes(self.model, strict_mode=True, data_prop=True)
        except Exception as e:
            text = re.sub(r"\[ShapeInferenceError\]\s*(Inference error\(s\):\s*)?", "", str(e)).strip()
            return safe_text(text.splitlines()[0] if text else type(e).__name__)[:200]
        return ""

    def same_view(self, a: Act, b: Act, concat_axis: Optional[int] = None) -> bool:
        """``a`` and ``b`` (of one rank) hold the batch the same way: at the same place, or — a batch of 1, which
        fits anywhere — giving the same layercalc dims (``concat_axis``: but for that ONNX axis' size)."""
        if len(a.shape) != len(b.shape):
            return False
        if (a.b, a.outer, a.inner) == (b.b, b.outer, b.inner):
            return True
        if self.batch != 1 or a.t_axis(concat_axis) is None if concat_axis is not None else False:
            return False
        if concat_axis is not None:
            b = Act(b.tensor, tuple(a.shape[k] if k == concat_axis else d for k, d in enumerate(b.shape)), b.b,
                    b.outer, b.inner)
        return a.labels() == b.labels() and a.t_shape(1) == b.t_shape(1)

    def need_plain(self, a: Act, what: str = "") -> None:
        if not a.plain:
            raise Unsupported(f"{what or self.node.op_type} needs the batch on dim 0 alone, but input "
                              f"{list(a.shape)} holds it on dim {a.b}" + (" merged with other dims" if
                                                                           a.outer * a.inner > 1 else ""))

    # ---------------------------------------------------------------------------------------------- emitting

    def name_for(self, weight: Optional[str] = None, suffix: str = "", fallback: str = "",
                 module: bool = False) -> str:
        """A layer name: the weight's module name (``features.0`` from ``features.0.weight``), else the node's
        torch scope (``/layer1/layer1.0/conv1/Conv`` → ``layer1.0.conv1``), else the node's name or op type."""
        base = ""
        if weight and "::" not in weight and not weight.startswith("/"):
            base = re.sub(r"\.(weight|bias|kernel|scale|gamma|beta)$", "", weight) if not suffix else weight
            suffix = ""
        if not base and self.node is not None and self.node.name:
            # a module's only operator is named by the module (layer1.0.conv1), others by module and operator
            # (mha.softmax); an unscoped name as it is
            scope, last = _scope(self.node.name)
            if scope and (module or self.scope_count.get(scope) == 1):
                base = scope
            else:
                base = f"{scope}.{last.lower()}" if scope else (last if not self.node.name.startswith("/")
                                                               else last.lower())
        if not base:
            base = fallback or (f"{self.node.op_type.lower()}_{self.index}" if self.node is not None else "layer")
        base = _clean(base + suffix)
        name, k = base, 2
        while name in self.names or name == "input":
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def emit(self, spec: dict, inputs: list[str], weight: Optional[str] = None, name: Optional[str] = None) -> str:
        name = name or self.name_for(weight)
        self.layers.append(Layer({"name": name, **spec, "inputs": list(inputs)}, self.index))
        return name

    def unary(self, spec: dict, x: Act, k: int = 0) -> None:
        """A layer that keeps the shape: its output is the same view of the new tensor."""
        name = self.emit(spec, [x.tensor])
        self.acts[self.node.output[k]] = Act(name, x.shape, x.b, x.outer, x.inner)

    def unary_shape(self, spec: dict, x: Act, shape: tuple[int, ...]) -> None:
        """A layer that changes sizes but not where the batch is."""
        name = self.emit(spec, [x.tensor])
        self.acts[self.node.output[0]] = Act(name, shape, x.b, x.outer, x.inner)

    def alias(self, x: Act, k: int = 0) -> None:
        self.acts[self.node.output[k]] = x

    def opset(self) -> int:
        return next((int(o.version) for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 13)

    def reshaped(self, x: Act, shape: tuple[int, ...], out: str, flatten: bool = False) -> None:
        """The ONNX tensor ``x`` reshaped to ``shape``: a per-example reshape when the batch keeps its place among
        the elements, else an error."""
        pre = math.prod(x.shape[:x.b]) * x.outer
        post = x.inner * math.prod(x.shape[x.b + 1:])
        where = _batch_position(shape, pre, post, self.batch)
        if where is None or math.prod(shape) != math.prod(x.shape):
            raise Unsupported(f"reshape {list(x.shape)} → {list(shape)} mixes the batch (dim {x.b}) with other "
                              f"elements: layercalc computes each example separately")
        y = Act("", shape, *where)
        before, after = x.t_shape(self.batch), y.t_shape(self.batch)
        if before == after:
            self.acts[out] = Act(x.tensor, shape, *where)
            return
        if flatten and len(after) == 2:
            name = self.emit({"type": "flatten"}, [x.tensor])
        else:
            name = self.emit({"type": "reshape", "shape": list(after[1:])}, [x.tensor])
        self.acts[out] = Act(name, shape, *where)

    def _same_over(self, name: str, axis: int) -> bool:
        """The initializer ``name`` (as read, with no transform) holds the same values at every index of ``axis``."""
        import numpy as np

        init = self._init_of(name)
        if init != name or axis < 0:
            return False
        value = self.constant_value(name, "operand") if self._is_constant(name) else None
        if value is None or axis >= value.ndim:
            return False
        return bool(np.all(value == np.take(value, [0], axis=axis)))

    def param_tensor(self, init: str, x: Act, what: str, dims: Optional[tuple[int, ...]] = None,
                     suffix: str = ".param") -> str:
        """A ``parameter`` layer holding initializer ``init`` (read as ``dims``, by default its own), placed to
        broadcast against ``x``'s layercalc tensor; one per initializer and placement, reused by every node reading
        it. An initializer another layer counts already is counted again here (a rare reuse; docs/importers.md)."""
        # the values: the initializer (as its alias reads it, or its elements as ``dims``) in the layer's shape
        origin = self.source(init) if dims is None else Source(self._init_of(init) or init, (("reshape", dims),))
        dims = self._param_dims(init) if dims is None else dims
        if len(dims) > len(x.shape):
            raise Unsupported(f"{what} {safe_text(init)!r} {list(dims)} has more dims than the tensor "
                              f"{list(x.shape)} it is combined with")
        aligned = (1,) * (len(x.shape) - len(dims)) + dims
        axis = x.b - (len(x.shape) - len(dims))
        if aligned[x.b] != 1 and aligned[x.b] == self.batch and x.outer == x.inner == 1 and \
                self.kinds.get(self._init_of(init) or init) is None and self._same_over(init, axis):
            # the dynamo exporter's folded copy of one example's tensor per example (a class token expanded):
            # one example's counted and used
            origin = Source(origin.init, (*origin.ops, ("first", (axis,))))
            dims = tuple(1 if k == axis else d for k, d in enumerate(dims))
            aligned = (1,) * (len(x.shape) - len(dims)) + dims
        if aligned[x.b] != 1:
            raise Unsupported(f"{what} {safe_text(init)!r} {list(dims)} varies along the batch dim {x.b} of "
                              f"{list(x.shape)}: layercalc computes each example separately")
        shape = tuple(1 if isinstance(lab, str) else aligned[lab] for lab in x.labels()[1:])
        source = self._init_of(init) or init
        key = (source, shape)
        if key in self.param_layers:
            return self.param_layers[key]
        name = self.name_for(source if "::" not in source else None, suffix=suffix)
        self.layers.append(Layer({"name": name, "type": "parameter", "shape": list(shape), "inputs": []},
                                 self.index))
        self.owner.setdefault(source, name)
        self.param_layers[key] = name
        # aligned[x.b] is 1: taking the batch axis out and the batch's factors in keeps the element order
        self.sources[name] = {"weight": Source(origin.init, (*origin.ops, ("reshape", shape)))}
        return name

    def weighted(self, spec: dict, x: Act, roles: dict[str, Optional[str]], bias_role: Optional[str] = "bias",
                 bias_field: str = "bias", transpose: tuple[str, ...] = ()) -> str:
        """Emit a layer with parameters (``roles``: its parameter's name → initializer, None when absent; those in
        ``transpose`` read transposed), counting each initializer once: a layer using exactly the initializers of
        an earlier one is ``tied_to`` it; a bias shared with nodes that do not share the weight is added from one
        ``parameter`` layer instead. Returns the name of the tensor holding the result."""
        found = {r: self.source(v, r in transpose) for r, v in roles.items() if v}
        roles = {r: self._init_of(v) if v else None for r, v in roles.items()}
        weight = roles.get("weight")
        bias = roles.get(bias_role) if bias_role else None
        detach = bias is not None and weight is not None and self.users.get(bias) != self.users.get(weight)
        if detach:
            roles[bias_role] = None      # type: ignore[index]
            spec[bias_field] = False
        present = {r: v for r, v in roles.items() if v}
        named = [v for v in (weight, bias) if v and "::" not in v]      # "fc.bias" names the layer when the
        name = self.name_for(named[0] if named else None)                  # weight is the exporter's copy
        owners = {self.owner.get(v) for v in present.values()}
        if present and None not in owners and len(owners) == 1:
            target = owners.pop()
            assert target is not None
            if self.role_maps.get(target) == present:
                spec["tied_to"] = target
        out = self.emit(spec, [x.tensor], name=name)
        for v in present.values():
            self.owner.setdefault(v, out)
        self.role_maps.setdefault(out, present)
        if "tied_to" not in spec:                      # a tied layer's values are its owner's
            self.sources[out] = {r: found[r] for r in present}
        if detach:
            assert bias is not None
            y_shape = self.out_shape()
            dims = self.params[bias]
            if spec["type"].startswith("conv"):            # [C] on [N, C, *spatial]: as [C, 1, …]
                y, dims = Act(out, y_shape), (math.prod(dims),) + (1,) * (len(y_shape) - 2)
            else:                                          # [out] on the last dim
                y = Act(out, y_shape, x.b, x.outer, x.inner)
            p = self.param_tensor(bias, y, "bias", dims, suffix=".bias")
            out = self.emit({"type": "add"}, [out, p], name=self.name_for(weight, suffix=".bias_add"))
        return out

    # ------------------------------------------------------------------------------------------------ ending

    def _finish_output(self, g: Any) -> None:
        """The last layer must be the graph's (first) output: an identity is added when the output is a view of
        an earlier layer's tensor or another branch."""
        out = g.output[0].name if g.output else None
        a = self.acts.get(out) if out else None
        if a is None:
            return
        if a.tensor != self.layers[-1].spec["name"]:
            self.node, self.index = None, len(self.nodes)
            self.emit({"type": "identity"}, [a.tensor], name=self.name_for(fallback="output"))

    def _layer_list(self) -> list[dict]:
        result = []
        previous = "input"
        for layer in self.layers:
            spec = dict(layer.spec)
            name = spec["name"]
            inputs = spec.pop("inputs")
            if spec["type"] != "parameter" and inputs != [previous]:
                spec["inputs"] = inputs if len(inputs) != 1 else inputs[0]
            result.append(spec)
            previous = name
        return result


def _scope(node_name: str) -> tuple[str, str]:
    """torch's scoped node name → (the module's qualified name, the operator's part):
    ``/layer2/layer2.0/downsample/downsample.0/Conv`` → ``("layer2.0.downsample.0", "Conv")`` (an
    ``nn.Sequential``'s children are scoped ``downsample.0`` under ``downsample``); an unscoped name →
    ``("", name)``.

    >>> _scope('/layer2/layer2.0/downsample/downsample.0/Conv'), _scope('/Flatten'), _scope('Conv_3')
    (('layer2.0.downsample.0', 'Conv'), ('', 'Flatten'), ('', 'Conv_3'))
    """
    parts = [p for p in node_name.split("/") if p]
    if not node_name.startswith("/") or not parts:
        return "", node_name
    qualified, previous = "", ""
    for part in parts[:-1]:
        if previous and part.startswith(previous + "."):
            qualified += part[len(previous):]
        else:
            qualified = f"{qualified}.{part}" if qualified else part
        previous = part
    return qualified, parts[-1]


def _clean(name: str) -> str:
    """A valid layercalc layer name: printable, at most 200 characters, not ending in ``:digits``."""
    name = "".join(ch if ch.isprintable() else "_" for ch in name)[:200] or "layer"
    if split_output(name)[1] is not None:
        name = name[:name.rindex(":")] + "_" + name[name.rindex(":") + 1:]
    return name


# ------------------------------------------------------------------------------------------------ converters

def _pads(attrs: dict, rank: int) -> list[list[int]]:
    pads = list(attrs.get("pads", [0] * (2 * rank)))
    return [[int(pads[d]), int(pads[d + rank])] for d in range(rank)]


def _auto_pads(attrs: dict, spatial: tuple[int, ...], kernel: list[int], strides: list[int],
               dilations: list[int]) -> list[list[int]]:
    """ONNX's padding: explicit ``pads``, or ``auto_pad`` SAME_UPPER/SAME_LOWER (odd pixel after/before)."""
    mode = attrs.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    rank = len(kernel)
    if mode in ("NOTSET", ""):
        return _pads(attrs, rank)
    if mode == "VALID":
        return [[0, 0] for _ in range(rank)]
    pairs = []
    for length, k, s, d in zip(spatial, kernel, strides, dilations):
        out = -(-length // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - length, 0)
        small, large = total // 2, total - total // 2
        pairs.append([small, large] if mode == "SAME_UPPER" else [large, small])
    return pairs


def _padding_field(pairs: list[list[int]]) -> Any:
    if all(b == a for b, a in pairs):
        values = [b for b, _ in pairs]
        return values[0] if len(set(values)) == 1 else values
    return pairs


def _window(attrs: dict, x: Act, kernel: list[int]) -> tuple[list[int], list[int], list[list[int]]]:
    rank = len(kernel)
    strides = list(attrs.get("strides", [1] * rank))
    dilations = list(attrs.get("dilations", [1] * rank))
    return strides, dilations, _auto_pads(attrs, x.shape[2:], kernel, strides, dilations)


def _conv_operands(imp: Importer, node: Any) -> tuple[Act, list[int], int, dict, list[int], bool]:
    """What Conv and ConvTranspose read alike: the input, the weight's dims (an initializer), the spatial rank, the
    attributes, the kernel size and whether a bias is given."""
    x = imp.act(node.input[0])
    imp.need_plain(x)
    if not imp._init_of(node.input[1]):
        raise Unsupported("the weight must be an initializer (a weight computed in the graph is not supported)")
    w = imp._param_dims(node.input[1])
    rank = len(w) - 2
    if rank not in (1, 2, 3):
        raise Unsupported(f"a {rank}-d convolution is not supported (1-d to 3-d)")
    a = imp.attrs(node)
    return x, list(w), rank, a, list(a.get("kernel_shape", w[2:])), len(node.input) > 2 and bool(node.input[2])


def _conv_groups(x: Act, w: list[int], rank: int, a: dict, kernel: list[int], outputs: int) -> int:
    """The ``group`` attribute, checked against the input's channels, the outputs and the kernel's rank."""
    groups = int(a.get("group", 1))
    if len(x.shape) != rank + 2 or len(kernel) != rank:
        raise Unsupported(f"input {list(x.shape)}, weight {w} and kernel_shape {kernel} must have the same number "
                          f"of spatial dims")
    if groups < 1 or x.shape[1] % groups or outputs % groups:
        raise Unsupported(f"group {groups} must divide the input's {x.shape[1]} channels and the {outputs} "
                          f"output channels")
    return groups


def _conv(imp: Importer, node: Any) -> None:
    x, w, rank, a, kernel, has_bias = _conv_operands(imp, node)
    strides, dilations, pads = _window(a, x, kernel)
    groups = _conv_groups(x, w, rank, a, kernel, w[0])
    imp.expect("weight", node.input[1], (w[0], x.shape[1] // groups, *kernel),
               f"{w[0]} outputs, the input's {x.shape[1]} channels in {groups} group(s), kernel {kernel}")
    if has_bias:
        imp.expect("bias", node.input[2], (w[0],), "one per output channel")
    spec: dict[str, Any] = {"type": f"conv{rank}d", "out_channels": w[0],
                            "kernel_size": _same(kernel), "stride": _same(strides), "padding": _padding_field(pads),
                            "dilation": _same(dilations), "groups": groups, "bias": has_bias}
    _drop_defaults(spec, stride=1, dilation=1, groups=1, padding=0)
    out = imp.weighted(spec, x, {"weight": node.input[1], "bias": node.input[2] if has_bias else None})
    imp.acts[node.output[0]] = Act(out, imp.out_shape())


def _conv_transpose(imp: Importer, node: Any) -> None:
    x, w, rank, a, kernel, has_bias = _conv_operands(imp, node)
    groups = _conv_groups(x, w, rank, a, kernel, w[1] * max(int(a.get("group", 1)), 1))
    imp.expect("weight", node.input[1], (x.shape[1], w[1], *kernel),
               f"the input's {x.shape[1]} channels, {w[1]} outputs per group, kernel {kernel}")
    if has_bias:
        imp.expect("bias", node.input[2], (w[1] * groups,), "one per output channel")
    strides = list(a.get("strides", [1] * rank))
    dilations = list(a.get("dilations", [1] * rank))
    out_pad = list(a.get("output_padding", [0] * rank))
    out_shape = imp.out_shape()
    mode = a.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if "output_shape" in a or mode not in ("NOTSET", ""):
        # the padding that gives the output size ONNX computed (odd pixel as auto_pad / output_shape say)
        pads = []
        for length, k, s, d, op, o in zip(x.shape[2:], kernel, strides, dilations, out_pad, out_shape[2:]):
            total = s * (length - 1) + op + d * (k - 1) + 1 - o
            if total < 0:
                raise Unsupported(f"output size {o} needs negative padding")
            small, large = total // 2, total - total // 2
            pads.append([large, small] if mode == "SAME_LOWER" else [small, large])
    else:
        pads = _pads(a, rank)
    spec: dict[str, Any] = {"type": f"conv_transpose{rank}d", "out_channels": w[1] * groups,
                            "kernel_size": _same(kernel), "stride": _same(strides), "padding": _padding_field(pads),
                            "output_padding": _same(out_pad),
                            "dilation": _same(dilations), "groups": groups, "bias": has_bias}
    _drop_defaults(spec, stride=1, dilation=1, groups=1, padding=0, output_padding=0)
    out = imp.weighted(spec, x, {"weight": node.input[1], "bias": node.input[2] if has_bias else None})
    imp.acts[node.output[0]] = Act(out, out_shape)


def _same(values: list[int]) -> Any:
    return values[0] if len(set(values)) == 1 else list(values)


def _drop_defaults(spec: dict, **defaults: Any) -> None:
    for key, value in defaults.items():
        if spec.get(key) == value:
            del spec[key]


def _linear(imp: Importer, x: Act, weight: str, bias: Optional[str], transposed: bool) -> None:
    dims = imp._param_dims(weight)
    if len(dims) != 2:
        raise Unsupported(f"the weight {safe_text(weight)!r} {list(dims)} must be 2-d")
    if x.t_axis(len(x.shape) - 1) is None:
        raise Unsupported(f"the product runs over dim {len(x.shape) - 1} of {list(x.shape)}, which holds the batch")
    fin, fout = (dims[1], dims[0]) if transposed else dims
    if x.shape[-1] != fin:
        imp.expect("weight", weight, (fout, x.shape[-1]) if transposed else (x.shape[-1], fout),
                   f"the input {list(x.shape)} has {x.shape[-1]} features")
    spec = {"type": "linear", "in_features": fin, "out_features": fout, "bias": bias is not None}
    # layercalc's linear weight is [out, in]: x·W's W ([in, out]) is read transposed
    out = imp.weighted(spec, x, {"weight": weight, "bias": bias}, transpose=() if transposed else ("weight",))
    imp.acts[imp.node.output[0]] = Act(out, (*x.shape[:-1], fout), x.b, x.outer, x.inner)


def _gemm(imp: Importer, node: Any) -> None:
    a = imp.attrs(node)
    x = imp.act(node.input[0])
    if a.get("transA", 0):
        raise Unsupported("transA=1 (the activation transposed) is not supported")
    if not imp._init_of(node.input[1]):
        raise Unsupported("B must be an initializer (a product of two computed tensors is a MatMul)")
    if float(a.get("alpha", 1.0)) != 1.0 or (len(node.input) > 2 and float(a.get("beta", 1.0)) != 1.0):
        raise Unsupported(f"alpha {a.get('alpha', 1.0)} and beta {a.get('beta', 1.0)} must be 1 (a linear layer)")
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if len(imp._param_dims(node.input[1])) != 2:
        raise Unsupported(f"B {shown(node.input[1])} {list(imp._param_dims(node.input[1]))} must be 2-d")
    if bias is not None:
        if not imp._init_of(bias):
            raise Unsupported("C must be an initializer (the bias)")
        out = imp._param_dims(node.input[1])[0 if a.get("transB", 0) else 1]
        imp.expect("C, the bias", bias, (out,), "one per output", leading_ones=True)
    _linear(imp, x, node.input[1], bias, bool(a.get("transB", 0)))


def _matmul(imp: Importer, node: Any) -> None:
    left, right = node.input[0], node.input[1]
    if imp._init_of(left):
        raise Unsupported("the initializer is the left operand (W·x); only x·W (a linear layer) is supported")
    if imp._init_of(right):
        bias = None
        adds = [k for k, m in imp.fused.items() if m == imp.index]
        if adds:
            add = imp.nodes[adds[0]]
            bias = add.input[1] if add.input[0] == node.output[0] else add.input[0]
        x = imp.act(left)
        _linear(imp, x, right, bias, transposed=False)
        if adds:
            imp.acts[imp.nodes[adds[0]].output[0]] = imp.acts[node.output[0]]
        return
    a, b = imp.act(left), imp.act(right)
    if not imp.same_view(a, b):
        raise Unsupported(f"operands {list(a.shape)} and {list(b.shape)} must hold the batch the same way "
                          f"(dim {a.b} and dim {b.b})")
    if a.b >= len(a.shape) - 2:
        raise Unsupported(f"the batch (dim {a.b}) is one of the multiplied dims of {list(a.shape)}")
    name = imp.emit({"type": "matmul"}, [a.tensor, b.tensor])
    imp.acts[node.output[0]] = Act(name, imp.out_shape(), a.b, a.outer, a.inner)


def _pool(kind: str) -> Callable[[Importer, Any], None]:
    def convert(imp: Importer, node: Any) -> None:
        x = imp.act(node.input[0])
        imp.need_plain(x)
        a = imp.attrs(node)
        kernel = list(a["kernel_shape"])
        rank = len(kernel)
        strides, dilations, pads = _window(a, x, kernel)
        spec: dict[str, Any] = {"type": f"{kind}pool{rank}d", "kernel_size": _same(kernel),
                                "stride": _same(strides), "padding": _padding_field(pads)}
        if a.get("ceil_mode", 0):
            spec["ceil_mode"] = True
        if kind == "max":
            if len(node.output) > 1 and node.output[1]:
                raise Unsupported("the Indices output is not supported")
            spec["dilation"] = _same(dilations)
        else:
            if any(d != 1 for d in dilations):
                raise Unsupported("a dilated average pooling is not supported")
            if any(b or e for b, e in pads):
                spec["count_include_pad"] = bool(a.get("count_include_pad", 0))
        _drop_defaults(spec, padding=0, dilation=1)
        imp.unary_shape(spec, x, imp.out_shape())
    return convert


def _global_pool(kind: str) -> Callable[[Importer, Any], None]:
    def convert(imp: Importer, node: Any) -> None:
        x = imp.act(node.input[0])
        imp.need_plain(x)
        imp.unary_shape({"type": f"global_{kind}pool", "keepdims": True}, x, imp.out_shape())
    return convert


def _batchnorm(imp: Importer, node: Any) -> None:
    x = imp.act(node.input[0])
    imp.need_plain(x)
    a = imp.attrs(node)
    if a.get("training_mode", 0):
        raise Unsupported("training_mode=1 (batch statistics) is not supported; export in eval mode")
    rank = len(x.shape)
    if rank not in (2, 3, 4, 5):
        raise Unsupported(f"a {rank}-d input is not supported")
    roles = {"scale": node.input[1], "bias": node.input[2], "mean": node.input[3], "var": node.input[4]}
    for role, name in roles.items():
        imp.expect(role, name, (x.shape[1],), f"one per channel of the input {list(x.shape)}")
    spec: dict[str, Any] = {"type": f"batchnorm{max(rank - 2, 1)}d", "num_features": x.shape[1],
                            "eps": float(a.get("epsilon", 1e-5))}
    inits = {r: imp._init_of(v) or v for r, v in roles.items()}           # (each is one: checked above)
    # torch's exporter stores equal tensors once: an untrained BatchNorm's scale and running variance (ones), its
    # bias and running mean (zeros) are one initializer each, shared by every BatchNorm of that width. Each is
    # counted once, and the layer still computes what the node computes:
    # - a BatchNorm reading exactly the initializers of an earlier one is tied_to it (its values are that one's);
    # - a scale and bias counted already (by another layer, or as this one's own mean and variance) make it
    #   ``affine: false``: exact for ones and zeros, which weights_from_onnx checks;
    # - the running statistics are always kept (without them layercalc's batchnorm uses the batch's own
    #   statistics, as PyTorch does): counted again in the rare file where another layer counts them too.
    by_param = {"weight": inits["scale"], "bias": inits["bias"], "running_mean": inits["mean"],
                "running_var": inits["var"]}
    twin = next((n for n, m in imp.role_maps.items() if m == by_param), None)
    name = imp.name_for(roles["scale"])           # the node's own name for it (layer1.0.bn1.weight, an alias)
    if twin is not None:
        twin_spec = next(layer.spec for layer in imp.layers if layer.spec["name"] == twin)
        if twin_spec.get("affine") is False:
            spec["affine"] = False
        spec["tied_to"] = twin
        out = imp.emit(spec, [x.tensor], name=name)
        imp.acts[node.output[0]] = Act(out, x.shape)
        return
    affine_counted = {inits["scale"], inits["bias"]} <= set(imp.owner) | {inits["mean"], inits["var"]}
    if affine_counted:
        spec["affine"] = False
    present = {p: v for p, v in by_param.items() if v and not (p in ("weight", "bias") and affine_counted)}
    out = imp.emit(spec, [x.tensor], name=name)
    for v in present.values():
        imp.owner.setdefault(v, out)
    imp.role_maps.setdefault(out, by_param)
    imp.sources[out] = {p: imp.source(roles[r]) for p, r in (("weight", "scale"), ("bias", "bias"),
                                                              ("running_mean", "mean"), ("running_var", "var"))
                        if p in present}
    if affine_counted:
        imp.fixed[out] = [("scale", inits["scale"], 1.0), ("B", inits["bias"], 0.0)]
    imp.acts[node.output[0]] = Act(out, x.shape)


def _layernorm(imp: Importer, node: Any) -> None:
    x = imp.act(node.input[0])
    a = imp.attrs(node)
    rank = len(x.shape)
    axis = _axis(a.get("axis", -1), rank)
    if x.b >= axis:
        raise Unsupported(f"normalizing dims {axis}..{rank - 1} of {list(x.shape)} would include the batch (dim "
                          f"{x.b})")
    labels = x.labels()
    if labels[-(rank - axis):] != list(range(axis, rank)):
        raise Unsupported(f"the normalized dims {axis}..{rank - 1} are not the trailing dims of the layercalc tensor")
    scale = imp._init_of(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    bias = imp._init_of(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    spec: dict[str, Any] = {"type": "layernorm", "normalized_shape": list(x.shape[axis:]),
                            "eps": float(a.get("epsilon", 1e-5))}
    if scale is None:
        spec["elementwise_affine"] = False
        if bias is not None:
            raise Unsupported("a bias without a learnable scale is not supported")
    elif bias is None:
        spec["bias"] = False
    for role, k in (("scale", 1), ("bias", 2)):
        if len(node.input) > k and node.input[k]:
            imp.expect(role, node.input[k], x.shape[axis:], f"the normalized dims of {list(x.shape)}",
                       leading_ones=True)
    out = imp.weighted(spec, x, {"weight": scale, "bias": bias}, bias_role=None)
    imp.acts[node.output[0]] = Act(out, x.shape, x.b, x.outer, x.inner)


def _instancenorm(imp: Importer, node: Any) -> None:
    x = imp.act(node.input[0])
    imp.need_plain(x)
    if len(x.shape) < 3:
        raise Unsupported(f"needs [N, C, ...], got {list(x.shape)}")
    c = x.shape[1]
    scale, bias = imp._init_of(node.input[1]), imp._init_of(node.input[2])
    if (scale is None) != (bias is None):
        raise Unsupported("scale and B must both be initializers (learnable) or both constants")
    spec: dict[str, Any] = {"type": "groupnorm", "num_groups": c, "num_channels": c,
                            "eps": float(imp.attrs(node).get("epsilon", 1e-5))}
    if scale is None:
        spec["affine"] = False
    else:
        for role, k in (("scale", 1), ("B", 2)):
            imp.expect(role, node.input[k], (c,), f"one per channel of the input {list(x.shape)}")
    out = imp.weighted(spec, x, {"weight": scale, "bias": bias}, bias_role=None)
    imp.acts[node.output[0]] = Act(out, x.shape)


def _groupnorm(imp: Importer, node: Any) -> None:
    x = imp.act(node.input[0])
    imp.need_plain(x)
    a = imp.attrs(node)
    scale, bias = imp._init_of(node.input[1]), imp._init_of(node.input[2])
    if scale is None or bias is None:
        raise Unsupported("scale and bias must be initializers")
    if imp._param_dims(scale) != (x.shape[1],):
        raise Unsupported(f"scale {list(imp._param_dims(scale))} must have one value per channel "
                          f"({x.shape[1]}; opset 18's per-group scale is not supported)")
    imp.expect("bias", node.input[2], (x.shape[1],), f"one per channel of the input {list(x.shape)}")
    spec = {"type": "groupnorm", "num_groups": int(a["num_groups"]), "num_channels": x.shape[1],
            "eps": float(a.get("epsilon", 1e-5))}
    out = imp.weighted(spec, x, {"weight": scale, "bias": bias}, bias_role=None)
    imp.acts[node.output[0]] = Act(out, x.shape)


def _activation(kind: str, **fixed: Any) -> Callable[[Importer, Any], None]:
    def convert(imp: Importer, node: Any) -> None:
        imp.unary({"type": kind, **fixed}, imp.act(node.input[0]))
    return convert


def _leaky_relu(imp: Importer, node: Any) -> None:
    imp.unary({"type": "leaky_relu", "negative_slope": float(imp.attrs(node).get("alpha", 0.01))},
              imp.act(node.input[0]))


def _gelu(imp: Importer, node: Any) -> None:
    approximate = imp.attrs(node).get("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    spec = {"type": "gelu"} if approximate == "none" else {"type": "gelu", "approximate": approximate}
    imp.unary(spec, imp.act(node.input[0]))


def _hardsigmoid(imp: Importer, node: Any) -> None:
    a = imp.attrs(node)
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    if abs(alpha - 1 / 6) > 1e-6 or abs(beta - 0.5) > 1e-6:
        raise Unsupported(f"alpha {alpha:g}, beta {beta:g}: only PyTorch's hardsigmoid (alpha 1/6, beta 0.5) maps "
                          f"to a layercalc type")
    imp.unary({"type": "hardsigmoid"}, imp.act(node.input[0]))


def _clip(imp: Importer, node: Any) -> None:
    a = imp.attrs(node)
    low = a.get("min") if len(node.input) < 2 or not node.input[1] else float(imp.const(node.input[1], "min"))
    high = a.get("max") if len(node.input) < 3 or not node.input[2] else float(imp.const(node.input[2], "max"))
    x = imp.act(node.input[0])
    if low == 0 and high == 6:
        imp.unary({"type": "relu6"}, x)
    elif low == 0 and (high is None or math.isinf(high)):
        imp.unary({"type": "relu"}, x)
    else:
        raise Unsupported(f"Clip to [{low}, {high}]: only [0, 6] (relu6) and [0, ∞) (relu) map to layercalc types")


def _softmax(imp: Importer, node: Any) -> None:
    x = imp.act(node.input[0])
    opset = imp.opset()
    rank = len(x.shape)
    axis = _axis(imp.attrs(node).get("axis", -1 if opset >= 13 else 1), rank)
    if opset < 13 and axis != rank - 1:
        raise Unsupported(f"opset {opset} Softmax flattens dims {axis}.. into one; only the last axis is supported")
    dim = x.t_axis(axis)
    if dim is None:
        raise Unsupported(f"softmax over dim {axis}, which holds the batch")
    imp.unary({"type": "softmax", "dim": -1 if dim == len(x.labels()) - 1 else dim}, x)


def _passthrough(imp: Importer, node: Any) -> None:
    if node.input[0] in imp.lazy:                  # (a Cast of a table's rows)
        imp.lazy[node.output[0]] = imp.lazy[node.input[0]]
        return
    imp.alias(imp.act(node.input[0]))


# ---- element-wise arithmetic

#: the two-operand layer of each operator; the operands keep their order (sub and div are first − second,
#: first / second)
_MERGE = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}


def _arith(imp: Importer, node: Any) -> None:
    op = node.op_type
    left, right = node.input[0], node.input[1]
    acts = [n for n in (left, right) if n in imp.acts]
    if len(acts) == 1:
        x_name = acts[0]
        other = right if x_name == left else left
        x = imp.acts[x_name]
        if other in imp.lazy:                      # a table read at constant positions: made to broadcast on x
            p = imp.lazy[other](x)
            name = imp.emit({"type": _MERGE[op]}, [x.tensor, p] if x_name == left else [p, x.tensor])
            imp.acts[node.output[0]] = Act(name, x.shape, x.b, x.outer, x.inner)
            return
        if imp.scalar_initializer(other):
            imp.values[other] = imp.read_initializer(other)
        elif op == "Add" and imp._is_constant(other) and not (other in imp.values and imp.values[other].size == 1):
            # (read whole: the dynamo exporter's folded mask, or a table it folded, is as large as the file says)
            mask = _mask_spec(imp, imp.constant_value(other, "the operand", bounded=False), x, additive=True)
            if mask is not None:
                imp.unary(mask, x)
                return
            if other in imp.values:
                raise Unsupported(f"the constant operand {safe_text(other)!r} {list(imp.values[other].shape)} is "
                                  f"neither a scalar nor an attention mask (zeros, and ≤ −1e30 where masked, "
                                  f"causal or nowhere)")
    if len(acts) == 2:
        a, b = imp.acts[left], imp.acts[right]
        if not imp.same_view(a, b):
            raise Unsupported(f"operands {list(a.shape)} and {list(b.shape)} must hold the batch the same way")
        name = imp.emit({"type": _MERGE[op]}, [a.tensor, b.tensor])
        imp.acts[node.output[0]] = Act(name, imp.out_shape(), a.b, a.outer, a.inner)
        return
    if not acts:
        raise Unsupported("neither operand is computed from the network input")
    x_name = acts[0]
    other = right if x_name == left else left
    x = imp.acts[x_name]
    if imp._init_of(other) and other not in imp.values:
        dims = imp._param_dims(other)
        if len(dims) > len(x.shape) or any(d not in (1, n) for d, n in zip(reversed(dims), reversed(x.shape))):
            raise Unsupported(f"initializer {shown(imp._init_of(other))} (operand) has shape {list(dims)}, which "
                              f"does not broadcast to the input's {list(x.shape)}")
        if len(imp.out_shape()) != len(x.shape) or imp.out_shape() != x.shape:
            raise Unsupported(f"the initializer {safe_text(other)!r} broadcasts {list(x.shape)} to "
                              f"{list(imp.out_shape())}")
        p = imp.param_tensor(other, x, "operand")
        name = imp.emit({"type": _MERGE[op]}, [x.tensor, p] if x_name == left else [p, x.tensor])
        imp.acts[node.output[0]] = Act(name, x.shape, x.b, x.outer, x.inner)
        return
    value = imp.const(other, "the other operand")
    if value.size != 1:
        raise Unsupported(f"a constant operand of shape {list(value.shape)} (a Constant node, not an initializer) "
                          f"is not supported; only a scalar constant (rescaling) or an initializer (parameter)")
    c = float(value.reshape(-1)[0])
    first = x_name == left
    if op == "Mul":
        spec: dict[str, Any] = {"scale": c}
    elif op == "Add":
        spec = {"offset": c}
    elif op == "Sub":
        spec = {"offset": -c} if first else {"scale": -1.0, "offset": c}
    elif first:
        if c == 0:
            raise Unsupported("division by the constant 0")
        spec = {"scale": 1.0 / c}
    else:                                          # c / x: a reciprocal (pow −1), then the scale
        if c == 1:
            imp.unary({"type": "pow", "exponent": -1.0}, x)
            return
        name = imp.emit({"type": "pow", "exponent": -1.0}, [x.tensor])
        x = Act(name, x.shape, x.b, x.outer, x.inner)
        spec = {"scale": c}
    if spec.get("scale", 1.0) == 1.0 and spec.get("offset", 0.0) == 0.0:
        imp.alias(x)                               # x·1, x + 0 (an exporter's leftover): nothing computed
        return
    imp.unary({"type": "rescaling", **spec}, x)


def _mask_spec(imp: Importer, value: Any, x: Act, additive: bool, fill: Optional[float] = None
               ) -> Optional[dict]:
    """The ``attention_mask`` layer a constant mask on ``x`` (scores [..., L_q, L_k]) is, or None: ``value`` is
    the additive mask (0 kept, ≤ −1e30 or −∞ masked) or, not ``additive``, the boolean of masked positions
    (``fill`` their value). It must be the same for every example and head (its leading dims broadcast) and mask
    the keys after each query (causal) or nothing."""
    import numpy as np

    from ..layers.mask import causal_masked  # deferred: the mask family, only for a graph with a mask

    if len(x.shape) < 2 or x.t_axis(len(x.shape) - 1) is None or x.t_axis(len(x.shape) - 2) is None:
        return None
    value = np.asarray(value)
    if value.ndim > len(x.shape) or value.ndim < 2:
        return None
    queries, keys = x.shape[-2], x.shape[-1]
    if value.shape[-2:] not in ((queries, keys), (1, keys)) or \
            any(d not in (1, n) for d, n in zip(reversed(value.shape), reversed(x.shape))):
        return None
    flat = value.reshape(-1, *value.shape[-2:])
    if not np.all(flat == flat[:1]):
        return None                                # differs between examples or heads: a padding mask
    plane = np.broadcast_to(flat[0], (queries, keys))
    if additive:
        if plane.dtype.kind != "f":
            return None
        masked = plane <= -1e30
        if not np.all(masked | (plane == 0)):
            return None
        low = plane[masked]
        if low.size and not np.all(low == low.flat[0]):
            return None
        fill = float(low.flat[0]) if low.size else None
    else:
        masked = plane.astype(bool)
    spec: dict[str, Any] = {"type": "attention_mask", "mode": "add" if additive else "fill"}
    if not masked.any():
        spec["causal"] = False
    elif not np.array_equal(masked, causal_masked(queries, keys)):
        return None
    if fill is not None and math.isfinite(fill):
        spec["fill"] = fill
    elif fill is not None and fill > 0:
        return None
    return spec


def _where(imp: Importer, node: Any) -> None:
    """``Where(mask, fill, x)`` / ``Where(keep, x, fill)`` with a constant condition and a constant scalar
    (``masked_fill`` of a causal mask): an ``attention_mask`` layer."""
    cond, a, b = node.input
    if cond in imp.acts:
        raise Unsupported("the condition depends on the data (a select computed from the input)")
    flags = imp.const(cond, "the condition")
    if a in imp.acts and b not in imp.acts:
        x, other, masked = imp.acts[a], b, ~flags.astype(bool)
    elif b in imp.acts and a not in imp.acts:
        x, other, masked = imp.acts[b], a, flags.astype(bool)
    else:
        raise Unsupported("only a select between a computed tensor and a constant (a mask) is supported")
    value = imp.const(other, "the other value") if not imp.scalar_initializer(other) else \
        imp.constant_value(other, "the other value")
    if value.size != 1:
        raise Unsupported(f"the value at masked positions has shape {list(value.shape)}; only a scalar is "
                          f"supported")
    fill = float(value.reshape(-1)[0])
    if imp.out_shape() != x.shape:
        raise Unsupported(f"the mask broadcasts {list(x.shape)} to {list(imp.out_shape())}")
    spec = _mask_spec(imp, masked, x, additive=False, fill=fill if fill != float("-inf") else None)
    if spec is None:
        raise Unsupported(f"the constant condition {list(flags.shape)} is not an attention mask (the keys after "
                          f"each query, the same for every example and head, or nowhere)")
    imp.unary(spec, x)


def _pow(imp: Importer, node: Any) -> None:
    x = imp.act(node.input[0])
    name = node.input[1]
    value = imp.constant_value(name, "the exponent") if imp.scalar_initializer(name) else \
        imp.const(name, "the exponent")
    if value.size != 1:
        raise Unsupported(f"the exponent has shape {list(value.shape)}; only a constant scalar is supported")
    imp.unary({"type": "pow", "exponent": float(value.reshape(-1)[0])}, x)


def _elementwise(kind: str, **fields: Any) -> Callable[[Importer, Any], None]:
    """Sqrt, Reciprocal (powers ½ and −1) and Neg (a rescaling by −1): one layer of ``kind``."""
    def convert(imp: Importer, node: Any) -> None:
        imp.unary({"type": kind, **fields}, imp.act(node.input[0]))
    return convert


def _rotary(imp: Importer, node: Any) -> None:
    """RoPE written out (:meth:`Importer._find_rotary`): its tables must be cos and sin of position·θ^(−2i/d) for
    one base θ (found from the tables), the slices the two halves of the last dim."""
    import numpy as np

    from ..layers.sequence import rotate  # deferred: the sequence family, only for a graph with rotary embedding

    x_name, cos_name, sin_name = imp.rotary[imp.index]
    low, high = imp.rotary_slices[imp.index]
    x = imp.act(x_name)
    rank, d = len(x.shape), x.shape[-1]
    labels = x.labels()
    if x.t_axis(rank - 1) != len(labels) - 1 or x.t_axis(rank - 2) != len(labels) - 2 or d % 2:
        raise Unsupported(f"rotary embedding on {list(x.shape)}: the positions and an even number of features must "
                          f"be its last two dims, apart from the batch")
    half = d // 2
    for part, (start, end) in ((low, (0, half)), (high, (half, d))):
        starts = imp.const(part.input[1], "starts").reshape(-1)
        ends = imp.const(part.input[2], "ends").reshape(-1)
        axes = imp.const(part.input[3], "axes").reshape(-1) if len(part.input) > 3 and part.input[3] else [0]
        steps = imp.const(part.input[4], "steps").reshape(-1) if len(part.input) > 4 and part.input[4] else [1]
        if len(starts) != 1 or int(axes[0]) % rank != rank - 1 or int(steps[0]) != 1 or \
                slice(int(starts[0]), int(ends[0])).indices(d)[:2] != (start, end):
            raise Unsupported("rotate_half's slices are not the two halves of the last dim")
    length = x.shape[-2]
    tables = []
    for name in (cos_name, sin_name):
        t = np.asarray(imp.constant_value(name, "the rotary table"), dtype=np.float64)
        if t.ndim < 2 or t.shape[-2:] != (length, d) or \
                not np.all(t.reshape(-1, length, d) == t.reshape(-1, length, d)[:1]):
            raise Unsupported(f"the rotary table {safe_text(name)!r} {list(t.shape)} is not one [{length}, {d}] "
                              f"table for every example and head")
        tables.append(t.reshape(-1, length, d)[0])
    cos, sin = tables
    base = 10000.0
    if length > 1 and half > 1:
        step = float(np.arctan2(sin[1, 1], cos[1, 1]))            # position 1, pair 1: θ^(−2/d)
        if step > 0:
            base = step ** (-d / 2)
            rounded = round(base)
            base = float(rounded) if rounded > 0 and abs(base - rounded) <= 1e-3 * rounded else base
    probe = np.zeros((length, d))
    probe[:, :half] = 1.0                                            # rotate(probe)[:, :half] = cos, [:, half:] = sin
    expected = rotate(probe, d, base)
    if not (np.allclose(expected[:, :half], cos[:, :half], atol=1e-4) and
            np.allclose(expected[:, half:], sin[:, half:], atol=1e-4) and
            np.allclose(cos[:, :half], cos[:, half:], atol=1e-6) and np.allclose(sin[:, :half], sin[:, half:],
                                                                                 atol=1e-6)):
        raise Unsupported("the cos/sin tables are not rotary embedding with one base θ (a scaled RoPE is not "
                          "supported)")
    spec: dict[str, Any] = {"type": "rotary_embedding"}
    if base != 10000.0:
        spec["base"] = base
    imp.unary(spec, x)


# ---- shape movements

def _reshape(imp: Importer, node: Any) -> None:
    x = imp.act(node.input[0])
    if node.op_type == "Reshape" and imp.attrs(node).get("allowzero", 0):
        # ONNX: with allowzero=1 a 0 in the shape is a dim of size 0 (not a copy of the input's dim), so the
        # output has no elements, and the input (every dim at least 1) cannot be reshaped to it
        target = [int(v) for v in imp.const(node.input[1], "the shape").reshape(-1)]
        if 0 in target:
            raise Unsupported(f"shape {target} with allowzero=1 has a dim of size 0: 0 elements, but the input "
                              f"{list(x.shape)} has {math.prod(x.shape):,}")
    imp.reshaped(x, imp.out_shape(), node.output[0], flatten=node.op_type == "Flatten" and x.plain)


def _transpose(imp: Importer, node: Any) -> None:
    x = imp.act(node.input[0])
    rank = len(x.shape)
    perm = [_axis(p, rank, "perm") for p in imp.attrs(node).get("perm", list(reversed(range(rank))))]
    if sorted(perm) != list(range(rank)):
        raise Unsupported(f"perm {perm} is not a permutation of the {rank} dims of {list(x.shape)}")
    shape = tuple(x.shape[p] for p in perm)
    y = Act("", shape, perm.index(x.b), x.outer, x.inner)
    # y's labels name output axes; as input axes: output axis j is input axis perm[j]
    wanted = [lab if isinstance(lab, str) else perm[lab] for lab in y.labels()]
    dims = [x.labels().index(lab) for lab in wanted]
    if dims == sorted(dims):
        imp.acts[node.output[0]] = Act(x.tensor, shape, y.b, x.outer, x.inner)
        return
    name = imp.emit({"type": "permute", "dims": dims}, [x.tensor])
    imp.acts[node.output[0]] = Act(name, shape, y.b, x.outer, x.inner)


def _concat(imp: Importer, node: Any) -> None:
    parts = [n for n in node.input if n]
    acts = [imp.acts[n] for n in parts if n in imp.acts]
    if not acts:
        raise Unsupported("no input is computed from the network input")
    x = acts[0]
    rank = len(x.shape)
    axis = _axis(imp.attrs(node)["axis"], rank)
    dim = x.t_axis(axis)
    if dim is None:
        raise Unsupported(f"concatenation along dim {axis}, which holds the batch")
    tensors = []
    for n in parts:
        if n in imp.acts:
            a = imp.acts[n]
            if len(a.shape) != rank or not imp.same_view(a, x, concat_axis=axis):
                raise Unsupported(f"inputs {list(x.shape)} and {list(a.shape)} must hold the batch the same way")
            tensors.append(a.tensor)
        elif imp._init_of(n):
            imp.expect("input", n, x.shape[:axis] + (imp._param_dims(n)[axis:axis + 1] or (0,)) + x.shape[axis + 1:],
                       f"the shape of the computed input {list(x.shape)} but for dim {axis}")
            tensors.append(imp.param_tensor(n, x, "input"))
        else:
            raise Unsupported(f"input {safe_text(n)!r} is a constant; only computed tensors and initializers are "
                              f"supported")
    if len(tensors) == 1:
        imp.alias(x)
        return
    name = imp.emit({"type": "concat", "dim": dim}, tensors)
    imp.acts[node.output[0]] = Act(name, imp.out_shape(), x.b, x.outer, x.inner)


def _slice(imp: Importer, node: Any) -> None:
    x = imp.act(node.input[0])
    rank = len(x.shape)
    if imp.opset() < 10:
        a = imp.attrs(node)
        starts, ends = list(a["starts"]), list(a["ends"])
        axes = list(a.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts = [int(v) for v in imp.const(node.input[1], "starts")]
        ends = [int(v) for v in imp.const(node.input[2], "ends")]
        axes = [int(v) for v in imp.const(node.input[3], "axes")] if len(node.input) > 3 and node.input[3] \
            else list(range(len(starts)))
        steps = [int(v) for v in imp.const(node.input[4], "steps")] if len(node.input) > 4 and node.input[4] \
            else [1] * len(starts)
    dims, first, last, step = [], [], [], []
    if len({_axis(a, rank, "axes") for a in axes}) != len(axes):
        raise Unsupported(f"axes {axes} name a dim twice")
    for axis, s, e, st in zip(axes, starts, ends, steps):
        axis = _axis(axis, rank, "axes")
        size = x.shape[axis]
        if st < 1:
            raise Unsupported(f"step {st} on dim {axis}: only positive steps are supported")
        lo, hi, _ = slice(s, e, st).indices(size)
        if (lo, hi, st) == (0, size, 1):
            continue                                # the whole dim
        dim = x.t_axis(axis)
        if dim is None:
            raise Unsupported(f"slicing dim {axis}, which holds the batch")
        dims.append(dim)
        first.append(lo)
        last.append(hi)
        step.append(st)
    shape = imp.out_shape()
    if not dims:
        imp.acts[node.output[0]] = Act(x.tensor, shape, x.b, x.outer, x.inner)
        return
    spec: dict[str, Any] = {"type": "slice", "dim": _one(dims), "start": _one(first), "stop": _one(last)}
    if any(s != 1 for s in step):
        spec["step"] = _one(step)
    name = imp.emit(spec, [x.tensor])
    imp.acts[node.output[0]] = Act(name, shape, x.b, x.outer, x.inner)


def _axis(value: Any, rank: int, what: str = "axis") -> int:
    """An ONNX axis in [-rank, rank - 1] as a dim in [0, rank - 1]; out of range is an error (Python's ``%`` would
    quietly make axis 99 of a 4-d tensor its last)."""
    axis = int(value)
    if not -rank <= axis < rank:
        raise Unsupported(f"{what} {axis} is out of range for a {rank}-d tensor")
    return axis % rank


def _one(values: list) -> Any:
    return values[0] if len(values) == 1 else values


def _split(imp: Importer, node: Any) -> None:
    x = imp.act(node.input[0])
    rank = len(x.shape)
    axis = _axis(imp.attrs(node).get("axis", 0), rank)
    dim = x.t_axis(axis)
    if dim is None:
        raise Unsupported(f"splitting dim {axis}, which holds the batch")
    outputs = [o for o in node.output]
    sizes = [imp.shapes.get(o, (None,) * rank)[axis] for o in outputs]
    if any(s is None for s in sizes):
        raise Unsupported("the sizes of the pieces are unknown (ONNX shape inference gave none)")
    name = imp.emit({"type": "split", "dim": dim, "sizes": list(sizes)}, [x.tensor])
    for k, o in enumerate(outputs):
        imp.acts[o] = Act(f"{name}:{k}", imp.shapes[o], x.b, x.outer, x.inner)


def _gather(imp: Importer, node: Any) -> None:
    data, indices = node.input[0], node.input[1]
    axis = int(imp.attrs(node).get("axis", 0))
    if imp._init_of(data) and indices in imp.acts:
        table = imp._param_dims(data)
        if axis != 0 or len(table) != 2:
            raise Unsupported(f"a lookup in initializer {list(table)} along axis {axis}: only row lookups in a "
                              f"2-d table (an embedding) are supported")
        ids = imp.acts[indices]
        spec = {"type": "embedding", "num_embeddings": table[0], "embedding_dim": table[1]}
        out = imp.weighted(spec, ids, {"weight": data}, bias_role=None)
        imp.acts[node.output[0]] = Act(out, (*ids.shape, table[1]), ids.b, ids.outer, ids.inner)
        return
    if imp._init_of(data) and indices in imp.values:
        _table_rows(imp, node, data, imp.values[indices], axis)
        return
    x = imp.act(data, "data")
    rank = len(x.shape)
    axis = _axis(axis, rank)
    index = imp.const(indices, "the indices")
    dim = x.t_axis(axis)
    if dim is None:
        raise Unsupported(f"gathering along dim {axis}, which holds the batch")
    size = x.shape[axis]
    if index.dtype.kind not in "iu" or index.size == 0 or int(index.min()) < -size or int(index.max()) >= size:
        raise Unsupported(f"indices {index.reshape(-1).tolist()[:8]} must be integers in [{-size}, {size - 1}] "
                          f"(dim {axis} of {list(x.shape)})")
    if index.ndim == 0:
        name = imp.emit({"type": "select", "dim": dim, "index": int(index)}, [x.tensor])
        shape = imp.out_shape()
        y = Act(name, shape, x.b if x.b < axis else x.b - 1, x.outer, x.inner)
        imp.acts[node.output[0]] = y
        return
    flat = [int(v) % x.shape[axis] for v in index.reshape(-1)]
    if index.ndim == 1 and flat == list(range(flat[0], flat[0] + len(flat))):
        name = imp.emit({"type": "slice", "dim": dim, "start": flat[0], "stop": flat[-1] + 1}, [x.tensor])
        imp.acts[node.output[0]] = Act(name, imp.out_shape(), x.b, x.outer, x.inner)
        return
    raise Unsupported(f"indices {index.reshape(-1).tolist()[:8]} are not a scalar or a contiguous range")


def _table_rows(imp: Importer, node: Any, table_name: str, index: Any, axis: int) -> None:
    """A table (an initializer [P, d]) read at constant rows: positions 0..L−1 (GPT-2's ``wpe`` at
    ``arange(L)``) are a ``position_embedding``; one row everywhere (BERT's token types, all 0) a ``parameter``
    holding the table and a ``slice`` of that row. Made when an element-wise operation combines the value with a
    computed tensor, to broadcast against it (:data:`Importer.lazy`)."""
    import numpy as np

    table = imp._param_dims(table_name)
    if axis != 0 or len(table) != 2 or index.dtype.kind not in "iu" or index.size == 0:
        raise Unsupported(f"a lookup in initializer {list(table)} along axis {axis} at constant indices: only rows "
                          f"of a 2-d table are supported")
    rows = index.reshape(-1).astype(np.int64) % table[0]
    if np.any(index.reshape(-1) >= table[0]) or np.any(index.reshape(-1) < -table[0]):
        raise Unsupported(f"indices outside the table's {table[0]} rows")
    shape = (*index.shape, table[1])
    lead = [d for d in index.shape[:-1] if d != 1]
    length = index.shape[-1] if index.ndim else 1
    one_row = bool(np.all(rows == rows[0]))
    positions = np.array_equal(rows.reshape(-1, length) if index.ndim else rows,
                               np.broadcast_to(np.arange(length), (rows.size // length, length)))
    if not (one_row or positions) or (positions and not one_row and lead and
                                       not np.all(rows.reshape(-1, length) == rows[:length])):
        raise Unsupported(f"rows {rows[:8].tolist()}…: only positions 0..L−1 or one row everywhere are supported")
    node_index, node_ref = imp.index, node

    def make(x: Act) -> str:
        saved = imp.node, imp.index
        imp.node, imp.index = node_ref, node_index
        try:
            aligned = (1,) * (len(x.shape) - len(shape)) + shape
            if len(shape) > len(x.shape) or aligned[-1] != x.shape[-1] or \
                    aligned[x.b] != 1 and not one_row and index.ndim > 1:
                raise Unsupported(f"rows of {safe_text(table_name)!r} {list(shape)} do not broadcast against "
                                  f"{list(x.shape)}")
            if positions and not one_row or (positions and length > 1):
                labels = x.labels()
                seq = len(shape) - 2 + len(x.shape) - len(shape)       # the ONNX axis of the positions
                if x.t_axis(seq) != 1 or len(labels) != 3:
                    raise Unsupported(f"positions along dim {seq} of {list(x.shape)}: a position embedding reads "
                                      f"them along dim 1 of [N, L, d]")
                spec = {"type": "position_embedding", "num_embeddings": table[0], "embedding_dim": table[1]}
                return imp.weighted(spec, x, {"weight": table_name}, bias_role=None)
            p = imp.param_tensor(table_name, Act("", (1, *table)), "table")
            row = int(rows[0])
            name = imp.emit({"type": "slice", "dim": 1, "start": row, "stop": row + 1}, [p],
                            name=imp.name_for(table_name, suffix=f".row{row}"))
            if len(x.shape) > 2:
                name = imp.emit({"type": "reshape", "shape": [1] * (len(x.labels()) - 2) + [table[1]]}, [name],
                                name=imp.name_for(table_name, suffix=f".row{row}.view"))
            return name
        finally:
            imp.node, imp.index = saved
    imp.lazy[node.output[0]] = make


def _expand(imp: Importer, node: Any) -> None:
    src = node.input[0]
    shape = imp.out_shape()
    if imp._init_of(src):
        # a learnable tensor repeated over the batch (ViT's class token): layercalc's parameter layer
        dims = imp._param_dims(src)
        aligned = (1,) * (len(shape) - len(dims)) + dims
        if aligned[0] != 1 or aligned[1:] != shape[1:]:
            raise Unsupported(f"initializer {list(dims)} expanded to {list(shape)}: only a repeat over the batch "
                              f"dim 0 is supported")
        p = imp.param_tensor(src, Act("", shape), "input")
        imp.acts[node.output[0]] = Act(p, shape)
        return
    x = imp.act(src)
    if len(shape) != len(x.shape) or any(a not in (1, b) for a, b in zip(x.shape, shape)):
        raise Unsupported(f"expanding {list(x.shape)} to {list(shape)}: only dims of size 1 repeated (a broadcast "
                          f"copy of the same rank) are supported")
    # a dim of size 1 repeated n times (repeat_kv: key/value heads shared by query heads): n copies concatenated
    current = x
    for axis, (a, b) in enumerate(zip(x.shape, shape)):
        if a == b:
            continue
        dim = current.t_axis(axis)
        if dim is None:
            raise Unsupported(f"expanding dim {axis} of {list(x.shape)}, which holds the batch")
        if b > 64:
            raise Unsupported(f"expanding dim {axis} of {list(x.shape)} to {b} copies: at most 64 are supported")
        new_shape = tuple(b if k == axis else d for k, d in enumerate(current.shape))
        name = imp.emit({"type": "concat", "dim": dim}, [current.tensor] * b)
        current = Act(name, new_shape, current.b, current.outer, current.inner)
    imp.acts[node.output[0]] = current


def _reduce(kind: str) -> Callable[[Importer, Any], None]:
    def convert(imp: Importer, node: Any) -> None:
        x = imp.act(node.input[0])
        a = imp.attrs(node)
        rank = len(x.shape)
        if len(node.input) > 1 and node.input[1]:
            axes = [_axis(v, rank, "axes") for v in imp.const(node.input[1], "axes")]
        else:
            axes = [_axis(v, rank, "axes") for v in a.get("axes", [])]
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                imp.alias(x)
                return
            raise Unsupported("reducing every dim includes the batch")
        dims = [x.t_axis(d) for d in axes]
        if None in dims:
            raise Unsupported(f"reducing dims {axes} includes the batch (dim {x.b})")
        keep = bool(a.get("keepdims", 1))
        name = imp.emit({"type": kind, "dim": _one(dims), "keepdim": keep}, [x.tensor])
        shape = imp.out_shape()
        b = x.b if keep else x.b - sum(1 for d in axes if d < x.b)
        imp.acts[node.output[0]] = Act(name, shape, b, x.outer, x.inner)
    return convert


def _resize(imp: Importer, node: Any) -> None:
    import numpy as np

    x = imp.act(node.input[0])
    imp.need_plain(x)
    a = imp.attrs(node)
    rank = len(x.shape) - 2
    mode = a.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    transform = a.get("coordinate_transformation_mode", b"half_pixel")
    transform = transform.decode() if isinstance(transform, bytes) else transform
    spec: dict[str, Any] = {"type": "upsample"}
    if mode == "nearest":
        spec["mode"] = "nearest"
    elif mode == "linear":
        if rank not in (1, 2, 3):
            raise Unsupported(f"linear resizing of {rank} spatial dims is not supported")
        spec["mode"] = {1: "linear", 2: "bilinear", 3: "trilinear"}[rank]
        spec["align_corners"] = transform == "align_corners"
    else:
        raise Unsupported(f"mode {mode!r} has no layercalc type (nearest and linear modes are supported)")
    scales = None
    if node.op_type == "Upsample":
        scales = imp.const(node.input[1], "scales") if len(node.input) > 1 else a.get("scales")
    elif len(node.input) > 2 and node.input[2]:
        scales = imp.const(node.input[2], "scales")
    if scales is not None:
        scales = np.asarray(scales, dtype=np.float64).reshape(-1)
        if scales.size and (len(scales) != len(x.shape) or not np.all(np.isfinite(scales)) or np.any(scales <= 0)):
            raise Unsupported(f"scales {scales.tolist()} must be one positive finite number per dim of "
                              f"{list(x.shape)}")
    out = imp.out_shape()
    if out[:2] != x.shape[:2]:
        raise Unsupported(f"resizing {list(x.shape)} to {list(out)} changes the batch or channel dim")
    if scales is not None and len(scales) and all(float(s) == int(s) for s in scales[2:]):
        factors = [int(s) for s in scales[2:]]
        spec["scale_factor"] = factors[0] if len(set(factors)) == 1 else factors
    else:
        spec["size"] = list(out[2:])
    imp.unary_shape(spec, x, out)


def _pad(imp: Importer, node: Any) -> None:
    x = imp.act(node.input[0])
    imp.need_plain(x)
    a = imp.attrs(node)
    mode = a.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise Unsupported(f"mode {mode!r}: only zero padding is supported")
    pads = [int(v) for v in (imp.const(node.input[1], "pads") if len(node.input) > 1 else a["pads"])]
    if len(node.input) > 2 and node.input[2] and float(imp.const(node.input[2], "constant_value")) != 0:
        raise Unsupported("only zero padding is supported")
    if len(node.input) > 3 and node.input[3]:
        raise Unsupported("the axes input is not supported")
    rank = len(x.shape)
    pairs = [[pads[d], pads[d + rank]] for d in range(rank)]
    if any(v < 0 for p in pairs for v in p) or any(pairs[d] != [0, 0] for d in (0, 1)):
        raise Unsupported(f"pads {pads}: only non-negative padding of the spatial dims is supported")
    imp.unary_shape({"type": "zero_pad", "padding": pairs[2:]}, x, imp.out_shape())


def _constant_only(imp: Importer, node: Any) -> None:
    """A node of the shape arithmetic that could not be folded: it depends on the data."""
    if imp.fold_stopped:
        raise Unsupported(f"operator {node.op_type!r} was not evaluated: {imp.fold_stopped_text()}")
    raise Unsupported(f"operator {node.op_type!r} on data (not on shapes or constants) is not supported by "
                      f"layercalc's ONNX importer; it is not counted as zero")


#: ONNX operator → converter (the operators of the default domain that map to layercalc layers)
CONVERTERS: dict[str, Callable[[Importer, Any], None]] = {
    "Conv": _conv, "ConvTranspose": _conv_transpose, "Gemm": _gemm, "MatMul": _matmul,
    "MaxPool": _pool("max"), "AveragePool": _pool("avg"),
    "GlobalAveragePool": _global_pool("avg"), "GlobalMaxPool": _global_pool("max"),
    "BatchNormalization": _batchnorm, "LayerNormalization": _layernorm,
    "InstanceNormalization": _instancenorm, "GroupNormalization": _groupnorm,
    "Relu": _activation("relu"), "LeakyRelu": _leaky_relu, "Sigmoid": _activation("sigmoid"),
    "Tanh": _activation("tanh"), "Softmax": _softmax, "Gelu": _gelu, "HardSwish": _activation("hardswish"),
    "HardSigmoid": _hardsigmoid, "Clip": _clip,
    "Add": _arith, "Sub": _arith, "Mul": _arith, "Div": _arith, "Where": _where, "Pow": _pow,
    "Sqrt": _elementwise("pow", exponent=0.5), "Reciprocal": _elementwise("pow", exponent=-1.0),
    "Neg": _elementwise("rescaling", scale=-1.0),
    "Concat": _concat, "Flatten": _reshape, "Reshape": _reshape, "Squeeze": _reshape, "Unsqueeze": _reshape,
    "Transpose": _transpose, "Slice": _slice, "Split": _split, "Gather": _gather, "Expand": _expand,
    "ReduceMean": _reduce("mean"), "ReduceSum": _reduce("sum"),
    "Resize": _resize, "Upsample": _resize, "Pad": _pad,
    "Dropout": _passthrough, "Identity": _passthrough, "Cast": _passthrough,
    "Shape": _constant_only, "Size": _constant_only, "ConstantOfShape": _constant_only, "Constant": _constant_only,
}
