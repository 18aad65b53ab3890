"""``attention_mask``: the constant mask an exported attention applies to its scores.

A model's causal mask is computed from shapes (``torch.tril(ones(L, L))``, Hugging Face's ``create_causal_mask``),
and an exporter folds it into a constant: an additive ``[1, 1, L, L]`` tensor of zeros and a large negative
number added to the scores (Hugging Face's eager attention), or a boolean one selecting between the scores and
−∞ (``masked_fill``: ONNX ``Where``). Without padding, a model with full attention (BERT, ViT) still adds an
all-zero mask. The layer describes the mask by its rule instead of its L² values: on scores
``[N, ..., L_q, L_k]``, with ``causal`` the key positions j > i of query i (top-left aligned, as PyTorch's
``is_causal``) are masked, else none; ``mode: add`` adds ``fill`` at masked positions and 0 elsewhere,
``mode: fill`` replaces masked positions by ``fill``. No parameters (the mask is a constant, not learned); 1 FLOP
per score (an add or a select, as the shifted-window mask's add is counted; FlopCounterMode counts 0); its
backward passes the gradient on, one operation per score again (as every element-wise layer's).
"""

import math
from typing import Literal, Optional

from pydantic import Field

from ..explain import Explanation, prod_text
from ..rules import Backward, Context, Facts, Gradients, Tensor, elementwise_backward, fmt_shape, numel
from .base import Bool, Float, GradFlow, LayerBase, Saved, register_layer

__all__ = ["AttentionMask", "causal_masked"]

# deferred imports (kernels): NumPy, in forward only


def causal_masked(queries: int, keys: int):
    """The boolean [queries, keys] array of masked positions: key j > query i (NumPy)."""
    import numpy as np
    return np.arange(keys)[None, :] > np.arange(queries)[:, None]


@register_layer
class AttentionMask(LayerBase):
    """A constant mask on attention scores [N, ..., L_q, L_k]: causal (key j > query i masked) or none."""
    type: Literal["attention_mask"] = "attention_mask"
    causal: Bool = Field(True, description="mask the keys after each query (j > i); false: no position is masked "
                                           "(an all-zero additive mask)")
    fill: Optional[Float] = Field(None, description="the value at masked positions: none is −∞ (masked_fill's); "
                                                    "Hugging Face writes the dtype's lowest number")
    mode: Literal["add", "fill"] = Field("add", description="add: scores + (fill where masked, 0 elsewhere); "
                                                           "fill: fill where masked, the score elsewhere")

    def infer(self, inputs: list[Tensor], ctx: Context) -> Facts:
        x = inputs[0]
        if len(x.shape) < 3:
            raise ctx.fail(f"needs scores [N, ..., L_q, L_k], got {fmt_shape(x.shape)}")
        queries, keys = x.shape[-2], x.shape[-1]
        # query i sees keys 0..i: keys − 1 − i masked in its row (none once i ≥ keys − 1)
        seen = min(queries, keys)
        masked = (seen * keys - seen * (seen + 1) // 2) if self.causal else 0
        rows = numel(x.shape) // (queries * keys)
        what = (f"causal: {masked:,} of the {queries * keys:,} (query, key) pairs masked in each of {rows:,} "
                f"score matrices" if self.causal else "no position masked (an all-zero mask)")
        return Facts(output_shape=x.shape, flops=numel(x.shape), notes=[f"a constant mask, {what}; params 0"])

    def saved_for_backward(self, step, grads: GradFlow) -> list[Saved]:
        # adding a constant keeps nothing; masked_fill keeps only its constant bool mask (a constant, not an
        # activation of the network)
        return []

    def backward(self, step, grads: Gradients) -> Backward:
        # the output gradient passed on (add) or zeroed where masked (fill): its one operation per score again
        return elementwise_backward(step.facts, grads, "a constant mask: the gradient passed on where not masked")

    def forward(self, step, xs, params, env):
        import numpy as np
        x = xs[0]
        # −∞ is run as the dtype's lowest number: the softmax that follows gives the same probabilities (a row
        # is never wholly masked: query i sees key 0), and the run's overflow check stays on
        fill = x.dtype.type(np.finfo(x.dtype).min if self.fill is None else self.fill)
        if not self.causal:
            return x + x.dtype.type(0) if self.mode == "add" else x.copy()
        masked = causal_masked(x.shape[-2], x.shape[-1])
        if self.mode == "fill":
            return np.where(masked, fill, x)
        return x + np.where(masked, fill, x.dtype.type(0))

    def scratch_bytes(self, step, itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        x = step.input_shapes[0]
        return x[-2] * x[-1] * (1 + itemsize) + numel(x) * itemsize, 0

    def explain(self, c: Explanation, input_shapes, facts: Facts, channels_last: bool) -> None:
        x = list(input_shapes[0])
        fill = "−∞" if self.fill is None else f"{self.fill:g}"
        what = f"keys after each query set to {fill}" if self.causal else "nothing masked"
        c.add(f"scores {x}: {what} ({'added' if self.mode == 'add' else 'selected'}); params 0")
        c.result("FLOPs", f"1 per score (an {'add' if self.mode == 'add' else 'select'}) · {prod_text(x)}",
                 math.prod(x), facts.flops)
