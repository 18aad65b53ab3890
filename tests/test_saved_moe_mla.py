"""Saved-for-backward tensors of ``moe`` and ``latent_attention`` against transformers 5 in train mode (torch 2.13,
CPU), the oracle of tests/saved_oracle.py: the distinct storages ``saved_tensors_hooks`` sees, parameters and
buffers excluded.

The models are the tiny configs of tests/test_import_huggingface_moe.py (Mixtral, Qwen2-MoE with its shared expert
and sigmoid gate, Qwen3-MoE with its q/k norms, DeepSeek-V3 with grouped sigmoid routing, shared experts and
multi-head latent attention), with transformers' eager experts and eager attention, dropout 0: whole-model totals
at batch 2 and 1 and two lengths, and layer by layer. Routing is data-dependent, but every tensor the eager experts
keep is one row per routed (token, expert) pair — T·k rows however they are spread — so the figure does not
depend on which experts are hit: checked with every expert hit and with experts that get no token (the router's
choices inspected). Standalone blocks check frozen layers and a bfloat16 model (the router's float32 tensors).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from saved_oracle import saved_by_module, saved_bytes  # noqa: E402
from test_import_huggingface_moe import CASES, hf_model  # noqa: E402
from test_training_memory import NO_DROPOUT  # noqa: E402

import layercalc  # noqa: E402
from layercalc.importers.huggingface import spec_from_config  # noqa: E402

torch.set_num_threads(1)


def model_and_net(case: str, batch: int, tokens: int):
    """The transformers model of a test config in train mode (dropout 0) and layercalc's network of it."""
    config = dict(CASES[case], **NO_DROPOUT)
    torch.manual_seed(0)
    model = hf_model(config).train()
    net = layercalc.load(spec_from_config(config, "config.json")).replace(input=[tokens], batch=batch)
    ids = torch.randint(0, config["vocab_size"], (batch, tokens))
    return model, net, ids


MODELS = ["mixtral-lm", "qwen2_moe-base", "qwen2_moe-lm-sparse-step-dense-layer", "qwen3_moe-base",
          "qwen3_moe-lm-tied-dense-first", "deepseek_v3-lm", "deepseek_v3-lm-no-q-lora-bias-rotate-half"]


@pytest.mark.parametrize("case", MODELS)
@pytest.mark.parametrize("batch, tokens", [(2, 8), (1, 8), (2, 5), (1, 5)])
def test_whole_model_saved_bytes_equal_hugging_face(case, batch, tokens):
    model, net, ids = model_and_net(case, batch, tokens)
    assert net.analyze().totals.saved_bytes == saved_bytes(model, input_ids=ids)


@pytest.mark.parametrize("case", ["mixtral-lm", "qwen2_moe-base", "qwen3_moe-base", "deepseek_v3-lm"])
def test_layer_by_layer_equals_hugging_face(case):
    """Each attention and MoE layer against the storages first saved inside the module of the same name and its
    submodules (the router, experts and shared experts inside ``mlp``; the latent norms and projections inside
    ``self_attn``; the first attention also makes the shared RoPE tables)."""
    model, net, ids = model_and_net(case, 2, 8)
    by_module = saved_by_module(model, input_ids=ids)
    report = net.analyze()
    checked = set()
    for entry in report.layers:
        if entry.type in ("moe", "latent_attention", "multi_head_attention"):
            theirs = sum(v for k, v in by_module.items() if k == entry.name or k.startswith(entry.name + "."))
            assert entry.saved_bytes == theirs, entry.name
            checked.add(entry.type)
    assert "moe" in checked and len(checked) == 2
    assert sum(by_module.values()) == report.totals.saved_bytes


@pytest.mark.parametrize("case", ["qwen2_moe-base", "deepseek_v3-lm", "deepseek_v3-lm-no-q-lora-bias-rotate-half"])
def test_bfloat16_model_moe_and_latent_attention_layers_equal_hugging_face(case):
    """The whole model in bfloat16 (layercalc: dtype bfloat16), layer by layer for the moe and latent_attention
    layers: the router's scores and DeepSeek's upcast input and weight, the latent norms' input copies and 1/rms,
    and the softmax are float32; the rest in bfloat16. (The model's other layers are not compared here: Hugging
    Face's RMSNorm and Qwen's eager softmax keep float32 tensors the rmsnorm and multi_head_attention rules count
    in the model's dtype.)"""
    config = dict(CASES[case], **NO_DROPOUT)
    torch.manual_seed(0)
    model = hf_model(config).train().to(torch.bfloat16)
    ids = torch.randint(0, config["vocab_size"], (2, 8))
    by_module = saved_by_module(model, input_ids=ids)
    net = layercalc.load(dict(spec_from_config(config, "config.json"), dtype="bfloat16")).replace(input=[8], batch=2)
    checked = 0
    for entry in net.analyze().layers:
        if entry.type in ("moe", "latent_attention"):
            theirs = sum(v for k, v in by_module.items() if k == entry.name or k.startswith(entry.name + "."))
            assert entry.saved_bytes == theirs, entry.name
            checked += 1
    assert checked >= 3


#: configs beyond the import tests': one expert group, no normalization or scaling; wider DeepSeek with q_proj and
#: more experts per token; Qwen2-MoE normalized with 16 experts; Qwen3-MoE with one key/value head; top-1 Mixtral
VARIANTS = {
    "deepseek-one-group": dict(CASES["deepseek_v3-base"], n_group=1, topk_group=1, norm_topk_prob=False,
                               routed_scaling_factor=1.0),
    "deepseek-wide-q-proj": dict(CASES["deepseek_v3-base"], hidden_size=96, n_routed_experts=16, num_experts_per_tok=4,
                                 n_group=4, topk_group=2, n_shared_experts=1, kv_lora_rank=32, q_lora_rank=None,
                                 qk_rope_head_dim=4, qk_nope_head_dim=12, v_head_dim=8, num_attention_heads=6,
                                 num_key_value_heads=6),
    "qwen2_moe-normalized-16": dict(CASES["qwen2_moe-base"], norm_topk_prob=True, num_experts=16,
                                    num_experts_per_tok=4),
    "qwen3_moe-mqa-not-normalized": dict(CASES["qwen3_moe-base"], norm_topk_prob=False, num_key_value_heads=1),
    "mixtral-top-1": dict(CASES["mixtral-base"], num_local_experts=8, num_experts_per_tok=1),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("batch, tokens", [(3, 7), (1, 12)])
def test_config_variants_equal_hugging_face(variant, batch, tokens):
    config = dict(VARIANTS[variant], **NO_DROPOUT)
    torch.manual_seed(1)
    model = hf_model(config).train()
    ids = torch.randint(0, config["vocab_size"], (batch, tokens))
    net = layercalc.load(spec_from_config(config, "config.json")).replace(input=[tokens], batch=batch)
    assert net.analyze().totals.saved_bytes == saved_bytes(model, input_ids=ids)


def experts_hit(model, ids) -> list[int]:
    """How many experts of each sparse layer the router sends at least one token to, in a no-grad forward."""
    hit: list[int] = []

    def record(module, args, output):
        hit.append(int(torch.unique(args[1]).numel()))

    hooks = [m.register_forward_hook(record) for name, m in model.named_modules() if name.endswith("mlp.experts")]
    try:
        with torch.no_grad():
            model(input_ids=ids)
    finally:
        for hook in hooks:
            hook.remove()
    return hit


@pytest.mark.parametrize("case, experts", [("mixtral-lm", 4), ("qwen3_moe-base", 8), ("deepseek_v3-lm", 8)])
def test_the_figure_does_not_depend_on_which_experts_are_hit(case, experts):
    """With one token (k experts hit of E) and with 32 (every expert hit, T·k ≥ E many times over) the count
    equals the oracle: nothing is kept per expert, only per routed row (T·k rows)."""
    model, net, ids = model_and_net(case, 1, 1)
    hit = experts_hit(model, ids)
    assert hit and max(hit) < experts                              # experts that get no token
    assert net.analyze().totals.saved_bytes == saved_bytes(model, input_ids=ids)
    model, net, ids = model_and_net(case, 2, 16)
    assert set(experts_hit(model, ids)) == {experts}                 # every expert of every sparse layer hit
    assert net.analyze().totals.saved_bytes == saved_bytes(model, input_ids=ids)


def test_moe_rows_by_hand():
    """Mixtral's sparse layer (d 64, E 4, k 2, F 96) at T = 16 tokens, by hand: the router keeps x (T·d),
    the float32 softmax (T·E), the int64 top-k indices (T·k·8 B), the chosen scores before normalizing and their
    sum (T·k + T); each of the T·k = 32 routed rows keeps 2 int64 indices (16 B), its gathered input (d), gate|up
    (2F), the activation (F), act·up (F), the down projection (d), its weight (1) and the weighted output (d)."""
    model, net, ids = model_and_net("mixtral-lm", 2, 8)
    t, d, e, k, f = 16, 64, 4, 2, 96
    router = 4 * (t * d + t * e + t * k + t) + 8 * t * k
    rows = t * k * (16 + 4 * (d + 2 * f + f + f + d + 1 + d))
    assert net.analyze().layer("model.layers.0.mlp").saved_bytes == router + rows
    by_module = saved_by_module(model, input_ids=ids)
    assert sum(v for name, v in by_module.items() if name.startswith("model.layers.0.mlp")) == router + rows


def test_frozen_moe_and_latent_attention_keep_no_weight_gradient_inputs():
    """DeepSeek-V3 with every self_attn and mlp parameter frozen (trainable: false in layercalc): the layers keep
    what the input's gradient needs only."""
    config = dict(CASES["deepseek_v3-lm"], **NO_DROPOUT)
    torch.manual_seed(0)
    model = hf_model(config).train()
    for name, p in model.named_parameters():
        if ".self_attn." in name or (".mlp." in name and not name.startswith("model.layers.0.")):   # 0: dense
            p.requires_grad_(False)
    ids = torch.randint(0, config["vocab_size"], (2, 8))
    spec = spec_from_config(config, "config.json")

    def freeze(node):
        if isinstance(node, dict):
            if node.get("type") in ("moe", "latent_attention"):
                node["trainable"] = False
            for value in node.values():
                freeze(value)
        elif isinstance(node, list):
            for value in node:
                freeze(value)

    freeze(spec)
    net = layercalc.load(spec).replace(input=[8], batch=2)
    trained = layercalc.load(spec_from_config(config, "config.json")).replace(input=[8], batch=2)
    assert net.analyze().totals.saved_bytes == saved_bytes(model, input_ids=ids)
    assert net.analyze().totals.saved_bytes < trained.analyze().totals.saved_bytes


# --------------------------------------------------------------------------------- standalone blocks, bfloat16

def block(kind: str, dtype):
    """A transformers sparse MoE block (eager experts) of hidden size 16 in train mode, and layercalc's layer."""
    import transformers
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
    from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock

    if kind == "mixtral":
        cfg = transformers.MixtralConfig(experts_implementation="eager", hidden_size=16, intermediate_size=12,
                                         num_local_experts=4, num_experts_per_tok=2)
        module, layer = MixtralSparseMoeBlock(cfg), dict(num_experts=4, top_k=2, intermediate_size=12,
                                                         norm_topk_prob=True)
    elif kind == "qwen2_moe":
        cfg = transformers.Qwen2MoeConfig(experts_implementation="eager", hidden_size=16, moe_intermediate_size=12,
                                          shared_expert_intermediate_size=20, num_experts=6, num_experts_per_tok=2,
                                          norm_topk_prob=True)
        module, layer = Qwen2MoeSparseMoeBlock(cfg), dict(num_experts=6, top_k=2, intermediate_size=12,
                                                          norm_topk_prob=True, shared_intermediate_size=20,
                                                          shared_expert_gate=True)
    else:
        cfg = transformers.DeepseekV3Config(experts_implementation="eager", hidden_size=16, moe_intermediate_size=12,
                                            n_shared_experts=2, n_routed_experts=8, num_experts_per_tok=2, n_group=2,
                                            topk_group=1)
        module, layer = DeepseekV3MoE(cfg), dict(num_experts=8, top_k=2, intermediate_size=12, norm_topk_prob=True,
                                                 scoring="sigmoid", n_group=2, topk_group=1,
                                                 score_correction_bias=True, routed_scaling_factor=2.5,
                                                 shared_intermediate_size=24)
    torch.manual_seed(0)
    module = module.train().to(dtype)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.5)
    return module, dict(type="moe", **layer)


def layer_saved(layer: dict, shape, dtype: str, input_needs_grad: bool) -> int:
    """layercalc's total for one layer on ``shape`` (without the batch: 2); ``input_needs_grad``: after a trained
    bias (a ``parameter`` added to the input), as inside a network."""
    head = ([{"name": "bias", "type": "parameter", "shape": list(shape)},
             {"name": "biased", "type": "add", "inputs": ["input", "bias"]}] if input_needs_grad else [])
    spec = {"input": list(shape), "batch": 2, "dtype": dtype, "layers": [*head, layer]}
    total = layercalc.load(spec).analyze().totals.saved_bytes
    assert total is not None
    return total


@pytest.mark.parametrize("kind", ["mixtral", "qwen2_moe", "deepseek"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("input_needs_grad", [False, True], ids=["on-input", "after-trained"])
def test_moe_block_in_float32_and_bfloat16(kind, dtype, input_needs_grad):
    """The router's scores, normalization and (DeepSeek) its upcast input and weight stay float32 in a bfloat16
    model; the experts' rows are in the model's dtype. Mixtral's routing weights stay float32 too, where Qwen's are
    cast back to the model's dtype (counted so): a bfloat16 Mixtral keeps 2·T·k bytes more than counted."""
    torch_dtype = getattr(torch, dtype)
    module, layer = block(kind, torch_dtype)
    x = torch.randn(2, 5, 16, dtype=torch_dtype)
    if input_needs_grad:
        bias = torch.nn.Parameter(torch.zeros(5, 16, dtype=torch_dtype))
        expected = saved_bytes(_Biased(module, bias), x)
    else:
        expected = saved_bytes(module, x)
    ours = layer_saved(layer, (5, 16), dtype, input_needs_grad)
    difference = 2 * 10 * 2 if kind == "mixtral" and dtype == "bfloat16" else 0
    assert expected - ours == difference


class _Biased(torch.nn.Module):
    """``inner(x + bias)``: the block's input needs a gradient."""

    def __init__(self, inner, bias):
        super().__init__()
        self.inner, self.bias = inner, bias

    def forward(self, x):
        return self.inner(x + self.bias)


# ------------------------------------------------------------------------------------ Qwen3's q/k norms, explain

@pytest.mark.parametrize("kv_heads", [1, 2, 4], ids=["mqa", "gqa", "mha"])
@pytest.mark.parametrize("batch, tokens", [(2, 8), (1, 6)])
def test_dense_qwen3_with_its_q_k_norms_equals_hugging_face(kv_heads, batch, tokens):
    """multi_head_attention's per-head q/k RMS norms (modeled for Qwen3-MoE above) on the dense Qwen3 decoder,
    with one, two and four key/value heads (one at batch 1: repeat_kv's view)."""
    from test_import_huggingface import hf_model as dense_model
    from test_import_huggingface_dense import CASES as DENSE

    config = dict(DENSE["qwen3-lm"], num_key_value_heads=kv_heads, **NO_DROPOUT)
    torch.manual_seed(0)
    model = dense_model(config).train()
    ids = torch.randint(0, config["vocab_size"], (batch, tokens))
    net = layercalc.load(spec_from_config(config, "config.json")).replace(input=[tokens], batch=batch)
    assert net.analyze().totals.saved_bytes == saved_bytes(model, input_ids=ids)


def test_explain_train_states_the_routed_rows_convention(tmp_path):
    """``summary --explain --train`` on a MoE model names the T·k routed rows once, and that nothing is kept per
    expert (the figure holds whichever experts the router picks); the lines fit 80 columns."""
    import json

    from typer.testing import CliRunner

    from layercalc.cli import get_app
    spec = spec_from_config(CASES["mixtral-lm"], "config.json")
    path = tmp_path / "mixtral.json"
    path.write_text(json.dumps(spec))
    layer = layercalc.load(spec).replace(input=[8], batch=2).analyze().layer("model.layers.0.mlp")
    result = CliRunner(env={"COLUMNS": "80"}).invoke(get_app(), ["summary", str(path), "--input", "8", "--batch", "2",
                                                                 "--train", "--explain"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "T·k = 32 rows however the router spreads them over the experts, nothing kept per expert" in text
    assert f"saved for backward, first kept here = {layer.saved_bytes:,} B" in text
    assert all(len(line) <= 80 for line in result.stdout.splitlines())


# ----------------------------------------------------------------------------------------- expert activations

@pytest.mark.parametrize("case", ["mixtral-lm", "qwen2_moe-base", "deepseek_v3-lm"])
@pytest.mark.parametrize("act", ["silu", "gelu", "gelu_pytorch_tanh", "relu"])
def test_expert_activations_equal_hugging_face(case, act):
    """silu, F.gelu (exact and tanh) keep their input (the gate, kept anyway through up's view of gate|up), relu its
    output (the activation, kept for the product): in the shared expert, whose gate is a tensor of its own, relu
    keeps T·F_s elements fewer."""
    model, net, ids = model_and_net(case, 2, 8) if act == "silu" else _with_act(case, act)
    assert net.analyze().totals.saved_bytes == saved_bytes(model, input_ids=ids)


def _with_act(case: str, act: str):
    config = dict(CASES[case], hidden_act=act, **NO_DROPOUT)
    torch.manual_seed(0)
    model = hf_model(config).train()
    net = layercalc.load(spec_from_config(config, "config.json")).replace(input=[8], batch=2)
    return model, net, torch.randint(0, config["vocab_size"], (2, 8))


#: transformers' composite GELUs → (tensors kept per activation element beyond F.gelu's input, and in the shared
#: expert, whose gate is not kept by anything else)
COMPOSITE_GELUS = {"gelu_new": (3, 3), "gelu_fast": (6, 6), "gelu_python": (3, 2)}


@pytest.mark.parametrize("case", ["mixtral-lm", "qwen2_moe-base"])
@pytest.mark.parametrize("act", list(COMPOSITE_GELUS))
def test_composite_gelu_experts_keep_more_than_counted(case, act):
    """The exception docs/conventions.md states, measured per sparse layer: transformers' gelu_new, gelu_fast and
    gelu_python (imported as gelu_tanh, gelu_tanh and gelu) are made of element ops that keep more tensors than
    F.gelu's one input: 3, 6 and 3 per activation element of the routed rows (T·k·F) and 3, 6 and 2 of the shared
    expert's (T·F_s: gelu_python keeps no copy of its input, the gate)."""
    model, net, ids = _with_act(case, act)
    by_module = saved_by_module(model, input_ids=ids)
    routed, shared = COMPOSITE_GELUS[act]
    config = CASES[case]
    tokens, top_k = 16, config["num_experts_per_tok"]
    inner = config.get("moe_intermediate_size", config["intermediate_size"])
    shared_inner = config.get("shared_expert_intermediate_size", 0)
    sparse = [entry for entry in net.analyze().layers if entry.type == "moe"]
    assert sparse
    for entry in sparse:
        theirs = sum(v for k, v in by_module.items() if k == entry.name or k.startswith(entry.name + "."))
        assert theirs - entry.saved_bytes == 4 * (routed * tokens * top_k * inner + shared * tokens * shared_inner)


# ------------------------------------------------------------------------------- latent attention, standalone

class _LatentAttention(torch.nn.Module):
    """transformers' DeepseekV3Attention on ``x (+ bias)`` with its rotary tables and a causal mask, as the decoder
    layer calls it."""

    def __init__(self, cfg, bias):
        from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
            DeepseekV3Attention,
            DeepseekV3RotaryEmbedding,
        )
        super().__init__()
        self.attention, self.rotary, self.bias = DeepseekV3Attention(cfg, 0), DeepseekV3RotaryEmbedding(cfg), bias

    def forward(self, x):
        if self.bias is not None:
            x = x + self.bias
        length = x.shape[1]
        cos, sin = self.rotary(x, torch.arange(length)[None])
        mask = torch.full((length, length), float("-inf"), dtype=x.dtype).triu(1)[None, None]
        return self.attention(x, (cos, sin), mask)[0]


@pytest.mark.parametrize("q_lora_rank", [24, None], ids=["q-lora", "q-proj"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("input_needs_grad", [False, True], ids=["on-input", "after-trained"])
@pytest.mark.parametrize("batch", [2, 1])
def test_latent_attention_layer_in_float32_and_bfloat16(q_lora_rank, dtype, input_needs_grad, batch):
    """One latent_attention layer against DeepseekV3Attention (eager): on the network input and after a trained
    bias, in float32 and bfloat16 (the latent norms' float32 input copies and 1/rms, the float32 softmax)."""
    import transformers

    torch_dtype = getattr(torch, dtype)
    cfg = transformers.DeepseekV3Config(hidden_size=32, num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=16,
                                        q_lora_rank=q_lora_rank, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=12,
                                        rope_interleave=q_lora_rank is not None, attn_implementation="eager")
    torch.manual_seed(0)
    bias = torch.nn.Parameter(torch.zeros(6, 32, dtype=torch_dtype)) if input_needs_grad else None
    module = _LatentAttention(cfg, bias).train().to(torch_dtype)
    expected = saved_bytes(module, torch.randn(batch, 6, 32, dtype=torch_dtype))
    layer = dict(type="latent_attention", num_heads=4, q_lora_rank=q_lora_rank, kv_lora_rank=16, qk_nope_head_dim=8,
                 qk_rope_head_dim=8, v_head_dim=12, rope_interleave=q_lora_rank is not None, causal=True)
    head = ([{"name": "bias", "type": "parameter", "shape": [6, 32]},
             {"name": "biased", "type": "add", "inputs": ["input", "bias"]}] if input_needs_grad else [])
    spec = {"input": [6, 32], "batch": batch, "dtype": dtype, "layers": [*head, layer]}
    assert layercalc.load(spec).analyze().totals.saved_bytes == expected
