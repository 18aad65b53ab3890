"""Saved activations of ``lstm``, ``gru`` and ``rnn`` against torch 2.13 (CPU) as the oracle.

The oracle is tests/saved_oracle.py: the distinct storages ``torch.autograd.graph.saved_tensors_hooks`` sees in a
forward pass in training mode (parameters excluded), in total and under the module that first saves each. Each case
runs the torch module (nn.LSTM / nn.GRU / nn.RNN) and the layercalc network written for it by hand:

- on the network input (which needs no gradient), and after a trained bias (``x + bias``: the layer's input needs
  one, as inside a network); with trained and with frozen weights (``requires_grad_(False)`` / ``trainable: false``);
- batch 1 and 3 (at batch > 1 a batch-first input is not contiguous time-major: torch copies it), one step, stacked
  layers, both directions, no biases, batch-first or not, inter-layer dropout, proj_size, the output sequence or
  the last layer's final state (``return_sequences: false``), float32 and float64.

nn.LSTM without projection in float32 runs oneDNN's fused kernel, which keeps a uint8 workspace whose size
(``onednn_lstm_workspace``) is checked on larger shapes too. Backward FLOPs of the paths FlopCounterMode sees
(nn.GRU, nn.RNN, nn.LSTM with proj_size) are checked here for the cases tests/test_backward.py does not try.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
from saved_oracle import saved_by_module, saved_bytes  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import layercalc  # noqa: E402
from layercalc.graph import backward_of  # noqa: E402
from layercalc.layers.recurrent import onednn_lstm_workspace  # noqa: E402
from layercalc.rules import Gradients  # noqa: E402

torch.set_num_threads(2)

# nn.LSTM with proj_size warns that oneDNN does not take it (and runs ATen's cell: what is modeled)
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

TORCH = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


class Recurrent(nn.Module):
    """``rnn(x)`` (``x + bias`` first when ``after_trained``) returning what layercalc's layer outputs: the output
    sequence, or the last layer's final hidden state (both directions concatenated), then an optional head."""

    def __init__(self, rnn: nn.Module, features: int, after_trained: bool, return_sequences: bool,
                 head: nn.Module | None = None):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(features)) if after_trained else None
        self.rnn, self.return_sequences, self.head = rnn, return_sequences, head

    def forward(self, x):
        if self.bias is not None:
            x = x + self.bias
        out, state = self.rnn(x)
        if not self.return_sequences:
            h_n = state[0] if isinstance(state, tuple) else state
            out = torch.cat(list(h_n[-2:]), 1) if self.rnn.bidirectional else h_n[-1]
        return self.head(out) if self.head is not None else out


def torch_recurrent(kind: str, features: int, fields: dict, frozen: bool, dtype=torch.float32) -> nn.Module:
    kwargs = {k: v for k, v in fields.items() if k != "return_sequences"}
    kwargs.setdefault("batch_first", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # dropout with num_layers=1; oneDNN refusing a projection
        module = TORCH[kind](features, **kwargs).to(dtype).train()
    for p in module.parameters():
        p.requires_grad_(not frozen)
    return module


def layercalc_network(kind: str, shape: tuple[int, int, int], fields: dict, after_trained: bool, frozen: bool,
                      head: list[dict] | None = None, dtype: str = "float32") -> layercalc.Network:
    """The layercalc network of :class:`Recurrent`: ``shape`` is the torch input's ([N, L, F], or [L, N, F] with
    batch_first false: layercalc's batch dim is dim 0 either way)."""
    layers: list[dict] = []
    if after_trained:
        layers = [{"name": "bias", "type": "parameter", "shape": list(shape[1:])},
                  {"name": "x", "type": "add", "inputs": ["input", "bias"]}]
    layers.append({"name": "rnn", "type": kind, **fields, "trainable": not frozen})
    layers += head or []
    return layercalc.load({"input": list(shape[1:]), "batch": shape[0], "layers": layers, "dtype": dtype})


def torch_input(fields: dict, batch: int, length: int, features: int, dtype=torch.float32) -> torch.Tensor:
    torch.manual_seed(0)
    if fields.get("batch_first", True):
        return torch.randn(batch, length, features, dtype=dtype)
    return torch.randn(length, batch, features, dtype=dtype)


def compare(kind: str, fields: dict, batch: int, length: int, features: int, after_trained: bool, frozen: bool,
            dtype: str = "float32") -> int:
    """Assert layercalc's total and the recurrent layer's own bytes equal torch's; return the total."""
    torch_dtype = getattr(torch, dtype)
    module = Recurrent(torch_recurrent(kind, features, fields, frozen, torch_dtype), features, after_trained,
                       fields.get("return_sequences", True)).to(torch_dtype).train()
    x = torch_input(fields, batch, length, features, torch_dtype)
    expected = saved_bytes(module, x)
    by_module = saved_by_module(module, x)
    report = layercalc_network(kind, tuple(x.shape), fields, after_trained, frozen, dtype=dtype).analyze()
    assert report.totals.saved_bytes == expected
    assert report.layers[-1].saved_bytes == by_module.get("rnn", 0)
    assert set(by_module) <= {"rnn"}                # the add keeps nothing: everything is the recurrent layer's
    return expected


# (kind, fields): every feature the brief lists, on small shapes
CASES = {
    "lstm": ("lstm", {"hidden_size": 4}),
    "lstm-2-layers": ("lstm", {"hidden_size": 5, "num_layers": 2}),
    "lstm-bi-last-state": ("lstm", {"hidden_size": 4, "bidirectional": True, "return_sequences": False}),
    "lstm-2-bi-time-major": ("lstm", {"hidden_size": 4, "num_layers": 2, "bidirectional": True,
                                      "batch_first": False}),
    "lstm-no-bias-2-bi": ("lstm", {"hidden_size": 3, "bias": False, "num_layers": 2, "bidirectional": True}),
    "lstm-dropout": ("lstm", {"hidden_size": 3, "num_layers": 2, "dropout": 0.3}),
    "lstm-dropout-3-bi": ("lstm", {"hidden_size": 3, "num_layers": 3, "dropout": 0.5, "bidirectional": True}),
    "lstm-64": ("lstm", {"hidden_size": 64}),                        # 4h = 256: oneDNN pads its gates' rows
    "lstm-proj": ("lstm", {"hidden_size": 5, "proj_size": 2}),
    "lstm-proj-2-bi": ("lstm", {"hidden_size": 6, "proj_size": 3, "num_layers": 2, "bidirectional": True}),
    "lstm-proj-time-major-last": ("lstm", {"hidden_size": 6, "proj_size": 2, "batch_first": False,
                                           "return_sequences": False, "bias": False}),
    "lstm-proj-dropout": ("lstm", {"hidden_size": 4, "proj_size": 3, "num_layers": 3, "dropout": 0.2}),
    "gru": ("gru", {"hidden_size": 5}),
    "gru-2-bi-last-state": ("gru", {"hidden_size": 5, "num_layers": 2, "bidirectional": True,
                                    "return_sequences": False}),
    "gru-time-major-no-bias": ("gru", {"hidden_size": 4, "batch_first": False, "bias": False}),
    "gru-bi": ("gru", {"hidden_size": 3, "bidirectional": True}),
    "gru-dropout-bi": ("gru", {"hidden_size": 4, "num_layers": 2, "dropout": 0.5, "bidirectional": True}),
    "rnn": ("rnn", {"hidden_size": 5}),
    "rnn-relu-2-bi": ("rnn", {"hidden_size": 5, "nonlinearity": "relu", "num_layers": 2, "bidirectional": True}),
    "rnn-time-major-3-last": ("rnn", {"hidden_size": 3, "batch_first": False, "return_sequences": False,
                                      "num_layers": 3}),
    "rnn-dropout-no-bias": ("rnn", {"hidden_size": 3, "num_layers": 2, "dropout": 0.4, "bias": False}),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("batch, length", [(3, 4), (1, 3), (2, 1)], ids=["N3-L4", "N1", "L1"])
@pytest.mark.parametrize("after_trained", [False, True], ids=["on-input", "after-trained"])
@pytest.mark.parametrize("frozen", [False, True], ids=["trained", "frozen"])
def test_saved_bytes_equal_torch(case, batch, length, after_trained, frozen):
    kind, fields = CASES[case]
    total = compare(kind, fields, batch, length, 3, after_trained, frozen)
    assert (total == 0) == (frozen and not after_trained)        # nothing needs a gradient: nothing kept


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("after_trained", [False, True], ids=["on-input", "after-trained"])
def test_float64_runs_the_decomposed_cell_and_is_counted_at_8_bytes(kind, after_trained):
    """nn.LSTM takes oneDNN's kernel in float32 only: in float64 all three run ATen's cell step by step."""
    fields = {"hidden_size": 4, "num_layers": 2, "bidirectional": True}
    compare(kind, fields, 3, 4, 5, after_trained, False, dtype="float64")


def test_lstm_by_hand():
    """nn.LSTM(3, 4) on [2, 5, 3] batch-first in float32, 1 layer (oneDNN): x's time-major copy 2·5·3, h_0 and c_0
    2·2·4, the output 5·2·4, h_n and c_n 2·2·4 — 102 floats, 408 B — and the workspace of seven buffers each under
    a page (the largest, the layer states 2·6·2·16 floats = 1,536 B): 7 × 4,096 B = 28,672 B."""
    assert onednn_lstm_workspace(2, 5, 3, 4) == 7 * 4096
    expected = 4 * (2 * 5 * 3 + 2 * 2 * 4 + 5 * 2 * 4 + 2 * 2 * 4) + 7 * 4096
    assert compare("lstm", {"hidden_size": 4}, 2, 5, 3, False, False) == expected == 29_080


def test_gru_by_hand():
    """nn.GRU(3, 4) on [2, 5, 3] batch-first, trained weights: x's copy 2·5·3 = 30 and h_0 2·4 = 8; per step
    6·N·h = 48 (the r, z, n block 3·N·h after the in-place sigmoids, a copy of W_hn·h + b_hn, n, a copy of h − n),
    5 steps = 240; h_(t−1) of steps 1..4 for W_hh's gradient 4·8 = 32: 310 floats = 1,240 B. Frozen, after a
    trained layer: the steps' 240 floats only."""
    assert compare("gru", {"hidden_size": 4}, 2, 5, 3, False, False) == 4 * (30 + 8 + 5 * 48 + 4 * 8) == 1_240
    assert compare("gru", {"hidden_size": 4}, 2, 5, 3, True, True) == 4 * 5 * 48


def test_rnn_by_hand():
    """nn.RNN(3, 4): x 30, h_0 8 and each step's tanh output 8 (it is also the next step's recurrent input):
    (30 + 8 + 5·8)·4 = 312 B."""
    assert compare("rnn", {"hidden_size": 4}, 2, 5, 3, False, False) == 4 * (30 + 8 + 5 * 8) == 312


@pytest.mark.parametrize("shape", [(4, 7, 256, 64, 2, True), (16, 20, 100, 128, 1, False), (3, 50, 33, 96, 2, False),
                                   (64, 5, 16, 32, 1, True), (5, 9, 512, 300, 1, False), (1, 1, 1, 1, 3, True)])
def test_onednn_lstm_workspace_on_larger_shapes(shape):
    """The workspace's buffers past one page, padded leading dims (4h = 256 → 272; i = 512 → 528) and many steps."""
    batch, length, features, hidden, layers, bidirectional = shape
    compare("lstm", {"hidden_size": hidden, "num_layers": layers, "bidirectional": bidirectional}, batch, length,
            features, False, False)


def test_a_linear_reading_the_lstm_output_as_a_view_keeps_it_once():
    """oneDNN keeps the last layer's output, which is the layer's output; a linear reading it as a view (the
    time-major sequence, or the last step selected from a batch-first one) keeps the same storage: one tensor,
    counted at the LSTM."""
    linear = {"name": "head", "type": "linear", "out_features": 2}
    for fields, head, layers in [
        ({"hidden_size": 4, "batch_first": False}, nn.Linear(4, 2), [linear]),
        ({"hidden_size": 4}, LastStep(nn.Linear(4, 2), 3),
         [{"name": "last", "type": "select", "dim": 1, "index": 3}, linear]),
    ]:
        module = Recurrent(torch_recurrent("lstm", 3, fields, False), 3, False, True, head).train()
        x = torch_input(fields, 3, 4, 3)
        expected = saved_bytes(module, x)
        report = layercalc_network("lstm", tuple(x.shape), fields, False, False, layers).analyze()
        assert report.totals.saved_bytes == expected
        assert report.layers[-1].saved_bytes == 0                 # the linear's input: counted at the LSTM
        assert report.layers[0].saved_bytes == expected


def test_exception_a_linear_on_a_batch_first_sequence_copies_it():
    """Measured exception (docs/conventions.md): a batch-first output at N > 1 and L > 1 is a transposed view of
    torch's time-major output; a linear on it copies it ([N·L, h]) where layercalc counts the output once: torch
    keeps N·L·h floats more (3·4·4·4 = 192 B) when the recurrent layer keeps its output (oneDNN's LSTM)."""
    fields = {"hidden_size": 4}
    module = Recurrent(torch_recurrent("lstm", 3, fields, False), 3, False, True, nn.Linear(4, 2)).train()
    x = torch_input(fields, 3, 4, 3)
    report = layercalc_network("lstm", tuple(x.shape), fields, False, False,
                               [{"name": "head", "type": "linear", "out_features": 2}]).analyze()
    assert saved_bytes(module, x) - report.totals.saved_bytes == 3 * 4 * 4 * 4


def test_exception_a_bidirectional_gru_after_a_batch_first_gru_copies_nothing():
    """Measured exception: a batch-first recurrent layer reading another's output sequence (N > 1, L > 1) gets
    torch's time-major output back by its transpose, contiguous: ATen's cell keeps it without copying, where
    layercalc counts the reverse direction's copy of a batch-first input (L·N·h: 4·3·5·4 = 240 B more)."""
    module = Chain(nn.GRU(3, 5, batch_first=True), nn.GRU(5, 4, batch_first=True, bidirectional=True)).train()
    x = torch.randn(3, 4, 3)
    net = layercalc.load({"input": [4, 3], "batch": 3, "layers": [
        {"name": "first", "type": "gru", "hidden_size": 5},
        {"name": "second", "type": "gru", "hidden_size": 4, "bidirectional": True}]})
    assert net.analyze().totals.saved_bytes - saved_bytes(module, x) == 4 * 3 * 5 * 4


class LastStep(nn.Module):
    """``head(y[:, step])``: one step of a batch-first sequence."""

    def __init__(self, head: nn.Module, step: int):
        super().__init__()
        self.head, self.step = head, step

    def forward(self, y):
        return self.head(y[:, self.step])


class Chain(nn.Module):
    """Recurrent layers one after the other, each reading the previous one's output sequence."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)[0]
        return x


@pytest.mark.parametrize("layer, reason", [
    ({"type": "lstm", "hidden_size": 4}, "bf16: oneDNN's kernel or ATen's cell, by the CPU"),
    ({"type": "gru", "units": 4, "convention": "keras", "reset_after": False}, "no torch module computes it"),
])
def test_not_modeled_cases_refuse_the_total(layer, reason):
    """nn.LSTM without projection in a 16-bit dtype takes oneDNN's kernel on a CPU with bf16 support and ATen's
    cell otherwise (and always in fp16): layercalc does not know which. Keras' GRU with reset_after false has no
    torch counterpart. Both: None, the totals refuse and name the layer."""
    dtype = "bfloat16" if layer["type"] == "lstm" else "float32"
    report = layercalc.load({"input": [4, 3], "batch": 2, "layers": [{"name": "r", **layer}],
                             "dtype": dtype}).analyze()
    assert report.layers[0].saved_bytes is None and report.totals.saved_bytes is None, reason


def test_gru_and_rnn_in_16_bits_are_counted():
    """ATen's cell keeps the same tensors in bf16 as in float32, at 2 bytes (measured here on the torch module)."""
    for kind in ("gru", "rnn"):
        compare(kind, {"hidden_size": 4, "num_layers": 2, "bidirectional": True}, 3, 4, 5, True, False,
                dtype="bfloat16")


def test_explain_lists_what_the_lstm_keeps(tmp_path):
    import json

    from typer.testing import CliRunner

    from layercalc.cli import get_app
    spec = tmp_path / "lstm.json"
    spec.write_text(json.dumps({"input": [5, 3], "batch": 2, "layers": [{"type": "lstm", "hidden_size": 4}]}))
    result = CliRunner(env={"COLUMNS": "80"}).invoke(get_app(), ["summary", str(spec), "--train", "--explain"])
    assert result.exit_code == 0, result.output
    assert "oneDNN's workspace" in result.stdout and "28,672 × 1 B = 28,672 B" in result.stdout
    assert "saved for backward, first kept here = 29,080 B" in result.stdout


# ------------------------------------------------------------------------------------------------ backward

def torch_backward_flops(module: nn.Module, x: torch.Tensor, input_grad: bool) -> int:
    """FlopCounterMode around ``out.sum().backward()`` only."""
    out = module(x.detach().requires_grad_(input_grad))[0]
    with FlopCounterMode(display=False) as counter:
        out.sum().backward()
    return counter.get_total_flops()


BACKWARD_CASES = {
    "lstm-proj": ("lstm", {"hidden_size": 5, "proj_size": 2}),
    "lstm-proj-2-bi-time-major": ("lstm", {"hidden_size": 6, "proj_size": 3, "num_layers": 2,
                                           "bidirectional": True, "batch_first": False}),
    "gru-3-no-bias": ("gru", {"hidden_size": 4, "num_layers": 3, "bias": False}),
    "rnn-relu-time-major": ("rnn", {"hidden_size": 4, "nonlinearity": "relu", "batch_first": False}),
}


@pytest.mark.parametrize("case", list(BACKWARD_CASES))
@pytest.mark.parametrize("input_grad, frozen", [(False, False), (True, False), (True, True)],
                         ids=["first-layer", "inner-layer", "frozen-inner-layer"])
@pytest.mark.parametrize("length", [4, 1])
def test_backward_flops_equal_flop_counter(case, input_grad, frozen, length):
    """The paths FlopCounterMode sees (ATen's cell: nn.GRU, nn.RNN, nn.LSTM with a projection) in the cases
    test_backward.py does not try: a projection through nn.LSTM itself, three layers, time-major, one step, frozen
    weights (no weight gradients; the hidden state's and the input's still made)."""
    kind, fields = BACKWARD_CASES[case]
    module = torch_recurrent(kind, 3, fields, frozen)
    x = torch_input(fields, 2, length, 3)
    expected = torch_backward_flops(module, x, input_grad)
    step = layercalc_network(kind, tuple(x.shape), fields, False, frozen).resolve()[-1]
    ours = backward_of(step, Gradients((input_grad,), not frozen))
    assert 2 * ours.macs == expected
    assert (ours.weight_macs == 0) == frozen
