"""The layer options the Hugging Face dense decoders need, against PyTorch written out here (not transformers):
``softcap`` (cap·tanh(x/cap)), ``rmsnorm`` with ``offset`` (Gemma's x/rms·(1 + γ)), ``position_embedding`` with
``offset`` (OPT's rows 2..L+1), and ``multi_head_attention`` with ``qk_norm``, ``scale``, ``logit_softcap`` and
``sliding_window``: outputs on the same weights, parameters, and the FLOPs each option adds, derived by hand."""

from __future__ import annotations

import numpy as np
import pytest

import layercalc

torch = pytest.importorskip("torch")
F = torch.nn.functional


def run(spec: dict, x: np.ndarray, weights: dict | None = None):
    net = layercalc.load(spec)
    return net, net.run(x, weights=weights)


def test_softcap_is_cap_tanh_x_over_cap_with_3_flops_per_element():
    x = np.random.default_rng(0).normal(0, 40, (2, 5, 7)).astype(np.float32)
    net, y = run({"input": [5, 7], "layers": [{"type": "softcap", "cap": 30.0}]}, x)
    expected = 30.0 * torch.tanh(torch.from_numpy(x) / 30.0)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-6, atol=1e-6)
    report = net.replace(batch=1).analyze()
    assert report.totals.params == 0 and report.totals.flops == 3 * 5 * 7    # divide, tanh, multiply


def test_rmsnorm_offset_scales_by_one_plus_gamma_as_gemma():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 4, 8)).astype(np.float32)
    gamma = rng.normal(size=8).astype(np.float32)
    net, y = run({"input": [4, 8], "layers": [{"name": "norm", "type": "rmsnorm", "eps": 1e-6, "offset": 1.0}]}, x,
                 {"norm": {"weight": gamma}})
    t = torch.from_numpy(x)
    expected = t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * (1.0 + torch.from_numpy(gamma))
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-5, atol=1e-6)
    report = net.analyze()
    # per element: square, add, multiply by 1/rms, multiply by the scale (4); per row: divide, add eps, rsqrt (3);
    # 1 + γ: 8 adds
    assert report.totals.params == 8 and report.totals.flops == 4 * 8 * 4 + 4 * 3 + 8


def test_rmsnorm_offset_needs_a_scale():
    with pytest.raises(layercalc.LayerCalcError, match="offset"):
        layercalc.load({"input": [4, 8], "layers": [{"type": "rmsnorm", "offset": 1.0, "elementwise_affine": False}]})


def test_position_embedding_offset_reads_rows_from_the_offset():
    table = np.arange(12 * 3, dtype=np.float32).reshape(12, 3)
    spec = {"input": [5], "layers": [{"name": "pos", "type": "position_embedding", "num_embeddings": 12,
                                      "embedding_dim": 3, "offset": 2}]}
    net, y = run(spec, np.zeros((1, 5), np.float32), {"pos": {"weight": table}})
    expected = torch.nn.functional.embedding(torch.arange(5) + 2, torch.from_numpy(table))
    np.testing.assert_array_equal(y[0], expected.numpy())
    assert net.analyze().totals.params == 12 * 3
    with pytest.raises(layercalc.LayerCalcError, match="offset 2"):
        layercalc.load(dict(spec, input=[11])).analyze()            # 11 + 2 rows > 12


def _torch_attention(x, w, heads, kv, dk, theta, scale, cap, window, norm_offset, eps):
    """Qwen3/Gemma-style attention written out in torch: q/k RMSNorm per head, RoPE (rotate_half), scaled scores,
    soft-capping, causal + sliding-window mask, softmax, A·V, output projection."""
    n, length, _ = x.shape
    q = (x @ w["q_proj_weight"].T).view(n, length, heads, dk).transpose(1, 2)
    k = (x @ w["k_proj_weight"].T).view(n, length, kv, dk).transpose(1, 2)
    v = (x @ w["v_proj_weight"].T).view(n, length, kv, dk).transpose(1, 2)

    def rms(t, g):
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps) * (norm_offset + g)
    q, k = rms(q, w["q_norm_weight"]), rms(k, w["k_norm_weight"])
    inv = 1.0 / theta ** (torch.arange(0, dk, 2, dtype=torch.float64) / dk)
    angles = torch.outer(torch.arange(length, dtype=torch.float64), inv)
    cos, sin = (torch.cat([f(angles)] * 2, -1).float() for f in (torch.cos, torch.sin))

    def rotate(t):
        return t * cos + torch.cat([-t[..., dk // 2:], t[..., :dk // 2]], -1) * sin
    q, k = rotate(q), rotate(k)
    k, v = (t.repeat_interleave(heads // kv, dim=1) for t in (k, v))
    scores = q @ k.transpose(-1, -2) * scale
    scores = cap * torch.tanh(scores / cap)
    i, j = torch.arange(length)[:, None], torch.arange(length)[None, :]
    scores = scores.masked_fill((j > i) | (j <= i - window), float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, heads * dk)
    return out @ w["out_proj_weight"].T


def test_attention_with_qk_norm_scale_softcap_and_sliding_window_matches_torch():
    heads, kv, dk, e, length, window = 4, 2, 8, 16, 9, 3
    rng = np.random.default_rng(2)
    shapes = {"q_proj_weight": (heads * dk, e), "k_proj_weight": (kv * dk, e), "v_proj_weight": (kv * dk, e),
              "out_proj_weight": (e, heads * dk), "q_norm_weight": (dk,), "k_norm_weight": (dk,)}
    weights = {name: rng.normal(0, 0.5, shape).astype(np.float32) for name, shape in shapes.items()}
    x = rng.normal(size=(1, length, e)).astype(np.float32)
    layer = {"name": "attn", "type": "multi_head_attention", "num_heads": heads, "num_kv_heads": kv, "head_dim": dk,
             "bias": False, "causal": True, "rope": True, "rope_theta": 100.0, "scale": 0.3, "logit_softcap": 2.0,
             "sliding_window": window, "qk_norm": True, "qk_norm_eps": 1e-6, "qk_norm_offset": 1.0}
    net, y = run({"input": [length, e], "layers": [layer]}, x, {"attn": weights})
    with torch.no_grad():
        expected = _torch_attention(torch.from_numpy(x), {k: torch.from_numpy(v) for k, v in weights.items()},
                                    heads, kv, dk, 100.0, 0.3, 2.0, window, 1.0, 1e-6)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-4, atol=1e-5)

    # the counts: the same projections and products as without the options, plus q/k norms and soft-capping
    plain = layercalc.load({"input": [length, e], "layers": [
        {k: v for k, v in layer.items() if k not in ("scale", "logit_softcap", "sliding_window", "qk_norm",
                                                     "qk_norm_eps", "qk_norm_offset")}]}).analyze().totals
    totals = net.analyze().totals
    assert totals.params == plain.params + 2 * dk                          # q_norm, k_norm: [head_dim] each
    assert totals.macs == plain.macs                                       # the window is a mask: counted in full
    vectors = heads * length + kv * length                                 # head vectors normalized
    norm_flops = vectors * (4 * dk + 3) + 2 * dk                           # rmsnorm's count, 1 + γ adds
    assert totals.flops == plain.flops + norm_flops + 3 * heads * length * length


def test_attention_option_consistency_is_checked():
    base = {"type": "multi_head_attention", "num_heads": 2}
    with pytest.raises(layercalc.LayerCalcError, match="causal"):
        layercalc.load({"input": [4, 8], "layers": [dict(base, sliding_window=2)]})
    with pytest.raises(layercalc.LayerCalcError, match="qk_norm"):
        layercalc.load({"input": [4, 8], "layers": [dict(base, qk_norm_offset=1.0)]})


def test_explanations_of_the_options_agree_with_the_report():
    spec = {"input": [6, 16], "layers": [
        {"type": "multi_head_attention", "num_heads": 4, "causal": True, "rope": True, "scale": 0.5,
         "logit_softcap": 50.0, "sliding_window": 2, "qk_norm": True, "qk_norm_offset": 1.0},
        {"type": "softcap", "cap": 30.0}, {"type": "rmsnorm", "offset": 1.0},
        {"type": "position_embedding", "num_embeddings": 9, "embedding_dim": 16, "offset": 2, "inputs": "input"}]}
    from layercalc.network_explain import explain_network

    net = layercalc.load(spec)
    text = "\n".join(explain_network(net, net.analyze()))
    assert "please report this bug" not in text                           # every worked figure is the report's
    for words in ("q/k norms", "soft-capping", "sliding window 2", "cap·tanh(x/cap)", "1 + γ", "offset 2"):
        assert words in text, words
