"""Serving: the KV cache and the decode step (layercalc.serving), against Hugging Face transformers as oracle.

- KV cache: the elements of the ``past_key_values`` a transformers model returns after a forward with
  ``use_cache=True`` (keys and values of every layer), for tiny GPT-2, Llama (grouped-query and multi-query) and
  Mistral (with a sliding window shorter than the sequence: transformers keeps the last window − 1 positions), and a
  hand derivation for Llama-3-8B at 8,192 tokens in bfloat16.
- Decode: ``FlopCounterMode`` around the model run on k new tokens with a ``past_key_values`` of P tokens (eager
  attention) equals 2·MACs of layercalc's decode step, for several P and k; GPT-2 small (GPT2LMHeadModel) on the meta
  device at P = 127 and 1,023 against the figures of issue 21.
- The prefill's figures are the forward pass's (the network on the P-token prompt).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import layercalc
from layercalc import LayerCalcError, zoo
from layercalc.cli import get_app
from layercalc.importers.huggingface import spec_from_config

GPT2 = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=64, n_head=4, n_layer=2, n_positions=32,
            vocab_size=100, bos_token_id=0, eos_token_id=0)
DECODER = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
               intermediate_size=96, max_position_embeddings=64, vocab_size=100)
CASES = {
    "gpt2-lm": GPT2,
    "llama-gqa": dict(DECODER, model_type="llama", architectures=["LlamaForCausalLM"]),
    "llama-mqa-tied": dict(DECODER, model_type="llama", architectures=["LlamaForCausalLM"], num_key_value_heads=1,
                           tie_word_embeddings=True),
    "mistral": dict(DECODER, model_type="mistral", architectures=["MistralForCausalLM"]),
    "mistral-window-4": dict(DECODER, model_type="mistral", architectures=["MistralForCausalLM"], sliding_window=4),
    "qwen2-head_dim": dict(DECODER, model_type="qwen2", architectures=["Qwen2ForCausalLM"], head_dim=24),
    "gpt2-base": dict(GPT2, architectures=["GPT2Model"]),
    "bert-decoder": dict(model_type="bert", architectures=["BertLMHeadModel"], is_decoder=True, hidden_size=64,
                         num_attention_heads=4, num_hidden_layers=2, intermediate_size=96,
                         max_position_embeddings=32, vocab_size=100),
}


def hf_model(config: dict, meta: bool = False):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    arguments = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    hf_config = transformers.AutoConfig.for_model(config["model_type"], attn_implementation="eager", **arguments)
    with torch.device("meta" if meta else "cpu"):
        return getattr(transformers, config["architectures"][0])(hf_config).eval()


def cache_elements(cache) -> int:
    """Every key and value element a transformers cache holds."""
    return sum(layer.keys.numel() + layer.values.numel() for layer in cache.layers)


def decode_oracle(model, past: int, new: int, batch: int = 1, device: str = "cpu") -> tuple[int, int, int]:
    """(cache elements after the prompt, FlopCounterMode's FLOPs of the decode step, cache elements after it)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad():
        prompt = torch.randint(0, 100, (batch, past), device=device)
        cache = model(prompt, use_cache=True).past_key_values
        before = cache_elements(cache)
        with FlopCounterMode(display=False) as counter:
            out = model(torch.randint(0, 100, (batch, new), device=device), past_key_values=cache, use_cache=True)
        return before, counter.get_total_flops(), cache_elements(out.past_key_values)


def imported(config: dict, batch: int = 1):
    return layercalc.load(spec_from_config(config, "config.json")).replace(batch=batch)


# ------------------------------------------------------------------------------------------------- the KV cache

def test_llama3_8b_kv_cache_at_8192_tokens_in_bfloat16():
    # 32 layers × 8 key/value heads × head_dim 128 × 2 (K and V) × 8,192 positions × 2 bytes
    expected = 32 * 8 * 128 * 2 * 8192 * 2
    assert expected == 1_073_741_824
    report = zoo.load("llama3_8b").replace(input=[8192], dtype="bfloat16").analyze()
    assert report.totals.kv_cache_bytes == expected
    per_layer = [e.kv_cache_bytes for e in report.layers if e.kv_cache_bytes]
    assert per_layer == [expected // 32] * 32
    assert all(e.type == "multi_head_attention" for e in report.layers if e.kv_cache_bytes)
    serving = zoo.load("llama3_8b").replace(dtype="bfloat16").serving(8192)
    assert serving.prefill is not None and serving.prefill.kv_cache_bytes == expected
    assert serving.decode.kv_cache_bytes == expected // 8192 * 8193


def test_an_encoder_keeps_no_kv_cache_and_has_no_decode_step():
    report = zoo.load("bert_base").replace(input=[16]).analyze()
    assert report.totals.kv_cache_bytes == 0
    for name in ("bert_base", "resnet18"):
        with pytest.raises(LayerCalcError, match="no layer keeps a KV cache"):
            zoo.load(name).serving(16)
    mixed = layercalc.load({"input": [8, 32], "layers": [
        {"name": "decoder", "type": "multi_head_attention", "num_heads": 4, "causal": True},
        {"name": "encoder", "type": "multi_head_attention", "num_heads": 4}]})
    assert mixed.analyze().layer("decoder").kv_cache_bytes == 4 * 8 * 32 * 2
    with pytest.raises(LayerCalcError, match=r"'encoder'.*bidirectional"):
        mixed.serving(16)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("batch", [1, 2])
def test_kv_cache_equals_the_past_key_values_transformers_returns(case, batch):
    model = hf_model(CASES[case])
    for past, new in ((6, 1), (9, 3)):
        before, _, after = decode_oracle(model, past, new, batch)
        serving = imported(CASES[case], batch).serving(past, new)
        assert serving.prefill is not None
        assert serving.prefill.kv_cache_bytes == 4 * before
        assert serving.decode.kv_cache_bytes == 4 * after


# ------------------------------------------------------------------------------------------------- the decode step

@pytest.mark.parametrize("case", list(CASES))
def test_decode_flops_equal_flop_counter_with_a_cache_of_p_tokens(case):
    model = hf_model(CASES[case])
    for past, new, batch in ((1, 1, 1), (7, 1, 1), (13, 1, 2), (5, 3, 1), (12, 2, 2)):
        _, flops, _ = decode_oracle(model, past, new, batch)
        serving = imported(CASES[case], batch).serving(past, new)
        assert 2 * serving.decode.macs == flops, (past, new, batch)


@pytest.mark.parametrize("past, flops", [(127, 251_782_656), (1023, 284_812_800)])
def test_gpt2_small_decode_step_against_issue_figures_and_transformers_on_meta(past, flops):
    # issue 21's figures: GPT2LMHeadModel, one new token after P cached. By hand: per block the projections
    # 768·(2304 + 768 + 3072 + 3072) MACs and attention 12 heads·(P + 1) keys·(64 + 64); the head 768·50,257
    by_hand = 2 * (12 * (768 * (2304 + 768 + 3072 + 3072) + 12 * (past + 1) * 128) + 768 * 50257)
    assert by_hand == flops
    serving = zoo.load("gpt2").serving(past)
    assert 2 * serving.decode.macs == flops
    pytest.importorskip("transformers")
    model = hf_model(dict(model_type="gpt2", architectures=["GPT2LMHeadModel"]), meta=True)
    _, counted, _ = decode_oracle(model, past, 1, device="meta")
    assert counted == flops


def test_the_prefill_is_the_forward_pass_on_the_prompt():
    for name, past in (("gpt2", 100), ("llama3_8b", 64)):
        net = zoo.load(name)
        serving = net.serving(past, 4)
        forward = net.replace(input=[past]).analyze().totals
        assert serving.prefill is not None
        assert (serving.prefill.flops, serving.prefill.macs) == (forward.flops, forward.macs)
        assert serving.decode_report.input_shape == [1, 4]


def test_bytes_read_and_intensity_by_hand():
    # Llama-3-8B, one token after 8,191 in bf16: every weight once but the embedding table (one row looked up),
    # and the cache of 8,192 positions
    serving = zoo.load("llama3_8b").replace(dtype="bfloat16").serving(8191)
    params = 8_030_261_248
    weights = (params - 128256 * 4096 + 4096) * 2
    cache = 32 * 8 * 128 * 2 * 8192 * 2
    d = serving.decode
    assert (d.weight_bytes_read, d.kv_cache_bytes_read, d.bytes_read) == (weights, cache, weights + cache)
    assert d.intensity == pytest.approx(d.flops / (weights + cache))
    assert d.flops_per_token == d.flops and d.bytes_read_per_token == d.bytes_read
    # GPT-2: the tied head reads the whole table, the two lookups one row each (k = 1)
    g = zoo.load("gpt2").serving(10).decode
    assert g.weight_bytes_read == 4 * (124_439_808 - 50257 * 768 - 1024 * 768 + 768 + 768 + 50257 * 768)


def test_position_table_is_read_after_the_past_and_bounded_by_it():
    report = zoo.load("gpt2").serving(1000, 3).decode_report
    assert "rows 1000..1002" in " ".join(report.layer("transformer.wpe").notes)
    zoo.load("gpt2").serving(1023)
    with pytest.raises(LayerCalcError, match=r"transformer\.wpe.*1,023 past \+ 2 new positions.*1024 positions"):
        zoo.load("gpt2").serving(1023, 2)


@pytest.mark.parametrize("value", [-1, True, 1.5, "3"])
def test_bad_past_is_refused(value):
    with pytest.raises(LayerCalcError, match="past"):
        zoo.load("gpt2").serving(value)
    with pytest.raises(LayerCalcError, match="new_tokens"):
        zoo.load("gpt2").serving(3, 0)


def test_sliding_window_mask_in_the_executor_matches_transformers():
    torch = pytest.importorskip("torch")
    from test_import_huggingface import assert_executor_gives_the_models_outputs

    config = CASES["mistral-window-4"]
    torch.manual_seed(0)
    assert_executor_gives_the_models_outputs(config, hf_model(config), tokens=9)


# ------------------------------------------------------------------------------------------------- the CLI

def cli(*args, code=0):
    result = CliRunner().invoke(get_app(), list(args))
    assert result.exit_code == code, result.output
    return result.output


def test_summary_past_shows_prefill_and_decode_in_80_columns():
    out = cli("summary", "zoo:llama3_8b", "--past", "8191", "--dtype", "bfloat16")
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "decode" in out and "prefill" in out and "1,073,741,824" in out
    assert out.count("(×32)") >= 1


def test_summary_json_with_past_holds_the_phases():
    data = json.loads(cli("summary", "zoo:gpt2", "--past", "127", "--format", "json"))
    assert 2 * data["serving"]["decode"]["macs"] == 251_782_656
    assert data["input_shape"] == [1, 1]
    assert data["serving"]["prefill"]["tokens"] == 127


def test_summary_past_of_an_encoder_is_one_line_with_status_2():
    out = cli("summary", "zoo:bert_base", "--past", "8", code=2)
    assert len(out.strip().splitlines()) == 1 and "no layer keeps a KV cache" in out
    assert "--new-tokens needs --past" in cli("summary", "zoo:gpt2", "--new-tokens", "2", code=2)


# ------------------------------------------------------------------------------------------------- a config's dtype

def test_a_configs_dtype_is_the_imported_networks_default():
    transformers = pytest.importorskip("transformers")
    # what transformers 5 itself writes: the key "dtype"
    written = transformers.LlamaConfig(**DECODER, dtype="bfloat16").to_dict()
    assert written["dtype"] == "bfloat16"
    net = layercalc.load(spec_from_config(dict(written, architectures=["LlamaForCausalLM"]), "config.json"))
    report = net.analyze()
    assert net.dtype == "bfloat16" and report.totals.param_bytes == 2 * report.totals.params
    # older configs: torch_dtype; transformers 5 reads dtype first
    assert layercalc.load(spec_from_config(dict(CASES["mistral"], torch_dtype="float16"), "c")).dtype == "float16"
    both = dict(CASES["mistral"], torch_dtype="float32", dtype="bfloat16")
    assert layercalc.load(spec_from_config(both, "c")).dtype == "bfloat16"
    assert layercalc.load(spec_from_config(CASES["mistral"], "c")).dtype == "float32"
    odd = dict(CASES["mistral"], torch_dtype="float8_e4m3fn")
    assert layercalc.load(spec_from_config(odd, "c")).dtype == "float32"


def test_the_summary_header_says_where_the_dtype_came_from(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dict(CASES["llama-gqa"], torch_dtype="bfloat16")))
    head = " ".join(cli("summary", str(path)).split("\n\n", 1)[0].split())
    assert "bfloat16 (2 bytes/element, the config's torch_dtype)" in head
    head = " ".join(cli("summary", str(path), "--dtype", "float32").split("\n\n", 1)[0].split())
    assert "float32 (4 bytes/element; the config's torch_dtype says bfloat16: --dtype bfloat16)" in head
    path.write_text(json.dumps(dict(CASES["llama-gqa"], torch_dtype="float8_e4m3fn")))
    head = " ".join(cli("summary", str(path)).split("\n\n", 1)[0].split())
    assert "float32 (4 bytes/element)" in head and "torch_dtype float8_e4m3fn: not a dtype" in head


def test_scaled_dot_product_attention_caches_its_key_and_value_inputs():
    # q from 4 heads of 16, k and v from 2 heads (enable_gqa), L positions; by hand: the cache is k and v at
    # every position, 2·(2·16)·(P + L) elements; QKᵀ + A·V = 4 heads·L·(P + L)·(16 + 16) MACs
    def heads(name: str, source: str, count: int) -> list[dict]:
        return [{"name": f"{name}.proj", "type": "linear", "out_features": count * 16, "inputs": [source]},
                {"name": f"{name}.split", "type": "reshape", "shape": [-1, count, 16]},
                {"name": name, "type": "transpose", "dim0": 1, "dim1": 2}]

    net = layercalc.load({"input": [6, 64], "layers": [
        {"name": "x", "type": "identity"}, *heads("q", "x", 4), *heads("k", "x", 2), *heads("v", "x", 2),
        {"name": "sdpa", "type": "scaled_dot_product_attention", "is_causal": True, "enable_gqa": True,
         "inputs": ["q", "k", "v"]}]})
    assert net.analyze().layer("sdpa").kv_cache_bytes == 4 * 2 * 2 * 16 * 6
    serving = net.serving(10, 3)
    step = serving.decode_report.layer("sdpa")
    assert step.kv_cache_bytes == 4 * 2 * 2 * 16 * (10 + 3)
    assert step.macs == 4 * 3 * (10 + 3) * (16 + 16)
    assert serving.decode.kv_cache_bytes_read == step.kv_cache_bytes
    with pytest.raises(LayerCalcError, match=r"'sdpa'.*bidirectional"):
        layercalc.load({"input": [6, 16], "layers": [
            {"name": "q", "type": "reshape", "shape": [1, -1, 16]},
            {"name": "dec", "type": "scaled_dot_product_attention", "is_causal": True, "inputs": ["q", "q", "q"]},
            {"name": "sdpa", "type": "scaled_dot_product_attention", "inputs": ["q", "q", "q"]}]}).serving(4)
