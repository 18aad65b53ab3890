"""Saved activations of the details Hugging Face models differ in, against transformers 5.23 / torch 2.13 in train
mode (``saved_tensors_hooks``: tests/saved_oracle.py), in total and module by module.

- The ids a learned position (or token-type) table is read at, which autograd keeps for the table's gradient:
  GPT-2 makes [1, L]; BERT and DistilBERT read positions at a slice of a registered buffer (not an activation) and
  BERT its token types at a [1, L] gather; OPT makes [N, L] positions per sequence (cumsum of the attention mask)
  and RoBERTa [N, L] positions and token types (``position_embedding``'s ``ids`` and ``row``).
- RMSNorm's flavours: nn.RMSNorm and Gemma multiply by γ in float32, Gemma by (1 + γ), a float32 tensor of its own;
  LlamaRMSNorm (and Qwen2, Mistral, Phi-3) casts the normalized x back to the 16-bit dtype before γ
  (``rmsnorm``'s ``offset`` and ``cast_before_scale``).
- Eager attention's ``softmax(…, dtype=float32)`` keeps float32 probabilities in a 16-bit model
  (``multi_head_attention``'s ``softmax_dtype``).

The differences each detail makes are also derived by hand (the figures without the detail, and the bytes it adds).
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from saved_oracle import saved_by_module, saved_bytes  # noqa: E402
from test_import_huggingface import hf_model  # noqa: E402

import layercalc  # noqa: E402
from layercalc.importers.huggingface import spec_from_config  # noqa: E402

torch.set_num_threads(1)

DTYPES = {"fp32": (torch.float32, "float32"), "bf16": (torch.bfloat16, "bfloat16")}

OPT = dict(model_type="opt", architectures=["OPTForCausalLM"], hidden_size=24, num_attention_heads=3, ffn_dim=28,
           num_hidden_layers=2, vocab_size=60, word_embed_proj_dim=24, dropout=0.0, attention_dropout=0.0,
           activation_dropout=0.0, max_position_embeddings=24, pad_token_id=1)
ENCODER = dict(hidden_size=24, num_attention_heads=3, intermediate_size=28, num_hidden_layers=2, vocab_size=60,
               max_position_embeddings=24, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
BERT = dict(model_type="bert", architectures=["BertForMaskedLM"], **ENCODER)
ROBERTA = dict(model_type="roberta", architectures=["RobertaForMaskedLM"], pad_token_id=1, **ENCODER)
DISTILBERT = dict(model_type="distilbert", architectures=["DistilBertForMaskedLM"], dim=24, n_heads=3, n_layers=2,
                  hidden_dim=28, vocab_size=60, max_position_embeddings=24, dropout=0.0, attention_dropout=0.0)
GPT2 = dict(model_type="gpt2", architectures=["GPT2LMHeadModel"], n_embd=24, n_head=4, n_layer=2, n_positions=32,
            vocab_size=60, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_pytorch_tanh")
DECODER = dict(hidden_size=24, num_attention_heads=4, intermediate_size=28, num_hidden_layers=2, vocab_size=60,
               max_position_embeddings=32)
LLAMA = dict(model_type="llama", architectures=["LlamaForCausalLM"], num_key_value_heads=2, **DECODER)
QWEN2 = dict(model_type="qwen2", architectures=["Qwen2ForCausalLM"], num_key_value_heads=2, **DECODER)
MISTRAL = dict(model_type="mistral", architectures=["MistralForCausalLM"], num_key_value_heads=1, sliding_window=3,
               **DECODER)
PHI3 = dict(model_type="phi3", architectures=["Phi3ForCausalLM"], num_key_value_heads=2, pad_token_id=0, **DECODER)
NEOX = dict(model_type="gpt_neox", architectures=["GPTNeoXForCausalLM"], rotary_pct=1.0, hidden_dropout=0.0,
            attention_dropout=0.0, **DECODER)
GEMMA_SIZES = dict(hidden_size=24, num_attention_heads=3, num_key_value_heads=1, head_dim=8, intermediate_size=28,
                   num_hidden_layers=2, vocab_size=60, attention_dropout=0.0, pad_token_id=0, bos_token_id=2,
                   eos_token_id=1)
GEMMA = dict(model_type="gemma", architectures=["GemmaForCausalLM"], **GEMMA_SIZES)
GEMMA2 = dict(model_type="gemma2", architectures=["Gemma2ForCausalLM"], sliding_window=4, **GEMMA_SIZES)
GEMMA3 = dict(model_type="gemma3_text", architectures=["Gemma3ForCausalLM"], sliding_window=4, **GEMMA_SIZES)
VIT = dict(model_type="vit", architectures=["ViTForImageClassification"], hidden_size=24, num_attention_heads=3,
           intermediate_size=28, num_hidden_layers=2, image_size=16, patch_size=8, num_labels=3,
           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def measure(config: dict, batch: int, tokens: int, dtype: str = "fp32", spec: dict | None = None):
    """(torch's saved bytes by module, layercalc's report) for one train-mode forward pass of ``config``'s model
    and of its imported spec (``spec``: an edited one) at the same batch, length and dtype. Token ids avoid RoBERTa's
    padding id 1 (a padding token's position is not modeled)."""
    torch_dtype, name = DTYPES[dtype]
    model = hf_model(config).to(torch_dtype).train()
    torch.manual_seed(0)
    net = layercalc.load(spec or spec_from_config(config, "config.json")).replace(batch=batch, dtype=name)
    if config["model_type"] == "vit":
        size = config["image_size"]
        inputs = {"pixel_values": torch.randn(batch, 3, size, size, dtype=torch_dtype)}
    else:
        inputs = {"input_ids": torch.randint(2, config["vocab_size"], (batch, tokens))}
        net = net.replace(input=[tokens])
    return saved_by_module(model, **inputs), net.analyze()


def module_bytes(by_module: dict[str, int], name: str) -> int:
    """The bytes torch books under module ``name`` and its submodules."""
    return sum(v for k, v in by_module.items() if k == name or k.startswith(name + "."))


def without(spec: dict, field: str) -> dict:
    """The spec with ``field`` removed from every layer (the figures before the detail was modeled)."""
    spec = copy.deepcopy(spec)

    def strip(node):
        if isinstance(node, dict):
            node.pop(field, None)
            for value in node.values():
                strip(value)
        elif isinstance(node, list):
            for value in node:
                strip(value)
    strip(spec)
    return spec


# ------------------------------------------------------------------------------------ positions and token types

#: config, batch, length, {layer: its saved bytes derived by hand (int64 ids: 8 bytes each)}
POSITION_CASES = {
    # OPT: position_ids = cumsum(attention_mask) per sequence, + offset inside embed_positions: [N, L]
    "opt": (OPT, 3, 5, {"model.decoder.embed_positions": 8 * 3 * 5, "model.decoder.embed_tokens": 8 * 3 * 5}),
    "opt-post-norm": (dict(OPT, do_layer_norm_before=False), 2, 7, {"model.decoder.embed_positions": 8 * 2 * 7}),
    # RoBERTa: positions from the input ids [N, L]; token types gathered at them [N, L]
    "roberta": (ROBERTA, 3, 6, {"roberta.embeddings.position_embeddings": 8 * 3 * 6,
                                "roberta.embeddings.token_type_embeddings": 8 * 3 * 6,
                                "roberta.embeddings.word_embeddings": 8 * 3 * 6}),
    # BERT: positions a slice of the position_ids buffer (not counted); token types a [1, L] gather, expanded
    "bert": (BERT, 3, 6, {"bert.embeddings.position_embeddings": 0, "bert.embeddings.token_type_embeddings": 8 * 6}),
    # DistilBERT: positions a slice of the position_ids buffer; no token types
    "distilbert": (DISTILBERT, 4, 5, {"distilbert.embeddings.position_embeddings": 0}),
    # GPT-2: cache_position.unsqueeze(0), made per forward: [1, L]
    "gpt2": (GPT2, 3, 6, {"transformer.wpe": 8 * 6}),
}


@pytest.mark.parametrize("case", list(POSITION_CASES))
def test_position_and_token_type_ids_as_each_model_makes_them(case):
    config, batch, tokens, by_hand = POSITION_CASES[case]
    by_module, report = measure(config, batch, tokens)
    assert report.totals.saved_bytes == sum(by_module.values())
    for name, expected in by_hand.items():
        assert report.layer(name).saved_bytes == expected, name
        assert module_bytes(by_module, name) == expected, name


def test_frozen_position_tables_keep_no_ids():
    """A frozen table needs no gradient: its ids are not kept (nn.Embedding saves them for the weight only)."""
    config, batch, tokens = ROBERTA, 2, 5
    model = hf_model(config).train()
    embeddings = model.roberta.embeddings
    for table in (embeddings.position_embeddings, embeddings.token_type_embeddings):
        table.weight.requires_grad_(False)
    torch.manual_seed(0)
    theirs = saved_by_module(model, input_ids=torch.randint(2, 60, (batch, tokens)))
    spec = spec_from_config(config, "config.json")
    for layer in spec["layers"]:
        if layer["name"] in ("roberta.embeddings.position_embeddings", "roberta.embeddings.token_type_embeddings"):
            layer["trainable"] = False
    report = layercalc.load(spec).replace(input=[tokens], batch=batch).analyze()
    assert report.layer("roberta.embeddings.position_embeddings").saved_bytes == 0
    assert module_bytes(theirs, "roberta.embeddings.token_type_embeddings") == 0
    assert report.totals.saved_bytes == sum(theirs.values())


def test_token_type_row_is_one_row_for_every_position():
    """``row``: the table is read at one row for every position (BERT's token types, all 0): params types·d, the
    output [N, L, d] (L may exceed the table's rows), and the executor's values are that row's."""
    import numpy as np
    spec = {"input": [7], "layers": [
        {"name": "types", "type": "position_embedding", "num_embeddings": 2, "embedding_dim": 3, "row": 1}]}
    net = layercalc.load(spec).replace(batch=2)
    layer = net.analyze().layer("types")
    assert (layer.params, list(layer.output_shape)) == (6, [2, 7, 3])
    table = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = net.run(np.zeros((2, 7)), weights={"types.weight": table})
    assert np.array_equal(np.asarray(out), np.broadcast_to(table[1], (2, 7, 3)))
    with pytest.raises(layercalc.LayerCalcError, match="row 2 must be a row of the 2-row table"):
        layercalc.load({"input": [7], "layers": [dict(spec["layers"][0], row=2)]})


# -------------------------------------------------------------------------------------------- RMSNorm flavours

def _norm_modules():
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
    return {"nn": (lambda e: torch.nn.RMSNorm(e, eps=1e-6), {}),
            "llama": (LlamaRMSNorm, {"cast_before_scale": True}),
            "gemma": (GemmaRMSNorm, {"offset": 1.0})}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("flavour", ["nn", "llama", "gemma"])
def test_rmsnorm_flavours_after_a_linear_equal_torch(flavour, dtype):
    """linear → RMSNorm, N 2, L 3, E 8 (x needs a gradient and γ is trained), against the module itself; by hand:
    the linear's input (N·L·E in the dtype), the norm's x in float32 (in fp32 x itself, a 16-bit x's float32 copy),
    1/rms per row in float32 (N·L·4), the normalized x (float32, or the 16-bit dtype with cast_before_scale) and
    Gemma's 1 + γ (E·4)."""
    n, length, e = 2, 3, 8
    make, fields = _norm_modules()[flavour]
    torch_dtype, name = DTYPES[dtype]
    model = torch.nn.Sequential(torch.nn.Linear(e, e), make(e)).to(torch_dtype)
    theirs = saved_bytes(model, torch.randn(n, length, e, dtype=torch_dtype))
    spec = {"input": [length, e], "layers": [{"type": "linear", "out_features": e},
                                             {"type": "rmsnorm", "eps": 1e-6, **fields}]}
    ours = layercalc.load(spec).replace(batch=n, dtype=name).analyze().totals.saved_bytes
    size = torch_dtype.itemsize
    normalized = size if flavour == "llama" else 4
    offset = 4 * e if flavour == "gemma" else 0
    assert ours == theirs == n * length * e * size + n * length * e * 4 + n * length * 4 \
        + n * length * e * normalized + offset


# ------------------------------------------------------------------------------- whole models, fp32 and bf16

#: the Hugging Face models whose norms and attention layers have the same names here as in transformers
DECODERS = {"llama": LLAMA, "qwen2": QWEN2, "mistral-mqa-window": MISTRAL, "phi3": PHI3, "gpt_neox": NEOX,
            "opt": OPT, "gemma": GEMMA, "gpt2": GPT2, "vit": VIT}


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("case", list(DECODERS))
def test_models_saved_bytes_equal_hugging_face_in_total_and_per_norm_and_attention(case, dtype):
    config = DECODERS[case]
    by_module, report = measure(config, 2, 5, dtype)
    assert report.totals.saved_bytes == sum(by_module.values())
    checked = 0
    for layer in report.layers:
        last = layer.name.rpartition(".")[2]
        if "norm" in last.lower() or last.startswith("ln_") or last in ("self_attn", "attn", "attention"):
            assert layer.saved_bytes == module_bytes(by_module, layer.name), layer.name
            checked += 1
    assert checked >= 4


def test_bf16_llama_differences_derived_by_hand():
    """Llama in bfloat16, N 3, L 6, E 24, H 4, 2 layers: counted as nn.RMSNorm and a 16-bit softmax, layercalc
    would keep 2·N·L·E bytes more per norm (5 norms: the normalized x in float32, not bf16) and N·H·L²·4 fewer per
    layer (the float32 probabilities); with the flags, the total is torch's."""
    n, length, e, heads, layers = 3, 6, 24, 4, 2
    by_module, report = measure(LLAMA, n, length, "bf16")
    theirs = sum(by_module.values())
    assert report.totals.saved_bytes == theirs
    spec = spec_from_config(LLAMA, "config.json")
    plain = without(without(spec, "cast_before_scale"), "softmax_dtype")
    _, before = measure(LLAMA, n, length, "bf16", plain)
    norms = 2 * layers + 1
    assert before.totals.saved_bytes - theirs == norms * 2 * n * length * e - layers * n * heads * length ** 2 * 4
    _, fp32 = measure(LLAMA, n, length, "fp32", plain)                  # in float32 the flags change nothing
    _, fp32_flags = measure(LLAMA, n, length, "fp32")
    assert fp32.totals.saved_bytes == fp32_flags.totals.saved_bytes


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("config", [GEMMA2, GEMMA3], ids=["gemma2", "gemma3"])
def test_gemma2_and_3_norms_keep_one_plus_gamma_in_float32(config, dtype):
    """Gemma 2's four norms per layer and Gemma 3's (its q/k norms are the attention's): each keeps what
    nn.RMSNorm's rule counts (float32) and 1 + γ, E·4 bytes, in both dtypes; the whole models equal too (Gemma 2's
    soft-capped scores, Gemma 3's q/k norms, the float32 softmax in bf16)."""
    n, length, e = 2, 5, 24
    by_module, report = measure(config, n, length, dtype)
    assert report.totals.saved_bytes == sum(by_module.values())
    norms = [layer for layer in report.layers if layer.name.endswith(("layernorm", ".norm"))]
    assert len(norms) == 2 * 4 + 1
    for layer in norms:
        assert layer.saved_bytes == module_bytes(by_module, layer.name), layer.name
    first = report.layer("model.layers.0.input_layernorm")
    # x (in fp32 itself, else its float32 copy), 1/rms per row, the normalized x in float32, and 1 + γ
    assert first.saved_bytes == n * length * e * 4 * 2 + n * length * 4 + e * 4


@pytest.mark.parametrize("zoo, config", [
    ("llama3_8b", dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=4096,
                       num_attention_heads=32, num_key_value_heads=8, intermediate_size=14336, num_hidden_layers=32,
                       vocab_size=128256, rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=8192)),
    ("mistral_7b", dict(model_type="mistral", architectures=["MistralForCausalLM"], hidden_size=4096,
                        num_attention_heads=32, num_key_value_heads=8, intermediate_size=14336, num_hidden_layers=32,
                        vocab_size=32000, rms_norm_eps=1e-5, sliding_window=4096, max_position_embeddings=32768))])
def test_zoo_hugging_face_decoders_keep_what_the_importer_counts_in_bf16(zoo, config):
    """The zoo's Llama and Mistral are Hugging Face's modules: in bfloat16 each layer keeps what the imported config
    keeps (the importer's figures are measured against transformers above), LlamaRMSNorm's and the float32
    softmax's included."""
    ours = layercalc.load(f"zoo:{zoo}").replace(input=[6], batch=2, dtype="bfloat16").analyze()
    imported = layercalc.load(spec_from_config(config, "config.json")).replace(input=[6], batch=2,
                                                                                dtype="bfloat16").analyze()
    assert [(e.name, e.saved_bytes) for e in ours.layers] == [(e.name, e.saved_bytes) for e in imported.layers]
    assert ours.totals.saved_bytes == imported.totals.saved_bytes
