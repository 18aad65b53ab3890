"""Recurrent layers: ``lstm``, ``gru`` and ``rnn`` (Keras: ``simple_rnn``), as ``torch.nn.LSTM`` / ``GRU`` / ``RNN``
compute them at inference, stacked ``num_layers`` deep and optionally bidirectional.

Shapes: the input is ``[N, L, F]`` (``batch_first: true``, layercalc's default: shapes are batch-first) or
``[L, N, F]`` (``batch_first: false``, PyTorch's default). The output is PyTorch's ``output``, ``[N, L, D·H_out]``
(or ``[L, N, D·H_out]``) with ``return_sequences: true`` (the default), or the last layer's final hidden state
``h_n``, ``[N, D·H_out]``, with ``return_sequences: false``; D = 2 when bidirectional, H_out = ``proj_size`` (LSTM)
or ``hidden_size``.

Two conventions for the biases, chosen by ``convention``: ``pytorch`` (default) has two bias vectors per layer and
direction, ``bias_ih`` and ``bias_hh``; ``keras`` has one, except Keras' GRU with ``reset_after: true`` (its default),
which has two like PyTorch. With g gates (LSTM 4, GRU 3, RNN 1), input i and hidden h, per layer and direction:
params = g·(h·i + h·r) + bias terms (+ p·h, LSTM's projection ``weight_hr``), r = p or h the recurrent input;
MACs = N·L·(g·h·(i + r) + p·h); FLOPs = 2·MACs + bias adds + element-wise operations per hidden unit and step
(:data:`ELEMENT_FLOPS`). Every count is written out in docs/conventions.md ("Recurrent layers").
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..errors import LayerCalcError, ResourceError, SpecError, layer_label
from ..explain import Explanation, n
from ..rules import NO_INPUT_GRADIENT, Backward, Context, Facts, Gradients, Tensor, check_declared, fmt_shape
from .base import (
    Bool,
    GradFlow,
    LayerBase,
    NonNegativeInt,
    ParamSpec,
    PositiveInt,
    Probability,
    Saved,
    _alias,
    _lower_string,
    keras_variables,
    register_layer,
)

# deferred imports (kernels): NumPy (~60 ms) is loaded when a forward step first runs; analysis never needs it

__all__ = ['LSTM', 'GRU', 'RNN']

#: element-wise FLOPs per hidden unit and time step, beyond the matrix products and bias adds (layercalc's
#: activation table: sigmoid 3 — exp, add, divide —, tanh 1, relu 1):
#: - lstm: 3 sigmoids (i, f, o) 9 + tanh (g) 1 + c = f·c + i·g 3 + h = o·tanh(c) 2 = 15
#: - gru: 2 sigmoids (r, z) 6 + n = tanh(x-part + r·(h-part)) 3 (multiply, add, tanh) + h = n + z·(h − n) 3 = 12;
#:   Keras' reset_after=false: n = tanh(W_in·x + W_hn·(r·h) + b) 2 (the multiply r·h, tanh) → 11
#: - rnn: the nonlinearity (tanh or relu) 1
ELEMENT_FLOPS = {"lstm": 15, "gru": 12, "gru_reset_before": 11, "rnn": 1}

_PYTORCH, _KERAS = "pytorch", "keras"

#: the most layer-directions the executor runs (analysis has no limit: its counts are closed-form in num_layers)
MAX_RUN_LAYERS = 100_000

#: oneDNN's workspace is laid out in buffers each starting on a 4 KiB page (rnn_utils::set_offsets)
_PAGE = 4096


def _good_ld(dim: int) -> int:
    """oneDNN's leading dimension of a float32 matrix in its RNN workspace (rnn_utils::get_good_ld): rounded up to
    16 elements (64 bytes), plus 16 more when a multiple of 256 (to avoid 4K aliasing)."""
    ld = -(-dim // 16) * 16
    return ld + 16 if ld % 256 == 0 else ld


def onednn_lstm_workspace(batch: int, length: int, inputs: int, hidden: int) -> int:
    """Bytes of the uint8 workspace oneDNN's LSTM (torch's mkldnn_rnn_layer: one layer, one direction, float32)
    keeps for backward: seven buffers (rnn_utils.hpp's set_workspace_sizes with n_layer = n_dir = 1), each rounded
    up to a page: the gates L·N·ld(4h), the hidden states before the next layer L·N·ld(h), the layer states
    2·(L + 1)·N·ld(max(i, h)), the cell states 2·(L + 1)·N·h, the gradients of the layer and iteration states
    2·(L + 1)·N·ld(max(i, h)) each and of the cell state 2·(L + 1)·N·h; 4 bytes an element. Measured equal to
    torch 2.13's (oneDNN v3.12) on every shape tests/test_saved_recurrent.py tries."""
    n, length1 = batch, length + 1
    wide = _good_ld(max(inputs, hidden))
    buffers = [length * n * _good_ld(4 * hidden), length * n * _good_ld(hidden), 2 * length1 * n * wide,
               2 * length1 * n * hidden, 2 * length1 * n * wide, 2 * length1 * n * wide, 2 * length1 * n * hidden]
    return sum(-(-4 * elements // _PAGE) * _PAGE for elements in buffers)


class _Recurrent(LayerBase):
    """Shared fields, rule, parameters, forward step and explanation of the three recurrent types."""
    #: gates per hidden unit (LSTM 4: i, f, g, o; GRU 3: r, z, n; RNN 1)
    gates: ClassVar[int] = 1
    #: the gate names, in PyTorch's row order of weight_ih / weight_hh
    gate_names: ClassVar[str] = "h"
    #: where each of those gates sits among the column blocks of Keras' kernel, recurrent_kernel and bias
    keras_gate_order: ClassVar[tuple[int, ...]] = (0,)

    input_size: Optional[PositiveInt] = Field(
        None, description="features per time step; inferred from the input (its last dim), an error if different")
    hidden_size: PositiveInt = Field(validation_alias=_alias("hidden_size", "units"),
                                     description="features of the hidden state h (Keras: units)")
    num_layers: PositiveInt = Field(1, description="stacked recurrent layers, each reading the previous one's "
                                                   "output sequence")
    bias: Bool = Field(True, validation_alias=_alias("bias", "use_bias"),
                       description="bias vectors (two per layer and direction in the pytorch convention, one in "
                                   "keras')")
    batch_first: Bool = Field(True, description="input and output [N, L, F]; off: [L, N, F] as PyTorch's default "
                                                "(layercalc's default is on: its shapes are batch-first)")
    dropout: Probability = Field(0.0, description="dropout between stacked layers: identity at inference; in "
                                                  "training, its mask is kept for backward (saved bytes)")
    bidirectional: Bool = Field(False, description="a second, reversed pass per layer; outputs concatenated "
                                                   "(D = 2)")
    return_sequences: Bool = Field(True, description="on: PyTorch's output, every step of the last layer "
                                                     "[N, L, D·H]; off: the last layer's final hidden state h_n "
                                                     "[N, D·H]")
    convention: Literal["pytorch", "keras"] = Field(
        "pytorch", description="bias count: pytorch (bias_ih and bias_hh) or keras (one bias vector; GRU with "
                              "reset_after has two)")

    _lower_convention = field_validator("convention", mode="before")(classmethod(lambda cls, v: _lower_string(v)))

    # ------------------------------------------------------------------------------------------ per-type hooks

    @property
    def kind(self) -> str:
        return self.type_name

    def proj(self) -> int:
        """The projection size p (LSTM's proj_size; 0: none)."""
        return 0

    def bias_vectors(self) -> int:
        """Bias vectors of g·h values per layer and direction."""
        if not self.bias:
            return 0
        return 2 if self.convention == _PYTORCH else 1

    def element_flops(self) -> int:
        return ELEMENT_FLOPS[self.kind]

    def element_text(self) -> str:
        return "the nonlinearity 1"

    def step_saved(self, trained: bool) -> list[tuple[int, str]]:
        """The tensors ATen's decomposed cell keeps per time step, layer and direction: (elements per example in
        units of h, why)."""
        return []

    def recurrent_saved(self) -> str:
        """Why the cell keeps h_(t−1) of steps 1..L−1 for W_hh's gradient ("": the cell keeps it already)."""
        return "h_(t−1) of steps 1..L−1 (W_hh's product keeps its input for the weight's gradient)"

    def convention_text(self) -> str:
        if self.convention == _PYTORCH:
            return "pytorch convention: two bias vectors per layer and direction (bias_ih, bias_hh)" if self.bias \
                else "pytorch convention, bias=False: no bias vectors"
        return "keras convention: one bias vector per layer and direction" if self.bias \
            else "keras convention, use_bias=False: no bias vector"

    # -------------------------------------------------------------------------------------------------- rule

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def out_size(self) -> int:
        """H_out: what each direction outputs per step (the projection size, or the hidden size)."""
        return self.proj() or self.hidden_size

    def layer_inputs(self, features: int) -> list[tuple[int, int]]:
        """(input size, how many layers read it): the features for layer 0, D·H_out for the layers after it —
        two kinds of layer at most, so every count is closed-form in num_layers."""
        later = [(self.directions * self.out_size, self.num_layers - 1)] if self.num_layers > 1 else []
        return [(features, 1), *later]

    def total(self, per_layer: Any, features: int) -> int:
        """Σ over layers of ``per_layer(input size)``."""
        return sum(count * per_layer(i) for i, count in self.layer_inputs(features))

    def direction_params(self, i: int) -> int:
        """Params of one layer and direction with input size ``i``."""
        g, h, p = self.gates, self.hidden_size, self.proj()
        return g * (h * i + h * (p or h)) + self.bias_vectors() * g * h + p * h

    def step_macs(self, i: int) -> int:
        """Multiply-adds of one layer and direction per example and time step."""
        g, h, p = self.gates, self.hidden_size, self.proj()
        return g * h * (i + (p or h)) + p * h

    def step_element_flops(self) -> int:
        """Bias adds and element-wise FLOPs of one layer and direction per example and time step."""
        return (self.bias_vectors() * self.gates + self.element_flops()) * self.hidden_size

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) != 3:
            want = "[N, L, features]" if self.batch_first else "[L, N, features] (batch_first=False)"
            raise ctx.fail(f"needs a 3-d input {want}, got {len(x.shape)}-d {fmt_shape(x.shape)}")
        batch, length = (x.shape[0], x.shape[1]) if self.batch_first else (x.shape[1], x.shape[0])
        features = x.shape[2]
        check_declared(self.input_size, features, "input_size", x, ctx)
        d, h_out = self.directions, self.out_size
        params = d * self.total(self.direction_params, features)
        macs = batch * length * d * self.total(self.step_macs, features)
        flops = 2 * macs + batch * length * d * self.num_layers * self.step_element_flops()
        shape: tuple[int, ...]
        if self.return_sequences:
            shape = (batch, length, d * h_out) if self.batch_first else (length, batch, d * h_out)
        else:
            shape = (batch, d * h_out)
        return Facts(output_shape=shape, params=params, macs=macs, flops=flops,
                     notes=self.notes(x.shape, batch, length, features, params),
                     geometry={"batch": batch, "length": length, "input_size": features,
                               "layer_inputs": [i for i, _ in self.layer_inputs(features)]})

    def other_convention_params(self, features: int) -> Optional[int]:
        """The params the other convention counts (None where it has no such layer: Keras' GRU without
        reset_after in PyTorch)."""
        try:
            other = self.replace(convention=_KERAS if self.convention == _PYTORCH else _PYTORCH)
        except LayerCalcError:
            return None
        return other.directions * other.total(other.direction_params, features)

    def notes(self, shape: tuple[int, ...], batch: int, length: int, features: int, params: int) -> list[str]:
        notes = [f"{self.convention_text()}: params {params:,}" + self.other_convention_note(features, params)]
        if not self.batch_first:
            notes.append(f"batch_first=False: reads {fmt_shape(shape)} as [L, N, F]: {length:,} time step(s) of a "
                         f"batch of {batch:,} (the network's batch dim is the sequence dim here)")
        d = self.directions
        if not self.return_sequences:
            last = ("the forward pass's state after the last step and the backward pass's after the first step "
                    "(it reads the sequence backwards), concatenated" if d == 2 else "its state after the last step")
            notes.append(f"return_sequences=False: returns the last layer's final hidden state h_n, {last} "
                         f"(PyTorch's {'torch.cat(list(h_n[-2:]), 1)' if d == 2 else 'h_n[-1]'}; Keras' output with "
                         f"return_sequences=False)")
        if self.dropout:
            notes.append(f"dropout {self.dropout} between layers: identity at inference"
                         + (" (and PyTorch warns that it has no effect with num_layers=1)"
                            if self.num_layers == 1 else ""))
        return notes

    def other_convention_note(self, features: int, params: int) -> str:
        if not self.bias or self.proj():
            return ""
        other = self.other_convention_params(features)
        if other is None:
            return " (PyTorch has no such layer: torch.nn.GRU applies the reset gate after the recurrent product)"
        name = _KERAS if self.convention == _PYTORCH else _PYTORCH
        if other == params:
            return f" (the {name} convention counts the same here)"
        return f" (the {name} convention, convention: {name}, counts {other:,})"

    # ------------------------------------------------------------------------------------------- parameters

    def param_names(self, layer: int, suffix: str) -> dict[str, str]:
        """Parameter name → layout of one layer and direction, in PyTorch's order."""
        g, p = self.gates, self.proj()
        gh = f"[{g}·hidden_size]" if g > 1 else "[hidden_size]"
        i_text = "input_size" if layer == 0 else f"{self.directions}·{'proj_size' if p else 'hidden_size'}" \
            if self.directions == 2 else ("proj_size" if p else "hidden_size")
        names = {f"weight_ih_l{layer}{suffix}": f"{gh[:-1]}, {i_text}]",
                 f"weight_hh_l{layer}{suffix}": f"{gh[:-1]}, {'proj_size' if p else 'hidden_size'}]"}
        if self.bias_vectors() == 2:
            names[f"bias_ih_l{layer}{suffix}"] = gh
            names[f"bias_hh_l{layer}{suffix}"] = gh
        elif self.bias_vectors() == 1:
            names[f"bias_l{layer}{suffix}"] = gh + " (keras convention: one bias vector)"
        if p:
            names[f"weight_hr_l{layer}{suffix}"] = "[proj_size, hidden_size]"
        return names

    def param_specs(self, step: Any, channels_last: bool) -> dict[str, ParamSpec]:
        g, h, p = self.gates, self.hidden_size, self.proj()
        specs = {}
        sizes = step.facts.geometry["layer_inputs"]
        if self.num_layers * self.directions > MAX_RUN_LAYERS:
            raise ResourceError(f"{self.type_name}: {self.num_layers:,} layers × {self.directions} direction(s): the "
                                f"executor runs at most {MAX_RUN_LAYERS:,} (each is a loop over time steps with its "
                                f"own weights); analysis (summary, the calculator) has no such limit")
        for layer in range(self.num_layers):
            i = sizes[min(layer, 1)]
            for suffix in ("", "_reverse")[:self.directions]:
                for name, layout in self.param_names(layer, suffix).items():
                    if name.startswith("weight_ih"):
                        shape: tuple[int, ...] = (g * h, i)
                    elif name.startswith("weight_hh"):
                        shape = (g * h, p or h)
                    elif name.startswith("weight_hr"):
                        shape = (p, h)
                    else:
                        shape = (g * h,)
                    # PyTorch's reset_parameters: every weight and bias U(±1/√hidden_size)
                    specs[name] = ParamSpec(shape, layout, "uniform", h)
        return specs

    def keras_weights(self, step: Any, class_name: str, variables: dict) -> dict:
        """Keras' cell holds kernel [in, g·h], recurrent_kernel [h, g·h] and bias [g·h] (GRU with reset_after:
        [2, g·h], the input and the recurrent bias), gates as column blocks in Keras' order; PyTorch's weights are
        [g·h, in] and [g·h, h], gates as row blocks in its order."""
        import numpy as np

        if self.num_layers != 1 or self.bidirectional or self.proj():
            raise SpecError(f"weights for {layer_label(step.index, step.name, self.type_name)}: Keras' {class_name} "
                            f"is one layer in one direction without projection; this layer has num_layers "
                            f"{self.num_layers}, bidirectional {str(self.bidirectional).lower()}, proj_size "
                            f"{self.proj()}")
        v = keras_variables(step, class_name, variables,
                            {"cell": ["kernel", "recurrent_kernel", "bias"][:2 + self.bias]})

        def gates(array: Any) -> Any:
            blocks = np.split(array, self.gates, axis=-1)
            return np.concatenate([blocks[i] for i in self.keras_gate_order], axis=-1)

        params = {"weight_ih_l0": gates(v["cell/kernel"]).T, "weight_hh_l0": gates(v["cell/recurrent_kernel"]).T}
        if self.bias:
            bias = gates(v["cell/bias"])
            if bias.ndim == 2:                                       # GRU reset_after: [input bias, recurrent bias]
                params.update(bias_ih_l0=bias[0], bias_hh_l0=bias[1])
            elif "bias_l0" in self.param_names(0, ""):              # the keras convention: the one bias vector
                params["bias_l0"] = bias
            else:                          # the pytorch convention's two vectors add up: Keras' bias and zeros
                params.update(bias_ih_l0=bias, bias_hh_l0=np.zeros_like(bias))
        return params

    # ----------------------------------------------------------------------------------------- forward step

    def forward(self, step: Any, xs: list, params: dict, env: Any) -> Any:
        import numpy as np

        x = xs[0] if self.batch_first else xs[0].transpose(1, 0, 2)      # [N, L, F] (a view)
        batch, length, _ = x.shape
        layer_input = x
        finals: list[Any] = []
        for layer in range(self.num_layers):
            outputs, finals = [], []
            for direction, suffix in enumerate(("", "_reverse")[:self.directions]):
                out = self.run_direction(layer_input, params, layer, suffix, direction == 1, env)
                outputs.append(out)
                finals.append(out[:, 0] if direction == 1 else out[:, length - 1])
            layer_input = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=-1)
            del outputs
        if not self.return_sequences:
            return finals[0].copy() if len(finals) == 1 else np.concatenate(finals, axis=-1)
        return layer_input if self.batch_first else layer_input.transpose(1, 0, 2)

    def input_projection(self, x: Any, weight: Any, bias: Optional[Any], env: Any) -> Any:
        """``x·W_ihᵀ (+ b)`` for every step at once: [N, L, g·h]."""
        batch, length, size = x.shape
        rows = x.reshape(batch * length, size)
        result = rows @ weight.T
        env.counter.add(rows.shape[0] * weight.shape[0] * weight.shape[1])
        if bias is not None:
            result += bias
        return result.reshape(batch, length, weight.shape[0])

    def run_direction(self, x: Any, params: dict, layer: int, suffix: str, reverse: bool, env: Any) -> Any:
        """One layer and direction over the whole sequence: [N, L, H_out]."""
        import numpy as np

        batch, length, _ = x.shape
        key = f"l{layer}{suffix}"
        w_hh = params[f"weight_hh_{key}"]
        b_ih = params.get(f"bias_ih_{key}", params.get(f"bias_{key}"))
        b_hh = params.get(f"bias_hh_{key}")
        projected = self.input_projection(x, params[f"weight_ih_{key}"], b_ih, env)
        out = np.empty((batch, length, self.out_size), dtype=projected.dtype)
        state = self.initial_state(batch, projected.dtype)
        for t in (range(length - 1, -1, -1) if reverse else range(length)):
            state = self.cell(projected[:, t], state, w_hh, b_hh, params, key, env)
            out[:, t] = state[0]
        return out

    def initial_state(self, batch: int, dtype: Any) -> tuple:
        import numpy as np
        return (np.zeros((batch, self.out_size), dtype=dtype),)

    def recurrent(self, h: Any, w_hh: Any, b_hh: Optional[Any], env: Any) -> Any:
        """``h·W_hhᵀ (+ b_hh)``: [N, g·h]."""
        result = h @ w_hh.T
        env.counter.add(h.shape[0] * w_hh.shape[0] * w_hh.shape[1])
        if b_hh is not None:
            result += b_hh
        return result

    def cell(self, gi: Any, state: tuple, w_hh: Any, b_hh: Optional[Any], params: dict, key: str, env: Any) -> tuple:
        raise NotImplementedError

    def scratch_bytes(self, step: Any, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        geometry = step.facts.geometry
        batch, length = geometry["batch"], geometry["length"]
        g, h = self.gates, self.hidden_size
        widest = max(geometry["layer_inputs"])
        sequence = batch * length * self.directions * self.out_size
        # per layer: the input projection of one direction [N, L, g·h] and its reshaped input (a copy when the input
        # is a transposed view), each direction's output sequence, their concatenation, the previous layer's
        # output; per step: the recurrent product, gates and states; the weights made for the run
        elements = (batch * length * (g * h + widest) + 3 * sequence + batch * (8 * g * h + 4 * h)
                    + (0 if weights_given else step.facts.params))
        return elements * itemsize, 0

    # ------------------------------------------------------------------------------------------- explanation

    def params_formula(self, layer: int) -> str:
        """The symbolic params of one layer and direction: ``4·(h·i + h² + 2h)``."""
        g, p, b = self.gates, self.proj(), self.bias_vectors()
        i = "i" if layer == 0 else "i'"
        terms = [f"h·{i}", "h·p" if p else "h²"] + ([f"{b}h" if b > 1 else "h"] if b else [])
        inner = " + ".join(terms)
        text = f"{g}·({inner})" if g > 1 else inner
        return text + (" + p·h" if p else "")

    def params_numbers(self, i: int) -> str:
        g, h, p, b = self.gates, self.hidden_size, self.proj(), self.bias_vectors()
        terms = [f"{h}·{i}", f"{h}·{p}" if p else f"{h}²"] + ([f"{b}·{h}" if b > 1 else f"{h}"] if b else [])
        inner = " + ".join(terms)
        text = f"{g}·({inner})" if g > 1 else inner
        return text + (f" + {p}·{h}" if p else "")

    # ------------------------------------------------------------------------------------ saved for backward

    def torch_path(self, itemsize: int) -> Optional[str]:
        """How torch 2.13 runs the layer on CPU with autograd at ``itemsize`` bytes per element: ``"cell"``, ATen's
        decomposed cell step by step; ``"onednn"``, oneDNN's fused kernel (mkldnn_rnn_layer); None: not known
        from what layercalc knows."""
        return "cell"

    def saved_for_backward(self, step: Any, grads: GradFlow) -> Optional[list[Saved]]:
        """What torch 2.13 keeps for the backward of nn.LSTM / nn.GRU / nn.RNN on CPU in training mode (measured
        with saved_tensors_hooks: tests/test_saved_recurrent.py; docs/conventions.md "Training memory"). N batch,
        L steps, i the first layer's input size, h hidden, r = p or h what a direction outputs, D directions:

        - nn.LSTM without projection in float32 runs oneDNN's fused kernel once per layer and direction, which
          keeps its input, h_0 and c_0, its output, h_n and c_n and a uint8 workspace
          (:func:`onednn_lstm_workspace`), whether the weights train or only the input needs a gradient; without
          biases, copies of its two weights too (in float64 it runs ATen's cell, as below);
        - nn.GRU, nn.RNN and nn.LSTM with proj_size run ATen's cell step by step (``step_saved``); when the weights
          train, the input of each layer (W_ih's product over the whole sequence) and the recurrent input of each
          step (W_hh's product) too.

        The first layer's input is x itself when x is contiguous time-major ([L, N, F]: batch_first off, or N or L
        1), or a time-major copy of it (the decomposed path makes one per direction, oneDNN one). Dropout between
        layers keeps its float mask. None (not modeled): Keras' GRU with reset_after off (no torch module computes
        it) and nn.LSTM without projection in a 16-bit dtype (bf16 takes oneDNN's path only on CPUs with bf16
        support, fp16 the decomposed one: the 2-byte dtype does not say which)."""
        if not grads.any:
            return []
        path = self.torch_path(grads.itemsize)
        if path is None:
            return None
        geometry = step.facts.geometry
        n, length, sizes = geometry["batch"], geometry["length"], geometry["layer_inputs"]
        d, h, layers = self.directions, self.hidden_size, self.num_layers
        r = self.out_size
        later = layers - 1
        sequence = length * n * d * r                        # one layer's output sequence, both directions
        items: list[Saved] = []
        if path == "onednn":
            items.append(Saved("input", "the first layer's input x (oneDNN keeps x, or its time-major copy when "
                                        "x is batch-first)"))
            items.append(Saved("extra", "h_0 and c_0, the zero initial states [layers·D, N, h] (two tensors)",
                               numel=2 * layers * d * n * h))
            last_is_output = d == 1 and self.return_sequences
            outputs = layers * d * length * n * h - (length * n * h if last_is_output else 0)
            if last_is_output:
                items.append(Saved("output", "its output, the last layer's output sequence (oneDNN keeps it)"))
            if outputs:
                items.append(Saved("extra", "each layer and direction's output sequence [L, N, h]"
                                            + (" (the last layer's too: the output is their concatenation)"
                                               if d == 2 else ""), numel=outputs))
            items.append(Saved("extra", "h_n and c_n of each layer and direction [N, h]",
                               numel=2 * layers * d * n * h))
            if later and (d == 2 or self.dropout):
                items.append(Saved("extra", ("the dropped" if self.dropout else "the concatenated directions'")
                                   + f" input of layers 1..{later} [L, N, D·h]", numel=later * sequence))
            if not self.bias:
                weights = d * 4 * h * (sizes[0] + h) + later * d * 4 * h * (sizes[-1] + h)
                items.append(Saved("extra", "copies of weight_ih and weight_hh (oneDNN's call without biases)",
                                   numel=weights))
            workspace = d * onednn_lstm_workspace(n, length, sizes[0], h) \
                + later * d * onednn_lstm_workspace(n, length, sizes[-1], h)
            items.append(Saved("extra", "oneDNN's workspace (uint8; its buffers rounded up to 4 KiB pages)",
                               numel=workspace, itemsize=1))
        else:
            if grads.params:
                copies = d if self.batch_first and n > 1 and length > 1 else 1
                items.append(Saved("input", "the first layer's input x, for W_ih's gradient"
                                   + (" (a time-major copy of batch-first x, counted as x)" if copies > 1 else "")))
                if copies > 1:
                    items.append(Saved("extra", "the reverse direction's own time-major copy of x",
                                       numel=length * n * sizes[0]))
                items.append(Saved("extra", f"h_0, the zero initial state [layers·D, N, {'p' if self.proj() else 'h'}]"
                                            ", for W_hh's gradient", numel=layers * d * n * r))
                if self.recurrent_saved():
                    items.append(Saved("extra", self.recurrent_saved(), numel=layers * d * (length - 1) * n * r))
                if later:
                    items.append(Saved("extra", f"the input of layers 1..{later}, the previous layer's output "
                                                f"[L, N, D·r]" + (" after dropout" if self.dropout else ""),
                                       numel=later * sequence))
            for per_step, what in self.step_saved(grads.params):
                items.append(Saved("extra", what, numel=layers * d * length * n * h * per_step))
        if later and self.dropout:
            items.append(Saved("extra", f"dropout's mask between layers, {later}·[L, N, D·r] in the activations' "
                                        f"dtype (CPU: x·mask/(1 − p))", numel=later * sequence))
        return items

    def backward(self, step, grads: Gradients) -> Backward:
        """Backpropagation through time, per example, layer and direction (g gates, h hidden, r = the recurrent
        input size: the projection p or h): the weight gradients meet every forward multiply once, L·(g·h·(i + r)
        + p·h); the hidden state's gradient dh_{t−1} = W_hhᵀ·dG_t is made for L − 1 steps (the initial state
        requires none), g·h·r each; the projection's input gradient L·p·h; the sequence input's gradient L·g·h·i —
        for the first layer only when its input requires one (a later layer's input is the previous layer's
        output). Matches FlopCounterMode on nn.GRU and nn.RNN and on an LSTMCell loop (nn.LSTM's fused CPU kernel
        is invisible to it)."""
        geometry = step.facts.geometry
        batch, length, inputs = geometry["batch"], geometry["length"], geometry["layer_inputs"]
        g, h, p = self.gates, self.hidden_size, self.proj()
        r = p or h
        per = batch * self.directions
        first, later = inputs[0], (inputs[1] if len(inputs) > 1 else 0)
        recurrence = per * self.num_layers * (length - 1) * g * h * r
        projection = per * self.num_layers * length * p * h
        sequence = per * length * g * h * ((first if grads.any_input else 0) + (self.num_layers - 1) * later)
        result = Backward(input_macs=recurrence + projection + sequence)
        result.lines.append(f"backward hidden-state gradients dh = W_hhᵀ·dG for L − 1 steps: N·D·layers·(L − 1)·g·h·r "
                            f"= {batch}·{self.directions}·{self.num_layers}·{length - 1}·{g}·{h}·{r} = {recurrence:,} "
                            f"MACs" + (f"; projection input gradients {projection:,}" if p else ""))
        if not grads.any_input:
            result.lines.append(f"backward: {NO_INPUT_GRADIENT}")
        if sequence:
            result.lines.append(f"backward sequence-input gradients dx = W_ihᵀ·dG (layers that need one): "
                                f"{sequence:,} MACs")
        if grads.weights:
            result.weight_macs = step.facts.macs
            result.lines.append(f"backward weight gradients Σ_t dG_t·[x_t, h_(t−1)]ᵀ: the forward MACs = "
                                f"{step.facts.macs:,}")
        result.element_flops = step.facts.flops - 2 * step.facts.macs
        result.lines.append(f"backward element FLOPs (gate derivatives, bias gradients: the forward's element work) "
                            f"= {result.element_flops:,}")
        return result

    def explain(self, c: Explanation, input_shapes: list[tuple[int, ...]], facts: Facts,
                channels_last: bool) -> None:
        geometry = facts.geometry
        batch, length, sizes = geometry["batch"], geometry["length"], geometry["layer_inputs"]
        layers = self.num_layers
        d, h, p, g = self.directions, self.hidden_size, self.proj(), self.gates
        layout = "[N, L, F]" if self.batch_first else "[L, N, F] (batch_first=False)"
        c.add(f"{self.type_name}: input {list(input_shapes[0])} read as {layout}: N = {batch}, L = {length}, "
              f"i = {geometry['input_size']}; h = hidden_size = {h}" + (f", p = proj_size = {p}" if p else "")
              + f"; {layers} layer(s), {d} direction(s)")
        c.add(f"{self.convention_text()}; gates g = {g} ({self.gate_names})")
        if self.return_sequences:
            c.add(f"output: every step of the last layer, D·H_out = {d}·{self.out_size} features → "
                  f"{list(facts.output_shape)}")
        else:
            c.add(f"output: the last layer's final hidden state h_n, D·H_out = {d}·{self.out_size} → "
                  f"{list(facts.output_shape)}")
        if layers > 1:
            c.add(f"layers after the first read i' = D·{'p' if p else 'h'} = {d}·{self.out_size} = {sizes[1]} "
                  f"features")
        per = [self.direction_params(i) for i in sizes]
        total_params = d * (per[0] + (layers - 1) * per[-1])

        def times_d(text: str) -> str:                # D·(…) around a sum; D·g·(…) reads as it is
            if d == 1:
                return text
            return f"{d}·({text})" if p or g == 1 else f"{d}·{text}"

        if layers == 1:
            c.result("params", f"{times_d(self.params_formula(0))} = {times_d(self.params_numbers(sizes[0]))}",
                     total_params, facts.params)
        else:
            for layer, (i, value) in enumerate(zip(sizes, per)):
                which = "layer 0" if layer == 0 else ("layer 1" if layers == 2 else f"layers 1..{layers - 1}, each")
                c.add(f"  {which}: {times_d(self.params_formula(layer))} = {times_d(self.params_numbers(i))} = "
                      f"{n(d * value)}")
            later = " + ".join([n(d * per[1])] * (layers - 1)) if layers <= 4 else f"{layers - 1}·{n(d * per[1])}"
            c.result("params", f"{n(d * per[0])} + {later}", total_params, facts.params)
        r = "p" if p else "h"
        proj_text = " + p·h" if p else ""

        def step_numbers(i: int) -> str:
            return f"{g}·{h}·({i} + {p or h})" + (f" + {p}·{h}" if p else "")

        if layers == 1:
            step_text = step_numbers(sizes[0])
        elif layers == 2:
            step_text = " + ".join(f"({step_numbers(i)})" if p else step_numbers(i) for i in sizes)
        else:
            step_text = f"({step_numbers(sizes[0])}) + {layers - 1}·({step_numbers(sizes[1])})"
        total_macs = batch * length * d * (self.step_macs(sizes[0]) + (layers - 1) * self.step_macs(sizes[-1]))
        sum_text = "Σ_layers " if layers > 1 else ""
        c.result("MACs", f"N·L·D·{sum_text}(g·h·(i + {r}){proj_text}) = {batch}·{length}·{d}·"
                 f"({step_text})", total_macs, facts.macs)
        bias_adds = self.bias_vectors() * g
        e = self.element_flops()
        c.add(f"element-wise FLOPs per hidden unit and step: {self.element_text()} = {e}"
              + (f"; bias adds {bias_adds} (g·{self.bias_vectors()} bias vector"
                 f"{'s' if self.bias_vectors() > 1 else ''})" if bias_adds else "; no bias adds"))
        elementwise = batch * length * d * self.num_layers * (bias_adds + e) * h
        c.result("FLOPs", f"2·MACs + N·L·D·layers·({bias_adds} + {e})·h = 2·{n(total_macs)} + "
                 f"{batch}·{length}·{d}·{self.num_layers}·{bias_adds + e}·{h}", 2 * total_macs + elementwise,
                 facts.flops)


# --------------------------------------------------------------------------------------------------- LSTM

@register_layer
class LSTM(_Recurrent):
    """Long short-term memory, like ``torch.nn.LSTM`` (gates i, f, g, o), or Keras' LSTM with convention: keras."""
    gates: ClassVar[int] = 4
    gate_names: ClassVar[str] = "i, f, g, o"
    keras_gate_order: ClassVar[tuple[int, ...]] = (0, 1, 2, 3)     # Keras' i, f, c, o: the same order
    type: Literal["lstm"] = "lstm"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"LSTM": {"convention": "keras"}}
    activation: Literal["tanh"] = Field("tanh", description="Keras' cell activation: only tanh (the LSTM's own) is "
                                                            "supported")
    recurrent_activation: Literal["sigmoid"] = Field("sigmoid", description="Keras' gate activation: only sigmoid is "
                                                                            "supported")
    proj_size: NonNegativeInt = Field(0, description="project h_t to this size (weight_hr; PyTorch only); 0: none")

    def flop_counter_text(self, macs_text: str) -> str:
        # measured (torch 2.13.0, CPU): nn.LSTM runs one fused kernel that FlopCounterMode has no formula for; it
        # counts nn.GRU and nn.RNN as 2·MACs
        return f"torch.utils.flop_counter counts 0 for nn.LSTM on CPU (its fused kernel); 2·MACs = {macs_text}"

    @model_validator(mode="after")
    def _check_projection(self) -> LSTM:
        if self.proj_size and self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size {self.proj_size} must be smaller than hidden_size {self.hidden_size} "
                             f"(PyTorch's rule)")
        if self.proj_size and self.convention == _KERAS:
            raise ValueError(f"proj_size {self.proj_size}: Keras' LSTM has no projection; use convention: pytorch")
        return self

    def proj(self) -> int:
        return self.proj_size

    def element_text(self) -> str:
        return "3 sigmoids (i, f, o) 3·3 + tanh (g) 1 + c = f·c + i·g 3 + h = o·tanh(c) 2"

    def torch_path(self, itemsize: int) -> Optional[str]:
        # torch's use_mkldnn: float32 always takes oneDNN; bfloat16 only on a CPU with bf16 support (which
        # layercalc does not know), float16 never with autograd on, float64 never — and a projection never ("LSTM
        # with projections is not supported with oneDNN"). A 16-bit dtype can be either: not modeled.
        if self.proj_size or itemsize == 8:
            return "cell"
        return "onednn" if itemsize == 4 else None

    def step_saved(self, trained: bool) -> list[tuple[int, str]]:
        kept = [(4, "the gates' block [N, 4h] after the in-place sigmoids and tanh: their outputs"),
                (1, "c_(t−1) for f·c_(t−1) (c_0 the zero initial state)"), (1, "tanh(c_t), for o·tanh(c_t)")]
        if trained and self.proj_size:
            kept.append((1, "o·tanh(c_t), the projection's input, for weight_hr's gradient"))
        return kept

    def recurrent_saved(self) -> str:
        return ("the projected " if self.proj_size else "") + super().recurrent_saved()

    def initial_state(self, batch: int, dtype: Any) -> tuple:
        import numpy as np
        return (np.zeros((batch, self.out_size), dtype=dtype), np.zeros((batch, self.hidden_size), dtype=dtype))

    def cell(self, gi: Any, state: tuple, w_hh: Any, b_hh: Optional[Any], params: dict, key: str, env: Any) -> tuple:
        import numpy as np

        from ..kernels import sigmoid
        h_prev, c_prev = state
        hs = self.hidden_size
        gates = self.recurrent(h_prev, w_hh, b_hh, env)
        gates += gi
        i = sigmoid(gates[:, :hs])
        f = sigmoid(gates[:, hs:2 * hs])
        g = np.tanh(gates[:, 2 * hs:3 * hs])
        o = sigmoid(gates[:, 3 * hs:])
        c = f * c_prev
        c += i * g
        h = o * np.tanh(c)
        if self.proj_size:
            w_hr = params[f"weight_hr_{key}"]
            env.counter.add(h.shape[0] * w_hr.shape[0] * w_hr.shape[1])
            h = h @ w_hr.T
        return h, c


# ---------------------------------------------------------------------------------------------------- GRU

@register_layer
class GRU(_Recurrent):
    """Gated recurrent unit, like ``torch.nn.GRU`` (gates r, z, n), or Keras' GRU with convention: keras."""
    gates: ClassVar[int] = 3
    gate_names: ClassVar[str] = "r, z, n"
    keras_gate_order: ClassVar[tuple[int, ...]] = (1, 0, 2)        # Keras' z, r, h
    type: Literal["gru"] = "gru"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"GRU": {"convention": "keras"}}
    activation: Literal["tanh"] = Field("tanh", description="Keras' cell activation: only tanh (the GRU's own) is "
                                                            "supported")
    recurrent_activation: Literal["sigmoid"] = Field("sigmoid", description="Keras' gate activation: only sigmoid is "
                                                                            "supported")
    reset_after: Bool = Field(True, description="the reset gate multiplies W_hn·h + b_hn (PyTorch, Keras' default); "
                                                "off: it multiplies h before W_hn (Keras only, one bias vector)")

    @model_validator(mode="after")
    def _check_reset(self) -> GRU:
        if not self.reset_after and self.convention == _PYTORCH:
            raise ValueError("reset_after=False is Keras' GRU (torch.nn.GRU always applies the reset gate after the "
                             "recurrent product); use convention: keras")
        return self

    @property
    def kind(self) -> str:
        return "gru" if self.reset_after else "gru_reset_before"

    def bias_vectors(self) -> int:
        if self.bias and self.convention == _KERAS and self.reset_after:
            return 2                                  # Keras: bias of shape (2, 3·units), input and recurrent
        return super().bias_vectors()

    def convention_text(self) -> str:
        if self.convention == _KERAS and self.bias and self.reset_after:
            return ("keras convention, reset_after=True: two bias vectors per layer and direction (input and "
                    "recurrent), like PyTorch")
        if self.convention == _KERAS and self.bias:
            return "keras convention, reset_after=False: one bias vector per layer and direction"
        return super().convention_text()

    def torch_path(self, itemsize: int) -> Optional[str]:
        return "cell" if self.reset_after else None      # reset_after=False: no torch module computes it

    def step_saved(self, trained: bool) -> list[tuple[int, str]]:
        return [(3, "the r, z, n block of W_hh·h + b_hh [N, 3h] after the in-place sigmoids: r and z"),
                (1, "a copy of W_hn·h + b_hn before the in-place multiply by r"), (1, "n = tanh(…), tanh's output"),
                (1, "a copy of h_(t−1) − n before the in-place multiply by z")]

    def element_text(self) -> str:
        if self.reset_after:
            return "2 sigmoids (r, z) 2·3 + n = tanh(W_in·x + b_in + r·(W_hn·h + b_hn)) 3 + h = n + z·(h − n) 3"
        return "2 sigmoids (r, z) 2·3 + n = tanh(W_in·x + W_hn·(r·h) + b_n) 2 + h = n + z·(h − n) 3"

    def cell(self, gi: Any, state: tuple, w_hh: Any, b_hh: Optional[Any], params: dict, key: str, env: Any) -> tuple:
        import numpy as np

        from ..kernels import sigmoid
        (h_prev,) = state
        hs = self.hidden_size
        if self.reset_after:
            gh = self.recurrent(h_prev, w_hh, b_hh, env)
            rz = sigmoid(gi[:, :2 * hs] + gh[:, :2 * hs])
            r, z = rz[:, :hs], rz[:, hs:]
            candidate = gh[:, 2 * hs:] * r
            candidate += gi[:, 2 * hs:]
        else:                                          # Keras reset_after=False: r·h before the product
            rz = self.recurrent(h_prev, w_hh[:2 * hs], None, env)
            rz += gi[:, :2 * hs]
            rz = sigmoid(rz, out=rz)
            r, z = rz[:, :hs], rz[:, hs:]
            candidate = self.recurrent(r * h_prev, w_hh[2 * hs:], None, env)
            candidate += gi[:, 2 * hs:]
        n_ = np.tanh(candidate, out=candidate)
        h = h_prev - n_
        h *= z
        h += n_
        return (h,)


# ---------------------------------------------------------------------------------------------------- RNN

@register_layer
class RNN(_Recurrent):
    """Elman recurrent layer, like ``torch.nn.RNN``: h_t = tanh(W_ih·x_t + b_ih + W_hh·h_(t−1) + b_hh), or relu;
    Keras' SimpleRNN with convention: keras."""
    gate_names: ClassVar[str] = "none: the new h itself"
    type: Literal["rnn", "simple_rnn"] = "rnn"
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {"SimpleRNN": {"convention": "keras"}}
    nonlinearity: Literal["tanh", "relu"] = Field("tanh", validation_alias=_alias("nonlinearity", "activation"),
                                                  description="tanh or relu (Keras: activation)")

    _lower_nonlinearity = field_validator("nonlinearity", mode="before")(classmethod(lambda cls, v: _lower_string(v)))

    @property
    def kind(self) -> str:
        return "rnn"

    def element_text(self) -> str:
        return f"{self.nonlinearity} 1"

    def step_saved(self, trained: bool) -> list[tuple[int, str]]:
        return [(1, f"h_t, {self.nonlinearity}'s output (also the next step's recurrent input)")]

    def recurrent_saved(self) -> str:
        return ""                                    # h_(t−1) is the previous step's output, kept already

    def cell(self, gi: Any, state: tuple, w_hh: Any, b_hh: Optional[Any], params: dict, key: str, env: Any) -> tuple:
        import numpy as np
        pre = self.recurrent(state[0], w_hh, b_hh, env)
        pre += gi
        h = np.tanh(pre, out=pre) if self.nonlinearity == "tanh" else np.maximum(pre, 0, out=pre)
        return (h,)

