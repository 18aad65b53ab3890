"""The mixture-of-experts layer (layercalc/layers/moe.py) against transformers' sparse MoE blocks.

Oracles: Mixtral's, Qwen2-MoE's, Qwen3-MoE's and DeepSeek-V3's blocks of transformers 5, built from small configs
with random weights: parameters (``sum(p.numel())``), buffers, FlopCounterMode's total with the eager experts
implementation (``experts_implementation="eager"``: transformers' default ``grouped_mm`` path is invisible to
FlopCounterMode, which counts 0 for it — checked below, so the oracle is known to see the experts) and the output
on the block's own weights. Active parameters and the all-experts MACs are derived by hand in each test.
"""

from __future__ import annotations

import numpy as np
import pytest

from layercalc import LayerCalcError
from layercalc.graph import Network
from layercalc.spec import from_data

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

TOKENS = 7          # not a multiple of the experts: some expert gets no token, others several


def _net(layer: dict, tokens: int = TOKENS, hidden: int = 32, batch: int = 2) -> Network:
    return from_data({"input": [tokens, hidden], "batch": batch, "layers": [{"name": "mlp", **layer}]}, "test")


def _block(kind: str, **config):
    """A transformers sparse MoE block with eager experts, random normal weights (and buffers) of scale 0.2."""
    if kind == "mixtral":
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock as Block
        cfg = transformers.MixtralConfig(experts_implementation="eager", **config)
    elif kind == "qwen2_moe":
        from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock as Block
        cfg = transformers.Qwen2MoeConfig(experts_implementation="eager", **config)
    elif kind == "qwen3_moe":
        from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock as Block
        cfg = transformers.Qwen3MoeConfig(experts_implementation="eager", **config)
    else:
        from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE as Block
        cfg = transformers.DeepseekV3Config(experts_implementation="eager", **config)
    torch.manual_seed(0)
    block = Block(cfg).eval()
    with torch.no_grad():
        for tensor in [*block.parameters(), *block.buffers()]:
            tensor.normal_(0, 0.2)
    return block


def _weights(block) -> dict:
    """The block's state_dict under the moe layer's parameter names (transformers 5's module names)."""
    names = {"gate.weight": "router_weight", "gate.e_score_correction_bias": "e_score_correction_bias",
             "experts.gate_up_proj": "experts_gate_up_proj", "experts.down_proj": "experts_down_proj",
             "shared_expert_gate.weight": "shared_expert_gate_weight"}
    out = {}
    for key, value in block.state_dict().items():
        name = names.get(key)
        if name is None:                                # shared_expert(s).gate_proj.weight → shared_gate_proj_weight
            name = "shared_" + key.split(".", 1)[1].replace(".", "_")
        out[name] = value.detach().double().numpy()
    return {"mlp": out}


def _compare(kind: str, layer: dict, config: dict, hidden: int = 32) -> None:
    block = _block(kind, hidden_size=hidden, **config)
    net = _net(layer, hidden=hidden)
    report = net.analyze()
    entry = report.layers[0]
    assert entry.params == sum(p.numel() for p in block.parameters())
    assert entry.buffers == sum(b.numel() for b in block.buffers())
    x = torch.randn(2, TOKENS, hidden, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    block = block.double()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        expected = block(x)
    assert 2 * entry.macs == counter.get_total_flops()
    got = net.run(x.numpy(), weights=_weights(block), dtype="float64")
    assert got.shape == tuple(expected.shape)
    # transformers' routers compute the scores in float32 whatever the model's dtype: float32's precision
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_mixtral_block():
    layer = {"type": "moe", "num_experts": 8, "top_k": 2, "intermediate_size": 48, "norm_topk_prob": True}
    _compare("mixtral", layer, dict(intermediate_size=48, num_local_experts=8, num_experts_per_tok=2))
    # by hand: router 32·8 + 8 experts · 3·32·48; a token uses 2 experts; tokens = 2·7
    entry = _net(layer).analyze().layers[0]
    expert = 3 * 32 * 48
    assert entry.params == 32 * 8 + 8 * expert
    assert entry.active_params == 32 * 8 + 2 * expert
    assert entry.macs == 14 * (32 * 8 + 2 * expert)
    assert entry.all_experts_macs == 14 * (32 * 8 + 8 * expert)


@pytest.mark.parametrize("norm", [False, True])
def test_qwen2_moe_block_with_gated_shared_expert(norm):
    layer = {"type": "moe", "num_experts": 6, "top_k": 3, "intermediate_size": 40, "norm_topk_prob": norm,
             "shared_intermediate_size": 56, "shared_expert_gate": True}
    _compare("qwen2_moe", layer, dict(moe_intermediate_size=40, num_experts=6, num_experts_per_tok=3,
                                      shared_expert_intermediate_size=56, norm_topk_prob=norm))
    entry = _net(layer).analyze().layers[0]
    assert entry.active_params == 32 * 6 + 3 * 3 * 32 * 40 + 3 * 32 * 56 + 32


def test_qwen3_moe_block():
    layer = {"type": "moe", "num_experts": 8, "top_k": 2, "intermediate_size": 24, "norm_topk_prob": True}
    _compare("qwen3_moe", layer, dict(moe_intermediate_size=24, num_experts=8, num_experts_per_tok=2,
                                      norm_topk_prob=True))


@pytest.mark.parametrize("norm", [True, False])
def test_deepseek_v3_block_grouped_sigmoid_routing(norm):
    layer = {"type": "moe", "num_experts": 16, "top_k": 4, "intermediate_size": 20, "scoring": "sigmoid",
             "n_group": 4, "topk_group": 2, "norm_topk_prob": norm, "routed_scaling_factor": 2.5,
             "score_correction_bias": True, "shared_intermediate_size": 40}
    _compare("deepseek_v3", layer, dict(moe_intermediate_size=20, n_routed_experts=16, num_experts_per_tok=4,
                                        n_group=4, topk_group=2, norm_topk_prob=norm, routed_scaling_factor=2.5,
                                        n_shared_experts=2))


def test_default_experts_path_is_invisible_to_flop_counter():
    """Why the oracle needs eager experts: in a model built the usual way, transformers' default experts path
    (grouped_mm) is not counted by FlopCounterMode at all — only the router is."""
    cfg = transformers.MixtralConfig(hidden_size=32, intermediate_size=48, num_local_experts=4, num_experts_per_tok=2,
                                     num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, vocab_size=50)
    model = transformers.MixtralModel(cfg).eval()
    if model.config._experts_implementation == "eager":
        pytest.skip("this transformers runs eager experts by default")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.layers[0].mlp(torch.randn(1, TOKENS, 32))
    assert counter.get_total_flops() == 2 * TOKENS * 32 * 4             # the router alone


def test_plain_mlp_experts_forward_by_hand():
    """Two-matrix experts (up, act, down) with a router bias: the executor against a NumPy loop over tokens."""
    layer = {"type": "moe", "num_experts": 4, "top_k": 2, "intermediate_size": 8, "experts": "mlp",
             "activation": "relu", "router_bias": True}
    net = _net(layer, tokens=5, hidden=6, batch=1)
    entry = net.analyze().layers[0]
    assert entry.params == 6 * 4 + 4 + 4 * 2 * 6 * 8
    assert entry.macs == 5 * (6 * 4 + 2 * 2 * 6 * 8)
    rng = np.random.default_rng(3)
    w = {"router_weight": rng.normal(size=(4, 6)), "router_bias": rng.normal(size=4),
         "experts_up_proj": rng.normal(size=(4, 8, 6)), "experts_down_proj": rng.normal(size=(4, 6, 8))}
    x = rng.normal(size=(1, 5, 6))
    got = net.run(x, weights={"mlp": w}, dtype="float64")
    for t in range(5):
        logits = w["router_weight"] @ x[0, t] + w["router_bias"]
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        want = sum(probs[e] * (w["experts_down_proj"][e] @ np.maximum(w["experts_up_proj"][e] @ x[0, t], 0))
                   for e in np.argsort(-probs)[:2])
        np.testing.assert_allclose(got[0, t], want, rtol=1e-12)


@pytest.mark.parametrize("fields, message", [
    ({"num_experts": 4, "top_k": 5, "intermediate_size": 8}, "top_k 5 is more than num_experts 4"),
    ({"num_experts": 6, "top_k": 2, "intermediate_size": 8, "n_group": 4}, "n_group 4 does not divide"),
    ({"num_experts": 8, "top_k": 6, "intermediate_size": 8, "n_group": 4, "topk_group": 2}, "top_k 6 is more"),
    ({"num_experts": 4, "top_k": 1, "intermediate_size": 8, "shared_expert_gate": True}, "needs a shared expert"),
])
def test_refusals_name_the_field(fields, message):
    with pytest.raises(LayerCalcError, match=message):
        _net({"type": "moe", **fields}).analyze()


def test_report_totals_and_summary_line():
    spec = {"input": [TOKENS, 32], "layers": [
        {"name": "up", "type": "linear", "out_features": 32},
        {"name": "mlp", "type": "moe", "num_experts": 8, "top_k": 2, "intermediate_size": 48}]}
    report = from_data(spec, "test").analyze()
    t = report.totals
    dense = 32 * 32 + 32
    assert t.active_params == dense + 32 * 8 + 2 * 3 * 32 * 48
    assert t.params == dense + 32 * 8 + 8 * 3 * 32 * 48
    assert t.active_macs == t.macs == TOKENS * (32 * 32 + 32 * 8 + 2 * 3 * 32 * 48)
    assert t.all_experts_macs == TOKENS * (32 * 32 + 32 * 8 + 8 * 3 * 32 * 48)
    text = report.table(width=80)
    assert f"active params {t.active_params:,} of {t.params:,}" in text
    assert all(len(line) <= 80 for line in text.splitlines())


# ------------------------------------------------------------------------------------- multi-head latent attention

def _mla_block(**config):
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3Attention, DeepseekV3RotaryEmbedding
    cfg = transformers.DeepseekV3Config(attn_implementation="eager", **config)
    torch.manual_seed(0)
    attention = DeepseekV3Attention(cfg, 0).eval().double()
    with torch.no_grad():
        for tensor in attention.parameters():
            tensor.normal_(0, 0.2)
    return attention, DeepseekV3RotaryEmbedding(cfg)


@pytest.mark.parametrize("q_rank, interleave, bias", [(24, True, False), (None, False, True)])
def test_latent_attention_against_deepseek_v3(q_rank, interleave, bias):
    hidden, heads, length = 40, 4, 6
    config = dict(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=heads, q_lora_rank=q_rank,
                  kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=10, rope_interleave=interleave,
                  attention_bias=bias)
    attention, rotary = _mla_block(**config)
    layer = {"type": "latent_attention", "num_heads": heads, "q_lora_rank": q_rank, "kv_lora_rank": 16,
             "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 10, "rope_interleave": interleave,
             "bias": bias, "causal": True}
    net = from_data({"input": [length, hidden], "batch": 2, "layers": [{"name": "self_attn", **layer}]}, "test")
    entry = net.analyze().layers[0]
    assert entry.params == sum(p.numel() for p in attention.parameters())
    x = torch.randn(2, length, hidden, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    positions = torch.arange(length)[None]
    cos, sin = (t.double() for t in rotary(x, positions))
    mask = torch.full((length, length), float("-inf"), dtype=torch.float64).triu(1)[None, None]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        expected, _ = attention(x, (cos, sin), mask)
    assert 2 * entry.macs == counter.get_total_flops()
    weights = {key.replace(".", "_"): value.numpy() for key, value in attention.state_dict().items()}
    got = net.run(x.numpy(), weights={"self_attn": weights}, dtype="float64")
    # transformers computes the latent norms and the rotary angles in float32 whatever the model's dtype
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-7)
    # by hand: T = 12 tokens; projections, then QKᵀ over n + r = 12 features and A·V over v = 10, 2·4·6·6 scores
    qk = heads * 12
    query = hidden * q_rank + q_rank * qk if q_rank else hidden * qk
    projections = query + hidden * (16 + 4) + 16 * heads * (8 + 10) + heads * 10 * hidden
    assert entry.macs == 12 * projections + 2 * heads * length * length * (12 + 10)


@pytest.mark.parametrize("input_grad", [True, False])
def test_backward_against_flop_counter(input_grad):
    """The backward's MACs (layers/moe.py) against FlopCounterMode over loss.backward() of transformers' Qwen2-MoE
    block with eager experts: 2·(input_macs + weight_macs) = the backward's counted FLOPs."""
    from layercalc.rules import Gradients

    block = _block("qwen2_moe", hidden_size=32, moe_intermediate_size=40, num_experts=6, num_experts_per_tok=3,
                   shared_expert_intermediate_size=56).double()
    layer = {"type": "moe", "num_experts": 6, "top_k": 3, "intermediate_size": 40, "shared_intermediate_size": 56,
             "shared_expert_gate": True}
    net = _net(layer)
    step = net.resolve()[0]
    backward = step.layer.backward(step, Gradients(inputs=(input_grad,), weights=True))
    x = torch.randn(2, TOKENS, 32, dtype=torch.float64, requires_grad=input_grad)
    y = block(x)
    with FlopCounterMode(display=False) as counter:
        y.sum().backward()
    assert 2 * backward.macs == counter.get_total_flops()


@pytest.mark.parametrize("input_grad", [True, False])
def test_latent_attention_backward_against_flop_counter(input_grad):
    from layercalc.rules import Gradients

    hidden, heads, length = 40, 4, 6
    attention, rotary = _mla_block(hidden_size=hidden, num_attention_heads=heads, num_key_value_heads=heads,
                                   q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8, qk_rope_head_dim=4,
                                   v_head_dim=10)
    layer = {"type": "latent_attention", "num_heads": heads, "q_lora_rank": 24, "kv_lora_rank": 16,
             "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 10, "causal": True}
    net = from_data({"input": [length, hidden], "batch": 2, "layers": [{"name": "self_attn", **layer}]}, "test")
    step = net.resolve()[0]
    backward = step.layer.backward(step, Gradients(inputs=(input_grad,), weights=True))
    x = torch.randn(2, length, hidden, dtype=torch.float64, requires_grad=input_grad)
    cos, sin = (t.double() for t in rotary(x, torch.arange(length)[None]))
    mask = torch.full((length, length), float("-inf"), dtype=torch.float64).triu(1)[None, None]
    y, _ = attention(x, (cos, sin), mask)
    with FlopCounterMode(display=False) as counter:
        y.sum().backward()
    assert 2 * backward.macs == counter.get_total_flops()
