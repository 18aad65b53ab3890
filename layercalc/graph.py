"""The network: layers wired into a DAG, and shape propagation through it.

``Network`` is both the spec (a Pydantic model: what a YAML/JSON file holds) and the entry point of the
analysis. ``Network.resolve()`` wires the graph and runs every layer's rule in topological order; ``analyze()``
turns that into a :class:`~layercalc.report.Report`; the executor walks the same resolved steps.
"""

from __future__ import annotations

import gc
import heapq
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, Optional, Union

from pydantic import ConfigDict, Field, SerializeAsAny, SkipValidation, field_validator

from .errors import GraphError, LayerCalcError, SpecError, did_you_mean, layer_label, safe_text, shown
from .layers import MAX_RANK, Description, Int, LayerBase, PositiveInt, parse_layer, plugin_module
from .names import INPUT, split_output
from .report import LayerReport, Report, Totals, layer_entry
from .saved import saved_tensors
from .serving import Serving, decoded_inputs, serving

if TYPE_CHECKING:                  # the executor's types (NumPy is imported only when a network is run)
    import numpy as np
    import numpy.typing as npt

    from .weights import WeightsSource
from .rules import (
    Backward,
    Context,
    Facts,
    Gradients,
    ReceptiveField,
    Tensor,
    bounded_field,
    infer,
    numel,
    produced,
    report_jump,
    unreported_field_notes,
)

DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int32": 4, "int8": 1, "uint8": 1}

CONVENTIONS = {
    "params": "learnable parameters (weights and biases): sum(p.numel()) in PyTorch, Keras' trainable params",
    "buffers": "non-learnable state: BatchNorm running mean and variance (Keras' non-trainable params; PyTorch's "
               "num_batches_tracked counter is not counted)",
    "macs": "multiply-accumulates of conv, transposed conv (on input positions), linear, attention (QKᵀ and A·V), "
            "matmul and recurrent layers, bias excluded (= fvcore on CNNs, torchvision's 'GFLOPS' column, half of "
            "torch.utils.flop_counter where it sees the matmuls)",
    "flops": "every arithmetic operation: 2 per MAC + bias adds + normalization, activation, pooling and merge "
             "element ops (formulas: docs/conventions.md)",
    "backward": "backward_input_macs: gradients with respect to activations (none for the network input or token "
                "ids), backward_weight_macs: with respect to parameters (none when frozen; an embedding's is a "
                "scatter-add, 0 MACs), each counted like macs: 2·MACs is FlopCounterMode around loss.backward(), "
                "but for a grouped conv's weight gradient, which it counts as if ungrouped; backward_flops adds "
                "the element work at the forward's cost; training_flops = flops + backward_flops, without the "
                "optimizer's update (docs/conventions.md)",
    "memory": "bytes = elements × dtype size; activation = each layer's output",
    "kv_cache": "keys and values kept for generation after the pass, × dtype size: causal self-attention batch × "
                "positions (with a sliding window W at most W − 1) × kv_heads × (d_k + d_v); latent attention "
                "(MLA) its latent, batch × positions × (kv_lora_rank + qk_rope_head_dim) for all heads; "
                "cross-attention to a fixed sequence (an encoder's output) batch × its positions × kv_heads × (d_k "
                "+ d_v) (docs/conventions.md, Serving)",
    "receptive_field": "network-input pixels seen by one output position, per spatial dim; normalization "
                       "statistics are not counted as widening it",
}

#: what ``tokens`` counts in a pass with fixed inputs (the conventions of an encoder–decoder's report)
TOKENS_WITH_FIXED_INPUTS = ("batch × positions of the decoded input (the decoder's token ids), as serving's prefill "
                            "counts them: per-token figures are per decoder token, the fixed input's (the encoder's) "
                            "are the context every one is made from")


@dataclass(slots=True)          # (slots: one per layer, made for every analysis)
class Step:
    """One layer, wired and resolved: what the report and the executor both need."""
    index: int
    name: str
    layer: LayerBase
    inputs: list[str]
    input_shapes: list[tuple[int, ...]]
    facts: Facts
    #: a serving phase's layer all of whose inputs are fixed (do not depend on the decoded input): it runs at the
    #: prefill only, and a decode step does not run it again (layercalc.serving)
    fixed: bool = False


#: Keras' data_format names for the two layouts (accepted in specs, in any case like NCHW/NHWC themselves)
LAYOUT_ALIASES = {"channels_first": "NCHW", "channels_last": "NHWC"}


#: what the top-level fields accept, for messages
NETWORK_FIELD_HELP = {"input": "a list of positive sizes, one example without the batch dim, e.g. [1, 28, 28]",
                      "layers": "a list of layer mappings"}


class Network(Description):
    """A network spec: the input shape (one example, batch excluded) and the layers.

    Like every :class:`~layercalc.layers.Description` it is validated once and then not changed: use
    ``net.replace(batch=8)`` for a validated copy.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: Optional[str] = None
    # the layer fields' strict whole numbers: `true` or "28" is refused, not read as 1 or 28
    input: list[Int] = Field(min_length=1, max_length=MAX_RANK - 1,
                             description="one example without the batch dim, in the layout's order")
    batch: PositiveInt = 1
    layout: Literal["NCHW", "NHWC"] = Field(
        "NCHW", description="NCHW: channels first (any spatial rank); NHWC: channels last, Keras-style")
    dtype: Literal["float32", "float64", "float16", "bfloat16", "int32", "int8", "uint8"] = "float32"
    # Validated layer by layer by `_parse_layers` (one error line per layer); the union of every layer model is
    # only built for the JSON Schema (spec.schema), which keeps start-up fast.
    layers: Annotated[list[SerializeAsAny[LayerBase]], SkipValidation] = Field(min_length=1)

    @classmethod
    def _help_texts(cls) -> dict[str, str]:
        return NETWORK_FIELD_HELP

    @field_validator("input")
    @classmethod
    def _positive_input(cls, value: list[int]) -> list[int]:
        if any(v < 1 for v in value):
            raise ValueError(f"every input size must be ≥ 1, got {value}")
        return value

    @field_validator("layout", mode="before")
    @classmethod
    def _layout_aliases(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = LAYOUT_ALIASES.get(value.lower(), value.upper())
        return value

    @field_validator("layers", mode="before")
    @classmethod
    def _parse_layers(cls, value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected a list of layer mappings, got {type(value).__name__} {value!r}")
        if not value:
            raise ValueError("a network needs at least one layer, got an empty list")
        return [parse_layer(raw, i) for i, raw in enumerate(value)]

    # ------------------------------------------------------------------------------------------------- wiring

    @property
    def channels_last(self) -> bool:
        return self.layout == "NHWC"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, *self.input)

    def input_shapes(self) -> dict[str, list[int]]:
        """Every input of the network without the batch dim, by name: ``input`` first, then each layer that is
        another input (``extra_input``: T5's ``decoder_input_ids``) in spec order — the order ``run(x=[…])`` and
        ``--input`` given once per input take them in."""
        shapes = {INPUT: list(self.input)}
        for name, layer in zip(self.layer_names(), self.layers):
            shape = layer.input_shape()
            if shape is not None:
                shapes[name] = shape
        return shapes

    def replace_inputs(self, shapes: list[list[int]], option: str = "inputs") -> Network:
        """A validated copy taking inputs of these shapes, one per input in :meth:`input_shapes`' order (``option``:
        how the caller names them in a refusal, e.g. ``--input``)."""
        current = self.input_shapes()
        if len(shapes) != len(current):
            listed = ", ".join(f"{name} {list(shape)}" for name, shape in current.items())
            raise SpecError(f"{option}: got {len(shapes)} shape{'s' if len(shapes) != 1 else ''}; the network has "
                            f"{len(current)} input{'s' if len(current) != 1 else ''}: {listed} (one shape per "
                            f"input, in this order)")
        names = list(current)
        layers = list(self.layers)
        for i, (name, layer) in enumerate(zip(self.layer_names(), layers)):
            if name in current and name != INPUT:
                try:
                    layers[i] = layer.with_input_shape(list(shapes[names.index(name)]))
                except ValueError as exc:               # pydantic's ValidationError: a shape the layer refuses
                    raise SpecError(f"{option}: {name}: got {shown(shapes[names.index(name)])}: every size must "
                                    f"be a whole number ≥ 1 ({type(exc).__name__})") from None
        return self.replace(input=list(shapes[0]), layers=layers)

    def layer_names(self) -> list[str]:
        return [layer.name or f"{layer.type_name}_{i}" for i, layer in enumerate(self.layers)]

    def _check_lists_unchanged(self) -> None:
        """Fields cannot be assigned, but ``input`` and ``layers`` are lists a caller could still edit in place
        (``net.input[0] = -4``): what validation guaranteed is checked again, in time linear in their length."""
        if not self.input or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in self.input):
            raise SpecError(f"Network: field 'input': got {shown(self.input)}: every size must be a whole number "
                            f"≥ 1 (the list was changed after validation; use net.replace(input=...))")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LayerBase):
                raise SpecError(f"layers[{i}]: got {shown(layer)}: not a layer description (the list was changed "
                                f"after validation; use net.replace(layers=...))")

    def wiring(self) -> tuple[list[str], list[list[str]], list[int]]:
        """Names, input names per layer, and a topological order (spec order wherever the DAG allows)."""
        self._check_lists_unchanged()
        names = self.layer_names()
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name == INPUT or name in seen:
                where = layer_label(i, name, self.layers[i].type_name)
                if name == INPUT:
                    raise GraphError(f"{where}: the name {INPUT!r} is reserved for the network input")
                raise GraphError(f"{where}: duplicate name {name!r} (also layers[{seen[name]}])")
            seen[name] = i
        readable = {INPUT, *names}
        wired: list[list[str]] = []
        producers: list[set[str]] = []        # the layers each one reads (a name without its `:i` output index)
        for i, layer in enumerate(self.layers):
            if layer.inputs is not None:
                sources = layer.inputs
            else:                                 # default: the previous layer (none for a layer taking none)
                sources = [] if layer.max_inputs == 0 else [names[i - 1] if i else INPUT]
            bases = {split_output(src)[0] for src in sources}          # `qkv:1`: output 1 of layer qkv
            if names[i] in bases or not bases <= readable:
                label = layer_label(i, names[i], layer.type_name)
                for src in sources:                                      # the first wrong one, in the spec's order
                    base = split_output(src)[0]
                    if base not in readable:
                        known = ", ".join([INPUT, *names[:i]])
                        raise GraphError(f"{label}: unknown input {shown(src)}"
                                         f"{did_you_mean(base, [INPUT, *names]) or f' (known: {known})'}")
                    if base == names[i]:
                        raise GraphError(f"{label}: takes its own output as input")
            n_min, n_max = layer.min_inputs, layer.max_inputs
            if len(sources) < n_min or (n_max is not None and len(sources) > n_max):
                want = (f"exactly {n_min}" if n_min == n_max else f"at least {n_min}" if n_max is None
                        else f"{n_min} to {n_max}")
                raise GraphError(f"{layer_label(i, names[i], layer.type_name)}: takes {want} "
                                 f"input{'s' if n_min > 1 else ''}, got {len(sources)}: {sources}")
            wired.append(list(sources))
            producers.append(bases)
        return names, wired, _topological_order(names, producers, self.layers)

    def resolve(self, past: int = 0, decoded: Optional[frozenset[str]] = None, *, as_given: bool = False
                ) -> list[Step]:
        """Run every layer's shape/cost rule in topological order. ``past``: a decode step's positions already in
        the KV cache (:attr:`layercalc.rules.Context.past`; :mod:`layercalc.serving`), 0 for a forward pass.
        ``decoded``: a serving phase's decoded inputs (:func:`layercalc.serving.decoded_inputs`): the tensors that
        do not depend on them are fixed (``Tensor.fixed``, ``Context.fixed``), and a layer reading only fixed
        tensors is a ``fixed`` step, resolved as at the prefill (past 0).

        None: an ordinary pass, which is what a prefill is: a network with several inputs, some of which its
        KV-caching layers do not depend on (an encoder–decoder's encoder input), is resolved with the others
        decoded (past 0), so that what generation keeps after this pass is counted — a cross-attention to the
        fixed sequence caches its keys and values, as transformers' ``EncoderDecoderCache`` holds them. Only such
        a network is resolved twice (once as given, to find which layers cache); a network with one input never
        is. ``as_given``: never mark fixed tensors (how serving first looks at the network)."""
        steps = self._resolve(past, decoded)
        if decoded is None and not past and not as_given and any(layer.is_network_input for layer in self.layers):
            kept = decoded_inputs(self, steps)                  # (none when no layer keeps a KV cache)
            fixed = [name for name in self.input_shapes() if name not in kept]
            if kept and fixed:
                steps = self._resolve(0, frozenset(kept))
                _note_decoded_inputs(steps, kept, fixed)
        return steps

    def _resolve(self, past: int, decoded: Optional[frozenset[str]]) -> list[Step]:
        """:meth:`resolve` with the fixed tensors given (``decoded``; None: none fixed)."""
        if isinstance(past, bool) or not isinstance(past, int) or past < 0:
            raise SpecError(f"past: got {shown(past)}: the cached positions are a whole number ≥ 0")
        names, wired, order = self.wiring()
        rank = len(self.input) - 1
        serving = decoded is not None
        decoding = decoded or frozenset()
        tensors: dict[str, Tensor] = {
            INPUT: Tensor(self.input_shape, ReceptiveField.of_input(rank) if rank >= 1 else None, INPUT,
                          serving and INPUT not in decoding)}
        extent = tuple(self.input[:-1] if self.channels_last else self.input[1:])    # the input's spatial sizes
        steps = []
        for i in order:
            layer = self.layers[i]
            label = _LazyLabel(i, names[i], layer.type_name)
            inputs = [tensors.get(src) or _missing_tensor(src, tensors, label) for src in wired[i]]
            fixed = serving and (names[i] not in decoding if layer.input_shape() is not None
                                 else all(t.fixed for t in inputs))       # (no inputs: a learned tensor, fixed)
            ctx = (Context(label, self.channels_last, self.batch, extent, 0) if fixed else
                   Context(label, self.channels_last, self.batch, extent, past,
                           tuple(t.fixed for t in inputs) if serving else ()))
            try:
                facts = infer(layer, inputs, ctx)
            except LayerCalcError:
                raise
            except Exception as exc:                    # noqa: BLE001 — a plugin's bug is named as the plugin's
                plugin = plugin_module(type(layer))
                if plugin is None:
                    raise
                raise LayerCalcError(f"{label}: the plugin layer type {layer.type_name!r} ({plugin}) failed in "
                                     f"infer(): {type(exc).__name__}: {safe_text(str(exc))[:300]} — a bug in the "
                                     f"plugin, not in layercalc or the spec") from None
            if facts.rf is None:
                facts.notes.extend(unreported_field_notes(inputs))
            else:
                facts.rf = bounded_field(facts.rf)
            for tensor_name, shape in produced(names[i], facts):
                tensors[tensor_name] = Tensor(shape, facts.rf, tensor_name, fixed)
            steps.append(Step(i, names[i], layer, wired[i], [t.shape for t in inputs], facts, fixed))
        _count_tied_once(steps, self.channels_last)
        _note_unread_outputs(steps)
        return steps

    # ------------------------------------------------------------------------------------------------ analysis

    def analyze(self, steps: Optional[list[Step]] = None, past: int = 0, training: bool = True) -> Report:
        """The report: every layer's figures and the totals. ``steps``: this network's :meth:`resolve` when the
        caller already made it (``verify`` resolves once for the report, the weights and the run). ``past``: the
        report of a decode step over that many cached positions (:meth:`resolve`; the serving view with prefill
        and decode side by side is :meth:`serving`). ``training`` false: an inference pass's report (the serving
        phases'), without the backward and saved-tensor fields (null), which mean nothing for it."""
        # Analysis allocates many small objects and no reference cycles; pausing the cyclic garbage collector
        # halves the time on deep networks (measured in bench/bench_analyze.py).
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._analyze(self.resolve(past) if steps is None else steps, training)
        finally:
            if was_enabled:
                gc.enable()

    def _analyze(self, steps: list[Step], training: bool = True) -> Report:
        # The report models are filled with model_construct: every value below is computed here with its final
        # type (lists of ints, exact ints), so validation would only re-check them — and building the report
        # validators costs more start-up time than a whole ResNet-50 analysis.
        itemsize = DTYPE_BYTES[self.dtype]
        entries = []
        saved_total = None
        if training:
            flows = gradient_flow(steps)
            saved = saved_tensors(steps, flows, itemsize, self.channels_last)
            for step, grads, kept in zip(steps, flows, saved.layers):
                entries.append(layer_report(step, itemsize, backward_of(step, grads), kept.bytes))
            saved_total = saved.total
        else:                                 # an inference pass (serving): no backward, nothing saved for it
            entries = [layer_report(step, itemsize) for step in steps]
        consumed = {src for step in steps for src in step.inputs}
        outputs = [name for step in steps for name, _ in produced(step.name, step.facts) if name not in consumed]
        input_bytes = numel(self.input_shape) * itemsize
        sums = column_sums(entries, SUMMED)
        figures: dict[str, Any] = dict(
            sums, active_macs=sums["macs"], buffer_bytes=sums["buffers"] * itemsize, input_bytes=input_bytes,
            peak_activation_bytes=peak_live_bytes(steps, input_bytes, itemsize),
            **training_totals(entries, token_count(steps, self.input_shape), training),
            saved_bytes=saved_total)
        totals = Totals.model_construct(**figures)
        conventions = {**CONVENTIONS, "layout": f"{self.layout}: shapes are "
                       + ("[N, ..., C] (channels last)" if self.channels_last else "[N, C, ...] (channels first)"),
                       "dtype": f"{self.dtype}, {itemsize} bytes per element"}
        if totals.tokens and any(step.fixed for step in steps):     # an encoder–decoder (resolve): which tokens
            conventions["tokens"] = TOKENS_WITH_FIXED_INPUTS
        return Report.model_construct(
            name=self.name, input_shape=list(self.input_shape), batch=self.batch, layout=self.layout,
            dtype=self.dtype, dtype_bytes=itemsize, outputs=outputs, layers=entries, totals=totals,
            conventions=conventions)

    def serving(self, past: int, new_tokens: int = 1) -> Serving:
        """Prefill of a ``past``-token prompt and the decode step of ``new_tokens`` after it, side by side: FLOPs,
        bytes read, arithmetic intensity and the KV cache (:func:`layercalc.serving.serving`)."""
        return serving(self, past, new_tokens)

    def run(self, x: Optional[npt.ArrayLike] = None, weights: WeightsSource = None, seed: int = 0,
            dtype: Optional[npt.DTypeLike] = None, max_memory: Union[int, float, str, None] = None,
            ) -> Union[np.ndarray, dict[str, np.ndarray]]:
        """Execute the forward pass with the bundled NumPy executor (see :mod:`layercalc.executor`); ``weights``
        may be a file of any kind (``.npz``, ``.keras``, ``.weights.h5``, ``.onnx``: :func:`layercalc.sources.run`)."""
        # upward, deferred: a weights file is read by the sources layer (a framework's by its importer), far above
        # the graph, and running needs NumPy (~60 ms), which analysis never loads; the graph's one import back up
        from .sources import run
        return run(self, x=x, weights=weights, seed=seed, dtype=dtype, max_memory=max_memory)


def layer_report(step: Step, itemsize: int, backward: Optional[Backward] = None,
                 saved_bytes: Optional[int] = None) -> LayerReport:
    """One layer's entry of the report, from its resolved step (also what a calculator prints for one layer), its
    backward pass (:func:`backward_of`; None: unknown, its backward fields null) and what it keeps for backward
    (``saved_bytes``: :mod:`layercalc.saved`, which depends on the layers before it)."""
    f, rf = step.facts, step.facts.rf
    return layer_entry(
        index=step.index, name=step.name, type=step.layer.type_name, inputs=step.inputs,
        input_shapes=[list(s) for s in step.input_shapes], output_shape=list(f.output_shape),
        output_shapes=[list(s) for s in f.outputs] if f.outputs is not None else None,
        params=f.params, active_params=f.params - step.layer.idle_params(f), buffers=f.buffers, macs=f.macs,
        all_experts_macs=f.macs + step.layer.idle_macs(f), flops=f.flops,
        param_bytes=f.params * itemsize,
        activation_bytes=(numel(f.output_shape) if f.outputs is None else sum(map(numel, f.outputs))) * itemsize,
        receptive_field=[int(v) for v in rf.size] if rf is not None else None,
        jump=report_jump(rf),
        whole_input=rf is not None and rf.whole,
        notes=f.notes,
        activation=step.layer.output_activation(),
        trainable=step.layer.trainable,
        backward_input_macs=None if backward is None else backward.input_macs,
        backward_weight_macs=None if backward is None else backward.weight_macs,
        backward_flops=None if backward is None else backward.flops,
        kv_cache_bytes=step.layer.kv_cache_elements(f) * itemsize,
        saved_bytes=saved_bytes)


# ------------------------------------------------------------------------------------------------ backward pass

def gradient_flow(steps: list[Step]) -> list[Gradients]:
    """Which gradients each layer's backward must make, as autograd decides it: a tensor requires a gradient when
    the layer that made it has trainable parameters (its own or tied ones) or reads a tensor that requires one.
    The network input requires none (so the first layer makes no input gradient), nor does an input a layer reads
    as integer indices (``index_count``: token ids) or only for its shape (``reads_input_values`` false). ``steps``
    in execution order (:meth:`Network.resolve`)."""
    requires: dict[str, bool] = {INPUT: False}
    flows = []
    for step in steps:
        layer = step.layer
        differentiable = layer.reads_input_values and layer.index_count() is None
        grads = Gradients(tuple([differentiable and requires.get(src, False) for src in step.inputs]),
                          layer.trainable and (step.facts.params > 0 or layer.tied_to is not None))
        for name, _ in produced(step.name, step.facts):
            requires[name] = grads.flows
        flows.append(grads)
    return flows


def backward_of(step: Step, grads: Gradients) -> Optional[Backward]:
    """The layer's backward pass (its type's :meth:`~layercalc.layers.LayerBase.backward`) for the gradients the
    graph needs; an empty one when no gradient passes through the layer; None when its type does not say (a plugin
    without a ``backward`` method): unknown, never guessed."""
    if not grads.flows:
        return Backward(lines=["backward: none: no input requires a gradient and the layer has no trainable "
                               "parameters"])
    try:
        result = step.layer.backward(step, grads)
    except LayerCalcError:
        raise
    except Exception as exc:                    # noqa: BLE001 — a plugin's bug is named as the plugin's
        plugin = plugin_module(type(step.layer))
        if plugin is None:
            raise
        raise LayerCalcError(f"{layer_label(step.index, step.name, step.layer.type_name)}: the plugin layer type "
                             f"{step.layer.type_name!r} ({plugin}) failed in backward(): {type(exc).__name__}: "
                             f"{safe_text(str(exc))[:300]} — a bug in the plugin, not in layercalc or the spec"
                             ) from None
    if result is not None and not isinstance(result, Backward):
        raise LayerCalcError(f"{layer_label(step.index, step.name, step.layer.type_name)}: the layer type "
                             f"{step.layer.type_name!r} ({plugin_module(type(step.layer)) or 'built in'}) returned "
                             f"{shown(result)} from backward(), not a Backward or None")
    return result


def token_count(steps: list[Step], input_shape: tuple[int, ...]) -> Optional[int]:
    """The tokens of one pass when the network input is token ids (a layer reads it as integer indices: an
    embedding): batch × positions, every element of the input; None for other inputs (an image has no tokens).
    A pass with fixed inputs (an encoder–decoder, :meth:`Network.resolve`) counts its decoded inputs' token ids
    instead — the decoder's: its per-token figures are per decoder token, as serving's prefill counts them; the
    encoder's are the fixed context every one of them is made from (docs/conventions.md, "Serving")."""
    readers = [step for step in steps if step.layer.index_count() is not None]
    if not any(step.fixed for step in steps):
        return numel(input_shape) if any(INPUT in step.inputs for step in readers) else None
    ids = {src for step in readers if not step.fixed for src in step.inputs}
    shapes = {step.name: step.facts.output_shape for step in steps if step.layer.input_shape() is not None}
    counted = [numel(shape) for name, shape in [(INPUT, input_shape), *shapes.items()] if name in ids]
    return sum(counted) if counted else None


#: the layers' figures the report's totals sum (:func:`column_sums`; the backward ones: :func:`training_totals`)
SUMMED = ("params", "active_params", "buffers", "macs", "all_experts_macs", "flops", "param_bytes", "activation_bytes",
          "kv_cache_bytes")


def column_sums(entries: list[LayerReport], keys: tuple[str, ...]) -> dict[str, int]:
    """Each figure of ``keys`` (two or more) summed over the layers' entries: the entries are read once, each into
    a tuple of its figures (a report sums a dozen figures, and a generator per figure cost more than the sums)."""
    if not entries:
        return dict.fromkeys(keys, 0)
    columns = zip(*map(attrgetter(*keys), entries))
    return {key: sum(column) for key, column in zip(keys, columns)}


def training_totals(entries: list[LayerReport], tokens: Optional[int], training: bool = True) -> dict[str, Any]:
    """The backward and training-step totals of the report (:class:`~layercalc.report.Totals`): sums over the
    layers, null when a layer's backward is unknown (named in ``backward_unknown``: a sum without it would be
    wrong); per token when the input is token ids. ``training`` false (an inference pass): every backward total
    null, no layer named unknown."""
    unknown = [e.name for e in entries if e.backward_flops is None] if training else []
    forward = sum(e.flops for e in entries)

    def total(key: str) -> Optional[int]:
        return None if unknown or not training else sum(getattr(e, key) for e in entries)

    backward = total("backward_flops")
    step = None if backward is None else forward + backward
    per_token = (lambda v: None if v is None or not tokens else v / tokens)   # noqa: E731
    return dict(backward_input_macs=total("backward_input_macs"), backward_weight_macs=total("backward_weight_macs"),
                backward_flops=backward, training_flops=step, backward_unknown=unknown, tokens=tokens,
                flops_per_token=per_token(forward), backward_flops_per_token=per_token(backward),
                training_flops_per_token=per_token(step))


def _note_unread_outputs(steps: list[Step]) -> None:
    """A layer with several outputs (``split``, ``chunk``) some of which no layer reads: say which (each becomes a
    network output) and how later layers name them. Here, not in the layer: only the graph knows the readers."""
    read = {src for step in steps for src in step.inputs}
    for step in steps:
        if step.facts.outputs is None:
            continue
        made = [name for name, _ in produced(step.name, step.facts)]
        unread = [name for name in made if name not in read]
        if unread:
            step.facts.notes.append(
                f"output{'s' if len(unread) > 1 else ''} {', '.join(unread)} of {len(made)} read by no layer (a "
                f"network output); later layers name them {made[0]} … {made[-1]}")


def _note_decoded_inputs(steps: list[Step], decoded: list[str], fixed: list[str]) -> None:
    """An ordinary pass with fixed inputs (:meth:`Network.resolve`): say on each other input of the network which
    one generation decodes and which is fixed, the words the layers' notes use."""
    others = ", ".join(fixed)
    for step in steps:
        if step.layer.input_shape() is None:
            continue
        step.facts.notes.append(
            f"decoded input: every layer keeping a KV cache depends on it (generation feeds it token by token); "
            f"fixed: {others}" if step.name in decoded else
            f"fixed input: not every layer keeping a KV cache depends on it (made once per sequence: an "
            f"encoder's); decoded: {', '.join(decoded)}")


def _missing_tensor(src: str, tensors: dict[str, Tensor], label: _LazyLabel) -> NoReturn:
    """Why no tensor is named ``src``: a layer with several outputs must be named with the output's index."""
    base, index = split_output(src)
    count = sum(1 for name in tensors if split_output(name)[0] == base and split_output(name)[1] is not None)
    if index is None:
        raise GraphError(f"{label}: input {shown(src)}: the layer has {count} outputs: name one of them, "
                         f"{base}:0 … {base}:{count - 1}")
    if count:
        raise GraphError(f"{label}: input {shown(src)}: the layer has {count} outputs, {base}:0 … {base}:{count - 1}")
    raise GraphError(f"{label}: input {shown(src)}: the layer has one output: name it {base!r}")


def _count_tied_once(steps: list[Step], channels_last: bool) -> None:
    """Layers with ``tied_to`` use another layer's parameters: each shared array must exist there with the same
    shape, and it is counted once, in the layer that owns it (torchinfo counts GPT-2's tied head twice)."""
    by_name = {step.name: step for step in steps}
    for step in steps:
        target_name = step.layer.tied_to
        if target_name is None:
            continue
        label = _LazyLabel(step.index, step.name, step.layer.type_name)
        target = by_name.get(target_name)
        if target is None or target is step:
            why = "is the layer itself" if target is step else "is not a layer of the network"
            raise GraphError(f"{label}: field 'tied_to': {shown(target_name)} {why}"
                             f"{did_you_mean(target_name, by_name) if target is None else ''}")
        if target.layer.tied_to is not None:
            raise GraphError(f"{label}: field 'tied_to': {shown(target_name)} is itself tied to "
                             f"{shown(target.layer.tied_to)}; tie to the layer that owns the parameters")
        mine = step.layer.param_specs(step, channels_last)
        theirs = target.layer.param_specs(target, channels_last)
        if not mine:
            raise GraphError(f"{label}: field 'tied_to': the layer has no parameters to share with "
                             f"{shown(target_name)}")
        for param, spec in mine.items():
            other = theirs.get(param)
            if other is None or other.shape != spec.shape:
                found = f"has {param} of shape {list(other.shape)}" if other else f"has no {param!r}"
                raise GraphError(f"{label}: field 'tied_to': its {param} of shape {list(spec.shape)} cannot be the "
                                 f"one of {shown(target_name)}, which {found}")
        shared = sum(numel(spec.shape) for spec in mine.values() if not spec.buffer)
        step.facts.params -= shared
        step.facts.buffers -= sum(numel(spec.shape) for spec in mine.values() if spec.buffer)
        step.facts.geometry["tied_params"] = shared      # still read by this layer's forward pass (serving)
        step.facts.notes.append(f"parameters tied to {target_name!r} ({', '.join(mine)}): {shared:,} counted there, "
                                f"not again here")


class _LazyLabel:
    """A layer's label for messages, built only when a message is (analysis of 10,000 layers makes none)."""
    __slots__ = ("index", "name", "type")

    def __init__(self, index: int, name: str, type_: str):
        self.index, self.name, self.type = index, name, type_

    def __str__(self) -> str:
        return layer_label(self.index, self.name, self.type)

    __format__ = lambda self, spec: format(str(self), spec)  # noqa: E731  (f-strings call __format__)


def _topological_order(names: list[str], producers: list[set[str]], layers: list[LayerBase]) -> list[int]:
    """Kahn's algorithm, always taking the earliest layer in spec order that is ready; cycles are errors.
    ``producers``: the names of the layers (or the input) each layer reads."""
    index = {name: i for i, name in enumerate(names)}
    waiting = [0] * len(names)
    consumers: list[list[int]] = [[] for _ in names]
    for i, bases in enumerate(producers):
        for base in bases:
            if base != INPUT:
                waiting[i] += 1
                consumers[index[base]].append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in consumers[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) < len(names):
        stuck = [i for i in range(len(names)) if waiting[i] > 0]
        listed = ", ".join(layer_label(i, names[i], layers[i].type_name) for i in stuck[:6])
        raise GraphError(f"the inputs form a cycle; these layers can never run: {listed}"
                         + (" …" if len(stuck) > 6 else ""))
    return order


def peak_live_bytes(steps: list[Step], input_bytes: int, itemsize: int) -> int:
    """Peak of the bytes alive at once when each tensor is freed right after its last consumer runs. A tensor read
    but made by none of ``steps`` (a decode step's fixed tensor, made at the prefill) is not counted: the caller
    adds what stays resident."""
    last_use: dict[str, int] = {}
    for position, step in enumerate(steps):
        for src in step.inputs:
            last_use[src] = position
    size = {"input": input_bytes}
    live = input_bytes if "input" in last_use else 0
    peak = input_bytes
    for position, step in enumerate(steps):
        for name, shape in produced(step.name, step.facts):
            size[name] = numel(shape) * itemsize
            live += size[name]                    # inputs and outputs coexist while the layer runs
        peak = max(peak, live)
        for src in set(step.inputs):
            if last_use.get(src) == position:
                live -= size.get(src, 0)
    return peak
