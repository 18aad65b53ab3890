"""``shifted_window_attention`` against torchvision's ``ShiftedWindowAttention`` (Swin Transformer), on its own
weights: params (``parameters()``), MACs (``FlopCounterMode`` = 2·MACs: the qkv and proj linears and the two
batched products), output shape and values — with padding (maps not a multiple of the window), shifts, and the shift
dropped where a window covers the whole map. FLOPs by hand below."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402
from torchvision_oracle import torchvision  # noqa: E402

from layercalc import LayerCalcError, kernels  # noqa: E402
from layercalc.executor import Env  # noqa: E402
from layercalc.graph import Step  # noqa: E402
from layercalc.layers import parse_layer  # noqa: E402
from layercalc.layers.attention import SOFTMAX_FLOPS, relative_position_index  # noqa: E402
from layercalc.rules import Context, Tensor  # noqa: E402


def resolve(fields, shape):
    layer = parse_layer(fields, 0)
    facts = layer.infer([Tensor(tuple(shape))], Context(fields["type"], True))
    return layer, Step(0, "attn", layer, ["input"], [tuple(shape)], facts)


@st.composite
def cases(draw):
    heads = draw(st.integers(1, 3))
    c = heads * draw(st.integers(1, 4))
    wh, ww = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(0, wh - 1)), draw(st.integers(0, ww - 1))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 9)), draw(st.integers(1, 9)), c)
    return heads, (wh, ww), (sh, sw), shape, draw(st.booleans()), draw(st.booleans())


@settings(max_examples=40, deadline=None)
@given(cases())
def test_matches_torchvision(case):
    heads, window, shift, shape, qkv_bias, proj_bias = case
    swin = torchvision().models.swin_transformer
    torch.manual_seed(sum(shape))
    module = swin.ShiftedWindowAttention(shape[-1], list(window), list(shift), heads, qkv_bias=qkv_bias,
                                         proj_bias=proj_bias).double().eval()
    layer, step = resolve({"type": "shifted_window_attention", "num_heads": heads, "window_size": list(window),
                           "shift_size": list(shift), "qkv_bias": qkv_bias, "proj_bias": proj_bias}, shape)
    facts = step.facts
    assert facts.params == sum(p.numel() for p in module.parameters())
    x = torch.randn(*shape, dtype=torch.float64)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        expected = module(x).numpy()
    assert counter.get_total_flops() == 2 * facts.macs
    params = {name: module.state_dict()[name.replace("qkv_", "qkv.").replace("proj_", "proj.")].numpy()
              for name in layer.param_specs(step, True)}
    env = Env(True, kernels.Workspace(1))
    env.overwritable = [False]
    ours = layer.forward(step, [x.numpy()], params, env)
    assert env.counter.macs == facts.macs
    assert ours.shape == expected.shape == tuple(facts.output_shape)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)


def test_swin_t_first_block_by_hand():
    """Swin-T's features.1.1.attn on [1, 56, 56, 96]: 3 heads, 7×7 windows shifted by 3. Derived by hand:
    64 windows of 49 positions; params 3·96² + 3·96 + 96² + 96 + 13·13·3 = 37,755; MACs: qkv 3136·96·288,
    QKᵀ and A·V 2·64·3·49²·32, proj 3136·96·96; FLOPs: 2·MACs + bias adds 3136·384 + q scaling 3136·96 +
    (bias + mask + softmax) per score."""
    _, step = resolve({"type": "shifted_window_attention", "num_heads": 3, "window_size": 7, "shift_size": 3},
                      (1, 56, 56, 96))
    facts = step.facts
    assert facts.params == 3 * 96**2 + 3 * 96 + 96**2 + 96 + 13 * 13 * 3 == 37_755
    macs = 3136 * 96 * 288 + 2 * 64 * 3 * 49**2 * 32 + 3136 * 96 * 96
    assert facts.macs == macs
    scores = 64 * 3 * 49 * 49
    assert facts.flops == 2 * macs + 3136 * 384 + 3136 * 96 + (2 + SOFTMAX_FLOPS) * scores


def test_the_shift_is_dropped_where_the_window_covers_the_map():
    """Swin-T's last stage: a 7×7 map with 7×7 windows, shift 3 → no shift and no mask (torchvision's rule)."""
    _, shifted = resolve({"type": "shifted_window_attention", "num_heads": 24, "window_size": 7, "shift_size": 3},
                         (1, 7, 7, 768))
    _, plain = resolve({"type": "shifted_window_attention", "num_heads": 24, "window_size": 7}, (1, 7, 7, 768))
    assert shifted.facts.flops == plain.facts.flops
    assert any("applied as [0, 0]" in note for note in shifted.facts.notes)


def test_relative_position_index_is_torchvisions():
    swin = torchvision().models.swin_transformer
    module = swin.ShiftedWindowAttention(8, [3, 5], [0, 0], 2)
    index = relative_position_index((3, 5))
    assert index.ravel().tolist() == module.relative_position_index.tolist()


@pytest.mark.parametrize("fields, shape, message", [
    ({"shift_size": 7}, (1, 14, 14, 8), "shift_size \\[7, 7\\] must be smaller"),
    ({}, (1, 14, 8), "4-d input"),
    ({"num_heads": 3}, (1, 14, 14, 8), "not divisible by num_heads 3"),
])
def test_refusals(fields, shape, message):
    with pytest.raises(LayerCalcError, match=message):
        resolve({"type": "shifted_window_attention", "num_heads": 2, "window_size": 7, **fields}, shape)
