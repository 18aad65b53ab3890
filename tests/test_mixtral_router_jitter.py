"""Mixtral's ``router_jitter_noise`` against transformers 5 in train mode (torch 2.13, CPU), the oracle of
tests/saved_oracle.py (the distinct storages ``saved_tensors_hooks`` sees, parameters excluded).

In training, ``MixtralSparseMoeBlock.forward`` does ``hidden_states *= torch.empty_like(hidden_states).uniform_(1 − j,
1 + j)`` before routing: the in-place multiply keeps the noise ``[T, d]`` (model dtype) for the input's gradient;
the router then keeps the jittered input, the same storage as the block's input. So a jittered Mixtral keeps T·d
elements more per sparse layer than one without jitter, and nothing else changes: at inference the jitter is not
applied (params, MACs and FLOPs are those of j = 0), and, as for dropout, its multiplies are not counted as FLOPs.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from saved_oracle import saved_bytes  # noqa: E402
from test_import_huggingface_moe import hf_model  # noqa: E402

import layercalc  # noqa: E402
from layercalc import LayerCalcError  # noqa: E402
from layercalc.importers.huggingface import header_notes, spec_from_config  # noqa: E402

torch.set_num_threads(1)

#: two sparse layers of 3 experts, top 2, d = 20; dropout 0 (the only other training-only tensors)
CONFIG = dict(model_type="mixtral", architectures=["MixtralForCausalLM"], hidden_size=20, num_attention_heads=2,
              num_key_value_heads=1, num_hidden_layers=2, intermediate_size=28, max_position_embeddings=32,
              vocab_size=70, num_local_experts=3, num_experts_per_tok=2, attention_dropout=0.0,
              router_jitter_noise=0.2)


def measured(config: dict, dtype, batch: int, tokens: int) -> int:
    torch.manual_seed(0)
    model = hf_model(config).train().to(dtype)
    ids = torch.randint(0, config["vocab_size"], (batch, tokens))
    return saved_bytes(model, input_ids=ids)


def counted(config: dict, dtype: str, batch: int, tokens: int) -> int:
    spec = dict(spec_from_config(config, "config.json"), dtype=dtype)
    total = layercalc.load(spec).replace(input=[tokens], batch=batch).analyze().totals.saved_bytes
    assert total is not None
    return total


@pytest.mark.parametrize("batch, tokens", [(2, 5), (1, 7), (3, 4)])
def test_float32_whole_model_saved_bytes_equal_hugging_face(batch, tokens):
    assert counted(CONFIG, "float32", batch, tokens) == measured(CONFIG, torch.float32, batch, tokens)


@pytest.mark.parametrize("batch, tokens", [(2, 5), (1, 7)])
def test_bfloat16_whole_model_saved_bytes_equal_hugging_face_but_the_documented_routing_weights(batch, tokens):
    """bfloat16: the noise is in the model's dtype. Mixtral's routing weights stay float32 where the moe layer counts
    them in the model's dtype (docs/conventions.md, an exception documented before the jitter): 2·T·k bytes per
    sparse layer, the same with and without jitter."""
    t, k, layers = batch * tokens, CONFIG["num_experts_per_tok"], CONFIG["num_hidden_layers"]
    documented = layers * 2 * t * k
    assert measured(CONFIG, torch.bfloat16, batch, tokens) - counted(CONFIG, "bfloat16", batch, tokens) == documented
    plain = dict(CONFIG, router_jitter_noise=0.0)
    assert measured(plain, torch.bfloat16, batch, tokens) - counted(plain, "bfloat16", batch, tokens) == documented


@pytest.mark.parametrize("dtype, itemsize", [("float32", 4), ("bfloat16", 2)])
def test_the_jitter_keeps_t_times_d_per_sparse_layer(dtype, itemsize):
    """By hand, and measured: the jitter's bytes are T·d·itemsize per layer, on both sides."""
    batch, tokens = 2, 6
    by_hand = CONFIG["num_hidden_layers"] * batch * tokens * CONFIG["hidden_size"] * itemsize
    plain = dict(CONFIG, router_jitter_noise=0.0)
    torch_dtype = getattr(torch, dtype)
    assert measured(CONFIG, torch_dtype, batch, tokens) - measured(plain, torch_dtype, batch, tokens) == by_hand
    assert counted(CONFIG, dtype, batch, tokens) - counted(plain, dtype, batch, tokens) == by_hand


def test_inference_figures_do_not_change():
    plain = dict(CONFIG, router_jitter_noise=0.0)
    ours = layercalc.load(spec_from_config(CONFIG, "config.json")).analyze().totals
    without = layercalc.load(spec_from_config(plain, "config.json")).analyze().totals
    assert (ours.params, ours.macs, ours.flops) == (without.params, without.macs, without.flops)
    assert ours.params == sum(p.numel() for p in hf_model(CONFIG).parameters())


def test_a_block_whose_input_needs_no_gradient_keeps_no_noise():
    """The multiply keeps the noise only for the input's gradient: on the network input (no gradient) it keeps
    nothing more than without jitter — measured on transformers' block."""
    import transformers
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    def block_saved(jitter: float) -> int:
        cfg = transformers.MixtralConfig(experts_implementation="eager", hidden_size=16, intermediate_size=12,
                                         num_local_experts=4, num_experts_per_tok=2, router_jitter_noise=jitter)
        torch.manual_seed(0)
        return saved_bytes(MixtralSparseMoeBlock(cfg).train(), torch.randn(2, 5, 16))

    def layer_saved(jitter: float) -> int:
        layer = dict(type="moe", num_experts=4, top_k=2, intermediate_size=12, norm_topk_prob=True,
                     router_jitter_noise=jitter)
        total = layercalc.load({"input": [5, 16], "batch": 2, "layers": [layer]}).analyze().totals.saved_bytes
        assert total is not None
        return total

    assert block_saved(0.3) == block_saved(0.0) == layer_saved(0.3) == layer_saved(0.0)


def test_header_note_and_bad_values():
    assert any("router_jitter_noise 0.2" in line and "training only" in line for line in header_notes(CONFIG))
    assert not any("router_jitter_noise" in line for line in header_notes(dict(CONFIG, router_jitter_noise=0.0)))
    for bad in (-0.1, "0.1", True):
        with pytest.raises(LayerCalcError, match="'router_jitter_noise'") as error:
            spec_from_config(dict(CONFIG, router_jitter_noise=bad), "config.json")
        assert "\n" not in str(error.value)
