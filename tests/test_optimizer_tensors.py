"""The optimizer state follows the model's own parameter tensors (PyTorch 2.13 and transformers 5 as the oracle).

Adam and AdamW keep, besides exp_avg and exp_avg_sq per parameter, a float32 ``step`` per parameter *tensor*, so
their state depends on how the model stores its weights: Hugging Face's Llama, BERT, T5, … have one nn.Linear per
q, k, v projection (three weights, three biases), GPT-2's c_attn, Phi-3's qkv_proj and GPT-NeoX's query_key_value
one fused tensor, nn.MultiheadAttention one in_proj_weight and one in_proj_bias, Keras one kernel and one bias per
projection. ``multi_head_attention``'s ``qkv_layout`` says which; the importers set it.

For a tiny config of each family: the number of ``model.parameters()`` tensors equals layercalc's
``param_tensors``, and the bytes of ``optimizer.state`` after one Adam and one AdamW step equal its
``optimizer_state_bytes``. Attention with as many key/value heads as query heads and H·d_k = E is the case where
layercalc's default (nn.MultiheadAttention's fused in_proj) differs from the model, so the configs use it; Phi-3
also with grouped-query heads (fused there, where the default is separate).
"""

from __future__ import annotations

import json
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import layercalc  # noqa: E402
from layercalc.importers.huggingface import spec_from_config, weights_from_state_dict  # noqa: E402
from layercalc.training import training_memory  # noqa: E402

torch.set_num_threads(1)
transformers.logging.set_verbosity_error()

BATCH, TOKENS = 2, 6

#: as many key/value heads as query heads, H·d_k = E: the shapes nn.MultiheadAttention could hold
MHA = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=4, num_hidden_layers=1, intermediate_size=40,
           max_position_embeddings=32, vocab_size=50)
GQA = dict(MHA, num_key_value_heads=2)
TOKENS_ONLY = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)
MOE = dict(MHA, num_hidden_layers=2)

CONFIGS = {
    "llama": dict(MHA, model_type="llama", architectures=["LlamaForCausalLM"]),
    "llama-bias": dict(MHA, model_type="llama", architectures=["LlamaForCausalLM"], attention_bias=True),
    "qwen2": dict(MHA, model_type="qwen2", architectures=["Qwen2ForCausalLM"]),
    "mistral": dict(MHA, model_type="mistral", architectures=["MistralForCausalLM"]),
    "qwen3": dict(MHA, model_type="qwen3", architectures=["Qwen3ForCausalLM"], head_dim=8),
    "gemma": dict(MHA, **TOKENS_ONLY, model_type="gemma", architectures=["GemmaForCausalLM"], head_dim=8),
    "gemma2": dict(MHA, **TOKENS_ONLY, model_type="gemma2", architectures=["Gemma2ForCausalLM"], head_dim=8,
                   num_hidden_layers=2, query_pre_attn_scalar=8, sliding_window=4),
    "gemma3": dict(MHA, **TOKENS_ONLY, model_type="gemma3_text", architectures=["Gemma3ForCausalLM"], head_dim=8,
                   num_hidden_layers=2, query_pre_attn_scalar=8, sliding_window=3, sliding_window_pattern=2),
    "phi3": dict(MHA, **TOKENS_ONLY, model_type="phi3", architectures=["Phi3ForCausalLM"]),
    "phi3-gqa": dict(GQA, **TOKENS_ONLY, model_type="phi3", architectures=["Phi3ForCausalLM"]),
    "gpt_neox": dict(MHA, model_type="gpt_neox", architectures=["GPTNeoXForCausalLM"], rotary_pct=0.5),
    "opt": dict(model_type="opt", architectures=["OPTForCausalLM"], hidden_size=32, num_attention_heads=4,
                num_hidden_layers=1, ffn_dim=40, max_position_embeddings=32, vocab_size=50, word_embed_proj_dim=32,
                pad_token_id=1, bos_token_id=2, eos_token_id=2),
    "gpt2": dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=32, n_head=4, n_layer=1,
                 n_positions=32, vocab_size=50, bos_token_id=0, eos_token_id=0),
    "bert": dict(MHA, model_type="bert", architectures=["BertForMaskedLM"]),
    "roberta": dict(MHA, model_type="roberta", architectures=["RobertaForMaskedLM"], max_position_embeddings=34,
                    pad_token_id=1),
    "distilbert": dict(model_type="distilbert", architectures=["DistilBertForMaskedLM"], dim=32, n_heads=4,
                       n_layers=1, hidden_dim=40, max_position_embeddings=32, vocab_size=50),
    "vit": dict(model_type="vit", architectures=["ViTForImageClassification"], hidden_size=32, num_attention_heads=4,
                num_hidden_layers=1, intermediate_size=40, image_size=16, patch_size=8),
    "t5": dict(model_type="t5", architectures=["T5ForConditionalGeneration"], d_model=32, d_kv=8, num_heads=4,
               d_ff=40, num_layers=1, vocab_size=50, relative_attention_num_buckets=8,
               relative_attention_max_distance=6),
    "mixtral": dict(MOE, model_type="mixtral", architectures=["MixtralForCausalLM"], num_local_experts=4,
                    num_experts_per_tok=2),
    "qwen2_moe": dict(MOE, model_type="qwen2_moe", architectures=["Qwen2MoeForCausalLM"], num_experts=4,
                      num_experts_per_tok=2, moe_intermediate_size=16, shared_expert_intermediate_size=24),
    "qwen3_moe": dict(MOE, model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"], num_experts=4,
                      num_experts_per_tok=2, moe_intermediate_size=16, head_dim=8),
    "deepseek_v3": dict(MOE, model_type="deepseek_v3", architectures=["DeepseekV3ForCausalLM"], n_routed_experts=4,
                        num_experts_per_tok=2, moe_intermediate_size=16, n_shared_experts=1, n_group=2,
                        topk_group=1, first_k_dense_replace=1, kv_lora_rank=16, q_lora_rank=24,
                        qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8),
}


def hf_model(config: dict):
    arguments = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    hf_config = transformers.AutoConfig.for_model(config["model_type"], attn_implementation="eager", **arguments)
    torch.manual_seed(0)
    return getattr(transformers, config["architectures"][0])(hf_config).train()


def hf_inputs(config: dict) -> dict:
    torch.manual_seed(1)
    if config["model_type"] == "vit":
        return {"pixel_values": torch.randn(BATCH, 3, config["image_size"], config["image_size"])}
    ids = torch.randint(3, config["vocab_size"], (BATCH, TOKENS))            # above the special tokens
    return {"input_ids": ids, **({"decoder_input_ids": ids} if config["model_type"] == "t5" else {})}


def adam_state_bytes(model, inputs: dict) -> dict[str, int]:
    """The bytes of Adam's and AdamW's ``optimizer.state`` after one step on the gradients of one batch. A
    parameter one batch leaves without a gradient (an expert no token was routed to) gets its state at its first
    step with one: a zero gradient stands for it, as layercalc counts the state of a steady-state step."""
    output = model(**inputs)
    first = output.logits if getattr(output, "logits", None) is not None else output.last_hidden_state
    first.float().sum().backward()
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    found = {}
    for name, make in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        optimizer = make(model.parameters())
        optimizer.step()
        found[name] = sum(v.numel() * v.element_size() for state in optimizer.state.values()
                          for v in state.values() if isinstance(v, torch.Tensor))
    return found


def network(config: dict):
    net = layercalc.load(spec_from_config(config, "config.json"))
    if config["model_type"] == "vit":
        return net.replace(batch=BATCH)
    if config["model_type"] == "t5":
        return net.replace_inputs([[TOKENS], [TOKENS]]).replace(batch=BATCH)
    return net.replace(input=[TOKENS], batch=BATCH)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_parameter_tensors_and_adam_state_equal_torch(family):
    config = CONFIGS[family]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hf_model(config)
        expected = adam_state_bytes(model, hf_inputs(config))
    net = network(config)
    tensors = len(list(model.parameters()))                     # tied tensors once, as parameters() yields them
    for optimizer in ("adam", "adamw"):
        memory = training_memory(net, optimizer)
        assert memory.param_tensors == tensors, family
        assert memory.trainable_params == sum(p.numel() for p in model.parameters()), family
        # exp_avg and exp_avg_sq per parameter, a float32 step per tensor: by hand from the model's own tensors
        assert expected[optimizer] == 8 * memory.trainable_params + 4 * tensors
        assert memory.optimizer_state_bytes == expected[optimizer], family


@pytest.mark.parametrize("family, layout", [("llama", "separate"), ("bert", "separate"), ("t5", "separate"),
                                            ("gpt2", "fused"), ("phi3-gqa", "fused"), ("gpt_neox", "fused")])
def test_weights_load_in_the_models_layout_and_the_forward_pass_agrees(family, layout):
    """The state_dict loads into the layout the importer chose (the fused tensor's rows q, k, v; GPT-NeoX's
    per-head interleaving undone), and the executor's logits equal the model's."""
    import numpy as np

    config = CONFIGS[family]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hf_model(config).eval()
    inputs = hf_inputs(config)
    with torch.no_grad():
        expected = model(**inputs).logits.numpy()
    net = network(config).replace(dtype="float64")
    attention = [step for step in net.resolve() if step.layer.type_name == "multi_head_attention"]
    assert attention and {step.layer.qkv_layout for step in attention} == {layout}
    weights = weights_from_state_dict(config, model.state_dict())
    stored = {param for step in attention for param in weights[step.name]}
    assert ("qkv_proj_weight" in stored) == (layout == "fused") and ("q_proj_weight" in stored) == (layout == "separate")
    ids = [t.numpy() for t in inputs.values()]
    got = net.run(ids if len(ids) > 1 else ids[0], weights=weights)
    got = got["lm_head"] if isinstance(got, dict) else got           # (T5: the encoder's states too)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_torchvision_vit_keeps_nn_multihead_attention_in_proj():
    """torchvision's ViT (vit_b_16's class, tiny): nn.MultiheadAttention holds in_proj_weight and in_proj_bias, one
    tensor each: the default layout."""
    from torchvision_oracle import torchvision

    from layercalc.importers.torch import spec_from_torch
    torch.manual_seed(0)
    model = torchvision().models.VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2,
                                                   hidden_dim=16, mlp_dim=24).train()
    x = torch.randn(BATCH, 3, 16, 16)
    model(x).sum().backward()
    found = {}
    for name, make in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        optimizer = make(model.parameters())
        optimizer.step()
        found[name] = sum(v.numel() * v.element_size() for state in optimizer.state.values()
                          for v in state.values())
    net = layercalc.load(spec_from_torch(model, tuple(x.shape)))
    tensors = len(list(model.parameters()))
    for optimizer, expected in found.items():
        memory = training_memory(net, optimizer)
        assert memory.param_tensors == tensors
        assert memory.optimizer_state_bytes == expected


def test_keras_multi_head_attention_has_a_kernel_and_bias_per_projection():
    """Keras' MultiHeadAttention: query_dense, key_dense, value_dense and output_dense, a kernel and a bias each:
    as many tensors as ``layer.weights`` (an optimizer's per-variable state), whatever the shapes."""
    from oracle_helpers import keras_on_torch
    keras = keras_on_torch()
    L = keras.layers
    x0 = keras.Input((6, 16))
    a = L.MultiHeadAttention(num_heads=4, key_dim=4)(x0, x0)                  # H·d_k = E: torch's shapes
    b = L.MultiHeadAttention(num_heads=2, key_dim=4, use_bias=False)(a, a)
    model = keras.Model(x0, L.Dense(3)(b))
    net = layercalc.load(json.loads(model.to_json()))
    memory = training_memory(net, "adam")
    assert memory.param_tensors == len(model.trainable_weights) == 8 + 4 + 2
    assert memory.trainable_params == model.count_params()


def test_a_fused_layout_over_inputs_of_different_widths_is_refused_in_one_line():
    from layercalc import LayerCalcError
    spec = {"input": [6, 16], "layers": [
        {"name": "other", "type": "linear", "out_features": 8, "inputs": "input"},
        {"name": "cross", "type": "multi_head_attention", "num_heads": 2, "qkv_layout": "fused",
         "inputs": ["input", "other"]}]}
    with pytest.raises(LayerCalcError) as error:
        layercalc.load(spec).analyze()
    message = str(error.value)
    assert "\n" not in message and "cross" in message and "qkv_layout fused" in message
    assert "the query has 16 features, the key 8, the value 8" in message


def test_hand_written_layouts_count_their_tensors_by_hand():
    """E = 16, 2 heads, biases: torch's in_proj_weight + in_proj_bias + out_proj 2 = 4 tensors; separate 3 + 3 + 2
    = 8; fused 1 + 1 + 2 = 4. Grouped-query heads (kv 1) under the default: separate, 8. The parameters are the
    same 4·E² + 4·E = 1,088 in each (kv 1: q 16·16 + 16, k and v 16·8 + 8 each, out 16·16 + 16: 272 + 136 + 136 + 272 = 816)."""
    counts = {}
    for layout, kv in (("torch", 2), ("separate", 2), ("fused", 2), ("torch", 1), ("fused", 1)):
        net = layercalc.load({"input": [6, 16], "layers": [
            {"name": "attn", "type": "multi_head_attention", "num_heads": 2, "num_kv_heads": kv,
             "qkv_layout": layout}]})
        memory = training_memory(net, "adam")
        counts[layout, kv] = (memory.param_tensors, memory.trainable_params)
    assert counts == {("torch", 2): (4, 1088), ("separate", 2): (8, 1088), ("fused", 2): (4, 1088),
                      ("torch", 1): (8, 816), ("fused", 1): (4, 816)}


@pytest.mark.parametrize("family", ["qwen3", "gemma3"])
def test_q_k_norms_on_separate_projections_with_as_many_kv_heads_are_modeled(family):
    """Saved activations depend on the layout too: q/k norms on nn.MultiheadAttention's fused in_proj are not
    modeled, but Qwen3's and Gemma 3's q_proj and k_proj are separate even where kv = H and H·d_k = E (which the
    default would store fused): their saved bytes equal torch's (saved_tensors_hooks, tests/saved_oracle.py)."""
    from test_training_memory import hf_saved

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, ours = hf_saved(CONFIGS[family], BATCH, TOKENS)
    assert ours == expected
