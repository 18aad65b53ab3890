"""ViT: ViTModel (pooler included), ViTForImageClassification.
"""

from __future__ import annotations

from typing import Any

from .config import FLOAT32_SOFTMAX, LAST_HIDDEN_STATE, Config, Family, linear, norm, prefixed, repeat

_VIT_HEADS = {"ViTModel": ("", True, False), "ViTForImageClassification": ("vit", False, True)}


def _pair(c: Config, key: str, default: int) -> tuple[int, int]:
    value = c.raw(key, default)
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise c.fail(key, value, "expected one size or [height, width]")
        height, width = (Config({key: size}, c.origin).integer(key) for size in value)   # (messages: the key)
        return height, width
    return (c.integer(key, default),) * 2


def _vit(c: Config, architecture: str) -> dict[str, Any]:
    d, heads = c.integer("hidden_size", 768), c.integer("num_attention_heads", 12)
    layers = c.integer("num_hidden_layers", 12)
    c.divisible("hidden_size", d, "num_attention_heads", heads)
    inner, eps = c.integer("intermediate_size", 3072), c.number("layer_norm_eps", 1e-12)
    (h, w), (ph, pw) = _pair(c, "image_size", 224), _pair(c, "patch_size", 16)
    channels = c.integer("num_channels", 3)
    if h < ph or w < pw:
        raise c.fail("image_size", c.raw("image_size"), f"smaller than the patch {ph}×{pw}")
    tokens = (h // ph) * (w // pw) + 1                 # the patches and the class token
    qkv_bias = c.flag("qkv_bias", True)
    # modeling_vit.py: q_proj, k_proj, v_proj with bias=qkv_bias, o_proj always with a bias
    attention: dict[str, Any] = {"name": "attention", "type": "multi_head_attention", "num_heads": heads,
                                 **FLOAT32_SOFTMAX}
    if not qkv_bias:
        attention.update({"qkv_bias": False, "out_bias": True})
    block = [norm("layernorm", "layernorm_before", eps),
             attention,
             {"name": "attention_residual", "type": "add", "inputs": ["attention", "in"]},
             norm("layernorm", "layernorm_after", eps),
             linear("mlp.fc1", inner),
             c.activation("hidden_act", "gelu", "mlp.activation_fn"),
             linear("mlp.fc2", d),
             {"name": "mlp_residual", "type": "add", "inputs": ["mlp.fc2", "attention_residual"]}]
    p, pooler, classifier = _VIT_HEADS[architecture]
    e = prefixed(p, "embeddings")
    kernel = ph if ph == pw else [ph, pw]
    layers_: list[dict[str, Any]] = [
        {"name": f"{e}.patch_embeddings.projection", "type": "conv2d", "in_channels": channels, "out_channels": d,
         "kernel_size": kernel, "stride": kernel},
        {"name": f"{e}.patch_embeddings.flatten", "type": "flatten", "start_dim": 2},           # [N, d, patches]
        {"name": f"{e}.patch_embeddings.transpose", "type": "transpose", "dim0": 1, "dim1": 2},  # [N, patches, d]
        {"name": f"{e}.cls_token", "type": "parameter", "shape": [1, d]},                       # HF: [1, 1, d]
        {"name": f"{e}.concat", "type": "concat", "dim": 1,
         "inputs": [f"{e}.cls_token", f"{e}.patch_embeddings.transpose"]},
        {"name": f"{e}.position_embeddings", "type": "parameter", "shape": [tokens, d]},        # HF: [1, L, d]
        {"name": f"{e}.add_position", "type": "add", "inputs": [f"{e}.concat", f"{e}.position_embeddings"]},
        repeat(c, "num_hidden_layers", layers, prefixed(p, "layers"), "layer", block),
        norm("layernorm", prefixed(p, "layernorm"), eps)]
    if pooler:                                          # ViTModel returns the final norm's states, then the pooler's
        layers_ += [LAST_HIDDEN_STATE,
                    {"name": "pooler.first_token", "type": "select", "dim": 1, "index": 0, "inputs": "layernorm"},
                    linear("pooler.dense", c.integer("pooler_output_size", d)),
                    c.activation("pooler_act", "tanh", "pooler.activation")]
    if classifier:
        layers_.append({"name": "first_token", "type": "select", "dim": 1, "index": 0})
        labels = c.num_labels(none_is_identity=True)
        if labels:                                     # 0 labels (num_labels 0, id2label {}): nn.Identity
            layers_.append(linear("classifier", labels))
    return {"input": [channels, h, w], "blocks": {"layer": {"params": {}, "layers": block}}, "layers": layers_}


FAMILIES = {"vit": Family({a: _vit for a in _VIT_HEADS}, "ViTModel", positions_key=None)}
