"""Serving a generative network: the prefill of a prompt and one decode step after it, side by side.

A decode step runs the network on ``k`` new tokens (``new_tokens``, default 1) whose causal self-attention reads
``P`` cached positions (``past``) and the ``k`` new ones; the prefill runs it on the ``P``-token prompt that filled
that cache. Both are ordinary analyses (:meth:`layercalc.graph.Network.analyze`): the sequence dim of the input (the
first after the batch) is set to ``P`` or ``k``, and the decode step is resolved with ``past = P`` — the layers
that read other positions than their own read it from :attr:`layercalc.rules.Context.past` (attention attends to
``P + k`` keys, a learned position table is read at rows ``P..P + k − 1``); every other layer runs on the new
positions only. Nothing here knows a layer type.

Per phase: FLOPs (and MACs) of the pass, per token; bytes read = the parameters it reads (every weight once per pass;
a lookup table only the rows looked up; a tied weight where it is used) + the keys and values the attention reads
(every position of the cache after the pass, written by this pass or before), activations excluded; arithmetic
intensity = FLOPs / bytes read; the KV cache kept after the pass. Formulas and what peers count: docs/conventions.md,
"Serving".
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, computed_field

from . import terminal
from .errors import SpecError, shown
from .formatting import exact, human, human_bytes
from .report import Report


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
    prefill: Optional[Phase] = Field(description="the network on the past-token prompt (null when past is 0)")
    decode: Phase
    decode_report: Any = Field(None, exclude=True)
    prefill_report: Any = Field(None, exclude=True)

    def describe(self) -> str:
        """``decode of 1 token after 8,191 cached positions``: the step the decode report counts."""
        k = self.new_tokens
        return f"decode of {k:,} new token{'s' if k > 1 else ''} after {self.past:,} cached position" + (
            "s" if self.past != 1 else "")

    def table(self, numbers: str = "auto", width: Optional[int] = None) -> str:
        """Prefill and decode side by side, as ``layercalc summary --past`` prints them: exact numbers where they
        fit ``width`` (``numbers="auto"``), else human ones; ``"exact"``/``"human"`` as asked."""
        width = terminal.terminal_width(width)
        attempts = ["exact", "human"] if numbers == "auto" else [numbers]
        for mode in attempts:
            text = self._table(mode)
            if max(map(len, text.splitlines())) <= width:
                break
        title = (f"Serving ({self.dtype}, batch {self.batch}): prefill of the {self.past:,}-token prompt, then "
                 f"{self.describe()}" if self.prefill is not None else f"Serving ({self.dtype}, batch "
                 f"{self.batch}): {self.describe()}")
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
    """The phase's figures from its resolved steps and report."""
    itemsize = report.dtype_bytes
    weights = sum(step.layer.weight_elements_read(step.facts) + step.facts.geometry.get("tied_params", 0)
                  for step in steps)
    cache = report.totals.kv_cache_bytes
    return Phase.model_construct(past=past, tokens=tokens, macs=report.totals.macs, flops=report.totals.flops,
                                 weight_bytes_read=weights * itemsize, kv_cache_bytes_read=cache,
                                 kv_cache_bytes=cache, batch=report.batch)


def serving(net: Any, past: int, new_tokens: int = 1) -> Serving:
    """Prefill of a ``past``-token prompt and the decode step of ``new_tokens`` over it, for the network ``net``
    (its batch and dtype; the sequence dim of its input replaced). Refused, naming the layer, where a layer has no
    decode step (bidirectional or cross-attention), and for a network that keeps no KV cache."""
    for value, what in ((past, "past"), (new_tokens, "new_tokens")):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if what == "past" else 1):
            raise SpecError(f"{what}: got {shown(value)}: expected a whole number ≥ {0 if what == 'past' else 1} "
                            f"({'cached positions' if what == 'past' else 'tokens decoded in one step'})")
    if not any(step.layer.kv_cache_elements(step.facts) for step in net.resolve()):     # as given: refused first
        raise SpecError("no layer keeps a KV cache (causal self-attention), so there is no decode step to count: "
                        "past and new tokens apply to generative (decoder) networks")
    decoding = net.replace(input=[new_tokens, *net.input[1:]])
    steps = decoding.resolve(past)
    report = decoding.analyze(steps)
    decode = phase(decoding, steps, report, past, new_tokens)
    prefill, prefill_report = None, None
    if past:
        prompt = net.replace(input=[past, *net.input[1:]])
        prompt_steps = prompt.resolve()
        prefill_report = prompt.analyze(prompt_steps)
        prefill = phase(prompt, prompt_steps, prefill_report, 0, past)
    return Serving.model_construct(batch=net.batch, past=past, new_tokens=new_tokens, dtype=net.dtype,
                                   dtype_bytes=report.dtype_bytes, prefill=prefill, decode=decode,
                                   decode_report=report, prefill_report=prefill_report)
