"""Saved-for-backward tensors of the attention variants against PyTorch 2.13 (CPU) as the oracle.

The oracle is tests/saved_oracle.py: the bytes of the distinct storages ``torch.autograd.graph.saved_tensors_hooks``
sees in one train-mode forward pass, de-duplicated by storage, parameters and buffers excluded. Compared with
layercalc's ``totals.saved_bytes`` (and layer by layer where a layer is one module):

- ``multi_head_attention`` with ``qk_norm`` (Qwen3; Gemma 3 with ``qk_norm_offset`` 1) and ``logit_softcap``
  (Gemma 2): the transformers models (eager attention, dropout 0) of tests/test_import_huggingface_dense.py's tiny
  configs, at batch 1, 2 and 3 and two lengths; Gemma's ``rmsnorm`` with an offset in the same models;
- ``relative_position_bias`` and the score-biased attention of T5: T5ForConditionalGeneration (and the other T5
  heads) of tests/test_import_huggingface_encoders.py with input_ids and decoder_input_ids, dropout_rate 0;
- ``shifted_window_attention``: torchvision's swin_t against ``zoo:swin_t`` (StochasticDepth off: its per-block
  masks are training-only and not layers of the zoo spec), and single ShiftedWindowAttention modules.

Sizes written out in the tests are hand derivations of the documented rules (docs/conventions.md, "Training
memory"); each is also compared with torch.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from saved_oracle import saved_by_module, saved_bytes  # noqa: E402
from test_training_memory import Prefixed, frozen  # noqa: E402

import layercalc  # noqa: E402
from layercalc.graph import gradient_flow  # noqa: E402
from layercalc.importers.huggingface import spec_from_config  # noqa: E402
from layercalc.importers.torch import spec_from_torch  # noqa: E402
from layercalc.saved import saved_tensors  # noqa: E402
from layercalc.training import training_memory  # noqa: E402

torch.set_num_threads(1)

#: the dropout probabilities of Hugging Face configs, zeroed (an imported config is the inference graph)
NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, attention_dropout=0.0,
                  dropout_rate=0.0)


def dense_case(name: str) -> dict:
    from test_import_huggingface_dense import CASES
    return dict(CASES[name], **NO_DROPOUT)


def hf_train(config: dict, dtype=None):
    from test_import_huggingface import hf_model
    model = hf_model(config).train()
    return model if dtype is None else model.to(dtype)


def decoder(config: dict, batch: int, tokens: int) -> layercalc.Network:
    return layercalc.load(spec_from_config(config, "config.json")).replace(input=[tokens], batch=batch)


def ids(config: dict, batch: int, tokens: int):
    torch.manual_seed(0)
    return torch.randint(0, config["vocab_size"], (batch, tokens))


def layer_bytes(net: layercalc.Network, itemsize: int) -> dict[str, int]:
    """Each layer's saved bytes (first kept there) at ``itemsize`` bytes per activation element."""
    steps = net.resolve()
    account = saved_tensors(steps, gradient_flow(steps), itemsize, net.channels_last)
    return {step.name: entry.bytes for step, entry in zip(steps, account.layers)}


# ---------------------------------------------------------------------------- q/k norms and soft-capping

#: (Gemma 1 has neither: its norms' 1 + γ is checked in the totals)
DENSE = ["qwen3-lm", "qwen3-lm-tied-bias-sliding", "gemma-lm", "gemma2-lm", "gemma2-lm-no-softcap",
         "gemma3-lm-softcap", "gemma3-lm-softcap-scaled-rope"]


@pytest.mark.parametrize("case", DENSE)
@pytest.mark.parametrize("batch, tokens", [(2, 8), (1, 8), (3, 5)])
def test_qk_norm_and_softcap_models_equal_hugging_face_eager(case, batch, tokens):
    config = dense_case(case)
    expected = saved_bytes(hf_train(config), input_ids=ids(config, batch, tokens))
    assert decoder(config, batch, tokens).analyze().totals.saved_bytes == expected


def attention_modules(by_module: dict[str, int], layer: str) -> int:
    """torch's bytes first saved inside one attention module (its projections and q/k norms included)."""
    return sum(v for k, v in by_module.items() if k == layer or k.startswith(layer + "."))


@pytest.mark.parametrize("case, offset", [("qwen3-lm", 0), ("gemma3-lm", 1)])
def test_qk_norms_layer_by_layer(case, offset):
    """Each q/k RMSNorm (Qwen3RMSNorm; Gemma3RMSNorm with its 1 + γ) keeps, in float32: its input, 1/rms per head
    vector and the normalized heads; Gemma's also 1 + γ (d_k elements, a tensor made by the add). N 2, L 8, H 4,
    kv 2, d_k 24 (Qwen3) / 16 (Gemma 3)."""
    config = dense_case(case)
    n, length, heads, kv, dk = 2, 8, 4, 2, config["head_dim"]
    model = hf_train(config)
    by_module = saved_by_module(model, input_ids=ids(config, n, length))
    ours = layer_bytes(decoder(config, n, length), 4)
    for role, h in (("q", heads), ("k", kv)):
        rows = n * length * h
        assert by_module[f"model.layers.0.self_attn.{role}_norm"] == (2 * rows * dk + rows + offset * dk) * 4
    for i in range(config["num_hidden_layers"]):
        layer = f"model.layers.{i}.self_attn"
        assert ours[layer] == attention_modules(by_module, layer), layer
    # Gemma's block norms (rmsnorm with offset 1) keep 1 + γ too: x, 1/rms, x·rstd and [E]
    if offset:
        e = config["hidden_size"]
        assert by_module["model.layers.0.input_layernorm"] == (2 * n * length * e + n * length + e) * 4
        assert ours["model.layers.0.input_layernorm"] == by_module["model.layers.0.input_layernorm"]


def test_logit_softcap_keeps_tanh_of_the_scores():
    """Gemma 2 with and without soft-capping: cap·tanh(s/cap) keeps tanh's output, N·H·L² per attention layer; the
    final logits' soft-cap (a ``softcap`` layer) N·L·V. A null cap in the config is no cap (transformers' reading):
    the importer read it as the default 50 before."""
    capped, plain = dense_case("gemma2-lm"), dense_case("gemma2-lm-no-softcap")
    n, length, heads, layers, vocab = 2, 8, 4, capped["num_hidden_layers"], capped["vocab_size"]
    by_hand = (layers * n * heads * length * length + n * length * vocab) * 4
    theirs = [saved_bytes(hf_train(c), input_ids=ids(c, n, length)) for c in (capped, plain)]
    ours = [decoder(c, n, length).analyze().totals.saved_bytes for c in (capped, plain)]
    assert theirs[0] - theirs[1] == ours[0] - ours[1] == by_hand
    spec = spec_from_config(plain, "config.json")
    assert "logit_softcap" not in str(spec) and "softcap" not in {layer.get("type") for layer in spec["layers"]}


@pytest.mark.parametrize("case", ["qwen3-lm", "gemma2-lm", "gemma3-lm"])
def test_attention_in_bfloat16_float32_softmax_measured(case):
    """In bfloat16, the q/k norms keep their input and 1/rms upcast to float32, and the normalized heads in float32
    with an offset (Gemma 3 multiplies by 1 + γ in float32) and in bfloat16 without (Qwen3 casts back before γ).
    transformers' eager softmax runs in float32 (``softmax(…, dtype=float32)``) and keeps its float32 output beside
    the bfloat16 probabilities: 4·N·H·L² bytes per layer, counted (``softmax_dtype: float32``, set by the
    importer; without it the layer would count that much less)."""
    config = dense_case(case)
    n, length, heads = 2, 8, 4
    by_module = saved_by_module(hf_train(config, torch.bfloat16), input_ids=ids(config, n, length))
    ours = layer_bytes(decoder(config, n, length), 2)
    for i in range(config["num_hidden_layers"]):
        layer = f"model.layers.{i}.self_attn"
        assert attention_modules(by_module, layer) == ours[layer], layer
    spec = spec_from_config(config, "config.json")
    for block in spec["blocks"].values():
        for entry in block["layers"]:
            entry.pop("softmax_dtype", None)
    plain = layercalc.load(spec).replace(input=[length], batch=n, dtype="bfloat16").analyze()
    for i in range(config["num_hidden_layers"]):
        layer = f"model.layers.{i}.self_attn"
        assert ours[layer] - plain.layer(layer).saved_bytes == 4 * n * heads * length * length, layer


def test_gemma_in_bfloat16_totals_equal_hugging_face():
    """Gemma 2 and 3 in bfloat16 (every norm kept in float32, and the float32 softmax outputs above, 4·N·H·L² per
    layer, counted): the whole model's saved bytes equal Hugging Face's."""
    for case in ("gemma2-lm", "gemma3-lm-softcap"):
        config = dense_case(case)
        n, length = 2, 8
        expected = saved_bytes(hf_train(config, torch.bfloat16), input_ids=ids(config, n, length))
        ours = training_memory(decoder(config, n, length), precision="bf16-mixed").saved_bytes
        assert expected == ours, case


# ------------------------------------------------------------------------------------------------------ T5

def t5_case(name: str) -> dict:
    from test_import_huggingface_encoders import CASES
    return dict(CASES[name], dropout_rate=0.0)


def t5_run(config: dict, batch: int, tokens: int, decoder_tokens: int, freeze_bias: bool = False):
    """(torch's saved bytes by module, its total, layercalc's network) for one T5 configuration."""
    from test_import_huggingface_encoders import two_inputs
    model = hf_train(config)
    spec = spec_from_config(config, "config.json")
    if freeze_bias:
        for name, p in model.named_parameters():
            if "relative_attention_bias" in name:
                p.requires_grad_(False)
        for layer in spec["layers"]:
            if layer.get("type") == "relative_position_bias":
                layer["trainable"] = False
    torch.manual_seed(0)
    kwargs = {"input_ids": torch.randint(0, 100, (batch, tokens))}
    shapes = [[tokens]]
    if two_inputs(config):
        kwargs["decoder_input_ids"] = torch.randint(0, 100, (batch, decoder_tokens))
        shapes.append([decoder_tokens])
    net = layercalc.load(spec).replace_inputs(shapes).replace(batch=batch)
    return saved_by_module(model, **kwargs), saved_bytes(model, **kwargs), net


@pytest.mark.parametrize("case", ["t5-lm", "t5-base", "t5-model-gated-silu", "t5-encoder"])
@pytest.mark.parametrize("batch, tokens, decoder_tokens", [(2, 12, 7), (1, 12, 7), (3, 5, 9)])
def test_t5_equals_hugging_face(case, batch, tokens, decoder_tokens):
    _, expected, net = t5_run(t5_case(case), batch, tokens, decoder_tokens)
    assert net.analyze().totals.saved_bytes == expected


def test_t5_relative_position_bias_and_attention_layer_by_layer():
    """The bias table's lookup keeps its int64 buckets [L_q, L_k] once per stack (the first layer makes the bias,
    the others reuse it, and adding it to the scores keeps nothing); T5's attention (no scaling) keeps what the
    eager attention keeps: encoder self-attention (N 2, L 12, H 4, d 8, inner 32): input, q, k, probabilities, v,
    merged heads = (5·N·L·32 + N·H·L²)·4."""
    n, enc, dec, heads, inner = 2, 12, 7, 4, 32
    by_module, _, net = t5_run(t5_case("t5-lm"), n, enc, dec)
    ours = {entry.name: entry.saved_bytes for entry in net.analyze().layers}
    for stack, length in (("encoder", enc), ("decoder", dec)):
        bias = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias"
        assert by_module[bias] == ours[bias] == length * length * 8
    for i in range(2):
        layer = f"encoder.block.{i}.layer.0.SelfAttention"
        torch_bytes = attention_modules(by_module, layer) - (by_module.get(layer + ".relative_attention_bias", 0))
        assert ours[layer] == torch_bytes == (5 * n * enc * inner + n * heads * enc * enc) * 4
        for part in ("layer.0.SelfAttention", "layer.1.EncDecAttention"):
            layer = f"decoder.block.{i}.{part}"
            assert ours[layer] == (attention_modules(by_module, layer)
                                   - by_module.get(layer + ".relative_attention_bias", 0)), layer


def test_t5_frozen_bias_table_keeps_nothing():
    by_module, expected, net = t5_run(t5_case("t5-lm"), 2, 12, 7, freeze_bias=True)
    assert "encoder.block.0.layer.0.SelfAttention.relative_attention_bias" not in by_module
    assert net.analyze().totals.saved_bytes == expected


def test_t5_v1_1_gated_gelu_new_exception():
    """T5 v1.1's gated-gelu is transformers' gelu_new (composed of element ops): four [N, L, d_ff] tensors kept, not
    one — the exception docs/conventions.md states for GPT-2's gelu_new, 3·N·L·d_ff·4 bytes per feed-forward."""
    config = t5_case("t5-lm-v1.1-gated")
    n, enc, dec, dff = 2, 12, 7, config["d_ff"]
    _, expected, net = t5_run(config, n, enc, dec)
    layers_enc, layers_dec = config["num_layers"], config["num_decoder_layers"]
    assert expected - net.analyze().totals.saved_bytes == 3 * n * dff * (layers_enc * enc + layers_dec * dec) * 4


# ---------------------------------------------------------------------------------------------------- Swin

def swin_t():
    """torchvision's swin_t in train mode without StochasticDepth (p 0: the identity, as the zoo spec has it)."""
    from torchvision_oracle import torchvision
    torch.manual_seed(0)
    model = torchvision().models.swin_t().train()
    for module in model.modules():
        if type(module).__name__ == "StochasticDepth":
            module.p = 0.0
    return model


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 64, 64), (2, 3, 32, 32)])
def test_swin_t_equals_torchvision(shape):
    expected = saved_bytes(swin_t(), torch.randn(*shape))
    report = layercalc.load("zoo:swin_t").replace(input=list(shape[1:]), batch=shape[0]).analyze()
    assert report.totals.saved_bytes == expected


def test_swin_t_attention_layer_by_layer():
    """At 1×3×64×64 the stages' maps are 16², 8², 4², 2² (padded to 21², 14², 7², 7²): 9, 4, 1, 1 windows; the
    last two stages' single window keeps the whole qkv projection (k and v are views of it)."""
    model = swin_t()
    by_module = saved_by_module(model, torch.randn(1, 3, 64, 64))
    report = layercalc.load("zoo:swin_t").replace(input=[3, 64, 64], batch=1).analyze()
    attentions = [entry for entry in report.layers if entry.type == "shifted_window_attention"]
    assert len(attentions) == 12
    for entry in attentions:
        assert entry.saved_bytes == by_module[entry.name], entry.name


SWA_SHAPE = (2, 5, 6, 8)


def swa(*args, **kwargs):
    from torchvision_oracle import torchvision
    torch.manual_seed(0)
    return torchvision().models.swin_transformer.ShiftedWindowAttention(*args, **kwargs)


#: id → (module factory, input [N, H, W, C], the layer's dropout fields: the importer drops dropout, inference)
SWA_CASES = {
    "shifted-padded": (lambda: swa(8, [3, 3], [1, 1], 2), SWA_SHAPE, {}),
    "plain": (lambda: swa(8, [2, 2], [0, 0], 2), (2, 4, 4, 8), {}),
    "dropouts": (lambda: swa(8, [3, 3], [1, 1], 2, attention_dropout=0.1, dropout=0.2), SWA_SHAPE,
                 {"attention_dropout": 0.1, "dropout": 0.2}),
    "one-window": (lambda: swa(8, [3, 3], [1, 1], 2), (1, 3, 3, 8), {}),
    "one-window-padded": (lambda: swa(8, [3, 3], [1, 1], 2), (1, 2, 3, 8), {}),
    "one-head-no-bias": (lambda: swa(8, [2, 3], [1, 1], 1, qkv_bias=False, proj_bias=False), (2, 4, 6, 8), {}),
    "frozen": (lambda: frozen(swa(8, [3, 3], [1, 1], 2)), SWA_SHAPE, {}),
}


@pytest.mark.parametrize("case", list(SWA_CASES))
@pytest.mark.parametrize("after_trained", [False, True], ids=["on-input", "after-trained"])
def test_shifted_window_attention_module_equals_torch(case, after_trained):
    make, shape, fields = SWA_CASES[case]
    module = make().train()
    is_frozen = any(not p.requires_grad for p in module.parameters())
    if after_trained:
        module = Prefixed(module, shape[1:])
    torch.manual_seed(0)
    expected = saved_bytes(module, torch.randn(*shape))
    spec = spec_from_torch(module, shape)
    for layer in spec["layers"]:
        if layer["type"] == "shifted_window_attention":
            layer.update(fields, trainable=not is_frozen)
    assert layercalc.load(spec).analyze().totals.saved_bytes == expected


def test_shifted_window_attention_by_hand():
    """5×6 map, window 3×3 shifted by 1, C 8, 2 heads, N 2: padded to 6×6, 4 windows of T 9, B' = 8. Kept: the
    windows, q, kᵀ, v and the merged heads, B'·T·C = 576 each, and the probabilities B'·heads·T² = 1,296:
    (5·576 + 1,296)·4 = 16,704 B; with one window (1×3×3, B' 1), k and v are views of qkv [1, 9, 24], kept whole:
    (windows, q, qkv 3×, merged: 6·72 + probabilities 2·81)·4 = 2,376 B."""
    for case, by_hand in (("shifted-padded", (5 * 576 + 1296) * 4), ("one-window", (6 * 72 + 2 * 81) * 4)):
        make, shape, _ = SWA_CASES[case]
        module = make().train()
        assert saved_bytes(module, torch.randn(*shape)) == by_hand
        assert layercalc.load(spec_from_torch(module, shape)).analyze().totals.saved_bytes == by_hand


# ------------------------------------------------------------------------------------------------ explain

def test_explain_train_names_the_new_tensors_within_80_columns(tmp_path):
    import json

    from typer.testing import CliRunner

    from layercalc.cli import get_app

    def explained(*args: str) -> tuple[str, list[str]]:
        out = CliRunner(env={"COLUMNS": "80"}).invoke(get_app(), [*args, "--train", "--explain"]).output
        saved = [line for line in out.splitlines() if line.lstrip().startswith("saved")]
        assert saved and all(len(line) <= 80 for line in saved)
        return " ".join(out.split()), out

    text, out = explained("summary", "zoo:swin_t", "--input", "3,64,64")
    # each tensor's line broken once, at its '; ' (the terminal's fitting), its reason indented under it
    assert ("    saved, its own tensor: 56,448 × 4 B = 225,792 B;\n        the qkv projection [1, 49, 1152] whole (k and "
            "v are views of it with one\n            window), for q's and the probabilities' gradients\n") in out
    assert "the qkv projection [1, 49, 1152] whole (k and v are views of it with one window)" in text
    assert "kᵀ [9, 3, 49, 32] (a copy), for q's gradient" in text
    for case, wanted in (("gemma3-lm", ["the q norm's scale 1 + γ (16, float32, made by the add)",
                                        "the k norm's 1/√(mean(x²) + eps) per head vector (16, float32)"]),
                         ("gemma2-lm", ["the soft-cap's tanh(scores/2) [1, 4, 8, 8], for its own gradient"])):
        path = tmp_path / f"{case}.json"
        path.write_text(json.dumps(dense_case(case)), encoding="utf-8")
        text, _ = explained("summary", str(path), "--input", "8")
        assert all(phrase in text for phrase in wanted), case
    path = tmp_path / "t5.json"
    path.write_text(json.dumps(t5_case("t5-lm")), encoding="utf-8")
    text, _ = explained("summary", str(path), "--input", "12", "--input", "7")
    assert "the bucket of each (query, key) pair [12, 12], int64, for the table's gradient" in text
