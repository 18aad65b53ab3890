"""Hugging Face config.json import (layercalc.importers.huggingface) against transformers itself.

The oracle is the transformers model built from the SAME config dict with random weights (no download): small
configs (2 layers, width 64) on the CPU, the published configs of real models on PyTorch's meta device (nothing
allocated). Compared: total parameters (``sum(p.numel() for p in model.parameters())``, tied tensors once), the
parameters of every layer (each of ``named_parameters()``' tensors — tied ones once, under their first name —
belongs to the layercalc layer whose name is the longest prefix of its name), MACs against FlopCounterMode with
eager attention, output shapes, and for the small configs the executor's forward pass on the model's own weights.

FlopCounterMode counts the matmuls only (2 per multiply-accumulate): ``2·MACs`` of layercalc is its total. It does
not count the rotary embedding (element-wise in transformers 5: ``position_ids[..., None] * inv_freq``, then
``q·cos + rotate_half(q)·sin``), bias adds (addmm counts its product only), norms, softmax or activations:
layercalc counts those as FLOPs beyond 2·MACs, so only ``2·MACs`` is compared. Masks (causal, Mistral's sliding
window) are applied by adding to the full score matrix in eager attention: the full ``L·L`` scores are counted, as
layercalc counts them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import layercalc
from layercalc import LayerCalcError
from layercalc.cli import get_app
from layercalc.importers.huggingface import spec_from_config, weights_from_state_dict
from layercalc.verify import verify

ROOT = Path(__file__).resolve().parent.parent
TOKENS = 8


# ------------------------------------------------------------------------------------------------- the oracle

def hf_model(config: dict, meta: bool = False):
    """The transformers model a config dict describes (``architectures[0]``, else AutoModel), eager attention."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    arguments = {k: v for k, v in config.items() if k not in ("model_type", "architectures", "_name_or_path")}
    hf_config = transformers.AutoConfig.for_model(config["model_type"], attn_implementation="eager", **arguments)
    architectures = config.get("architectures")
    with torch.device("meta" if meta else "cpu"):
        if architectures:
            model = getattr(transformers, architectures[0])(hf_config)
        else:
            model = transformers.AutoModel.from_config(hf_config)
    return model.eval()


def hf_input(config: dict, meta: bool = False, tokens: int = TOKENS):
    torch = pytest.importorskip("torch")
    device = "meta" if meta else "cpu"
    if config["model_type"] == "vit":
        size = config.get("image_size", 224)
        return torch.randn(1, config.get("num_channels", 3), size, size, device=device)
    return torch.randint(0, config.get("vocab_size", 100), (1, tokens), device=device)


def hf_outputs(output) -> list:
    """The tensors the model returns, in its order: a head's logits (a QA head's start and end logits side by side,
    ``[N, L, 2]``, as qa_outputs makes them before the split); a base model's last_hidden_state, then its
    pooler_output when it has a pooler (BertModel, ViTModel)."""
    torch = pytest.importorskip("torch")
    if getattr(output, "start_logits", None) is not None:
        return [torch.stack([output.start_logits, output.end_logits], dim=-1)]
    if getattr(output, "logits", None) is not None:
        return [output.logits]
    return [t for t in (output.last_hidden_state, getattr(output, "pooler_output", None)) if t is not None]


def output_shapes(report) -> list:
    """The shapes of the network's outputs (the tensors no layer reads), in its order."""
    shapes = {entry.name: entry.output_shape for entry in report.layers}
    return [shapes[name] for name in report.outputs]


def params_by_layer(model, layer_names) -> dict[str, int]:
    """transformers' parameters summed by the layercalc layer whose name is the longest prefix of theirs
    (``bert.encoder.layer.0.attention.self.query.weight`` → ``bert.encoder.layer.0.attention``); names no layer
    prefixes are kept under their own name, so they show up as a difference."""
    names = set(layer_names)
    counts: dict[str, int] = {}
    for name, tensor in model.named_parameters():       # each tensor once: tied ones under the first name
        layer = name
        while layer and layer not in names:
            layer = layer.rpartition(".")[0]
        key = layer or f"(no layer) {name}"
        counts[key] = counts.get(key, 0) + tensor.numel()
    return counts


def imported(config: dict, tokens: int = TOKENS):
    net = layercalc.load(spec_from_config(config, "config.json"))
    return net if config["model_type"] == "vit" else net.replace(input=[tokens])


def assert_counts_agree(config: dict, meta: bool = False, tokens: int = TOKENS) -> None:
    from oracle_helpers import hf_counts

    model = hf_model(config, meta)
    x = hf_input(config, meta, tokens)
    params, flops = hf_counts(model, x)
    report = imported(config, tokens).analyze()
    assert report.totals.params == params
    assert 2 * report.totals.macs == flops
    ours = {entry.name: entry.params for entry in report.layers if entry.params}
    assert params_by_layer(model, [entry.name for entry in report.layers]) == ours
    if not meta:
        import torch
        with torch.no_grad():
            expected = [list(t.shape) for t in hf_outputs(model(x))]
        assert output_shapes(report) == expected


# --------------------------------------------------------------------------------------------- small configs

SMALL = dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=96,
             max_position_embeddings=32, vocab_size=100)
GPT2 = dict(model_type="gpt2", n_embd=64, n_head=4, n_layer=2, n_positions=32, vocab_size=100,
            bos_token_id=0, eos_token_id=0)
BERT = dict(model_type="bert", **SMALL)
DECODER = dict(SMALL, num_key_value_heads=2)
VIT = dict(model_type="vit", hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=96,
           image_size=32, patch_size=8)

CASES = {
    "gpt2-base": GPT2,
    "gpt2-lm": dict(GPT2, architectures=["GPT2LMHeadModel"]),
    "gpt2-lm-untied-relu-inner": dict(GPT2, architectures=["GPT2LMHeadModel"], tie_word_embeddings=False,
                                      activation_function="relu", n_inner=80),
    "gpt2-sequence": dict(GPT2, architectures=["GPT2ForSequenceClassification"], num_labels=3),
    "gpt2-token": dict(GPT2, architectures=["GPT2ForTokenClassification"], num_labels=5),
    "gpt2-qa": dict(GPT2, architectures=["GPT2ForQuestionAnswering"]),
    "bert-base": BERT,
    "bert-mlm": dict(BERT, architectures=["BertForMaskedLM"]),
    "bert-decoder": dict(BERT, architectures=["BertLMHeadModel"], is_decoder=True),
    "bert-sequence": dict(BERT, architectures=["BertForSequenceClassification"],
                          id2label={"0": "neg", "1": "neutral", "2": "pos"}),
    "bert-nsp": dict(BERT, architectures=["BertForNextSentencePrediction"], type_vocab_size=3),
    "bert-token": dict(BERT, architectures=["BertForTokenClassification"], num_labels=7, hidden_act="gelu_new"),
    "bert-qa": dict(BERT, architectures=["BertForQuestionAnswering"]),
    "llama-base": dict(DECODER, model_type="llama"),
    "llama-lm-biases-head_dim": dict(DECODER, model_type="llama", architectures=["LlamaForCausalLM"], head_dim=24,
                                     attention_bias=True, mlp_bias=True, rope_theta=500000.0),
    "llama-lm-tied-mqa": dict(DECODER, model_type="llama", architectures=["LlamaForCausalLM"],
                              num_key_value_heads=1, tie_word_embeddings=True),
    # rotary scaling changes the angles only: the same counts (the executor rotates by the plain angles)
    "llama-lm-rope-linear": dict(DECODER, model_type="llama", architectures=["LlamaForCausalLM"],
                                 rope_scaling={"rope_type": "linear", "factor": 2.0}),
    "llama-sequence": dict(DECODER, model_type="llama", architectures=["LlamaForSequenceClassification"],
                           num_labels=4, pad_token_id=0),
    "llama-token": dict(DECODER, model_type="llama", architectures=["LlamaForTokenClassification"], num_labels=3),
    "llama-qa": dict(DECODER, model_type="llama", architectures=["LlamaForQuestionAnswering"]),
    "mistral-lm": dict(DECODER, model_type="mistral", architectures=["MistralForCausalLM"]),
    # a window shorter than the input: eager attention masks the full score matrix, FlopCounterMode counts it all
    "mistral-lm-window-4": dict(DECODER, model_type="mistral", architectures=["MistralForCausalLM"],
                                sliding_window=4),
    "mistral-qa": dict(DECODER, model_type="mistral", architectures=["MistralForQuestionAnswering"]),
    "mistral-base": dict(DECODER, model_type="mistral"),
    "mistral-sequence": dict(DECODER, model_type="mistral", architectures=["MistralForSequenceClassification"]),
    "mistral-token": dict(DECODER, model_type="mistral", architectures=["MistralForTokenClassification"],
                          token_classification_bias=False),
    "qwen2-lm-tied": dict(DECODER, model_type="qwen2", architectures=["Qwen2ForCausalLM"], tie_word_embeddings=True),
    "qwen2-base-head_dim": dict(DECODER, model_type="qwen2", head_dim=32),
    "qwen2-qa": dict(DECODER, model_type="qwen2", architectures=["Qwen2ForQuestionAnswering"]),
    "qwen2-sequence": dict(DECODER, model_type="qwen2", architectures=["Qwen2ForSequenceClassification"]),
    "qwen2-token": dict(DECODER, model_type="qwen2", architectures=["Qwen2ForTokenClassification"], num_labels=2),
    # keys left out take their config class's defaults (Mistral: 8 key/value heads; Qwen2: an MLP of 22,016)
    "mistral-defaults": dict(model_type="mistral", hidden_size=64, num_attention_heads=8, num_hidden_layers=1,
                             intermediate_size=96, vocab_size=100),
    "qwen2-defaults": dict(model_type="qwen2", hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
                           num_hidden_layers=1, vocab_size=100),
    "bert-defaults-but-size": dict(model_type="bert", num_hidden_layers=1, vocab_size=100),
    "vit-base": VIT,
    "vit-base-no-qkv-bias-pooler": dict(VIT, qkv_bias=False, pooler_output_size=48, pooler_act="relu"),
    "vit-classifier": dict(VIT, architectures=["ViTForImageClassification"], num_labels=10, num_channels=1),
    "vit-no-classifier": dict(VIT, architectures=["ViTForImageClassification"], num_labels=0),
    # what save_pretrained writes for num_labels 0: transformers' classifier is then nn.Identity
    "vit-no-classifier-id2label-empty": dict(VIT, architectures=["ViTForImageClassification"], id2label={}),
    # transformers 5's Llama/Mistral/Qwen2 rotate the whole head with the default rope_type, whatever the factor
    # (top level, or inside rope_parameters)
    "llama-lm-partial-rotary-top-level": dict(DECODER, model_type="llama", architectures=["LlamaForCausalLM"],
                                              partial_rotary_factor=0.5),
    "qwen2-lm-partial-rotary-nested": dict(DECODER, model_type="qwen2", architectures=["Qwen2ForCausalLM"],
                                           rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                            "partial_rotary_factor": 0.25}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_small_config_params_per_layer_macs_and_output_shape(case):
    assert_counts_agree(CASES[case])


def assert_executor_gives_the_models_outputs(config, model, tokens: int = TOKENS):
    """layercalc's executor, on the model's own state_dict, gives each of the model's outputs in order (BertModel,
    ViTModel: last_hidden_state, then pooler_output) within 1e-4 of the largest, on ``tokens`` token ids."""
    import numpy as np
    import torch

    x = hf_input(config, tokens=tokens)
    with torch.no_grad():
        expected = [t.numpy() for t in hf_outputs(model(x))]
    weights = weights_from_state_dict(config, model.state_dict())
    net = imported(config, tokens)
    run = net.run(x=x.numpy().astype(np.float32), weights=weights)
    ours = [run[name] for name in net.analyze().outputs] if isinstance(run, dict) else [run]
    assert len(ours) == len(expected)
    for mine, theirs in zip(ours, expected):
        assert mine.shape == theirs.shape
        assert np.max(np.abs(mine - theirs)) <= 1e-4 * np.max(np.abs(theirs))


#: one per family and attention form: rotary (Llama, Qwen2), grouped-query heads, head_dim ≠ hidden/heads, q/k/v
#: biases without an output bias (Qwen2, ViT's qkv_bias=false), Conv1D weights (GPT-2), tied heads
EXECUTED = ["gpt2-lm", "gpt2-sequence", "bert-base", "bert-mlm", "bert-sequence", "bert-decoder",
            "llama-lm-biases-head_dim", "llama-lm-tied-mqa", "mistral-lm", "qwen2-lm-tied", "vit-classifier",
            "vit-base-no-qkv-bias-pooler", "vit-no-classifier-id2label-empty", "llama-lm-partial-rotary-top-level",
            "qwen2-lm-partial-rotary-nested"]


@pytest.mark.parametrize("case", EXECUTED)
def test_executor_on_the_models_weights_gives_its_output(case):
    torch = pytest.importorskip("torch")
    config = CASES[case]
    torch.manual_seed(0)
    model = hf_model(config)
    assert_executor_gives_the_models_outputs(config, model)


@pytest.mark.parametrize("case", ["gpt2-lm", "bert-base", "qwen2-lm-tied", "vit-classifier"])
def test_verify_runs_the_imported_network(case):
    result = verify(imported(CASES[case]))
    assert result.ok and len(result.checks) == len(imported(CASES[case]).layers)


def test_weights_that_belong_to_no_layer_or_are_missing_are_refused():
    torch = pytest.importorskip("torch")
    config = CASES["llama-lm-biases-head_dim"]
    state = hf_model(config).state_dict()
    with pytest.raises(LayerCalcError, match=r"model\.norm\.bias: not a parameter of the layer 'model\.norm'"):
        weights_from_state_dict(config, {**state, "model.norm.bias": torch.zeros(64)})
    with pytest.raises(LayerCalcError, match=r"belong to no layer of the network: encoder\.weight"):
        weights_from_state_dict(config, {**state, "encoder.weight": torch.zeros(2)})
    missing = {k: v for k, v in state.items() if k != "model.layers.1.self_attn.o_proj.bias"}
    with pytest.raises(LayerCalcError, match=r"model\.layers\.1\.self_attn: the out projection's bias is missing"):
        weights_from_state_dict(config, missing)
    # the same weights for a config without attention biases: the state_dict's biases have no place
    with pytest.raises(LayerCalcError, match="which the layer does not have"):
        weights_from_state_dict({**config, "attention_bias": False}, state)


# ---------------------------------------------------------------------------------------- published configs

#: the published config.json files (keys that change nothing here — dropout rates, token ids, versions — kept as
#: published where short)
GPT2_CONFIG = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
               "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
               "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768, "n_head": 12,
               "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1, "summary_activation": None,
               "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
               "summary_use_proj": True, "vocab_size": 50257}
BERT_CONFIG = {"architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1,
               "gradient_checkpointing": False, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
               "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-12,
               "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
               "num_hidden_layers": 12, "pad_token_id": 0, "position_embedding_type": "absolute",
               "transformers_version": "4.6.0.dev0", "type_vocab_size": 2, "use_cache": True, "vocab_size": 30522}
LLAMA2_CONFIG = {"_name_or_path": "meta-llama/Llama-2-7b-hf", "architectures": ["LlamaForCausalLM"],
                 "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096,
                 "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 4096,
                 "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
                 "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
                 "tie_word_embeddings": False, "torch_dtype": "float16", "use_cache": True, "vocab_size": 32000}
LLAMA3_CONFIG = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
                 "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
                 "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 8192,
                 "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
                 "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
                 "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
                 "use_cache": True, "vocab_size": 128256}
MISTRAL_CONFIG = {"architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
                  "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
                  "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
                  "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
                  "sliding_window": 4096, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
                  "use_cache": True, "vocab_size": 32000}
QWEN2_CONFIG = {"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
                "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
                "intermediate_size": 4864, "max_position_embeddings": 131072, "max_window_layers": 24,
                "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2,
                "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072,
                "tie_word_embeddings": True, "torch_dtype": "bfloat16", "use_cache": True,
                "use_sliding_window": False, "vocab_size": 151936}
LLAMA32_CONFIG = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
                  "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
                  "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
                  "max_position_embeddings": 131072, "mlp_bias": False, "model_type": "llama",
                  "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "pretraining_tp": 1,
                  "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0,
                                                          "low_freq_factor": 1.0,
                                                          "original_max_position_embeddings": 8192,
                                                          "rope_type": "llama3"},
                  "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16", "use_cache": True,
                  "vocab_size": 128256}
VIT_CONFIG = {"architectures": ["ViTForImageClassification"], "attention_probs_dropout_prob": 0.0,
              "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": 768,
              # the published file names the 1,000 ImageNet classes; only their number matters here
              "id2label": {str(i): f"class {i}" for i in range(1000)}, "image_size": 224,
              "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-12, "model_type": "vit",
              "num_attention_heads": 12, "num_channels": 3, "num_hidden_layers": 12, "patch_size": 16,
              "qkv_bias": True}

#: config, published parameter count (the model cards; Qwen2-0.5B and Llama-3.2-1B derived by hand below)
PUBLISHED = {
    "gpt2": (GPT2_CONFIG, 124_439_808),
    # BertForMaskedLM: BertModel's 109,482,240 − pooler (768² + 768) + transform (768² + 768 + 2·768) + bias 30,522
    "bert-base-uncased": (BERT_CONFIG, 109_514_298),
    "Llama-2-7b": (LLAMA2_CONFIG, 6_738_415_616),
    "Meta-Llama-3-8B": (LLAMA3_CONFIG, 8_030_261_248),
    "Mistral-7B-v0.1": (MISTRAL_CONFIG, 7_241_732_096),
    # embed 151,936·896 (tied head) + 24·(q 896² + 896, k and v 2·(896·128 + 128), o 896², MLP 3·896·4,864,
    # norms 2·896) + norm 896 = 136,134,656 + 24·14,912,384 + 896
    "Qwen2-0.5B": (QWEN2_CONFIG, 494_032_768),
    # embed 128,256·2,048 (tied head) + 16·(q, o 2·2,048², k, v 2·2,048·512, MLP 3·2,048·8,192, norms 2·2,048)
    # + norm 2,048 = 262,668,288 + 16·60,821,504 + 2,048
    "Llama-3.2-1B": (LLAMA32_CONFIG, 1_235_814_400),
    "vit-base-patch16-224": (VIT_CONFIG, 86_567_656),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_configs_against_transformers_on_the_meta_device(name):
    config, published = PUBLISHED[name]
    assert_counts_agree(config, meta=True, tokens=16)
    assert layercalc.load(spec_from_config(config, name)).analyze().totals.params == published


def test_default_input_is_the_context_capped_at_2048_tokens():
    lengths = {name: spec_from_config(config, name)["input"] for name, (config, _) in PUBLISHED.items()}
    assert lengths == {"gpt2": [1024], "bert-base-uncased": [512], "Llama-2-7b": [2048], "Meta-Llama-3-8B": [2048],
                       "Mistral-7B-v0.1": [2048], "Qwen2-0.5B": [2048], "Llama-3.2-1B": [2048],
                       "vit-base-patch16-224": [3, 224, 224]}


def test_spec_form_blocks_names_and_ties():
    spec = spec_from_config(LLAMA32_CONFIG, "config.json")
    assert spec["name"] == "llama"                     # no _name_or_path in the published file
    assert spec_from_config(LLAMA2_CONFIG, "config.json")["name"] == "meta-llama/Llama-2-7b-hf"
    (block,) = spec["blocks"].values()
    assert {"repeat": 16, "name": "model.layers", "block": "decoder_layer"} in spec["layers"]
    attention = next(layer for layer in block["layers"] if layer["name"] == "self_attn")
    assert attention["rope"] is True and attention["rope_theta"] == 500000.0 and attention["num_kv_heads"] == 8
    assert spec["layers"][-1] == {"name": "lm_head", "type": "linear", "out_features": 128256, "bias": False,
                                  "tied_to": "model.embed_tokens"}
    qwen = spec_from_config(QWEN2_CONFIG, "config.json")
    attention = next(layer for layer in qwen["blocks"]["decoder_layer"]["layers"] if layer["name"] == "self_attn")
    assert (attention["qkv_bias"], attention["out_bias"]) == (True, False)   # modeling_qwen2.py's hard-coded flags


def test_header_notes_say_which_choices_were_made():
    from layercalc.importers.huggingface import header_notes

    mistral = header_notes(MISTRAL_CONFIG)
    assert mistral[:2] == ["MistralForCausalLM",
                           "input: 2048 tokens (min(max_position_embeddings 32768, 2048)); --input N for N tokens"]
    assert any(note.startswith("sliding_window 4096: a mask, counted in full") for note in mistral)
    assert any(note.startswith("rope_type llama3: the angles change") for note in header_notes(LLAMA32_CONFIG))
    assert header_notes(GPT2_CONFIG)[1].startswith("input: 1024 tokens (min(n_positions 1024, 2048))")
    assert len(header_notes(QWEN2_CONFIG)) == 2            # use_sliding_window false: no window


# ---------------------------------------------------------------------------------------------- command line

runner = CliRunner()


def cli(*args, code=0):
    result = runner.invoke(get_app(), [str(a) for a in args])
    assert result.exit_code == code, (args, result.stdout, result.stderr, result.exception)
    return result


def write_config(tmp_path, config, name="config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def test_summary_of_a_config_json(tmp_path):
    from oracle_helpers import hf_counts

    config = CASES["llama-lm-biases-head_dim"]
    path = write_config(tmp_path, config)
    report = json.loads(cli("summary", path, "--input", TOKENS, "--format", "json").stdout)
    params, flops = hf_counts(hf_model(config), hf_input(config))
    assert report["totals"]["params"] == params and 2 * report["totals"]["macs"] == flops
    assert report["input_shape"] == [1, TOKENS]
    table = cli("summary", path, "--input", TOKENS, "--expand", "--wide").stdout
    assert "model.layers.1.self_attn" in table and f"{params:,}" in table


def test_convert_writes_a_spec_with_blocks_that_gives_the_same_report(tmp_path):
    path = write_config(tmp_path, dict(GPT2_CONFIG, n_layer=3))
    out = tmp_path / "gpt2.yaml"
    cli("convert", path, "-o", out)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# layercalc spec converted from the Hugging Face config.json")
    assert "\nblocks:\n" in text and "{repeat: 3, name: transformer.h, block: block}" in text
    assert text.count("type: multi_head_attention") == 1              # the block written once
    theirs = layercalc.load(str(path)).analyze().model_dump()
    ours = layercalc.load(str(out)).analyze().model_dump()
    assert ours == theirs and theirs["totals"]["params"] == 124_439_808 - 9 * (12 * 768 ** 2 + 13 * 768)


def test_import_needs_no_transformers_nor_torch(tmp_path):
    from oracle_helpers import hf_counts

    config = CASES["qwen2-lm-tied"]
    path = write_config(tmp_path, config)
    script = ("import sys\n"
              "sys.modules['transformers'] = None\nsys.modules['torch'] = None\n"
              "import layercalc\n"
              f"report = layercalc.load({str(path)!r}).replace(input=[{TOKENS}]).analyze()\n"
              "print(report.totals.params, report.totals.macs)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    params, flops = hf_counts(hf_model(config), hf_input(config))
    assert done.stdout.split() == [str(params), str(flops // 2)]


# ------------------------------------------------------------------------------------------------------ errors

REFUSED = {  # config: (what the one-line message names, in order)
    "unknown model_type": (dict(model_type="whisper", d_model=512), ["'model_type'", "'whisper'",
                                                                      "supported: gpt2, bert"]),
    "no model_type, unknown architecture": (dict(architectures=["WhisperForConditionalGeneration"]),
                                            ["'model_type' is missing", "WhisperForConditionalGeneration"]),
    "unknown head": (dict(GPT2, architectures=["GPT2DoubleHeadsModel"]),
                     ["'architectures'", "'GPT2DoubleHeadsModel'", "GPT2LMHeadModel"]),
    "relative position embeddings": (dict(BERT, position_embedding_type="relative_key"),
                                     ["'position_embedding_type'", "'relative_key'", "supported: absolute"]),
    "cross-attention": (dict(GPT2, add_cross_attention=True), ["'add_cross_attention'", "True", "cross-attention"]),
    "untied masked-LM head": (dict(BERT, architectures=["BertForMaskedLM"], tie_word_embeddings=False),
                              ["'tie_word_embeddings'", "False", "never uses"]),
    "activation": (dict(BERT, hidden_act="quick_gelu"), ["'hidden_act'", "'quick_gelu'", "gelu_new"]),
    "rope type": (dict(DECODER, model_type="llama", rope_scaling={"rope_type": "mrope", "factor": 2}),
                  ["'rope_scaling'", "'mrope'", "llama3"]),
    "partial rotation of a scaled rope": (dict(DECODER, model_type="qwen2", partial_rotary_factor=0.5,
                                               rope_scaling={"rope_type": "linear", "factor": 2.0}),
                                          ["'partial_rotary_factor'", "0.5", "int(head_dim 16 × 0.5) = 8",
                                           "forward pass fails"]),
    "partial rotation above 1": (dict(DECODER, model_type="llama", rope_parameters={"partial_rotary_factor": 1.5}),
                                 ["'rope_parameters'", "'partial_rotary_factor'", "1.5", "(0, 1]"]),
    "no labels on a linear head": (dict(BERT, architectures=["BertForSequenceClassification"], id2label={}),
                                   ["'id2label'", "{}", "0 labels", "nn.Linear with no outputs"]),
    "heads do not divide": (dict(GPT2, n_head=5), ["'n_embd'", "64", "n_head 5"]),
    "kv heads do not divide": (dict(DECODER, model_type="mistral", num_key_value_heads=3),
                               ["'num_key_value_heads'", "3", "num_attention_heads 4"]),
    "not a number": (dict(GPT2, n_layer="2"), ["'n_layer'", "'2'", "whole number"]),
    "negative theta": (dict(DECODER, model_type="llama", rope_theta=-1.0), ["'rope_theta'", "-1.0", "positive"]),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_unsupported_configs_are_refused_naming_the_key_and_value(case):
    config, parts = REFUSED[case]
    with pytest.raises(LayerCalcError) as info:
        layercalc.load(config)
    message = str(info.value)
    assert "\n" not in message
    positions = [message.find(part) for part in parts]
    assert -1 not in positions and positions == sorted(positions), (message, parts)


def test_partial_rotation_of_a_scaled_rope_fails_in_transformers_itself():
    # the refusal's reason: transformers 5 makes int(head_dim · factor) rotary features for the scaled types, and
    # its attention's q·cos cannot apply them to a whole head
    config = REFUSED["partial rotation of a scaled rope"][0]
    with pytest.raises(RuntimeError, match="must match the size"):
        hf_model(config)(hf_input(config))


def test_num_labels_wins_over_id2label_as_in_transformers():
    # transformers warns when num_labels disagrees with id2label, then makes num_labels labels
    config = dict(BERT, architectures=["BertForSequenceClassification"], num_labels=3, id2label={"0": "a", "1": "b"})
    assert_counts_agree(config)
    assert imported(config).analyze().layers[-1].output_shape == [1, 3]


def test_relative_position_embeddings_are_refused_because_their_checkpoints_hold_another_table():
    # transformers 5 no longer builds BERT's distance_embedding (2·max_position_embeddings − 1 rows per layer) and
    # silently builds the absolute model; checkpoints trained with relative_key hold that table, so the absolute
    # model's count would be silently wrong for them: refused (REFUSED above)
    model = hf_model(dict(BERT, position_embedding_type="relative_key"))
    assert not any("distance_embedding" in name for name, _ in model.named_parameters())


def test_cli_error_is_one_line_with_status_2(tmp_path):
    path = write_config(tmp_path, dict(BERT, hidden_act="quick_gelu"))
    result = cli("summary", path, code=2)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and "'hidden_act'" in lines[0]


def test_small_configs_cover_every_architecture():
    """Every (model_type, architecture) the importer builds has a small config checked against transformers: the
    ``CASES`` of this module and of every ``tests/test_import_huggingface_*.py`` (one module per group of families)."""
    import importlib
    from pathlib import Path

    from layercalc.importers.huggingface import ARCHITECTURES

    cases = list(CASES.values())
    for path in sorted(Path(__file__).parent.glob("test_import_huggingface_*.py")):
        cases += list(getattr(importlib.import_module(path.stem), "CASES", {}).values())
    covered = {(c["model_type"], (c.get("architectures") or [ARCHITECTURES[c["model_type"]].base])[0])
               for c in cases}
    supported = {(model_type, a) for model_type, family in ARCHITECTURES.items() for a in family.builders}
    assert supported - covered == set()
