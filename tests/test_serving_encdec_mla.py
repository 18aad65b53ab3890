"""Serving (layercalc.serving) for DeepSeek-V3's multi-head latent attention and for an encoder–decoder (T5), against
Hugging Face transformers as oracle, and the serving reports' fields.

- DeepSeek-V3 (``latent_attention``): transformers 5 caches the latent (the normalized ``kv_lora_rank`` features and
  the rotated ``qk_rope_head_dim`` key of each position, one for all heads) and runs ``kv_b_proj`` on every cached
  and new position at each step. Oracles: the elements of the ``past_key_values`` the model returns, and
  ``FlopCounterMode`` around a decode step of k tokens after a cache of P (eager attention and experts) = 2·MACs of
  layercalc's decode step; the growth of a step with P derived by hand.
- T5 (``T5ForConditionalGeneration``): a decode step runs the decoder only, on the new token(s), with
  ``encoder_outputs`` given and an ``EncoderDecoderCache`` filled by the prefill: self-attention over P + k keys,
  cross-attention from the cached keys and values of the S encoder positions (no k, v projections). Oracles:
  ``FlopCounterMode`` of that call = 2·decode MACs; of the encoder plus the decoder's prefill call = 2·prefill MACs;
  the cache's self- and cross-attention elements = the KV cache.
- The serving phases' reports hold no backward or saved-tensor figures (null), the ordinary report still does.
"""

from __future__ import annotations

import json

import pytest
from test_import_huggingface_encoders import CASES as ENCODER_CASES
from test_import_huggingface_encoders import T5_BASE
from test_import_huggingface_moe import DEEPSEEK, DEEPSEEK_V3
from test_import_huggingface_moe import hf_model as moe_model
from test_serving import cache_elements, cli, decode_oracle

import layercalc
from layercalc import LayerCalcError
from layercalc.importers.huggingface import spec_from_config

DEEPSEEK_CASES = {
    "deepseek_v3-lm": dict(DEEPSEEK, architectures=["DeepseekV3ForCausalLM"]),
    "deepseek_v3-no-q-lora-bias-rotate-half": dict(DEEPSEEK, architectures=["DeepseekV3ForCausalLM"],
                                                   q_lora_rank=None, attention_bias=True, rope_interleave=False),
    "deepseek_v3-base": DEEPSEEK,
}
T5_CASES = {name: ENCODER_CASES[name] for name in ("t5-lm", "t5-lm-v1.1-gated", "t5-model-gated-silu")}


def imported(config: dict, batch: int = 1):
    return layercalc.load(spec_from_config(config, "config.json")).replace(batch=batch)


# ------------------------------------------------------------------------------------------------- DeepSeek-V3 MLA

@pytest.mark.parametrize("case", list(DEEPSEEK_CASES))
@pytest.mark.parametrize("batch", [1, 2])
def test_deepseek_kv_cache_is_the_latent_transformers_caches(case, batch):
    model = moe_model(DEEPSEEK_CASES[case])
    for past, new in ((3, 1), (6, 2)):
        before, _, after = decode_oracle(model, past, new, batch)
        serving = imported(DEEPSEEK_CASES[case], batch).serving(past, new)
        assert serving.prefill is not None
        assert serving.prefill.kv_cache_bytes == 4 * before
        assert serving.decode.kv_cache_bytes == 4 * after
    # by hand: 3 layers × N × (P + k) positions × (kv_lora_rank 16 + qk_rope_head_dim 8), whatever the 4 heads
    assert after == 3 * batch * (6 + 2) * (16 + 8)


@pytest.mark.parametrize("case", list(DEEPSEEK_CASES))
def test_deepseek_decode_flops_equal_flop_counter_with_a_cache_of_p_tokens(case):
    model = moe_model(DEEPSEEK_CASES[case])
    for past, new, batch in ((1, 1, 1), (3, 1, 1), (7, 1, 2), (5, 3, 1), (12, 2, 2)):
        _, flops, _ = decode_oracle(model, past, new, batch)
        serving = imported(DEEPSEEK_CASES[case], batch).serving(past, new)
        assert 2 * serving.decode.macs == flops, (past, new, batch)


def test_deepseek_decode_step_grows_with_the_cache_by_hand():
    # one more cached position adds, per layer, kv_b_proj on one more latent, r_kv·H·(n + v) = 16·4·(8 + 12)
    # MACs (transformers decompresses the whole cache at every step), and one more key per query head,
    # H·(n + r + v) = 4·(8 + 8 + 12) MACs; nothing else depends on P
    net = imported(DEEPSEEK_CASES["deepseek_v3-lm"])
    per_position = 3 * (16 * 4 * (8 + 12) + 4 * (8 + 8 + 12))
    steps = [net.serving(past).decode.macs for past in (4, 5, 9)]
    assert steps[1] - steps[0] == per_position and steps[2] - steps[0] == 5 * per_position
    layer = net.serving(9, 2).decode_report.layer("model.layers.1.self_attn")
    assert layer.kv_cache_bytes == 4 * 1 * (9 + 2) * (16 + 8)
    notes = " ".join(layer.notes)
    assert "r_kv + r = 24 elements per position for all 4 heads" in notes
    assert "not the 112 of decompressed per-head keys and values" in notes          # 4·(8 + 8 + 12)
    assert "runs kv_b_proj on all 11 positions again" in notes


def test_deepseek_v3_at_8192_tokens_by_hand():
    # 61 layers × 8,192 positions × (kv_lora_rank 512 + qk_rope_head_dim 64) × 2 bytes (bf16): the latent cache;
    # decompressed per-head keys and values would be 128 heads × (128 + 64 + 128) per position, 71× more
    serving = imported(DEEPSEEK_V3).replace(dtype="bfloat16").serving(8191)
    assert serving.decode.kv_cache_bytes == 61 * 8192 * (512 + 64) * 2 == 575_668_224
    # the decode step's kv_b_proj decompresses all 8,192 latents in each of the 61 layers: 512 → 128·(128 + 128)
    attention = [e for e in serving.decode_report.layers if e.type == "latent_attention"]
    assert len(attention) == 61
    projections = 7168 * 1536 + 1536 * 128 * 192 + 7168 * 576 + 128 * 128 * 7168      # q_a, q_b, kv_a, o
    assert attention[0].macs == projections + 8192 * 512 * 128 * 256 + 128 * 8192 * (192 + 128)


def absorbed_reference(q_lora, interleave: bool, bias: bool, past: int, new: int, batch: int):
    """(error against transformers, FlopCounterMode's FLOPs) of a decode step with kv_b_proj absorbed, written
    after DeepSeek-V3's inference code (``attn_impl == "absorb"``) on a transformers ``DeepseekV3Attention``'s
    weights: the query's nope part times kv_b_proj's key half (per head n → r_kv), scores against the cached latent
    plus the rotated parts, probabilities times the latent, then kv_b_proj's value half (r_kv → v) and o_proj. Its
    output must equal the module's own decode step (which decompresses the cache) for the FLOPs to count the same
    attention."""
    import torch
    import transformers
    from torch.utils.flop_counter import FlopCounterMode
    from transformers.models.deepseek_v3 import modeling_deepseek_v3 as ds

    heads, n, r, v, c, d = 4, 8, 8, 12, 16, 64
    config = transformers.AutoConfig.for_model(
        "deepseek_v3", attn_implementation="eager", hidden_size=d, num_attention_heads=heads, num_key_value_heads=heads,
        kv_lora_rank=c, q_lora_rank=q_lora, qk_rope_head_dim=r, qk_nope_head_dim=n, v_head_dim=v,
        rope_interleave=interleave, attention_bias=bias, max_position_embeddings=64)
    torch.manual_seed(0)
    attn = ds.DeepseekV3Attention(config, 0).eval()
    rotary = ds.DeepseekV3RotaryEmbedding(config)
    x = torch.randn(batch, past + new, d)

    def positions(start: int, end: int):
        return rotary(x, torch.arange(start, end)[None].expand(batch, -1))

    cache = transformers.DynamicCache()
    mask = torch.full((new, past + new), float("-inf")).triu(past + 1)[None, None]   # new i sees keys 0..past + i
    with torch.no_grad():
        attn(x[:, :past], positions(0, past), torch.full((past, past), float("-inf")).triu(1)[None, None],
             past_key_values=cache)
        expected, _ = attn(x[:, past:], positions(past, past + new), mask, past_key_values=cache)
        latent, k_rot = cache.layers[0].keys, cache.layers[0].values        # [N, 1, P + k, r_kv], [N, 1, P + k, r]
        tokens = x[:, past:]
        cos, sin = positions(past, past + new)
        rotate = ds.apply_rotary_pos_emb_interleave if interleave else ds.apply_rotary_pos_emb
        with FlopCounterMode(display=False) as counter:
            q = attn.q_b_proj(attn.q_a_layernorm(attn.q_a_proj(tokens))) if q_lora else attn.q_proj(tokens)
            q_nope, q_rot = q.view(batch, new, heads, n + r).transpose(1, 2).split([n, r], dim=-1)
            attn.kv_a_proj_with_mqa(tokens)          # the new positions' latents (the cache holds them already)
            q_rot, _ = rotate(q_rot, q_rot[:, :1], cos, sin)
            w_uk, w_uv = attn.kv_b_proj.weight.view(heads, n + v, c).split([n, v], dim=1)   # [H, n, c], [H, v, c]
            q_latent = torch.einsum("bhld,hdc->bhlc", q_nope, w_uk)
            scores = (q_latent @ latent.transpose(2, 3) + q_rot @ k_rot.transpose(2, 3)) * attn.scaling
            out = torch.einsum("bhlc,hvc->bhlv", torch.softmax(scores + mask, dim=-1) @ latent, w_uv)
            result = attn.o_proj(out.transpose(1, 2).reshape(batch, new, heads * v))
    return (result - expected).abs().max().item(), counter.get_total_flops()


@pytest.mark.parametrize("q_lora, interleave, bias, past, new, batch", [
    (24, True, False, 5, 1, 1), (None, False, True, 7, 3, 2), (24, True, True, 1, 2, 1), (24, False, False, 12, 1, 2)])
def test_absorbed_decode_equals_a_reference_that_gives_transformers_output(q_lora, interleave, bias, past, new, batch):
    pytest.importorskip("transformers")
    error, flops = absorbed_reference(q_lora, interleave, bias, past, new, batch)
    assert error < 1e-5
    net = layercalc.load({"input": [new, 64], "batch": batch, "layers": [{
        "type": "latent_attention", "num_heads": 4, "kv_lora_rank": 16, "q_lora_rank": q_lora, "qk_nope_head_dim": 8,
        "qk_rope_head_dim": 8, "v_head_dim": 12, "causal": True, "absorb": True, "bias": bias,
        "rope_interleave": interleave}]})
    assert 2 * net.serving(past, new).decode.macs == flops


def test_deepseek_v3_absorbed_decode_by_hand():
    # per layer, one token after 8,191: q_a 7,168·1,536, q_b 1,536·128·192, kv_a 7,168·576, o 128·128·7,168, kv_b's
    # halves on the query and the output 512·128·256; QKᵀ over the latent and rotated key 128·8,192·(512 + 64),
    # A·V 128·8,192·512 — against 8,192·512·128·256 for decompressing the cache
    spec = spec_from_config(DEEPSEEK_V3, "config.json")
    spec = json.loads(json.dumps(spec).replace('"type": "latent_attention"', '"type": "latent_attention", '
                                                                             '"absorb": true'))
    serving = layercalc.load(spec).replace(dtype="bfloat16").serving(8191)
    attention = [e for e in serving.decode_report.layers if e.type == "latent_attention"]
    projections = 7168 * 1536 + 1536 * 128 * 192 + 7168 * 576 + 128 * 128 * 7168 + 512 * 128 * 256
    assert attention[0].macs == projections + 128 * 8192 * (512 + 64 + 512) == 1_327_955_968
    assert serving.decode.kv_cache_bytes == 575_668_224                    # the same latent cache
    assert serving.prefill is not None
    plain = imported(DEEPSEEK_V3).replace(dtype="bfloat16").serving(8191)
    assert plain.prefill is not None and serving.prefill.macs == plain.prefill.macs     # absorb: decode steps only


def test_a_decode_step_reads_the_chosen_experts_only():
    # DeepSeek-V3 in bf16, one token: every weight once but the embedding table (one row looked up) and, in each of
    # the 58 sparse layers, the 256 − 8 experts the token does not choose: the model card's 37,552,282,624 active
    # params − the table + a row, and the routers' 58·256 score-correction buffers
    serving = imported(DEEPSEEK_V3).replace(dtype="bfloat16").serving(100)
    assert serving.decode.weight_bytes_read == (37_552_282_624 - 129280 * 7168 + 7168 + 58 * 256) * 2
    # the prefill's 100 tokens may choose every expert: all of them are counted (at most min(E, T·k) experts)
    assert serving.prefill is not None
    assert serving.prefill.weight_bytes_read == (671_026_404_352 - 129280 * 7168 + 100 * 7168 + 58 * 256) * 2
    # two tokens of a tiny model: at most 2·2 of its 8 experts per sparse layer (2 of 3 layers; 3·64·16 each)
    tiny = imported(DEEPSEEK_CASES["deepseek_v3-lm"])
    one, two = tiny.serving(3, 1).decode, tiny.serving(3, 2).decode
    assert two.weight_bytes_read - one.weight_bytes_read == 4 * (2 * 2 * 3 * 64 * 16 + 64)    # (+ an embedding row)


def test_latent_attention_decode_needs_a_causal_mask():
    spec = {"input": [5, 64], "layers": [
        {"name": "mla", "type": "latent_attention", "num_heads": 4, "kv_lora_rank": 16, "qk_nope_head_dim": 8,
         "qk_rope_head_dim": 8, "v_head_dim": 8}]}
    with pytest.raises(LayerCalcError, match="no layer keeps a KV cache"):
        layercalc.load(spec).serving(3)
    causal = layercalc.load({**spec, "layers": [{**spec["layers"][0], "causal": True}]})
    assert causal.analyze().totals.kv_cache_bytes == 4 * 5 * (16 + 8)
    with pytest.raises(LayerCalcError, match=r"'mla'.*bidirectional"):
        layercalc.load({**spec, "layers": [{**spec["layers"][0], "name": "dec", "causal": True},
                                           spec["layers"][0]]}).serving(3)


def test_deepseek_explain_shows_the_latent_cache_and_the_decompression():
    out = cli("summary", "--explain", "--past", "9", "--width", "200", _config_file(DEEPSEEK_CASES["deepseek_v3-lm"]))
    assert "KV cache elements = the normalized latent and the rotated key of every position" in out
    assert "kv_b_proj decompresses all N·(P + L) = 1·(9 + 1) latents again: 12,800 MACs" in out   # 10·16·80


# ------------------------------------------------------------------------------------------------- T5

def t5_model(config: dict):
    transformers = pytest.importorskip("transformers")
    arguments = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    hf_config = transformers.AutoConfig.for_model("t5", attn_implementation="eager", **arguments)
    return getattr(transformers, config.get("architectures", ["T5Model"])[0])(hf_config).eval()


def t5_oracle(model, source: int, past: int, new: int, batch: int) -> dict[str, int]:
    """FlopCounterMode's FLOPs of the encoder, of the decoder's prefill (P tokens, the cross-attention's keys and
    values projected and cached) and of the decode step (k tokens, encoder_outputs and the cache given), and the
    cache's elements after each."""
    import torch
    import transformers
    from torch.utils.flop_counter import FlopCounterMode

    def counted(call):
        with FlopCounterMode(display=False) as counter:
            result = call()
        return result, counter.get_total_flops()

    def elements(cache):
        return cache_elements(cache.self_attention_cache), cache_elements(cache.cross_attention_cache)

    with torch.no_grad():
        ids = torch.randint(0, 100, (batch, source))
        encoded, encoder = counted(lambda: model.get_encoder()(input_ids=ids))
        cache = transformers.EncoderDecoderCache(transformers.DynamicCache(), transformers.DynamicCache())
        prompt, prefill = counted(lambda: model(encoder_outputs=encoded, past_key_values=cache, use_cache=True,
                                                decoder_input_ids=torch.randint(0, 100, (batch, past))))
        after_prefill = elements(prompt.past_key_values)
        step, decode = counted(lambda: model(encoder_outputs=encoded, past_key_values=prompt.past_key_values,
                                             use_cache=True, decoder_input_ids=torch.randint(0, 100, (batch, new))))
    return dict(encoder=encoder, prefill=prefill, decode=decode, prefill_cache=after_prefill,
                decode_cache=elements(step.past_key_values))


@pytest.mark.parametrize("case", list(T5_CASES))
def test_t5_decode_prefill_and_caches_equal_transformers(case):
    model = t5_model(T5_CASES[case])
    for source, past, new, batch in ((6, 1, 1, 1), (6, 3, 1, 2), (12, 7, 1, 1), (5, 5, 3, 1), (9, 4, 2, 2)):
        hf = t5_oracle(model, source, past, new, batch)
        net = imported(T5_CASES[case], batch).replace_inputs([[source], [past]])
        serving = net.serving(past, new)
        assert serving.prefill is not None
        assert 2 * serving.decode.macs == hf["decode"], (source, past, new, batch)
        assert 2 * serving.prefill.macs == hf["encoder"] + hf["prefill"], (source, past, new, batch)
        assert serving.prefill.kv_cache_bytes == 4 * sum(hf["prefill_cache"])
        assert serving.decode.kv_cache_bytes == 4 * sum(hf["decode_cache"])
        # by hand: decoder layers (2; v1.1: 3) × N × positions × 4 heads × 2·d_kv (8; v1.1: 6), self P + k, cross S
        layers, d_kv = T5_CASES[case].get("num_decoder_layers", 2), T5_CASES[case]["d_kv"]
        assert hf["decode_cache"] == (layers * batch * (past + new) * 4 * 2 * d_kv,
                                      layers * batch * source * 4 * 2 * d_kv)


def test_t5_decode_step_by_hand():
    # t5-lm: d_model 32, 4 heads of d_kv 8 (inner 32), d_ff 48, 2 + 2 layers, vocabulary 100; S = 6 encoder
    # positions, one token after P = 3. Per decoder layer: self-attention q, k, v, o 4·32·32 and QKᵀ + A·V
    # 4·(3 + 1)·(8 + 8); cross-attention q, o 2·32·32 (k and v from the cache) and 4·6·(8 + 8); the feed-forward
    # 2·32·48; the head 32·100. The encoder does not run.
    per_layer = 4 * 32 * 32 + 4 * 4 * 16 + 2 * 32 * 32 + 4 * 6 * 16 + 2 * 32 * 48
    serving = imported(T5_CASES["t5-lm"]).replace_inputs([[6], [3]]).serving(3)
    assert serving.decode.macs == 2 * per_layer + 32 * 100
    assert serving.decoded == ["decoder_input_ids"] and serving.fixed_inputs == {"input": [6]}
    report = serving.decode_report
    cross = report.layer("decoder.block.1.layer.1.EncDecAttention")
    assert cross.macs == 2 * 32 * 32 + 4 * 6 * 16 and cross.kv_cache_bytes == 4 * 6 * 4 * 16
    assert any("read from the cache; no k, v projections" in note for note in cross.notes)
    encoder = [e for e in report.layers if e.name.startswith("encoder.") or e.name == "shared"]
    assert encoder and all(e.macs == 0 and e.flops == 0 for e in encoder)
    assert all(e.notes == ["fixed: run at the prefill only"] for e in encoder)
    bias = report.layer("decoder.block.0.layer.0.SelfAttention.relative_attention_bias")
    assert bias.output_shape == [1, 4, 1, 3 + 1]
    # weights read: the decoder's layers (3 norms, self- and cross-attention, feed-forward per layer; the final
    # norm; its bias table 8·4), one row of the tied embedding, the tied head's whole table; not the encoder's
    weights = 2 * (3 * 32 + 8 * 32 * 32 + 2 * 32 * 48) + 32 + 8 * 4 + 32 + 100 * 32
    assert serving.decode.weight_bytes_read == 4 * weights
    assert serving.decode.kv_cache_bytes_read == serving.decode.kv_cache_bytes


def test_t5_base_decode_by_hand():
    # T5-base (d_model 768, 12 heads of 64, d_ff 3,072, 12 + 12 layers, vocabulary 32,128), 512 encoder tokens, one
    # token after 127: per decoder layer self-attention 4·768² + 12·128·128, cross-attention 2·768² + 12·512·128,
    # feed-forward 2·768·3,072; the tied head 768·32,128. Cache: 12 layers × (128 self + 512 cross) × 12·128 × 4 B
    serving = imported(T5_BASE).serving(127)
    per_layer = 4 * 768 ** 2 + 12 * 128 * 128 + 2 * 768 ** 2 + 12 * 512 * 128 + 2 * 768 * 3072
    assert serving.decode.macs == 12 * per_layer + 768 * 32128 == 135_561_216
    assert serving.decode.kv_cache_bytes == 12 * (128 + 512) * 12 * 128 * 4 == 47_185_920


def test_t5_prefill_is_the_forward_pass_with_the_cross_attention_cache():
    net = imported(T5_CASES["t5-lm"]).replace_inputs([[10], [4]])
    serving = net.serving(4, 2)
    forward = net.analyze().totals
    assert serving.prefill is not None
    assert (serving.prefill.macs, serving.prefill.flops) == (forward.macs, forward.flops)
    # the ordinary forward pass is the prefill: both count the decoder's self-attention cache (4 positions) and
    # the cross-attention's of the 10 encoder positions (2 layers × 4 heads × (8 + 8) × 4 B per position), and
    # both count the decoder's 4 tokens
    assert forward.kv_cache_bytes == serving.prefill.kv_cache_bytes == 4 * 2 * (4 + 10) * 4 * 16
    assert forward.tokens == serving.prefill_report.totals.tokens == 4
    assert forward.flops_per_token == serving.prefill.flops_per_token


def test_an_encoder_decoder_decode_needs_a_prompt_and_a_fixed_key_sequence():
    net = imported(T5_CASES["t5-lm"])
    with pytest.raises(LayerCalcError, match=r"past: got 0: the fixed input input \(not made by decoder_input_ids: an encoder's\) is .*past ≥ 1"):
        net.serving(0)
    # a cross-attention whose keys the decoded input makes too has no cache of its own to read
    spec = {"input": [6, 16], "layers": [
        {"name": "self", "type": "multi_head_attention", "num_heads": 2, "causal": True},
        {"name": "mix", "type": "linear", "out_features": 16, "inputs": ["input"]},
        {"name": "cross", "type": "multi_head_attention", "num_heads": 2, "inputs": ["self", "mix"]}]}
    with pytest.raises(LayerCalcError, match=r"'cross'.*attends from 'self' to 'mix', which is not fixed"):
        layercalc.load(spec).serving(3)


def test_a_hand_written_encoder_decoder_by_hand():
    # encoder: a linear on 5 source positions (fixed); decoder: causal self-attention on the decoded tokens, then
    # cross-attention to the encoder's output. A decode step of 2 after 3: the encoder's linear 0; self-attention
    # q, k, v, o 4·16·16 on 2 rows, 2 heads · 2 · (3 + 2) keys · (8 + 8); cross: q, o 2·16·16 on 2 rows and
    # 2·2·5·(8 + 8)
    net = layercalc.load({"input": [5, 16], "layers": [
        {"name": "encoder", "type": "linear", "out_features": 16},
        {"name": "target", "type": "extra_input", "shape": [4, 16]},
        {"name": "self", "type": "multi_head_attention", "num_heads": 2, "causal": True, "inputs": ["target"]},
        {"name": "cross", "type": "multi_head_attention", "num_heads": 2, "inputs": ["self", "encoder"]}]})
    serving = net.serving(3, 2)
    report = serving.decode_report
    assert report.layer("encoder").macs == 0
    assert report.layer("self").macs == 2 * 4 * 16 * 16 + 2 * 2 * 5 * 16
    assert report.layer("cross").macs == 2 * 2 * 16 * 16 + 2 * 2 * 5 * 16
    assert report.layer("cross").kv_cache_bytes == 4 * 5 * 2 * 16
    assert serving.decoded == ["target"] and serving.fixed_inputs == {"input": [5, 16]}
    # activations: the step makes target, self and cross ([1, 2, 16], 128 B each), the encoder's output [1, 5, 16]
    # (320 B, made at the prefill) stays resident for the cross-attention: peak 2·128 (a layer's input and output)
    # + 320
    assert report.layer("encoder").activation_bytes == 0 and report.totals.activation_bytes == 3 * 128
    assert report.totals.peak_activation_bytes == 2 * 128 + 320
    assert serving.prefill is not None
    assert serving.prefill.macs == 5 * 16 * 16 + 3 * 4 * 16 * 16 + 2 * 3 * 3 * 16 + 3 * 2 * 16 * 16 + 5 * 2 * 16 * 16 \
        + 2 * 3 * 5 * 16


# ------------------------------------------------------------------------------------------------- the reports

@pytest.mark.parametrize("source", ["zoo:gpt2", "deepseek", "t5"])
def test_serving_reports_hold_no_backward_figures_and_the_ordinary_one_does(source):
    net = {"zoo:gpt2": lambda: layercalc.zoo.load("gpt2"),
           "deepseek": lambda: imported(DEEPSEEK_CASES["deepseek_v3-lm"]),
           "t5": lambda: imported(T5_CASES["t5-lm"]).replace_inputs([[9], [5]])}[source]()
    serving = net.serving(5, 2)
    for report in (serving.decode_report, serving.prefill_report):
        t = report.totals
        assert (t.backward_flops, t.training_flops, t.backward_input_macs, t.saved_bytes) == (None,) * 4
        assert t.backward_unknown == [] and t.backward_flops_per_token is None
        assert all(e.backward_flops is None and e.saved_bytes is None for e in report.layers)
    # tokens: the decoded ones (T5's decoder tokens, not its encoder's 9)
    assert serving.decode_report.totals.tokens == 2 and serving.prefill_report.totals.tokens == 5
    assert serving.decode_report.totals.flops_per_token == serving.decode.flops / 2
    ordinary = net.replace_inputs([[5], *list(net.input_shapes().values())[1:]]).analyze().totals
    assert ordinary.backward_flops is not None and ordinary.training_flops is not None
    if source == "zoo:gpt2":
        assert ordinary.saved_bytes is not None


def _config_file(config: dict) -> str:
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder / "config.json")


def test_summary_past_json_has_null_backward_fields_and_the_ordinary_json_has_them():
    path = _config_file(T5_CASES["t5-lm"])
    data = json.loads(cli("summary", path, "--input", "6", "--input", "3", "--past", "3", "--format", "json"))
    assert data["totals"]["backward_flops"] is None and data["totals"]["saved_bytes"] is None
    assert all(layer["backward_flops"] is None for layer in data["layers"])
    assert data["serving"]["decoded"] == ["decoder_input_ids"]
    assert data["serving"]["fixed_inputs"] == {"input": [6]}
    ordinary = json.loads(cli("summary", path, "--input", "6", "--input", "3", "--format", "json"))
    assert ordinary["totals"]["backward_flops"] > 0 and "serving" not in ordinary


@pytest.mark.parametrize("config", [T5_CASES["t5-lm"], DEEPSEEK_CASES["deepseek_v3-lm"]], ids=["t5", "deepseek"])
def test_summary_past_of_these_networks_fits_80_columns(config):
    out = cli("summary", _config_file(config), "--past", "7", "--new-tokens", "2")
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "prefill" in out and "decode" in out
    if config is T5_CASES["t5-lm"]:
        flat = " ".join(out.split())
        assert "decode of 2 new tokens of decoder_input_ids after 7 cached positions (input [512] fixed" in flat
        assert "other input decoder_input_ids [1, 2]" in flat


def test_summary_past_refuses_backward_columns():
    out = cli("summary", "zoo:gpt2", "--past", "5", "--columns", "name,bwd,saved", code=2)
    assert len(out.strip().splitlines()) == 1
    assert "--columns backward_flops, saved cannot be combined with --past" in out
