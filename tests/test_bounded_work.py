"""Every analysis costs what its answer costs, not what its numbers are.

Unread borders and gaps, the input span of a transposed conv, adaptive windows and the receptive-field jump are
computed in closed form. Each mechanism is checked two ways:

- against a brute-force walk (every window, every tap, every output) on small cases, with hypothesis;
- on a huge case, in a fresh interpreter with a wall-clock limit, against an answer derived by hand in the test
  (these used to loop once per position, tap or output: tens of seconds and gigabytes, or a vague
  "too long an input to list them").
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import layercalc
from layercalc.coverage import Unread, WindowCover, floor_sum, unread_between_windows
from layercalc.explain import coverage_note
from layercalc.layers.conv import transposed_input_span
from layercalc.shapes import adaptive_window_max, adaptive_window_min, adaptive_window_total

LIMIT_SECONDS = 10      # each huge case takes well under a second; before the closed forms: 20 s to minutes


def examples(count: int) -> settings:
    return settings(max_examples=count, derandomize=True, database=None, deadline=None)


def bounded(code: str) -> str:
    """Run ``code`` in a fresh interpreter; what it prints. Fails if it takes longer than LIMIT_SECONDS."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=LIMIT_SECONDS)
    assert done.returncode == 0, done.stderr
    return done.stdout


def cli(*args) -> str:
    """``layercalc ARGS`` in a fresh interpreter, bounded like :func:`bounded`."""
    argv = ["layercalc", *map(str, args), "--wide"]       # whole lines (fitting them: tests/test_widths.py)
    return bounded(f"import sys; from layercalc.cli import main; sys.argv = {argv!r}; main()")


# ------------------------------------------------------------------------------------------ brute-force walks

def window_starts(n, k, s, pb, pa, d, ceil_mode=False) -> list[int]:
    """Start of every window in padded coordinates, by walking: a window must fit in the padded input (floor), or
    (ceil mode, PyTorch) may hang over its end by less than a stride but must start inside the input or the left
    padding."""
    padded, span = n + pb + pa, d * (k - 1) + 1
    if padded < span:
        return []
    starts, start = [], 0
    while start + span <= padded + (s - 1 if ceil_mode else 0) and (not ceil_mode or start < n + pb):
        starts.append(start)
        start += s
    return starts


def never_read(n, k, s, pb, pa, d, ceil_mode=False) -> list[int]:
    read = {start + t * d - pb for start in window_starts(n, k, s, pb, pa, d, ceil_mode) for t in range(k)}
    return [i for i in range(n) if i not in read]


def runs_of(positions: list[int]) -> list[tuple[int, int]]:
    runs: list[list[int]] = []
    for p in positions:
        if runs and runs[-1][1] == p - 1:
            runs[-1][1] = p
        else:
            runs.append([p, p])
    return [tuple(r) for r in runs]


geometry = st.tuples(st.integers(1, 60), st.integers(1, 7), st.integers(1, 9), st.integers(0, 4), st.integers(0, 4),
                     st.integers(1, 5), st.booleans())


# ------------------------------------------------------------------------------ unread positions: closed form

@examples(300)
@given(geometry, st.data())
def test_window_cover_matches_a_walk_over_every_window_and_tap(geom, data):
    n, k, s, pb, pa, d, ceil_mode = geom
    if ceil_mode:                                    # PyTorch pooling: padding at most half the kernel
        pb, pa = min(pb, k // 2), min(pa, k // 2)
    starts = window_starts(n, k, s, pb, pa, d, ceil_mode)
    assume(starts)
    cover = WindowCover(n, k, s, pb, pa, d, ceil_mode)
    assert cover.windows == len(starts)
    unread = set(never_read(n, k, s, pb, pa, d, ceil_mode))
    lo = data.draw(st.integers(0, n), label="lo")
    hi = data.draw(st.integers(lo, n), label="hi")
    inside = sorted(p for p in unread if lo <= p < hi)
    assert cover.unread(lo, hi) == len(inside)
    assert cover.read(lo, hi) == hi - lo - len(inside)
    expected_runs = [(max(a, lo), min(b, hi - 1)) for a, b in runs_of(inside)]
    assert list(cover.runs(lo, hi)) == expected_runs
    assert list(cover.runs(lo, hi, 2)) == expected_runs[:2]
    assert cover.last_run(lo, hi) == (expected_runs[-1] if expected_runs else None)
    summary = Unread.of(cover, lo, hi)
    assert (summary.count, summary.first, summary.last) == (len(inside), expected_runs[:5],
                                                             expected_runs[-1] if expected_runs else None)


@examples(200)
@given(geometry)
def test_gaps_between_windows_match_the_walk(geom):
    n, k, s, pb, pa, d, ceil_mode = geom
    if ceil_mode:
        pb, pa = min(pb, k // 2), min(pa, k // 2)
    starts = window_starts(n, k, s, pb, pa, d, ceil_mode)
    assume(starts)
    end = starts[-1] + d * (k - 1) + 1 - pb                      # first position after the last window's last tap
    gaps = [p for p in never_read(n, k, s, pb, pa, d, ceil_mode) if p < end]
    found = unread_between_windows(n, k, s, pb, pa, d, ceil_mode)
    assert found.count == len(gaps)
    if gaps:
        assert found.first == runs_of(gaps)[:5] and found.last == runs_of(gaps)[-1]


@examples(200)
@given(st.integers(0, 40), st.integers(1, 50), st.integers(0, 3000), st.integers(0, 3000))
def test_floor_sum_is_the_sum(count, m, a, b):
    assert floor_sum(count, m, a, b) == sum((a * i + b) // m for i in range(count))


def test_huge_stride_names_the_tail_at_once():
    # 10^8 positions, kernel 2, stride 10^8 − 1: floor((10^8 − 2)/(10^8 − 1)) + 1 = 1 window, reading 0 and 1, so
    # 2..99999999 are never read. One window has no "between": no gap note (it used to say "too long an input to
    # list them", after 19 s and 4 GB).
    out = cli("conv1d", "--input", "1x100000000", "--out-channels", 1, "-k", 2, "-s", 99999999)
    assert "output shape     [1, 1, 1]" in out
    assert ("the output is floored to 1 and input positions 2..99999999 (of 0..99999999) are never read" in out)
    assert "between the windows" not in out and "too long" not in out


def test_dilation_holes_of_a_huge_input_are_counted_exactly():
    # 10^9 positions, kernel 5·10^7 with dilation 2 (span 10^8 − 1), stride 2: every position any window reads is
    # even (starts and taps both are), and every even one up to the last window's end is read (consecutive windows
    # shift the taps by 2). out = (10^9 − 99999999) // 2 + 1 = 450000001; the last window starts at 900000000 and
    # ends at 999999998. So odd 1..999999997 fall between taps (499999999 of them) and 999999999 is the tail.
    out = cli("conv1d", "--input", "1x1000000000", "--out-channels", 1, "-k", 50000000, "-d", 2, "-s", 2)
    assert "output shape     [1, 1, 450000001]" in out
    assert ("input positions 1, 3, 5, 7, …, 999999997 (499999999 in all) fall between the windows' taps (kernel "
            "50000000, stride 2, dilation 2) and are never read") in out
    assert "input position 999999999 (of 0..999999999) is never read" in out


def test_coprime_stride_and_dilation_leave_one_hole_at_each_end():
    # Tap t of window o reads p = 3t + 2o (t < k, o < out). Every p ≤ 2·(out − 1) + 1 but 1 is read: t = p mod 2,
    # o = (p − 3t)/2 ≤ out − 1. The map p → M − p (t → k − 1 − t, o → out − 1 − o), M the last position read,
    # keeps read positions read, so every p ≥ M − 2·(out − 1) − 1 but M − 1 is read too, and the two ranges meet
    # when 3·(k − 1) ≤ 2·(out − 1) + 3. 10^9 positions, kernel 5·10^7, dilation 3 (span 149999998), stride 2:
    # out = (10^9 − 149999998) // 2 + 1 = 425000002, M = 2·425000001 + 149999997 = 999999999 = the last input.
    out = cli("conv1d", "--input", "1x1000000000", "--out-channels", 1, "-k", 50000000, "-d", 3, "-s", 2,
              "--explain")
    assert "input positions 1, 999999998 (2 in all) fall between the windows' taps" in out
    assert "input positions 1, 999999998 (of 0..999999999) are never read" in out        # --explain's line
    assert "is not a multiple of stride" not in out                                      # 850000002 is even


def test_long_dilated_kernel_with_huge_padding_is_arithmetic():
    # 1,000 positions, kernel 5·10^7 taps with dilation 2 (span 99999999), padding 5·10^7 each side, stride 1:
    # out = 1000 + 10^8 − 99999999 = 1001 + 1 = 1002 windows; windows 0 and 1 alone already read both parities of
    # every real position p (tap (p + 5·10^7 − o)/2 ≤ 5·10^7 − 1), and 1001 is a multiple of stride 1: no notes.
    # This looped over the 5·10^7 taps (55 s).
    out = cli("conv1d", "--input", "1x1000", "--out-channels", 1, "-k", 50000000, "-d", 2, "-p", 50000000,
              "--explain")
    assert "output shape     [1, 1, 1002]" in out and "never" not in out and "notes" not in out


def test_size_note_for_a_huge_input_lists_gaps_and_tail():
    # 10^12 positions, kernel 2, stride 3: windows at 0, 3, …, 3·333333333332 = 999999999996 (reading …996..…997);
    # 2, 5, 8, … fall between windows (333333333332 gaps) and …998..…999 is the tail: 333333333334 in all.
    assert coverage_note(10**12, 2, 3) == ("input positions 2, 5, 8, 11, …, 999999999998..999999999999 "
                                           "(333333333334 in all) (of 0..999999999999) are never covered by any "
                                           "window")
    out = cli("size", 10**12, "-k", 2, "-s", 3)
    assert "(333333333334 in all)" in out and "too many" not in out


# ----------------------------------------------------------------------------- transposed conv: input span

def scattered_span(kernel: int, stride: int, dilation: int) -> int:
    """Scatter every input through every tap (input i, tap t → output i·s + t·d) and take the widest spread of
    inputs one output receives, on an input long enough for some output to get a whole residue class."""
    length = kernel * dilation + 2
    sources: dict[int, list[int]] = {}
    for i in range(length):
        for t in range(kernel):
            sources.setdefault(i * stride + t * dilation, []).append(i)
    return max(max(v) - min(v) + 1 for v in sources.values())


@examples(200)
@given(st.integers(1, 12), st.integers(1, 7), st.integers(1, 6))
def test_transposed_input_span_matches_a_scatter(kernel, stride, dilation):
    assert transposed_input_span(kernel, stride, dilation) == scattered_span(kernel, stride, dilation)


def test_transposed_input_span_of_huge_kernels():
    # stride 3, no dilation: the taps ≡ 0 mod 3 (ceil(10^18 / 3) = 333333333333333334 of them) feed one output
    # from that many consecutive inputs. Stride 4, dilation 6: 6t mod 4 is 0 for even t, 2 for odd t; the 5·10^17
    # even taps sit 12 / 4 = 3 inputs apart: (5·10^17 − 1)·3 + 1.
    printed = bounded("from layercalc.layers.conv import transposed_input_span as f; "
                      "print(f(10**18, 3), f(10**18, 4, 6))").split()
    assert printed == [str(333333333333333334), str((5 * 10**17 - 1) * 3 + 1)]
    # the CLI: 10^8 taps, stride 3 → ceil(10^8 / 3) = 33333334 inputs (it took 22 s and 4 GB)
    out = cli("conv_transpose1d", "--input", "1x8", "--out-channels", 1, "-k", 100000000, "-s", 3)
    assert "receptive field  33333334 " in out
    assert "output shape     [1, 1, 100000021]" in out                                  # 7·3 + 10^8


# ------------------------------------------------------------------------------------------ adaptive pooling

@examples(200)
@given(st.integers(1, 80), st.integers(1, 80))
def test_adaptive_window_closed_forms_match_the_windows(length, output):
    # PyTorch's windows, by their definition: [floor(i·L/out), ceil((i + 1)·L/out))
    sizes = [-(-(i + 1) * length // output) - i * length // output for i in range(output)]
    assert adaptive_window_total(length, output) == sum(sizes)
    assert adaptive_window_max(length, output) == max(sizes)
    assert adaptive_window_min(length, output) == min(sizes)


def test_adaptive_pooling_to_huge_outputs():
    # 10^9 → 10^8: every window is 10 wide: 10^9 elements summed, field 10 (it took 51 s)
    out = cli("adaptive_avgpool1d", "--input", "1x1000000000", "--output-size", 100000000)
    assert "FLOPs            1,000,000,000 " in out and "receptive field  10 " in out
    # 10^9 → 100000007 (a prime, coprime with 10^9): L + out − gcd = 1100000006 elements; the windows are
    # ceil(10^9 / 100000007) = 10 or ceil((10^9 + 100000006) / 100000007) = 11 wide
    out = cli("adaptive_avgpool1d", "--input", "1x1000000000", "--output-size", 100000007, "--explain")
    assert "FLOPs            1,100,000,006 " in out and "receptive field  11 " in out
    assert "window sizes between 10 and 11, 1100000006 elements in all" in out


# ----------------------------------------------------------------------------------------------- jump: exact

def test_jump_above_two_to_the_53_is_exact():
    # stride 2^53 + 1 (odd: a float rounds it to 2^53); then stride 3: 3·(2^53 + 1)
    big = 2**53 + 1
    report = layercalc.load({"input": [1, 2**54], "layers": [
        {"type": "conv1d", "out_channels": 1, "kernel_size": 1, "stride": big},
        {"type": "conv1d", "out_channels": 1, "kernel_size": 2, "stride": 3}]}).analyze()
    first, second = report.layers
    assert first.jump == [big] and type(first.jump[0]) is int
    assert second.jump == [3 * big] and second.receptive_field == [1 + big]          # 1 + (2 − 1)·jump
    dumped = json.loads(report.model_dump_json())
    assert dumped["layers"][0]["jump"] == [big] and dumped["layers"][1]["jump"] == [3 * big]


def test_fractional_jump_stays_a_float_and_whole_ones_are_ints():
    # a 2-stride transposed conv halves the jump: 1/2 of an input pixel
    report = layercalc.load({"input": [1, 16], "layers": [
        {"type": "conv1d", "out_channels": 1, "kernel_size": 3, "stride": 2},
        {"type": "conv_transpose1d", "out_channels": 1, "kernel_size": 2, "stride": 4}]}).analyze()
    assert report.layers[0].jump == [2] and type(report.layers[0].jump[0]) is int
    assert report.layers[1].jump == [0.5] and type(report.layers[1].jump[0]) is float          # 2 / 4


# ---------------------------------------------------------------------------------------- tail note wording

def notes_of(length: int, layer: dict) -> list[str]:
    return layercalc.load({"input": [1, length], "layers": [layer]}).analyze().layers[0].notes


def test_tail_note_names_input_positions_and_mentions_padding_only_when_padded():
    # 28, kernel 3, stride 2, no padding: windows start at 0..24, the last ends at 26: input position 27 only
    tail = notes_of(28, {"type": "conv1d", "out_channels": 1, "kernel_size": 3, "stride": 2})
    assert len(tail) == 1 and tail[0].endswith("input position 27 (of 0..27) is never read")
    assert "padd" not in tail[0].split(":", 2)[2]
    # 10 + 1 padded after, kernel 3, stride 3: windows at 0, 3, 6 read 0..8; padded positions 9 (input 9) and 10
    # (padding) are left
    tail = notes_of(10, {"type": "conv1d", "out_channels": 1, "kernel_size": 3, "stride": 3, "padding": [[0, 1]]})
    assert tail[-1].endswith("input position 9 (of 0..9) and 1 padded position are never read")
    # ResNet's stem, 224 + 3 + 3, kernel 7, stride 2: (230 − 7) = 223, one left over: the last padded column
    tail = notes_of(224, {"type": "conv1d", "out_channels": 1, "kernel_size": 7, "stride": 2, "padding": 3})
    assert tail[-1].endswith("the last 1 padded position is never read (only padding: no input value is lost)")


def test_two_d_tail_note_says_row_and_column():
    # the README's MNIST CNN: 11 → maxpool 2: windows at 0, 2, …, 8 read 0..9; row (and column) 10 is never read
    report = layercalc.load(str(Path(__file__).resolve().parent.parent / "examples" / "mnist_cnn.yaml")).analyze()
    notes = report.layer("maxpool2d_5").notes
    assert notes[0].endswith("floored to 5 and input row 10 (of 0..10) is never read")
    assert notes[1].endswith("floored to 5 and input column 10 (of 0..10) is never read")


@pytest.mark.parametrize("axis", ["H", "W"])
def test_tail_note_long_unpadded_range(axis):
    # 100 rows, kernel 1, stride 40: windows at 0, 40, 80; 81..99 never read (19 rows)
    report = layercalc.load({"input": [1, 100, 100], "layers": [
        {"type": "maxpool2d", "kernel_size": 1, "stride": 40}]}).analyze()
    note = next(n for n in report.layers[0].notes if n.startswith(f"{axis}: (input"))
    word = {"H": "rows", "W": "columns"}[axis]
    assert note.endswith(f"floored to 3 and input {word} 81..99 (of 0..99) are never read")
