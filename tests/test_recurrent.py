"""Recurrent layers (lstm, gru, rnn) against independent sources.

- params and output shapes: torch.nn.LSTM / GRU / RNN (``sum(p.numel())``, the module's output and ``h_n``) on
  hypothesis-drawn configurations (input and hidden sizes, layers, directions, projection, bias, batch_first,
  return_sequences);
- MACs: ``FlopCounterMode`` with oneDNN (mkldnn) disabled, which runs PyTorch's decomposed cell (one addmm/mm per
  product) and counts 2 per multiply-add; with oneDNN on, a CPU LSTM without projection is one fused kernel and
  FlopCounterMode counts 0 (checked below, so the docs stay true);
- forward steps: layercalc's NumPy run on the torch module's state_dict saved with ``np.savez`` (keys as PyTorch
  names them), float64, against the torch module's output;
- the Keras convention: counts written as Keras' formulas by hand, and (when ``keras`` is installed, with the torch
  backend) Keras' own ``count_params()`` and forward pass with the weights mapped into Keras' layout;
- FLOPs: hand derivations of the per-element operation counts of docs/conventions.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle_helpers import keras_on_torch
from torch.utils.flop_counter import FlopCounterMode

import layercalc
from layercalc import LayerCalcError
from layercalc.explain import explain_layer

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:keras"),
              pytest.mark.filterwarnings("ignore:TF32 acceleration:UserWarning")]

TORCH = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def examples(count: int) -> settings:
    return settings(max_examples=count, derandomize=True, database=None, deadline=None)


def lc_net(kind: str, length: int, features: int, batch: int = 1, **fields) -> layercalc.Network:
    return layercalc.load({"input": [length, features], "batch": batch,
                           "layers": [{"type": kind, "name": "rnn", **fields}]})


def lc_facts(kind: str, length: int, features: int, batch: int = 1, **fields):
    return lc_net(kind, length, features, batch, **fields).analyze().layers[0]


def torch_module(kind: str, features: int, fields: dict) -> torch.nn.Module:
    kwargs = {k: v for k, v in fields.items() if k not in ("return_sequences", "convention")}
    kwargs.setdefault("batch_first", True)
    return TORCH[kind](features, **kwargs).double().eval()


def torch_output(module: torch.nn.Module, x: torch.Tensor, return_sequences: bool) -> torch.Tensor:
    with torch.no_grad():
        out, state = module(x)
    if return_sequences:
        return out
    h_n = state[0] if isinstance(state, tuple) else state
    d = 2 if module.bidirectional else 1
    return torch.cat(list(h_n[-d:]), dim=1)           # the last layer's final state, [N, D·H_out]


configurations = st.fixed_dictionaries({
    "kind": st.sampled_from(["lstm", "gru", "rnn"]),
    "features": st.integers(1, 12),
    "hidden_size": st.integers(1, 12),
    "num_layers": st.integers(1, 3),
    "bidirectional": st.booleans(),
    "bias": st.booleans(),
    "proj": st.integers(0, 11),
    "batch_first": st.booleans(),
    "return_sequences": st.booleans(),
    "nonlinearity": st.sampled_from(["tanh", "relu"]),
})


def fields_of(case: dict) -> dict:
    fields = {"hidden_size": case["hidden_size"], "num_layers": case["num_layers"],
              "bidirectional": case["bidirectional"], "bias": case["bias"], "batch_first": case["batch_first"],
              "return_sequences": case["return_sequences"]}
    if case["kind"] == "lstm" and 0 < case["proj"] < case["hidden_size"]:
        fields["proj_size"] = case["proj"]
    if case["kind"] == "rnn":
        fields["nonlinearity"] = case["nonlinearity"]
    return fields


# ----------------------------------------------------------------------------------------- params and shapes

@examples(120)
@given(case=configurations, length=st.integers(1, 5), batch=st.integers(1, 3))
def test_params_and_shapes_match_torch(case, length, batch):
    kind, features = case["kind"], case["features"]
    fields = fields_of(case)
    module = torch_module(kind, features, fields)
    shape = (batch, length, features) if fields["batch_first"] else (length, batch, features)
    expected = torch_output(module, torch.zeros(shape, dtype=torch.float64), fields["return_sequences"])
    # layercalc's network batch is dim 0 of the array: with batch_first=False that is the sequence length
    facts = lc_facts(kind, shape[1], features, shape[0], **fields)
    assert facts.params == sum(p.numel() for p in module.parameters())
    assert list(facts.output_shape) == list(expected.shape)


@examples(40)
@given(case=configurations, length=st.integers(1, 4), batch=st.integers(1, 3))
def test_macs_are_half_of_flop_counter_mode_on_the_decomposed_cell(case, length, batch):
    kind, features = case["kind"], case["features"]
    fields = {**fields_of(case), "batch_first": True}
    module = torch_module(kind, features, fields)
    counter = FlopCounterMode(display=False)
    with torch.backends.mkldnn.flags(enabled=False), torch.no_grad(), counter:
        module(torch.zeros(batch, length, features, dtype=torch.float64))
    assert 2 * lc_facts(kind, length, features, batch, **fields).macs == counter.get_total_flops()


def test_flop_counter_mode_counts_nothing_for_the_fused_cpu_lstm():
    # What docs/conventions.md says FlopCounterMode reports by default on CPU: 0 for an LSTM (one fused oneDNN
    # kernel), 2·MACs for GRU and RNN (decomposed).
    x = torch.zeros(1, 10, 16)
    totals = {}
    for kind in ("lstm", "gru", "rnn"):
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            TORCH[kind](16, 32, batch_first=True).eval()(x)
        totals[kind] = counter.get_total_flops()
    if torch.backends.mkldnn.is_available():
        assert totals["lstm"] == 0
    assert totals["gru"] == 2 * 10 * 3 * 32 * (16 + 32)
    assert totals["rnn"] == 2 * 10 * 32 * (16 + 32)


# ---------------------------------------------------------------------------------------------- forward

FORWARD_CASES = [
    ("lstm", {"hidden_size": 5}),
    ("lstm", {"hidden_size": 5, "num_layers": 2}),
    ("lstm", {"hidden_size": 4, "bidirectional": True, "return_sequences": False}),
    ("lstm", {"hidden_size": 6, "proj_size": 3, "num_layers": 2, "bidirectional": True}),
    ("lstm", {"hidden_size": 6, "proj_size": 2, "batch_first": False, "return_sequences": False}),
    ("lstm", {"hidden_size": 4, "num_layers": 2, "batch_first": False, "bidirectional": True}),
    ("lstm", {"hidden_size": 3, "bias": False, "dropout": 0.3, "num_layers": 2}),
    ("gru", {"hidden_size": 5}),
    ("gru", {"hidden_size": 5, "num_layers": 2, "bidirectional": True, "return_sequences": False}),
    ("gru", {"hidden_size": 4, "batch_first": False, "bias": False}),
    ("rnn", {"hidden_size": 5}),
    ("rnn", {"hidden_size": 5, "nonlinearity": "relu", "num_layers": 2, "bidirectional": True}),
    ("rnn", {"hidden_size": 3, "batch_first": False, "return_sequences": False, "num_layers": 2}),
]


@pytest.mark.parametrize("kind, fields", FORWARD_CASES)
def test_forward_matches_torch_with_its_state_dict(kind, fields, tmp_path):
    torch.manual_seed(0)
    features, length, batch = 3, 6, 2
    module = torch_module(kind, features, fields)
    shape = (batch, length, features) if fields.get("batch_first", True) else (length, batch, features)
    x = torch.randn(shape, dtype=torch.float64)
    expected = torch_output(module, x, fields.get("return_sequences", True)).numpy()
    path = tmp_path / "weights.npz"
    np.savez(path, **{f"rnn.{k}": v.numpy() for k, v in module.state_dict().items()})   # a state_dict as is
    net = lc_net(kind, shape[1], features, shape[0], **fields)
    assert layercalc.sources.weight_sources(net, str(path)).random == {}            # every parameter was read
    got = net.run(x=x.numpy(), weights=str(path), dtype="float64")
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_random_weights_follow_pytorch_init_bound():
    # U(±1/√hidden_size) for every weight and bias, as torch's reset_parameters
    from layercalc.weights import init_params

    step = lc_net("lstm", 4, 3, hidden_size=25, proj_size=5).resolve()[0]
    params = init_params(step, {}, 0, np.float64, False)
    assert list(params) == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_hr_l0"]
    assert list(params) == [name for name, _ in torch.nn.LSTM(3, 25, proj_size=5).named_parameters()]
    for values in params.values():
        assert np.abs(values).max() <= 1 / 5
        assert np.abs(values).max() > 0.9 / 5


def test_parameter_names_are_pytorchs_for_stacked_bidirectional_layers():
    net = lc_net("gru", 4, 3, hidden_size=5, num_layers=2, bidirectional=True)
    step = net.resolve()[0]
    ours = {name: spec.shape for name, spec in step.layer.param_specs(step, False).items()}
    theirs = {name: tuple(p.shape) for name, p in torch.nn.GRU(3, 5, 2, bidirectional=True).named_parameters()}
    assert list(ours.items()) == list(theirs.items())


# -------------------------------------------------------------------------------------- keras convention

def keras_params(kind: str, i: int, h: int, use_bias: bool = True, reset_after: bool = True) -> int:
    """Keras' counts, written as its layers allocate them: kernel [i, g·h], recurrent_kernel [h, g·h], bias."""
    g = GATES[kind]
    bias = 0
    if use_bias:
        bias = 2 * g * h if kind == "gru" and reset_after else g * h
    return i * g * h + h * g * h + bias


@examples(40)
@given(kind=st.sampled_from(["lstm", "gru", "rnn"]), i=st.integers(1, 40), h=st.integers(1, 40),
       use_bias=st.booleans(), reset_after=st.booleans(), bidirectional=st.booleans(), length=st.integers(1, 4))
def test_keras_convention_counts(kind, i, h, use_bias, reset_after, bidirectional, length):
    fields = {"units": h, "use_bias": use_bias, "convention": "keras", "bidirectional": bidirectional}
    if kind == "gru":
        fields["reset_after"] = reset_after
    facts = lc_facts(kind, length, i, **fields)
    d = 2 if bidirectional else 1                    # Keras' Bidirectional wrapper: two copies of the layer
    assert facts.params == d * keras_params(kind, i, h, use_bias, reset_after)
    # the same products as PyTorch's: one input and one recurrent product per gate and step
    assert facts.macs == d * length * GATES[kind] * h * (i + h)


def test_the_interview_numbers():
    assert lc_facts("lstm", 10, 16, hidden_size=32).params == 6400 == 4 * (32 * 16 + 32 ** 2 + 2 * 32)
    assert lc_facts("lstm", 10, 16, units=32, convention="keras").params == 6272 == 4 * (32 * 16 + 32 ** 2 + 32)
    assert lc_facts("gru", 10, 16, units=32, convention="keras").params == 4800 == 3 * (32 * 16 + 32 ** 2 + 2 * 32)
    assert lc_facts("gru", 10, 16, units=32, convention="keras", reset_after=False).params == 4704
    assert lc_facts("simple_rnn", 10, 16, units=32, convention="keras").params == 1568


KERAS_CASES = [("lstm", {}), ("gru", {}), ("gru", {"reset_after": False}), ("rnn", {}),
               ("rnn", {"activation": "relu"}), ("lstm", {"use_bias": False}), ("gru", {"use_bias": False})]


@pytest.mark.parametrize("kind, extra", KERAS_CASES)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_keras_count_params_and_forward(kind, extra, return_sequences):
    """Keras' own count_params(), and its forward pass with our weights mapped into Keras' layout: kernel =
    weight_ihᵀ, recurrent_kernel = weight_hhᵀ, GRU gates reordered from (r, z, n) to Keras' (z, r, h)."""
    keras = keras_on_torch()
    features, units, length, batch = 5, 4, 6, 2
    cls = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}[kind]
    layer = cls(units, return_sequences=return_sequences, **extra)
    model = keras.Sequential([keras.Input((length, features)), layer])
    fields = {"units": units, "convention": "keras", "return_sequences": return_sequences, **extra}
    net = lc_net(kind, length, features, batch, **fields)
    assert net.analyze().layers[0].params == model.count_params()

    step = net.resolve()[0]
    from layercalc.weights import init_params
    params = init_params(step, {}, 3, np.float64, False)
    h = units

    def keras_order(rows):                           # our GRU rows r, z, n → Keras' columns z, r, h
        return np.concatenate([rows[h:2 * h], rows[:h], rows[2 * h:]]) if kind == "gru" else rows

    weights = [keras_order(params["weight_ih_l0"]).T, keras_order(params["weight_hh_l0"]).T]
    if "bias_ih_l0" in params:
        weights.append(np.stack([keras_order(params["bias_ih_l0"]), keras_order(params["bias_hh_l0"])]))
    elif "bias_l0" in params:
        weights.append(keras_order(params["bias_l0"]))
    layer.set_weights([w.astype(np.float32) for w in weights])
    x = np.random.default_rng(0).standard_normal((batch, length, features))
    expected = keras.ops.convert_to_numpy(model(x.astype(np.float32)))
    got = net.run(x=x, weights={"rnn": params}, dtype="float64")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_keras_bidirectional_count():
    keras = keras_on_torch()
    model = keras.Sequential([keras.Input((7, 16)), keras.layers.Bidirectional(keras.layers.LSTM(32))])
    facts = lc_facts("lstm", 7, 16, units=32, convention="keras", bidirectional=True, return_sequences=False)
    assert facts.params == model.count_params() == 2 * 6272
    assert list(facts.output_shape) == [1, *model.output_shape[1:]]


# ------------------------------------------------------------------------------------------------ FLOPs

def test_flops_hand_derivation():
    # per hidden unit and step: LSTM 3 sigmoids (3 each) + tanh g + c update 3 + h = o·tanh(c) 2 = 15;
    # GRU 2 sigmoids + n (multiply, add, tanh) + h = n + z·(h − n) 3 = 12 (Keras reset_after=False: 11);
    # RNN its nonlinearity 1. Bias adds: one per bias value and step.
    n_, length, i, h = 2, 10, 16, 32
    macs = {k: n_ * length * g * h * (i + h) for k, g in GATES.items()}
    assert lc_facts("lstm", length, i, n_, hidden_size=h).flops == 2 * macs["lstm"] + n_ * length * (8 + 15) * h
    assert lc_facts("gru", length, i, n_, hidden_size=h).flops == 2 * macs["gru"] + n_ * length * (6 + 12) * h
    assert lc_facts("rnn", length, i, n_, hidden_size=h).flops == 2 * macs["rnn"] + n_ * length * (2 + 1) * h
    assert lc_facts("lstm", length, i, n_, units=h, convention="keras").flops == \
        2 * macs["lstm"] + n_ * length * (4 + 15) * h
    assert lc_facts("gru", length, i, n_, units=h, convention="keras", reset_after=False).flops == \
        2 * macs["gru"] + n_ * length * (3 + 11) * h
    assert lc_facts("rnn", length, i, n_, hidden_size=h, bias=False).flops == 2 * macs["rnn"] + n_ * length * h
    # projection: p·h more MACs per step, no bias; stacked bidirectional: layers·directions times the element ops
    p = 8
    facts = lc_facts("lstm", length, i, n_, hidden_size=h, proj_size=p, num_layers=2, bidirectional=True)
    step = 4 * h * (i + p) + p * h + 4 * h * (2 * p + p) + p * h
    assert facts.macs == n_ * length * 2 * step
    assert facts.flops == 2 * facts.macs + n_ * length * 2 * 2 * (8 + 15) * h


# ------------------------------------------------------------------------------------------ explanation

def explained(kind: str, length: int, features: int, **fields) -> list[str]:
    net = lc_net(kind, length, features, **fields)
    step = net.resolve()[0]
    return explain_layer(step.layer, step.input_shapes, step.facts)


def test_explain_shows_the_substituted_formulas():
    lines = explained("lstm", 10, 16, hidden_size=32)
    assert "params = 4·(h·i + h² + 2h) = 4·(32·16 + 32² + 2·32) = 6,400" in lines
    assert any("pytorch convention" in line for line in lines)
    lines = explained("lstm", 10, 16, hidden_size=32, convention="keras")
    assert "params = 4·(h·i + h² + h) = 4·(32·16 + 32² + 32) = 6,272" in lines
    assert any("keras convention" in line for line in lines)
    assert not any("⚠" in line for line in lines)
    for kind, fields in [("lstm", {"proj_size": 3, "num_layers": 3, "bidirectional": True}),
                         ("gru", {"num_layers": 2, "convention": "keras", "reset_after": False}),
                         ("rnn", {"num_layers": 5, "bidirectional": True, "bias": False})]:
        assert not any("⚠" in line for line in explained(kind, 7, 5, hidden_size=6, **fields)), (kind, fields)


def test_notes_name_the_convention_and_the_other_count():
    notes = lc_facts("lstm", 10, 16, hidden_size=32).notes
    assert "pytorch convention" in notes[0] and "6,272" in notes[0]
    notes = lc_facts("lstm", 10, 16, hidden_size=32, convention="keras").notes
    assert "keras convention" in notes[0] and "6,400" in notes[0]
    notes = lc_facts("lstm", 10, 16, hidden_size=32, batch_first=False, return_sequences=False).notes
    assert any("[L, N, F]" in note for note in notes) and any("h_n" in note for note in notes)


def test_cli_calculator_explains(capsys):
    from layercalc.cli import main
    with pytest.raises(SystemExit) as exit_:
        main(["lstm", "--input", "10x16", "--hidden-size", "32", "--explain"])
    assert exit_.value.code in (0, None)
    assert "4·(h·i + h² + 2h) = 4·(32·16 + 32² + 2·32) = 6,400" in capsys.readouterr().out


# -------------------------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("kind, fields, shape, message", [
    ("lstm", {"hidden_size": 4, "proj_size": 4}, [5, 3], "proj_size 4 must be smaller than hidden_size 4"),
    ("lstm", {"units": 4, "proj_size": 2, "convention": "keras"}, [5, 3], "Keras' LSTM has no projection"),
    ("gru", {"hidden_size": 4, "reset_after": False}, [5, 3], "use convention: keras"),
    ("lstm", {"hidden_size": 4, "input_size": 7}, [5, 3], "input_size is 7 but the input [1, 5, 3] has 3"),
    ("rnn", {"hidden_size": 4}, [5], "needs a 3-d input [N, L, features], got 2-d [1, 5]"),
    ("rnn", {"hidden_size": 4, "nonlinearity": "sigmoid"}, [5, 3], "nonlinearity"),
    ("gru", {"hidden_size": 4, "convention": "tf"}, [5, 3], "convention"),
])
def test_refusals(kind, fields, shape, message):
    with pytest.raises(LayerCalcError, match=message.replace("[", r"\[").replace("]", r"\]")):
        layercalc.load({"input": shape, "layers": [{"type": kind, **fields}]}).analyze()


def test_memory_bound_covers_the_forward_step():
    # the executor's estimate (scratch_bytes) must bound what the forward step allocates: tracemalloc's peak
    import tracemalloc

    net = lc_net("lstm", 8, 20, 50, hidden_size=24, num_layers=2, bidirectional=True, batch_first=False)
    step = net.resolve()[0]
    x = np.random.default_rng(0).standard_normal((50, 8, 20))
    weights = {"rnn": {k: np.ascontiguousarray(v) for k, v in
                       layercalc.weights.init_params(step, {}, 0, np.float64, False).items()}}
    tracemalloc.start()
    net.run(x=x, weights=weights, dtype="float64")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    scratch, _ = step.layer.scratch_bytes(step, 8, False, True)
    assert peak <= scratch + 2 * math.prod(step.facts.output_shape) * 8 + x.nbytes


def test_a_huge_stack_is_analyzed_in_closed_form_and_refused_by_the_executor():
    from layercalc import ResourceError

    layers = 10 ** 12
    facts = lc_facts("gru", 5, 3, hidden_size=2, num_layers=layers)
    assert facts.params == 3 * (2 * 3 + 4 + 4) + (layers - 1) * 3 * (2 * 2 + 4 + 4)
    with pytest.raises(ResourceError, match="the executor runs at most 100,000"):
        lc_net("gru", 5, 3, hidden_size=2, num_layers=layers).run()


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_what_the_calculator_says_torchs_flop_counter_counts(kind):
    """The calculator's FLOPs line says what FlopCounterMode reports for the PyTorch module: measured here, 0 for
    nn.LSTM on CPU (a fused kernel it has no formula for), 2·MACs for nn.GRU and nn.RNN."""
    from layercalc.layers import parse_layer

    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](16, 32, batch_first=True)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(torch.randn(1, 10, 16))
    layer = parse_layer({"type": kind, "hidden_size": 32}, 0)
    macs = layercalc.load({"input": [10, 16], "layers": [{"type": kind, "hidden_size": 32}]}).analyze().totals.macs
    text = layer.flop_counter_text(f"{2 * macs:,}")
    if counter.get_total_flops() == 0:
        assert "counts 0 for nn.LSTM" in text
    else:
        assert counter.get_total_flops() == 2 * macs and text.startswith("torch.utils.flop_counter counts 2·MACs")
