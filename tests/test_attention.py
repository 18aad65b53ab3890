"""The attention family (layercalc/layers/attention.py) against PyTorch and Keras.

- params: ``sum(p.numel() for p in module.parameters())`` of ``nn.MultiheadAttention`` and of a hand-written
  Llama-style reference (separate q/k/v/o ``nn.Linear`` layers, k/v heads repeated with ``repeat_interleave``);
  Keras' ``MultiHeadAttention`` by its formula (EinsumDense kernels and biases), written out below, and by
  ``count_params`` when keras is installed;
- MACs: ``FlopCounterMode`` on explicit-matmul references (``torch.matmul`` for QKᵀ and A·V, not the SDPA or
  MultiheadAttention fast paths, which it counts as 0 on CPU) is 2·MACs;
- forward steps: ``nn.MultiheadAttention`` (its own state_dict), ``F.scaled_dot_product_attention`` (causal masks,
  ``enable_gqa``), ``torch.matmul``, and the Llama-style reference for grouped-query attention.
"""

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle_helpers import keras_on_torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count
from typer.testing import CliRunner

import layercalc
from layercalc import LayerCalcError, kernels
from layercalc.executor import Env
from layercalc.graph import Step
from layercalc.layers import LAYER_TYPES, parse_layer
from layercalc.layers.attention import SCALE_FLOPS, SOFTMAX_FLOPS, causal_pairs, torch_state_dict
from layercalc.rules import Context, Tensor

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:keras")     # its NumPy conversions
F = torch.nn.functional


def examples(count: int) -> settings:
    return settings(max_examples=count, deadline=None)


def resolve(fields: dict, shapes: list[tuple[int, ...]]):
    """(layer, step) of one layer on tensors of ``shapes`` (batch included): multi-input layers without a network."""
    layer = parse_layer(fields, 0)
    facts = layer.infer([Tensor(tuple(s)) for s in shapes], Context(fields["type"], False))
    return layer, Step(0, "layer", layer, [f"in{i}" for i in range(len(shapes))], [tuple(s) for s in shapes], facts)


def run_step(layer, step, arrays: list[np.ndarray], params: dict) -> tuple[np.ndarray, int]:
    """The layer's forward step on ``arrays`` with ``params``: (output, multiply-adds it performed)."""
    specs = layer.param_specs(step, False)
    assert list(specs) == list(params), (list(specs), list(params))          # names and order
    for name, spec in specs.items():
        assert tuple(params[name].shape) == spec.shape, (name, params[name].shape, spec)
    env = Env(False, kernels.Workspace(1))
    env.overwritable = [False] * len(arrays)
    out = layer.forward(step, arrays, params, env)
    return out, env.counter.macs


def flop_counter(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# -------------------------------------------------------------------------------- the Llama-style reference

class Reference(torch.nn.Module):
    """Multi-head attention as Llama writes it: q/k/v/o linear layers, k/v heads repeated for grouped-query
    attention; ``explicit`` computes QKᵀ and A·V with torch.matmul (what FlopCounterMode counts on CPU), else with
    F.scaled_dot_product_attention."""

    def __init__(self, e, heads, kv, dk, dv, kdim, vdim, out, bias):
        super().__init__()
        self.heads, self.kv, self.dk, self.dv = heads, kv, dk, dv
        self.q_proj = torch.nn.Linear(e, heads * dk, bias=bias)
        self.k_proj = torch.nn.Linear(kdim, kv * dk, bias=bias)
        self.v_proj = torch.nn.Linear(vdim, kv * dv, bias=bias)
        self.out_proj = torch.nn.Linear(heads * dv, out, bias=bias)

    def forward(self, q, k, v, causal=False, explicit=True):
        n, lq, lk = q.shape[0], q.shape[1], k.shape[1]
        group = self.heads // self.kv
        qh = self.q_proj(q).view(n, lq, self.heads, self.dk).transpose(1, 2)
        kh = self.k_proj(k).view(n, lk, self.kv, self.dk).transpose(1, 2).repeat_interleave(group, dim=1)
        vh = self.v_proj(v).view(n, lk, self.kv, self.dv).transpose(1, 2).repeat_interleave(group, dim=1)
        if explicit:
            scores = torch.matmul(qh, kh.transpose(-1, -2)) / math.sqrt(self.dk)
            if causal:
                scores = scores.masked_fill(torch.ones(lq, lk, dtype=torch.bool).triu(1), float("-inf"))
            o = torch.matmul(scores.softmax(-1), vh)
        else:
            o = F.scaled_dot_product_attention(qh, kh, vh, is_causal=causal)
        return self.out_proj(o.transpose(1, 2).reshape(n, lq, self.heads * self.dv))

    def ours(self, specs) -> dict:
        """Its weights under our parameter names (nn.MultiheadAttention's when the shapes allow them)."""
        sd = {k: v.detach().numpy() for k, v in self.state_dict().items()}
        params = {}
        for name in specs:
            if name == "in_proj_weight":
                params[name] = np.concatenate([sd[f"{p}_proj.weight"] for p in "qkv"])
            elif name == "in_proj_bias":
                params[name] = np.concatenate([sd[f"{p}_proj.bias"] for p in "qkv"])
            else:
                params[name] = sd[name.replace("_weight", ".weight").replace("_bias", ".bias")]
        return params


@st.composite
def attention_cases(draw):
    """A multi-head attention configuration, its input shapes and the layercalc fields for it."""
    kv = draw(st.integers(1, 3))
    heads = kv * draw(st.integers(1, 3))
    dk = draw(st.integers(1, 6))
    inputs = draw(st.integers(1, 3))
    standard = draw(st.booleans())                        # E = heads·head_dim, output E, d_v = d_k
    e = heads * dk if standard else draw(st.integers(1, 12))
    dv = dk if standard else draw(st.integers(1, 6))
    out = e if standard else draw(st.integers(1, 12))
    kdim = e if inputs == 1 else draw(st.integers(1, 12))
    vdim = kdim if inputs < 3 else draw(st.integers(1, 12))
    batch, lq = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    lk = lq if inputs == 1 else draw(st.integers(1, 6))
    bias, causal = draw(st.booleans()), draw(st.booleans())
    fields = {"type": "multi_head_attention", "num_heads": heads, "bias": bias, "causal": causal}
    if kv != heads or draw(st.booleans()):
        fields["num_kv_heads"] = kv
    if not standard or draw(st.booleans()):
        fields["head_dim"] = dk
    if dv != dk:
        fields["value_dim"] = dv
    if out != e:
        fields["output_dim"] = out
    shapes = [(batch, lq, e), (batch, lk, kdim), (batch, lk, vdim)][:inputs]
    config = dict(e=e, heads=heads, kv=kv, dk=dk, dv=dv, kdim=kdim, vdim=vdim, out=out, bias=bias)
    return fields, shapes, config, causal


# ------------------------------------------------------------------------------------- multi-head attention

@examples(60)
@given(attention_cases())
def test_multi_head_attention_matches_the_llama_style_reference(case):
    fields, shapes, config, causal = case
    layer, step = resolve(fields, shapes)
    facts = step.facts
    torch.manual_seed(len(shapes))
    ref = Reference(**config).double()
    assert facts.params == n_params(ref)
    xs = [torch.randn(*s, dtype=torch.float64) for s in shapes]
    q, k, v = xs[0], xs[min(1, len(xs) - 1)], xs[-1]
    with torch.no_grad():
        assert flop_counter(lambda: ref(q, k, v, causal)) == 2 * facts.macs       # explicit matmuls
        expected = ref(q, k, v, causal, explicit=False).numpy()                   # Llama: repeat_kv + SDPA
    ours, performed = run_step(layer, step, [x.numpy() for x in xs], ref.ours(layer.param_specs(step, False)))
    assert performed == facts.macs
    assert ours.shape == expected.shape == tuple(facts.output_shape)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


@st.composite
def torch_mha_cases(draw):
    heads = draw(st.integers(1, 4))
    e = heads * draw(st.integers(1, 5))
    inputs = draw(st.integers(1, 3))
    kdim = e if inputs == 1 or draw(st.booleans()) else draw(st.integers(1, 10))
    vdim = kdim if inputs < 3 else (e if draw(st.booleans()) else draw(st.integers(1, 10)))
    extras = draw(st.sampled_from([(False, False), (True, False), (False, True), (True, True)]))
    causal = draw(st.booleans()) and extras == (False, False)
    batch, lq = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    lk = lq if inputs == 1 else draw(st.integers(1, 6))
    return dict(e=e, heads=heads, kdim=kdim, vdim=vdim, bias=draw(st.booleans()), add_bias_kv=extras[0],
                add_zero_attn=extras[1], batch_first=draw(st.booleans()), causal=causal, inputs=inputs, batch=batch,
                lq=lq, lk=lk)


@examples(60)
@given(torch_mha_cases())
def test_multi_head_attention_matches_nn_multihead_attention(c):
    torch.manual_seed(c["e"])
    module = torch.nn.MultiheadAttention(c["e"], c["heads"], bias=c["bias"], add_bias_kv=c["add_bias_kv"],
                                         add_zero_attn=c["add_zero_attn"], kdim=c["kdim"], vdim=c["vdim"],
                                         batch_first=c["batch_first"]).double().eval()
    order = (lambda n_, length, f: (n_, length, f)) if c["batch_first"] else (lambda n_, length, f: (length, n_, f))
    shapes = [order(c["batch"], c["lq"], c["e"]), order(c["batch"], c["lk"], c["kdim"]),
              order(c["batch"], c["lk"], c["vdim"])][:c["inputs"]]
    fields = {"type": "multihead_attention", "embed_dim": c["e"], "num_heads": c["heads"], "bias": c["bias"],
              "add_bias_kv": c["add_bias_kv"], "add_zero_attn": c["add_zero_attn"], "batch_first": c["batch_first"],
              "causal": c["causal"]}
    if c["inputs"] > 1:
        fields.update(kdim=c["kdim"], vdim=c["vdim"])
    layer, step = resolve(fields, shapes)
    facts = step.facts
    assert facts.params == n_params(module)
    xs = [torch.randn(*s, dtype=torch.float64) for s in shapes]
    q, k, v = xs[0], xs[min(1, len(xs) - 1)], xs[-1]
    mask = torch.ones(c["lq"], c["lk"], dtype=torch.bool).triu(1) if c["causal"] else None
    # with gradients on, nn.MultiheadAttention takes its math path (linear layers and bmm), which FlopCounterMode
    # counts in full; with need_weights=False or without gradients in eval mode it would count 0 on CPU
    total = flop_counter(lambda: module(q, k, v, attn_mask=mask, need_weights=True))
    assert total == 2 * facts.macs
    with torch.no_grad():
        expected = module(q, k, v, attn_mask=mask, need_weights=False)[0].numpy()
    # the state_dict loads as is, out_proj.weight/bias spelled out_proj_weight/bias (keys are split at the last dot)
    ours, performed = run_step(layer, step, [x.numpy() for x in xs], torch_state_dict(module.state_dict()))
    assert performed == facts.macs
    assert ours.shape == expected.shape == tuple(facts.output_shape)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_the_interview_numbers():
    # PyTorch MHA, d = 512, 8 heads: in_proj 3·512² + 3·512 = 787,968, out_proj 512² + 512 = 262,656:
    # 4·512² + 4·512 = 1,050,624
    facts = layercalc.load({"input": [10, 512], "layers": [
        {"type": "multi_head_attention", "embed_dim": 512, "num_heads": 8}]}).resolve()[0].facts
    assert facts.params == 4 * 512 ** 2 + 4 * 512 == 1_050_624
    assert facts.params == n_params(torch.nn.MultiheadAttention(512, 8))
    # MACs: four projections 10·512·512 = 2,621,440 each, QKᵀ and A·V 8·10·10·64 = 51,200 each: 10,588,160;
    # FLOPs: 2·10,588,160 + bias adds (3 + 1)·10·512 = 20,480 + 800 scores · (1 scale + 5 softmax) = 21,201,600
    assert facts.macs == 4 * 2_621_440 + 2 * 51_200 == 10_588_160
    assert facts.flops == 2 * 10_588_160 + 20_480 + 800 + 5 * 800 == 21_201_600


def keras_mha_params(d: int, heads: int, key_dim: int, value_dim=None, output=None, kdim=None, vdim=None,
                     use_bias: bool = True) -> int:
    """Keras MultiHeadAttention's weights: query/key/value EinsumDense kernels [in, heads, key_dim] (value:
    value_dim) with biases [heads, key_dim], and the output kernel [heads, value_dim, out] with bias [out]."""
    value_dim = value_dim or key_dim
    output = output or d
    kdim, vdim = kdim or d, vdim or kdim or d
    b = 1 if use_bias else 0
    query = d * heads * key_dim + b * heads * key_dim
    key = kdim * heads * key_dim + b * heads * key_dim
    value = vdim * heads * value_dim + b * heads * value_dim
    return query + key + value + heads * value_dim * output + b * output


@pytest.mark.parametrize("fields, shapes, keras_args", [
    ({"num_heads": 8, "key_dim": 64}, [[10, 512]], dict(d=512, heads=8, key_dim=64)),
    ({"num_heads": 4, "key_dim": 16, "value_dim": 24, "output_shape": 40}, [[7, 32], [5, 12], [5, 20]],
     dict(d=32, heads=4, key_dim=16, value_dim=24, output=40, kdim=12, vdim=20)),
    ({"num_heads": 2, "key_dim": 3, "use_bias": False}, [[4, 10], [6, 7]],
     dict(d=10, heads=2, key_dim=3, kdim=7, use_bias=False)),
])
def test_keras_names_and_formula(fields, shapes, keras_args):
    layer = {"type": "multi_head_attention", **fields}
    facts = resolve(layer, [(1, *s) for s in shapes])[1].facts
    assert facts.params == keras_mha_params(**keras_args)
    assert keras_mha_params(512, 8, 64) == 1_050_624          # the d = 512, 8 heads, key_dim 64 figure


def test_keras_count_params_and_forward():
    keras = keras_on_torch()
    # Keras calls mha(query, value, key); layercalc takes (query, key, value) as PyTorch does
    mha = keras.layers.MultiHeadAttention(num_heads=3, key_dim=4, value_dim=5, output_shape=6)
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 7, 8)), rng.standard_normal((2, 5, 9)), rng.standard_normal((2, 5, 10))
    expected = keras.ops.convert_to_numpy(mha(q.astype("float32"), v.astype("float32"), key=k.astype("float32")))
    fields = {"type": "multi_head_attention", "num_heads": 3, "key_dim": 4, "value_dim": 5, "output_shape": 6}
    layer, step = resolve(fields, [q.shape, k.shape, v.shape])
    assert step.facts.params == mha.count_params() == keras_mha_params(8, 3, 4, 5, 6, kdim=9, vdim=10)
    weights = {w.path.split("/", 1)[1]: keras.ops.convert_to_numpy(w.value).astype(np.float64) for w in mha.weights}
    params = {}
    for ours, theirs in (("q", "query"), ("k", "key"), ("v", "value")):
        kernel = weights[f"{theirs}/kernel"]                            # [in, heads, head_dim]
        params[f"{ours}_proj_weight"] = kernel.reshape(kernel.shape[0], -1).T
        params[f"{ours}_proj_bias"] = weights[f"{theirs}/bias"].reshape(-1)
    params["out_proj_weight"] = weights["attention_output/kernel"].reshape(-1, 6).T   # [heads, value_dim, out]
    params["out_proj_bias"] = weights["attention_output/bias"]
    ours, _ = run_step(layer, step, [q, k, v], params)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["MultiHeadAttention", "GroupQueryAttention"])
def test_keras_grouped_query_names(kind):
    keras = keras_on_torch()
    if kind == "MultiHeadAttention":
        layer = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)
        fields = {"num_heads": 4, "key_dim": 8}
    else:
        layer = keras.layers.GroupQueryAttention(head_dim=8, num_query_heads=4, num_key_value_heads=2)
        fields = {"num_query_heads": 4, "num_key_value_heads": 2, "head_dim": 8}
    x = np.zeros((1, 6, 20), dtype="float32")
    layer(x, x)
    facts = resolve({"type": "multi_head_attention", **fields}, [(1, 6, 20)])[1].facts
    assert facts.params == layer.count_params()


def test_published_llama_3_8b_attention():
    # Llama-3-8B: h = 4096, 32 heads of 128, 8 key/value heads, no bias: q, o 4096², k, v 4096·1024 per layer;
    # the published total 8,030,261,248 = 2·V·h + L·(2h² + 2h·kv·hd + 3h·I + 2h) + h (V 128,256, L 32, I 14,336)
    fields = {"type": "multi_head_attention", "num_heads": 32, "num_kv_heads": 8, "bias": False}
    attention = resolve(fields, [(1, 16, 4096)])[1].facts.params
    assert attention == 2 * 4096 ** 2 + 2 * 4096 * 8 * 128 == 41_943_040
    assert 2 * 128_256 * 4096 + 32 * (attention + 3 * 4096 * 14_336 + 2 * 4096) + 4096 == 8_030_261_248


def test_gpt2_block_params_are_12d2_plus_13d():
    # a GPT-2 block: ln_1, attn (c_attn 3d² + 3d, c_proj d² + d), ln_2, mlp (8d² + 5d): 12·d² + 13·d (the shared
    # reference's GPT-2 formula; GPT-2 small, d = 768: 7,087,872 per block)
    d = 768
    net = layercalc.load({"input": [8, d], "layers": [
        {"name": "ln1", "type": "layernorm"},
        {"name": "attn", "type": "multi_head_attention", "num_heads": 12, "causal": True},
        {"name": "res1", "type": "add", "inputs": ["input", "attn"]},
        {"name": "ln2", "type": "layernorm"},
        {"name": "fc", "type": "linear", "out_features": 4 * d},
        {"name": "act", "type": "gelu", "approximate": "tanh"},
        {"name": "proj", "type": "linear", "out_features": d},
        {"name": "res2", "type": "add", "inputs": ["res1", "proj"]}]})
    assert net.analyze().totals.params == 12 * d ** 2 + 13 * d == 7_087_872


def test_causal_note_counts_the_unmasked_scores():
    # L = 6 self-attention, 2 heads of 4, batch 3: 6·7/2 = 21 of 36 scores per head are unmasked
    layer, step = resolve({"type": "multi_head_attention", "num_heads": 2, "causal": True}, [(3, 6, 8)])
    kept = int(torch.ones(6, 6).tril().sum()) * 3 * 2
    assert kept == 3 * 2 * causal_pairs(6, 6) == 126
    (note,) = step.facts.notes
    assert f"only {kept:,} are unmasked" in note and f"would be {kept * 8:,} MACs instead of {216 * 8:,}" in note
    # the full count is what FlopCounterMode counts for the masked explicit reference
    ref = Reference(8, 2, 2, 4, 4, 8, 8, 8, True)
    x = torch.randn(3, 6, 8)
    with torch.no_grad():
        assert flop_counter(lambda: ref(x, x, x, causal=True)) == 2 * step.facts.macs


@pytest.mark.parametrize("lq, lk", [(1, 1), (4, 4), (3, 7), (7, 3), (1, 5), (5, 1)])
def test_causal_pairs_is_pytorchs_top_left_mask(lq, lk):
    assert causal_pairs(lq, lk) == int(torch.ones(lq, lk, dtype=torch.bool).tril().sum())


def test_run_a_network_with_a_torch_state_dict_file(tmp_path):
    # self-attention in a network, weights saved from nn.MultiheadAttention's state_dict as '<layer>.<param>'
    torch.manual_seed(3)
    module = torch.nn.MultiheadAttention(12, 3, batch_first=True).double().eval()
    path = tmp_path / "w.npz"
    np.savez(path, **{f"attn.{k}": v for k, v in torch_state_dict(module.state_dict()).items()})
    net = layercalc.load({"input": [5, 12], "batch": 2, "layers": [
        {"name": "attn", "type": "multi_head_attention", "num_heads": 3, "causal": True}]})
    x = np.random.default_rng(1).standard_normal((2, 5, 12))
    ours = net.run(x=x, weights=str(path), dtype="float64")
    with torch.no_grad():
        mask = torch.ones(5, 5, dtype=torch.bool).triu(1)
        expected = module(*[torch.from_numpy(x)] * 3, attn_mask=mask, need_weights=False)[0].numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)
    from layercalc.verify import verify
    assert verify(net).ok


def test_cross_attention_in_a_network():
    # query from the input, key = value from a linear layer: a decoder's cross-attention over an "encoder"
    net = layercalc.load({"input": [6, 16], "layers": [
        {"name": "memory", "type": "linear", "out_features": 10, "inputs": "input"},
        {"name": "cross", "type": "multi_head_attention", "num_heads": 4, "inputs": ["input", "memory"]}]})
    entry = net.analyze().layers[1]
    # q and out 16 → 16: (16·16 + 16)·2; k and v from the memory's 10 features (kdim = vdim = 10): (10·16 + 16)·2
    assert entry.params == (16 * 16 + 16) * 2 + (10 * 16 + 16) * 2 == 896
    assert entry.output_shape == [1, 6, 16]
    from layercalc.verify import verify
    assert verify(net).ok


@pytest.mark.parametrize("fields, shapes, message", [
    ({"num_heads": 3}, [(1, 5, 8)], "embed_dim 8 is not divisible by num_heads 3"),
    ({"num_heads": 2, "embed_dim": 6}, [(1, 5, 8)], "embed_dim is 6 but the query [1, 5, 8] has 8 features"),
    ({"num_heads": 2, "kdim": 4}, [(1, 5, 8)], "kdim is 4 but the key [1, 5, 8] has 8 features (one input: "
                                               "self-attention"),
    ({"num_heads": 2}, [(1, 5, 8), (1, 4, 6), (1, 3, 6)], "the key [1, 4, 6] has 4 positions and the value"),
    ({"num_heads": 2}, [(1, 5, 8), (2, 4, 8)], "the inputs' batch sizes differ"),
    ({"num_heads": 2}, [(1, 4, 4, 8)], "needs 3-d inputs [N, L, E]; the query is 4-d"),
])
def test_multi_head_attention_refusals(fields, shapes, message):
    with pytest.raises(LayerCalcError, match=re.escape(message)):
        resolve({"type": "multi_head_attention", **fields}, shapes)


@pytest.mark.parametrize("fields, message", [
    ({"num_heads": 8, "num_kv_heads": 3}, "num_kv_heads 3 must divide num_heads 8"),
    ({"num_heads": 2, "causal": True, "add_bias_kv": True}, "causal with add_bias_kv or add_zero_attn"),
    ({"num_heads": 2, "dropout": 1.0}, "dropout"),
])
def test_multi_head_attention_field_refusals(fields, message):
    with pytest.raises(LayerCalcError, match=re.escape(message)):
        parse_layer({"type": "multi_head_attention", **fields}, 0)


def test_batch_first_false_reads_l_n_e_and_says_so():
    facts = resolve({"type": "multi_head_attention", "num_heads": 2, "batch_first": False}, [(1, 10, 8)])[1].facts
    assert facts.output_shape == (1, 10, 8)
    assert any("reads [1, 10, 8] as [L, N, E]: 1 position(s) of 10 sequence(s)" in note for note in facts.notes)
    # 10 sequences of 1 position: 10·1·1 scores per head
    assert facts.macs == 4 * 10 * 8 * 8 + 2 * (10 * 2 * 1 * 1 * 4)


# ------------------------------------------------------------------------------ scaled dot-product attention

@st.composite
def sdpa_cases(draw):
    kv = draw(st.integers(1, 3))
    gqa = draw(st.booleans())
    heads = kv * (draw(st.integers(1, 3)) if gqa else 1)
    extra = draw(st.lists(st.integers(1, 2), max_size=1))     # a dim between the batch and the heads
    batch, lq, lk = draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    e, ev = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    lead_q, lead_kv = (batch, *extra, heads), (batch, *extra, kv)
    scale = draw(st.one_of(st.none(), st.floats(0.05, 2.0)))
    return dict(q=(*lead_q, lq, e), k=(*lead_kv, lk, e), v=(*lead_kv, lk, ev), gqa=gqa, scale=scale,
                causal=draw(st.booleans()))


@examples(60)
@given(sdpa_cases())
def test_sdpa_matches_torch(c):
    fields = {"type": "scaled_dot_product_attention", "is_causal": c["causal"], "enable_gqa": c["gqa"]}
    if c["scale"] is not None:
        fields["scale"] = c["scale"]
    layer, step = resolve(fields, [c["q"], c["k"], c["v"]])
    facts = step.facts
    gen = torch.Generator().manual_seed(sum(c["q"]))
    q, k, v = (torch.randn(*c[r], dtype=torch.float64, generator=gen) for r in "qkv")
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=c["causal"], scale=c["scale"],
                                              enable_gqa=c["gqa"]).numpy()
    ours, performed = run_step(layer, step, [q.numpy(), k.numpy(), v.numpy()], {})
    assert ours.shape == expected.shape == tuple(facts.output_shape)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)
    assert performed == facts.macs and facts.params == 0

    # FlopCounterMode on the explicit computation: 2·MACs; torch's own SDPA formula (4-d inputs) agrees
    def explicit():
        group = q.shape[-3] // k.shape[-3]
        kk, vv = k.repeat_interleave(group, dim=-3), v.repeat_interleave(group, dim=-3)
        scores = torch.matmul(q, kk.transpose(-1, -2))
        return torch.matmul(scores.softmax(-1), vv)

    assert flop_counter(explicit) == 2 * facts.macs
    if len(c["q"]) == 4:
        assert sdpa_flop_count(c["q"], c["k"], c["v"]) == 2 * facts.macs
    scores = math.prod(c["q"][:-1]) * c["k"][-2]
    assert facts.flops == 2 * facts.macs + (SCALE_FLOPS + SOFTMAX_FLOPS) * scores


def test_sdpa_counts_as_zero_in_flop_counter_mode_on_cpu():
    # what docs/conventions.md says FlopCounterMode reports for the fused CPU kernel: nothing
    q = torch.randn(1, 2, 5, 4)
    assert flop_counter(lambda: F.scaled_dot_product_attention(q, q, q)) == 0
    module = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(1, 5, 8)
    with torch.no_grad():
        assert flop_counter(lambda: module(x, x, x)) == 0                        # the eval fast path


@pytest.mark.parametrize("fields, shapes, message", [
    ({}, [(2, 4, 5, 8), (2, 2, 5, 8), (2, 2, 5, 8)], "fewer key/value heads than query heads (dim −3) need "
                                                     "enable_gqa"),
    ({"enable_gqa": True}, [(2, 4, 5, 8), (2, 3, 5, 8), (2, 3, 5, 8)], "must divide the query's"),
    ({}, [(2, 5, 8), (2, 5, 6), (2, 5, 8)], "the key [2, 5, 6] has 6 features"),
    ({}, [(2, 5, 8), (2, 5, 8), (2, 4, 8)], "the value [2, 4, 8] has 4 positions"),
    ({}, [(2, 8), (2, 8), (2, 8)], "needs inputs [N, ..., L, E] of at least 3 dims"),
])
def test_sdpa_refusals(fields, shapes, message):
    with pytest.raises(LayerCalcError, match=re.escape(message)):
        resolve({"type": "scaled_dot_product_attention", **fields}, shapes)


# --------------------------------------------------------------------------------------------------- matmul

@st.composite
def matmul_cases(draw):
    rank = draw(st.integers(3, 5))
    batch = [draw(st.integers(1, 3)) for _ in range(rank - 2)]
    a_batch = [b if draw(st.booleans()) else 1 for b in batch]
    b_batch = [b if draw(st.booleans()) else 1 for b in batch]
    rows, inner, cols = (draw(st.integers(1, 6)) for _ in range(3))
    return (*a_batch, rows, inner), (*b_batch, inner, cols)


@examples(60)
@given(matmul_cases())
def test_matmul_matches_torch(shapes):
    a_shape, b_shape = shapes
    layer, step = resolve({"type": "matmul"}, [a_shape, b_shape])
    facts = step.facts
    gen = torch.Generator().manual_seed(sum(a_shape))
    a, b = torch.randn(*a_shape, dtype=torch.float64, generator=gen), torch.randn(*b_shape, dtype=torch.float64,
                                                                                  generator=gen)
    expected = torch.matmul(a, b)
    assert flop_counter(lambda: torch.matmul(a, b)) == 2 * facts.macs == facts.flops
    ours, performed = run_step(layer, step, [a.numpy(), b.numpy()], {})
    assert ours.shape == tuple(expected.shape) == tuple(facts.output_shape)
    np.testing.assert_allclose(ours, expected.numpy(), rtol=1e-12, atol=1e-12)
    assert performed == facts.macs == math.prod(facts.output_shape[:-2]) * a_shape[-2] * a_shape[-1] * b_shape[-1]


@pytest.mark.parametrize("shapes, message", [
    ([(4, 5), (5, 3, 2)], "needs inputs of at least 3 dims"),
    ([(4,), (4, 2, 3)], "needs inputs of at least 3 dims"),
    ([(2, 3, 4), (2, 2, 4, 5)], "cannot matmul inputs of different rank"),
    ([(2, 3, 4), (2, 5, 6)], "the first's columns (4) must equal the second's rows (5)"),
    ([(2, 3, 3, 4), (2, 2, 4, 5)], "the leading dims [2, 3] and [2, 2] must match or be 1"),
])
def test_matmul_refusals(shapes, message):
    with pytest.raises(LayerCalcError, match=re.escape(message)):
        resolve({"type": "matmul"}, shapes)


def test_attention_scores_as_matmul_layers_equal_sdpa_macs():
    # q·kᵀ and A·v written as two matmul layers do the MACs of one scaled_dot_product_attention
    q, kt, v = (1, 4, 6, 8), (1, 4, 8, 7), (1, 4, 7, 5)
    scores = resolve({"type": "matmul"}, [q, kt])[1].facts
    weighted = resolve({"type": "matmul"}, [scores.output_shape, v])[1].facts
    sdpa = resolve({"type": "scaled_dot_product_attention"}, [q, (1, 4, 7, 8), v])[1].facts
    assert scores.macs + weighted.macs == sdpa.macs == 4 * 6 * 7 * (8 + 5)


# ------------------------------------------------------------------------------------- explanations, CLI

runner = CliRunner()


def calculator(*args: str) -> str:
    from layercalc.cli import get_app
    result = runner.invoke(get_app(), [*args, "--wide"])       # whole lines (fitting them: test_widths.py)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_interview_calculator_explains_the_params_formula():
    out = calculator("multi_head_attention", "--input", "10x512", "--embed-dim", "512", "--num-heads", "8",
                     "--explain")
    assert "params = 4·d² + 4·d = 4·512² + 4·512 = 1,050,624" in out
    assert "head_dim = embed_dim / num_heads = 512 / 8 = 64" in out
    assert "QKᵀ: N·H·L_q·L_k·d_k = 1·8·10·10·64 = 51,200" in out
    assert "MACs = q + k + v + out projections + QKᵀ + A·V = 2,621,440 + 2,621,440 + 2,621,440 + 2,621,440 + " \
           "51,200 + 51,200 = 10,588,160" in out
    assert "⚠" not in out


def test_calculator_cross_attention_keras_names_and_causal_note():
    out = calculator("multihead_attention", "-i", "7x32", "-i", "5x12", "-i", "5x20", "--num-heads", "4",
                     "--key-dim", "16", "--value-dim", "24", "--output-shape", "40", "--causal", "--explain")
    # q 32·64 + 64, k 12·64 + 64, v 20·96 + 96, out 96·40 + 40 = 8,840 (Keras' count_params for this layer)
    assert "= 32·64 + 64 + 12·64 + 64 + 20·96 + 96 + 96·40 + 40 = 8,840" in out
    # 7 queries over 5 keys, top-left: 5·6/2 + 2·5 = 25 pairs per head
    assert "5·6/2 + 2·5 = 25" in out and "only 100 are unmasked" in out
    assert "⚠" not in out


def test_calculator_sdpa_and_matmul():
    out = calculator("scaled_dot_product_attention", "-i", "8x10x64", "-i", "2x12x64", "-i", "2x12x32",
                     "--enable-gqa", "--explain")
    assert "2 key/value heads, each serving 4 query heads" in out
    assert "MACs = QKᵀ + A·V = B·L_q·L_k·E + B·L_q·L_k·E_v = 8·10·12·64 + 8·10·12·32 = 92,160" in out
    out = calculator("matmul", "-i", "4x3x5", "-i", "1x5x2", "--explain")
    assert "MACs = prod(batch)·n·k·m = 1·4·3·5·2 = 120" in out


def test_registered_names():
    assert LAYER_TYPES["multihead_attention"] is LAYER_TYPES["multi_head_attention"]
    assert {"scaled_dot_product_attention", "matmul"} <= set(LAYER_TYPES)


@pytest.mark.parametrize("fields, shapes", [
    ({"type": "multi_head_attention", "num_heads": 4, "causal": True}, [(3, 40, 16)]),
    ({"type": "multi_head_attention", "num_heads": 4, "num_kv_heads": 2, "batch_first": False, "add_bias_kv": True,
      "add_zero_attn": True, "head_dim": 6, "value_dim": 3}, [(30, 3, 16), (20, 3, 8), (20, 3, 5)]),
    ({"type": "scaled_dot_product_attention", "is_causal": True, "enable_gqa": True},
     [(2, 4, 30, 8), (2, 2, 20, 8), (2, 2, 20, 6)]),
    ({"type": "matmul"}, [(2, 3, 30, 20), (2, 1, 20, 25)]),
])
def test_memory_bound_covers_the_forward_step(fields, shapes):
    # what the forward step allocates beyond its inputs and output stays within its scratch_bytes (weights made in
    # the step, as in a run without weights); tracemalloc sees NumPy's allocations
    import tracemalloc

    from layercalc.executor import init_params
    layer, step = resolve(fields, shapes)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s) for s in shapes]
    env = Env(False, kernels.Workspace(1))
    env.overwritable = [False] * len(xs)
    layer.forward(step, xs, init_params(step, {}, 0, np.float64, False), env)       # first-use costs
    tracemalloc.start()
    layer.forward(step, xs, init_params(step, {}, 0, np.float64, False), env)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    scratch, _ = layer.scratch_bytes(step, 8, False, False)
    assert peak <= scratch + math.prod(step.facts.output_shape) * 8 + 2**16


@pytest.fixture(scope="module")
def bench_memory():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "bench_memory.py"
    spec = importlib.util.spec_from_file_location("bench_memory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("label", ["multi_head_attention", "multi_head_attention gqa", "scaled_dot_product_attention",
                                   "matmul"])
def test_memory_estimate_bounds_a_run(bench_memory, label):
    estimate, peak = bench_memory.measure(bench_memory.build(label, mib=2))
    assert peak <= estimate + bench_memory.ALLOWANCE, (label, estimate, peak)


# ------------------------------------------------------------- rotary embeddings and split biases (Llama, Qwen2)

@pytest.mark.parametrize("arch, bias_fields", [("llama", {"bias": False}), ("llama_bias", {"bias": True}),
                                               ("qwen2", {"qkv_bias": True, "out_bias": False})])
@pytest.mark.parametrize("causal", [False, True])
def test_rope_attention_matches_hugging_face(arch, bias_fields, causal):
    """Hugging Face's LlamaAttention / Qwen2Attention (eager: explicit matmuls) with their rotary embedding: params,
    2·MACs = FlopCounterMode, and the forward pass on their weights. Qwen2 has q/k/v biases and no o_proj bias."""
    transformers = pytest.importorskip("transformers")
    hidden, heads, kv, head_dim, theta, batch, length = 24, 4, 2, 8, 500.0, 2, 5
    if arch == "qwen2":
        from transformers.models.qwen2 import modeling_qwen2 as hf
        config = transformers.Qwen2Config(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=kv,
                                          head_dim=head_dim, rope_theta=theta)
        attention, rotary = hf.Qwen2Attention, hf.Qwen2RotaryEmbedding
    else:
        from transformers.models.llama import modeling_llama as hf
        config = transformers.LlamaConfig(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=kv,
                                          head_dim=head_dim, rope_theta=theta, attention_bias=arch == "llama_bias")
        attention, rotary = hf.LlamaAttention, hf.LlamaRotaryEmbedding
    config._attn_implementation = "eager"
    torch.manual_seed(3)
    module = attention(config, layer_idx=0).double().eval()
    x = torch.randn(batch, length, hidden, dtype=torch.float64)
    position_ids = torch.arange(length)[None].expand(batch, length)
    cos_sin = rotary(config)(x, position_ids)
    mask = (torch.full((length, length), -torch.inf, dtype=torch.float64).triu(1)[None, None] if causal
            else None)
    fields = {"type": "multi_head_attention", "num_heads": heads, "num_kv_heads": kv, "head_dim": head_dim,
              "rope": True, "rope_theta": theta, "causal": causal, **bias_fields}
    layer, step = resolve(fields, [(batch, length, hidden)])
    facts = step.facts
    assert facts.params == n_params(module)
    with torch.no_grad():
        # FlopCounterMode counts the projections and the two matmuls (2·MACs); RoPE's element-wise products are
        # not matmuls, so it counts them as 0: they are in layercalc's FLOPs, 3 per rotated element (below)
        assert flop_counter(lambda: module(x, cos_sin, mask)) == 2 * facts.macs
        expected = module(x, cos_sin, mask)[0].numpy()
    params = {}
    for name in layer.param_specs(step, False):
        key = name.replace("out_proj", "o_proj").replace("_weight", ".weight").replace("_bias", ".bias")
        params[name] = module.state_dict()[key].numpy()
    ours, performed = run_step(layer, step, [x.numpy()], params)
    assert performed == facts.macs
    # Hugging Face computes its cos/sin tables in float32 (inv_freq and positions cast to float), so its rotated q
    # and k carry float32 rounding (~1e-8 here) though everything else is float64
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-7)
    # FLOPs by hand: 2·MACs + bias adds + (1 scale + 5 softmax) per score + 3 per rotated q and k element
    projections = [(heads * head_dim, "q"), (kv * head_dim, "k"), (kv * head_dim, "v"), (hidden, "out")]
    biased = {"llama": set(), "llama_bias": {"q", "k", "v", "out"}, "qwen2": {"q", "k", "v"}}[arch]
    bias_adds = sum(batch * length * out for out, name in projections if name in biased)
    scores = batch * heads * length * length
    rotated = batch * length * (heads + kv) * head_dim
    assert facts.flops == 2 * facts.macs + bias_adds + (SCALE_FLOPS + SOFTMAX_FLOPS) * scores + 3 * rotated


def test_partial_rotary_rotates_the_first_features_only():
    """rotary_dim < head_dim (GPT-NeoX's rotary_pct, Phi's partial_rotary_factor): the rest of each head passes
    unchanged, so the layer equals a rope-free layer with q and k rotated on their first rotary_dim features only;
    FLOPs 3 per rotated element (by hand: N·(H·L_q + kv·L_k)·rotary_dim)."""
    base = {"type": "multi_head_attention", "num_heads": 2, "head_dim": 6, "bias": False}
    _, step = resolve({**base, "rope": True, "rotary_dim": 4}, [(1, 3, 12)])
    _, plain = resolve(base, [(1, 3, 12)])
    assert step.facts.flops - plain.facts.flops == 3 * (1 * (2 * 3 + 2 * 3) * 4)
    assert step.facts.macs == plain.facts.macs and step.facts.params == plain.facts.params


@pytest.mark.parametrize("fields, message", [
    ({"rope": True, "rotary_dim": 5}, "rotary_dim 5 must be even"),
    ({"rope": True, "rotary_dim": 10}, "at most head_dim 6"),
    ({"rotary_dim": 4}, "rope is off"),
    ({"rope": True, "add_bias_kv": True}, "rope with add_bias_kv"),
])
def test_rope_refusals(fields, message):
    with pytest.raises(LayerCalcError, match=message):
        resolve({"type": "multi_head_attention", "num_heads": 2, "head_dim": 6, **fields}, [(1, 3, 12)])
