"""Array kernels of the NumPy executor: convolution, pooling, normalization and activations on plain ndarrays.

Spatial kernels work on *channels-last* arrays ``[N, *spatial, C]`` (any strides): channels are then the fastest
axis, so an im2col row (one output position, every kernel offset, every channel) is a run of contiguous copies and
the convolution is one BLAS matrix product ``[positions, k·C] @ [k·C, C_out]`` whose result is already in
channels-last order. The executor hands NCHW tensors over as transposed views (no copy).

No Python loop runs over pixels: the loops below run over kernel offsets (at most prod(kernel_size) iterations of
whole-array operations), over groups of the batch / output rows (to bound the im2col workspace), or over spatial
dimensions.

Multiply-accumulates are counted where the products are formed (``counter.add``), from the dimensions of the matrix
products and multiplies actually performed, so ``layercalc verify`` can compare them with the analysis.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any, Literal, Optional

import numpy as np
from numpy.lib.stride_tricks import as_strided

#: upper bound of one im2col chunk. Small enough that the chunk is still in the CPU cache when the matrix product
#: reads it right after the copy that wrote it, large enough (hundreds of rows) for BLAS to run at full speed:
#: measured on VGG/ResNet layers (2 cores, 32 MiB L3), 4–8 MiB chunks ran 10–80 % faster than 32–64 MiB ones.
WORKSPACE_BYTES = 8 * 2**20

NUMPY_PAD_MODES: dict[str, Literal["constant", "reflect", "edge", "wrap"]] = {
    "zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def as_numpy(value: Any) -> Any:
    """A framework's tensor as a NumPy array, exactly: a torch tensor detached and moved to the CPU, bfloat16 (the
    usual dtype of LLM checkpoints, which NumPy lacks) widened to float32 — every bfloat16 value is a float32 one;
    float16 stays float16. Anything else is returned as it is (NumPy arrays, lists: ``np.asarray`` reads them)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):         # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    return value


class MacCounter:
    """Multiply-accumulates performed, added up where the products are formed."""
    __slots__ = ("macs",)

    def __init__(self) -> None:
        self.macs = 0

    def add(self, count: int) -> None:
        self.macs += int(count)


#: the largest im2col buffer kept between runs for the next one (bytes); a bigger one is let go at the end of
#: its run. Sized for the default chunk budget: the buffer of a run is at most about one chunk.
SPARE_WORKSPACE_BYTES = 4 * WORKSPACE_BYTES

_spare_buffers: list = []          # at most one buffer, handed from one run to the next


class Workspace:
    """One reusable scratch buffer for im2col chunks (a fresh one per layer would cost page faults). The
    executor sizes it up front from the memory estimate, so it normally never grows during a run.

    ``Workspace.for_run`` / ``release`` hand the buffer from one run to the next (up to
    ``SPARE_WORKSPACE_BYTES``): a freshly mapped buffer costs a page fault per 4 KiB page at its first touch,
    about 3,000 faults (several ms) per ResNet-50 batch-1 run. The buffer only ever holds scratch data that is
    written before it is read, so handing it on cannot change a result. ``list.pop``/``append`` are atomic, so
    concurrent runs (threads) each get their own buffer.
    """

    def __init__(self, nbytes: int = 0) -> None:
        self._buffer = np.empty(nbytes, dtype=np.uint8)

    @classmethod
    def for_run(cls, nbytes: int) -> Workspace:
        """A workspace of at least ``nbytes``, reusing the buffer a previous run released when it is big enough."""
        workspace = cls(0)
        try:
            spare = _spare_buffers.pop()
        except IndexError:
            spare = None
        workspace._buffer = spare if spare is not None and spare.size >= nbytes else np.empty(nbytes, np.uint8)
        return workspace

    def release(self) -> None:
        """Hand the buffer on to the next run (kept only if not too big; replaces an older spare)."""
        buffer, self._buffer = self._buffer, np.empty(0, dtype=np.uint8)
        if 0 < buffer.size <= SPARE_WORKSPACE_BYTES:
            _spare_buffers[:] = [buffer]

    def take(self, *shapes: Sequence[int], dtype) -> list[np.ndarray]:
        """Uninitialized arrays of the given shapes, side by side in the buffer (valid until the next take)."""
        dtype = np.dtype(dtype)
        sizes = [math.prod(shape) * dtype.itemsize for shape in shapes]
        if self._buffer.size < sum(sizes):
            self._buffer = np.empty(0, dtype=np.uint8)   # let the old buffer go before the bigger one is made
            self._buffer = np.empty(sum(sizes), dtype=np.uint8)
        arrays, offset = [], 0
        for shape, size in zip(shapes, sizes):
            arrays.append(self._buffer[offset:offset + size].view(dtype).reshape(shape))
            offset += size
        return arrays

    @property
    def nbytes(self) -> int:
        return self._buffer.size


def drop_spare_workspace() -> None:
    """Free the buffer kept between runs (to measure a run's own allocations, or to give the memory back)."""
    _spare_buffers.clear()


# ------------------------------------------------------------------------------------------------ helpers

def chunk_plan(batch: int, out_sizes: Sequence[int], bytes_per_position: int,
               budget: int = WORKSPACE_BYTES) -> list[tuple[int, int, int, int]]:
    """Split the output positions into chunks ``(n0, n1, h0, h1)`` (batch range, range of the first spatial dim)
    whose workspace stays within ``budget``: whole batch, else groups of images, else groups of rows of one image.

    >>> chunk_plan(8, (4, 4), 100, budget=10**6)
    [(0, 8, 0, 4)]
    >>> chunk_plan(4, (4, 4), 100, budget=3200)
    [(0, 2, 0, 4), (2, 4, 0, 4)]
    >>> chunk_plan(1, (4, 4), 100, budget=800)
    [(0, 1, 0, 2), (0, 1, 2, 4)]
    """
    rows = out_sizes[0] if out_sizes else 1
    per_image = math.prod(out_sizes) * bytes_per_position
    if batch * per_image <= budget:
        return [(0, batch, 0, rows)]
    if per_image <= budget:
        step = budget // per_image
        return [(n, min(n + step, batch), 0, rows) for n in range(0, batch, step)]
    per_row = math.prod(out_sizes[1:]) * bytes_per_position
    step = max(1, budget // per_row)
    return [(n, n + 1, h, min(h + step, rows)) for n in range(batch) for h in range(0, rows, step)]


def chunk_bytes(batch: int, out_sizes: Sequence[int], bytes_per_position: int, budget: int = WORKSPACE_BYTES) -> int:
    """The largest chunk's workspace in bytes (for the memory estimate): the first chunk of ``chunk_plan``,
    computed without listing the chunks, so the time does not grow with the batch.

    >>> all(chunk_bytes(b, (h, 7), p, budget=5000) == max((n1 - n0) * (h1 - h0) * 7 * p
    ...     for n0, n1, h0, h1 in chunk_plan(b, (h, 7), p, budget=5000))
    ...     for b in (1, 3, 50) for h in (1, 4, 40) for p in (1, 8, 100, 900))
    True
    """
    rows = out_sizes[0] if out_sizes else 1
    per_row = math.prod(out_sizes[1:]) * bytes_per_position
    per_image = rows * per_row
    if batch * per_image <= budget:
        return batch * per_image
    if per_image <= budget:
        return min(budget // per_image, batch) * per_image
    return min(max(1, budget // per_row), rows) * per_row


def pad_spatial(x: np.ndarray, pads: Sequence[tuple[int, int]], mode: str = "zeros", value: float = 0.0) -> np.ndarray:
    """Pad the spatial dims of a channels-last array (returned as is when there is nothing to pad)."""
    if not any(b or a for b, a in pads):
        return x
    width = [(0, 0), *[(int(b), int(a)) for b, a in pads], (0, 0)]
    if mode != "zeros":
        return np.pad(x, width, mode=NUMPY_PAD_MODES[mode])
    # Constant padding by hand: np.pad's set-up costs ~80 µs a call, more than the copy itself on small maps.
    padded = np.empty([n + b + a for n, (b, a) in zip(x.shape, width)], dtype=x.dtype)
    padded[tuple(slice(b, b + n) for n, (b, _) in zip(x.shape, width))] = x
    for axis, (n, (before, _after)) in enumerate(zip(x.shape, width)):
        for border in (slice(0, before), slice(before + n, None)):
            if border.start != border.stop:
                padded[(slice(None),) * axis + (border,)] = value     # slabs overlap at corners: same value
    return padded


def window_view(xp: np.ndarray, out_sizes, kernel, stride, dilation) -> np.ndarray:
    """Read-only strided view ``[N, *out, *kernel, C]`` of a padded channels-last array: element
    ``[n, o…, k…, c]`` is ``xp[n, o·stride + k·dilation …, c]``. No data is copied."""
    s_n, *s_sp, s_c = xp.strides
    shape = (xp.shape[0], *out_sizes, *kernel, xp.shape[-1])
    strides = (s_n, *(st * s for st, s in zip(s_sp, stride)), *(st * d for st, d in zip(s_sp, dilation)), s_c)
    return as_strided(xp, shape, strides, writeable=False)


def offset_slices(offset, stride, dilation, counts, starts=None) -> tuple[slice, ...]:
    """Strided slices picking, along each spatial dim, positions ``start + offset·dilation + i·stride``."""
    starts = starts or (0,) * len(offset)
    return tuple(slice(st + o * d, st + o * d + s * (c - 1) + 1, s)
                 for o, s, d, c, st in zip(offset, stride, dilation, counts, starts))


def conv_output_sizes(spatial, kernel, stride, dilation, pads) -> tuple[int, ...]:
    """Window positions per dim, from the padded size (the executor's own count; verify compares it)."""
    return tuple((n + b + a - d * (k - 1) - 1) // s + 1
                 for n, k, s, d, (b, a) in zip(spatial, kernel, stride, dilation, pads))


# ---------------------------------------------------------------------------------------------- convolution

def conv(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray], *, stride, dilation, pads, groups: int,
         padding_mode: str, workspace: Workspace, counter: MacCounter) -> np.ndarray:
    """N-d convolution (cross-correlation, like PyTorch) of a channels-last ``x`` with a PyTorch-layout weight
    ``[C_out, C_in/groups, *kernel]``. Returns a C-contiguous channels-last array."""
    batch, cin = x.shape[0], x.shape[-1]
    cout, kernel = weight.shape[0], weight.shape[2:]
    xp = pad_spatial(x, pads, padding_mode)
    out_sizes = conv_output_sizes(x.shape[1:-1], kernel, stride, dilation, pads)
    out = np.empty((batch, *out_sizes, cout), dtype=x.dtype)
    if groups == 1:
        _conv_dense(xp, weight, out, kernel, stride, dilation, workspace, counter)
    elif groups == cin:
        _conv_depthwise(xp, weight, out, kernel, stride, dilation, counter)
    else:
        _conv_grouped(xp, weight, out, kernel, stride, dilation, groups, workspace, counter)
    if bias is not None:
        out += bias
    return out


def _conv_dense(xp, weight, out, kernel, stride, dilation, workspace, counter) -> None:
    """groups = 1: im2col chunk @ weight matrix, written into ``out``.

    Two orders of the im2col columns, whichever copies less:
    - kernel offset, then channel (``[*k, C_in]``): each window row is a few long contiguous runs of channels, the
      cheapest im2col copy (one copy out of the strided window view), but the PyTorch weight ``[C_out, C_in, *k]``
      must be reordered to match (one copy of the weight per call);
    - channel, then kernel offset (``[C_in, *k]``, PyTorch's own order): the weight is used as it is, as a
      transposed view (BLAS reads it in place). The columns are filled one kernel offset at a time (a strided
      slice of the input, runs of C_in channels, written with a stride of prod(kernel)): one copy of the whole
      window view in this order would move single elements and runs 4–5× slower.
    The weight copy costs about ``depth · C_out`` element moves and the im2col copy about ``rows · depth``, so
    the second order is used when there are fewer output positions than output channels (late, small layers at
    small batch, where the weight is the bigger array). A 1×1 kernel needs neither: both orders are the same.
    """
    cin, cout = xp.shape[-1], out.shape[-1]
    taps = math.prod(kernel)
    depth = taps * cin
    out_sizes = out.shape[1:-1]
    positions = math.prod(out.shape[:-1])
    itemsize = xp.dtype.itemsize
    if taps == 1 and all(s == 1 for s in stride) and xp.flags.c_contiguous:
        # 1×1, stride 1, contiguous: the input already is the im2col matrix
        np.matmul(xp.reshape(positions, cin), weight.reshape(cout, cin).T, out=out.reshape(positions, cout))
        counter.add(positions * depth * cout)
        return
    kernel_major = reorders_weight(taps, positions, cout)
    if kernel_major:
        w_mat = kernel_major_weight(weight).reshape(depth, cout)
        windows = window_view(xp, out_sizes, kernel, stride, dilation)    # [N, *out, *k, C_in]
    else:
        w_mat = weight.reshape(cout, depth).T              # a view: no copy of the weight
    for n0, n1, h0, h1 in chunk_plan(xp.shape[0], out_sizes, depth * itemsize):
        chunk_sizes = (h1 - h0, *out_sizes[1:])
        rows = (n1 - n0) * math.prod(chunk_sizes)
        if kernel_major:
            cols, = workspace.take((n1 - n0, *chunk_sizes, *kernel, cin), dtype=xp.dtype)
            np.copyto(cols, windows[n0:n1, h0:h1])
        else:
            cols, = workspace.take((n1 - n0, *chunk_sizes, cin, taps), dtype=xp.dtype)
            starts = (h0 * stride[0],) + (0,) * (len(kernel) - 1)
            for tap, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
                np.copyto(cols[..., tap], xp[(slice(n0, n1),) + offset_slices(offset, stride, dilation, chunk_sizes,
                                                                              starts)])
        np.matmul(cols.reshape(rows, depth), w_mat, out=out[n0:n1, h0:h1].reshape(rows, cout))
        counter.add(rows * depth * cout)


def reorders_weight(taps: int, positions: int, cout: int) -> bool:
    """Does a groups=1 convolution copy its weight into kernel-major order (see ``_conv_dense``)?"""
    return taps > 1 and positions >= cout


def kernel_major_weight(weight: np.ndarray, block: int = 16) -> np.ndarray:
    """A conv weight ``[C_out, C_in, *k]`` reordered to ``[*k, C_in, C_out]`` (the row order of a
    channels-fastest im2col matrix), copied ``block`` output channels at a time: one transposing copy of the
    whole array walks the source with a stride of the whole weight and runs about twice slower."""
    cout = weight.shape[0]
    out = np.empty((*weight.shape[2:], weight.shape[1], cout), dtype=weight.dtype)
    for o0 in range(0, cout, block):
        np.copyto(out[..., o0:o0 + block], np.moveaxis(weight[o0:o0 + block], (0, 1), (-1, -2)))
    return out


def _conv_depthwise(xp, weight, out, kernel, stride, dilation, counter) -> None:
    """groups = C_in (each output channel reads one input channel): a multiply-add per kernel offset on whole
    arrays, much faster than C_in tiny matrix products."""
    cin = xp.shape[-1]
    multiplier = out.shape[-1] // cin
    out_sizes = out.shape[1:-1]
    acc = out.reshape(*out.shape[:-1], cin, multiplier)
    w = weight.reshape(cin, multiplier, *kernel)
    scratch = np.empty_like(acc)
    first = True
    for offset in itertools.product(*(range(k) for k in kernel)):
        view = xp[(slice(None),) + offset_slices(offset, stride, dilation, out_sizes)][..., None]
        w_offset = w[(slice(None), slice(None)) + offset]             # [C_in, multiplier]
        if first:
            np.multiply(view, w_offset, out=acc)
            first = False
        else:
            np.multiply(view, w_offset, out=scratch)
            acc += scratch
        counter.add(acc.size)


def _conv_grouped(xp, weight, out, kernel, stride, dilation, groups, workspace, counter) -> None:
    """1 < groups < C_in: one batched matrix product over the groups per chunk."""
    cin, cout = xp.shape[-1], out.shape[-1]
    cin_g, cout_g = cin // groups, cout // groups
    depth = math.prod(kernel) * cin_g
    # [C_out, C_in/g, *k] → [g, *k, C_in/g, C_out/g] → [g, depth, C_out/g]
    w = weight.reshape(groups, cout_g, cin_g, *kernel)
    w_mat = np.ascontiguousarray(np.moveaxis(w, (1, 2), (-1, -2)).reshape(groups, depth, cout_g))
    out_sizes = out.shape[1:-1]
    windows = window_view(xp, out_sizes, kernel, stride, dilation)
    # split the channel axis into (group, channel in group) and bring the group to the front
    *outer_strides, s_c = windows.strides
    windows = as_strided(windows, (*windows.shape[:-1], groups, cin_g), (*outer_strides, s_c * cin_g, s_c),
                         writeable=False)
    itemsize = xp.dtype.itemsize
    for n0, n1, h0, h1 in chunk_plan(xp.shape[0], out_sizes, (groups * depth + cout) * itemsize):
        src = np.moveaxis(windows[n0:n1, h0:h1], -2, 0)            # [g, n, h, …, *k, C_in/g]
        rows = src[0].size // depth
        cols, result = workspace.take(src.shape, (groups, rows, cout_g), dtype=xp.dtype)
        np.copyto(cols, src)
        np.matmul(cols.reshape(groups, rows, depth), w_mat, out=result)
        counter.add(groups * rows * depth * cout_g)
        np.copyto(out[n0:n1, h0:h1].reshape(rows, groups, cout_g), result.transpose(1, 0, 2))


def conv_transpose(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray], *, stride, dilation, crop,
                   output_padding, groups: int, workspace: Workspace, counter: MacCounter) -> np.ndarray:
    """Transposed convolution of a channels-last ``x`` with a PyTorch-layout weight ``[C_in, C_out/groups, *k]``.

    Each input position is multiplied by the whole kernel (one matrix product ``[positions, C_in] @ [C_in,
    k·C_out]``: the MACs counted on input positions), then each kernel offset's slab is added into the output at
    ``position·stride + offset·dilation`` (col2im; a loop over kernel offsets). The full result
    ``(L − 1)·s + d·(k − 1) + 1`` is then cropped ``(before, after)``, and ``output_padding`` extends the end (with
    zeros where it reaches past the full result, like PyTorch).
    """
    batch, *spatial, cin = x.shape
    cout_g, kernel = weight.shape[1], weight.shape[2:]
    cin_g = cin // groups
    full = [(n - 1) * s + d * (k - 1) + 1 for n, k, s, d in zip(spatial, kernel, stride, dilation)]
    out_len = [f - b - a + op for f, (b, a), op in zip(full, crop, output_padding)]
    alloc = [max(f, b + o) for f, (b, _), o in zip(full, crop, out_len)]
    acc = np.zeros((batch, *alloc, groups, cout_g), dtype=x.dtype)
    width = math.prod(kernel) * cout_g
    # [C_in, C_out/g, *k] → [g, C_in/g, *k, C_out/g] → [g, C_in/g, width]
    w = weight.reshape(groups, cin_g, cout_g, *kernel)
    w_mat = np.ascontiguousarray(np.moveaxis(w, 2, -1).reshape(groups, cin_g, width))
    itemsize = x.dtype.itemsize
    for n0, n1, h0, h1 in chunk_plan(batch, spatial, (groups * width + cin) * itemsize):
        src = x[n0:n1, h0:h1]
        chunk_shape = src.shape[:-1]
        rows = math.prod(chunk_shape)
        cols, result = workspace.take((groups, *chunk_shape, cin_g), (groups, rows, width), dtype=x.dtype)
        np.copyto(cols, np.moveaxis(src.reshape(*chunk_shape, groups, cin_g), -2, 0))
        np.matmul(cols.reshape(groups, rows, cin_g), w_mat, out=result)
        counter.add(groups * rows * cin_g * width)
        slabs = np.moveaxis(result.reshape(groups, *chunk_shape, *kernel, cout_g), 0, -2)  # [n, h…, *k, g, C/g]
        starts = (h0 * stride[0],) + (0,) * (len(spatial) - 1)
        dims = len(spatial)
        for offset in itertools.product(*(range(k) for k in kernel)):
            target = offset_slices(offset, stride, dilation, chunk_shape[1:], starts)
            acc[(slice(n0, n1),) + target] += slabs[(slice(None),) * (1 + dims) + offset]
    acc = acc.reshape(batch, *alloc, groups * cout_g)
    out = acc[(slice(None),) + tuple(slice(b, b + o) for (b, _), o in zip(crop, out_len))]
    if bias is not None:
        out += bias
    return out


# ------------------------------------------------------------------------------------------------------ pooling

def pool_output_sizes(spatial, kernel, stride, dilation, pads, ceil_mode: bool) -> tuple[int, ...]:
    """PyTorch's pooling window count per dim: floor (or ceil) of the span over the stride, plus one; with
    ceil_mode a last window that would start in the right padding is dropped."""
    sizes = []
    for n, k, s, d, (b, a) in zip(spatial, kernel, stride, dilation, pads):
        span = n + b + a - d * (k - 1) - 1
        count = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (count - 1) * s >= n + b:
            count -= 1
        sizes.append(count)
    return tuple(sizes)


def _pool_padded(x, kernel, stride, dilation, pads, out_sizes, value):
    """Pad for pooling: the given pads, plus room for ceil_mode's last window hanging past the end."""
    extents = []
    for n, k, s, d, (b, a), o in zip(x.shape[1:-1], kernel, stride, dilation, pads, out_sizes):
        needed = (o - 1) * s + d * (k - 1) + 1
        extents.append((b, max(a, needed - b - n)))
    return pad_spatial(x, extents, "zeros", value)


def max_pool(x: np.ndarray, *, kernel, stride, dilation, pads, ceil_mode: bool) -> np.ndarray:
    """Max over each window of a channels-last array; padding never wins (−∞), NaN propagates."""
    out_sizes = pool_output_sizes(x.shape[1:-1], kernel, stride, dilation, pads, ceil_mode)
    xp = _pool_padded(x, kernel, stride, dilation, pads, out_sizes, -np.inf)
    offsets = itertools.product(*(range(k) for k in kernel))
    out = xp[(slice(None),) + offset_slices(next(offsets), stride, dilation, out_sizes)].copy()
    for offset in offsets:
        view = xp[(slice(None),) + offset_slices(offset, stride, dilation, out_sizes)]
        np.maximum(out, view, out=out)
    return out


def avg_pool(x: np.ndarray, *, kernel, stride, pads, ceil_mode: bool, count_include_pad: bool,
             divisor_override: Optional[int]) -> np.ndarray:
    """Mean over each window of a channels-last array, with PyTorch's divisor: the window clipped to the padded
    input (``count_include_pad``) or to the real input; ceil_mode's overhang never counts."""
    dilation = (1,) * len(kernel)
    spatial = x.shape[1:-1]
    out_sizes = pool_output_sizes(spatial, kernel, stride, dilation, pads, ceil_mode)
    xp = _pool_padded(x, kernel, stride, dilation, pads, out_sizes, 0.0)
    offsets = itertools.product(*(range(k) for k in kernel))
    out = xp[(slice(None),) + offset_slices(next(offsets), stride, dilation, out_sizes)].copy()
    for offset in offsets:
        view = xp[(slice(None),) + offset_slices(offset, stride, dilation, out_sizes)]
        np.add(out, view, out=out)
    if divisor_override:
        out /= divisor_override
        return out
    divisor = np.ones((), dtype=np.float64)
    for n, k, s, (b, a), o in zip(spatial, kernel, stride, pads, out_sizes):
        start = np.arange(o) * s                       # window start in padded coordinates
        end = start + k
        if count_include_pad:
            counts = np.minimum(end, n + b + a) - start
        else:
            counts = np.minimum(end, b + n) - np.maximum(start, b)
        divisor = np.multiply.outer(divisor, counts)
    out /= divisor[..., None].astype(x.dtype)
    return out


def adaptive_windows(length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's adaptive windows ``[floor(i·L/out), ceil((i+1)·L/out))`` as start and end arrays."""
    i = np.arange(size)
    return (i * length) // size, -((-(i + 1) * length) // size)


def adaptive_avg_pool(x: np.ndarray, output_size) -> np.ndarray:
    """Per spatial dim, a matrix of window weights (1/size inside the window) applied along that axis: averages
    over rectangles are separable."""
    for axis, size in enumerate(output_size, start=1):
        length = x.shape[axis]
        if size is None or size == length:
            continue
        start, end = adaptive_windows(length, size)
        positions = np.arange(length)
        inside = (positions >= start[:, None]) & (positions < end[:, None])
        weights = (inside / (end - start)[:, None]).astype(x.dtype)     # [size, length]
        x = np.moveaxis(np.tensordot(weights, x, axes=([1], [axis])), 0, axis)
    return x


def adaptive_max_pool(x: np.ndarray, output_size) -> np.ndarray:
    """Per spatial dim, ``np.maximum.reduceat`` over interleaved (start, end) indices; the window maxima are the
    even entries. One extra element is appended so every end index is valid."""
    for axis, size in enumerate(output_size, start=1):
        length = x.shape[axis]
        if size is None or size == length:
            continue
        start, end = adaptive_windows(length, size)
        extended = np.concatenate([x, np.take(x, [0], axis=axis)], axis=axis)
        indices = np.stack([start, end], axis=1).ravel()
        reduced = np.maximum.reduceat(extended, indices, axis=axis)
        del extended
        x = np.take(reduced, np.arange(0, 2 * size, 2), axis=axis)
        del reduced                       # not held while the next axis is reduced
    return x


def adaptive_pool_scratch(shape: Sequence[int], output_size, itemsize: int, kind: str) -> int:
    """Bytes the adaptive pools above hold at their peak beyond their input (output included), axis by axis:
    the previous axis' result, the extended copy and the reduced segments (max) or a copy of the input in the
    contraction's order (avg), and the axis' result."""
    current = list(shape)
    held, peak = 0, 0
    for axis, size in enumerate(output_size, start=1):
        length = current[axis]
        if size is None or size == length:
            continue
        numel = math.prod(current)
        after = numel // length * size
        # max: the input extended by one element along the axis, reduced to 2·size segments, the even ones taken;
        # avg: a strided input (channels-first view) is copied in the contraction's order first
        if kind == "max":
            step = (numel // length * (length + 1 + 2 * size) + after) * itemsize
        else:
            step = (numel + 2 * after) * itemsize
        peak = max(peak, held + step)
        held = after * itemsize
        current[axis] = size
    return max(peak, held)


# ------------------------------------------------------------------------------------------------ normalization

def channel_shape(ndim: int, channel_axis: int, channels: int) -> tuple[int, ...]:
    shape = [1] * ndim
    shape[channel_axis] = channels
    return tuple(shape)


def batch_norm(x: np.ndarray, *, channel_axis: int, mean, var, weight, bias, eps: float,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """Inference batch norm folded into one multiply and one add per element: ``x·scale + shift`` with
    ``scale = weight/√(var + eps)``, ``shift = bias − mean·scale``. ``mean``/``var`` ``None``: the batch's own
    statistics (PyTorch's behaviour when running statistics are not tracked)."""
    channels = x.shape[channel_axis]
    shape = channel_shape(x.ndim, channel_axis, channels)
    if mean is None:
        axes = tuple(a for a in range(x.ndim) if a != channel_axis % x.ndim)
        mean = x.mean(axis=axes, dtype=np.float64)
        var = x.var(axis=axes, dtype=np.float64)
    scale, shift = batch_norm_coefficients(mean, var, weight, bias, eps, x.dtype)
    out = np.multiply(x, scale.reshape(shape), out=out)
    out += shift.reshape(shape)
    return out


def batch_norm_coefficients(mean, var, weight, bias, eps: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(scale, shift)`` in ``dtype`` (computed in float64): inference BatchNorm is
    ``x·scale + shift`` (PyTorch's CPU inference formula)."""
    scale = 1.0 / np.sqrt(np.asarray(var, dtype=np.float64) + eps)
    if weight is not None:
        scale = scale * weight
    shift = -np.asarray(mean, dtype=np.float64) * scale
    if bias is not None:
        shift = shift + bias
    return scale.astype(dtype), shift.astype(dtype)


def _normalize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(np.square(centered), axis=axes, keepdims=True)
    centered /= np.sqrt(var + eps)
    return centered


def layer_norm(x: np.ndarray, *, normalized_dims: int, weight, bias, eps: float) -> np.ndarray:
    out = _normalize(x, tuple(range(x.ndim - normalized_dims, x.ndim)), eps)
    if weight is not None:
        out *= weight
    if bias is not None:
        out += bias
    return out


def group_norm(x: np.ndarray, *, channel_axis: int, groups: int, weight, bias, eps: float) -> np.ndarray:
    """Statistics over (channels of the group × spatial positions) per example."""
    xc = np.moveaxis(x, channel_axis, 1)
    shape = xc.shape
    grouped = xc.reshape(shape[0], groups, -1)
    out = _normalize(grouped, (2,), eps).reshape(shape)
    cshape = channel_shape(out.ndim, 1, shape[1])
    if weight is not None:
        out *= weight.reshape(cshape)
    if bias is not None:
        out += bias.reshape(cshape)
    return np.moveaxis(out, 1, channel_axis)


# -------------------------------------------------------------------------------------------------- activations

def sigmoid(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    with np.errstate(over="ignore"):            # exp(−x) = inf for very negative x gives the right limit 0
        out = np.negative(x, out=out)
        np.exp(out, out=out)
        out += 1
        return np.reciprocal(out, out=out)


_ERF_PIECES: list = []


def _erf_pieces():
    """Chebyshev interpolants of erf on [0, 1), [1, 2), …, [5, 6), degree 24, built once from ``math.erf``:
    absolute error below 1e-15 (NumPy has no erf; checked in the tests)."""
    if not _ERF_PIECES:
        from numpy.polynomial import Chebyshev
        erf = np.vectorize(math.erf)
        _ERF_PIECES.extend(Chebyshev.interpolate(erf, 24, domain=[i, i + 1]) for i in range(6))
    return _ERF_PIECES


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, element-wise (odd; 1 beyond 6, where 1 − erf < 2e-17)."""
    magnitude = np.abs(x).astype(np.float64)
    result = np.ones_like(magnitude)
    piece = np.floor(magnitude).astype(np.int64)
    for i, poly in enumerate(_erf_pieces()):
        mask = piece == i
        if mask.any():
            result[mask] = poly(magnitude[mask])
    return (np.copysign(result, x)).astype(x.dtype)


#: elements per block of the element-wise kernels that need temporaries (gelu): the temporaries of one block
#: (erf works in float64) stay a few MiB whatever the size of the array, and in the CPU cache
ELEMENTWISE_BLOCK = 2**16

#: bytes per element of a block's temporaries in ``gelu`` (an upper bound: the buffered input and output, erf's
#: float64 magnitude, result, piece index, mask and the polynomial's work arrays, measured in bench_memory.py)
GELU_BLOCK_BYTES_PER_ELEMENT = 160


def elementwise_scratch(numel: int, bytes_per_element: int) -> int:
    """Bytes of temporaries of a blocked element-wise kernel on ``numel`` elements."""
    return min(numel, ELEMENTWISE_BLOCK) * bytes_per_element


def _blocked(x: np.ndarray, fn, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``fn`` applied block by block (``ELEMENTWISE_BLOCK`` elements) into ``out`` (a new array if None; may be
    ``x`` itself: each block is read before it is written). The same operations on every element as one call on
    the whole array, with temporaries bounded by the block size."""
    if out is None:
        out = np.empty(x.shape, dtype=x.dtype)
    if x.size == 0:
        return out
    iterator = np.nditer([x, out], flags=["external_loop", "buffered", "zerosize_ok"],
                         op_flags=[["readonly"], ["writeonly", "no_broadcast"]], buffersize=ELEMENTWISE_BLOCK,
                         order="K")
    with iterator:
        for block, target in iterator:
            target[...] = fn(block)
    return out


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    inner = np.sqrt(2 / np.pi).astype(x.dtype) * (x + x.dtype.type(0.044715) * x * x * x)
    return x.dtype.type(0.5) * x * (1 + np.tanh(inner))


def _gelu_erf(x: np.ndarray) -> np.ndarray:
    return x.dtype.type(0.5) * x * (1 + erf(x / x.dtype.type(math.sqrt(2))))


def gelu(x: np.ndarray, approximate: str = "none", out: Optional[np.ndarray] = None) -> np.ndarray:
    """GELU (exact, with erf, or PyTorch's tanh approximation), computed in blocks (see ``_blocked``)."""
    return _blocked(x, _gelu_tanh if approximate == "tanh" else _gelu_erf, out)


def leaky_relu(x: np.ndarray, negative_slope: float, out: Optional[np.ndarray] = None) -> np.ndarray:
    """``x`` where ``x > 0``, else ``x · slope`` (NaN stays NaN), with one boolean mask as the only temporary."""
    slope = x.dtype.type(negative_slope)
    if out is x:
        return np.multiply(x, slope, out=x, where=x <= 0)    # NaN stays NaN either way
    out = np.multiply(x, slope, out=out)
    np.copyto(out, x, where=x > 0)
    return out


def hardsigmoid(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    out = np.add(x, 3, out=out)
    np.clip(out, 0, 6, out=out)
    out /= 6
    return out


def softmax(x: np.ndarray, axis: int, out: Optional[np.ndarray] = None) -> np.ndarray:
    """The numerically stable softmax along ``axis`` (``out=x``: in place, attention's scores)."""
    out = np.subtract(x, x.max(axis=axis, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=axis, keepdims=True)
    return out


def linear(x: np.ndarray, weight: np.ndarray, bias: Optional[np.ndarray], counter: MacCounter) -> np.ndarray:
    """``x @ weight.T + bias`` on the last dim (weight ``[out, in]``, PyTorch's layout): one BLAS product over every
    row of the leading dims, counting rows·in·out multiply-accumulates."""
    rows = x.reshape(-1, x.shape[-1])
    y = rows @ weight.T
    counter.add(rows.shape[0] * weight.shape[1] * weight.shape[0])
    if bias is not None:
        y += bias
    return y.reshape(*x.shape[:-1], weight.shape[0])
