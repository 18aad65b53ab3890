"""Hugging Face mixture-of-experts configs (layercalc/importers/huggingface/moe.py) against transformers itself:
mixtral, qwen2_moe, qwen3_moe and deepseek_v3.

As tests/test_import_huggingface.py, with transformers' **eager experts** (``experts_implementation="eager"``; its
default ``grouped_mm`` path is invisible to FlopCounterMode, tests/test_moe.py) and eager attention: total params,
params per layer, ``2·MACs`` = FlopCounterMode, output shapes, the executor's output on the model's weights. The
published sizes are built on PyTorch's meta device from the model cards' config.json values; the active parameters
are derived by hand from the same values (total − the unchosen experts of every sparse layer).
"""

from __future__ import annotations

import pytest
from test_import_huggingface import (
    assert_executor_gives_the_models_outputs,
    hf_input,
    hf_outputs,
    imported,
    output_shapes,
    params_by_layer,
)

from layercalc import LayerCalcError
from layercalc.importers.huggingface import spec_from_config


def hf_model(config: dict, meta: bool = False):
    """The transformers model of a config dict, eager attention and eager experts."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    arguments = {k: v for k, v in config.items() if k not in ("model_type", "architectures", "_name_or_path")}
    hf_config = transformers.AutoConfig.for_model(config["model_type"], attn_implementation="eager",
                                                  experts_implementation="eager", **arguments)
    architecture = (config.get("architectures") or [None])[0]
    with torch.device("meta" if meta else "cpu"):
        model = (getattr(transformers, architecture)(hf_config) if architecture
                 else transformers.AutoModel.from_config(hf_config))
    return model.eval()


SMALL = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=3,
             intermediate_size=96, max_position_embeddings=32, vocab_size=100)
MIXTRAL = dict(SMALL, model_type="mixtral", num_local_experts=4, num_experts_per_tok=2)
QWEN2_MOE = dict(SMALL, model_type="qwen2_moe", num_experts=6, num_experts_per_tok=2, moe_intermediate_size=32,
                 shared_expert_intermediate_size=48)
QWEN3_MOE = dict(SMALL, model_type="qwen3_moe", num_experts=8, num_experts_per_tok=3, moe_intermediate_size=24,
                 head_dim=24, norm_topk_prob=True)
DEEPSEEK = dict(SMALL, model_type="deepseek_v3", num_key_value_heads=4, n_routed_experts=8, num_experts_per_tok=2,
                moe_intermediate_size=16, n_shared_experts=2, n_group=2, topk_group=1, first_k_dense_replace=1,
                kv_lora_rank=16, q_lora_rank=24, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=12)

CASES = {
    "mixtral-base": MIXTRAL,
    "mixtral-lm": dict(MIXTRAL, architectures=["MixtralForCausalLM"]),
    "mixtral-sequence": dict(MIXTRAL, architectures=["MixtralForSequenceClassification"], num_labels=3),
    "mixtral-token": dict(MIXTRAL, architectures=["MixtralForTokenClassification"], num_labels=5),
    "mixtral-qa": dict(MIXTRAL, architectures=["MixtralForQuestionAnswering"]),
    "qwen2_moe-base": QWEN2_MOE,
    "qwen2_moe-lm-sparse-step-dense-layer": dict(QWEN2_MOE, architectures=["Qwen2MoeForCausalLM"],
                                                 decoder_sparse_step=2, mlp_only_layers=[2], norm_topk_prob=True),
    "qwen2_moe-sequence": dict(QWEN2_MOE, architectures=["Qwen2MoeForSequenceClassification"], num_labels=3),
    "qwen2_moe-token": dict(QWEN2_MOE, architectures=["Qwen2MoeForTokenClassification"], num_labels=4),
    "qwen2_moe-qa": dict(QWEN2_MOE, architectures=["Qwen2MoeForQuestionAnswering"]),
    "qwen3_moe-base": QWEN3_MOE,
    "qwen3_moe-lm-tied-dense-first": dict(QWEN3_MOE, architectures=["Qwen3MoeForCausalLM"], mlp_only_layers=[0],
                                          tie_word_embeddings=True),
    "qwen3_moe-sequence": dict(QWEN3_MOE, architectures=["Qwen3MoeForSequenceClassification"], num_labels=2),
    "qwen3_moe-token": dict(QWEN3_MOE, architectures=["Qwen3MoeForTokenClassification"], num_labels=3),
    "qwen3_moe-qa": dict(QWEN3_MOE, architectures=["Qwen3MoeForQuestionAnswering"]),
    "deepseek_v3-base": DEEPSEEK,
    "deepseek_v3-lm": dict(DEEPSEEK, architectures=["DeepseekV3ForCausalLM"]),
    "deepseek_v3-lm-no-q-lora-bias-rotate-half": dict(DEEPSEEK, architectures=["DeepseekV3ForCausalLM"],
                                                      q_lora_rank=None, attention_bias=True, rope_interleave=False),
    "deepseek_v3-sequence": dict(DEEPSEEK, architectures=["DeepseekV3ForSequenceClassification"], num_labels=3),
    "deepseek_v3-token": dict(DEEPSEEK, architectures=["DeepseekV3ForTokenClassification"], num_labels=3),
}




def _params(cases):
    return list(cases)


@pytest.mark.parametrize("case", _params(CASES))
def test_small_config_params_per_layer_macs_and_output_shape(case):
    from oracle_helpers import hf_counts

    config = CASES[case]
    model = hf_model(config)
    x = hf_input(config)
    params, flops = hf_counts(model, x)
    report = imported(config).analyze()
    assert report.totals.params == params
    assert report.totals.buffers == sum(b.numel() for name, b in model.named_buffers()
                                        if name.endswith("e_score_correction_bias"))
    assert 2 * report.totals.macs == flops
    ours = {entry.name: entry.params for entry in report.layers if entry.params}
    assert params_by_layer(model, [entry.name for entry in report.layers]) == ours
    import torch
    with torch.no_grad():
        expected = [list(t.shape) for t in hf_outputs(model(x))]
    assert output_shapes(report) == expected


EXECUTED = ["mixtral-lm", "qwen2_moe-lm-sparse-step-dense-layer", "qwen2_moe-base", "qwen3_moe-lm-tied-dense-first",
            "deepseek_v3-lm", "deepseek_v3-lm-no-q-lora-bias-rotate-half"]


@pytest.mark.parametrize("case", _params(EXECUTED))
def test_executor_on_the_models_weights_gives_its_output(case):
    torch = pytest.importorskip("torch")
    config = CASES[case]
    torch.manual_seed(0)
    model = hf_model(config)
    with torch.no_grad():                     # routers and correction biases of scale 1: choices that matter
        for name, tensor in model.named_parameters():
            if name.endswith("mlp.gate.weight"):
                tensor.normal_(0, 1.0)
        for name, tensor in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                tensor.normal_(0, 0.1)
    assert_executor_gives_the_models_outputs(config, model)


# ------------------------------------------------------------------------------------------ published sizes

#: the model cards' config.json values (the keys that bear on the sizes)
MIXTRAL_8X7B = dict(model_type="mixtral", architectures=["MixtralForCausalLM"], hidden_size=4096,
                    intermediate_size=14336, max_position_embeddings=32768, num_attention_heads=32,
                    num_experts_per_tok=2, num_hidden_layers=32, num_key_value_heads=8, num_local_experts=8,
                    rms_norm_eps=1e-5, rope_theta=1e6, tie_word_embeddings=False, vocab_size=32000, hidden_act="silu")
QWEN3_30B_A3B = dict(model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"], attention_bias=False,
                     decoder_sparse_step=1, head_dim=128, hidden_act="silu", hidden_size=2048,
                     intermediate_size=6144, max_position_embeddings=40960, mlp_only_layers=[],
                     moe_intermediate_size=768, norm_topk_prob=True, num_attention_heads=32, num_experts=128,
                     num_experts_per_tok=8, num_hidden_layers=48, num_key_value_heads=4, rms_norm_eps=1e-6,
                     rope_theta=1e6, tie_word_embeddings=False, vocab_size=151936)
DEEPSEEK_V3 = dict(model_type="deepseek_v3", architectures=["DeepseekV3ForCausalLM"], first_k_dense_replace=3,
                   hidden_act="silu", hidden_size=7168, intermediate_size=18432, kv_lora_rank=512,
                   max_position_embeddings=163840, moe_intermediate_size=2048, moe_layer_freq=1, n_group=8,
                   n_routed_experts=256, n_shared_experts=1, norm_topk_prob=True, num_attention_heads=128,
                   num_experts_per_tok=8, num_hidden_layers=61, num_key_value_heads=128, num_nextn_predict_layers=1,
                   q_lora_rank=1536, qk_nope_head_dim=128, qk_rope_head_dim=64, rms_norm_eps=1e-6,
                   rope_scaling={"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0,
                                 "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096, "type": "yarn"},
                   rope_theta=10000, routed_scaling_factor=2.5, scoring_func="sigmoid", topk_group=4,
                   topk_method="noaux_tc", tie_word_embeddings=False, v_head_dim=128, vocab_size=129280,
                   attention_bias=False)

PUBLISHED = [
    # (config, total params, active params, buffers): active = total − sparse layers·(E − k)·3·d·F, by hand
    pytest.param(MIXTRAL_8X7B, 46_702_792_704, 46_702_792_704 - 32 * (8 - 2) * 3 * 4096 * 14336, 0, id="mixtral"),
    pytest.param(QWEN3_30B_A3B, 30_532_122_624, 30_532_122_624 - 48 * (128 - 8) * 3 * 2048 * 768, 0,
                 id="qwen3_moe"),
    # the Hub's 671,026,419,200 counts the routers' e_score_correction_bias buffers too: 58·256 = 14,848
    pytest.param(DEEPSEEK_V3, 671_026_404_352, 671_026_404_352 - 58 * (256 - 8) * 3 * 7168 * 2048, 58 * 256,
                 id="deepseek_v3"),
]


@pytest.mark.parametrize("config, total, active, buffers", PUBLISHED)
def test_published_sizes(config, total, active, buffers):
    model = hf_model(config, meta=True)
    assert sum(p.numel() for p in model.parameters()) == total
    assert sum(b.numel() for name, b in model.named_buffers() if name.endswith("e_score_correction_bias")) == buffers
    report = imported(config, tokens=16).analyze()
    assert (report.totals.params, report.totals.active_params, report.totals.buffers) == (total, active, buffers)
    assert report.totals.params + report.totals.buffers == total + buffers


def test_model_card_active_figures():
    """The active counts the model cards state: Mixtral-8x7B 12.9B, Qwen3-30B-A3B 3.3B, DeepSeek-V3 37B."""
    mixtral = imported(MIXTRAL_8X7B, tokens=16).analyze().totals
    deepseek = imported(DEEPSEEK_V3, tokens=16).analyze().totals
    assert mixtral.active_params == 12_879_925_248
    assert deepseek.active_params == 37_552_282_624
    assert imported(QWEN3_30B_A3B, tokens=16).analyze().totals.active_params == 3_353_032_704


@pytest.mark.parametrize("change, message", [
    (dict(num_experts_per_tok=9), "'num_experts_per_tok': got 9: more than the 8 experts"),
    (dict(scoring_func="softmax"), "'scoring_func': got 'softmax'"),
    (dict(topk_method="greedy"), "'topk_method': got 'greedy'"),
    (dict(moe_layer_freq=2), "'moe_layer_freq': got 2"),
    (dict(num_key_value_heads=2), "'num_key_value_heads': got 2"),
    (dict(n_group=3), "'n_group'"),
    (dict(hidden_act="quick_gelu"), "'hidden_act': got 'quick_gelu'"),
])
def test_refusals_name_the_key(change, message):
    with pytest.raises(LayerCalcError, match=message) as caught:
        spec_from_config(dict(DEEPSEEK, **change), "config.json")
    assert "\n" not in str(caught.value)


def test_mlp_only_layers_must_be_indices():
    with pytest.raises(LayerCalcError, match="'mlp_only_layers': got 'all'"):
        spec_from_config(dict(QWEN2_MOE, mlp_only_layers="all"), "config.json")
