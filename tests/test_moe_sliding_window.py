"""The sliding windows of the mixture-of-experts decoders, against transformers 5 measured in the test: Mixtral's
``sliding_window`` and Qwen3-MoE's (with ``use_sliding_window``) apply to every layer — the KV cache keeps the last
``window − 1`` positions and a decode step attends to at most ``window − 1 + k`` keys; Qwen2-MoE's per-layer windows
are refused in one line rather than counted as full attention (the oracles of tests/test_qwen2_sliding_window.py)."""

from __future__ import annotations

import pytest
from test_import_huggingface_moe import MIXTRAL, hf_model
from test_qwen2_sliding_window import decode_oracle

import layercalc
from layercalc import LayerCalcError
from layercalc.importers.huggingface import spec_from_config

pytest.importorskip("transformers")

SMALL = dict(hidden_size=24, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, intermediate_size=20,
             max_position_embeddings=64, vocab_size=90)
CASES = {
    "mixtral-w5": dict(MIXTRAL, **SMALL, sliding_window=5, architectures=["MixtralForCausalLM"]),
    "qwen3_moe-w4": dict(SMALL, model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"], num_experts=4,
                         num_experts_per_tok=2, moe_intermediate_size=12, use_sliding_window=True, sliding_window=4),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("past, new, batch", [(2, 1, 1), (9, 3, 2), (20, 1, 1)])
def test_kv_cache_and_decode_equal_transformers(case, past, new, batch):
    config = CASES[case]
    model = hf_model(config)
    before, flops, after = decode_oracle(model, past, new, batch)
    net = layercalc.load(spec_from_config(config, "config.json")).replace(batch=batch)
    serving = net.serving(past, new)
    assert serving.prefill.kv_cache_bytes == before * 4
    assert serving.decode.kv_cache_bytes == after * 4
    assert 2 * serving.decode.macs == flops
    # by hand: L layers · batch · kv heads · (d_k + d_v) · the positions kept (all below the window, else w − 1)
    window, layers, kv, head = config["sliding_window"], 2, 2, 24 // 4
    assert after == layers * batch * kv * 2 * head * min(past + new, window - 1)


def test_a_window_is_every_layers_attention():
    for case, config in CASES.items():
        net = layercalc.load(spec_from_config(config, "config.json"))
        windows = [layer.sliding_window for layer in net.layers if layer.type == "multi_head_attention"]
        assert windows == [config["sliding_window"]] * 2, case
    plain = dict(CASES["qwen3_moe-w4"], use_sliding_window=False)
    assert [layer.sliding_window for layer in layercalc.load(spec_from_config(plain, "config.json")).layers
            if layer.type == "multi_head_attention"] == [None, None]


def test_qwen2_moe_per_layer_windows_are_refused_in_one_line():
    config = dict(SMALL, model_type="qwen2_moe", architectures=["Qwen2MoeForCausalLM"], num_experts=4,
                  num_experts_per_tok=2, moe_intermediate_size=12, shared_expert_intermediate_size=16,
                  use_sliding_window=True, sliding_window=4, max_window_layers=2)
    with pytest.raises(LayerCalcError) as error:
        spec_from_config(config, "config.json")
    message = str(error.value)
    assert "\n" not in message and "use_sliding_window" in message and "supported: false" in message
