"""Hugging Face dense decoders (qwen3, gemma, gemma2, gemma3_text, phi3, gpt_neox, opt) against transformers.

The oracle, as in tests/test_import_huggingface.py: the transformers model built from the same config dict (random
weights, eager attention, no download) gives the total and per-module parameters, FlopCounterMode's 2·MACs and the
output shapes; for the executed cases the executor, on the model's own state_dict, gives its output. The published
sizes are transformers' ``parameters()`` on the meta device for the published config values written below.
"""

from __future__ import annotations

import pytest
from test_import_huggingface import (
    TOKENS,
    assert_counts_agree,
    assert_executor_gives_the_models_outputs,
    cli,
    hf_input,
    hf_model,
    hf_outputs,
    imported,
    write_config,
)

from layercalc import LayerCalcError
from layercalc.importers.huggingface import header_notes, spec_from_config

SMALL = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
             intermediate_size=96, max_position_embeddings=32, vocab_size=100)
QWEN3 = dict(SMALL, model_type="qwen3", head_dim=24)
GEMMA = dict(SMALL, model_type="gemma", head_dim=16, pad_token_id=0, bos_token_id=2, eos_token_id=1)
GEMMA2 = dict(GEMMA, model_type="gemma2", num_hidden_layers=3, query_pre_attn_scalar=24, sliding_window=4,
              attn_logit_softcapping=2.0, final_logit_softcapping=3.0)
GEMMA3 = dict(GEMMA, model_type="gemma3_text", num_hidden_layers=4, query_pre_attn_scalar=24, sliding_window=3,
              sliding_window_pattern=3, rope_theta=50000.0, rope_local_base_freq=500.0)
PHI3 = dict(SMALL, model_type="phi3", pad_token_id=0, bos_token_id=1, eos_token_id=2)
NEOX = dict(model_type="gpt_neox", hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=96,
            max_position_embeddings=32, vocab_size=100, rotary_pct=0.5)
OPT = dict(model_type="opt", hidden_size=64, num_attention_heads=4, num_hidden_layers=2, ffn_dim=96,
           max_position_embeddings=32, vocab_size=100, pad_token_id=1, bos_token_id=2, eos_token_id=2)

CASES = {
    "qwen3-base": QWEN3,
    "qwen3-lm": dict(QWEN3, architectures=["Qwen3ForCausalLM"]),
    "qwen3-lm-tied-bias-sliding": dict(QWEN3, architectures=["Qwen3ForCausalLM"], tie_word_embeddings=True,
                                       attention_bias=True, use_sliding_window=True, sliding_window=4,
                                       max_window_layers=1),
    "qwen3-sequence": dict(QWEN3, architectures=["Qwen3ForSequenceClassification"], num_labels=3),
    "qwen3-token": dict(QWEN3, architectures=["Qwen3ForTokenClassification"], num_labels=5),
    "qwen3-qa": dict(QWEN3, architectures=["Qwen3ForQuestionAnswering"]),
    "gemma-base": GEMMA,
    "gemma-lm": dict(GEMMA, architectures=["GemmaForCausalLM"]),
    "gemma-lm-legacy-gelu-mha": dict(GEMMA, architectures=["GemmaForCausalLM"], hidden_act="gelu",
                                     num_key_value_heads=4),
    "gemma-sequence": dict(GEMMA, architectures=["GemmaForSequenceClassification"], num_labels=3),
    "gemma-token": dict(GEMMA, architectures=["GemmaForTokenClassification"], num_labels=5),
    "gemma2-base": GEMMA2,
    "gemma2-lm": dict(GEMMA2, architectures=["Gemma2ForCausalLM"]),
    "gemma2-lm-no-softcap": dict(GEMMA2, architectures=["Gemma2ForCausalLM"], attn_logit_softcapping=None,
                                 final_logit_softcapping=None),
    "gemma2-sequence": dict(GEMMA2, architectures=["Gemma2ForSequenceClassification"], num_labels=3),
    "gemma2-token": dict(GEMMA2, architectures=["Gemma2ForTokenClassification"], num_labels=5),
    "gemma3-base": GEMMA3,
    "gemma3-lm": dict(GEMMA3, architectures=["Gemma3ForCausalLM"]),
    "gemma3-lm-softcap-scaled-rope": dict(GEMMA3, architectures=["Gemma3ForCausalLM"], final_logit_softcapping=3.0,
                                          rope_scaling={"rope_type": "linear", "factor": 8.0}),
    "gemma3-lm-softcap": dict(GEMMA3, architectures=["Gemma3ForCausalLM"], final_logit_softcapping=3.0),
    "gemma3-sequence": dict(GEMMA3, architectures=["Gemma3TextForSequenceClassification"], num_labels=3),
    "phi3-base": PHI3,
    "phi3-lm": dict(PHI3, architectures=["Phi3ForCausalLM"]),
    "phi3-lm-partial-rotary-window-mha": dict(PHI3, architectures=["Phi3ForCausalLM"], partial_rotary_factor=0.5,
                                              sliding_window=5, num_key_value_heads=4),
    "phi3-sequence": dict(PHI3, architectures=["Phi3ForSequenceClassification"], num_labels=3),
    "phi3-token": dict(PHI3, architectures=["Phi3ForTokenClassification"], num_labels=5),
    "neox-base": NEOX,
    "neox-lm": dict(NEOX, architectures=["GPTNeoXForCausalLM"]),
    "neox-lm-sequential-no-bias-full-rotary": dict(NEOX, architectures=["GPTNeoXForCausalLM"], rotary_pct=1.0,
                                                   use_parallel_residual=False, attention_bias=False,
                                                   rotary_emb_base=500.0, tie_word_embeddings=True),
    "neox-sequence": dict(NEOX, architectures=["GPTNeoXForSequenceClassification"], num_labels=3),
    "neox-token": dict(NEOX, architectures=["GPTNeoXForTokenClassification"], num_labels=5),
    "neox-qa": dict(NEOX, architectures=["GPTNeoXForQuestionAnswering"]),
    "opt-base": OPT,
    "opt-lm": dict(OPT, architectures=["OPTForCausalLM"]),
    "opt-lm-350m-like": dict(OPT, architectures=["OPTForCausalLM"], word_embed_proj_dim=32,
                             do_layer_norm_before=False, activation_function="gelu"),
    "opt-lm-no-bias-no-affine-untied": dict(OPT, architectures=["OPTForCausalLM"], enable_bias=False,
                                            layer_norm_elementwise_affine=False, tie_word_embeddings=False),
    "opt-sequence": dict(OPT, architectures=["OPTForSequenceClassification"], num_labels=3),
    "opt-qa": dict(OPT, architectures=["OPTForQuestionAnswering"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_small_config_params_per_layer_macs_and_output_shape(case):
    assert_counts_agree(CASES[case])


#: each family's LM head (tied and untied), and the forms that change values: q/k norms (Qwen3, Gemma 3), scaled
#: embedding and 1 + γ norms (Gemma), soft-capping, query_pre_attn_scalar and sliding windows shorter than the input
#: (Gemma 2, Gemma 3, Phi-3, Qwen3), local rope_theta (Gemma 3), fused qkv/gate_up (Phi-3), partial rotary and
#: parallel residual with the per-head [q, k, v] rows (GPT-NeoX), positions at offset 2 and project_in/out (OPT).
#: Not a scaled rope_type: the executor rotates by the plain angles (docs/importers.md)
EXECUTED = ["qwen3-lm", "qwen3-lm-tied-bias-sliding", "gemma-lm", "gemma-lm-legacy-gelu-mha", "gemma2-lm",
            "gemma3-lm-softcap", "gemma3-base", "phi3-lm", "phi3-lm-partial-rotary-window-mha",
            "neox-lm", "neox-lm-sequential-no-bias-full-rotary", "opt-lm", "opt-lm-350m-like",
            "opt-lm-no-bias-no-affine-untied"]


@pytest.mark.parametrize("case", EXECUTED)
def test_executor_on_the_models_weights_gives_its_output(case):
    torch = pytest.importorskip("torch")
    config = CASES[case]
    torch.manual_seed(0)
    model = hf_model(config)
    with torch.no_grad():                  # Gemma's norms start at 0 (scale 1 + 0): give them values to check
        for name, tensor in model.named_parameters():
            if name.endswith("norm.weight"):
                tensor.uniform_(-0.5, 0.5)
    assert_executor_gives_the_models_outputs(config, model)


@pytest.mark.parametrize("case", ["phi3-lm-partial-rotary-window-mha", "neox-lm", "opt-lm-350m-like", "qwen3-lm"])
def test_layercalc_run_reads_the_state_dict_saved_as_npz(case, tmp_path):
    """``layercalc run config.json --weights state_dict.npz``: the keys as transformers saves them (fused qkv_proj,
    query_key_value, out_proj, q_norm …) mapped by the importer; the output is the model's."""
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    config = CASES[case]
    torch.manual_seed(0)
    model = hf_model(config)
    tokens = config["max_position_embeddings"]                 # run takes the spec's input: the default length
    x = hf_input(config, tokens=tokens)
    with torch.no_grad():
        expected = hf_outputs(model(x))[0].numpy()
    np.savez(tmp_path / "model.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    np.save(tmp_path / "x.npy", x.numpy().astype(np.float32))
    cli("run", write_config(tmp_path, config), "--input", tmp_path / "x.npy", "--weights", tmp_path / "model.npz",
        "--output", tmp_path / "y.npy")
    ours = np.load(tmp_path / "y.npy")
    assert ours.shape == expected.shape
    assert np.max(np.abs(ours - expected)) <= 1e-4 * np.max(np.abs(expected))


def test_the_sliding_window_matters_in_the_executed_cases():
    """The executed windows (4, 3, 5 positions) are shorter than the 8 tokens: full causal attention would differ."""
    for case in ("qwen3-lm-tied-bias-sliding", "gemma2-lm", "gemma3-base", "phi3-lm-partial-rotary-window-mha"):
        windows = {layer.sliding_window for layer in imported(CASES[case]).layers
                   if getattr(layer, "sliding_window", None)}
        assert windows and max(windows) < TOKENS, case


# ---------------------------------------------------------------------------------------- published sizes

#: the published config values (config.json on the Hub) of each model, as the test writes them
PUBLISHED = {
    "Qwen/Qwen3-8B": (dict(model_type="qwen3", architectures=["Qwen3ForCausalLM"], hidden_size=4096,
                           intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                           num_key_value_heads=8, head_dim=128, max_position_embeddings=40960, vocab_size=151936,
                           rms_norm_eps=1e-6, rope_theta=1000000, tie_word_embeddings=False, attention_bias=False,
                           use_sliding_window=False, sliding_window=None, max_window_layers=36,
                           hidden_act="silu"), 8_190_735_360),
    "google/gemma-2-9b": (dict(model_type="gemma2", architectures=["Gemma2ForCausalLM"], hidden_size=3584,
                               intermediate_size=14336, num_hidden_layers=42, num_attention_heads=16,
                               num_key_value_heads=8, head_dim=256, max_position_embeddings=8192, vocab_size=256000,
                               rms_norm_eps=1e-6, rope_theta=10000.0, query_pre_attn_scalar=256, sliding_window=4096,
                               attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                               hidden_activation="gelu_pytorch_tanh", hidden_act="gelu_pytorch_tanh",
                               attention_bias=False, pad_token_id=0, bos_token_id=2, eos_token_id=1),
                          9_241_705_984),
    "google/gemma-3-4b (text)": (dict(model_type="gemma3_text", architectures=["Gemma3ForCausalLM"], hidden_size=2560,
                                      intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
                                      num_key_value_heads=4, head_dim=256, max_position_embeddings=131072,
                                      vocab_size=262208, rms_norm_eps=1e-6, query_pre_attn_scalar=256,
                                      sliding_window=1024, rope_theta=1000000.0, rope_local_base_freq=10000.0,
                                      rope_scaling={"factor": 8.0, "rope_type": "linear"},
                                      final_logit_softcapping=None, attn_logit_softcapping=None,
                                      hidden_activation="gelu_pytorch_tanh"), 3_880_263_168),
    "microsoft/Phi-3-mini-4k-instruct": (dict(model_type="phi3", architectures=["Phi3ForCausalLM"], hidden_size=3072,
                                              intermediate_size=8192, num_hidden_layers=32, num_attention_heads=32,
                                              num_key_value_heads=32, max_position_embeddings=4096,
                                              original_max_position_embeddings=4096, vocab_size=32064,
                                              rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None,
                                              sliding_window=2047, hidden_act="silu", tie_word_embeddings=False,
                                              pad_token_id=32000, bos_token_id=1, eos_token_id=32000),
                                         3_821_079_552),
    "EleutherAI/pythia-1.4b": (dict(model_type="gpt_neox", architectures=["GPTNeoXForCausalLM"], hidden_size=2048,
                                    intermediate_size=8192, num_hidden_layers=24, num_attention_heads=16,
                                    max_position_embeddings=2048, vocab_size=50304, rotary_pct=0.25,
                                    rotary_emb_base=10000, use_parallel_residual=True, layer_norm_eps=1e-5,
                                    hidden_act="gelu", tie_word_embeddings=False, bos_token_id=0, eos_token_id=0),
                               1_414_647_808),
    "facebook/opt-1.3b": (dict(model_type="opt", architectures=["OPTForCausalLM"], hidden_size=2048, ffn_dim=8192,
                               num_hidden_layers=24, num_attention_heads=32, max_position_embeddings=2048,
                               vocab_size=50272, word_embed_proj_dim=2048, do_layer_norm_before=True,
                               activation_function="relu", enable_bias=True, pad_token_id=1, bos_token_id=2,
                               eos_token_id=2), 1_315_758_080),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_sizes_are_transformers_on_the_meta_device(name):
    config, published = PUBLISHED[name]
    model = hf_model(config, meta=True)
    assert sum(p.numel() for p in model.parameters()) == published       # the oracle is the published figure
    assert imported(config).analyze().totals.params == published
    assert_counts_agree(config, meta=True, tokens=16)


# ------------------------------------------------------------------------------------------------- refusals

REFUSED = {
    "gemma bidirectional": (dict(GEMMA, use_bidirectional_attention=True), "'use_bidirectional_attention'"),
    "gemma2 layer_types": (dict(GEMMA2, layer_types=["sliding_attention"]), "'layer_types'"),
    "gemma2 heads": (dict(GEMMA2, num_attention_heads=6, num_key_value_heads=3), "'hidden_size'"),
    "phi3 rope type": (dict(PHI3, rope_scaling={"rope_type": "llama3", "factor": 8.0}), "'rope_scaling'"),
    "phi3 odd rotary": (dict(PHI3, partial_rotary_factor=0.1), "'partial_rotary_factor'"),
    "neox rotary_pct": (dict(NEOX, rotary_pct=1.5), "'rotary_pct'"),
    "neox odd rotary": (dict(NEOX, rotary_pct=0.2), "'rotary_pct'"),
    "opt activation": (dict(OPT, activation_function="quick_gelu"), "'activation_function'"),
    "qwen3 kv heads": (dict(QWEN3, num_key_value_heads=3), "'num_key_value_heads'"),
    "opt heads": (dict(OPT, num_attention_heads=5), "'hidden_size'"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_unsupported_configs_are_refused_naming_the_key(case):
    config, key = REFUSED[case]
    with pytest.raises(LayerCalcError) as error:
        spec_from_config(config, "config.json")
    message = str(error.value)
    assert "\n" not in message and key in message and "config.json" in message


def test_header_notes_name_windows_and_scaled_angles():
    notes = header_notes(CASES["gemma3-lm-softcap-scaled-rope"])
    assert any("sliding_window 3" in line and "counted in full" in line for line in notes)
    assert any("rope_type linear" in line for line in notes)


def test_gemma3_local_and_global_layers_rotate_by_their_own_theta():
    layers = {layer.name: layer for layer in imported(GEMMA3).layers}
    # sliding_window_pattern 3: layers 0, 1 local, 2 global, 3 local
    assert [layers[f"layers.{i}.self_attn"].rope_theta for i in range(4)] == [500.0, 500.0, 50000.0, 500.0]
    assert [layers[f"layers.{i}.self_attn"].sliding_window for i in range(4)] == [3, 3, None, 3]


def test_every_architecture_is_covered():
    from layercalc.importers.huggingface.dense import FAMILIES

    covered = {(c["model_type"], (c.get("architectures") or [FAMILIES[c["model_type"]].base])[0])
               for c in CASES.values()}
    supported = {(t, a) for t, family in FAMILIES.items() for a in family.builders}
    assert supported - covered == set()


@pytest.mark.parametrize("case", list(CASES))
def test_the_config_transformers_saves_builds_the_same_network(case):
    """transformers 5 writes its own spellings back (``rope_parameters``, per layer type for Gemma 3;
    ``layer_types``; ``partial_rotary_factor`` for ``rotary_pct``): the saved config.json builds the same layers."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import json

    config = CASES[case]
    arguments = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    saved = json.loads(transformers.AutoConfig.for_model(config["model_type"], **arguments).to_json_string())
    saved["architectures"] = config.get("architectures")
    ours, theirs = spec_from_config(config, "config.json"), spec_from_config(saved, "saved.json")
    assert (theirs["layers"], theirs["blocks"], theirs["input"]) == (ours["layers"], ours["blocks"], ours["input"])


#: keys the dense families read that their published configs may leave out
OPTIONAL_KEYS = ["head_dim", "rope_parameters", "rope_scaling", "partial_rotary_factor", "num_labels", "layer_types",
                 "sliding_window", "use_sliding_window", "max_window_layers", "sliding_window_pattern",
                 "rope_local_base_freq", "query_pre_attn_scalar", "attn_logit_softcapping", "final_logit_softcapping",
                 "use_bidirectional_attention", "rotary_pct", "rotary_emb_base", "use_parallel_residual",
                 "word_embed_proj_dim", "do_layer_norm_before", "_remove_final_layer_norm", "enable_bias",
                 "layer_norm_elementwise_affine", "attention_bias", "token_classification_bias", "hidden_act",
                 "hidden_activation", "tie_word_embeddings", "architectures"]
HOSTILE = {"a list": [1, 2], "a mapping": {"a": 1}, "a string": "12", "a negative number": -3, "2**70": 2 ** 70,
           "NaN": float("nan"), "infinity": float("inf"), "a fraction": 2.5, "true": True, "zero": 0, "null": None,
           "2**53 as a float": 9007199254740993.0}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_every_key_set_to_a_hostile_value_is_read_or_refused_by_name(name):
    import layercalc

    base = dict(PUBLISHED[name][0], num_hidden_layers=2)
    layercalc.load(spec_from_config(base, "config.json")).replace(input=[16]).analyze()
    refused = 0
    for key in sorted(set(base) | set(OPTIONAL_KEYS)):
        for kind, value in HOSTILE.items():
            try:
                layercalc.load(spec_from_config({**base, key: value}, "config.json")).replace(input=[16]).analyze()
            except LayerCalcError as exc:
                refused += 1
                message = str(exc)
                assert "\n" not in message and key in message, (key, kind, message)     # (named, maybe unquoted)
    assert refused > 50
