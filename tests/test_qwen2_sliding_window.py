"""Qwen2's per-layer sliding window (``use_sliding_window`` with ``max_window_layers``, or ``layer_types``), against
transformers 5 measured in the test.

transformers' Qwen2Config makes the layers at index ≥ ``max_window_layers`` "sliding_attention" (``layer_types``):
their cache keeps the last ``sliding_window − 1`` positions, and a decode step of k tokens attends to at most
``window − 1 + k`` keys there. The oracles:

- KV cache: the elements of the ``past_key_values`` the model returns after the prompt and after the decode step,
  times 4 bytes (float32), at prompts shorter and longer than the window;
- decode FLOPs: ``FlopCounterMode`` around the model run on k new tokens after a cache of P (eager attention, whose
  QKᵀ and A·V over the cached keys are the only length-dependent matmuls) = 2·the decode MACs;
- parameters: the model's own ``numel`` (a window is a mask: it changes no weight);
- the executor's logits: the model's, on a sequence longer than the window.
"""

from __future__ import annotations

import pytest

import layercalc
from layercalc.importers.huggingface import header_notes, spec_from_config

BASE = dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], hidden_size=24, num_attention_heads=4,
            num_key_value_heads=2, num_hidden_layers=3, intermediate_size=40, max_position_embeddings=64,
            vocab_size=90)
CASES = {
    # layers 1 and 2 slide over 4 positions (layer 0 attends to all)
    "from1-w4": dict(BASE, use_sliding_window=True, sliding_window=4, max_window_layers=1),
    # only layer 2 slides, over 6 positions; grouped-query heads of head_dim 10 (not hidden/heads)
    "from2-w6-head_dim": dict(BASE, use_sliding_window=True, sliding_window=6, max_window_layers=2, head_dim=10),
    # layer_types given: it wins over max_window_layers (which would make every layer sliding)
    "layer_types": dict(BASE, use_sliding_window=True, sliding_window=5, max_window_layers=0,
                        layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
}
#: (prompt P, new tokens k, batch): prompts below, at and above every window
STEPS = ((2, 1, 1), (4, 1, 2), (9, 3, 1), (13, 2, 2), (30, 1, 1))


def hf_model(config: dict):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    arguments = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    hf_config = transformers.AutoConfig.for_model(config["model_type"], attn_implementation="eager", **arguments)
    torch.manual_seed(0)
    return getattr(transformers, config["architectures"][0])(hf_config).eval()


def cache_elements(cache) -> int:
    return sum(layer.keys.numel() + layer.values.numel() for layer in cache.layers)


def decode_oracle(model, past: int, new: int, batch: int) -> tuple[int, int, int]:
    """(cache elements after the prompt, FlopCounterMode's FLOPs of the decode step, cache elements after it)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad():
        cache = model(torch.randint(0, 90, (batch, past)), use_cache=True).past_key_values
        before = cache_elements(cache)
        with FlopCounterMode(display=False) as counter:
            out = model(torch.randint(0, 90, (batch, new)), past_key_values=cache, use_cache=True)
        return before, counter.get_total_flops(), cache_elements(out.past_key_values)


def imported(config: dict, batch: int = 1):
    return layercalc.load(spec_from_config(config, "config.json")).replace(batch=batch)


def test_the_windows_are_transformers_layer_types():
    for case, config in CASES.items():
        model = hf_model(config)
        windows = [layer.sliding_window for layer in imported(config).layers
                   if layer.type == "multi_head_attention"]
        assert len(windows) == len(model.config.layer_types), case
        assert windows == [config["sliding_window"] if kind == "sliding_attention" else None
                           for kind in model.config.layer_types], case
        assert any(windows), case


@pytest.mark.parametrize("case", list(CASES))
def test_kv_cache_and_decode_flops_equal_transformers(case):
    model = hf_model(CASES[case])
    for past, new, batch in STEPS:
        before, flops, after = decode_oracle(model, past, new, batch)
        serving = imported(CASES[case], batch).serving(past, new)
        assert serving.prefill is not None
        assert serving.prefill.kv_cache_bytes == 4 * before, (past, new, batch)
        assert serving.decode.kv_cache_bytes == 4 * after, (past, new, batch)
        assert 2 * serving.decode.macs == flops, (past, new, batch)


def test_the_window_changes_the_cache_and_the_decode_step_beyond_it():
    """The oracle discriminates: past the window, a full-attention Qwen2's cache and decode FLOPs are larger."""
    config = CASES["from1-w4"]
    full = {k: v for k, v in config.items() if k != "use_sliding_window"}
    slid, whole = decode_oracle(hf_model(config), 30, 1, 1), decode_oracle(hf_model(full), 30, 1, 1)
    assert slid[0] < whole[0] and slid[1] < whole[1]
    ours, theirs = imported(config).serving(30, 1), imported(full).serving(30, 1)
    assert ours.decode.kv_cache_bytes < theirs.decode.kv_cache_bytes
    assert 2 * theirs.decode.macs == whole[1]


@pytest.mark.parametrize("case", list(CASES))
def test_params_are_the_models_and_unchanged_by_the_window(case):
    config = CASES[case]
    model = hf_model(config)
    report = imported(config).analyze()
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    without = {k: v for k, v in config.items() if k not in ("use_sliding_window", "layer_types")}
    assert imported(without).analyze().totals.params == report.totals.params


def test_use_sliding_window_false_keeps_every_position():
    """configuration_qwen2.py: sliding_window is dropped without use_sliding_window (the Qwen2 releases' configs
    carry sliding_window with use_sliding_window false)."""
    config = dict(BASE, use_sliding_window=False, sliding_window=4, max_window_layers=1)
    model = hf_model(config)
    assert set(model.config.layer_types) == {"full_attention"}
    before, flops, after = decode_oracle(model, 9, 2, 1)
    serving = imported(config).serving(9, 2)
    assert serving.prefill is not None and serving.prefill.kv_cache_bytes == 4 * before
    assert serving.decode.kv_cache_bytes == 4 * after and 2 * serving.decode.macs == flops
    assert not any("sliding_window" in line for line in header_notes(config))


def test_the_executor_applies_the_window():
    from test_import_huggingface import assert_executor_gives_the_models_outputs

    assert_executor_gives_the_models_outputs(CASES["from1-w4"], hf_model(CASES["from1-w4"]), tokens=11)


def test_header_says_which_layers_slide():
    notes = header_notes(CASES["from1-w4"])
    assert any("sliding_window 4 on 2 of 3 layers (from 1)" in line and "KV cache" in line for line in notes)
    assert not any("counts every position" in line for line in notes)


@pytest.mark.parametrize("given", [{}, {"sliding_window": None}, {"sliding_window": 7}], ids=["absent", "null", "7"])
def test_mistral_window_is_the_one_mistral_config_reads(given):
    """A Mistral config without the key gets MistralConfig's default window (4,096), null none: as transformers."""
    config = dict(model_type="mistral", architectures=["MistralForCausalLM"], hidden_size=24, num_attention_heads=4,
                  num_key_value_heads=2, num_hidden_layers=1, intermediate_size=40, vocab_size=90, **given)
    expected = hf_model(config).config.sliding_window
    assert expected == {"absent": 4096, "null": None, "7": 7}[
        "absent" if not given else "null" if given["sliding_window"] is None else "7"]
    windows = [layer.sliding_window for layer in imported(config).layers if layer.type == "multi_head_attention"]
    assert windows == [expected]
    notes = " ".join(header_notes(config))
    assert ("MistralConfig's default" in notes) == (not given)
