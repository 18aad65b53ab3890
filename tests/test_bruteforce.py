"""Property tests: layercalc's 1-D window arithmetic against plain Python loops that simulate it.

Each loop below is the definition, not a formula: it walks start positions, scatters kernel taps, or propagates
the set of input positions each output depends on. layercalc is driven through a one-layer (or chain) network
analysis, the way a user runs it, plus its pure helpers in ``layercalc.shapes`` where the report does not expose
the figure.
"""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import layercalc
from layercalc import LayerCalcError, ShapeError
from layercalc.shapes import adaptive_window_sizes, uncovered_after

SCALE = int(os.environ.get("LAYERCALC_ORACLE_SCALE", "1"))


def examples(count: int) -> settings:
    """``count`` derandomized examples; ``LAYERCALC_ORACLE_SCALE=20``: 20 times more, freshly random."""
    return settings(max_examples=count * SCALE, derandomize=SCALE == 1, database=None, deadline=None)


def analyze(length: int, layers: list[dict], channels: int = 1):
    return layercalc.load({"input": [channels, length], "layers": layers}).analyze()


def last_length(length: int, layer: dict):
    """The output length of a one-layer network, or the LayerCalcError raised."""
    try:
        return analyze(length, [layer]).layers[-1].output_shape[-1]
    except LayerCalcError as exc:
        return exc


# ---------------------------------------------------------------------------------------- brute-force loops

def span_of(kernel: int, dilation: int) -> int:
    """Positions from a window's first tap to its last, counted by listing the taps."""
    taps = [j * dilation for j in range(kernel)]
    return taps[-1] - taps[0] + 1


def window_starts(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode=False) -> list[int]:
    """Start positions (in padded coordinates) of every window, found by walking the padded input.

    Without ceil_mode a window must lie inside the padded input. With ceil_mode (PyTorch) the division is
    rounded up: the last window may hang past the end by up to stride − 1 positions, but a window must start
    inside the input or the left padding.
    """
    padded = length + pad_before + pad_after
    end = padded + (stride - 1 if ceil_mode else 0)
    span = span_of(kernel, dilation)
    starts, t = [], 0
    while t + span <= end:
        if not ceil_mode or t < length + pad_before:
            starts.append(t)
        t += stride
    return starts


def read_positions(starts, kernel, dilation) -> set[int]:
    return {t + j * dilation for t in starts for j in range(kernel)}


def trailing_unread(padded: int, read: set[int]) -> int:
    """How many positions at the end of the padded input no window reads."""
    count = 0
    while count < padded and padded - 1 - count not in read:
        count += 1
    return count


def scatter_length(length, kernel, stride, dilation, crop_before, crop_after, output_padding) -> tuple[int, int]:
    """Transposed convolution by scattering: each input position writes its kernel taps at i·stride + j·dilation.

    The full output runs from 0 to the last written position, plus ``output_padding`` extra positions at the end;
    ``crop_before``/``crop_after`` (PyTorch's padding) are removed from each end. Returns (output length, writes).
    """
    written, writes = set(), 0
    for i in range(length):
        for j in range(kernel):
            written.add(i * stride + j * dilation)
            writes += 1
    full = max(written) + 1 + output_padding
    return full - crop_before - crop_after, writes


def adaptive_members(length: int, output: int, i: int) -> list[int]:
    """Input positions of adaptive window i: every j whose cell [j, j+1) overlaps [i·L/out, (i+1)·L/out)."""
    return [j for j in range(length) if (j + 1) * output > i * length and j * output < (i + 1) * length]


# ---------------------------------------------------------------------------------------- window counting

@st.composite
def windows(draw, pooling: bool):
    kernel, dilation = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    largest_pad = kernel // 2 if pooling else 6        # pooling padding is at most half the kernel (PyTorch)
    return (draw(st.integers(1, 40)), kernel, draw(st.integers(1, 5)),
            draw(st.integers(0, largest_pad)), draw(st.integers(0, largest_pad)), dilation)


@examples(150)
@given(windows(pooling=False))
def test_conv_output_length_counts_window_positions(window):
    length, kernel, stride, before, after, dilation = window
    count = len(window_starts(length, kernel, stride, before, after, dilation))
    got = last_length(length, {"type": "conv1d", "out_channels": 1, "kernel_size": kernel, "stride": stride,
                               "padding": [[before, after]], "dilation": dilation})
    if count == 0:
        assert isinstance(got, ShapeError)
    else:
        assert got == count


@pytest.mark.parametrize("kind", ["maxpool1d", "avgpool1d"])
@examples(100)
@given(window=windows(pooling=True), ceil_mode=st.booleans())
def test_pool_output_length_counts_window_positions(kind, window, ceil_mode):
    length, kernel, stride, before, after, dilation = window
    layer = {"type": kind, "kernel_size": kernel, "stride": stride, "padding": [[before, after]],
             "ceil_mode": ceil_mode}
    if kind == "maxpool1d":
        layer["dilation"] = dilation
    else:
        dilation = 1                                       # average pooling has no dilation
    count = len(window_starts(length, kernel, stride, before, after, dilation, ceil_mode))
    got = last_length(length, layer)
    if count == 0:
        assert isinstance(got, ShapeError)
    else:
        assert got == count


@examples(150)
@given(windows(pooling=False))
def test_uncovered_after_counts_unread_tail(window):
    length, kernel, stride, before, after, dilation = window
    starts = window_starts(length, kernel, stride, before, after, dilation)
    assume(starts)
    unread = trailing_unread(length + before + after, read_positions(starts, kernel, dilation))
    assert uncovered_after(length, kernel, stride, before, after, dilation) == unread
    # the report says so exactly when it happens
    notes = analyze(length, [{"type": "conv1d", "out_channels": 1, "kernel_size": kernel, "stride": stride,
                              "padding": [[before, after]], "dilation": dilation}]).layers[0].notes
    said = [n for n in notes if "is not a multiple of stride" in n]     # the tail note (gaps: their own)
    if unread:
        # the tail's input positions it names, plus the padded positions it counts, are the unread tail
        padded = re.search(r"(\d+) padded positions? (?:is|are) never read", said[0]) if len(said) == 1 else None
        assert len(said) == 1 and reported_unread_count(said[0]) + (int(padded.group(1)) if padded else 0) == unread
    else:
        assert not said


def reported_unread_count(note: str) -> int:
    """How many real input positions one note says are never read: '(N in all)', or the positions it lists."""
    total = re.search(r"\((\d+) in all\)", note)
    if total:
        return int(total.group(1))
    if "only padding" in note:
        return 0
    listed = re.search(r"(?:positions?|input L) ([\d., ]+?)(?: fall| after| \(|\))", note).group(1)
    runs = [part.split("..") for part in listed.replace(" ", "").split(",")]
    return sum(int(r[-1]) - int(r[0]) + 1 for r in runs)


@examples(200)
@given(windows(pooling=False))
def test_notes_account_for_every_input_position_no_window_reads(window):
    length, kernel, stride, before, after, dilation = window
    starts = window_starts(length, kernel, stride, before, after, dilation)
    assume(starts)
    read = read_positions(starts, kernel, dilation)
    never_read = [i for i in range(length) if i + before not in read]          # real positions, by brute force
    notes = analyze(length, [{"type": "conv1d", "out_channels": 1, "kernel_size": kernel, "stride": stride,
                              "padding": [[before, after]], "dilation": dilation}]).layers[0].notes
    assert sum(reported_unread_count(n) for n in notes if "never read" in n) == len(never_read)


@examples(200)
@given(window=windows(pooling=True), ceil_mode=st.booleans())
def test_pooling_notes_account_for_every_input_position_no_window_reads(window, ceil_mode):
    # the same for max pooling, in both rounding modes: ceil mode's extra window can reach the end, or be dropped
    # (when it would start in the right padding) and leave a tail unread
    length, kernel, stride, before, after, dilation = window
    assume(before == after)                                   # PyTorch pooling pads symmetrically
    starts = window_starts(length, kernel, stride, before, after, dilation, ceil_mode)
    assume(starts)
    read = read_positions(starts, kernel, dilation)
    never_read = [i for i in range(length) if i + before not in read]
    try:
        notes = analyze(length, [{"type": "maxpool1d", "kernel_size": kernel, "stride": stride, "padding": before,
                                  "dilation": dilation, "ceil_mode": ceil_mode}]).layers[0].notes
    except ShapeError:
        assume(False)
    assert sum(reported_unread_count(n) for n in notes if "never read" in n) == len(never_read)


# ------------------------------------------------------------------------------------ transposed convolution

@examples(150)
@given(st.integers(1, 12), st.integers(1, 5), st.integers(1, 4), st.integers(1, 3), st.integers(0, 6),
       st.integers(0, 6), st.integers(0, 3), st.integers(1, 3), st.integers(1, 3))
def test_transposed_length_matches_scatter(length, kernel, stride, dilation, crop_before, crop_after,
                                           output_padding, cin, cout):
    assume(output_padding < stride or output_padding < dilation)          # PyTorch's rule (refused otherwise)
    expected, writes = scatter_length(length, kernel, stride, dilation, crop_before, crop_after, output_padding)
    layer = {"type": "conv_transpose1d", "out_channels": cout, "kernel_size": kernel, "stride": stride,
             "dilation": dilation, "padding": [[crop_before, crop_after]], "output_padding": output_padding}
    try:
        report = analyze(length, [layer], channels=cin).layers[0]
    except ShapeError:
        assert expected < 1
        return
    assert report.output_shape == [1, cout, expected]
    # MACs are counted on input positions: every scattered write, cropped or not, for every channel pair
    assert report.macs == writes * cin * cout


# --------------------------------------------------------------------------------------------- adaptive pooling

@examples(120)
@given(st.integers(1, 40), st.integers(1, 50))
def test_adaptive_windows_match_overlap_loop(length, output):
    sizes = [len(adaptive_members(length, output, i)) for i in range(output)]
    assert list(adaptive_window_sizes(length, output)) == sizes
    assert sum(adaptive_window_sizes(length, output)) == sum(sizes)
    report = analyze(length, [{"type": "adaptive_maxpool1d", "output_size": output}]).layers[0]
    assert report.output_shape == [1, 1, output]
    assert report.receptive_field == [max(sizes)]


# ------------------------------------------------------------------------------------------- receptive field

@st.composite
def chains(draw):
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv1d", "maxpool1d", "avgpool1d"]))
        kernel, stride = draw(st.integers(1, 5)), draw(st.integers(1, 3))
        layer = {"type": kind, "kernel_size": kernel, "stride": stride,
                 "padding": draw(st.integers(0, kernel // 2 if kind != "conv1d" else 3))}
        if kind != "avgpool1d":
            layer["dilation"] = draw(st.integers(1, 3))
        if kind == "conv1d":
            layer["out_channels"] = 1
        layers.append(layer)
    return draw(st.integers(40, 120)), layers


def propagate(length: int, layers: list[dict]):
    """For every output position: the set of input positions it depends on, and whether any window on the way
    read padding. Windows are placed with the brute-force walk above."""
    deps = [frozenset([i]) for i in range(length)]
    touched = [False] * length
    for layer in layers:
        k, s, p, d = layer["kernel_size"], layer["stride"], layer["padding"], layer.get("dilation", 1)
        n = len(deps)
        new_deps, new_touched = [], []
        for start in window_starts(n, k, s, p, p, d):
            taps = [start - p + j * d for j in range(k)]               # back to unpadded coordinates
            inside = [t for t in taps if 0 <= t < n]
            new_deps.append(frozenset().union(*(deps[t] for t in inside)))
            new_touched.append(len(inside) < k or any(touched[t] for t in inside))
        deps, touched = new_deps, new_touched
    return deps, touched


@examples(120)
@given(chains())
def test_receptive_field_of_chain_matches_dependency_sets(chain):
    """Receptive field = span (first to last) of the input positions one output position depends on, for output
    positions whose windows never touch padding; all such positions see the same span."""
    length, layers = chain
    deps, touched = propagate(length, layers)
    interior = [i for i, t in enumerate(touched) if not t]
    assume(interior)
    spans = {max(deps[i]) - min(deps[i]) + 1 for i in interior}
    assert len(spans) == 1
    span = spans.pop()
    report = analyze(length, layers)
    last = report.layers[-1]
    assert last.output_shape[-1] == len(deps)
    assert last.receptive_field == [span]
    if len(interior) > 1:                                   # jump: distance between neighbouring fields
        assert last.jump == [float(min(deps[interior[1]]) - min(deps[interior[0]]))]
    # the field is a span: positions skipped by dilation or by strides wider than kernels are inside it, unread
    for i in interior:
        assert len(deps[i]) <= span
    if all(layer.get("dilation", 1) == 1 and layer["stride"] <= layer["kernel_size"] for layer in layers):
        assert all(len(deps[i]) == span for i in interior)
