"""`layercalc.size(...)` and `layercalc.solve(...)`: the library answers what `layercalc size` / `layercalc solve`
print — the same numbers, the same lines, and for a mistake the same error line (as a LayerCalcError)."""

import subprocess
import sys
from dataclasses import FrozenInstanceError

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import layercalc
from layercalc import LayerCalcError, ShapeError, SpecError
from layercalc.cli import get_app

runner = CliRunner()


def cli(*args):
    result = runner.invoke(get_app(False), [*map(str, args), "--wide"])   # the library's lines, in full
    assert result.exit_code in (0, 2), (args, result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def library_or_error(function, *args, **kwargs):
    try:
        return function(*args, **kwargs), None
    except LayerCalcError as exc:
        return None, exc


def assert_same(result, error, cli_result):
    """The library's answer is what the command printed; its error, the command's error line."""
    if error is not None:
        assert cli_result.exit_code == 2 and cli_result.stdout == ""
        assert cli_result.stderr == f"layercalc: error: {error}\n"
    else:
        assert cli_result.exit_code == 0, cli_result.stderr
        assert cli_result.stdout == result.text + "\n"


# ------------------------------------------------------------------------------------------------ size

paddings = st.one_of(st.integers(0, 8), st.sampled_from(["same", "valid", "SAME", " 2 "]), st.integers(-2, -1))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(length=st.one_of(st.integers(1, 80), st.integers(1, 10**12)), kernel=st.integers(1, 12),
       stride=st.integers(1, 7), padding=paddings, dilation=st.integers(1, 4),
       mode=st.sampled_from(["conv", "conv", "ceil", "transposed"]), output_padding=st.none() | st.integers(0, 3))
def test_size_is_what_the_command_prints(length, kernel, stride, padding, dilation, mode, output_padding):
    transposed, ceil = mode == "transposed", mode == "ceil"
    args = ["size", length, "-k", kernel, "-s", stride, f"--padding={padding}", "-d", dilation]
    args += ["--transposed"] if transposed else ["--ceil"] if ceil else []
    args += [] if output_padding is None else ["--output-padding", output_padding]
    result, error = library_or_error(layercalc.size, length, kernel, stride, padding, dilation, transposed=transposed,
                                     ceil_mode=ceil, output_padding=output_padding)
    assert_same(result, error, cli(*args))
    if result is None:
        return
    assert cli(*args, "--explain").stdout == "\n".join(result.lines) + "\n"
    assert cli(*args, "--quiet").stdout == f"{result.output}\n"
    assert result.text == "; ".join([result.formula, *result.notes]) == str(result)
    assert result.formula.endswith((f" = {result.output}",
                                    f"→ {result.output} (last window dropped: it would start in the padding)"))
    if not transposed:            # the padding applied, as the forward rule uses it
        from layercalc.shapes import conv_output_length, pool_output_length
        forward = (pool_output_length(length, kernel, stride, result.pad_before, result.pad_after, dilation, True)
                   if ceil else conv_output_length(length, kernel, stride, result.pad_before, result.pad_after,
                                                   dilation))
        assert forward == result.output
    else:
        from layercalc.shapes import transposed_output_length
        assert transposed_output_length(length, kernel, stride, result.pad_before, result.pad_after, dilation,
                                        result.output_padding) == result.output


def test_size_result_fields():
    r = layercalc.size(28, 3, stride=2)
    assert (r.output, r.pad_before, r.pad_after, r.output_padding) == (13, 0, 0, 0)
    assert r.formula == "L_out = floor((28 + 2·0 − 1·(3 − 1) − 1) / 2) + 1 = 13"
    assert r.notes == ("input position 27 (of 0..27) is never covered by any window",)
    assert r.lines[0] == "L_out = floor((L_in + 2·padding − dilation·(kernel − 1) − 1) / stride) + 1"
    same = layercalc.size(28, 4, 2, "same")
    assert (same.output, same.padding, same.pad_before, same.pad_after) == (14, "same", 1, 1)
    keras = layercalc.size(7, 1, 2, "valid", transposed=True)            # Keras: L·s + max(span − s, 0)
    assert (keras.output, keras.output_padding) == (14, 1)
    assert keras.notes[0].startswith("'valid' (Keras)")
    assert layercalc.size(7, 1, 2, "valid", transposed=True, output_padding=0).output == 13   # stated: PyTorch's
    dropped = layercalc.size(5, 2, 2, 1, ceil_mode=True)
    assert dropped.output == 3 and "last window dropped" in dropped.formula
    with pytest.raises(FrozenInstanceError):
        r.output = 14


def test_size_accepts_integral_floats_and_numpy_ints():
    assert layercalc.size(28.0, 3).output == 26
    np = pytest.importorskip("numpy")
    assert layercalc.size(np.int64(28), np.int32(3), padding=np.int64(1)).output == 28


# ------------------------------------------------------------------------------------------------ solve

@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(input_length=st.integers(1, 64), output_length=st.integers(1, 70), kernel=st.none() | st.integers(1, 9),
       stride=st.none() | st.integers(1, 5), padding=st.none() | st.integers(0, 5),
       dilation=st.none() | st.integers(1, 3), mode=st.sampled_from(["conv", "conv", "ceil", "transposed"]),
       output_padding=st.none() | st.integers(0, 2), limit=st.sampled_from([0, 1, 3, 20]))
def test_solve_is_what_the_command_prints(input_length, output_length, kernel, stride, padding, dilation, mode,
                                          output_padding, limit):
    transposed, ceil = mode == "transposed", mode == "ceil"
    args = ["solve", "-i", input_length, "-o", output_length, "--limit", limit]
    for option, value in (("-k", kernel), ("-s", stride), ("-p", padding), ("-d", dilation),
                          ("--output-padding", output_padding)):
        if value is not None:
            args += [option, value]
    args += ["--transposed"] if transposed else ["--ceil"] if ceil else []
    result, error = library_or_error(layercalc.solve, input_length, output_length, kernel, stride, padding, dilation,
                                     transposed, output_padding=output_padding, ceil_mode=ceil, limit=limit)
    assert_same(result, error, cli(*args))
    if result is None:
        return
    assert len(result.answers) == (min(limit, result.count) if limit else result.count)
    for a in result.answers:                    # every answer checked by the forward rule, shown in its line
        from layercalc.solving import Solution, forward
        assert forward(input_length, Solution(a.kernel, a.stride, a.padding, a.dilation, a.output_padding),
                       transposed, ceil) == output_length
        assert a.check in result.text
    assert result.count == len(layercalc.solving.search(input_length, output_length, kernel, stride, padding, dilation,
                                                      output_padding, transposed, ceil).answers)


def test_solve_result_and_its_table():
    r = layercalc.solve(224, 112, kernel=7)
    assert r.count == 4 and r.question == "224 → 112 with kernel 7" and r.note == ""
    assert [(a.kernel, a.stride, a.padding, a.dilation) for a in r.answers] == [(7, 2, 3, 1), (7, 2, 6, 2),
                                                                               (7, 2, 9, 3), (7, 2, 12, 4)]
    assert r.text == "\n".join([
        "224 → 112 with kernel 7: 4 combinations",
        "kernel  stride  padding  dilation  check",
        "7       2       3        1         L_out = floor((224 + 2·3 − 1·(7 − 1) − 1) / 2) + 1 = 112",
        "7       2       6        2         L_out = floor((224 + 2·6 − 2·(7 − 1) − 1) / 2) + 1 = 112",
        "7       2       9        3         L_out = floor((224 + 2·9 − 3·(7 − 1) − 1) / 2) + 1 = 112",
        "7       2       12       4         L_out = floor((224 + 2·12 − 4·(7 − 1) − 1) / 2) + 1 = 112"])
    one = layercalc.solve(100, 1, kernel=3, dilation=1, padding=0)
    assert one.note.startswith("a single window") and one.lines[1] == f"({one.note})"
    none = layercalc.solve(3, 100)
    assert none.count == 0 and none.answers == () and none.nearest
    assert none.text.startswith("no combination gives 3 → 100 (searched kernel 1..11, stride 1..8")


# ------------------------------------------------------------------------------------------------ mistakes

@pytest.mark.parametrize("call, args", [
    (lambda: layercalc.size(28, 3, padding=-1), ["size", 28, "-k", 3, "--padding=-1"]),
    (lambda: layercalc.size(28, 3, padding="x"), ["size", 28, "-k", 3, "-p", "x"]),
    (lambda: layercalc.size(28, 3, padding="9" * 40), ["size", 28, "-k", 3, "-p", "9" * 40]),
    (lambda: layercalc.size(28, 3, output_padding=1), ["size", 28, "-k", 3, "--output-padding", 1]),
    (lambda: layercalc.size(28, 3, transposed=True, ceil_mode=True), ["size", 28, "-k", 3, "-t", "--ceil"]),
    (lambda: layercalc.size(28, 3, 2, "same", transposed=True, output_padding=1),
     ["size", 28, "-k", 3, "-s", 2, "-p", "same", "-t", "--output-padding", 1]),
    (lambda: layercalc.size(28, 3, transposed=True, output_padding=1),
     ["size", 28, "-k", 3, "-t", "--output-padding", 1]),
    (lambda: layercalc.size(28, 3, padding=2, ceil_mode=True), ["size", 28, "-k", 3, "-p", 2, "--ceil"]),
    (lambda: layercalc.size(2, 5), ["size", 2, "-k", 5]),
    (lambda: layercalc.size(2, 5, padding=4, transposed=True), ["size", 2, "-k", 5, "-p", 4, "-t"]),
    (lambda: layercalc.solve(10, 5, padding=3, kernel=3, ceil_mode=True), ["solve", "-i", 10, "-o", 5, "-p", 3, "-k", 3,
                                                                           "--ceil"]),
    (lambda: layercalc.solve(10, 5, output_padding=1), ["solve", "-i", 10, "-o", 5, "--output-padding", 1]),
    (lambda: layercalc.solve(10, 5, transposed=True, ceil_mode=True), ["solve", "-i", 10, "-o", 5, "-t", "--ceil"]),
    (lambda: layercalc.solve(224, 112, max_kernel=2000, max_stride=2000),
     ["solve", "-i", 224, "-o", 112, "--max-kernel", 2000, "--max-stride", 2000]),
])
def test_a_library_mistake_raises_the_line_the_command_prints(call, args):
    with pytest.raises(LayerCalcError) as caught:
        call()
    result = cli(*args)
    assert result.exit_code == 2 and result.stderr == f"layercalc: error: {caught.value}\n"


@pytest.mark.parametrize("call, kind, message", [
    (lambda: layercalc.size(0, 3), SpecError, "length must be ≥ 1, got 0"),
    (lambda: layercalc.size(28, 0), SpecError, "kernel must be ≥ 1, got 0"),
    (lambda: layercalc.size(28, True), SpecError, "kernel: True is a boolean, not a whole number"),
    (lambda: layercalc.size("28", 3), SpecError, "length: '28' is a string, not a whole number"),
    (lambda: layercalc.size(28, 2.5), SpecError, "kernel: 2.5 is not a whole number"),
    (lambda: layercalc.size(28, 3, padding=1.5), SpecError, "--padding: 1.5 is not a whole number, same or valid"),
    (lambda: layercalc.size(28, 3, transposed=1), SpecError, "transposed: 1 is not true or false"),
    (lambda: layercalc.size(28, 3, stride=2, output_padding=-1, transposed=True), SpecError,
     "output_padding must be ≥ 0, got -1"),
    (lambda: layercalc.size(2, 5), ShapeError, "kernel span 5"),
    (lambda: layercalc.solve(10, 0), SpecError, "output must be ≥ 1, got 0"),
    (lambda: layercalc.solve(10, 5, limit=-1), SpecError, "limit must be ≥ 0, got -1"),
    (lambda: layercalc.solve(10, 5, kernel="3"), SpecError, "kernel: '3' is a string, not a whole number"),
    (lambda: layercalc.solve(10, 5, max_padding=[1]), SpecError, "max_padding: [1] is not a whole number"),
])
def test_a_library_mistake_is_a_layercalc_error_never_a_type_error(call, kind, message):
    with pytest.raises(kind) as caught:
        call()
    assert str(caught.value).startswith(message)


# ------------------------------------------------------------------------------------------------ the package

def python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


HEAVY = ("pydantic", "numpy", "yaml", "tabulate", "rich")


def test_size_and_solve_are_lazy_and_callable_as_modules_or_names():
    out = python(
        "import sys, layercalc\n"
        f"heavy = {HEAVY!r}\n"
        "assert not [m for m in heavy if m in sys.modules], 'import layercalc'\n"
        "from layercalc import size, SizeResult\n"
        "assert isinstance(size(28, 3), SizeResult) and layercalc.size(28, 3).output == 26\n"
        "import layercalc.solving\n"                    # the module beside the function
        "r = layercalc.solve(224, 112, kernel=7)\n"
        "assert type(r).__name__ == 'SolveResult' and r.count == 4\n"
        "assert layercalc.solving.search(224, 112, kernel=7).answers[0].stride == 2\n"    # the bare search
        "print(sorted(m for m in heavy if m in sys.modules))")
    assert out.strip() == "['tabulate']"                    # solve's table only


@pytest.mark.parametrize("argv, allowed", [(["size", "28", "-k", "3"], set()),
                                           (["size", "28", "-k", "3", "-s", "2", "--explain"], set()),
                                           (["solve", "-i", "224", "-o", "112", "-k", "7"], {"tabulate"})])
def test_the_command_imports_nothing_heavy(argv, allowed):
    """Start-up: `layercalc size` imports no Pydantic, NumPy, YAML, tabulate or rich; `solve` only tabulate."""
    out = python("import sys\nfrom layercalc.cli import main\n"
                 f"try:\n    main({argv!r})\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
                 f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert set(eval(out.rsplit("HEAVY ", 1)[1])) == allowed
