"""The zoo's transformers against their sources: published parameter counts (Hugging Face / torchvision model
definitions, tied weights counted once), FlopCounterMode's published figure for GPT-2 at 1,024 tokens, and live
oracles — Hugging Face transformers models built from their configs (random weights; the 7–8 B models on PyTorch's
meta device, so nothing is allocated), counted with ``sum(p.numel())`` and FlopCounterMode with eager attention.
"""

import pytest

from layercalc import zoo
from layercalc.verify import verify

#: published parameter counts (shared/README.md: Hugging Face and torchvision definitions, tied weights once)
PUBLISHED = {"gpt2": 124_439_808, "bert_base": 109_482_240, "vit_b_16": 86_567_656, "llama2_7b": 6_738_415_616,
             "llama3_8b": 8_030_261_248, "mistral_7b": 7_241_732_096}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_parameter_counts(name):
    assert zoo.load(name).analyze().totals.params == PUBLISHED[name]


def test_gpt2_flops_at_1024_tokens_equal_flop_counter_on_hugging_face_eager():
    # FlopCounterMode on GPT2LMHeadModel with attn_implementation="eager", 1,024 tokens: 291,648,307,200
    report = zoo.load("gpt2").replace(input=[1024]).analyze()
    assert 2 * report.totals.macs == 291_648_307_200
    assert report.layer("lm_head").params == 0 and report.layer("lm_head").output_shape == [1, 1024, 50257]


def test_gpt2_runs_in_the_executor():
    result = verify(zoo.load("gpt2").replace(input=[16]))
    assert result.ok and len(result.checks) == len(zoo.load("gpt2").layers)


def _hf_counts(model, *inputs):
    pytest.importorskip("torch")
    from oracle_helpers import hf_counts  # imports torch: only once a test needs it

    return hf_counts(model, *inputs)


@pytest.mark.parametrize("length", [7, 64])
def test_gpt2_and_bert_against_hugging_face(length):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(attn_implementation="eager")).eval()
    params, flops = _hf_counts(gpt2, torch.zeros(1, length, dtype=torch.long))
    report = zoo.load("gpt2").replace(input=[length]).analyze()
    assert (report.totals.params, 2 * report.totals.macs) == (params, flops)
    bert = transformers.BertModel(transformers.BertConfig(attn_implementation="eager")).eval()
    params, flops = _hf_counts(bert, torch.zeros(1, length, dtype=torch.long))
    report = zoo.load("bert_base").replace(input=[length]).analyze()
    assert (report.totals.params, 2 * report.totals.macs) == (params, flops)


def test_vit_against_hugging_face():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    vit = transformers.ViTForImageClassification(
        transformers.ViTConfig(num_labels=1000, attn_implementation="eager")).eval()
    params, flops = _hf_counts(vit, torch.zeros(1, 3, 224, 224))
    report = zoo.load("vit_b_16").analyze()
    assert (report.totals.params, 2 * report.totals.macs) == (params, flops)


LLMS = {  # zoo name: (Hugging Face class, config arguments)
    "llama2_7b": ("LlamaForCausalLM", "LlamaConfig", dict(vocab_size=32000, intermediate_size=11008,
                                                          num_key_value_heads=32)),
    "llama3_8b": ("LlamaForCausalLM", "LlamaConfig", dict(vocab_size=128256, intermediate_size=14336,
                                                          num_key_value_heads=8)),
    "mistral_7b": ("MistralForCausalLM", "MistralConfig", dict(vocab_size=32000, intermediate_size=14336,
                                                               num_key_value_heads=8)),
}


@pytest.mark.parametrize("name", list(LLMS))
def test_llms_against_hugging_face_on_the_meta_device(name):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model_class, config_class, arguments = LLMS[name]
    config = getattr(transformers, config_class)(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32,
                                                 attn_implementation="eager", **arguments)
    with torch.device("meta"):
        model = getattr(transformers, model_class)(config)
    params, flops = _hf_counts(model, torch.zeros(1, 16, dtype=torch.long, device="meta"))
    report = zoo.load(name).replace(input=[16]).analyze()
    assert (report.totals.params, 2 * report.totals.macs) == (params, flops)
    assert params == PUBLISHED[name]
