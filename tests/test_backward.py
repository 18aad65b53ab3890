"""The backward pass (``LayerBase.backward``, ``graph.gradient_flow``) against PyTorch's own count of it.

The oracle is ``torch.utils.flop_counter.FlopCounterMode`` entered around ``loss.backward()`` only (the forward pass
runs outside it): 2 per multiply-accumulate of the matmuls and convolutions autograd runs, nothing for element-wise
work, scatter-adds (an embedding's weight gradient) or norms. Autograd makes only the gradients something needs: an
input tensor without ``requires_grad`` gets none — exactly layercalc's rule for the network input — so
``2·(backward_input_macs + backward_weight_macs)`` is FlopCounterMode's total, layer by layer and on whole networks.

Two things FlopCounterMode does not see or miscounts, each checked here against a hand derivation:
- a grouped convolution's weight gradient is counted by torch 2.13 as if the conv were ungrouped (its formula
  transposes the input to [C_in, N, …] and takes all C_in channels against all C_out): ``groups`` times the truth;
- ``nn.LSTM``'s fused CPU kernel is invisible to it; the same recurrence written with ``nn.LSTMCell`` is counted.
"""

from __future__ import annotations

import math

import pytest
import torch
from oracle_helpers import network
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import layercalc
from layercalc.graph import backward_of
from layercalc.rules import Gradients

# ----------------------------------------------------------------------------------------------------- helpers


def torch_backward_flops(module, *inputs, input_grad: bool, loss=lambda y: y.sum()) -> int:
    """FlopCounterMode's count of ``loss(module(*inputs)).backward()``, the backward only; floating-point inputs
    require a gradient when ``input_grad`` (integer inputs never do)."""
    xs = [x.detach().requires_grad_(input_grad) if x.is_floating_point() else x for x in inputs]
    output = module(*xs)
    value = loss(output[0] if isinstance(output, tuple) else output)
    with FlopCounterMode(display=False) as counter:
        value.backward()
    return counter.get_total_flops()


def torch_forward_flops(module, *inputs) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*inputs)
    return counter.get_total_flops()


def layer_backward(input_shape, layer: dict, input_grad: bool, batch: int = 2):
    """layercalc's backward of a one-layer network's layer, with its input requiring a gradient or not (in a
    network, the input of a layer after a trainable one does; the network input does not)."""
    steps = layercalc.load(network(input_shape, layer, batch)).resolve()
    step = steps[-1]
    grads = Gradients((input_grad,) * len(step.inputs), step.facts.params > 0 and step.layer.trainable)
    return backward_of(step, grads)


def first_layer(input_shape, layer: dict, batch: int = 2):
    """The report entry of a one-layer network: its input is the network input (no gradient)."""
    return layercalc.load(network(input_shape, layer, batch)).analyze().layers[-1]


# ------------------------------------------------------------------------------------- products with a weight

# (input shape without the batch, layercalc layer, the torch module)
PRODUCTS = {
    "linear": ([5, 8], {"type": "linear", "out_features": 16}, lambda: nn.Linear(8, 16)),
    "linear-no-bias": ([8], {"type": "linear", "out_features": 3, "bias": False}, lambda: nn.Linear(8, 3, False)),
    "conv1d": ([4, 20], {"type": "conv1d", "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1},
               lambda: nn.Conv1d(4, 6, 3, 2, 1)),
    "conv2d": ([3, 12, 10], {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 2, "dilation": 2},
               lambda: nn.Conv2d(3, 8, 3, padding=2, dilation=2)),
    "conv3d": ([2, 6, 6, 5], {"type": "conv3d", "out_channels": 4, "kernel_size": [3, 2, 3], "stride": 2},
               lambda: nn.Conv3d(2, 4, (3, 2, 3), 2)),
    "conv_transpose1d": ([4, 9], {"type": "conv_transpose1d", "out_channels": 3, "kernel_size": 4, "stride": 2,
                                  "padding": 1}, lambda: nn.ConvTranspose1d(4, 3, 4, 2, 1)),
    "conv_transpose2d": ([6, 5, 7], {"type": "conv_transpose2d", "out_channels": 4, "kernel_size": 3, "stride": 2,
                                     "output_padding": 1}, lambda: nn.ConvTranspose2d(6, 4, 3, 2, output_padding=1)),
    "conv_transpose3d": ([3, 3, 4, 4], {"type": "conv_transpose3d", "out_channels": 2, "kernel_size": 2,
                                        "stride": 2}, lambda: nn.ConvTranspose3d(3, 2, 2, 2)),
}


@pytest.mark.parametrize("input_grad", [False, True], ids=["first-layer", "inner-layer"])
@pytest.mark.parametrize("case", list(PRODUCTS))
def test_products_backward_is_flop_counter(case, input_grad):
    """Linear, conv and transposed conv: the weight gradient has the forward's MACs, and so has the input gradient
    when the input requires one (2·forward MACs in all: 'backward = 2× forward' holds here, and only here)."""
    shape, layer, build = PRODUCTS[case]
    x = torch.randn(2, *shape)
    expected = torch_backward_flops(build(), x, input_grad=input_grad)
    ours = layer_backward(shape, layer, input_grad)
    forward = torch_forward_flops(build(), x)
    assert 2 * ours.macs == expected
    assert ours.weight_macs == forward // 2
    assert ours.input_macs == (forward // 2 if input_grad else 0)


def test_the_network_input_needs_no_gradient():
    """The first layer of a network makes no input gradient (its input is the network input), as autograd does for
    an input tensor without requires_grad: the analysis' report says so."""
    shape, layer, build = PRODUCTS["conv2d"]
    entry = first_layer(shape, layer)
    assert entry.backward_input_macs == 0
    assert entry.backward_weight_macs == entry.macs
    assert 2 * (entry.backward_input_macs + entry.backward_weight_macs) == torch_backward_flops(
        build(), torch.randn(2, *shape), input_grad=False)


def test_bias_gradient_and_fused_activation_are_element_flops():
    """backward_flops = 2·backward MACs + the bias gradient's sums (one add per output element, as the forward's
    bias adds) + the fused activation's derivative at its forward cost (docs/conventions.md), by hand:
    linear 8 → 16 on [2, 5, 8] with ReLU: 160 bias-gradient adds + 160 ReLU element FLOPs."""
    entry = first_layer([5, 8], {"type": "linear", "out_features": 16, "activation": "relu"})
    rows, fin, fout = 2 * 5, 8, 16
    assert entry.backward_weight_macs == rows * fin * fout
    assert entry.backward_flops == 2 * rows * fin * fout + rows * fout + rows * fout


# ---------------------------------------------------------------------------------------- grouped convolutions

GROUPED = {
    # the measurement: a 3×3 depthwise conv on 32 channels, backward 33× its forward in FlopCounterMode
    "depthwise_conv2d-32": ([32, 8, 8], {"type": "depthwise_conv2d", "kernel_size": 3, "padding": 1},
                            lambda: nn.Conv2d(32, 32, 3, padding=1, groups=32), 32),
    "conv2d-groups-4": ([8, 6, 6], {"type": "conv2d", "out_channels": 12, "kernel_size": 3, "groups": 4},
                        lambda: nn.Conv2d(8, 12, 3, groups=4), 4),
    "conv_transpose2d-groups-2": ([4, 5, 5], {"type": "conv_transpose2d", "out_channels": 6, "kernel_size": 3,
                                              "stride": 2, "groups": 2},
                                  lambda: nn.ConvTranspose2d(4, 6, 3, 2, groups=2), 2),
    "depthwise_conv1d-m2": ([6, 10], {"type": "depthwise_conv1d", "kernel_size": 3, "depth_multiplier": 2},
                            lambda: nn.Conv1d(6, 12, 3, groups=6), 6),
}


@pytest.mark.parametrize("input_grad", [False, True], ids=["first-layer", "inner-layer"])
@pytest.mark.parametrize("case", list(GROUPED))
def test_grouped_conv_backward_is_the_truth_and_torch_counts_its_weight_gradient_ungrouped(case, input_grad):
    """The truth, by hand: dX = conv_transpose(dY, W) and dW = conv(X, dY) are computed group by group, and each
    meets every forward multiply exactly once: forward MACs each. torch 2.13's FlopCounterMode counts the weight
    gradient as conv(Xᵀ [C_in, N, …], dYᵀ [C_out, N, …]) over all C_in·C_out channel pairs: ``groups`` times the
    forward. The difference is exactly that: 2·(groups − 1)·forward MACs."""
    shape, layer, build, groups = GROUPED[case]
    x = torch.randn(2, *shape)
    forward_macs = torch_forward_flops(build(), x) // 2
    torch_count = torch_backward_flops(build(), x, input_grad=input_grad)
    ours = layer_backward(shape, layer, input_grad)
    assert ours.weight_macs == forward_macs                          # the truth, by the derivation above
    assert ours.input_macs == (forward_macs if input_grad else 0)
    assert torch_count == 2 * ours.macs + 2 * (groups - 1) * forward_macs       # the documented artefact
    if case == "depthwise_conv2d-32" and input_grad:
        assert torch_count == 33 * 2 * forward_macs and 2 * ours.macs == 2 * 2 * forward_macs    # 33× vs 2×


def test_separable_conv_pointwise_input_gradient_is_always_made():
    """A separable conv as the first layer: the pointwise conv's input (the depthwise output) needs its gradient
    for the depthwise weights' gradient; the depthwise input (the network input) needs none. By hand, on
    [2, 4, 8, 8], 3×3 depthwise (padding 1) then 1×1 to 6: depthwise 2·64·4·9 = 4,608 MACs, pointwise
    2·64·4·6 = 3,072: input gradients 3,072 (pointwise only), weight gradients 4,608 + 3,072."""
    entry = first_layer([4, 8, 8], {"type": "separable_conv2d", "out_channels": 6, "kernel_size": 3, "padding": 1})
    assert (entry.backward_input_macs, entry.backward_weight_macs) == (3_072, 4_608 + 3_072)
    torch_model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False), nn.Conv2d(4, 6, 1))
    measured = torch_backward_flops(torch_model, torch.randn(2, 4, 8, 8), input_grad=False)
    assert measured == 2 * (3_072 + 4_608 + 3_072) + 2 * (4 - 1) * 4_608      # the grouped artefact again


# ---------------------------------------------------------------------------------------------------- attention

def test_matmul_makes_a_gradient_for_each_operand_that_needs_one():
    a, b = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 4, 6)
    spec = {"input": [3, 5, 4], "batch": 2, "layers": [
        {"type": "extra_input", "name": "b", "shape": [3, 4, 6]},
        {"type": "matmul", "inputs": ["input", "b"]}]}
    step = layercalc.load(spec).resolve()[-1]
    for grads in [(True, True), (True, False), (False, True)]:
        expected = torch_backward_flops(lambda x, y, g=grads: (x.requires_grad_(g[0]) @ y.requires_grad_(g[1])),
                                        a, b, input_grad=False)
        assert 2 * backward_of(step, Gradients(grads, False)).macs == expected


@pytest.mark.parametrize("gqa", [False, True])
def test_sdpa_backward_on_the_math_path(gqa):
    """F.scaled_dot_product_attention on PyTorch's math path (explicit matmuls: FlopCounterMode sees them; the CPU
    flash kernel it does not): the four score-matmul gradients, 2× the forward's score MACs."""
    heads, kv = 4, 2 if gqa else 4
    q, k, v = torch.randn(2, heads, 6, 8), torch.randn(2, kv, 7, 8), torch.randn(2, kv, 7, 5)
    spec = {"input": [heads, 6, 8], "batch": 2, "layers": [
        {"type": "extra_input", "name": "k", "shape": [kv, 7, 8]},
        {"type": "extra_input", "name": "v", "shape": [kv, 7, 5]},
        {"type": "scaled_dot_product_attention", "inputs": ["input", "k", "v"], "enable_gqa": gqa}]}
    step = layercalc.load(spec).resolve()[-1]
    with sdpa_kernel(SDPBackend.MATH):
        expected = torch_backward_flops(
            lambda *xs: nn.functional.scaled_dot_product_attention(*xs, enable_gqa=gqa), q, k, v, input_grad=True)
    ours = backward_of(step, Gradients((True, True, True), False))
    assert 2 * ours.macs == expected
    assert ours.macs == 2 * step.facts.macs and ours.weight_macs == 0


@pytest.mark.parametrize("input_grad", [False, True], ids=["first-layer", "inner-layer"])
def test_multi_head_attention_backward(input_grad):
    """nn.MultiheadAttention (need_weights: its explicit matmuls, which FlopCounterMode sees): weight gradients of
    the four projections; activation gradients of the output projection's input, the score matmuls, and — only
    when the input requires one — the q/k/v projections' input. By hand (N 2, L 6, E 16, 4 heads): projections
    4·12·16·16 = 12,288 MACs; scores 2·4·6·6 = 288, QKᵀ and A·V 288·4 each; backward input side without the
    input: out projection 3,072 + 4·1,152 = 7,680; with it + 3·3,072 = 16,896."""
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    x = torch.randn(2, 6, 16)
    expected = torch_backward_flops(lambda t: mha(t, t, t)[0], x, input_grad=input_grad)
    ours = layer_backward([6, 16], {"type": "multi_head_attention", "num_heads": 4}, input_grad)
    assert 2 * ours.macs == expected
    assert ours.weight_macs == 12_288
    assert ours.input_macs == (16_896 if input_grad else 7_680)


# ------------------------------------------------------------------------------------------------ embeddings

def test_embedding_weight_gradient_is_a_scatter_add():
    """Token ids are integers: no input gradient; the table's gradient adds each output-gradient row into the row
    of its id: 0 MACs (FlopCounterMode counts nothing), tokens·dim = 2·7·5 = 70 adds in backward_flops."""
    ids = torch.randint(0, 11, (2, 7))
    assert torch_backward_flops(nn.Embedding(11, 5), ids, input_grad=False) == 0
    entry = first_layer([7], {"type": "embedding", "num_embeddings": 11, "embedding_dim": 5})
    assert (entry.backward_input_macs, entry.backward_weight_macs, entry.backward_flops) == (0, 0, 70)


# ------------------------------------------------------------------------------------------------- recurrent

@pytest.mark.parametrize("kind", ["gru", "rnn"])
@pytest.mark.parametrize("input_grad", [False, True], ids=["first-layer", "inner-layer"])
def test_gru_and_rnn_backward_is_flop_counter(kind, input_grad):
    """nn.GRU and nn.RNN on CPU run their backward as matmuls FlopCounterMode sees: weight gradients (the forward's
    MACs), the hidden state's gradient for L − 1 steps (the initial state requires none), the input's when it
    requires one; two stacked layers, both directions."""
    build = {"gru": nn.GRU, "rnn": nn.RNN}[kind]
    module = build(3, 4, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(2, 5, 3)
    expected = torch_backward_flops(module, x, input_grad=input_grad)
    ours = layer_backward([5, 3], {"type": kind, "hidden_size": 4, "num_layers": 2, "bidirectional": True},
                          input_grad)
    assert 2 * ours.macs == expected


@pytest.mark.parametrize("input_grad", [False, True], ids=["first-layer", "inner-layer"])
def test_lstm_backward_against_an_lstm_cell_loop(input_grad):
    """nn.LSTM's fused CPU kernel is invisible to FlopCounterMode (it counts 0, forward and backward); the same
    recurrence as an nn.LSTMCell loop is counted: layercalc's LSTM backward equals it. By hand (N 2, L 5, I 3,
    H 4): weights 2·5·16·7 = 1,120 MACs, hidden states 2·4·16·4 = 512, input 2·5·16·3 = 480 when needed."""
    assert torch_backward_flops(nn.LSTM(3, 4, batch_first=True), torch.randn(2, 5, 3), input_grad=True) == 0
    cell = nn.LSTMCell(3, 4)

    def loop(x):
        h = c = torch.zeros(2, 4)
        outputs = []
        for t in range(x.shape[1]):
            h, c = cell(x[:, t], (h, c))
            outputs.append(h)
        return torch.stack(outputs, 1)

    expected = torch_backward_flops(loop, torch.randn(2, 5, 3), input_grad=input_grad)
    ours = layer_backward([5, 3], {"type": "lstm", "hidden_size": 4}, input_grad)
    assert 2 * ours.macs == expected
    assert (ours.weight_macs, ours.input_macs) == (1_120, 512 + (480 if input_grad else 0))


# --------------------------------------------------------------------------------- layers without matmuls

ELEMENTWISE = {
    "batchnorm2d": ([3, 4, 4], {"type": "batchnorm2d"}, lambda: nn.BatchNorm2d(3)),
    "layernorm": ([5, 6], {"type": "layernorm", "normalized_shape": 6}, lambda: nn.LayerNorm(6)),
    "maxpool2d": ([3, 6, 6], {"type": "maxpool2d", "kernel_size": 2}, lambda: nn.MaxPool2d(2)),
    "avgpool2d": ([3, 6, 6], {"type": "avgpool2d", "kernel_size": 3, "stride": 2}, lambda: nn.AvgPool2d(3, 2)),
    "gelu": ([5, 6], {"type": "gelu"}, lambda: nn.GELU()),
    "upsample": ([3, 4, 4], {"type": "upsample", "scale_factor": 2, "mode": "bilinear"},
                 lambda: nn.Upsample(scale_factor=2, mode="bilinear")),
}


@pytest.mark.parametrize("case", list(ELEMENTWISE))
def test_element_wise_layers_have_no_backward_macs(case):
    """Norms, pooling, activations, resampling: FlopCounterMode counts nothing in their backward; layercalc counts
    0 MACs and their element work once more (at the forward's cost)."""
    shape, layer, build = ELEMENTWISE[case]
    assert torch_backward_flops(build(), torch.randn(2, *shape), input_grad=True) == 0
    ours = layer_backward(shape, layer, True)
    assert ours.macs == 0


def test_a_layer_without_parameters_after_the_input_has_no_backward():
    """ReLU and max pooling straight on the network input: nothing requires a gradient there — no backward at all,
    even no element work; the conv after them makes no input gradient either."""
    report = layercalc.load(network([3, 8, 8], [
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "relu"}])).analyze()
    relu, pool, conv, relu2 = report.layers
    assert (relu.backward_flops, pool.backward_flops) == (0, 0)
    assert conv.backward_input_macs == 0 and conv.backward_weight_macs == conv.macs
    assert relu2.backward_flops == relu2.flops                     # after the conv: its derivative is needed


def test_frozen_layers_make_no_weight_gradient():
    """trainable: false is requires_grad False on the parameters: no weight gradient; a frozen first layer makes
    nothing, so the next trainable layer makes no input gradient either — as autograd decides."""
    layers = [{"type": "linear", "out_features": 8, "trainable": False}, {"type": "relu"},
              {"type": "linear", "out_features": 4}, {"type": "linear", "out_features": 3, "trainable": False}]
    report = layercalc.load(network([6], layers, batch=2)).analyze()
    first, relu, middle, last = report.layers
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4), nn.Linear(4, 3))
    for index in (0, 3):
        model[index].requires_grad_(False)
    expected = torch_backward_flops(model, torch.randn(2, 6), input_grad=False)
    assert (first.backward_flops, relu.backward_flops) == (0, 0)
    assert (middle.backward_input_macs, middle.backward_weight_macs) == (0, 2 * 8 * 4)
    assert (last.backward_input_macs, last.backward_weight_macs) == (2 * 4 * 3, 0)
    assert 2 * (report.totals.backward_input_macs + report.totals.backward_weight_macs) == expected


# ------------------------------------------------------------------------------------------------- networks

def torchvision_models():
    return pytest.importorskip("torchvision").models


#: grouped convolutions' weight gradients, which FlopCounterMode counts ungrouped: its total is layercalc's
#: backward + 2·(groups − 1)·MACs of each (mobilenet_v2, shufflenet and convnext have depthwise convs)
NETWORKS = ["alexnet", "vgg11", "resnet18", "resnet50", "mobilenet_v2", "shufflenet_v2_x1_0", "convnext_tiny",
            "swin_t", "vit_b_16"]


@pytest.mark.parametrize("name", NETWORKS)
def test_zoo_networks_backward_is_flop_counter_on_torchvision(name):
    """The zoo's torchvision classifiers at 224×224, on PyTorch's meta device (nothing computed): FlopCounterMode
    around loss.backward() equals 2·(backward_input_macs + backward_weight_macs), once its ungrouped count of
    each grouped conv's weight gradient is taken back (the truth is layercalc's). Attention on the math path."""
    report = layercalc.load(f"zoo:{name}").analyze()
    with torch.device("meta"):
        model = getattr(torchvision_models(), name)(weights=None)
    grouped_macs: list[tuple[int, int]] = []            # (groups, forward MACs) of each grouped conv

    def record(module, inputs, output):
        per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
        grouped_macs.append((module.groups, output.numel() * per_output))

    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.groups > 1:
            module.register_forward_hook(record)
    x = torch.empty(1, 3, 224, 224, device="meta")
    with sdpa_kernel(SDPBackend.MATH):
        measured = torch_backward_flops(model, x, input_grad=False)
    artefact = sum(2 * (groups - 1) * macs for groups, macs in grouped_macs)
    totals = report.totals
    assert measured - artefact == 2 * (totals.backward_input_macs + totals.backward_weight_macs)
    assert (artefact > 0) == (name in ("mobilenet_v2", "shufflenet_v2_x1_0", "convnext_tiny"))
    first = report.layers[0]
    assert first.backward_input_macs == 0 and first.backward_weight_macs == first.macs


# ------------------------------------------------------------------------------------------------ transformers

HF_CASES = {
    "gpt2-lm-tied": dict(model_type="gpt2", n_embd=64, n_head=4, n_layer=2, n_positions=32, vocab_size=100,
                         bos_token_id=0, eos_token_id=0, architectures=["GPT2LMHeadModel"]),
    "llama-lm-gqa": dict(model_type="llama", hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                         num_hidden_layers=2, intermediate_size=96, max_position_embeddings=32, vocab_size=100,
                         architectures=["LlamaForCausalLM"]),
    "bert-mlm": dict(model_type="bert", hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                     intermediate_size=96, max_position_embeddings=32, vocab_size=100,
                     architectures=["BertForMaskedLM"]),
    "mistral-lm-window": dict(model_type="mistral", hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                              num_hidden_layers=2, intermediate_size=96, vocab_size=100, sliding_window=4,
                              architectures=["MistralForCausalLM"]),
    "qwen2-lm-tied": dict(model_type="qwen2", hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                          num_hidden_layers=2, intermediate_size=96, vocab_size=100, tie_word_embeddings=True,
                          architectures=["Qwen2ForCausalLM"]),
    # an image model: the patch conv is the first layer (no input gradient), and there are no tokens
    "vit-classifier": dict(model_type="vit", hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                           intermediate_size=96, image_size=32, patch_size=8, num_labels=10,
                           architectures=["ViTForImageClassification"]),
}


@pytest.mark.parametrize("case", list(HF_CASES))
def test_hugging_face_transformers_backward_is_flop_counter(case):
    """Small Hugging Face models (eager attention) imported through layercalc's config importer: FlopCounterMode
    around loss.backward() on token ids (no gradient) equals 2·(backward input + weight MACs). The embeddings'
    weight gradients are scatter-adds it does not count (layercalc: 0 MACs); GPT-2's tied output head makes its
    weight gradient (into the shared table) and the first layers after the embeddings make input gradients."""
    from test_import_huggingface import hf_input, hf_model, imported

    config = HF_CASES[case]
    model = hf_model(config)
    tokens = 8
    ids = hf_input(config, tokens=tokens)
    measured = torch_backward_flops(lambda x: model(x).logits, ids, input_grad=False)
    report = imported(config, tokens).analyze()
    totals = report.totals
    assert measured == 2 * (totals.backward_input_macs + totals.backward_weight_macs)
    assert totals.training_flops == totals.flops + totals.backward_flops
    if config["model_type"] == "vit":
        assert totals.tokens is None and totals.training_flops_per_token is None
        assert report.layers[0].backward_input_macs == 0 < report.layers[0].backward_weight_macs
    else:
        assert totals.tokens == tokens
        assert totals.training_flops_per_token == totals.training_flops / tokens


# ---------------------------------------------------------------------------------- the worked example of the docs

def test_docs_worked_example_6n_plus_palm_attention_term():
    """docs/conventions.md's example: zoo:gpt2 at 1,024 tokens. Every matmul follows the trainable embeddings, so
    backward MACs = 2 × forward MACs; training FLOPs per token (2 per MAC) = 6·N + 12·L·H·Q·T (PaLM, appendix B)
    with N the matmul weights: 12 layers of 4·768² (attention) + 2·768·3,072 (MLP), and the tied head 768·50,257."""
    totals = layercalc.load("zoo:gpt2").replace(input=[1024]).analyze().totals
    layers, heads, head_dim, tokens = 12, 12, 64, 1024
    matmul_weights = layers * (4 * 768 ** 2 + 2 * 768 * 3072) + 768 * 50257
    assert matmul_weights == 123_532_032
    palm = 6 * matmul_weights + 12 * layers * heads * head_dim * tokens
    assert palm == 854_438_400
    assert totals.tokens == tokens
    assert (totals.macs, totals.backward_input_macs, totals.backward_weight_macs) == (
        145_824_153_600, 165_151_506_432, 126_496_800_768)
    assert 2 * (totals.macs + totals.backward_input_macs + totals.backward_weight_macs) == palm * tokens
    assert totals.backward_input_macs + totals.backward_weight_macs == 2 * totals.macs
    assert totals.training_flops_per_token == 857_384_648


def test_docs_resnet18_first_layer_has_no_input_gradient():
    """The docs' counter-example to 'backward = 2× forward': ResNet-18's stem conv (118,013,952 MACs) makes only
    its weight gradient."""
    report = layercalc.load("zoo:resnet18").analyze()
    totals = report.totals
    assert report.layers[0].macs == 118_013_952
    assert (totals.backward_input_macs, totals.backward_weight_macs) == (1_696_059_392, 1_814_073_344)
    assert totals.backward_input_macs == totals.macs - report.layers[0].macs


# ----------------------------------------------------------------------------------- the protocol's default

def test_every_built_in_type_states_its_backward():
    """The default of LayerBase.backward is 'unknown': every built-in family overrides it (a new family that did
    not would be reported as unknown, never guessed)."""
    from layercalc.layers.base import LAYER_CLASSES, LayerBase, load_families, plugin_module

    load_families()
    missing = [cls.__name__ for cls in LAYER_CLASSES
               if plugin_module(cls) is None and cls.backward is LayerBase.backward]
    assert missing == []


def _plugin(type_name: str, backward=None):
    """A parameterized plugin type (a learnable per-element scale), with or without a backward method."""
    from typing import Literal

    from layercalc.layers import LayerBase, register_layer
    from layercalc.rules import Facts

    namespace = {"__annotations__": {"type": Literal[type_name]}, "type": type_name, "__module__": "my_plugin",
                 "infer": lambda self, inputs, ctx: Facts(output_shape=inputs[0].shape, params=1,
                                                          flops=math.prod(inputs[0].shape))}
    if backward is not None:
        namespace["backward"] = backward
    return register_layer(type(f"Plugin_{type_name}", (LayerBase,), namespace))


def test_a_plugin_without_backward_is_unknown_not_guessed():
    """Its backward fields are null, the backward totals null, the layer named in backward_unknown; the --train
    table says 'unknown' and the footer names it instead of printing a total that leaves it out."""
    from layercalc.formatting import render_report
    from layercalc.layers import unregister_layer

    cls = _plugin("scale_no_backward")
    try:
        report = layercalc.load(network([4], [{"type": "linear", "out_features": 4},
                                              {"type": "scale_no_backward", "name": "mine"},
                                              {"type": "linear", "out_features": 2}])).analyze()
        mine = report.layer("mine")
        assert (mine.backward_input_macs, mine.backward_weight_macs, mine.backward_flops) == (None, None, None)
        totals = report.totals
        assert totals.backward_unknown == ["mine"]
        assert (totals.backward_flops, totals.training_flops, totals.backward_input_macs) == (None, None, None)
        text = render_report(report, "table", width=80, train=True)
        assert "unknown" in text.split("mine", 1)[1].split("\n", 1)[0]
        assert "Backward: unknown: the type of mine does not state its backward pass" in text
    finally:
        unregister_layer(cls)


def test_a_plugin_whose_backward_fails_is_named():
    from layercalc import LayerCalcError
    from layercalc.layers import unregister_layer

    def broken(self, step, grads):
        raise ZeroDivisionError("oops")

    cls = _plugin("scale_broken_backward", broken)
    try:
        with pytest.raises(LayerCalcError, match=r"plugin layer type 'scale_broken_backward' \(module my_plugin\) "
                                                 r"failed in backward\(\): ZeroDivisionError: oops"):
            layercalc.load(network([4], [{"type": "scale_broken_backward"}])).analyze()
    finally:
        unregister_layer(cls)


# -------------------------------------------------------------------------------------- the --train view

def test_summary_train_shows_the_backward_and_the_training_step(monkeypatch):
    """`layercalc summary --train`: the backward columns (input- and weight-gradient MACs, backward FLOPs) and a
    footer with forward + backward = training step, per token for token ids (the count said)."""
    from typer.testing import CliRunner

    from layercalc.cli import get_app

    result = CliRunner(env={"COLUMNS": "80"}).invoke(get_app(), ["summary", "zoo:gpt2", "--train", "--input", "64"])
    assert result.exit_code == 0, result.output
    text = result.stdout
    totals = layercalc.load("zoo:gpt2").replace(input=[64]).analyze().totals
    assert "bwd FLOPs" in text and "saved bytes" in text         # at 80 columns the MACs' split makes room for them
    wide = CliRunner(env={"COLUMNS": "160"}).invoke(get_app(), ["summary", "zoo:gpt2", "--train", "--input", "64"])
    assert "grad-in MACs" in wide.stdout and "grad-w MACs" in wide.stdout
    assert (f"Training step: forward FLOPs {totals.flops:,} + backward FLOPs {totals.backward_flops:,} = "
            f"{totals.training_flops:,}") in " ".join(text.split())
    assert "Per token (64 tokens = batch × positions)" in " ".join(text.split())
    assert max(map(len, text.splitlines())) <= 80


def test_explain_train_works_the_backward_formulas():
    """--explain --train: each layer's backward lines with its numbers (a linear on [2, 144] → 10 after a conv:
    dX = dY·W 2·10·144 = 2,880 MACs, dW the same, 20 bias-gradient adds), and why the first layer has no input
    gradient."""
    from layercalc.network_explain import explain_network

    net = layercalc.load(network([3, 8, 8], [{"type": "conv2d", "out_channels": 4, "kernel_size": 3},
                                             {"type": "flatten"}, {"type": "linear", "out_features": 10}], batch=2))
    text = "\n".join(explain_network(net, net.analyze(), train=True))
    assert "backward: no input gradient: the input requires none" in text
    assert "backward input gradient (dX = dY·W: rows·out·in = 2·10·144) = forward MACs = 2,880 MACs" in text
    assert "backward bias gradient (db = Σ_rows dY: rows·out = 2·10) = 20 adds" in text
    assert "backward MACs = input gradients 2,880 + weight gradients 2,880 = 5,760; backward FLOPs = 2·5,760 + " \
           "20 element FLOPs = 11,540" in text
    assert "backward" not in "\n".join(explain_network(net, net.analyze()))      # the forward view as it was


def test_json_always_holds_the_backward():
    import json

    from layercalc.formatting import render_report

    data = json.loads(render_report(layercalc.load("zoo:lenet5").analyze(), "json"))
    assert {"backward_input_macs", "backward_weight_macs", "backward_flops"} <= set(data["layers"][0])
    assert {"backward_flops", "training_flops", "tokens", "training_flops_per_token", "backward_unknown"} <= set(
        data["totals"])


def test_the_example_plugin_states_its_backward():
    """examples/custom_layer.py (LayerScale, y = x·γ per channel) shows a plugin author the method: 0 MACs; by hand,
    after a conv on [1, 16, 8, 8] (1,024 elements): the input's gradient dY·γ, 1 multiply per element, and γ's
    gradient Σ dY·x, a multiply and an add per element: 1,024 + 2·1,024. As the first layer (the network input needs
    no gradient): γ's only."""
    import importlib.util
    import sys
    from pathlib import Path

    from layercalc.layers import unregister_layer

    path = Path(__file__).resolve().parent.parent / "examples" / "custom_layer.py"
    spec = importlib.util.spec_from_file_location("custom_layer_backward_example", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    try:
        report = layercalc.load(network([16, 8, 8], [
            {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1},
            {"type": "layer_scale"}])).analyze()
        scale = report.layers[-1]
        assert (scale.backward_input_macs, scale.backward_weight_macs, scale.backward_flops) == (0, 0, 3 * 1_024)
        assert report.totals.backward_unknown == []
        first = layercalc.load(network([16, 8, 8], [{"type": "layer_scale"}])).analyze().layers[0]
        assert first.backward_flops == 2 * 1_024
    finally:
        unregister_layer(module.LayerScale)
        del sys.modules[spec.name]


MHA_VARIANTS = {"kdim-vdim": dict(kdim=10, vdim=12), "bias_kv": dict(add_bias_kv=True),
                "zero_attn": dict(add_zero_attn=True), "no-bias": dict(bias=False)}


@pytest.mark.parametrize("frozen", [False, True], ids=["trainable", "frozen"])
@pytest.mark.parametrize("input_grad", [False, True], ids=["inputs-no-grad", "inputs-grad"])
@pytest.mark.parametrize("variant", list(MHA_VARIANTS))
def test_multi_head_attention_variants_with_three_inputs(variant, input_grad, frozen):
    """Query, key and value as three tensors (other key/value sizes, appended bias or zero keys, no biases), the
    layer trainable or frozen (then only the inputs' gradients pull the backward through the scores)."""
    fields = MHA_VARIANTS[variant]
    kdim, vdim = fields.get("kdim", 16), fields.get("vdim", 16)
    mha = nn.MultiheadAttention(16, 4, batch_first=True, **fields).requires_grad_(not frozen)
    q, k, v = torch.randn(2, 6, 16), torch.randn(2, 5, kdim), torch.randn(2, 5, vdim)
    if frozen and not input_grad:
        pytest.skip("nothing requires a gradient: no backward (test_frozen_layers_make_no_weight_gradient)")
    expected = torch_backward_flops(lambda a, b, c: mha(a, b, c)[0], q, k, v, input_grad=input_grad)
    spec = {"input": [6, 16], "batch": 2, "layers": [
        {"type": "extra_input", "name": "k", "shape": [5, kdim]},
        {"type": "extra_input", "name": "v", "shape": [5, vdim]},
        {"type": "multi_head_attention", "num_heads": 4, "inputs": ["input", "k", "v"], **fields}]}
    step = layercalc.load(spec).resolve()[-1]
    assert 2 * backward_of(step, Gradients((input_grad,) * 3, not frozen)).macs == expected
