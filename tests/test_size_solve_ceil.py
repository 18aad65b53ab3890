"""`size` and `solve` for pooling with ceil_mode, checked against PyTorch itself (torch is the oracle here, never a
runtime dependency of layercalc).

- solve, exhaustively on small ranges: every combination it lists gives the wanted output in torch, and every
  combination inside the searched bounds that gives it in torch is listed (for output 1: the smallest stride of
  each kernel / padding / dilation, and torch gives 1 for every larger stride too);
- PyTorch's pooling rule, padding ≤ kernel_size // 2 whatever the dilation, refused by size and solve;
- the guard on the size of solve's search space.
"""

import functools
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from layercalc.cli import get_app
from layercalc.errors import SpecError
from layercalc.shapes import check_pool_padding
from layercalc.solving import (
    MAX_DILATION,
    MAX_KERNEL,
    MAX_STRIDE,
    SEARCH_LIMIT,
    Solution,
    _output_paddings,
    _paddings,
    search,
    search_space_size,
)

runner = CliRunner()


def run(*args, code=0):
    result = runner.invoke(get_app(), [str(a) for a in args])
    assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def one_line_error(*args) -> str:
    """The CLI's refusal: exit status 2, one line on stderr, no traceback."""
    result = run(*args, code=2)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("layercalc: error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


# ------------------------------------------------------------------------------------------------ the oracle

@functools.cache
def torch_pool(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool):
    """torch.nn.MaxPool1d's output length, or None when torch refuses the combination."""
    try:
        return torch.nn.MaxPool1d(k, s, p, dilation=d, ceil_mode=ceil_mode)(torch.zeros(1, 1, n)).shape[-1]
    except RuntimeError:
        return None


@functools.cache
def torch_conv(n: int, k: int, s: int, p: int, d: int):
    """torch.nn.functional.conv1d's output length (solve without --ceil), or None when torch refuses."""
    try:
        return torch.nn.functional.conv1d(torch.zeros(1, 1, n), torch.zeros(1, 1, k), stride=s, padding=p,
                                          dilation=d).shape[-1]
    except RuntimeError:
        return None


def oracle(ceil_mode: bool):
    return (lambda n, k, s, p, d: torch_pool(n, k, s, p, d, True)) if ceil_mode else torch_conv


def searched_paddings(k: int, d: int, ceil_mode: bool) -> range:
    """solve's documented default padding bounds: kernel // 2 for pooling (PyTorch), the kernel span for conv."""
    return range(0, k // 2 + 1) if ceil_mode else range(0, d * (k - 1) + 1)


def smallest_single_window_stride(n, k, p, d, ceil_mode):
    """The smallest stride torch gives output 1 for, by trying every stride up to one longer than anything the
    window could see (then one window fits at most); also checks every stride from it up to there gives 1."""
    out = oracle(ceil_mode)
    top = n + 2 * p + d * (k - 1) + 2
    ones = [s for s in range(1, top + 1) if out(n, k, s, p, d) == 1]
    if not ones:
        return None
    assert ones == list(range(ones[0], top + 1)), (n, k, p, d, ceil_mode, ones)   # the note's claim
    return ones[0]


def expected_answers(n, wanted, ceil_mode, max_kernel, max_stride, max_dilation, fixed=None):
    """Brute force over the searched bounds with torch: the set solve must list."""
    fixed = fixed or {}
    out = oracle(ceil_mode)
    kernels = [fixed["kernel"]] if "kernel" in fixed else range(1, max_kernel + 1)
    strides = [fixed["stride"]] if "stride" in fixed else range(1, max_stride + 1)
    dilations = [fixed["dilation"]] if "dilation" in fixed else range(1, max_dilation + 1)
    found = set()
    for d in dilations:
        for k in kernels:
            pads = searched_paddings(k, d, ceil_mode)
            if "padding" in fixed:
                pads = [fixed["padding"]] if fixed["padding"] in pads or not ceil_mode else []
            for p in pads:
                if wanted == 1 and "stride" not in fixed:
                    s = smallest_single_window_stride(n, k, p, d, ceil_mode)
                    if s is not None:
                        found.add((k, s, p, d))
                    continue
                found |= {(k, s, p, d) for s in strides if out(n, k, s, p, d) == wanted}
    return found


def listed(found) -> set:
    return {(a.kernel, a.stride, a.padding, a.dilation) for a in found.answers}


# ------------------------------------------------------------------------------------------------ F4: solve

def test_the_audit_example_single_window_in_ceil_mode():
    # ceil((100 − 3)/s) + 1 = 1 needs s ≥ 97 (then it is 2, or 1 if the last window is dropped); the 2nd window
    # starts at s, dropped when s ≥ L + p = 100. So stride 100 is the smallest (99 gives 2 windows).
    assert torch_pool(100, 3, 100, 0, 1, True) == 1 and torch_pool(100, 3, 99, 0, 1, True) == 2
    found = search(100, 1, kernel=3, ceil_mode=True)
    assert Solution(3, 100, 0, 1, 0) in found.answers
    # padding 1: L + p = 101 → stride 101
    assert torch_pool(100, 3, 101, 1, 1, True) == 1 and torch_pool(100, 3, 100, 1, 1, True) == 2
    assert Solution(3, 101, 1, 1, 0) in found.answers
    out = run("solve", "--input", 100, "--output", 1, "--ceil", "-k", 3, "--limit", 0).stdout
    assert "no combination" not in out
    assert any(line.split()[:4] == ["3", "100", "0", "1"] for line in out.splitlines())


@pytest.mark.parametrize("ceil_mode", [True, False], ids=["ceil", "floor"])
def test_solve_matches_torch_exhaustively(ceil_mode):
    # kernel 1..5, stride 1..4, dilation 1..3, every input 1..24 and every output that torch can reach (+ one
    # that it cannot): solve lists exactly the torch-valid combinations (smallest stride for output 1).
    bounds = dict(max_kernel=5, max_stride=4, max_dilation=3)
    for n in range(1, 25):
        reachable = {torch_pool(n, k, s, p, d, True) if ceil_mode else torch_conv(n, k, s, p, d)
                     for k in range(1, 6) for s in range(1, 5) for d in range(1, 4)
                     for p in searched_paddings(k, d, ceil_mode)} - {None}
        for wanted in range(1, max(reachable) + 2):
            found = search(n, wanted, ceil_mode=ceil_mode, **bounds)
            assert listed(found) == expected_answers(n, wanted, ceil_mode, **bounds), (n, wanted)


@settings(max_examples=150)
@given(n=st.integers(1, 60), k=st.integers(1, 7), s=st.integers(1, 5), d=st.integers(1, 3), p=st.integers(0, 3),
       fixed=st.sets(st.sampled_from(["kernel", "stride", "padding", "dilation"]), min_size=1, max_size=3),
       ceil_mode=st.booleans(), wanted_one=st.booleans())
def test_solve_with_fixed_parameters_matches_torch(n, k, s, d, p, fixed, ceil_mode, wanted_one):
    if ceil_mode:
        p = min(p, k // 2)                      # a fixed padding above half the kernel is refused (tested below)
    out = oracle(ceil_mode)(n, k, s, p, d)
    wanted = 1 if wanted_one or out is None else out
    values = {"kernel": k, "stride": s, "padding": p, "dilation": d}
    given_values = {name: values[name] for name in fixed}
    if ceil_mode and "padding" in fixed and "kernel" not in fixed and 2 * p > 7:
        return
    found = search(n, wanted, ceil_mode=ceil_mode, max_kernel=7, max_stride=5, max_dilation=3, **given_values)
    assert listed(found) == expected_answers(n, wanted, ceil_mode, 7, 5, 3, given_values)


@settings(max_examples=60)
@given(n=st.integers(1, 5000), k=st.integers(1, MAX_KERNEL), d=st.integers(1, MAX_DILATION),
       ceil_mode=st.booleans())
def test_single_window_stride_is_the_smallest_for_long_inputs(n, k, d, ceil_mode):
    # Long inputs: the stride listed for output 1 is beyond the stride bound; torch gives 1 for it, not for the
    # stride just below, and for larger strides too (the exhaustive test checks every stride on small inputs).
    found = search(n, 1, kernel=k, dilation=d, ceil_mode=ceil_mode)
    out = oracle(ceil_mode)
    for p in searched_paddings(k, d, ceil_mode):
        mine = [a for a in found.answers if a.padding == p]
        ones_somewhere = out(n, k, n + 2 * p + d * (k - 1) + 2, p, d) == 1
        assert len(mine) == (1 if ones_somewhere else 0), (p, mine)
        if mine:
            s = mine[0].stride
            assert out(n, k, s, p, d) == 1 and out(n, k, s + 1, p, d) == 1 and out(n, k, 3 * s + 7, p, d) == 1
            assert s == 1 or out(n, k, s - 1, p, d) != 1


# -------------------------------------------------------------------------------------- F5: PyTorch's pooling rule

def test_torch_rule_is_on_the_kernel_size_not_the_dilated_kernel():
    # kernel 3, dilation 2 (span 5): padding 2 is at most half the span but more than 3 // 2 = 1: torch refuses;
    # kernel 4, dilation 2: padding 2 = 4 // 2 is accepted. Same rule without ceil_mode and in 2-D.
    for ceil_mode in (True, False):
        assert torch_pool(20, 3, 2, 2, 2, ceil_mode) is None
        assert torch_pool(20, 3, 2, 1, 2, ceil_mode) is not None
        assert torch_pool(20, 4, 2, 2, 2, ceil_mode) is not None
    with pytest.raises(RuntimeError, match="half of kernel size"):
        torch.nn.MaxPool2d(3, 2, 2, dilation=2)(torch.zeros(1, 1, 20, 20))
    for k in range(1, 8):
        for p in range(0, 6):
            for d in (1, 2, 3):
                accepted = torch_pool(30, k, 2, p, d, True) is not None
                assert accepted == (p <= k // 2), (k, p, d)
                if accepted:
                    check_pool_padding(k, p)
                else:
                    with pytest.raises(SpecError, match=f"padding {p} must be at most half the kernel {k}"):
                        check_pool_padding(k, p)


def test_solve_never_lists_pooling_padding_above_half_the_kernel():
    # 28 → 15 with kernel 3, stride 2, padding 2 in ceil mode: ceil((28 + 4 − 2 − 1)/2) + 1 = 16, last window
    # starts at 30 ≥ 28 + 2 → 15. Arithmetic says yes, torch refuses padding 2 > 3 // 2.
    assert torch_pool(28, 3, 2, 2, 1, True) is None
    with pytest.raises(SpecError, match="padding 2 must be at most half the kernel 3"):
        search(28, 15, kernel=3, stride=2, padding=2, ceil_mode=True)
    err = one_line_error("solve", "--input", 28, "--output", 15, "-k", 3, "-s", 2, "-p", 2, "--ceil")
    assert "padding 2 must be at most half the kernel 3" in err
    # kernel free: padding 2 needs kernel ≥ 4; every answer listed has one (and torch agrees with each)
    found = search(28, 15, padding=2, ceil_mode=True)
    assert found.answers and all(a.kernel >= 4 for a in found.answers)
    assert all(torch_pool(28, a.kernel, a.stride, 2, a.dilation, True) == 15 for a in found.answers)
    # no kernel in the searched range allows padding 6 (needs kernel ≥ 12 > --max-kernel 11)
    err = one_line_error("solve", "--input", 28, "--output", 5, "-p", 6, "--ceil")
    assert "padding 6" in err and "kernel of at least 12" in err and "--max-kernel 11" in err
    # without --ceil (a convolution) padding 2 with kernel 3 is fine: floor((28 + 4 − 3)/2) + 1 = 15
    assert torch_conv(28, 3, 2, 2, 1) == 15
    assert search(28, 15, kernel=3, stride=2, padding=2, dilation=1).answers == [Solution(3, 2, 2, 1, 0)]


def test_size_refuses_pooling_padding_above_half_the_kernel():
    assert torch_pool(28, 3, 2, 2, 1, True) is None
    err = one_line_error("size", 28, "-k", 3, "-s", 2, "-p", 2, "--ceil")
    assert "padding 2 must be at most half the kernel 3" in err
    err = one_line_error("size", 28, "-k", 3, "-s", 2, "-p", 2, "-d", 2, "--ceil")     # span 5, still refused
    assert "padding 2 must be at most half the kernel 3" in err


def test_size_still_accepts_what_torch_accepts():
    # padding 1 = 3 // 2: ceil((28 + 2 − 3)/2) + 1 = 15, last window starts at 28 < 28 + 1: kept
    assert torch_pool(28, 3, 2, 1, 1, True) == 15
    assert run("size", 28, "-k", 3, "-s", 2, "-p", 1, "--ceil", "-q").stdout.strip() == "15"
    # without --ceil size is a convolution: padding 2 with kernel 3 is fine, floor((28 + 4 − 3)/2) + 1 = 15
    assert run("size", 28, "-k", 3, "-s", 2, "-p", 2, "-q").stdout.strip() == "15"



@pytest.mark.parametrize("n, k, s, p, d", [(4, 5, 2, 0, 1), (4, 6, 2, 0, 1), (3, 3, 1, 1, 2), (5, 2, 3, 1, 3),
                                           (1, 3, 1, 0, 1), (2, 4, 3, 2, 1)])
def test_size_ceil_agrees_with_torch_when_the_kernel_hangs_past_the_input(n, k, s, p, d):
    # ceil((n + 2p − span)/s) + 1 can be 1 when the span exceeds the padded input by less than the stride
    # (kernel 5 on 4: ceil(−1/2) + 1 = 1); torch then keeps that one window, and size --ceil must say the same
    expected = torch_pool(n, k, s, p, d, True)
    args = ["size", n, "-k", k, "-s", s, "-p", p, "-d", d, "--ceil"]
    if expected is None:
        one_line_error(*args)
    else:
        assert run(*args, "-q").stdout.strip() == str(expected)


def test_size_padding_is_plain_digits():
    assert "'1_0' is not a whole number" in one_line_error("size", 28, "-k", 3, "-p", "1_0")


# ------------------------------------------------------------------------------------------ F16: search guard

def count_by_enumeration(kernel=None, stride=None, padding=None, dilation=None, output_padding=None,
                         transposed=False, ceil_mode=False, max_kernel=MAX_KERNEL, max_stride=MAX_STRIDE,
                         max_dilation=MAX_DILATION, max_padding=None, single_window=False) -> int:
    """The combinations solve's loops visit, counted by walking them."""
    total = 0
    for d in [dilation] if dilation else range(1, max_dilation + 1):
        for k in [kernel] if kernel else range(1, max_kernel + 1):
            for _ in _paddings(k, d, padding, ceil_mode, max_padding):
                strides = [stride] if stride else range(1, max_stride + 1)
                total += sum(len(_output_paddings(s, d, output_padding, transposed)) for s in strides)
                total += 1 if single_window else 0
    return total


@settings(max_examples=300)
@given(kernel=st.none() | st.integers(1, 9), stride=st.none() | st.integers(1, 9),
       padding=st.none() | st.integers(0, 6), dilation=st.none() | st.integers(1, 6),
       output_padding=st.none() | st.integers(0, 7), mode=st.sampled_from(["conv", "ceil", "transposed"]),
       max_kernel=st.integers(1, 12), max_stride=st.integers(1, 12), max_dilation=st.integers(1, 7),
       max_padding=st.none() | st.integers(0, 9), single_window=st.booleans())
def test_search_space_size_counts_what_the_loops_visit(kernel, stride, padding, dilation, output_padding, mode,
                                                      max_kernel, max_stride, max_dilation, max_padding,
                                                      single_window):
    args = dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                output_padding=output_padding if mode == "transposed" else None, transposed=mode == "transposed",
                ceil_mode=mode == "ceil", max_kernel=max_kernel, max_stride=max_stride, max_dilation=max_dilation,
                max_padding=max_padding, single_window=single_window and mode != "transposed" and stride is None)
    assert search_space_size(**args) == count_by_enumeration(**args)


def test_search_space_size_by_hand():
    # defaults, conv: Σ_d Σ_k (d·(k − 1) + 1) paddings × 8 strides = Σ_d (55·d + 11)·8 = (550 + 44)·8 = 4,752
    assert search_space_size() == 4752
    # the audit's case: kernel and stride 1..100,000, dilation 1..4, padding 0..d·(k − 1):
    # Σ_d (d·Σ(k − 1) + 100,000)·100,000 with Σ(k − 1) = 99,999·100,000/2 = 4,999,950,000
    # = ((1 + 2 + 3 + 4)·4,999,950,000 + 4·100,000)·100,000 = 49,999,900,000·100,000 = 4,999,990,000,000,000
    assert search_space_size(max_kernel=100_000, max_stride=100_000) == 4_999_990_000_000_000


def test_search_guard_refuses_huge_searches():
    with pytest.raises(SpecError, match="lower --max-kernel") as info:
        search(7, 3, max_kernel=100_000, max_stride=100_000)
    message = str(info.value)
    assert "4,999,990,000,000,000 combinations" in message and f"{SEARCH_LIMIT:,}" in message
    assert "--max-stride" in message and "--max-dilation" not in message
    start = time.perf_counter()
    err = one_line_error("solve", "--input", 7, "--output", 3, "--max-kernel", 100000, "--max-stride", 100000)
    assert time.perf_counter() - start < 5
    assert "4,999,990,000,000,000" in err and "--max-kernel 100000" in err and "--max-stride 100000" in err


def test_search_guard_accepts_the_defaults_and_searches_near_the_limit():
    # the widest default search (transposed, everything free) is far below the limit
    assert search_space_size(transposed=True) < SEARCH_LIMIT // 10
    # a search just under the limit runs (fixed stride and padding: kernels × dilations)
    k = SEARCH_LIMIT // 4
    assert search_space_size(stride=1, padding=0, max_kernel=k) == SEARCH_LIMIT
    found = search(10, 1, stride=1, padding=0, max_kernel=k, max_dilation=4)
    # floor((10 − d·(k − 1) − 1)/1) + 1 = 1 ⇔ d·(k − 1) = 9: (k, d) = (10, 1), (4, 3)
    assert [(a.kernel, a.dilation) for a in found.answers] == [(10, 1), (4, 3)]
    with pytest.raises(SpecError, match="combinations"):
        search(10, 1, stride=1, padding=0, max_kernel=k + 1, max_dilation=4)


def test_solve_help_states_the_search_limit_in_force():
    assert f"{SEARCH_LIMIT:,} combinations" in run("solve", "--help").stdout.replace("\n  ", " ")
