"""The ``layercalc`` command: a thin typer shell over the library (no calculation lives here).

Commands:
- one calculator per layer type, generated from the Pydantic models in ``layercalc.layers.LAYER_TYPES``
  (``layercalc conv2d --input 1x28x28 --out-channels 32 -k 3``): each builds a one-layer ``Network`` and prints
  what ``analyze()`` reports; ``--explain`` adds the worked formulas (:mod:`layercalc.explain`);
- ``size`` (one dimension, one line), ``solve`` (the inverse question, :mod:`layercalc.solve`);
- ``summary SPEC`` (a whole network; SPEC is a file, ``-`` for stdin, or ``zoo:NAME``), ``schema``, ``zoo``;
- ``verify SPEC`` and ``run SPEC``: shells over :mod:`layercalc.verify` and :mod:`layercalc.executor`.

Exit status: 0 success; 1 an internal bug (or, for ``verify``, a mismatch found); 2 any user mistake — a
``LayerCalcError``, a malformed option value, a missing file — reported as ONE line ``layercalc: error: …`` on
stderr without a traceback (``--debug`` anywhere on the command line shows one).

Start-up: ``layercalc size`` must answer in well under a second, so heavy modules (the Pydantic layer models,
numpy, tabulate, yaml) are imported only by the commands that need them; the per-layer calculators are generated
only when the command line asks for one (or for the full help / shell completion).
"""

import inspect
import os
import re
import sys
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

PROG = "layercalc"
GENERAL_COMMANDS = ("size", "solve", "summary", "schema", "zoo", "verify", "run")
DEBUG_ENV = "LAYERCALC_DEBUG"


# ================================================================================================ error handling

#: the longest error line printed; values inside messages are already cut (errors.shown), this is the last guard
MAX_ERROR_CHARS = 2000


def _error(message: str) -> None:
    """Print the error as one line on stderr: whitespace runs joined, control characters escaped, cut to
    :data:`MAX_ERROR_CHARS` characters."""
    from .errors import safe_text

    text = safe_text(" ".join(str(message)[:4 * MAX_ERROR_CHARS].split()))    # always one line
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + " …"
    try:
        print(f"{PROG}: error: {text}", file=sys.stderr)
    except (OSError, ValueError, AttributeError):  # stderr closed or full: nothing more can be said
        pass


class CliGroup(TyperGroup):
    """Turns every failure into one line on stderr and the documented exit status."""

    def list_commands(self, ctx):                  # general commands first, then the calculators (sorted)
        names = list(self.commands)
        return [n for n in GENERAL_COMMANDS if n in names] + sorted(n for n in names if n not in GENERAL_COMMANDS)

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None:
            _light_coercion(command, ctx)
            _refuse_repeated_options(command)
        return command

    def get_params(self, ctx):
        params = super().get_params(ctx)
        _light_coercion(self, ctx)                       # the group's own options (--version, --help, completion)
        return params

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Always ends the process with ``sys.exit`` (``standalone_mode`` is ignored)."""
        click_exc = _click_exceptions()

        args = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
        args = [a for a in args if a != "--debug"]
        try:
            result = super().main(args=args, prog_name=prog_name or PROG, complete_var=complete_var,
                                  standalone_mode=False, **extra)
            code = result if isinstance(result, int) else 0
            _flush_stdout()
        except getattr(click_exc, "NoArgsIsHelpError", ()) as exc:          # bare `layercalc`: the help, not an error
            print(exc.ctx.get_help() if exc.ctx else exc.format_message())
            code = 0
        except click_exc.UsageError as exc:
            where = exc.ctx.command_path.replace(prog_name or PROG, "").strip() if exc.ctx else ""
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            _error((f"{where}: " if where else "") + _usage_message(exc) + hint)
            code = 2
        except click_exc.ClickException as exc:
            _error(exc.format_message())
            code = exc.exit_code
        except typer.Abort:
            print(f"{PROG}: aborted", file=sys.stderr)
            code = 130
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            code = 130
        except BrokenPipeError:                          # `layercalc summary … | head`
            _silence_stdout()
            code = 0
        except OutputError as exc:                       # `> /dev/full`: the answer could not be written
            _silence_stdout()
            _error(str(exc))
            code = 2
        except SystemExit as exc:                        # typer exits by itself on a closed pipe
            if not isinstance(exc.__context__, BrokenPipeError):
                raise
            _silence_stdout()
            code = 0
        except Exception as exc:                         # noqa: BLE001 — classify below
            code = _report_exception(exc, debug)
        sys.exit(code)


def _click_exceptions():
    try:
        from typer._click import exceptions        # typer ≥ 0.2x vendors click
    except ImportError:
        from click import exceptions
    return exceptions


def _usage_message(exc) -> str:
    message = exc.format_message().strip()
    message = message.replace("\n", " ")
    return message[0].lower() + message[1:] if message[:1].isupper() and not message[1:2].isupper() else message


class OutputError(Exception):
    """Standard output could not be written (a full disk, a closed descriptor)."""


def _flush_stdout() -> None:
    """Write out what is buffered now, inside the error handling: at exit Python would only warn."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot write the output: {getattr(exc, 'strerror', None) or exc}") from None


def _report_exception(exc: BaseException, debug: bool) -> int:
    from .errors import LayerCalcError

    if debug:
        import traceback
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, OSError) and _writing_stdout_failed(exc):
        _silence_stdout()
        _error(f"cannot write the output: {exc.strerror or exc}")
        return 2
    if isinstance(exc, LayerCalcError):
        _error(str(exc))
        return 2
    if isinstance(exc, MemoryError):
        # The estimates refuse what would not fit before starting (ResourceError); this is the last guard.
        _error("out of memory: the input asks for more memory than this machine has (try a smaller batch, "
               "input or --max-memory)")
        return 2
    if isinstance(exc, typer.Exit):
        return exc.exit_code
    _error(f"internal error: {type(exc).__name__}: {exc} — this is a bug in layercalc"
           + ("" if debug else "; run again with --debug for the traceback"))
    return 1


def _writing_stdout_failed(exc: OSError) -> bool:
    """A write that failed for want of room or a working device (print() to /dev/full raises from inside a
    command, once its buffer fills): the environment's fault, never layercalc's."""
    import errno
    return exc.errno in (errno.ENOSPC, errno.EIO, errno.EFBIG, errno.EDQUOT)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _option_name(token: str) -> Optional[str]:
    """The option a command-line token names (``--filters=2`` → ``--filters``, ``-k3`` → ``-k``), or None for a
    value (``-1`` and ``-`` are values: a negative number, stdin)."""
    if token.startswith("--") and len(token) > 2:
        return token.split("=", 1)[0]
    if token.startswith("-") and len(token) > 1 and not (token[1].isdigit() or token[1] == "."):
        return token[:2]
    return None


def _refuse_repeated_options(command) -> None:
    """Make ``command`` refuse an option given twice, under one name or two (``-k 3 -k 5``, ``--filters 2
    --out-channels 3``): click keeps the last silently, and a silently dropped value is a guess."""
    if getattr(command, "_refuses_repeats", False):
        return
    parse_args = command.parse_args
    by_name = {name: param for param in command.params if not getattr(param, "multiple", False)
               and not getattr(param, "count", False) for name in (*param.opts, *param.secondary_opts)}

    def checked_parse_args(ctx, args):
        seen: dict[str, str] = {}
        for token in args:
            if token == "--":
                break
            name = _option_name(token)
            param = by_name.get(name) if name else None
            if param is None or param.is_eager:          # --help, --version: act at once
                continue
            if param.name in seen:
                first = seen[param.name]
                message = (f"option {name} given twice; give it once" if first == name else
                           f"{first} and {name} set the same option ({param.name}); give one of them")
                raise _click_exceptions().UsageError(message, ctx=ctx)
            seen[param.name] = name
        return parse_args(ctx, args)

    command.parse_args = checked_parse_args
    command._refuses_repeats = True


def _light_coercion(command, ctx=None) -> None:
    """Coerce plain str/int/float options without building a Pydantic TypeAdapter per option.

    typer ≥ 0.2x validates every option value through Pydantic; importing it costs ~0.2 s, more than the whole
    budget of ``layercalc size``. For the plain types used here, the conversion is one call. Versions of typer
    without these internals use click's own types and need nothing.
    """
    try:
        from typer._click.exceptions import BadParameter
        from typer._coercion import RuntimeParam
    except ImportError:
        return

    class PlainRuntimeParam(RuntimeParam):
        def _coerce_value(self, value, param, ctx):
            convert = self.annotation
            if convert is bool:
                if isinstance(value, bool):
                    return value
                raise BadParameter(f"{value!r} is not a flag value", ctx=ctx, param=param)
            if convert is int:
                convert = _option_int                    # digits only: int() would read '1_0' as 10
            try:
                out = [convert(v) for v in value] if isinstance(value, (list, tuple)) else convert(value)
            except (TypeError, ValueError) as exc:
                if isinstance(exc, TooManyDigits):
                    raise BadParameter(str(exc), ctx=ctx, param=param) from None
                word = {int: "an integer", _option_int: "an integer", float: "a number"}.get(convert, "text")
                raise BadParameter(f"{_shown(value)} is not {word}", ctx=ctx, param=param) from None
            low, high = self.parameter_info.min, self.parameter_info.max
            for v in out if isinstance(out, list) else [out]:
                if (low is not None and v < low) or (high is not None and v > high):
                    bound = f"≥ {low}" if high is None else f"≤ {high}" if low is None else f"in {low}..{high}"
                    raise BadParameter(f"{v} must be {bound}", ctx=ctx, param=param)
            return out

    from typing import get_args, get_origin

    params = list(getattr(command, "params", []))
    if ctx is not None and hasattr(command, "get_help_option"):
        params.append(command.get_help_option(ctx))     # created on demand, cached by the command
    for param in params:
        desc = getattr(param, "type_descriptor", None)
        if desc is None or getattr(param, "_runtime_param", "absent") is not None:
            continue
        annotation = desc.annotation
        if get_origin(annotation) is list and len(get_args(annotation)) == 1:
            annotation = get_args(annotation)[0]
        if annotation in (int, str, float, bool):
            param._runtime_param = PlainRuntimeParam(parameter_info=desc.parameter_info, annotation=annotation)


def _option_int(value) -> int:
    if isinstance(value, int) and not isinstance(value, bool):       # a default, not typed text
        return value
    if not isinstance(value, str):
        raise ValueError(value)
    return digits_to_int(value.strip())


# ================================================================================================ value parsing

#: what separates the sizes of a shape: ``1x28x28``, ``1×28×28``, ``1,28,28``. ``*`` is not one of them: it
#: multiplies within one size, as a person writes a dense layer's inputs (``28*28`` = 784, ``7*7*512`` = 25,088)
_SEPARATORS = re.compile(r"[x×X,]")
#: a whole number as typed: ASCII digits, an optional sign. int() alone would also take '1_0' (10), ' ٣' (3)...
_DIGITS = re.compile(r"[-+]?[0-9]+")
#: the most digits a typed whole number may have: int64 has 19 (and int() refuses 4,300 with a bare ValueError)
_MAX_DIGITS = 30


class TooManyDigits(ValueError):
    """A typed whole number longer than any size (and than Python's int() accepts)."""


def digits_to_int(text: str) -> int:
    """A whole number typed as digits; raises ``ValueError`` saying why not.

    >>> digits_to_int('784'), digits_to_int('-2')
    (784, -2)
    >>> digits_to_int('9' * 40)
    Traceback (most recent call last):
    ...
    layercalc.cli.TooManyDigits: a whole number of 40 digits is larger than any size (int64: 19 digits)
    """
    if not _DIGITS.fullmatch(text):
        raise ValueError(f"{_shown(text)} is not a whole number (digits only)")
    if len(text.lstrip("+-")) > _MAX_DIGITS:
        raise TooManyDigits(f"a whole number of {len(text.lstrip('+-')):,} digits is larger than any size (int64: 19 "
                         f"digits)")
    return int(text)


def _shown(value) -> str:
    from .errors import shown
    return shown(value)


def _size_product(part: str) -> int:
    """One size as typed: digits, or a product of them (``28*28`` → 784).

    >>> _size_product('28*28'), _size_product('7*7*512'), _size_product('3')
    (784, 25088, 3)
    """
    factors = part.split("*")
    if len(factors) == 1:
        return digits_to_int(part)
    values = []
    for factor in factors:
        factor = factor.strip()
        if not factor:
            raise ValueError(f"{_shown(part)}: a factor is missing around '*'")
        value = digits_to_int(factor)
        if value < 1:
            raise ValueError(f"{_shown(part)}: every factor must be ≥ 1, got {value}")
        values.append(value)
    product = 1
    for value in values:
        product *= value
    return product


def _spec_error(message: str):
    from .errors import SpecError
    return SpecError(message)


def _json_list(text: str, option: str):
    import json
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _spec_error(f"{option}: {text!r} is not a valid list ({exc.msg})") from None
    except RecursionError:
        raise _spec_error(f"{option}: {text!r:.40} is not a valid list (nested too deeply)") from None


def _whole(part) -> int:
    """One entry of a shape or size list: digits as typed, or a JSON number that is exactly a whole number.

    Raises ``ValueError`` saying why not (the callers add the option and the text received).
    """
    if isinstance(part, str):
        return digits_to_int(part)
    if isinstance(part, bool):                          # named as typed (JSON): true, not True
        raise ValueError(f"{str(part).lower()} is a boolean, not a whole number")
    if part is None:
        raise ValueError("null is not a whole number")
    from .errors import whole_number_problem
    problem = whole_number_problem(part)
    if problem is not None:
        raise ValueError(problem)
    if not isinstance(part, (int, float)):
        raise ValueError(f"{part!r} is not a whole number")
    return int(part)


def parse_shape(text: str, option: str = "--input") -> list[int]:
    """``1x28x28``, ``1,28,28``, ``[1, 28, 28]`` → ``[1, 28, 28]`` (one example, batch excluded); ``*`` multiplies
    within one size: ``28*28`` → ``[784]``, ``1x28*28`` → ``[1, 784]``.

    >>> parse_shape('1x28x28'), parse_shape('28*28'), parse_shape('7*7*512')
    ([1, 28, 28], [784], [25088])
    """
    raw = text.strip()
    parts = _json_list(raw, option) if raw.startswith("[") else [p.strip() for p in _SEPARATORS.split(raw)]
    example = "e.g. 1x28x28 or 1,28,28 for one example (the batch is --batch); 28*28 is one size of 784"
    if not raw or not isinstance(parts, list) or not parts or any(p == "" for p in parts):
        raise _spec_error(f"{option}: {_shown(text)} is not a shape: {example}")
    sizes = []
    for p in parts:
        try:
            size = _size_product(p) if isinstance(p, str) else _whole(p)
        except ValueError as exc:
            raise _spec_error(f"{option}: {_shown(text)} is not a shape: {exc}; {example}") from None
        if size < 1:
            raise _spec_error(f"{option}: {text!r}: every size must be ≥ 1, got {size}")
        sizes.append(size)
    return sizes


def parse_ints(text: str, option: str, allow_none: bool = False, always_list: bool = False):
    """``3`` → 3, ``3x5`` / ``3,5`` → [3, 5]; ``none`` entries → None when allowed (adaptive output_size)."""
    raw = text.strip()
    parts = _json_list(raw, option) if raw.startswith("[") else [p.strip() for p in _SEPARATORS.split(raw)]
    if not isinstance(parts, list):
        raise _spec_error(f"{option}: {text!r} is not a whole number or a list of them")
    values = []
    for p in parts:
        if allow_none and (p is None or str(p).lower() in ("none", "null", "_")):
            values.append(None)
            continue
        try:
            values.append(_whole(p))
        except ValueError as exc:
            form = "3, 3x5" + (" or 3xnone (none keeps the input size)" if allow_none else " or [3, 5]")
            raise _spec_error(f"{option}: {text!r} is not a whole number or a list of them: {exc} ({form})") from None
    if not values:
        raise _spec_error(f"{option}: no value given")
    return values if (len(values) > 1 or always_list) else values[0]


def parse_padding(text: str, option: str = "--padding"):
    """``same``, ``valid``, ``1``, ``1x2``, or ``[[1, 2], [0, 1]]`` ((before, after) per spatial dim)."""
    raw = text.strip()
    if raw.lower() in ("same", "valid"):
        return raw.lower()
    if raw.startswith("["):
        return _json_list(raw, option)
    try:
        return parse_ints(raw, option)
    except Exception:
        raise _spec_error(f"{option}: {text!r} is not a padding: expected same, valid, N, NxM or "
                          f"[[before, after], ...]") from None


def parse_float(text: str, option: str) -> float:
    """A number as typed (``0.1``, ``1e-5``, ``-2``). ``nan`` and ``inf`` are passed on as floats, and the layer
    field refuses them with its own message; ``1_0.5`` (float() reads 10.5) is refused here."""
    try:
        if "_" in text:
            raise ValueError
        return float(text)
    except ValueError:
        raise _spec_error(f"{option}: {text!r} is not a number") from None


def parse_int(text: str, option: str) -> int:
    try:
        return digits_to_int(text.strip())
    except ValueError as exc:
        raise _spec_error(f"{option}: {exc}") from None


# ================================================================================================ common options

Numbers = Annotated[str, typer.Option("--numbers", help="exact (1,234,567) or human (1.23 M); CSV/JSON always exact",
                                      metavar="exact|human")]


def _check_choice(value: str, choices: tuple[str, ...], option: str) -> str:
    low = value.lower()
    if low not in choices:
        from .errors import did_you_mean
        raise _spec_error(f"{option}: {value!r} is not one of {', '.join(choices)}{did_you_mean(low, choices)}")
    return low


def _version_callback(value: bool) -> None:
    if value:
        from . import __version__
        print(f"{PROG} {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show a traceback on errors (accepted anywhere).")] = False,
) -> None:
    """Shapes, parameters, MACs/FLOPs, memory and receptive fields of neural-network layers — no framework needed.

    Calculators: one command per layer type (`layercalc conv2d --input 1x28x28 --out-channels 32 -k 3`).
    Whole networks: `layercalc summary net.yaml` (or `-` for stdin, or `zoo:resnet50`).
    """


# ================================================================================================ size / solve

def size_command(
    length: Annotated[int, typer.Argument(min=1, help="input length along one dimension", metavar="N")],
    kernel_size: Annotated[int, typer.Option("--kernel-size", "-k", min=1, help="kernel size")],
    stride: Annotated[int, typer.Option("--stride", "-s", min=1, help="stride")] = 1,
    padding: Annotated[str, typer.Option("--padding", "-p", help="padding on each side: N, same or valid")] = "0",
    dilation: Annotated[int, typer.Option("--dilation", "-d", min=1, help="dilation")] = 1,
    transposed: Annotated[bool, typer.Option("--transposed", "-t", help="transposed convolution")] = False,
    output_padding: Annotated[Optional[int], typer.Option(
        "--output-padding", min=0, help="transposed only: extra size on one side; default 0 (with -p valid: "
                                        "Keras' extra s − span when the kernel span is narrower than the stride)")] = None,
    ceil: Annotated[bool, typer.Option("--ceil", help="pooling with ceil_mode (PyTorch's rule)")] = False,
    explain: Annotated[bool, typer.Option("--explain", "-e", help="show the worked formula")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the number")] = False,
) -> None:
    """Output length along one dimension: floor((N + 2·p − d·(k − 1) − 1) / s) + 1 (or the transposed rule).

    Example: `layercalc size 224 -k 7 -s 2 -p 3` → 112. When the stride does not divide evenly (or skips
    positions between windows), the line also says which input positions no window ever reads.
    """
    from . import explain as ex
    from .errors import ShapeError
    from .shapes import (check_pool_padding, conv_output_length, effective_kernel, pool_output_length,
                         same_padding, transposed_output_length, transposed_same_padding, transposed_valid_extra)

    pad = padding.strip().lower()
    if pad not in ("same", "valid"):
        try:
            pad = digits_to_int(pad)
        except ValueError:
            raise _spec_error(f"--padding: {_shown(padding)} is not a whole number, same or valid (size works along "
                              f"one dimension: the same padding on each side)") from None
        if pad < 0:
            raise _spec_error(f"--padding: must be ≥ 0, got {pad}")
    stated_output_padding = output_padding is not None
    output_padding = output_padding or 0
    if output_padding and not transposed:
        raise _spec_error("--output-padding only applies with --transposed")
    if transposed and ceil:
        raise _spec_error("--ceil applies to pooling, not to --transposed")
    if ceil and isinstance(pad, int):     # PyTorch's pooling rule; 'same' is Keras' padding, which has no such rule
        check_pool_padding(kernel_size, pad)
    k_eff = effective_kernel(kernel_size, dilation)
    if transposed:
        if output_padding >= stride and output_padding >= dilation:
            raise _spec_error(f"--output-padding {output_padding} must be smaller than the stride {stride} or the "
                              f"dilation {dilation} (PyTorch's rule)")
        if pad == "same":
            if output_padding:
                raise _spec_error("--output-padding cannot be combined with padding 'same' (output = N·stride)")
            cb, ca, extra = transposed_same_padding(length, kernel_size, stride, dilation)
            out = transposed_output_length(length, kernel_size, stride, cb, ca, dilation, extra)
            line = ex.explain_transposed_length(length, kernel_size, stride, cb, ca, dilation, extra)[0]
        else:
            p = 0 if pad == "valid" else pad
            # 'valid' is Keras' word: Keras' length L·s + max(span − s, 0) unless an output_padding is stated
            keras_extra = (transposed_valid_extra(kernel_size, stride, dilation)
                           if pad == "valid" and not stated_output_padding else 0)
            if keras_extra:
                output_padding = keras_extra
            out = transposed_output_length(length, kernel_size, stride, p, p, dilation, output_padding)
            line = ex.explain_transposed_length(length, kernel_size, stride, p, p, dilation, output_padding)[0]
            if keras_extra:
                line += (f"; 'valid' (Keras): output = input·stride + max(kernel span − stride, 0), i.e. "
                         f"output_padding {output_padding} zeros appended")
        if out < 1:
            raise ShapeError(f"output length {out} < 1: the padding crops more than the transposed convolution "
                             f"produces ({line.split(' = ', 1)[1]})")
    else:
        before, after = same_padding(length, kernel_size, stride, dilation) if pad == "same" else \
            (0, 0) if pad == "valid" else (pad, pad)
        out = (pool_output_length(length, kernel_size, stride, before, after, dilation, True) if ceil
               else conv_output_length(length, kernel_size, stride, before, after, dilation))
        # ceil mode (PyTorch) keeps one window even when the kernel hangs past the padded input (5 over 4 → 1)
        if (out < 1) if ceil else (length + before + after < k_eff):
            raise ShapeError(f"kernel span {k_eff} (dilation {dilation}·(kernel {kernel_size} − 1) + 1) is larger than "
                             f"the padded input {length + before + after} ({length} + {before} + {after}): no window fits")
        line = ex.explain_length(length, kernel_size, stride, before, after, dilation, ceil, "L")[0]
        if out != int(line.rsplit("= ", 1)[1]):                 # ceil mode dropped a window in the padding
            line = f"{line} → {out} (last window dropped: it would start in the padding)"
        # a stride that does not divide evenly is not simply rounded: say what happens to the border
        note = ex.coverage_note(length, kernel_size, stride, before, after, dilation, ceil)
        if note:
            line = f"{line}; {note}"
    if quiet:
        print(out)
        return
    if not explain:
        print(line)
        return
    for extra_line in ex.explain_size(length, kernel_size, stride, pad if isinstance(pad, str) else str(pad),
                                      dilation, transposed, output_padding, ceil):
        print(extra_line)


def solve_command(
    input_length: Annotated[int, typer.Option("--input", "-i", min=1, help="input length")],
    output_length: Annotated[int, typer.Option("--output", "-o", min=1, help="wanted output length")],
    kernel_size: Annotated[Optional[int], typer.Option("--kernel-size", "-k", min=1, help="fix the kernel")] = None,
    stride: Annotated[Optional[int], typer.Option("--stride", "-s", min=1, help="fix the stride")] = None,
    padding: Annotated[Optional[int], typer.Option("--padding", "-p", min=0, help="fix the padding")] = None,
    dilation: Annotated[Optional[int], typer.Option("--dilation", "-d", min=1, help="fix the dilation")] = None,
    transposed: Annotated[bool, typer.Option("--transposed", "-t", help="transposed convolution")] = False,
    output_padding: Annotated[Optional[int], typer.Option("--output-padding", min=0,
                                                          help="transposed: fix output_padding")] = None,
    ceil: Annotated[bool, typer.Option("--ceil", help="pooling with ceil_mode")] = False,
    max_kernel: Annotated[int, typer.Option("--max-kernel", min=1, help="largest kernel searched")] = 11,
    max_stride: Annotated[int, typer.Option("--max-stride", min=1, help="largest stride searched")] = 8,
    max_dilation: Annotated[int, typer.Option("--max-dilation", min=1, help="largest dilation searched")] = 4,
    max_padding: Annotated[Optional[int], typer.Option(
        "--max-padding", min=0, help="largest padding searched (default: the kernel span dilation·(kernel − 1); "
                                     "kernel // 2 with --ceil, PyTorch's limit for pooling)")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="show at most this many (0: all)")] = 20,
) -> None:
    """Every kernel / stride / padding / dilation (the ones not fixed) giving exactly OUTPUT from INPUT.

    Example: `layercalc solve --input 224 --output 112 -k 7` → stride 2, padding 3. Sorted with dilation 1 first,
    then by kernel, stride, padding. Exit status 0 also when nothing fits (the message says so and shows the
    nearest reachable outputs); 2 for invalid values.

    Bounds of the search (what real networks use; widen them with the --max-* options): kernel 1..11, stride 1..8,
    dilation 1..4, padding 0..dilation·(kernel − 1) (more only adds windows of zeros; with --ceil 0..kernel // 2),
    output_padding 0..max(stride, dilation) − 1 (--transposed, PyTorch's rule). When the wanted output is 1, only
    the smallest stride giving it is listed (every larger one does too). Each answer is checked by the forward
    formula, shown in the last column. A search of more than 1,500,000 combinations (a few seconds) is refused,
    naming the bound to lower.
    """
    from .explain import explain_length, explain_transposed_length
    from .solve import describe_bounds, solve

    found = solve(input_length, output_length, kernel_size, stride, padding, dilation, output_padding, transposed,
                  ceil, max_kernel, max_stride, max_dilation, max_padding)
    fixed = ", ".join(f"{name} {value}" for name, value in (("kernel", kernel_size), ("stride", stride),
                      ("padding", padding), ("dilation", dilation), ("output_padding", output_padding))
                      if value is not None)
    what = ("transposed conv " if transposed else "pooling (ceil mode) " if ceil else "") + \
        f"{input_length} → {output_length}" + (f" with {fixed}" if fixed else "")

    def check(s) -> str:
        if transposed:
            return explain_transposed_length(input_length, s.kernel, s.stride, s.padding, s.padding, s.dilation,
                                             s.output_padding)[0]
        line = explain_length(input_length, s.kernel, s.stride, s.padding, s.padding, s.dilation, ceil)[0]
        return line if line.endswith(f"= {output_length}") else f"{line} → {output_length} (last window dropped)"

    if not found.answers:
        nearest = "; ".join(f"{out} with kernel {c.kernel}, stride {c.stride}, padding {c.padding}, dilation "
                            f"{c.dilation}" + (f", output_padding {c.output_padding}" if transposed else "")
                            for out, c in found.nearest)
        print(f"no combination gives {what} (searched {describe_bounds(found.searched, ceil)})"
              + (f"; nearest reachable: {nearest}" if nearest else ""))
        return
    count = len(found.answers)
    print(f"{what}: {count} combination{'s' if count != 1 else ''}"
          + (f" (showing {limit}; --limit 0 for all)" if limit and count > limit else ""))
    if found.note:
        print(f"({found.note})")
    headers = ["kernel", "stride", "padding", "dilation"] + (["output_padding"] if transposed else []) + ["check"]
    rows = [[str(s.kernel), str(s.stride), str(s.padding), str(s.dilation)]
            + ([str(s.output_padding)] if transposed else []) + [check(s)]
            for s in (found.answers[:limit] if limit else found.answers)]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


# ================================================================================================ specs

def load_network(spec: str, batch: Optional[int] = None, input_shape: Optional[str] = None,
                 dtype: Optional[str] = None, layout: Optional[str] = None):
    """A ``Network`` from a path, ``-`` (stdin) or ``zoo:NAME``, with command-line overrides applied."""
    from . import spec as spec_module

    with spec_context(spec):
        return _load_network(spec_module, spec, batch, input_shape, dtype, layout)


class spec_context:
    """Prefix errors raised while reading or analyzing a spec with where the spec came from (once)."""

    def __init__(self, spec: str) -> None:
        self.origin = "<stdin>" if spec == "-" else spec

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from .errors import LayerCalcError
        if isinstance(exc, LayerCalcError) and not str(exc).startswith(("--", self.origin)):
            raise type(exc)(f"{self.origin}: {exc}") from None
        return False


def _load_network(spec_module, spec: str, batch, input_shape, dtype, layout):
    if spec == "-":
        data = spec_module.parse_text(_read_stdin(), "<stdin>")
        net = spec_module.from_data(data, "<stdin>")
    elif spec.startswith("zoo:"):
        try:
            net = spec_module.load(spec)
        except ImportError as exc:
            raise _spec_error(f"{spec}: the model zoo is not available in this installation ({exc})") from None
    else:
        net = spec_module.load(spec)
    overrides: dict[str, Any] = {}
    if batch is not None:
        overrides["batch"] = batch
    if input_shape is not None:
        overrides["input"] = parse_shape(input_shape, "--input")
    if dtype is not None:
        overrides["dtype"] = dtype
    if layout is not None:
        overrides["layout"] = layout
    return _with_overrides(net, overrides) if overrides else net


def _read_stdin() -> str:
    """Standard input as strict UTF-8 and at most ``spec.MAX_SPEC_BYTES``, like a spec file: Python's text stdin may
    decode with surrogateescape and hand the YAML parser text it cannot encode."""
    from .spec import read_capped

    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:                                # `layercalc summary - <&-`: Python sets sys.stdin to None
        raise _spec_error("<stdin>: cannot read: standard input is closed")
    try:
        return read_capped(buffer, "<stdin>")
    except OSError as exc:
        import errno
        reason = "standard input is closed" if exc.errno == errno.EBADF else exc.strerror or exc
        raise _spec_error(f"<stdin>: cannot read: {reason}") from None
    except ValueError as exc:                         # a closed file object
        from .errors import LayerCalcError
        if isinstance(exc, LayerCalcError):
            raise
        raise _spec_error(f"<stdin>: cannot read: {exc}") from None


def _with_overrides(net, overrides: dict):
    """Re-validate the network with some top-level fields replaced (the layers are kept as built)."""
    from pydantic import ValidationError

    from .errors import SpecError
    from .graph import Network

    data = {**{k: getattr(net, k) for k in ("name", "input", "batch", "layout", "dtype")}, **overrides,
            "layers": list(net.layers)}
    try:
        return Network.model_validate(data)
    except ValidationError as exc:
        detail = Network.describe_error(exc, data)
        raise SpecError(re.sub(r"field '(\w+)'", r"--\1", detail)) from None


SpecArg = Annotated[str, typer.Argument(help="YAML/JSON spec file, - for stdin, or zoo:NAME", metavar="SPEC")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch", "-b", min=1, metavar="N", help="batch size (overrides the spec)")]
InputOpt = Annotated[Optional[str], typer.Option("--input", "-i", metavar="SHAPE",
                                                 help="input shape without batch, e.g. 3x224x224 (overrides the spec)")]
DtypeOpt = Annotated[Optional[str], typer.Option("--dtype", metavar="DTYPE",
                                                 help="float32, float64, float16, bfloat16, int32, int8, uint8 "
                                                      "(overrides the spec)")]


def summary_command(
    spec: SpecArg,
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="table|markdown|csv|json",
                                     help="output format; json is the Report model, exact integers")] = "table",
    columns: Annotated[Optional[str], typer.Option(
        "--columns", "-c", metavar="LIST",
        help="comma-separated: index, name, type, inputs, input_shape, output_shape, params, buffers, macs, flops, "
             "param_memory, memory, receptive_field, jump, notes (or all). Default: name, type, output_shape, "
             "params, macs, flops, memory")] = None,
    depth: Annotated[Optional[int], typer.Option("--depth", min=1, help="group rows by dotted-name prefix "
                                                 "(layer3.2.conv1 → layer3 at depth 1), with subtotals")] = None,
    numbers: Numbers = "exact",
    batch: BatchOpt = None,
    input_shape: InputOpt = None,
    dtype: DtypeOpt = None,
    keras_shapes: Annotated[bool, typer.Option("--keras-shapes", help="shapes as (None, 26, 26, 32), Keras-style")]
    = False,
    explain: Annotated[bool, typer.Option("--explain", "-e", help="worked formulas for every layer")] = False,
) -> None:
    """Per-layer table of a whole network (shapes, params, MACs, FLOPs, memory) with totals and conventions.

    `--format json` prints `Report.model_dump(mode="json")` exactly (the documented schema); --columns, --depth and
    --explain apply to the table and markdown forms (and --columns/--depth to csv).
    """
    from .formatting import parse_columns, render_report

    fmt = _check_choice(fmt, ("table", "markdown", "csv", "json"), "--format")
    numbers = _check_choice(numbers, ("exact", "human"), "--numbers")
    if fmt == "json":
        given = [name for name, value in (("--columns", columns), ("--depth", depth), ("--explain", explain),
                                          ("--keras-shapes", keras_shapes)) if value]
        if given:
            raise _spec_error(f"{', '.join(given)} cannot be combined with --format json (the JSON is the whole "
                              f"report, every layer and field)")
    if fmt == "csv" and explain:
        raise _spec_error("--explain cannot be combined with --format csv")
    keys = parse_columns(columns)
    net = load_network(spec, batch, input_shape, dtype)
    with spec_context(spec):
        report = net.analyze()
    print(render_report(report, fmt, keys, depth, numbers, keras_shapes))
    if explain:
        text = "\n".join(explain_network(net, report))
        print("\n```\n" + text + "\n```" if fmt == "markdown" else "\n" + text)


def explain_network(net, report) -> list[str]:
    """Every layer's worked formulas, in execution order."""
    from .explain import explain_layer
    from .formatting import shape_text

    by_name = {entry.name: entry for entry in report.layers}
    rank = len(net.input) - 1
    lines = []
    for step in net.resolve():
        source = step.inputs[0]
        if source == "input":
            input_rf = ([1] * rank, [1] * rank) if rank >= 1 else None
        else:
            producer = by_name[source]
            input_rf = (producer.receptive_field, producer.jump) if producer.receptive_field else None
        ins = ", ".join(shape_text(s) for s in step.input_shapes)
        lines.append(f"[{step.index}] {step.name} ({step.layer.type_name}): {ins} → "
                     f"{shape_text(step.facts.output_shape)}")
        lines += ["    " + line for line in explain_layer(step.layer, step.input_shapes, step.facts,
                                                          net.channels_last, report.dtype_bytes, input_rf)]
    return lines


def schema_command() -> None:
    """Print the JSON Schema of the spec format (for editors and design tools)."""
    import json

    from .spec import schema
    print(json.dumps(schema(), indent=2, ensure_ascii=False))


def zoo_command(numbers: Numbers = "exact") -> None:
    """List the bundled networks with their params and MACs (use them as `zoo:NAME` wherever a SPEC goes)."""
    numbers = _check_choice(numbers, ("exact", "human"), "--numbers")
    try:
        from . import zoo
    except ImportError as exc:
        raise _spec_error(f"the model zoo is not available in this installation ({exc})") from None
    from tabulate import tabulate

    from .formatting import count, shape_text

    rows = []
    for name in zoo.list_models():
        report = zoo.load(name).analyze()
        rows.append([name, shape_text(report.input_shape[1:]), str(len(report.layers)),
                     count(report.totals.params, numbers), count(report.totals.macs, numbers)])
    print(tabulate(rows, headers=["name", "input", "layers", "params", "MACs"], tablefmt="simple",
                   colalign=["left", "left", "right", "right", "right"], disable_numparse=True))
    print("\nuse as SPEC: layercalc summary zoo:NAME")


# ================================================================================================ verify / run

class Progress:
    """A progress bar on stderr, shown only on a terminal and only once a run takes more than a moment."""

    def __init__(self, enabled: bool, delay: float = 0.5, width: int = 30) -> None:
        import time
        self.enabled = enabled
        self.delay, self.width = delay, width
        self.start = time.perf_counter()
        self.shown = False

    def __call__(self, done: int, total: int, name: str) -> None:
        import time
        if not self.enabled or (not self.shown and time.perf_counter() - self.start < self.delay):
            return
        filled = int(self.width * done / max(total, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} {name[:40]:<40}")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * (self.width + 60) + "\r")
            sys.stderr.flush()


def _load_weights(path: Optional[str], net=None, limit: Optional[int] = None):
    """The --weights archive, its headers checked against ``net``'s layers and ``limit`` before any array is read."""
    if path is None:
        return None
    from .executor import default_memory_limit, load_weights
    if not os.path.exists(path):
        raise _spec_error(f"--weights: {path}: no such file")
    steps = net.resolve() if net is not None else None
    return load_weights(path, steps, bool(net is not None and net.channels_last),
                        default_memory_limit() if limit is None else limit)


MaxMemoryOpt = Annotated[Optional[str], typer.Option(
    "--max-memory", metavar="SIZE", help="refuse runs estimated above this (512M, 2G, 1.5GB; default: 80 % of the "
                                         "available memory)")]
ComputeDtypeOpt = Annotated[Optional[str], typer.Option("--dtype", metavar="float32|float64",
                                                        help="compute precision (default float32)")]


WeightsOpt = Annotated[Optional[str], typer.Option("--weights", "-w", metavar="FILE.npz",
                                                   help="weights to load (missing ones are random)")]
SeedOpt = Annotated[int, typer.Option("--seed", help="seed of the random input and weights")]


def verify_command(
    spec: SpecArg,
    weights: WeightsOpt = None,
    batch: BatchOpt = None,
    seed: SeedOpt = 0,
    dtype: ComputeDtypeOpt = None,
    max_memory: MaxMemoryOpt = None,
    progress: Annotated[Optional[bool], typer.Option("--progress/--no-progress",
                                                     help="progress bar on stderr (default: on a terminal)")] = None,
    numbers: Numbers = "exact",
) -> None:
    """Run the real forward pass (NumPy) and check every layer's output shape and MACs against the analysis.

    Prints ✓/✗ per layer; exit status 1 when any layer differs (2 for a bad spec, weights or memory limit).
    """
    numbers = _check_choice(numbers, ("exact", "human"), "--numbers")
    if dtype is not None:
        dtype = _check_choice(dtype, ("float32", "float64"), "--dtype")
    net = load_network(spec, batch)
    limit = _max_memory(max_memory)
    from tabulate import tabulate

    from .errors import ResourceError
    from .executor import weight_sources
    from .formatting import count, shape_text
    from .verify import verify

    bar = Progress(sys.stderr.isatty() if progress is None else progress)
    try:
        with spec_context(spec):
            loaded = _load_weights(weights, net, limit)
            result = verify(net, weights=loaded, seed=seed, progress=bar, dtype=dtype, max_memory=limit)
            sources = result.weights or weight_sources(net, loaded, seed)
    except MemoryError:
        raise ResourceError("verify: ran out of memory; use a smaller --batch or a lower --max-memory") from None
    finally:
        bar.close()
    if weights is not None:
        sources.source = weights
    rows = [[c.index, c.name, c.type, shape_text(c.expected_shape), shape_text(c.actual_shape),
             count(c.expected_macs, numbers), count(c.actual_macs, numbers), "✓" if c.ok else "✗"]
            for c in result.checks]
    print(tabulate(rows, headers=["#", "name", "type", "expected shape", "actual shape", "expected MACs",
                                  "actual MACs", "ok"], tablefmt="simple", disable_numparse=True,
                   colalign=["right", "left", "left", "left", "left", "right", "right", "center"]))
    bad = [c for c in result.checks if not c.ok]
    missing = list(getattr(result, "missing", []) or [])
    if result.ok and not bad:
        status = "every output shape and MAC count matches the analysis"
    else:
        parts = [f"{len(bad)} layer(s) differ ({', '.join(c.name for c in bad[:5])}{' …' if len(bad) > 5 else ''})"]
        if missing:
            parts.append(f"{len(missing)} layer(s) never ran ({', '.join(missing[:5])})")
        status = "; ".join(parts)
    print(f"\nverified {len(result.checks)} layers in {result.seconds:.2f} s: {status}")
    estimate = getattr(result, "estimate", None)
    if estimate is not None and hasattr(estimate, "describe"):
        print(f"memory estimate: {estimate.describe()}")
    print(sources.describe())
    if bad or missing or not result.ok:
        raise typer.Exit(1)


def _max_memory(text: Optional[str]):
    if text is None:
        return None
    from .executor import parse_bytes
    try:
        return parse_bytes(text)
    except Exception as exc:
        from .errors import LayerCalcError
        if isinstance(exc, LayerCalcError):
            raise type(exc)(f"--max-memory: {exc}") from None
        raise


def run_command(
    spec: SpecArg,
    input_path: Annotated[Optional[str], typer.Option("--input", "-i", metavar="DATA.npy",
                                                      help="input array, batch included (default: random)")] = None,
    output_path: Annotated[Optional[str], typer.Option("--output", "-o", metavar="OUT.npy|OUT.npz",
                                                       help="where to save the output (.npz for several)")] = None,
    weights: WeightsOpt = None,
    batch: BatchOpt = None,
    seed: SeedOpt = 0,
    dtype: ComputeDtypeOpt = None,
    max_memory: MaxMemoryOpt = None,
) -> None:
    """Run the network's forward pass on your data with the bundled NumPy executor.

    The input array includes the batch dim ([N, C, H, W] or [N, H, W, C]); its batch overrides the spec's.
    """
    import numpy as np

    if dtype is not None:
        dtype = _check_choice(dtype, ("float32", "float64"), "--dtype")
    net = load_network(spec, batch)
    limit = _max_memory(max_memory)
    from .errors import ResourceError
    from .executor import default_memory_limit, load_array, run, weight_sources

    def check_input_shape(shape) -> None:
        expected = [*net.input]
        if list(shape[1:]) != expected or len(shape) != len(expected) + 1:
            raise _spec_error(f"--input: {input_path}: shape {list(shape)}, expected [batch, "
                              f"{', '.join(map(str, expected))}] (the spec's input {expected} after a batch dim)")
        if batch is not None and shape[0] != batch:
            raise _spec_error(f"--input: {input_path} holds a batch of {shape[0]} (shape {list(shape)}) but "
                              f"--batch is {batch}: drop --batch (the array's batch is used) or make them agree")

    try:
        x = None
        if input_path is not None:
            if not os.path.exists(input_path):
                raise _spec_error(f"--input: {input_path}: no such file")
            x = load_array(input_path, "--input", default_memory_limit() if limit is None else limit,
                           check_input_shape)
        with spec_context(spec):
            loaded = _load_weights(weights, net, limit)
            out = run(net, x=x, weights=loaded, seed=seed, dtype=dtype, max_memory=limit)
            sources = weight_sources(net, loaded, seed, weights)
    except MemoryError:
        raise ResourceError("run: ran out of memory; use a smaller input or batch, or a lower --max-memory") from None
    outputs = out if isinstance(out, dict) else {_output_name(net): out}
    for name, array in outputs.items():
        print(f"{name}: shape {list(array.shape)} {array.dtype}, min {array.min():.6g}, max {array.max():.6g}, "
              f"mean {array.mean():.6g}")
    print(sources.describe())
    if output_path is None:
        return
    if not output_path.endswith(".npz") and len(outputs) > 1:
        raise _spec_error(f"--output: the network has {len(outputs)} outputs ({', '.join(outputs)}): "
                          f"give a .npz path to save them all")
    try:
        # through an open file: NumPy writes exactly this name (given a path, it would append .npy / .npz)
        with open(output_path, "wb") as f:
            if output_path.endswith(".npz"):
                np.savez(f, **outputs)
            else:
                np.save(f, next(iter(outputs.values())))
    except OSError as exc:
        raise _spec_error(f"--output: {output_path}: cannot write ({exc.strerror or exc})") from None
    print(f"wrote {output_path}")


def _output_name(net) -> str:
    steps_names = net.layer_names()
    consumed = {src for inputs in net.wiring()[1] for src in inputs}
    outputs = [name for name in steps_names if name not in consumed]
    return outputs[-1] if outputs else steps_names[-1]


# ================================================================================================ calculators

#: short flags for the most used fields
SHORT_FLAGS = {"kernel_size": "-k", "stride": "-s", "padding": "-p", "dilation": "-d", "groups": "-g"}
#: command-line option names that every calculator has; a layer field with one of these names would clash
COMMON_OPTIONS = ("input", "batch", "layout", "dtype", "explain", "json", "numbers")


def _leaves(annotation, out: set) -> set:
    """The leaf types of an annotation: int, float, bool, str, 'list', 'literal', 'none'."""
    import types
    from typing import Literal, Union, get_args, get_origin

    origin = get_origin(annotation)
    if origin is Annotated:
        _leaves(get_args(annotation)[0], out)
    elif origin is Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        for arg in get_args(annotation):
            _leaves(arg, out)
    elif origin is Literal:
        out.add("literal")
    elif origin in (list, tuple) or annotation in (list, tuple):
        out.add("list")
    elif annotation is type(None):
        out.add("none")
    else:
        out.add(annotation)
    return out


def _literal_values(annotation) -> list[str]:
    from typing import Literal, get_args, get_origin

    found = []
    if get_origin(annotation) is Literal:
        return [str(v) for v in get_args(annotation)]
    for arg in get_args(annotation):
        found += _literal_values(arg)
    return found


def field_kind(name: str, annotation) -> str:
    """How a layer field is written on the command line: bool, padding, ints, ints_list, sizes, float, int, str."""
    leaves = _leaves(annotation, set())
    if bool in leaves:
        return "bool"
    if name == "padding":
        return "padding"
    if "list" in leaves:
        if name == "output_size":
            return "sizes"
        return "ints" if int in leaves else "ints_list"
    if float in leaves:
        return "float"
    if int in leaves:
        return "int"
    return "str"


def _convert(kind: str, text: str, option: str):
    if kind == "padding":
        return parse_padding(text, option)
    if kind == "ints":
        return parse_ints(text, option)
    if kind == "ints_list":
        return parse_ints(text, option, always_list=True)
    if kind == "sizes":
        return parse_ints(text, option, allow_none=True)
    if kind == "float":
        return parse_float(text, option)
    if kind == "int":
        return parse_int(text, option)
    return text


def _option_help(info, kind: str, annotation) -> str:
    from pydantic_core import PydanticUndefined

    parts = [info.description] if info.description and kind != "padding" else []
    forms = {"ints": "N or NxM (one per spatial dim)", "ints_list": "sizes like 4x-1", "padding":
             "same, valid, N, NxM or [[before, after], ...]", "sizes": "N or NxM; none keeps the input size"}
    if kind == "padding" and not _takes_padding_modes(info):
        parts.append("N, NxM or [[before, after], ...]")              # zero_pad: amounts only, no 'same'/'valid'
    elif kind in forms:
        parts.append(forms[kind])
    choices = _literal_values(annotation) if kind == "str" else []
    if choices:
        parts.append("one of " + ", ".join(choices))
    described = "default" in (info.description or "")       # e.g. "default: the kernel size" says it better
    if info.default not in (PydanticUndefined, None) and kind != "bool" and not described:
        parts.append(f"default {info.default}")         # None: optional, and the description says what then
    return "; ".join(parts)


def _layer_fields(cls) -> list[tuple[str, Any]]:
    return [(name, info) for name, info in cls.model_fields.items() if name not in ("type", "name", "inputs")]


def make_calculator(type_name: str, cls):
    """The command function for one layer type, its options generated from the model's fields."""
    from pydantic import AliasChoices

    params = []
    kinds: dict[str, tuple[str, str]] = {}          # field → (kind, option label)
    merge = cls.max_inputs is None or cls.max_inputs > 1
    params.append(inspect.Parameter(
        "cli_input", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[list[str], typer.Option(
            "--input", "-i", metavar="SHAPE",
            help="shape of one example without the batch, e.g. 1x28x28 or 1,28,28"
                 + ("; repeat --input for each input of the merge" if merge else ""))]))
    required, optional = [], []
    for name, info in _layer_fields(cls):
        if name in COMMON_OPTIONS:                 # never expected; fail loudly at build time, not at use
            raise RuntimeError(f"layer field {name!r} of {type_name} clashes with a common option")
        kind = field_kind(name, info.annotation)
        option = "--" + name.replace("_", "-")
        decls = [option]
        if kind == "bool":
            decls = [f"{option}/--no-{name.replace('_', '-')}"]
        else:
            alias = info.validation_alias
            if isinstance(alias, AliasChoices):
                decls += ["--" + a.replace("_", "-") for a in alias.choices if isinstance(a, str) and a != name]
            if name in SHORT_FLAGS:
                decls.append(SHORT_FLAGS[name])
        kinds[name] = (kind, option)
        help_text = _option_help(info, kind, info.annotation)
        if kind == "bool":
            annotation = Annotated[Optional[bool], typer.Option(*decls, help="; ".join(
                filter(None, [help_text, f"default {'on' if info.default else 'off'}"])))]
        else:
            metavar = "N[xM]" if kind == "padding" and not _takes_padding_modes(info) else _metavar(kind)
            annotation = Annotated[Optional[str], typer.Option(*decls, help=help_text, metavar=metavar)]
        if info.is_required():
            required.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation))
        else:
            optional.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                              default=None))
    common = [
        ("cli_batch", Annotated[int, typer.Option("--batch", "-b", min=1, metavar="N", help="batch size")], 1),
        ("cli_layout", Annotated[str, typer.Option("--layout", metavar="NCHW|NHWC",
                                                   help="NCHW (channels first) or NHWC (channels last)")], "NCHW"),
        ("cli_dtype", Annotated[str, typer.Option("--dtype", metavar="DTYPE", help="float32, float64, float16, "
                                                  "bfloat16, int32, int8, uint8 (bytes per element)")], "float32"),
        ("cli_explain", Annotated[bool, typer.Option("--explain", "-e", help="show the worked formulas")], False),
        ("cli_json", Annotated[bool, typer.Option("--json", help="print the layer's report as JSON")], False),
        ("cli_numbers", Numbers, "exact"),
    ]
    params += required + optional + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=a, default=d)
                                     for n, a, d in common]

    def command(**values):
        run_calculator(type_name, cls, kinds, values)

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = f"{type_name}_command"
    doc = (cls.__doc__ or "").strip().split("\n\n")[0] if cls.__doc__ and cls.__module__ == "layercalc.layers" \
        and cls.__doc__ != cls.__mro__[1].__doc__ else ""
    command.__doc__ = (f"{type_name} layer: output shape, params, MACs, FLOPs, memory, receptive field."
                       + (f"\n\n{' '.join(doc.split())}" if doc else ""))
    return command


def _short_help(type_name: str, cls) -> str:
    return f"{cls.__name__} layer calculator"


def _takes_padding_modes(info) -> bool:
    """Does a padding field accept 'same'/'valid' (conv, pooling) or only amounts (zero_pad)? Its description
    lists the forms it accepts."""
    return "'same'" in (info.description or "")


def _metavar(kind: str) -> str:
    return {"ints": "N[xM]", "ints_list": "AxB", "padding": "same|valid|N[xM]", "sizes": "N[xM]",
            "float": "X", "int": "N"}.get(kind, "TEXT")


def _cli_message(message: str, type_name: str, kinds: dict) -> str:
    """Library messages name the spec (``layers[0] 'x' (conv2d): field 'kernel_size'``); say it in CLI terms."""
    message = re.sub(r"^(spec: )?layers\[0\]( '[^']*')? \([\w]+\): ", f"{type_name}: ", message)

    def option(match):
        field = match.group(1)
        return kinds[field][1] if field in kinds else match.group(0)
    return re.sub(r"field '(\w+)'", option, message)


def run_calculator(type_name: str, cls, kinds: dict, values: dict) -> None:
    from .errors import GraphError, LayerCalcError
    from .layers import parse_layer

    raw: dict[str, Any] = {"type": type_name}
    if cls.max_inputs is None or cls.max_inputs > 1:      # messages then name the inputs in the user's order
        raw["inputs"] = [f"input{i + 1}" for i in range(len(values["cli_input"]))]
    for name, (kind, option) in kinds.items():
        value = values.get(name)
        if value is not None:
            raw[name] = value if kind == "bool" else _convert(kind, value, option)
    shapes = [parse_shape(text) for text in values["cli_input"]]
    n_min, n_max = cls.min_inputs, cls.max_inputs
    if len(shapes) < n_min or (n_max is not None and len(shapes) > n_max):
        want = f"exactly {n_min}" if n_min == n_max else f"at least {n_min}"
        raise GraphError(f"{type_name}: takes {want} --input shape{'s' if n_min > 1 else ''}, got {len(shapes)}")
    numbers = _check_choice(values["cli_numbers"], ("exact", "human"), "--numbers")
    if values["cli_json"] and values["cli_explain"]:       # the JSON must stay parseable: no text after it
        raise _spec_error("--explain cannot be combined with --json (the JSON is the layer's report only)")
    try:
        layer = parse_layer(raw, 0)
        net = _one_layer_network(type_name, layer, shapes, values)
        if len(shapes) == 1:
            step = net.resolve()[0]
            report = net.analyze()
            entry, facts, itemsize = report.layers[0], step.facts, report.dtype_bytes
        else:
            entry, facts, itemsize = _merge_entry(type_name, layer, shapes, net)
    except LayerCalcError as exc:
        raise type(exc)(_cli_message(str(exc), type_name, kinds)) from None
    if values["cli_json"]:
        import json
        print(json.dumps(entry.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        print(render_calculator(layer, entry, net, numbers))
    if values["cli_explain"]:
        from .explain import explain_layer
        rank = len(shapes[0]) - 1
        input_rf = ([1] * rank, [1] * rank) if rank >= 1 else None
        print("\nhow:")
        for line in explain_layer(layer, [tuple(s) for s in entry.input_shapes], facts, net.channels_last,
                                  itemsize, input_rf):
            print("  " + line)


def _one_layer_network(type_name: str, layer, shapes: list[list[int]], values: dict):
    from pydantic import ValidationError

    from .errors import SpecError
    from .graph import Network

    data = {"name": type_name, "input": shapes[0], "batch": values["cli_batch"], "layout": values["cli_layout"],
            "dtype": values["cli_dtype"], "layers": [layer if len(shapes) == 1 else {"type": "identity"}]}
    try:
        return Network.model_validate(data)
    except ValidationError as exc:
        detail = Network.describe_error(exc, data)
        raise SpecError(re.sub(r"field '(\w+)'", r"--\1", detail)) from None


def _merge_entry(type_name: str, layer, shapes: list[list[int]], net):
    """A merge layer (add / mul / concat) on several inputs: a ``Network`` has one input, so the layer's rule is
    applied to the given tensors directly, and its facts reported the way ``Network.analyze`` reports them."""
    from .graph import DTYPE_BYTES
    from .report import LayerReport
    from .rules import Context, ReceptiveField, Tensor, infer, numel, report_jump

    itemsize = DTYPE_BYTES[net.dtype]
    tensors = []
    for shape in shapes:
        full = (net.batch, *shape)
        tensors.append(Tensor(full, ReceptiveField.of_input(len(shape) - 1) if len(shape) >= 2 else None))
    facts = infer(layer, tensors, Context(type_name, net.channels_last))
    rf = facts.rf
    names = [f"input{i + 1}" for i in range(len(shapes))]
    entry = LayerReport(
        index=0, name=type_name, type=layer.type_name, inputs=names, input_shapes=[list(t.shape) for t in tensors],
        output_shape=list(facts.output_shape), params=facts.params, buffers=facts.buffers, macs=facts.macs,
        flops=facts.flops, param_bytes=facts.params * itemsize, activation_bytes=numel(facts.output_shape) * itemsize,
        receptive_field=[int(v) for v in rf.size] if rf is not None else None,
        jump=report_jump(rf), notes=facts.notes)
    return entry, facts, itemsize


def _field_text(value) -> str:
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) for v in value):
        if all(b == a for b, a in value):
            return "×".join(str(b) for b, _ in value)
        return "×".join(f"({b},{a})" for b, a in value)
    if isinstance(value, (tuple, list)):
        return "×".join("none" if v is None else str(v) for v in value)
    return str(value)


def render_calculator(layer, entry, net, numbers: str) -> str:
    """The calculator's answer: the layer's settings, then shapes, counts, memory, receptive field, notes."""
    from .formatting import count, dims_text, human_bytes, nbytes, shape_text

    settings = " ".join(f"{name}={_field_text(getattr(layer, name))}" for name, _ in _layer_fields(type(layer))
                        if getattr(layer, name) is not None)
    b = (lambda v: human_bytes(v)) if numbers == "human" else (lambda v: f"{nbytes(v)} B")
    memory = f"output {b(entry.activation_bytes)}"
    if entry.params:
        memory += f" · params {b(entry.param_bytes)}"
    memory += f" ({net.dtype}, {entry.activation_bytes // max(1, _numel(entry.output_shape))} bytes/element)"
    rows = [("input shape", "  ".join(shape_text(s) for s in entry.input_shapes)
             + f"  ({net.layout}, batch {net.batch})"),
            ("output shape", shape_text(entry.output_shape)),
            ("params", count(entry.params, numbers))]
    if entry.buffers:
        rows.append(("buffers", count(entry.buffers, numbers) + " (running mean and variance)"))
    # say which convention each count follows, and what torch's flop counter (2·MACs) would print instead
    flops = f"{count(entry.flops, numbers)} (2 per MAC + bias adds + element ops"
    if entry.flops != 2 * entry.macs:
        flops += f"; torch.utils.flop_counter counts 2·MACs = {count(2 * entry.macs, numbers)}"
    flops += ")"
    rows += [("MACs", f"{count(entry.macs, numbers)} (multiply-accumulates, bias excluded)"), ("FLOPs", flops),
             ("memory", memory)]
    if entry.receptive_field is not None:
        rows.append(("receptive field", f"{dims_text(entry.receptive_field)} (jump {dims_text(entry.jump)})"))
    rows += [("notes" if i == 0 else "", note) for i, note in enumerate(entry.notes)]
    width = max(len(k) for k, _ in rows)
    head = f"{layer.type_name}" + (f": {settings}" if settings else "")
    return "\n".join([head] + [f"  {k.ljust(width)}  {v}" for k, v in rows])


def _numel(shape) -> int:
    total = 1
    for s in shape:
        total *= s
    return total


# ================================================================================================ the app

def build_app(with_layers: bool = True) -> typer.Typer:
    """The typer app; ``with_layers=False`` skips generating the calculators (no Pydantic import)."""
    app = typer.Typer(name=PROG, cls=CliGroup, no_args_is_help=True, rich_markup_mode=None,
                      pretty_exceptions_enable=False, add_completion=True,
                      context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
    app.callback()(_root)
    app.command("size")(size_command)
    app.command("solve")(solve_command)
    app.command("summary")(summary_command)
    app.command("schema")(schema_command)
    app.command("zoo")(zoo_command)
    app.command("verify")(verify_command)
    app.command("run")(run_command)
    if with_layers:
        from .layers import LAYER_TYPES
        canonical = {cls: name for name, cls in reversed(list(LAYER_TYPES.items()))}
        for type_name, cls in LAYER_TYPES.items():
            alias_of = canonical[cls] if canonical[cls] != type_name else None
            app.command(type_name, hidden=alias_of is not None, short_help=_short_help(type_name, cls),
                        help=None if alias_of is None else f"Same as `{alias_of}`.")(make_calculator(type_name, cls))
    return app


_APPS: dict[bool, typer.Typer] = {}


def get_app(with_layers: bool = True) -> typer.Typer:
    if with_layers not in _APPS:
        _APPS[with_layers] = build_app(with_layers)
    return _APPS[with_layers]


def _needs_layers(argv: list[str]) -> bool:
    """Only the calculators, the full help and shell completion need the generated layer commands."""
    if any(key.endswith("_COMPLETE") for key in os.environ if key.startswith("_")):
        return True
    words = [a for a in argv if a != "--debug"]
    if words and words[0] == "--version":
        return False
    return not (words and words[0] in GENERAL_COMMANDS)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point of the ``layercalc`` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    app = get_app(_needs_layers(args))
    typer.main.get_command(app).main(args=args, prog_name=PROG)


def __getattr__(name: str):
    if name == "app":                # `from layercalc.cli import app` (tests, typer's own tooling)
        return get_app(True)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
