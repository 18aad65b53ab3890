"""Serving a generative network: the prefill of a prompt and one decode step after it, side by side.

A decode step runs the network on ``k`` new tokens (``new_tokens``, default 1) whose causal self-attention reads
``P`` cached positions (``past``) and the ``k`` new ones; the prefill runs it on the ``P``-token prompt that filled
that cache. Both are ordinary analyses (:meth:`layercalc.graph.Network.analyze`): the sequence dim of the input (the
first after the batch) is set to ``P`` or ``k``, and the decode step is resolved with ``past = P`` — the layers
that read other positions than their own read it from :attr:`layercalc.rules.Context.past` (attention attends to
``P + k`` keys, a learned position table is read at rows ``P..P + k − 1``); every other layer runs on the new
positions only. Nothing here knows a layer type.

A network with several inputs decodes the ones every KV-caching layer depends on (:func:`decoded_inputs`: T5's
``decoder_input_ids``); its other inputs are **fixed**: made once, at the prefill (an encoder on its S positions).
The decode step keeps their shapes, and the analysis is told which tensors are fixed (``Network.resolve(past,
decoded)``): a layer reading only fixed tensors is not run again (its costs are the prefill's: 0 in the step), and
an attention whose keys and values are fixed (cross-attention) projects them at the prefill, caches them and reads
them from the cache in the decode step. Such a network needs a prompt (past ≥ 1: an encoder–decoder's decoder
starts with its start token), whose prefill runs the encoder. The ordinary analysis of such a network is that
prefill (``Network.resolve()`` marks its fixed tensors the same way), so its report counts the cross-attention's
cache too.

Per phase: FLOPs (and MACs) of the pass, per token; bytes read = the parameters it reads (every weight once per pass;
a lookup table only the rows looked up; a tied weight where it is used) + the keys and values the attention reads
(every position of the cache after the pass, written by this pass or before), activations excluded; arithmetic
intensity = FLOPs / bytes read; the KV cache kept after the pass. Formulas and what peers count: docs/conventions.md,
"Serving".
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, computed_field

from . import terminal
from .errors import SpecError, shown
from .formatting import exact, human, human_bytes
from .names import INPUT, split_output
from .report import Report
from .rules import Facts, numel, produced


class Phase(BaseModel):
    """One pass of a generative network: the prefill of the prompt or a decode step."""
    model_config = ConfigDict(defer_build=True)

    past: int = Field(description="positions already in the KV cache before the pass")
    tokens: int = Field(description="new positions per sequence the pass runs on (the prompt, or the tokens decoded)")
    macs: int
    flops: int
    weight_bytes_read: int = Field(description="parameter and buffer bytes the pass reads: every weight once, a "
                                               "lookup table only at the rows looked up, a tied weight in each "
                                               "layer that uses it")
    kv_cache_bytes_read: int = Field(description="the keys and values attention reads: every cached and new "
                                                 "position (the cache after the pass)")
    kv_cache_bytes: int = Field(description="the KV cache kept after the pass")

    batch: int = Field(description="sequences in the batch")

    @computed_field(description="weight_bytes_read + kv_cache_bytes_read")      # type: ignore[prop-decorator]
    @property
    def bytes_read(self) -> int:
        return self.weight_bytes_read + self.kv_cache_bytes_read

    @computed_field(description="flops ÷ (batch · tokens): an integer when exact")   # type: ignore[prop-decorator]
    @property
    def flops_per_token(self) -> int | float:
        return _number(Fraction(self.flops, self.batch * self.tokens))

    @computed_field(description="bytes_read ÷ (batch · tokens): the pass's reads shared by the tokens it makes "  # type: ignore[prop-decorator]
                                "(an integer when exact)")
    @property
    def bytes_read_per_token(self) -> int | float:
        return _number(Fraction(self.bytes_read, self.batch * self.tokens))

    @computed_field(description="arithmetic intensity: flops ÷ bytes_read (FLOPs per byte; activations "  # type: ignore[prop-decorator]
                                "excluded)")
    @property
    def intensity(self) -> float:
        return self.flops / self.bytes_read if self.bytes_read else 0.0


def _number(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else float(value)


class Serving(BaseModel):
    """Prefill of a ``past``-token prompt and the decode step of ``new_tokens`` after it (:func:`serving`). The
    decode step's whole report is :attr:`decode_report` (per layer)."""
    model_config = ConfigDict(defer_build=True, arbitrary_types_allowed=True)

    batch: int
    past: int
    new_tokens: int
    dtype: str
    dtype_bytes: int
    decoded: list[str] = Field(description="the inputs decoded (their sequence dim is past, then new_tokens): those "
                                           "every KV-caching layer depends on")
    fixed_inputs: dict[str, list[int]] = Field(
        description="the other inputs (without the batch dim): made at the prefill and fixed in the decode step "
                    "(an encoder's tokens), whose layers do not run again and whose keys and values are cached")
    prefill: Optional[Phase] = Field(description="the network on the past-token prompt (null when past is 0)")
    decode: Phase
    decode_report: Any = Field(None, exclude=True)
    prefill_report: Any = Field(None, exclude=True)
    decode_network: Any = Field(None, exclude=True)
    decode_steps: Any = Field(None, exclude=True)

    def describe(self) -> str:
        """``decode of 1 token after 8,191 cached positions``: the step the decode report counts (with fixed
        inputs: which input is decoded, and which are fixed)."""
        k = self.new_tokens
        of = f" of {', '.join(self.decoded)}" if self.fixed_inputs else ""
        text = f"decode of {k:,} new token{'s' if k > 1 else ''}{of} after {self.past:,} cached position" + (
            "s" if self.past != 1 else "")
        if self.fixed_inputs:
            text += (f" ({self._fixed_text()} fixed: made at the prefill; the layers reading only it not run again, "
                     f"the keys and values attention reads from it cached)")
        return text

    def _fixed_text(self) -> str:
        return ", ".join(f"{name} {shape}" for name, shape in self.fixed_inputs.items())

    def table(self, numbers: str = "auto", width: Optional[int] = None) -> str:
        """Prefill and decode side by side, as ``layercalc summary --past`` prints them: exact numbers where they
        fit ``width`` (``numbers="auto"``), else human ones; ``"exact"``/``"human"`` as asked."""
        width = terminal.terminal_width(width)
        attempts = ["exact", "human"] if numbers == "auto" else [numbers]
        for mode in attempts:
            text = self._table(mode)
            if max(map(len, text.splitlines())) <= width:
                break
        prompt = (f"{self._fixed_text()} and the {self.past:,}-token prompt of {', '.join(self.decoded)}"
                  if self.fixed_inputs else f"the {self.past:,}-token prompt")
        title = (f"Serving ({self.dtype}, batch {self.batch}): prefill of {prompt}, then {self.describe()}"
                 if self.prefill is not None else f"Serving ({self.dtype}, batch {self.batch}): {self.describe()}")
        foot = ("bytes read: the weights the pass reads (a lookup table: the rows looked up) + the keys and values "
                "attention reads; activations not counted. FLOPs per byte: arithmetic intensity. Formulas: "
                "docs/conventions.md, Serving")
        return "\n".join([terminal.wrap(title, width), text, terminal.wrap(foot, width)])

    def _table(self, numbers: str) -> str:
        phases = [(name, p) for name, p in (("prefill", self.prefill), ("decode", self.decode)) if p is not None]
        n = human if numbers == "human" else exact
        b = human_bytes if numbers == "human" else (lambda v: f"{exact(v)} B")   # noqa: E731

        def per_token(value: int | float, in_bytes: bool) -> str:
            if isinstance(value, int):
                return b(value) if in_bytes else n(value)
            if numbers == "human":
                return human_bytes(round(value)) if in_bytes else human(round(value))
            return f"{value:,.1f}" + (" B" if in_bytes else "")

        rows = [("tokens (new, per sequence)", [exact(p.tokens) for _, p in phases]),
                ("FLOPs", [n(p.flops) for _, p in phases]),
                ("  per token", [per_token(p.flops_per_token, False) for _, p in phases]),
                ("weights read", [b(p.weight_bytes_read) for _, p in phases]),
                ("KV cache read", [b(p.kv_cache_bytes_read) for _, p in phases]),
                ("bytes read per token", [per_token(p.bytes_read_per_token, True) for _, p in phases]),
                ("FLOPs per byte read", [f"{p.intensity:,.1f}" if p.intensity >= 10 else f"{p.intensity:.2f}"
                                         for _, p in phases]),
                ("KV cache after", [b(p.kv_cache_bytes) for _, p in phases])]
        label = max(len(r[0]) for r in rows)
        widths = [max(len(name), *(len(r[1][i]) for r in rows)) for i, (name, _) in enumerate(phases)]
        lines = ["  ".join([" " * label, *(name.rjust(w) for (name, _), w in zip(phases, widths))])]
        lines += ["  ".join([text.ljust(label), *(v.rjust(w) for v, w in zip(values, widths))])
                  for text, values in rows]
        return "\n".join(line.rstrip() for line in lines)


def phase(net: Any, steps: list, report: Report, past: int, tokens: int) -> Phase:
    """The phase's figures from its resolved steps and report (a decode step's fixed steps, not run, read no
    weight; the prefill runs them)."""
    itemsize = report.dtype_bytes
    weights = sum(_weights_read(step) for step in steps if not (past and step.fixed))    # (past > 0: a decode step)
    cache = report.totals.kv_cache_bytes
    return Phase.model_construct(past=past, tokens=tokens, macs=report.totals.macs, flops=report.totals.flops,
                                 weight_bytes_read=weights * itemsize, kv_cache_bytes_read=cache,
                                 kv_cache_bytes=cache, batch=report.batch)


def _weights_read(step: Any) -> int:
    """The parameter elements the step reads, its tied ones (counted in the layer that owns them) read as its own
    are: a tied head reads the whole table, a tied lookup (T5's decoder embedding) only the rows it looks up."""
    facts, tied = step.facts, step.facts.geometry.get("tied_params", 0)
    return step.layer.weight_elements_read(dataclasses.replace(facts, params=facts.params + tied) if tied else facts)


def decoded_inputs(net: Any, steps: list) -> list[str]:
    """The inputs a decode step decodes: those every layer keeping a KV cache depends on (through any path), in the
    network's input order — ``input`` for a decoder, T5's ``decoder_input_ids`` (its encoder's ``input`` reaches
    the decoder's self-attention only from the second block on, through the cross-attention). ``steps``: the
    network resolved as given."""
    sources: dict[str, frozenset[str]] = {INPUT: frozenset([INPUT])}
    shared: Optional[frozenset[str]] = None
    for step in steps:
        if step.layer.input_shape() is not None:                 # another input of the network (extra_input)
            mine = frozenset([step.name])
        else:
            mine = frozenset().union(*(sources[split_output(src)[0]] for src in step.inputs))
        sources[step.name] = mine
        if step.layer.kv_cache_elements(step.facts):
            shared = mine if shared is None else shared & mine
    return [name for name in net.input_shapes() if shared and name in shared]


def _not_rerun(step: Any) -> Any:
    """A fixed step as the decode step sees it: its shapes and parameters, no work (it ran at the prefill)."""
    f = step.facts
    note = "fixed: run at the prefill only"          # (which inputs are fixed: the header says, describe())
    facts = Facts(output_shape=f.output_shape, params=f.params, buffers=f.buffers, rf=f.rf, notes=[note],
                  geometry=f.geometry, outputs=f.outputs)
    return dataclasses.replace(step, facts=facts)


def _phase_report(net: Any, steps: list, tokens: int, decoded: list[str], decode: bool) -> Report:
    """A phase's report: an inference pass (no backward or saved-tensor fields), whose tokens are the decoded ones
    (batch × the pass's positions of the decoded inputs, as an ordinary report counts an encoder–decoder's token
    ids; here also when they are not token ids). A decode step's activations: the tensors it makes — a fixed
    layer's output was made at the prefill (its output bytes 0 here) — and, alive throughout, the fixed tensors it
    reads (an encoder's output)."""
    from .graph import peak_live_bytes  # deferred: a pair, as graph imports serving (Network.serving)

    report = net.analyze(steps, training=False)
    count = net.batch * tokens
    update: dict[str, Any] = {"tokens": count, "flops_per_token": report.totals.flops / count}
    if decode and any(step.fixed for step in steps):
        itemsize = report.dtype_bytes
        made_before = {name: numel(shape) * itemsize for step in steps if step.fixed
                       for name, shape in produced(step.name, step.facts)}
        input_bytes = report.totals.input_bytes if INPUT in decoded else 0
        if INPUT not in decoded:
            made_before[INPUT] = report.totals.input_bytes
        running = [step for step in steps if not step.fixed]
        resident = sum(made_before[src] for src in {src for step in running for src in step.inputs}
                       if src in made_before)
        layers = [entry.model_copy(update={"activation_bytes": 0}) if step.fixed else entry
                  for entry, step in zip(report.layers, steps)]
        update.update(activation_bytes=sum(entry.activation_bytes for entry in layers),
                      peak_activation_bytes=peak_live_bytes(running, input_bytes, itemsize) + resident)
        report = report.model_copy(update={"layers": layers})
    return report.model_copy(update={"totals": report.totals.model_copy(update=update)})


def serving(net: Any, past: int, new_tokens: int = 1) -> Serving:
    """Prefill of a ``past``-token prompt and the decode step of ``new_tokens`` over it, for the network ``net``
    (its batch and dtype; the sequence dim of its decoded inputs replaced, :func:`decoded_inputs`). Refused,
    naming the layer, where a layer has no decode step (bidirectional attention, or cross-attention to a sequence
    the decoded input makes), for a network that keeps no KV cache, and with past 0 for a network with fixed
    inputs (its prefill runs the encoder)."""
    for value, what in ((past, "past"), (new_tokens, "new_tokens")):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if what == "past" else 1):
            raise SpecError(f"{what}: got {shown(value)}: expected a whole number ≥ {0 if what == 'past' else 1} "
                            f"({'cached positions' if what == 'past' else 'tokens decoded in one step'})")
    given = net.resolve(as_given=True)                  # (the ordinary resolve marks fixed tensors itself)
    if not any(step.layer.kv_cache_elements(step.facts) for step in given):     # as given: refused first
        raise SpecError("no layer keeps a KV cache (causal self-attention), so there is no decode step to count: "
                        "past and new tokens apply to generative (decoder) networks")
    decoded = decoded_inputs(net, given)
    shapes = net.input_shapes()
    if not decoded:
        raise SpecError(f"no input of the network ({', '.join(shapes)}) feeds every layer that keeps a KV cache: "
                        f"which input a decode step decodes is not determined")
    fixed = {name: shape for name, shape in shapes.items() if name not in decoded}
    if fixed and not past:
        several = len(fixed) > 1
        raise SpecError(f"past: got 0: the fixed input{'s' if several else ''} {', '.join(fixed)} (not made by "
                        f"{', '.join(decoded)}: an encoder's) {'are' if several else 'is'} computed at the prefill of "
                        f"a prompt, which needs at least one token (an encoder–decoder's decoder starts with its start "
                        f"token): past ≥ 1")

    def with_length(length: int) -> Any:
        return net.replace_inputs([[length, *shape[1:]] if name in decoded else shape
                                   for name, shape in shapes.items()])

    decoding = with_length(new_tokens)
    steps = [_not_rerun(step) if step.fixed else step
             for step in decoding.resolve(past, frozenset(decoded))]
    report = _phase_report(decoding, steps, new_tokens, decoded, True)
    decode = phase(decoding, steps, report, past, new_tokens)
    prefill, prefill_report = None, None
    if past:
        prompt = with_length(past)
        prompt_steps = prompt.resolve(0, frozenset(decoded))
        prefill_report = _phase_report(prompt, prompt_steps, past, decoded, False)
        prefill = phase(prompt, prompt_steps, prefill_report, 0, past)
    return Serving.model_construct(batch=net.batch, past=past, new_tokens=new_tokens, dtype=net.dtype,
                                   dtype_bytes=report.dtype_bytes, decoded=decoded, fixed_inputs=fixed,
                                   prefill=prefill, decode=decode, decode_report=report,
                                   prefill_report=prefill_report, decode_network=decoding, decode_steps=steps)
