"""Hugging Face RoBERTa, DistilBERT and T5 (an encoder–decoder with two inputs) against transformers itself.

The oracle, as in tests/test_import_huggingface.py: the transformers model built from the same config dict with
random weights and eager attention — parameters (tied tensors once), the parameters of every layer (each named
parameter belongs to the layer whose name is its longest prefix), FlopCounterMode (2 per multiply-accumulate of the
matmuls: layercalc's 2·MACs), output shapes, and the executor's forward pass on the model's own weights. Published
configs are built on PyTorch's meta device and their totals compared with the model cards'.

T5 is called with both inputs by keyword (its second positional argument is the attention mask): the encoder's
token ids and the decoder's, of different lengths, so that the cross-attention's keys (encoder positions) and
queries (decoder positions) differ. Lengths beyond ``relative_attention_max_distance`` put distances in the
logarithmic and the last buckets. RoBERTa's positions follow its ids (a padding id takes position
``pad_token_id``): its ids are drawn without the padding id, the case the network models.
"""

from __future__ import annotations

import json

import pytest
from test_import_huggingface import cli, hf_model, output_shapes, params_by_layer, write_config

import layercalc
from layercalc import LayerCalcError
from layercalc.importers.huggingface import header_notes, spec_from_config, weights_from_state_dict

ENCODER_TOKENS, DECODER_TOKENS = 12, 7

SMALL = dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2, intermediate_size=96, vocab_size=100)
ROBERTA = dict(SMALL, model_type="roberta", max_position_embeddings=34, type_vocab_size=1, pad_token_id=1)
DISTILBERT = dict(model_type="distilbert", dim=64, n_heads=4, n_layers=2, hidden_dim=96, max_position_embeddings=32,
                  vocab_size=100)
# 8 buckets, distances from 6 on in the last: the 12 encoder tokens reach every kind of bucket
T5 = dict(model_type="t5", d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2, vocab_size=100,
          relative_attention_num_buckets=8, relative_attention_max_distance=6)

CASES = {
    "roberta-base": ROBERTA,
    "roberta-mlm": dict(ROBERTA, architectures=["RobertaForMaskedLM"]),
    "roberta-causal": dict(ROBERTA, architectures=["RobertaForCausalLM"], is_decoder=True),
    "roberta-sequence": dict(ROBERTA, architectures=["RobertaForSequenceClassification"], num_labels=3),
    "roberta-token": dict(ROBERTA, architectures=["RobertaForTokenClassification"], num_labels=5,
                          type_vocab_size=2),
    "roberta-qa-pad-3": dict(ROBERTA, architectures=["RobertaForQuestionAnswering"], pad_token_id=3),
    "distilbert-base": DISTILBERT,
    "distilbert-mlm": dict(DISTILBERT, architectures=["DistilBertForMaskedLM"]),
    "distilbert-mlm-untied-relu": dict(DISTILBERT, architectures=["DistilBertForMaskedLM"], activation="relu",
                                       tie_word_embeddings=False),
    "distilbert-sequence-sinusoidal": dict(DISTILBERT, architectures=["DistilBertForSequenceClassification"],
                                           num_labels=4, sinusoidal_pos_embds=True),
    "distilbert-token": dict(DISTILBERT, architectures=["DistilBertForTokenClassification"], num_labels=3),
    "distilbert-qa": dict(DISTILBERT, architectures=["DistilBertForQuestionAnswering"]),
    "t5-base": T5,
    "t5-lm": dict(T5, architectures=["T5ForConditionalGeneration"]),
    # T5 v1.1 / Flan: gated-gelu, no rescale (tie_word_embeddings false); heads of d_kv 6 (inner 24 ≠ d_model 32),
    # a deeper decoder
    "t5-lm-v1.1-gated": dict(T5, architectures=["T5ForConditionalGeneration"], feed_forward_proj="gated-gelu",
                             tie_word_embeddings=False, d_kv=6, num_decoder_layers=3),
    "t5-model-gated-silu": dict(T5, architectures=["T5Model"], feed_forward_proj="gated-silu"),
    "t5-encoder": dict(T5, architectures=["T5EncoderModel"], num_layers=3),
    # T5Model sets each stack's is_decoder itself: the config's is ignored
    "t5-model-is-decoder": dict(T5, is_decoder=True),
}


def two_inputs(config: dict) -> bool:
    return config["model_type"] == "t5" and config.get("architectures", ["T5Model"])[0] != "T5EncoderModel"


def inputs(config: dict, meta: bool = False, tokens: int = ENCODER_TOKENS, decoder_tokens: int = DECODER_TOKENS):
    """The model's keyword inputs: token ids (RoBERTa's without its padding id), and T5's decoder ids."""
    import torch

    device = "meta" if meta else "cpu"
    low = config.get("pad_token_id", 1) + 1 if config["model_type"] == "roberta" else 0
    vocab = config.get("vocab_size", 100)
    made = {"input_ids": torch.randint(low, vocab, (2, tokens), device=device)}
    if two_inputs(config):
        made["decoder_input_ids"] = torch.randint(0, vocab, (2, decoder_tokens), device=device)
    return made


def model_outputs(config: dict, output) -> list:
    """The tensors the model returns in its order (past_key_values, a cache, left out)."""
    import torch

    if getattr(output, "start_logits", None) is not None:
        return [torch.stack([output.start_logits, output.end_logits], dim=-1)]
    first = output.logits if getattr(output, "logits", None) is not None else output.last_hidden_state
    rest = [getattr(output, "pooler_output", None), getattr(output, "encoder_last_hidden_state", None)]
    return [first, *(t for t in rest if t is not None)]


def imported(config: dict, tokens: int = ENCODER_TOKENS, decoder_tokens: int = DECODER_TOKENS):
    net = layercalc.load(spec_from_config(config, "config.json"))
    shapes = [[tokens], [decoder_tokens]] if two_inputs(config) else [[tokens]]
    return net.replace_inputs(shapes).replace(batch=2)


def assert_counts_agree(config: dict, meta: bool = False, tokens: int = ENCODER_TOKENS,
                        decoder_tokens: int = DECODER_TOKENS) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = hf_model(config, meta)
    given = inputs(config, meta, tokens, decoder_tokens)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        output = model(**given)
    report = imported(config, tokens, decoder_tokens).analyze()
    assert report.totals.params == sum(p.numel() for p in model.parameters())
    assert 2 * report.totals.macs == counter.get_total_flops()
    ours = {entry.name: entry.params for entry in report.layers if entry.params}
    assert params_by_layer(model, [entry.name for entry in report.layers]) == ours
    if not meta:
        assert output_shapes(report) == [list(t.shape) for t in model_outputs(config, output)]


@pytest.mark.parametrize("case", list(CASES))
def test_small_config_params_per_layer_macs_and_output_shape(case):
    assert_counts_agree(CASES[case])


EXECUTED = ["roberta-base", "roberta-mlm", "roberta-sequence", "roberta-causal", "roberta-qa-pad-3",
            "distilbert-mlm", "distilbert-mlm-untied-relu", "distilbert-sequence-sinusoidal", "t5-lm",
            "t5-lm-v1.1-gated", "t5-model-gated-silu", "t5-encoder"]


@pytest.mark.parametrize("case", EXECUTED)
def test_executor_on_the_models_weights_gives_its_output(case):
    import numpy as np
    import torch

    config = CASES[case]
    torch.manual_seed(0)
    model = hf_model(config)
    given = inputs(config)
    with torch.no_grad():
        expected = [t.numpy() for t in model_outputs(config, model(**given))]
    net = imported(config)
    arrays = [ids.numpy().astype(np.float32) for ids in given.values()]     # one array per network input
    run = net.run(x=arrays if len(arrays) > 1 else arrays[0],
                  weights=weights_from_state_dict(config, model.state_dict()))
    ours = [run[name] for name in net.analyze().outputs] if isinstance(run, dict) else [run]
    assert len(ours) == len(expected)
    for mine, theirs in zip(ours, expected):
        assert mine.shape == theirs.shape
        assert np.max(np.abs(mine - theirs)) <= 1e-4 * np.max(np.abs(theirs))


def test_t5_lengths_beyond_the_bucket_distances_and_a_decoder_longer_than_the_encoder():
    """The relative position bias at 40 encoder and 50 decoder tokens (distances past max_distance 6 and 128) and
    the cross-attention's keys shorter than its queries."""
    for config in (CASES["t5-lm"], dict(CASES["t5-lm"], relative_attention_num_buckets=32,
                                        relative_attention_max_distance=128)):
        assert_counts_agree(config, tokens=40, decoder_tokens=50)


def test_verify_runs_t5_with_both_inputs():
    from layercalc.verify import verify

    net = imported(CASES["t5-lm"])
    result = verify(net)
    assert result.ok and len(result.checks) == len(net.layers)


# ---------------------------------------------------------------------------------------- published configs

T5_BASE = {"architectures": ["T5ForConditionalGeneration"], "d_ff": 3072, "d_kv": 64, "d_model": 768,
           "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1, "initializer_factor": 1.0,
           "is_encoder_decoder": True, "layer_norm_epsilon": 1e-06, "model_type": "t5", "n_positions": 512,
           "num_heads": 12, "num_layers": 12, "output_past": True, "pad_token_id": 0,
           "relative_attention_num_buckets": 32, "vocab_size": 32128}
ROBERTA_BASE = {"architectures": ["RobertaForMaskedLM"], "attention_probs_dropout_prob": 0.1, "bos_token_id": 0,
                "eos_token_id": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
                "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
                "max_position_embeddings": 514, "model_type": "roberta", "num_attention_heads": 12,
                "num_hidden_layers": 12, "pad_token_id": 1, "type_vocab_size": 1, "vocab_size": 50265}
DISTILBERT_BASE = {"activation": "gelu", "architectures": ["DistilBertForMaskedLM"], "attention_dropout": 0.1,
                   "dim": 768, "dropout": 0.1, "hidden_dim": 3072, "initializer_range": 0.02,
                   "max_position_embeddings": 512, "model_type": "distilbert", "n_heads": 12, "n_layers": 6,
                   "pad_token_id": 0, "qa_dropout": 0.1, "seq_classif_dropout": 0.2, "sinusoidal_pos_embds": False,
                   "tie_weights_": True, "vocab_size": 30522}

#: config, the published parameter count, the default input(s)
PUBLISHED = {
    # shared 32,128·768 + 12 encoder blocks (4·768² + 2·768·3,072 + 2·768) + 12 decoder blocks (8·768² +
    # 2·768·3,072 + 3·768) + two bias tables 2·32·12 + two final norms 2·768; lm_head tied
    "t5-base": (T5_BASE, 222_903_552, [[512], [512]]),
    # RobertaModel 124,645,632 − pooler (768² + 768) + lm_head dense (768² + 768), layer_norm 2·768, bias 50,265
    "roberta-base": (ROBERTA_BASE, 124_697_433, [[512]]),
    "distilbert-base-uncased": (DISTILBERT_BASE, 66_985_530, [[512]]),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_configs_against_transformers_on_the_meta_device(name):
    config, published, lengths = PUBLISHED[name]
    assert_counts_agree(config, meta=True, tokens=16, decoder_tokens=8)
    net = layercalc.load(spec_from_config(config, name))
    assert net.analyze().totals.params == published
    assert list(net.input_shapes().values()) == lengths


def test_t5_base_by_hand():
    """T5-base's total from its sizes, written out (the model card's 222,903,552)."""
    d, ff, vocab, heads, buckets = 768, 3072, 32128, 12, 32
    encoder_block = 4 * d * d + 2 * d * ff + 2 * d
    decoder_block = 8 * d * d + 2 * d * ff + 3 * d
    total = vocab * d + 12 * encoder_block + 12 * decoder_block + 2 * buckets * heads + 2 * d
    assert total == 222_903_552
    assert layercalc.load(spec_from_config(T5_BASE, "t5-base")).analyze().totals.params == total


# ------------------------------------------------------------------------------------------ two inputs, CLI

def test_summary_takes_one_input_per_network_input(tmp_path):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    config = CASES["t5-lm"]
    path = write_config(tmp_path, config)
    report = json.loads(cli("summary", path, "--input", 16, "--input", 8, "--format", "json").stdout)
    model = hf_model(config)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(input_ids=torch.zeros(1, 16, dtype=torch.long), decoder_input_ids=torch.zeros(1, 8, dtype=torch.long))
    assert 2 * report["totals"]["macs"] == counter.get_total_flops()
    assert report["input_shape"] == [1, 16]
    shapes = {layer["name"]: layer["output_shape"] for layer in report["layers"]}
    assert shapes["decoder_input_ids"] == [1, 8] and shapes["lm_head"] == [1, 8, 100]
    # the header: the first input (and the default's account when no --input is given), then the others
    table = " ".join(cli("summary", path, "--wide").stdout.split())
    assert ("input [1, 512] = 512 encoder tokens and 512 decoder tokens (no position table: the length T5 was "
            "trained at)") in table and "other input decoder_input_ids [1, 512]" in table
    table = " ".join(cli("summary", path, "--input", 16, "--input", 8, "--batch", 2, "--wide").stdout.split())
    assert "input [2, 16] · float32" in table and "other input decoder_input_ids [2, 8]" in table


@pytest.mark.parametrize("given", [["16"], ["16", "8", "4"]])
def test_a_wrong_number_of_inputs_is_one_line_naming_them(tmp_path, given):
    path = write_config(tmp_path, CASES["t5-lm"])
    result = cli("summary", path, *[arg for size in given for arg in ("--input", size)], code=2)
    line = result.output.strip()
    assert "\n" not in line
    assert (f"--input: got {len(given)} shape{'s' if len(given) > 1 else ''}; the network has 2 inputs: input "
            f"[512], decoder_input_ids [512] (one shape per input, in this order)") in line


def test_run_by_input_name_and_a_wrong_batch_is_refused():
    import numpy as np

    net = imported(CASES["t5-lm"])
    ids = np.ones((2, ENCODER_TOKENS)), np.ones((2, DECODER_TOKENS))
    by_list = net.run(x=list(ids))
    by_name = net.run(x={"input": ids[0], "decoder_input_ids": ids[1]})
    assert np.array_equal(by_list["lm_head"], by_name["lm_head"])
    with pytest.raises(LayerCalcError, match=r"decoder_input_ids: a batch of 3 .* the first input's is 2"):
        net.run(x=[ids[0], np.ones((3, DECODER_TOKENS))])
    with pytest.raises(LayerCalcError, match=r"decoder_input_ids: expected an array of shape \[batch, 7\]"):
        net.run(x=[ids[0], np.ones((2, 5))])


# --------------------------------------------------------------------------------------------- the headers

def test_header_notes_say_which_choices_were_made():
    assert header_notes(ROBERTA_BASE)[1] == ("input: 512 tokens (max_position_embeddings 514 − pad_token_id 1 − 1: "
                                             "positions start at pad_token_id + 1); --input N for N tokens")
    assert header_notes(T5_BASE)[1] == ("input: 512 encoder tokens and 512 decoder tokens (n_positions 512); "
                                        "--input N --input M for N encoder and M decoder tokens")
    flan = dict(T5_BASE, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    assert any("lm_head is still tied to shared" in note for note in header_notes(flan))
    assert header_notes(dict(CASES["t5-encoder"]))[1].startswith("input: 512 tokens (no position table")


# ---------------------------------------------------------------------------------------------- refusals

REFUSED = {
    "t5 feed_forward_proj": (dict(T5, feed_forward_proj="gated-relu-x"),
                             "config key 'feed_forward_proj': got 'gated-relu-x': expected ACT or gated-ACT"),
    "t5 activation": (dict(T5, feed_forward_proj="gated-mish"),
                      "config key 'feed_forward_proj': got 'gated-mish': the activation 'mish' is not one"),
    "t5 buckets": (dict(T5, relative_attention_num_buckets=2),
                   "config key 'relative_attention_num_buckets': got 2: at least 4"),
    "t5 max_distance": (dict(T5, relative_attention_max_distance=4),
                        "config key 'relative_attention_max_distance': got 4: must exceed the decoder's 4 exact"),
    "roberta untied mlm": (dict(CASES["roberta-mlm"], tie_word_embeddings=False),
                           "config key 'tie_word_embeddings': got False: RobertaForMaskedLM untied keeps lm_head.bias"),
    "roberta relative positions": (dict(ROBERTA, position_embedding_type="relative_key"),
                                   "config key 'position_embedding_type': got 'relative_key'"),
    "roberta no position left": (dict(ROBERTA, max_position_embeddings=2),
                                 "config key 'max_position_embeddings': got 2: no position left after the first 2"),
    "distilbert qa labels": (dict(CASES["distilbert-qa"], num_labels=3),
                             "config key 'num_labels': got 3: DistilBertForQuestionAnswering needs 2"),
    "t5 encoder as a decoder": (dict(T5, architectures=["T5EncoderModel"], is_decoder=True),
                                "config key 'is_decoder': got True: T5EncoderModel's stack would be a decoder's"),
    "t5 architecture": (dict(T5, architectures=["T5ForQuestionAnswering"]),
                        "config key 'architectures': got 'T5ForQuestionAnswering': not an architecture layercalc "
                        "imports for model_type 't5'; supported: T5Model, T5ForConditionalGeneration, "
                        "T5EncoderModel"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_unsupported_configs_are_refused_naming_the_key_and_value(case):
    config, message = REFUSED[case]
    with pytest.raises(LayerCalcError) as raised:
        spec_from_config(config, "config.json")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_t5_refusals_are_what_transformers_refuses_too():
    """T5Config itself rejects a feed_forward_proj of another form (no model to count)."""
    transformers = pytest.importorskip("transformers")
    with pytest.raises(Exception, match="feed_forward_proj`: gated-relu-x is not a valid activation"):
        transformers.T5Config(feed_forward_proj="gated-relu-x")


# ------------------------------------------------------------------------------------ the bucketed distances

def test_relative_position_buckets_equal_transformers():
    """The executor's buckets (float32, as transformers computes them) on every distance of 300×300 positions, for
    59 (num_buckets, max_distance, direction) settings: a distance on a bucket's edge falls where it falls there."""
    import numpy as np
    import torch
    from transformers.models.t5.modeling_t5 import T5Attention

    from layercalc.layers.attention import relative_position_buckets

    settings = [(buckets, distance, both) for buckets in (4, 6, 8, 16, 32, 33, 64) for distance in (5, 16, 100, 128, 256)
                for both in (True, False) if distance > buckets // (2 if both else 1) // 2 >= 1]
    assert len(settings) == 59
    relative = torch.arange(300)[None, :] - torch.arange(300)[:, None]
    for buckets, distance, both in settings:
        theirs = T5Attention._relative_position_bucket(relative, bidirectional=both, num_buckets=buckets,
                                                       max_distance=distance).numpy()
        assert np.array_equal(relative_position_buckets(300, 300, both, buckets, distance), theirs)


def test_a_checkpoint_with_its_own_lm_head_is_refused_for_the_tied_network():
    """transformers 5 ties T5's lm_head to shared: a state_dict whose lm_head.weight is another tensor (what a T5
    v1.1 / Flan-T5 checkpoint holds) is not this network's weights; the tied copy itself loads."""
    import torch

    config = CASES["t5-lm-v1.1-gated"]
    state = hf_model(config).state_dict()
    assert "lm_head.weight" in state                       # listed under both names, the same tensor
    weights_from_state_dict(config, state)
    with pytest.raises(LayerCalcError, match=r"lm_head\.weight differs from shared\.weight, to which the layer is "
                                             r"tied"):
        weights_from_state_dict(config, {**state, "lm_head.weight": torch.randn(100, 32)})


# ------------------------------------------------------------------------------------------- hostile values

HOSTILE_BASES = {"t5": dict(T5_BASE, num_layers=2), "roberta": dict(ROBERTA_BASE, num_hidden_layers=2),
                 "distilbert": dict(DISTILBERT_BASE, n_layers=2)}
#: keys these families read that the published configs leave out
HOSTILE_OPTIONAL = ["num_decoder_layers", "feed_forward_proj", "relative_attention_max_distance", "tie_word_embeddings",
                    "is_decoder", "num_labels", "id2label", "architectures", "model_type", "position_embedding_type",
                    "add_cross_attention", "hidden_act", "activation"]


@pytest.mark.parametrize("family", list(HOSTILE_BASES))
def test_every_key_set_to_a_hostile_value_is_read_or_refused_by_name(family):
    """As tests/test_hostile_configs.py does for the other families: every key of the published config (and the
    optional ones) set in turn to a list, a mapping, a string, a negative number, 2**70, NaN, …: read as what it
    says, or refused in one line naming the key."""
    import time

    from test_hostile_configs import HOSTILE

    base = HOSTILE_BASES[family]
    layercalc.load(base).analyze()
    refused = 0
    for key in sorted(set(base) | set(HOSTILE_OPTIONAL)):
        for kind, value in HOSTILE.items():
            started = time.perf_counter()
            try:
                layercalc.load({**base, key: value}).analyze()
            except LayerCalcError as exc:
                refused += 1
                assert "\n" not in str(exc) and repr(key) in str(exc), (key, kind, str(exc))
            assert time.perf_counter() - started < 5, (key, kind)
    assert refused > 50


# ------------------------------------------------------------------------------------------------ backward

@pytest.mark.parametrize("case", ["t5-lm", "t5-lm-v1.1-gated", "t5-encoder", "roberta-mlm",
                                  "distilbert-sequence-sinusoidal"])
def test_backward_is_flop_counter(case):
    """FlopCounterMode around loss.backward() (token ids: no input gradient) equals 2·(backward input + weight
    MACs), as tests/test_backward.py checks for the other families: T5's score bias takes the scores' gradient,
    its bucket table a scatter-add FlopCounterMode does not count."""
    from torch.utils.flop_counter import FlopCounterMode

    config = CASES[case]
    model = hf_model(config)
    given = inputs(config)
    output = model(**given)
    first = output.logits if getattr(output, "logits", None) is not None else output.last_hidden_state
    with FlopCounterMode(display=False) as counter:
        first.sum().backward()
    totals = imported(config).analyze().totals
    assert counter.get_total_flops() == 2 * (totals.backward_input_macs + totals.backward_weight_macs)
    assert totals.training_flops == totals.flops + totals.backward_flops
