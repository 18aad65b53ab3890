"""ONNX exports of transformers (issue 22 §4): Hugging Face GPT-2, a Llama-style decoder, BERT and ViT (tiny
configs, random weights, eager attention), exported by torch.onnx.export with the dynamo exporter and the legacy
one, at batch 1 and 2, read back by layercalc.

Oracles:
- params: the file's learnable initializers, found here from the model itself — every float initializer equal to
  one of the module's parameters (as stored, transposed, its first rows: the dynamo exporter folds GPT-2's ``wpe``
  looked up at ``arange(L)`` into those rows, or one example's copy repeated over the batch: a class token
  expanded), counted; the others (constants: attention masks, rotary cos/sin tables, scalars) checked to be such
  constants and excluded. The legacy exporter keeps every parameter: its files also give transformers' own
  ``num_parameters()`` plus the copies it stores of a tied weight (GPT-2's head, transposed for its MatMul);
- MACs: FlopCounterMode on the exported module (eager attention: every matmul visible) / 2;
- the output shape and values: the module's output for the same input, run by layercalc on the file's weights.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import layercalc

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from onnx import TensorProto, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

VOCAB, LENGTH = 100, 8


class FirstOutput(nn.Module):
    """The model's first output (logits or the last hidden state) for one input."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)[0]


def build(kind: str):
    """A tiny model of ``kind`` with eager attention, every parameter made distinct (the dynamo exporter's
    optimizer merges equal initializers and drops zero biases: an untrained model's ones and zeros)."""
    torch.manual_seed(0)
    common = {"attn_implementation": "eager"}
    if kind == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_layer=2, n_head=2, n_embd=32, vocab_size=VOCAB, n_positions=64, **common))
    elif kind == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=32, intermediate_size=64,
            vocab_size=VOCAB, max_position_embeddings=64, **common))
    elif kind == "bert":
        model = transformers.BertModel(transformers.BertConfig(
            num_hidden_layers=2, num_attention_heads=2, hidden_size=32, intermediate_size=64, vocab_size=VOCAB,
            max_position_embeddings=64, **common), add_pooling_layer=False)
    else:
        model = transformers.ViTModel(transformers.ViTConfig(
            num_hidden_layers=2, num_attention_heads=2, hidden_size=32, intermediate_size=64, image_size=32,
            patch_size=8, **common), add_pooling_layer=False)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return FirstOutput(model).eval()


def example(kind: str, batch: int):
    gen = torch.Generator().manual_seed(2)
    if kind == "vit":
        return torch.randn(batch, 3, 32, 32, generator=gen)
    return torch.randint(0, VOCAB, (batch, LENGTH), generator=gen)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transformers")
    made = {}

    def get(kind: str, dynamo: bool, batch: int):
        key = (kind, dynamo, batch)
        if key not in made:
            model, x = build(kind), example(kind, batch)
            path = folder / f"{kind}_{'dynamo' if dynamo else 'legacy'}_{batch}.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), str(path), dynamo=dynamo)
            made[key] = (model, x, path)
        return made[key]
    return get


def learnable_elements(path, model, batch: int) -> tuple[int, list[str]]:
    """The elements of the file's float initializers that hold the module's parameters (each as stored,
    transposed, its first rows, or one example's copy repeated over the batch: counted once); and the names of
    the others, each checked to be a constant: a scalar, an attention mask (0 and ≤ −1e30) or a cos/sin table."""
    params = [p.detach().numpy() for p in model.parameters()]
    total, constants = 0, []
    for init in onnx.load(str(path)).graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        a = numpy_helper.to_array(init)
        count = None
        for p in params if a.size > 1 else []:
            flat = [p.reshape(-1)] + ([p.T.reshape(-1)] if p.ndim == 2 else [])
            if a.size == p.size and any(np.array_equal(a.reshape(-1), f) for f in flat):
                count = a.size
            elif p.ndim == 2 and a.shape[-1] == p.shape[1] and a.size < p.size and \
                    np.array_equal(a.reshape(-1, p.shape[1]), p[:a.size // p.shape[1]]):
                count = a.size                                   # rows 0..L−1: a folded lookup at positions
            elif batch > 1 and a.shape[0] == batch and a[0].size == p.size and \
                    all(np.array_equal(a[k].reshape(-1), p.reshape(-1)) for k in range(batch)):
                count = a.size // batch                          # one example's copy per example
            if count is not None:
                break
        if count is None:
            is_mask = np.all((a == 0) | (a <= -1e30))
            assert a.size == 1 or is_mask or np.all(np.abs(a) <= 1), f"{init.name} is neither a parameter nor a constant"
            constants.append(init.name)
        else:
            total += count
    return total, constants


def torch_macs(model, x) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


CASES = [(kind, dynamo, batch) for kind in ("gpt2", "llama", "bert", "vit") for dynamo in (True, False)
         for batch in (1, 2)]


@pytest.mark.parametrize("kind, dynamo, batch", CASES,
                         ids=[f"{k}-{'dynamo' if d else 'legacy'}-b{b}" for k, d, b in CASES])
def test_params_macs_and_output(exports, kind, dynamo, batch):
    model, x, path = exports(kind, dynamo, batch)
    report = layercalc.load(path).analyze()
    learnable, constants = learnable_elements(path, model, batch)
    assert report.totals.params + report.totals.buffers == learnable
    assert report.totals.macs == torch_macs(model, x)
    with torch.no_grad():
        expected = model(x).numpy()
    assert tuple(report.layers[-1].output_shape) == expected.shape
    out = layercalc.load(path).run(x.numpy(), weights=str(path))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    if not dynamo:
        # every parameter kept: transformers' count, plus GPT-2's tied head stored again (transposed)
        tied = VOCAB * 32 if kind == "gpt2" else 0
        assert learnable == model.model.num_parameters() + tied


def test_what_is_read_from_a_gpt2_export(exports):
    """GPT-2 (legacy exporter): its position table is one position_embedding, its causal mask (masked_fill: Where)
    an attention_mask per layer that counts no parameter, and the dynamo export's folded additive mask too."""
    _, _, legacy = exports("gpt2", False, 2)
    types = [layer.type for layer in layercalc.load(legacy).analyze().layers]
    assert types.count("position_embedding") == 1 and types.count("attention_mask") == 2
    _, _, dynamo = exports("gpt2", True, 2)
    masks = [layer for layer in layercalc.load(dynamo).analyze().layers if layer.type == "attention_mask"]
    assert len(masks) == 2 and all(m.params == 0 and m.flops == 2 * 2 * LENGTH * LENGTH for m in masks)


def test_llama_rotary_is_one_layer_per_projection(exports):
    _, _, path = exports("llama", False, 1)
    layers = layercalc.load(path).analyze().layers
    rotary = [layer for layer in layers if layer.type == "rotary_embedding"]
    assert len(rotary) == 4                               # q and k of 2 layers
    # 3 FLOPs per rotated element (conventions: x·cos + rotate_half(x)·sin): q [1, 4, 8, 8], k [1, 2, 8, 8]
    assert sorted(r.flops for r in rotary) == [3 * 2 * 8 * 8] * 2 + [3 * 4 * 8 * 8] * 2


# ------------------------------------------------------------------------ written by hand, and torchvision's ViT

class NanoBlock(nn.Module):
    """nanoGPT's attention block: a causal ``tril`` buffer applied by ``masked_fill(..., -inf)``."""

    def __init__(self, d=32, heads=2, length=LENGTH):
        super().__init__()
        self.heads, self.ln, self.qkv, self.proj = heads, nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.register_buffer("bias", torch.tril(torch.ones(length, length)).view(1, 1, length, length))

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / (k.size(-1) ** 0.5))
        att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf")).softmax(dim=-1)
        return x + self.proj((att @ v).transpose(1, 2).contiguous().view(b, t, c))


class NanoGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, 32), nn.Embedding(16, 32)
        self.blocks, self.head = nn.Sequential(NanoBlock(), NanoBlock()), nn.Linear(32, VOCAB, bias=False)

    def forward(self, idx):
        pos = torch.arange(0, idx.size(1), dtype=torch.long)
        return self.head(self.blocks(self.wte(idx) + self.wpe(pos)))


def _export(model, x, path, dynamo):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=dynamo)


HAND = [(dynamo, batch) for dynamo in (True, False) for batch in (1, 2)]


@pytest.mark.parametrize("dynamo, batch", HAND, ids=[f"{'dynamo' if d else 'legacy'}-b{b}" for d, b in HAND])
def test_nanogpt(tmp_path, dynamo, batch):
    torch.manual_seed(0)
    model = NanoGPT().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.02)
    x = torch.randint(0, VOCAB, (batch, LENGTH))
    path = tmp_path / "nanogpt.onnx"
    _export(model, x, path, dynamo)
    report = layercalc.load(path).analyze()
    assert report.totals.params == learnable_elements(path, model, batch)[0]
    assert report.totals.macs == torch_macs(model, x)
    assert [layer.type for layer in report.layers].count("attention_mask") == 2
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(layercalc.load(path).run(x.numpy(), weights=str(path)), expected, rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize("dynamo, batch", HAND, ids=[f"{'dynamo' if d else 'legacy'}-b{b}" for d, b in HAND])
def test_torchvision_vit(tmp_path, dynamo, batch):
    """torchvision's ViT (nn.MultiheadAttention inside: its [L, N, E] and [L·N, E] views, at batch 1 too). In
    eval mode its attention takes the fused fast path, which FlopCounterMode counts as 0 (docs/conventions.md):
    MACs = FlopCounterMode's / 2 for the rest + the attention derived here, per layer the projections 4·N·L·E²
    and QKᵀ and A·V 2·N·L²·E."""
    from torchvision_oracle import torchvision
    torch.manual_seed(0)
    model = torchvision().models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                   hidden_dim=32, mlp_dim=64).eval()
    with torch.no_grad():
        for p in model.parameters():                 # distinct values (equal ones are stored once)
            p.add_(torch.randn(p.shape) * 0.02)
    x = torch.randn(batch, 3, 32, 32)
    path = tmp_path / "vit.onnx"
    _export(model, x, path, dynamo)
    report = layercalc.load(path).analyze()
    assert report.totals.params == learnable_elements(path, model, batch)[0]
    tokens, width, layers = 4 * 4 + 1, 32, 2
    attention = layers * (4 * batch * tokens * width ** 2 + 2 * batch * tokens ** 2 * width)
    assert report.totals.macs == torch_macs(model, x) + attention
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(layercalc.load(path).run(x.numpy(), weights=str(path)), expected, rtol=1e-4,
                               atol=1e-4)


# ------------------------------------------------------------------------------ masks written by hand (onnx.helper)

def _mask_model(path, node, extra):
    """x [1, 2, 4, 4] (scores) → ``node`` with the constants ``extra`` (Constant nodes) → Softmax."""
    from onnx import helper
    nodes = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))
             for name, value in extra.items()]
    nodes += [node, helper.make_node("Softmax", ["masked"], ["y"], axis=-1)]
    graph = helper.make_graph(nodes, "mask", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])])
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


CAUSAL = np.triu(np.ones((4, 4), dtype=bool), k=1)          # key j > query i


@pytest.mark.parametrize("form", ["add", "where"])
def test_hand_written_causal_mask_runs_as_the_reference(tmp_path, form):
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    if form == "add":
        node = helper.make_node("Add", ["x", "m"], ["masked"])
        extra = {"m": np.where(CAUSAL, np.float32(np.finfo(np.float32).min), np.float32(0))[None, None]}
    else:
        node = helper.make_node("Where", ["m", "fill", "x"], ["masked"])
        extra = {"m": CAUSAL[None, None], "fill": np.array(-np.inf, dtype=np.float32)}
    path = _mask_model(tmp_path / "m.onnx", node, extra)
    report = layercalc.load(path).analyze()
    mask = next(layer for layer in report.layers if layer.type == "attention_mask")
    assert (mask.params, mask.flops) == (0, 2 * 4 * 4)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    expected = ReferenceEvaluator(onnx.load(str(path))).run(None, {"x": x})[0]
    np.testing.assert_allclose(layercalc.load(path).run(x), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("form, extra, fragment", [
    ("add", {"m": np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)},
     "is neither a scalar nor an attention mask"),
    ("add", {"m": np.where(CAUSAL.T, np.float32(-1e30), np.float32(0))},       # masks the past: not causal
     "is neither a scalar nor an attention mask"),
    ("where", {"m": np.eye(4, dtype=bool), "fill": np.array(-np.inf, dtype=np.float32)},
     "is not an attention mask"),
])
def test_other_constant_masks_are_refused_in_one_line(tmp_path, form, extra, fragment):
    from onnx import helper
    node = helper.make_node("Add", ["x", "m"], ["masked"]) if form == "add" else \
        helper.make_node("Where", ["m", "fill", "x"], ["masked"])
    path = _mask_model(tmp_path / "m.onnx", node, extra)
    with pytest.raises(layercalc.LayerCalcError, match=fragment) as info:
        layercalc.load(path)
    message = str(info.value)
    assert "\n" not in message and ("(Add)" in message or "(Where)" in message)
