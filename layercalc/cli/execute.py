"""Commands that execute a network: ``verify SPEC`` (run the forward pass in NumPy and check every layer's shape
and MACs against the analysis: :mod:`layercalc.verify`) and ``run SPEC`` (the forward pass on your data:
:mod:`layercalc.executor`), with a progress bar on a terminal and their answers fitted to its width."""

import os
import sys
from typing import Annotated, Optional

import typer

from ..errors import LayerCalcError, ResourceError, safe_text
from ..terminal import widest_line
from .network import BatchOpt, InputOpt, SpecArg, load_network, spec_context
from .options import Numbers, _check_choice, _spec_error

# deferred imports (executor, sources, weights, verify, formatting, graph, terminal, cli.tables):
# each command imports what it uses, so `layercalc --help` and `size` start without Pydantic, the layer
# models or NumPy (start-up target 0.3 s)


class Progress:
    """A progress bar on stderr (rich's), shown only when ``enabled`` (by default: stderr is a terminal) and only
    once a run takes more than ``delay`` seconds; erased when closed. rich is imported when the bar first shows,
    so a quick run, or one off a terminal, never pays for it. Called as ``progress(done, total, layer_name)``."""

    def __init__(self, enabled: bool, delay: float = 0.5) -> None:
        import time
        self.enabled, self.delay = enabled, delay
        self.start = time.perf_counter()
        self.bar = None
        self.task = None

    def __call__(self, done: int, total: int, name: str) -> None:
        import time
        if not self.enabled or (self.bar is None and time.perf_counter() - self.start < self.delay):
            return

        label = safe_text(name[:40])                    # a layer name from a spec: no terminal escapes
        if self.bar is None:
            self.bar, self.task = self._start(done, total, label)
        else:
            self.bar.update(self.task, completed=done, total=max(total, 1), layer=label, refresh=True)

    def _start(self, done: int, total: int, label: str):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
        from rich.progress import Progress as RichProgress

        # the caller decided it is shown (a terminal, or --progress): draw even when stderr is not a tty
        console = Console(file=sys.stderr, force_terminal=True)
        bar = RichProgress(BarColumn(bar_width=30), MofNCompleteColumn(),
                           TextColumn("{task.fields[layer]}", markup=False), console=console, transient=True,
                           auto_refresh=False,          # redrawn after each layer: no drawing thread
                           redirect_stdout=False, redirect_stderr=False)    # the answer stays on stdout
        task = bar.add_task("verify", total=max(total, 1), completed=done, layer=label)
        bar.start()
        return bar, task

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def _load_weights(path: Optional[str], net, steps, limit: Optional[int] = None, spec: Optional[str] = None):
    """The --weights file (an .npz, a Keras .keras or .weights.h5 file, or an ONNX file), its headers checked
    against ``net``'s resolved ``steps`` and ``limit`` before any array is read; with ``spec`` a Hugging Face
    config, an .npz is the model's transformers state_dict."""
    if path is None:
        return None
    from ..executor import default_memory_limit
    from ..sources import huggingface_config, read_weights
    if not os.path.exists(path):
        raise _spec_error(f"--weights: {path}: no such file")
    config = huggingface_config(spec) if spec is not None else None
    return read_weights(path, steps, net.channels_last, default_memory_limit() if limit is None else limit, config)


MaxMemoryOpt = Annotated[Optional[str], typer.Option(
    "--max-memory", metavar="SIZE", help="refuse runs estimated above this (512M, 2G, 1.5GB; default: 80 % of the "
                                         "available memory)")]
ComputeDtypeOpt = Annotated[Optional[str], typer.Option("--dtype", metavar="float32|float64",
                                                        help="compute precision (default float32)")]


WeightsOpt = Annotated[Optional[str], typer.Option("--weights", "-w", metavar="FILE",
                                                   help="weights to load: an .npz of PyTorch-layout arrays (of a "
                                                        "Hugging Face config: its state_dict), a Keras .keras or "
                                                        ".weights.h5 file, or an ONNX file (its initializers; "
                                                        "missing ones are random)")]
SeedOpt = Annotated[int, typer.Option("--seed", help="seed of the random input and weights")]
ProgressOpt = Annotated[Optional[bool], typer.Option("--progress/--no-progress",
                                                     help="progress bar on stderr (default: on a terminal)")]


def verify_command(
    spec: SpecArg,
    weights: WeightsOpt = None,
    batch: BatchOpt = None,
    input_shape: InputOpt = None,
    seed: SeedOpt = 0,
    dtype: ComputeDtypeOpt = None,
    max_memory: MaxMemoryOpt = None,
    progress: ProgressOpt = None,
    numbers: Numbers = "exact",
) -> None:
    """Run the real forward pass (NumPy) and check every layer's output shape and MACs against the analysis.

    Prints ✓/✗ per layer; exit status 1 when any layer differs (2 for a bad spec, weights or memory limit).
    """
    numbers = _check_choice(numbers, ("exact", "human"), "--numbers")
    if dtype is not None:
        dtype = _check_choice(dtype, ("float32", "float64"), "--dtype")
    net = load_network(spec, batch, input_shape)
    limit = _max_memory(max_memory)
    from ..sources import weight_sources
    from ..terminal import terminal_width, wrap, wrap_lines
    from ..verify import verify

    bar = Progress(_stderr_is_a_terminal() if progress is None else progress)
    try:
        with spec_context(spec):
            loaded = _load_weights(weights, net, net.resolve(), limit, spec)
            result = verify(net, weights=loaded, seed=seed, progress=bar, dtype=dtype, max_memory=limit)
            sources = result.weights or weight_sources(net, loaded, seed)
    except MemoryError:
        raise ResourceError("verify: ran out of memory; use a smaller --batch or a lower --max-memory") from None
    finally:
        bar.close()
    if weights is not None:
        sources.source = weights
    width = terminal_width()
    print(verify_table(result.checks, numbers, width))
    bad = [c for c in result.checks if not c.ok]
    missing = list(getattr(result, "missing", []) or [])
    if result.ok and not bad:
        status = "every output shape and MAC count matches the analysis"
    else:
        parts = [f"{len(bad)} layer(s) differ ({', '.join(c.name for c in bad[:5])}{' …' if len(bad) > 5 else ''})"]
        if missing:
            parts.append(f"{len(missing)} layer(s) never ran ({', '.join(missing[:5])})")
        status = "; ".join(parts)
    print("\n" + wrap(f"verified {len(result.checks)} layers in {result.seconds:.2f} s: {status}", width))
    estimate = getattr(result, "estimate", None)
    if estimate is not None and hasattr(estimate, "describe"):
        print(wrap(f"memory estimate: {estimate.describe()}", width))
    print(wrap_lines(sources.describe(), width))
    if bad or missing or not result.ok:
        raise typer.Exit(1)


def verify_table(checks, numbers: str, width: int) -> str:
    """verify's table of checks fitted to ``width``: every column (expected and actual shape and MACs) when it
    fits; else one shape and one MAC column, a differing layer showing both values (``[1, 8] ≠ [1, 9]``), numbers
    human-sized if still too wide, and last the name and type cut in the middle. Nothing a check found is dropped:
    a layer that differs still shows what was expected and what ran."""
    from ..formatting import count, shape_text
    from .tables import table

    mark = {True: "✓", False: "✗"}
    full = table(["#", "name", "type", "expected shape", "actual shape", "expected MACs", "actual MACs", "ok"],
                 [[str(c.index), c.name, c.type, shape_text(c.expected_shape), shape_text(c.actual_shape),
                   count(c.expected_macs, numbers), count(c.actual_macs, numbers), mark[c.ok]] for c in checks],
                 "rlllllrrc", width)
    if widest_line(full) <= width:
        return full

    def shapes(c) -> str:
        expected, actual = shape_text(c.expected_shape), shape_text(c.actual_shape)
        return expected if c.expected_shape == c.actual_shape else f"{expected} ≠ {actual}"

    def macs(c, style: str) -> str:
        if c.expected_macs == c.actual_macs:
            return count(c.expected_macs, style)
        # a difference is shown exactly: 134,217,728 ≠ 134,184,960 would both read "134 M"
        return f"{count(c.expected_macs, 'exact')} ≠ {count(c.actual_macs, 'exact')}"

    text = ""
    for style in ((numbers, "human") if numbers == "exact" else (numbers,)):
        rows = [[str(c.index), c.name, c.type, shapes(c), macs(c, style), mark[c.ok]] for c in checks]
        text = table(["#", "name", "type", "output shape", "MACs", "ok"], rows, "rlllrc", width,
                     shrink=[1, 2] if style == "human" or numbers == "human" else [])
        if widest_line(text) <= width:
            break
    return text


def _stderr_is_a_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (OSError, ValueError):            # a closed stderr
        return False


def _max_memory(text: Optional[str]):
    if text is None:
        return None
    from ..executor import parse_bytes
    try:
        return parse_bytes(text)
    except Exception as exc:
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
    progress: ProgressOpt = None,
) -> None:
    """Run the network's forward pass on your data with the bundled NumPy executor.

    The input array includes the batch dim ([N, C, H, W] or [N, H, W, C]); its batch overrides the spec's.
    """
    import numpy as np

    if dtype is not None:
        dtype = _check_choice(dtype, ("float32", "float64"), "--dtype")
    net = load_network(spec, batch)
    limit = _max_memory(max_memory)
    from ..executor import default_memory_limit, execute
    from ..terminal import terminal_width, wrap, wrap_lines
    from ..weights import load_array, weight_sources

    def check_input_shape(shape) -> None:
        expected = [*net.input]
        if list(shape[1:]) != expected or len(shape) != len(expected) + 1:
            raise _spec_error(f"--input: {input_path}: shape {list(shape)}, expected [batch, "
                              f"{', '.join(map(str, expected))}] (the spec's input {expected} after a batch dim)")
        if batch is not None and shape[0] != batch:
            raise _spec_error(f"--input: {input_path} holds a batch of {shape[0]} (shape {list(shape)}) but "
                              f"--batch is {batch}: drop --batch (the array's batch is used) or make them agree")

    bar = Progress(_stderr_is_a_terminal() if progress is None else progress)
    try:
        x = None
        if input_path is not None:
            if not os.path.exists(input_path):
                raise _spec_error(f"--input: {input_path}: no such file")
            x = load_array(input_path, "--input", default_memory_limit() if limit is None else limit,
                           check_input_shape)
        with spec_context(spec):
            steps = net.resolve()                  # once: for the weights file, the run and the weights' account
            loaded = _load_weights(weights, net, steps, limit, spec)
            # executor.run's answer, with a progress bar: a bar on a terminal only, after half a second
            made = execute(net, x=x, weights=loaded, seed=seed, dtype=dtype, max_memory=limit,
                           on_layer=lambda done, total, step, output, macs: bar(done, total, step.name), steps=steps)
            out = next(iter(made.values())) if len(made) == 1 else made
            sources = weight_sources(steps, net.channels_last, loaded, seed, weights)
    except MemoryError:
        raise ResourceError("run: ran out of memory; use a smaller input or batch, or a lower --max-memory") from None
    finally:
        bar.close()
    outputs = out if isinstance(out, dict) else {_output_name(net): out}
    width = terminal_width()
    for name, array in outputs.items():
        print(wrap(f"{name}: shape {list(array.shape)} {array.dtype}, min {array.min():.6g}, max "
                   f"{array.max():.6g}, mean {array.mean():.6g}", width))
    print(wrap_lines(sources.describe(), width))
    if output_path is None:
        return
    if not output_path.endswith(".npz") and len(outputs) > 1:
        raise _spec_error(f"--output: the network has {len(outputs)} outputs ({', '.join(outputs)}): "
                          f"give a .npz path to save them all")
    try:
        # through an open file: NumPy writes exactly this name (given a path, it would append .npy / .npz)
        with open(output_path, "wb") as f:
            if output_path.endswith(".npz"):
                # (the stubs type **kwds against savez's own allow_pickle: a bool; the names here are layer names)
                np.savez(f, **outputs)  # type: ignore[arg-type]
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
