"""from_torch keeps nn.Dropout as a ``dropout`` layer (the identity at inference: no FLOPs, the same shapes) so that
the training figures count what torch keeps for it — the mask — and nn.MultiheadAttention's ``dropout`` on the
attention weights; measured against ``saved_tensors_hooks`` (tests/saved_oracle.py) in train mode."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from saved_oracle import saved_bytes  # noqa: E402
from torch import nn  # noqa: E402

import layercalc  # noqa: E402


def both(module: nn.Module, shape: tuple[int, ...]) -> tuple:
    """(layercalc's report of the module imported at ``shape``, torch's saved bytes in train mode)."""
    torch.manual_seed(0)
    report = layercalc.from_torch(module.eval(), shape).analyze()
    return report, saved_bytes(module.train(), torch.randn(*shape))


@pytest.mark.parametrize("p, inplace", [(0.5, False), (0.5, True), (0.0, False)])
def test_dropout_keeps_its_mask(p, inplace):
    module = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(p, inplace=inplace), nn.Linear(16, 4))
    report, expected = both(module, (2, 8))
    assert [layer.type for layer in report.layers] == ["linear", "relu", "dropout", "linear"]
    assert report.totals.saved_bytes == expected
    # by hand: the input x, 2·8·4 = 64 (the first linear's weight gradient), ReLU's output 2·16·4 = 128, the mask
    # 128, and the last linear's input: the dropout's own output (128) unless p = 0 or in place (ReLU's output,
    # counted once)
    new_output = p > 0 and not inplace
    assert expected == 64 + 128 + (128 if p else 0) + (128 if new_output else 0)
    assert report.totals.flops == layercalc.from_torch(nn.Sequential(*[m for m in module if not isinstance(
        m, nn.Dropout)]).eval(), (2, 8)).analyze().totals.flops            # no FLOPs at inference


class Attention(nn.Module):
    def __init__(self, dropout: float, need_weights: bool):
        super().__init__()
        self.embed = nn.Linear(6, 12)
        self.attention = nn.MultiheadAttention(12, 3, dropout=dropout, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x):
        x = self.embed(x)
        return self.attention(x, x, x, need_weights=self.need_weights)[0]


def test_attention_dropout_keeps_its_mask_and_the_dropped_weights():
    """The weights path (need_weights): dropout adds its mask and the dropped probabilities, 2·N·H·L² elements, to
    what the attention keeps — the same in torch as counted (the rest of nn.MultiheadAttention's account is the
    documented exception of its fused projection, docs/conventions.md)."""
    plain, plain_torch = both(Attention(0.0, True), (2, 5, 6))
    dropped, dropped_torch = both(Attention(0.1, True), (2, 5, 6))
    assert dropped.layer("attention").saved_bytes - plain.layer("attention").saved_bytes == 2 * (2 * 3 * 5 * 5) * 4
    assert dropped_torch - plain_torch == 2 * (2 * 3 * 5 * 5) * 4


def test_fused_attention_with_dropout_is_refused_not_guessed():
    """need_weights=False with dropout runs torch's math path, not the fused kernel the layer models: no total."""
    report, _ = both(Attention(0.1, False), (2, 5, 6))
    assert report.layer("attention").saved_bytes is None and report.totals.saved_bytes is None
    clean, expected = both(Attention(0.0, False), (2, 5, 6))
    assert clean.totals.saved_bytes == expected


@pytest.mark.parametrize("kind, shape", [(nn.Dropout1d, (2, 4, 9)), (nn.Dropout2d, (3, 4, 5, 5)),
                                         (nn.Dropout3d, (2, 4, 3, 3, 3))])
def test_channel_dropout_keeps_one_mask_element_per_channel(kind, shape):
    conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}[len(shape)]
    module = nn.Sequential(conv(shape[1], 4, 1), kind(0.3), nn.ReLU())
    report, expected = both(module, shape)
    assert report.layer("1").type == "dropout" and report.layer("1").saved_bytes == shape[0] * 4 * 4   # N·C·4 B
    assert report.totals.saved_bytes == expected


@pytest.mark.parametrize("kind, channels_only", [(nn.AlphaDropout, False), (nn.FeatureAlphaDropout, True)])
def test_alpha_dropout_keeps_its_mask_as_dropout_does(kind, channels_only):
    """x·mask + b: the multiply keeps the mask (per element, or per channel for the feature form), the add nothing."""
    module = nn.Sequential(nn.Conv2d(4, 4, 1), kind(0.3), nn.Conv2d(4, 4, 1))
    report, expected = both(module, (3, 4, 5, 5))
    mask = 3 * 4 * (1 if channels_only else 25) * 4
    assert report.layer("1").type == "dropout" and report.layer("1").saved_bytes == mask
    assert report.totals.saved_bytes == expected
