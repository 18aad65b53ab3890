"""The analysis result: one entry per layer and the totals, as Pydantic models.

This is the stable schema that ``layercalc summary --format json`` prints and design tools read. All counts are
exact integers; the ``conventions`` mapping says in words what each figure counts.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, computed_field


class LayerReport(BaseModel):
    model_config = ConfigDict(defer_build=True)   # built on first dump or validation, not at import

    index: int = Field(description="position in the spec's layer list")
    name: str
    type: str
    inputs: list[str] = Field(description="names of the tensors feeding the layer ('input' = network input)")
    input_shapes: list[list[int]]
    output_shape: list[int] = Field(description="batch included, in the network's layout (the first output's, for a "
                                                "layer with several)")
    output_shapes: Optional[list[list[int]]] = Field(
        None, description="every output's shape, for a layer with several outputs (named NAME:0, NAME:1, …); "
                          "null for one output")
    params: int = Field(description="learnable parameters: what sum(p.numel() for p in module.parameters()) gives")
    active_params: int = Field(description="the params one token's forward pass uses: params, except for a mixture "
                                           "of experts (router + its top-k experts + shared experts; every expert "
                                           "stays in params and in memory)")
    buffers: int = Field(description="non-learnable state (BatchNorm running mean and variance)")
    macs: int = Field(description="multiply-accumulates of conv / transposed conv / linear, bias excluded; a "
                                  "mixture of experts: what its forward computes, each token through its top-k "
                                  "experts only")
    all_experts_macs: int = Field(description="macs, except for a mixture of experts: the count if every expert ran "
                                              "on every token (what counting all experts gives)")
    flops: int = Field(description="every arithmetic operation: 2 per MAC + bias adds + element-wise work")
    param_bytes: int = Field(description="params × dtype size")
    activation_bytes: int = Field(description="output tensor size in bytes")
    receptive_field: Optional[list[int]] = Field(
        None, description="network-input pixels one output position sees, per spatial dim (a span, first to last); "
                          "the input's size when whole_input is true; null where it is not reported (the notes say "
                          "why)")
    jump: Optional[list[int | float]] = Field(
        None, description="effective stride in input pixels, per spatial dim: an exact integer when it is whole; a "
                          "float only when it is fractional (past an up-sampling layer)")
    whole_input: bool = Field(
        False, description="true when every output position sees the whole network input (past a global pool, "
                           "attention, or a merge with such a path: a squeeze-and-excitation gate): receptive_field "
                           "is then the input's size per dim, and tables print 'whole input'")
    notes: list[str] = Field(default_factory=list)
    activation: Optional[str] = Field(None, description="a fused activation applied to the output (Keras' "
                                                        "activation argument), its FLOPs included; null: none")
    trainable: bool = Field(True, description="false for a frozen layer (Keras' trainable: false): its params are "
                                              "non-trainable in Keras' totals")
    backward_input_macs: Optional[int] = Field(
        None, description="backward pass: multiply-accumulates of the gradients with respect to activations (the "
                          "layer's inputs that require one, and the tensors inside it: attention's q, k, v), counted "
                          "like macs; 0 for the first layer's input; null: unknown (a type that does not state its "
                          "backward)")
    backward_weight_macs: Optional[int] = Field(
        None, description="backward pass: multiply-accumulates of the gradients with respect to the layer's "
                          "parameters (0 when frozen; an embedding's is a scatter-add: 0); null: unknown")
    backward_flops: Optional[int] = Field(
        None, description="backward pass: 2 per backward MAC + element FLOPs (bias-gradient sums, derivatives of "
                          "element-wise work counted at the forward's cost, scatter-adds; docs/conventions.md); "
                          "null: unknown")
    kv_cache_bytes: int = Field(0, description="keys and values kept for generation after this pass (causal "
                                               "self-attention: batch × positions × kv_heads × (d_k + d_v) × dtype "
                                               "size, positions = past + the input's; latent attention: its "
                                               "latent; cross-attention to a fixed sequence: its positions'); 0 "
                                               "for a layer that keeps none")
    saved_bytes: Optional[int] = Field(
        None, description="training: bytes of the tensors PyTorch's autograd keeps for this layer's backward pass "
                          "(its input, output, masks, indices, statistics; parameters excluded) that no earlier "
                          "layer keeps already, in the network's dtype; null: not modeled for this type")


def layer_entry(**values: Any) -> LayerReport:
    """``LayerReport.model_construct(**values)`` for values computed with their final types, EVERY field given in
    the fields' order (which dumps and reprs follow) — in a fifth of the time: the four attributes pydantic's
    model_construct sets are set directly, without its walk over each field's aliases and defaults (an analysis
    makes one entry per layer, and model_construct was a third of a ResNet-50's report). As with model_construct
    nothing is validated, and the given fields count as set. tests/test_graph.py checks that a report's entries
    have every field set, in order, and dump as model_construct's do: a field added to LayerReport and not given by
    the caller, or a pydantic that stores a model otherwise, fails it."""
    entry = _new_model(LayerReport)
    _set_attribute(entry, "__dict__", values)
    _set_attribute(entry, "__pydantic_fields_set__", set(values))
    _set_attribute(entry, "__pydantic_extra__", None)           # extra fields are forbidden, as model_construct says
    _set_attribute(entry, "__pydantic_private__", None)         # no private attributes
    return entry


#: what pydantic's model_construct calls to make an instance without __init__ and to bypass __setattr__
_new_model = object.__new__
_set_attribute = object.__setattr__


class Totals(BaseModel):
    model_config = ConfigDict(defer_build=True)   # built on first dump or validation, not at import

    params: int
    active_params: int = Field(description="the params one token's forward pass uses: every layer's params with a "
                                           "mixture of experts' router, top-k and shared experts only (its other "
                                           "experts are in params and in memory)")
    buffers: int
    macs: int
    active_macs: int = Field(description="the multiply-accumulates a forward pass computes, a mixture of experts' "
                                         "top-k experts only: equal to macs, which counts them so; named apart for "
                                         "readers comparing with all_experts_macs")
    all_experts_macs: int = Field(description="macs with every expert of every mixture of experts run on every token "
                                              "(MaxText's early Mixtral figure counted so)")
    flops: int
    param_bytes: int
    buffer_bytes: int
    input_bytes: int
    activation_bytes: int = Field(description="sum of every layer's output size")
    peak_activation_bytes: int = Field(
        description="largest total of tensors alive at once in an inference pass that frees each tensor after its "
                    "last use (network input included)")
    backward_input_macs: Optional[int] = Field(
        None, description="sum of the layers' backward_input_macs; null when a layer's backward is unknown")
    backward_weight_macs: Optional[int] = Field(
        None, description="sum of the layers' backward_weight_macs; null when a layer's backward is unknown")
    backward_flops: Optional[int] = Field(None, description="sum of the layers' backward_flops; null when unknown")
    training_flops: Optional[int] = Field(
        None, description="one training step: forward flops + backward_flops (the optimizer's update not "
                          "included); null when a layer's backward is unknown")
    backward_unknown: list[str] = Field(
        default_factory=list, description="layers whose type does not state its backward (their backward fields "
                                          "and the backward totals are null)")
    tokens: Optional[int] = Field(
        None, description="tokens of one pass (batch × positions) when the network input is token ids; with "
                          "fixed inputs (an encoder–decoder), those of the decoded input (the decoder's); null "
                          "otherwise")
    flops_per_token: Optional[float] = Field(None, description="flops / tokens (forward)")
    backward_flops_per_token: Optional[float] = Field(None, description="backward_flops / tokens")
    training_flops_per_token: Optional[float] = Field(None, description="training_flops / tokens")
    kv_cache_bytes: int = Field(0, description="every layer's KV cache (keys and values kept for generation)")
    saved_bytes: Optional[int] = Field(
        None, description="training: bytes of the distinct tensors autograd keeps for backward after a forward pass "
                          "in training mode (sum of the layers' saved_bytes); null when a layer's type is not "
                          "modeled")


class KerasParams(BaseModel):
    """The totals as Keras' ``model.summary()`` prints them."""
    model_config = ConfigDict(defer_build=True)

    total: int = Field(description="Total params: params + buffers")
    trainable: int = Field(description="Trainable params: the params of layers not frozen")
    non_trainable: int = Field(description="Non-trainable params: the buffers (BatchNorm's moving mean and variance, "
                                           "the weights of layers with trainable: false)")


class Report(BaseModel):
    model_config = ConfigDict(defer_build=True)   # built on first dump or validation, not at import

    name: Optional[str] = None
    input_shape: list[int] = Field(description="network input, batch included")
    batch: int
    layout: str
    dtype: str
    dtype_bytes: int
    outputs: list[str] = Field(description="layers whose output no other layer consumes")
    layers: list[LayerReport]
    totals: Totals
    conventions: dict[str, str]

    @computed_field(description="for a Keras-layout (NHWC) network, the totals as Keras prints them; null otherwise")
    def keras_params(self) -> Optional[KerasParams]:
        if self.layout != "NHWC":
            return None
        t = self.totals
        frozen = sum(entry.params for entry in self.layers if not entry.trainable)
        return KerasParams.model_construct(total=t.params + t.buffers, trainable=t.params - frozen,
                                           non_trainable=t.buffers + frozen)

    def layer(self, name: str) -> LayerReport:
        for entry in self.layers:
            if entry.name == name:
                return entry
        raise KeyError(name)

    # ---- the report as people read it (rendered by layercalc.formatting; imported when asked: a deferred import
    # keeps the models free of the rendering code, which imports nothing of this module)

    def table(self, columns: Optional[list[str]] = None, width: Optional[int] = None, *, expand: bool = False,
              depth: Optional[int] = None, numbers: str = "auto", notes: str = "default",
              conventions: bool = False, keras: Optional[bool] = None) -> str:
        """The summary table as ``layercalc summary`` prints it: ``columns`` (keys or aliases, e.g. ``["name",
        "params", "rf"]``; default: the summary's), fitted to ``width`` (None: the terminal's, 80 when there is
        none; ``layercalc.terminal.UNLIMITED``: no limit), repeated blocks folded unless ``expand``, one row per
        dotted-name group at ``depth``, ``numbers`` ``"exact"``/``"human"``/``"auto"`` (exact where it fits),
        ``notes`` ``"default"``/``"all"``/``"none"``, the ``conventions`` in full, ``keras``: Keras' view (None:
        for an NHWC network)."""
        from .formatting import parse_columns, render_report  # deferred: the renderers, when a report is printed
        keys = parse_columns(",".join(columns)) if columns is not None else None
        return render_report(self, "table", keys, depth, numbers, keras, width=width, expand=expand, notes=notes,
                             conventions=conventions)

    def __str__(self) -> str:
        """``print(report)``: the summary table at the terminal's width (:meth:`table`)."""
        return self.table()

    def __repr__(self) -> str:
        t = self.totals
        return (f"Report(name={self.name!r}, input_shape={self.input_shape}, layers={len(self.layers)}, "
                f"params={t.params:,}, macs={t.macs:,}, flops={t.flops:,})")

    def _repr_html_(self) -> str:
        """Jupyter's view: the table in HTML, every layer, exact numbers, and the totals."""
        from .formatting import render_html  # deferred: the renderers, when a report is printed
        return render_html(self)
