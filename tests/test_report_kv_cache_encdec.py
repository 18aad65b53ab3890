"""The ordinary report of an encoder–decoder (no ``--past``) counts what generation keeps after its pass.

transformers' forward pass with ``use_cache=True`` on ``input_ids`` and ``decoder_input_ids`` returns an
``EncoderDecoderCache``: per decoder layer, the self-attention's keys and values of the L decoder positions **and**
the cross-attention's of the S encoder positions (projected once, read by every later decode step). layercalc's
ordinary analysis is that pass (serving's prefill): ``Network.resolve()`` marks the tensors that do not depend on
the decoded input (the encoder's) as fixed, so the cross-attention caches its keys and values. Oracles: the elements
of that cache (per layer and in total), measured here on tiny T5 configs of our own, and a count by hand. The
report's ``tokens`` are the decoder's (N·L), as the prefill counts them. A decoder-only network is resolved once,
as before (its figures are the existing tests')."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

import layercalc
from layercalc.cli import get_app
from layercalc.graph import Network
from layercalc.importers.huggingface import spec_from_config
from layercalc.sweep import sweep

# Tiny T5 configs unlike /work/heldout's and tests/test_import_huggingface_encoders.py's: 3 and 6 heads, d_kv ≠
# d_model/H, decoders deeper and shallower than their encoders, untied gated-gelu, a T5Model (no head).
CONFIGS = {
    "t5-relu-3heads": dict(model_type="t5", architectures=["T5ForConditionalGeneration"], d_model=24, d_kv=8,
                           num_heads=3, d_ff=40, num_layers=2, num_decoder_layers=3, vocab_size=60,
                           relative_attention_num_buckets=8, relative_attention_max_distance=10,
                           dropout_rate=0.0, decoder_start_token_id=0),
    "t5-v1.1-gated-gelu-6heads": dict(model_type="t5", architectures=["T5ForConditionalGeneration"], d_model=20,
                                      d_kv=6, num_heads=6, d_ff=28, num_layers=1, num_decoder_layers=2,
                                      vocab_size=40, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                      relative_attention_num_buckets=6, relative_attention_max_distance=8,
                                      dropout_rate=0.0, decoder_start_token_id=0),
    "t5model-gated-silu": dict(model_type="t5", architectures=["T5Model"], d_model=16, d_kv=4, num_heads=4,
                               d_ff=24, num_layers=3, num_decoder_layers=1, vocab_size=30,
                               feed_forward_proj="gated-silu", relative_attention_num_buckets=4,
                               relative_attention_max_distance=6, dropout_rate=0.0, decoder_start_token_id=0),
}
#: (S encoder positions, L decoder positions, batch N)
SETTINGS = [(5, 1, 1), (7, 4, 2), (3, 9, 1), (11, 2, 3)]


def hf_model(config: dict):
    transformers = pytest.importorskip("transformers")
    arguments = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    hf_config = transformers.AutoConfig.for_model("t5", attn_implementation="eager", **arguments)
    return getattr(transformers, config["architectures"][0])(hf_config).eval()


def imported(config: dict, source: int, target: int, batch: int) -> Network:
    net = layercalc.load(spec_from_config(config, "config.json"))
    return net.replace_inputs([[source], [target]]).replace(batch=batch)


def hf_cache(model, vocab: int, source: int, target: int, batch: int) -> tuple[list[int], list[int]]:
    """Elements (keys + values) of each decoder layer's self- and cross-attention cache after one forward pass on
    ``source`` encoder and ``target`` decoder tokens with ``use_cache=True``."""
    import torch

    torch.manual_seed(0)
    with torch.no_grad():
        out = model(input_ids=torch.randint(0, vocab, (batch, source)),
                    decoder_input_ids=torch.randint(0, vocab, (batch, target)), use_cache=True)
    cache = out.past_key_values

    def per_layer(part):
        return [layer.keys.numel() + layer.values.numel() for layer in part.layers]

    return per_layer(cache.self_attention_cache), per_layer(cache.cross_attention_cache)


@pytest.mark.parametrize("case", list(CONFIGS))
def test_report_kv_cache_equals_the_encoder_decoder_cache_transformers_returns(case):
    config = CONFIGS[case]
    model = hf_model(config)
    layers, heads, d_kv = config["num_decoder_layers"], config["num_heads"], config["d_kv"]
    for source, target, batch in SETTINGS:
        self_cache, cross_cache = hf_cache(model, config["vocab_size"], source, target, batch)
        report = imported(config, source, target, batch).analyze()
        # per layer: the decoder's self-attention and cross-attention entries
        ours_self = [report.layer(f"decoder.block.{i}.layer.0.SelfAttention").kv_cache_bytes // 4
                     for i in range(layers)]
        ours_cross = [report.layer(f"decoder.block.{i}.layer.1.EncDecAttention").kv_cache_bytes // 4
                      for i in range(layers)]
        assert (ours_self, ours_cross) == (self_cache, cross_cache), (source, target, batch)
        assert report.totals.kv_cache_bytes == 4 * (sum(self_cache) + sum(cross_cache))
        # by hand: per decoder layer N × positions × H heads × (d_kv + d_kv); self L positions, cross S
        assert self_cache == [batch * target * heads * 2 * d_kv] * layers
        assert cross_cache == [batch * source * heads * 2 * d_kv] * layers
        # the encoder's bidirectional self-attention keeps none
        assert all(e.kv_cache_bytes == 0 for e in report.layers if e.name.startswith("encoder."))


@pytest.mark.parametrize("case", list(CONFIGS))
def test_the_ordinary_report_is_the_prefill(case):
    for source, target, batch in SETTINGS[1:]:
        net = imported(CONFIGS[case], source, target, batch)
        report = net.analyze()
        serving = net.serving(target)
        prefill = serving.prefill
        assert prefill is not None and serving.prefill_report is not None
        t = report.totals
        assert (t.macs, t.flops, t.kv_cache_bytes) == (prefill.macs, prefill.flops, prefill.kv_cache_bytes)
        # tokens: the decoder's N·L, not the encoder's N·S; per token as the prefill counts it
        assert t.tokens == serving.prefill_report.totals.tokens == batch * target
        assert t.flops_per_token == t.flops / (batch * target) == prefill.flops_per_token
        assert t.training_flops is not None and t.training_flops_per_token == t.training_flops / (batch * target)
        assert "tokens" in report.conventions and "decoded input" in report.conventions["tokens"]


def test_a_hand_written_encoder_decoder_by_hand():
    # encoder: a linear on S = 5 source positions of 16 features; decoder: causal self-attention (2 heads of 8) on
    # L = 4 decoded positions, then cross-attention (4 heads of 4) to the encoder's output. Cache: self N·4·2·(8 + 8),
    # cross N·5·4·(4 + 4). No input is token ids: no tokens.
    spec = {"input": [5, 16], "batch": 3, "layers": [
        {"name": "encoder", "type": "linear", "out_features": 16},
        {"name": "target", "type": "extra_input", "shape": [4, 16]},
        {"name": "self", "type": "multi_head_attention", "num_heads": 2, "causal": True, "inputs": ["target"]},
        {"name": "cross", "type": "multi_head_attention", "num_heads": 4, "inputs": ["self", "encoder"]}]}
    report = layercalc.load(spec).analyze()
    assert report.layer("self").kv_cache_bytes == 4 * 3 * 4 * 2 * 16
    assert report.layer("cross").kv_cache_bytes == 4 * 3 * 5 * 4 * 8
    assert report.totals.kv_cache_bytes == 4 * 3 * (4 * 2 * 16 + 5 * 4 * 8)
    assert report.totals.tokens is None and "tokens" not in report.conventions
    cross = " ".join(report.layer("cross").notes)
    assert "KV cache: the keys and values of the 5 positions of 'encoder', a fixed sequence" in cross
    assert "decoded input" in " ".join(report.layer("target").notes)
    # keys the decoded input makes too (the encoder's output plus the decoder's) are not fixed: the
    # cross-attention keeps no cache of them (they change with every token), only the self-attention does
    mixed = dict(spec, input=[4, 16], layers=[*spec["layers"][:3],
                                              {"name": "mix", "type": "add", "inputs": ["encoder", "self"]},
                                              dict(spec["layers"][3], inputs=["self", "mix"])])
    mixed_report = layercalc.load(mixed).analyze()
    assert mixed_report.layer("cross").kv_cache_bytes == 0 and mixed_report.totals.kv_cache_bytes == 4 * 3 * 4 * 32


def test_notes_say_what_is_cached_without_a_decode_step():
    config = CONFIGS["t5-relu-3heads"]
    report = imported(config, 6, 2, 1).analyze()
    notes = [note for entry in report.layers for note in entry.notes]
    assert not [note for note in notes if "decode step" in note or "prefill" in note]
    cross = report.layer("decoder.block.2.layer.1.EncDecAttention").notes
    assert any(note.startswith("KV cache: the keys and values of the 6 positions of 'encoder.final_layer_norm'")
               for note in cross)
    assert ("decoded input: every layer keeping a KV cache depends on it (generation feeds it token by token); "
            "fixed: input") in report.layer("decoder_input_ids").notes
    # the encoder is no fixed layer's "run at the prefill only" here: it runs in this pass
    assert report.layer("encoder.block.0.layer.0.SelfAttention").macs > 0


def test_summary_prints_the_cache_and_the_decoder_tokens(tmp_path):
    import json

    path = tmp_path / "config.json"
    path.write_text(json.dumps(CONFIGS["t5-relu-3heads"]))
    result = CliRunner().invoke(get_app(), ["summary", str(path), "--input", "7", "--input", "4", "--batch", "2",
                                            "--train"])
    assert result.exit_code == 0, result.output
    # 3 decoder layers × N 2 × (L 4 + S 7) × 3 heads × (8 + 8) × 4 B
    assert f"KV cache {3 * 2 * (4 + 7) * 3 * 16 * 4:,} B" in result.output
    assert "Per token (8 tokens = batch × positions of the decoded input)" in " ".join(result.output.split())
    assert max(len(line) for line in result.output.splitlines()) <= 80


def test_a_sweep_counts_the_decoder_tokens():
    net = imported(CONFIGS["t5model-gated-silu"], 6, 3, 2)
    over_decoder = sweep(net, [3, 5], over="decoder_input_ids")
    assert [row.tokens for row in over_decoder.rows] == [2 * 3, 2 * 5]
    over_encoder = sweep(net, [6, 12], over="input")
    assert [row.tokens for row in over_encoder.rows] == [2 * 3, 2 * 3]
    # the cross-attention cache grows with the encoder's positions: 1 layer × 2 × 6 more × 4 heads × 8 × 4 B
    first, second = (row.totals.kv_cache_bytes for row in over_encoder.rows)
    assert second - first == 2 * 6 * 4 * 8 * 4


def resolve_calls(monkeypatch) -> list:
    """The arguments of every Network._resolve call made from now on (the list fills as analyses run)."""
    calls: list = []
    original = Network._resolve

    def counted(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Network, "_resolve", counted)
    return calls


@pytest.mark.parametrize("source", ["zoo:gpt2", "zoo:llama3_8b", "zoo:bert_base", "two inputs, no cache"])
def test_networks_without_fixed_inputs_are_resolved_once(source, monkeypatch):
    if source.startswith("zoo:"):
        net = layercalc.load(source)
    else:                             # several inputs, no KV cache: nothing to decode, nothing fixed
        net = layercalc.load({"input": [6, 8], "layers": [
            {"name": "other", "type": "extra_input", "shape": [6, 8]},
            {"name": "sum", "type": "add", "inputs": ["input", "other"]}]})
    calls = resolve_calls(monkeypatch)
    report = net.analyze()
    assert len(calls) == 1
    assert "tokens" not in report.conventions
    if source == "zoo:gpt2":          # unchanged: 12 layers × 1,024 positions × 12 heads × (64 + 64) × 4 B
        assert report.totals.kv_cache_bytes == 12 * 1024 * 12 * 128 * 4
        assert report.totals.tokens == 1024


def test_an_encoder_decoder_is_resolved_twice(monkeypatch):
    net = imported(CONFIGS["t5-relu-3heads"], 4, 2, 1)
    calls = resolve_calls(monkeypatch)
    net.analyze()
    assert calls == [(0, None), (0, frozenset({"decoder_input_ids"}))]
