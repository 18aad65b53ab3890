"""Sequence-model blocks (layercalc/layers/sequence.py, RMSNorm in norm.py) and tied weights, against PyTorch:
parameter counts from ``sum(p.numel() for p in module.parameters())`` (which counts a tied weight once), forward
outputs from the modules themselves, and hand derivations in the comments.
"""

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import layercalc
from layercalc import LayerCalcError
from layercalc.cli import get_app

torch = pytest.importorskip("torch")


def run_net(spec, x=None, weights=None):
    return layercalc.load(spec).run(x=x, weights=weights, dtype="float64")


# ------------------------------------------------------------------------------------------------- embedding

@settings(max_examples=15, deadline=None)
@given(vocab=st.integers(1, 50), dim=st.integers(1, 16), length=st.integers(1, 9), batch=st.integers(1, 3))
def test_embedding_matches_torch(vocab, dim, length, batch):
    module = torch.nn.Embedding(vocab, dim).double()
    spec = {"input": [length], "batch": batch,
            "layers": [{"name": "emb", "type": "embedding", "num_embeddings": vocab, "embedding_dim": dim}]}
    report = layercalc.load(spec).analyze()
    assert report.totals.params == sum(p.numel() for p in module.parameters()) == vocab * dim
    assert report.totals.macs == 0 and report.totals.flops == 0
    ids = np.random.default_rng(vocab).integers(0, vocab, size=(batch, length))
    ours = run_net(spec, x=ids.astype(np.float64), weights={"emb": {"weight": module.weight.detach().numpy()}})
    expected = module(torch.from_numpy(ids)).detach().numpy()
    assert ours.shape == (batch, length, dim) == expected.shape
    np.testing.assert_array_equal(ours, expected)


def test_embedding_keras_names_and_bad_ids():
    spec = {"input": [5], "layers": [{"type": "embedding", "input_dim": 10, "output_dim": 4}]}
    assert layercalc.load(spec).analyze().totals.params == 40           # Keras Embedding(10, 4): 10·4
    with pytest.raises(LayerCalcError, match="not a token id 0..9"):
        layercalc.load(spec).run(x=np.full((1, 5), 10.0))
    with pytest.raises(LayerCalcError, match="not a token id"):
        layercalc.load(spec).run(x=np.full((1, 5), 0.5))


def test_a_run_without_input_draws_token_ids_below_the_vocabulary():
    # the verify path: random ids below V (an embedding of 7 rows would fail on a real number)
    spec = {"input": [12], "layers": [{"type": "embedding", "num_embeddings": 7, "embedding_dim": 3}]}
    from layercalc.verify import verify
    assert verify(layercalc.load(spec)).ok


# ------------------------------------------------------------------------------------------- tied weights

class TinyLM(torch.nn.Module):
    """Token embedding, position embedding, RMSNorm, and a head tied to the token embedding (GPT-2's tie)."""

    def __init__(self, vocab, dim, length):
        super().__init__()
        self.wte = torch.nn.Embedding(vocab, dim)
        self.wpe = torch.nn.Parameter(torch.randn(length, dim))
        self.norm = torch.nn.RMSNorm(dim, eps=1e-6)
        self.head = torch.nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.wte.weight

    def forward(self, ids):
        return self.head(self.norm(self.wte(ids) + self.wpe))


def tiny_spec(vocab, dim, length):
    return {"input": [length], "layers": [
        {"name": "wte", "type": "embedding", "num_embeddings": vocab, "embedding_dim": dim},
        {"name": "wpe", "type": "parameter", "shape": [length, dim]},
        {"name": "add", "type": "add", "inputs": ["wte", "wpe"]},
        {"name": "norm", "type": "rmsnorm", "eps": 1e-6},
        {"name": "head", "type": "linear", "out_features": vocab, "bias": False, "tied_to": "wte"}]}


def test_tied_weights_are_counted_once_and_shared_when_run():
    vocab, dim, length = 50, 8, 6
    model = TinyLM(vocab, dim, length).double()
    # torch's parameters() yields the tied weight once: V·d + L·d + d = 400 + 48 + 8 = 456
    assert sum(p.numel() for p in model.parameters()) == vocab * dim + length * dim + dim == 456
    report = layercalc.load(tiny_spec(vocab, dim, length)).analyze()
    assert report.totals.params == 456
    head = report.layer("head")
    assert head.params == 0 and any("tied to 'wte' (weight): 400 counted there" in note for note in head.notes)
    assert head.macs == length * dim * vocab                            # the head still multiplies: L·d·V
    ids = np.random.default_rng(0).integers(0, vocab, size=(1, length))
    weights = {"wte": {"weight": model.wte.weight.detach().numpy()}, "wpe": {"weight": model.wpe.detach().numpy()},
               "norm": {"weight": model.norm.weight.detach().numpy()}}
    ours = run_net(tiny_spec(vocab, dim, length), x=ids.astype(np.float64), weights=weights)
    np.testing.assert_allclose(ours, model(torch.from_numpy(ids)).detach().numpy(), rtol=1e-10)


@pytest.mark.parametrize("change, fragment", [
    ({"tied_to": "nothere"}, "'nothere' is not a layer of the network"),
    ({"tied_to": "head"}, "is the layer itself"),
    ({"out_features": 49}, "its weight of shape [49, 8] cannot be the one of 'wte', which has weight of shape [50, 8]"),
    ({"bias": True}, "its bias of shape [50] cannot be the one of 'wte', which has no 'bias'"),
])
def test_a_tie_that_cannot_hold_is_refused(change, fragment):
    spec = tiny_spec(50, 8, 6)
    spec["layers"][-1] = {**spec["layers"][-1], **change}
    with pytest.raises(LayerCalcError) as info:
        layercalc.load(spec).analyze()
    assert fragment in str(info.value) and "layers[4] 'head' (linear): field 'tied_to'" in str(info.value)


def test_weights_for_a_tied_layer_are_refused_unless_they_are_the_owners():
    with pytest.raises(LayerCalcError, match="its parameters are those of 'wte' \\(tied_to\\), but 'head.weight' "
                                             "is given without 'wte.weight': give them under 'wte' only"):
        run_net(tiny_spec(10, 4, 3), weights={"head": {"weight": np.zeros((10, 4))}})
    with pytest.raises(LayerCalcError, match="'head.weight' is not equal to 'wte.weight'"):
        run_net(tiny_spec(10, 4, 3), weights={"head": {"weight": np.zeros((10, 4))},
                                              "wte": {"weight": np.ones((10, 4))}})
    # a state_dict lists a shared tensor under both names: the same values, so the copy is dropped
    table = np.arange(40.0).reshape(10, 4)
    both = run_net(tiny_spec(10, 4, 3), weights={"head": {"weight": table}, "wte": {"weight": table}})
    owner_only = run_net(tiny_spec(10, 4, 3), weights={"wte": {"weight": table}})
    np.testing.assert_array_equal(both, owner_only)


# --------------------------------------------------------------------------------------------- parameter

def test_class_token_and_position_embedding_as_vit_writes_them():
    # ViT-B/16's token prefix: cls [1, 768] concatenated before 196 patches, plus a [197, 768] position embedding:
    # 768 + 197·768 = 152,064 parameters, and the sum adds 197·768 per example
    spec = {"input": [196, 768], "batch": 2, "layers": [
        {"name": "cls", "type": "parameter", "shape": [1, 768]},
        {"name": "tokens", "type": "concat", "dim": 1, "inputs": ["cls", "input"]},
        {"name": "pos", "type": "parameter", "shape": [197, 768]},
        {"name": "add", "type": "add", "inputs": ["tokens", "pos"]}]}
    report = layercalc.load(spec).analyze()
    assert report.totals.params == 768 + 197 * 768 == 152_064
    assert report.layer("tokens").output_shape == [2, 197, 768]
    assert report.layer("add").flops == 2 * 197 * 768
    from layercalc.verify import verify
    assert verify(layercalc.load(spec)).ok


def test_layer_scale_multiplies_by_a_learnable_vector():
    # ConvNeXt's layer scale: γ of shape [C, 1, 1] times [N, C, H, W]: C params, C·H·W multiplies per example
    spec = {"input": [96, 7, 7], "layers": [{"name": "gamma", "type": "parameter", "shape": [96, 1, 1], "init": "ones"},
                                            {"name": "scaled", "type": "mul", "inputs": ["input", "gamma"]}]}
    report = layercalc.load(spec).analyze()
    assert report.totals.params == 96 and report.layer("scaled").flops == 96 * 7 * 7
    x = np.random.default_rng(1).standard_normal((1, 96, 7, 7))
    np.testing.assert_allclose(run_net(spec, x=x), x)                       # γ = 1


def test_parameters_load_as_pytorch_saves_them(tmp_path):
    """torch saves an nn.Parameter attribute under its own name, with the shape it was made with: ViT's
    ``class_token`` [1, 1, 768] (a key without a dot: the model's own attribute) and ``encoder.pos_embedding``
    [1, 197, 768]. ``stored_shape`` (shape with leading 1s) takes them as they are; the counts do not change, and
    the run adds exactly those values."""
    class Prefix(torch.nn.Module):                    # torchvision's ViT before its encoder blocks
        def __init__(self):
            super().__init__()
            self.class_token = torch.nn.Parameter(torch.randn(1, 1, 8, dtype=torch.float64))
            self.encoder = torch.nn.Module()
            self.encoder.pos_embedding = torch.nn.Parameter(torch.randn(1, 5, 8, dtype=torch.float64))

        def forward(self, x):
            tokens = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
            return tokens + self.encoder.pos_embedding

    module = Prefix()
    spec = {"input": [4, 8], "batch": 2, "layers": [
        {"name": "class_token", "type": "parameter", "shape": [1, 8], "stored_shape": [1, 1, 8]},
        {"name": "tokens", "type": "concat", "dim": 1, "inputs": ["class_token", "input"]},
        {"name": "encoder.pos_embedding", "type": "parameter", "shape": [5, 8], "stored_shape": [1, 5, 8]},
        {"name": "add", "type": "add", "inputs": ["tokens", "encoder.pos_embedding"]}]}
    report = layercalc.load(spec).analyze()
    assert report.totals.params == sum(p.numel() for p in module.parameters()) == 8 + 5 * 8
    assert report.layer("class_token").output_shape == [2, 1, 8]
    x = np.random.default_rng(0).standard_normal((2, 4, 8))
    expected = module(torch.from_numpy(x)).detach().numpy()
    state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    assert sorted(state) == ["class_token", "encoder.pos_embedding"]
    np.savez(tmp_path / "w.npz", **state)
    for weights in (str(tmp_path / "w.npz"), state):
        np.testing.assert_allclose(run_net(spec, x=x, weights=weights), expected, rtol=1e-12)
    # the shape is still checked: the [5, 8] table saved as [5, 8] is not the declared stored shape
    with pytest.raises(LayerCalcError, match=r"'encoder\.pos_embedding\.weight' has shape \[5, 8\], expected "
                                             r"\[1, 5, 8\] \(stored_shape\)"):
        run_net(spec, x=x, weights={**state, "encoder.pos_embedding": state["encoder.pos_embedding"][0]})


def test_a_parameter_layer_key_is_its_own_name(tmp_path):
    """``"<layer>.<param>"`` keys have a dot; a parameter of the model itself (torch: ``self.offset =
    nn.Parameter(...)``) is saved under its bare name, which names the parameter layer: read as its weight, from an
    .npz and from a mapping. A bare key naming no layer is still refused."""
    spec = {"input": [3], "layers": [{"name": "offset", "type": "parameter", "shape": [3]},
                                     {"name": "add", "type": "add", "inputs": ["input", "offset"]}]}
    offset = np.array([1.0, -2.0, 0.5])
    np.savez(tmp_path / "w.npz", offset=offset)
    x = np.array([[0.25, 0.5, 0.75]])
    for weights in (str(tmp_path / "w.npz"), {"offset": offset}):
        np.testing.assert_array_equal(run_net(spec, x=x, weights=weights), x + offset)
    np.savez(tmp_path / "other.npz", shift=offset)
    with pytest.raises(LayerCalcError, match=r"key 'shift' is not '<layer_name>\.<param>'"):
        run_net(spec, x=x, weights=str(tmp_path / "other.npz"))


@pytest.mark.parametrize("stored, why", [
    ([2, 5, 8], "must be shape [5, 8] with leading 1s"), ([5, 8, 1], "must be shape [5, 8] with leading 1s"),
    ([8], "must be shape [5, 8] with leading 1s")])
def test_stored_shape_is_shape_with_leading_ones(stored, why):
    with pytest.raises(LayerCalcError, match=rf"stored_shape {re.escape(str(stored))} {re.escape(why)}"):
        layercalc.load({"input": [3], "layers": [{"type": "parameter", "shape": [5, 8], "stored_shape": stored}]})


def test_parameter_starts_at_a_constant():
    """ConvNeXt's layer scale starts at 1e-6 (torch.ones(dim, 1, 1) * layer_scale): ``init: 1.0e-6`` is what a run
    without weights uses; a value that is not a finite number is refused naming the field."""
    spec = {"input": [4, 3, 3], "layers": [{"name": "gamma", "type": "parameter", "shape": [4, 1, 1], "init": 1e-6},
                                           {"name": "scaled", "type": "mul", "inputs": ["gamma", "input"]}]}
    x = np.random.default_rng(2).standard_normal((1, 4, 3, 3))
    np.testing.assert_array_equal(run_net(spec, x=x), 1e-6 * x)
    for bad in [float("inf"), float("nan"), "1e-6", True, "constant"]:
        spec["layers"][0]["init"] = bad
        with pytest.raises(LayerCalcError, match=r"layers\[0\] 'gamma' \(parameter\): field 'init'"):
            layercalc.load(spec)


# ----------------------------------------------------------------------------------------------- RMSNorm

@settings(max_examples=15, deadline=None)
@given(dims=st.lists(st.integers(1, 6), min_size=2, max_size=4), trailing=st.integers(1, 2),
       affine=st.booleans())
def test_rmsnorm_matches_torch(dims, trailing, affine):
    trailing = min(trailing, len(dims) - 1)
    shape = dims[-trailing:]
    module = torch.nn.RMSNorm(shape, eps=1e-6, elementwise_affine=affine).double()
    if affine:
        with torch.no_grad():
            module.weight.uniform_(0.5, 1.5)
    spec = {"input": dims[1:], "batch": dims[0], "layers": [
        {"name": "n", "type": "rmsnorm", "normalized_shape": shape, "eps": 1e-6, "elementwise_affine": affine}]}
    report = layercalc.load(spec).analyze()
    assert report.totals.params == sum(p.numel() for p in module.parameters())
    x = np.random.default_rng(len(dims)).standard_normal(dims)
    weights = {"n": {"weight": module.weight.detach().numpy()}} if affine else None
    np.testing.assert_allclose(run_net(spec, x=x, weights=weights), module(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-10, atol=1e-12)
    # FLOPs: 3 per element (square, add, multiply by 1/rms) + 1 affine, + 3 per group (divide, add eps, rsqrt)
    elements, groups = int(np.prod(dims)), int(np.prod(dims)) // int(np.prod(shape))
    assert report.totals.flops == elements * (3 + affine) + groups * 3


# ------------------------------------------------------------------------------------------- rotary (RoPE)

def rope_reference(x, base, rotary_dim):
    """GPT-NeoX / Llama rotary embedding in torch (Hugging Face's rotate_half and apply_rotary_pos_emb)."""
    length = x.shape[-2]
    inv_freq = 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim))
    freqs = torch.outer(torch.arange(length, dtype=torch.float64), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    part, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    x1, x2 = part[..., :rotary_dim // 2], part[..., rotary_dim // 2:]
    rotated = part * emb.cos() + torch.cat([-x2, x1], dim=-1) * emb.sin()
    return torch.cat([rotated, rest], dim=-1)


@pytest.mark.parametrize("shape, rotary_dim, base", [((2, 4, 5, 8), None, 10000.0), ((1, 7, 16), 8, 500.0),
                                                     ((3, 2, 6, 4), 2, 10000.0)])
def test_rotary_embedding_matches_the_reference(shape, rotary_dim, base):
    spec = {"input": list(shape[1:]), "batch": shape[0],
            "layers": [{"type": "rotary_embedding", "base": base, **({"rotary_dim": rotary_dim} if rotary_dim else {})}]}
    report = layercalc.load(spec).analyze()
    d = rotary_dim or shape[-1]
    assert report.totals.params == 0 and report.totals.flops == 3 * int(np.prod(shape[:-1])) * d
    x = np.random.default_rng(2).standard_normal(shape)
    np.testing.assert_allclose(run_net(spec, x=x), rope_reference(torch.from_numpy(x), base, d).numpy(),
                               rtol=1e-10, atol=1e-12)


def test_rotary_embedding_refuses_an_odd_dim():
    with pytest.raises(LayerCalcError, match="rotary_dim 5 must be even"):
        layercalc.load({"input": [4, 8], "layers": [{"type": "rope", "rotary_dim": 5}]}).analyze()


# ------------------------------------------------------------------------------------------ command line

def test_calculators_and_explanations():
    runner = CliRunner()
    result = runner.invoke(get_app(), ["embedding", "-i", "1024", "--num-embeddings", "50257", "--embedding-dim",
                                       "768", "--explain"])
    assert result.exit_code == 0, result.stderr
    # GPT-2's token embedding: 50,257·768 = 38,597,376
    assert "params = num_embeddings·embedding_dim = 50257·768 = 38,597,376" in result.stdout
    result = runner.invoke(get_app(), ["summary", "-", "--explain"], input=json.dumps(tiny_spec(50, 8, 6)))
    assert result.exit_code == 0, result.stderr
    assert "[1] wpe (parameter):  → [1, 6, 8]" in result.stdout


def test_position_embedding_is_an_embedding_read_at_the_positions():
    # GPT-2's wpe on 10 tokens: rows 0..9 of the 1,024 × 768 table for every example; params 1,024·768 = 786,432
    table = torch.nn.Embedding(1024, 8).double()
    spec = {"input": [10], "batch": 2, "layers": [
        {"name": "wpe", "type": "position_embedding", "num_embeddings": 1024, "embedding_dim": 8}]}
    report = layercalc.load(spec).analyze()
    assert report.totals.params == sum(p.numel() for p in table.parameters()) == 1024 * 8
    ids = np.random.default_rng(3).integers(0, 50000, size=(2, 10)).astype(np.float64)   # any ids: positions count
    ours = run_net(spec, x=ids, weights={"wpe": {"weight": table.weight.detach().numpy()}})
    expected = table(torch.arange(10)).detach().numpy()
    np.testing.assert_array_equal(ours, np.broadcast_to(expected, (2, 10, 8)))
    with pytest.raises(LayerCalcError, match="sequence of 1025 positions .* longer than the 1024 positions"):
        layercalc.load({**spec, "input": [1025]}).analyze()
