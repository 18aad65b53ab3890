"""The ``layercalc`` command: a thin typer shell over the library (no calculation lives here).

Each command parses its options, calls the library, renders the answer and sets the exit status:
- :mod:`.calculators`: one calculator per layer type, generated from the Pydantic models in
  ``layercalc.layers.LAYER_TYPES`` (``layercalc conv2d --input 1x28x28 --out-channels 32 -k 3``): each builds a
  one-layer ``Network`` and prints what ``analyze()`` reports; ``--explain`` adds the worked formulas;
- :mod:`.size`: ``size`` (one dimension, one line: :func:`layercalc.size`) and ``solve`` (the inverse question:
  :func:`layercalc.solve`);
- :mod:`.network`: ``summary SPEC`` (a whole network; SPEC is a file, ``-`` for stdin, or ``zoo:NAME``),
  ``convert``, ``schema``, ``zoo``; :mod:`.execute`: ``verify SPEC`` / ``run SPEC`` over :mod:`layercalc.verify` and
  :mod:`layercalc.executor`; :mod:`.catalog`: ``types``; :mod:`.drawing`: ``draw`` and ``chart``;
- :mod:`.options`: reading option values as typed (shapes, whole numbers, paddings, choices);
- this module: the app (:func:`build_app`, :func:`get_app`, :func:`main`) and the error handling (:class:`CliGroup`).

Exit status: 0 success; 1 an internal bug (or, for ``verify``, a mismatch found); 2 any user mistake — a
``LayerCalcError``, a malformed option value, a missing file — reported as ONE line ``layercalc: error: …`` on
stderr without a traceback (``--debug`` anywhere on the command line shows one).

Start-up: ``layercalc size`` must answer in well under a second, so heavy modules (the Pydantic layer models, rich,
numpy, tabulate, yaml) are imported only by the commands that need them; the per-layer calculators are generated
only when the command line asks for one (or for the full help / shell completion).
"""

import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Annotated, Any, NoReturn, Optional

import typer
from typer.core import TyperGroup

from ..errors import LayerCalcError
from ..terminal import set_width_override, terminal_width, width_override, wrap
from .calculators import make_calculator, render_calculator, run_calculator, short_help
from .network import (
    convert_command,
    explain_network,
    load_network,
    schema_command,
    spec_context,
    summary_command,
    zoo_command,
)
from .options import (
    TooManyDigits,
    _option_int,
    _shown,
    digits_to_int,
    parse_float,
    parse_int,
    parse_ints,
    parse_padding,
    parse_shape,
    take_width_options,
)
from .size import size_command, solve_command

__all__ = ["main", "get_app", "build_app", "CliGroup", "make_calculator", "render_calculator", "run_calculator",
           "Progress", "explain_network", "load_network", "spec_context", "digits_to_int", "TooManyDigits",
           "parse_shape", "parse_ints", "parse_padding", "parse_float", "parse_int"]

PROG = "layercalc"
DEBUG_ENV = "LAYERCALC_DEBUG"
#: Python files of layer types to load before any command (like --plugin), separated by os.pathsep
PLUGINS_ENV = "LAYERCALC_PLUGINS"


# ================================================================================================ error handling

#: the longest error line printed; values inside messages are already cut (errors.shown), this is the last guard
MAX_ERROR_CHARS = 2000


def _error(message: str) -> None:
    """Print the error as one line on stderr: whitespace runs joined, control characters escaped, cut to
    :data:`MAX_ERROR_CHARS` characters."""
    from ..errors import safe_text

    text = safe_text(" ".join(str(message)[:4 * MAX_ERROR_CHARS].split()))    # always one line
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS] + " …"
    line = f"{PROG}: error: {text}"
    if _wrap_errors():               # a person reads it: wrapped at word boundaries with a hanging indent
        line = wrap(line, terminal_width(), hanging="    ")
    try:
        print(line, file=sys.stderr)
    except (OSError, ValueError, AttributeError):  # stderr closed or full: nothing more can be said
        pass


def _wrap_errors() -> bool:
    """Error lines are wrapped for a person at a terminal (stderr is one) or when a width was asked for (--width,
    --wide); a program reading stderr through a pipe gets the one line it can match."""
    if width_override() is not None:
        return True
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (OSError, ValueError):
        return False


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

    def main(self, args: Optional[Sequence[str]] = None, prog_name: Optional[str] = None,
             complete_var: Optional[str] = None, standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> NoReturn:
        """Always ends the process with ``sys.exit`` (``standalone_mode`` is ignored)."""
        click_exc = _click_exceptions()

        args = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
        args = [a for a in args if a != "--debug"]
        set_width_override(None)                 # an earlier run in this process (tests) must not leak its width
        try:
            args, width = take_width_options(args)
            set_width_override(width)
            # help text wrapped to the same width as the answers (click would use the terminal's, or 80)
            width = terminal_width()
            extra.setdefault("terminal_width", width)
            extra.setdefault("max_content_width", width)
            result = super().main(args=args, prog_name=prog_name or PROG, complete_var=complete_var,
                                  standalone_mode=False, windows_expand_args=windows_expand_args, **extra)
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


def _click_exceptions() -> ModuleType:
    try:
        from typer._click import exceptions  # typer ≥ 0.2x vendors click
    except ImportError:
        import importlib
        return importlib.import_module("click.exceptions")       # older typer: click itself
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
    from ..errors import LayerCalcError

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
            if name is None or param is None or param.is_eager:          # --help, --version: act at once
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


def _version_callback(value: bool) -> None:
    if value:
        from .. import __version__
        print(f"{PROG} {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version_callback, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show a traceback on errors (accepted anywhere).")] = False,
    # --wide, --width, --debug and --plugin are taken out of the command line before click parses it (accepted
    # anywhere: CliGroup.main, main); declared here for --help
    wide: Annotated[bool, typer.Option("--wide", help="No width limit: every column and line in full "
                                                      "(accepted anywhere).")] = False,
    width: Annotated[Optional[int], typer.Option(
        "--width", metavar="N", help="Fit the output to N columns (accepted anywhere; default: COLUMNS, else "
                                     "the terminal's width, else 80).")] = None,
    plugin: Annotated[Optional[list[str]], typer.Option(
        "--plugin", metavar="FILE.py", help=f"Load layer types of your own from a Python file (accepted anywhere, "
                                            f"repeatable; also the {PLUGINS_ENV} environment variable: files "
                                            f"separated by '{os.pathsep}').")] = None,
) -> None:
    """Shapes, parameters, MACs/FLOPs, memory and receptive fields of neural-network layers — no framework needed.

    Calculators: one command per layer type (`layercalc conv2d --input 1x28x28 --out-channels 32 -k 3`).
    Whole networks: `layercalc summary net.yaml` (or `-` for stdin, or `zoo:resnet50`).
    """


# ================================================================================================ the app

#: the general commands, in the order ``--help`` lists them
GENERAL_COMMANDS: "dict[str, Callable[..., Any] | str]" = {
    "size": size_command, "solve": solve_command, "summary": summary_command,
    "convert": convert_command, "schema": schema_command, "zoo": zoo_command, "types": ".catalog:types_command",
    "draw": ".drawing:draw_command", "chart": ".drawing:chart_command", "verify": ".execute:verify_command",
    "run": ".execute:run_command"}


def _command(entry: "Callable[..., Any] | str") -> "Callable[..., Any]":
    """A general command's function; given as ``.module:function``, its module is imported only when the command
    is registered (``layercalc --version`` or ``size`` never import the executing and drawing commands)."""
    if callable(entry):
        return entry
    import importlib
    module, function = entry.split(":")
    return getattr(importlib.import_module(module, __name__), function)


def build_app(with_layers: bool = True, only: Optional[str] = None) -> typer.Typer:
    """The typer app; ``with_layers=False`` skips generating the calculators (no Pydantic import); ``only``: the one
    command the command line runs — a general command, or a layer type (its calculator alone: generating all ~96
    and importing every family is most of a calculator's start-up). typer turns every registered command into a
    click command before running one: ~0.5 ms each, for nothing."""
    app = typer.Typer(name=PROG, cls=CliGroup, no_args_is_help=True, rich_markup_mode=None,
                      pretty_exceptions_enable=False, add_completion=True,
                      context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
    app.callback()(_root)
    for name, command in GENERAL_COMMANDS.items():
        if only is None or name == only:
            app.command(name)(_command(command))
    if only is not None and only not in GENERAL_COMMANDS and not only.startswith("-"):
        cls = _layer_type(only)
        if cls is not None:
            app.command(only, short_help=short_help(only, cls))(make_calculator(only, cls))
            return app
    if with_layers:
        from ..layers import LAYER_TYPES, load_plugins
        load_plugins()                                   # installed packages' types get calculators too
        canonical = {cls: name for name, cls in reversed(list(LAYER_TYPES.items()))}
        for type_name, cls in LAYER_TYPES.items():
            alias_of = canonical[cls] if canonical[cls] != type_name else None
            app.command(type_name, hidden=alias_of is not None, short_help=short_help(type_name, cls),
                        help=None if alias_of is None else f"Same as `{alias_of}`.")(make_calculator(type_name, cls))
    return app


def _layer_type(name: str):
    """The layer class a calculator's name selects, importing the families in order only until it is known (then
    installed plugins); None when no type has that name (the full app then says so, with its suggestions)."""
    from ..layers import base, load_families_until, load_plugins

    registry = base.LAYER_TYPES                     # filled as the families import
    load_families_until(lambda: name in registry)
    if name not in registry:
        load_plugins()
    return registry.get(name)


_APPS: dict[tuple[bool, Optional[str]], typer.Typer] = {}


def get_app(with_layers: bool = True, only: Optional[str] = None) -> typer.Typer:
    if (with_layers, only) not in _APPS:
        _APPS[with_layers, only] = build_app(with_layers, only)
    return _APPS[with_layers, only]


def _needs_layers(argv: list[str]) -> bool:
    """Only the calculators, the full help and shell completion need the generated layer commands."""
    if _completing():
        return True
    word = _first_word(argv)
    return word != "--version" and word not in GENERAL_COMMANDS


def _completing() -> bool:
    return any(key.endswith("_COMPLETE") for key in os.environ if key.startswith("_"))


def _first_word(argv: list[str]) -> Optional[str]:
    """The command (or --version) the command line starts with, ``--debug`` aside."""
    return next((a for a in argv if a != "--debug"), None)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point of the ``layercalc`` command."""
    args, plugins = take_plugin_options(list(sys.argv[1:] if argv is None else argv))
    plugins = [p for p in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if p] + plugins
    if plugins:                     # before the app is built: a plugin's types get their calculator commands
        from ..layers import load_plugin_file
        try:
            for path in plugins:
                load_plugin_file(path)
        except LayerCalcError as exc:
            _error(str(exc))
            sys.exit(2)
    try:
        words = take_width_options(args)[0]          # the command named after --width N counts (CliGroup reads it)
    except LayerCalcError:
        words = args                                   # a bad --width: CliGroup.main says so
    with_layers = _needs_layers(words)
    word = _first_word(words)
    only = None
    if word in GENERAL_COMMANDS or word == "--version":       # --version: no command at all
        only = word
    elif with_layers and word is not None and not word.startswith("-") and not _completing():
        only = word                                   # a calculator: its own command only (build_app checks it)
    typer.main.get_command(get_app(with_layers, only)).main(args=args, prog_name=PROG)


def take_plugin_options(args: list[str]) -> tuple[list[str], list[str]]:
    """``args`` without its ``--plugin FILE`` / ``--plugin=FILE`` options (accepted anywhere, like --debug), and
    the files they name.

    >>> take_plugin_options(["--plugin", "a.py", "summary", "s.yaml", "--plugin=b.py"])
    (['summary', 's.yaml'], ['a.py', 'b.py'])
    """
    rest, files = [], []
    words = iter(args)
    for word in words:
        if word == "--plugin":
            files.append(next(words, ""))
        elif word.startswith("--plugin="):
            files.append(word[len("--plugin="):])
        else:
            rest.append(word)
    return rest, files


def __getattr__(name: str):
    if name == "app":                # `from layercalc.cli import app` (tests, typer's own tooling)
        return get_app(True)
    if name == "Progress":           # verify's and run's bar (their module is imported when they run)
        from .execute import Progress
        return Progress
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
