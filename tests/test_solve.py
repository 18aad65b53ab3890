"""Inverse solving: every answer, plugged back into the forward formula (written out here), gives the wanted size.

The forward formulas below are PyTorch's, as documented for ``nn.Conv1d`` / ``nn.ConvTranspose1d`` /
``nn.MaxPool1d`` — restated independently of layercalc.shapes so the test can fail if the solver and the
calculator drift together.
"""

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from layercalc.errors import SpecError
from layercalc.solving import MAX_DILATION, MAX_KERNEL, MAX_STRIDE, Solution
from layercalc.solving import search as solve


def conv_out(n, k, s, p, d):
    """torch.nn.Conv1d: L_out = floor((L_in + 2·padding − dilation·(kernel − 1) − 1) / stride + 1)."""
    return math.floor((n + 2 * p - d * (k - 1) - 1) / s + 1)


def transposed_out(n, k, s, p, d, op):
    """torch.nn.ConvTranspose1d: (L_in − 1)·stride − 2·padding + dilation·(kernel − 1) + output_padding + 1."""
    return (n - 1) * s - 2 * p + d * (k - 1) + op + 1


def pool_ceil_out(n, k, s, p, d):
    """torch.nn.MaxPool1d with ceil_mode: ceil((L + 2p − d(k − 1) − 1) / s) + 1, minus one if the last window
    would start in the right padding."""
    out = math.ceil((n + 2 * p - d * (k - 1) - 1) / s) + 1
    if (out - 1) * s >= n + p:
        out -= 1
    return out


def test_resnet_stem_example():
    # 224 → 112 with a 7-wide kernel: floor((224 + 2p − 6 − 1)/s) + 1 = 112. With s = 1 padding would have to be
    # negative; with s = 2: (217 + 2p) // 2 = 111 → 2p ∈ {5, 6} → p = 3 (d = 1). With s ≥ 3 the output is at
    # most floor((217 + 2·6)/3) + 1 = 77. Dilation 2 (span 13): (211 + 2p)//2 = 111 → p = 6, and so on.
    answers = solve(224, 112, kernel=7).answers
    assert answers[0] == Solution(7, 2, 3, 1, 0)
    assert {(a.stride, a.padding, a.dilation) for a in answers} == {(2, 3, 1), (2, 6, 2), (2, 9, 3), (2, 12, 4)}


def test_same_size_convolutions_with_stride_1():
    # 28 → 28 with stride 1 and dilation 1: 28 + 2p − k + 1 = 28 → k = 2p + 1 (odd kernels, "same" padding).
    answers = solve(28, 28, stride=1, dilation=1).answers
    assert [(a.kernel, a.padding) for a in answers] == [(1, 0), (3, 1), (5, 2), (7, 3), (9, 4), (11, 5)]


def test_transposed_doubling():
    # (7 − 1)·2 − 2p + (3 − 1) + op + 1 = 15 − 2p + op = 14 → p = 1, op = 1 (op < stride 2).
    answers = solve(7, 14, kernel=3, stride=2, dilation=1, transposed=True).answers
    assert answers == [Solution(3, 2, 1, 1, 1)]


def test_no_solution_gives_nearest():
    # 10 → 20 without transposing: a convolution never enlarges beyond L + 2p − span + 1 ≤ 10 + 2(span − 1) −
    # span + 1 = 10 + span − 1; with kernel 3, stride 1, dilation 1 that is at most 12.
    found = solve(10, 20, kernel=3, stride=1, dilation=1)
    assert found.answers == []
    assert found.nearest[0][0] == 12


def test_output_one_lists_the_smallest_stride():
    # 7 → 1 with kernel 7, padding 0: span 7 − 7 = 0, a single window for every stride ≥ 1.
    assert solve(7, 1, kernel=7, padding=0, dilation=1).answers == [Solution(7, 1, 0, 1, 0)]
    # 7 → 1 with kernel 3, padding 0: (7 − 3) // s + 1 = 1 needs s > 4, so the smallest stride is 5.
    found = solve(7, 1, kernel=3, padding=0, dilation=1)
    assert found.answers == [Solution(3, 5, 0, 1, 0)]
    assert "smallest" in found.note
    # 100 → 1 with kernel 3: stride 98 (beyond the default bound of 8, still listed: it is the only kind of answer)
    assert solve(100, 1, kernel=3, padding=0, dilation=1).answers == [Solution(3, 98, 0, 1, 0)]


def test_ceil_mode_output_one_needs_a_stride_past_the_input():
    # 100 → 1, kernel 3, padding 0, ceil mode: ceil(97 / s) + 1 ≥ 2 for every stride, so the output is 1 only when
    # PyTorch drops the 2nd window, which starts at s: s ≥ L + p = 100. Strides 97..99 give 2 windows.
    # (Floor mode, a convolution: 97 // s + 1 = 1 already for s = 98.)
    assert pool_ceil_out(100, 3, 99, 0, 1) == 2 and pool_ceil_out(100, 3, 100, 0, 1) == 1
    assert solve(100, 1, kernel=3, padding=0, dilation=1, ceil_mode=True).answers == [Solution(3, 100, 0, 1, 0)]
    assert solve(100, 1, kernel=3, padding=0, dilation=1).answers == [Solution(3, 98, 0, 1, 0)]
    # padding 1: the 2nd window is dropped from s ≥ 101 on
    assert solve(100, 1, kernel=3, padding=1, dilation=1, ceil_mode=True).answers == [Solution(3, 101, 1, 1, 0)]
    # kernel 5 on 4 inputs (span −1): ceil(−1 / s) + 1 = 1 once s ≥ 2 (s = 1 gives 0: PyTorch refuses it)
    assert pool_ceil_out(4, 5, 1, 0, 1) == 0 and pool_ceil_out(4, 5, 2, 0, 1) == 1
    assert solve(4, 1, kernel=5, padding=0, dilation=1, ceil_mode=True).answers == [Solution(5, 2, 0, 1, 0)]


@settings(max_examples=150)
@given(n=st.integers(1, 300), k=st.integers(1, MAX_KERNEL), d=st.integers(1, MAX_DILATION), p=st.integers(0, 5))
def test_ceil_mode_single_window_is_the_smallest_stride(n, k, d, p):
    p = min(p, k // 2)                                       # PyTorch's pooling rule
    top = n + 2 * p + d * (k - 1) + 2                        # a stride longer than everything: one window at most
    ones = [s for s in range(1, top + 1) if pool_ceil_out(n, k, s, p, d) == 1]
    if ones:
        assert ones == list(range(ones[0], top + 1))        # every larger stride gives 1 too
    expected = [Solution(k, ones[0], p, d, 0)] if ones else []
    assert solve(n, 1, kernel=k, padding=p, dilation=d, ceil_mode=True).answers == expected


def test_bad_arguments():
    with pytest.raises(SpecError, match="output must be ≥ 1"):
        solve(10, 0)
    with pytest.raises(SpecError, match="transposed"):
        solve(10, 5, output_padding=1)
    # pooling (ceil mode): PyTorch allows padding ≤ kernel // 2 = 1 for kernel 3
    with pytest.raises(SpecError, match="padding 2 must be at most half the kernel 3"):
        solve(28, 15, kernel=3, padding=2, ceil_mode=True)
    with pytest.raises(SpecError, match="kernel of at least 12"):          # 12 // 2 = 6
        solve(28, 5, padding=6, ceil_mode=True)
    assert solve(28, 5, padding=6, ceil_mode=True, max_kernel=12).answers       # kernel 12 is then searched


@settings(max_examples=120)
@given(n=st.integers(1, 300), k=st.integers(1, MAX_KERNEL), s=st.integers(1, MAX_STRIDE),
       d=st.integers(1, MAX_DILATION), p=st.integers(0, 12), fixed=st.sets(st.sampled_from("kspd"), max_size=3))
def test_answers_plug_back_into_the_forward_formula(n, k, s, p, d, fixed):
    span = d * (k - 1) + 1
    assume(p <= span - 1)                       # inside the solver's default padding bound
    out = conv_out(n, k, s, p, d)
    assume(out >= 1)
    given_values = {"kernel": k if "k" in fixed else None, "stride": s if "s" in fixed else None,
                    "padding": p if "p" in fixed else None, "dilation": d if "d" in fixed else None}
    found = solve(n, out, **given_values)
    assert found.answers, (n, out, given_values)
    for a in found.answers:
        assert conv_out(n, a.kernel, a.stride, a.padding, a.dilation) == out
        for name, value in given_values.items():
            if value is not None:
                assert getattr(a, name) == value
    if out > 1 or "s" in fixed:
        assert Solution(k, s, p, d, 0) in found.answers
    else:                                       # output 1: the smallest stride with a single window is listed
        listed = [a for a in found.answers if (a.kernel, a.padding, a.dilation) == (k, p, d)]
        assert len(listed) == 1 and listed[0].stride <= s
    keys = [(a.dilation, a.kernel, a.stride, a.padding) for a in found.answers]
    assert keys == sorted(keys)


@settings(max_examples=100)
@given(n=st.integers(1, 64), k=st.integers(1, 7), s=st.integers(1, 4), d=st.integers(1, 3), p=st.integers(0, 6),
       op=st.integers(0, 3), fix_kernel=st.booleans())
def test_transposed_answers_plug_back(n, k, s, d, p, op, fix_kernel):
    assume(op < max(s, d))
    assume(p <= d * (k - 1))
    out = transposed_out(n, k, s, p, d, op)
    assume(out >= 1)
    found = solve(n, out, kernel=k if fix_kernel else None, dilation=d, stride=s, transposed=True, max_kernel=7)
    assert Solution(k, s, p, d, op) in found.answers
    for a in found.answers:
        assert transposed_out(n, a.kernel, a.stride, a.padding, a.dilation, a.output_padding) == out
        assert a.output_padding < max(a.stride, a.dilation)


@settings(max_examples=80)
@given(n=st.integers(1, 100), k=st.integers(1, 6), s=st.integers(1, 4), p=st.integers(0, 3))
def test_ceil_mode_answers_plug_back(n, k, s, p):
    assume(p <= k // 2 and n + 2 * p >= k)
    out = pool_ceil_out(n, k, s, p, 1)
    assume(out >= 1)
    found = solve(n, out, dilation=1, ceil_mode=True, max_kernel=6, max_stride=4)
    if out > 1:
        assert Solution(k, s, p, 1, 0) in found.answers
    else:
        listed = [a for a in found.answers if (a.kernel, a.padding) == (k, p)]
        assert len(listed) == 1 and listed[0].stride <= s
    for a in found.answers:
        assert pool_ceil_out(n, a.kernel, a.stride, a.padding, a.dilation) == out
        assert a.padding <= a.kernel // 2
