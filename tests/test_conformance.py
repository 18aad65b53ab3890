"""Every registered layer type through the one conformance check (layercalc.conformance): spec round trip, JSON
Schema, and — since every built-in type has a forward step — executed shape = predicted shape, allocated params and
buffers = counted, performed multiply-adds = counted MACs.

A new layer type needs an entry in EXAMPLES (the first test fails until it has one).
"""

import subprocess
import sys
import textwrap

import pytest

from layercalc.conformance import check_layer_type
from layercalc.errors import LayerCalcError
from layercalc.layers import LAYER_CLASSES, LAYER_TYPES

#: type name → (fields, input shapes without the batch, channels_last), several per type where variants differ
EXAMPLES: dict[str, list[tuple[dict, list[list[int]], bool]]] = {
    "conv1d": [({"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}, [[3, 11]], False)],
    "conv2d": [({"out_channels": 6, "kernel_size": 3, "padding": "same", "stride": 2}, [[4, 9, 8]], False),
               ({"out_channels": 4, "kernel_size": [3, 1], "groups": 2, "bias": False}, [[4, 6, 5]], False),
               ({"out_channels": 4, "kernel_size": 3, "groups": 4}, [[4, 7, 7]], False),            # depthwise
               ({"out_channels": 5, "kernel_size": 3, "dilation": 2, "padding_mode": "reflect", "padding": 2},
                [[2, 8, 8]], False),
               ({"out_channels": 3, "kernel_size": 2}, [[6, 6, 2]], True)],                        # NHWC
    "conv3d": [({"out_channels": 2, "kernel_size": 2, "stride": [1, 2, 2]}, [[3, 4, 5, 6]], False)],
    "conv_transpose1d": [({"out_channels": 3, "kernel_size": 4, "stride": 2, "padding": 1}, [[2, 7]], False)],
    "conv_transpose2d": [({"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
                          [[6, 5, 5]], False),
                         ({"out_channels": 4, "kernel_size": 3, "groups": 2, "padding": "same", "stride": 2},
                          [[4, 4, 4]], False)],
    "conv_transpose3d": [({"out_channels": 2, "kernel_size": 2, "stride": 2}, [[2, 3, 3, 3]], False)],
    # ---- Keras' depthwise and separable convs (layercalc/layers/conv.py)
    "depthwise_conv2d": [({"kernel_size": 3, "depth_multiplier": 2, "stride": 2, "padding": "same"}, [[3, 7, 6]],
                          False)],
    "depthwise_conv1d": [({"kernel_size": 3}, [[9, 4]], True)],
    "separable_conv2d": [({"filters": 5, "kernel_size": 3, "depth_multiplier": 2, "padding": "same", "strides": 2},
                          [[3, 7, 6]], False)],
    "separable_conv1d": [({"out_channels": 4, "kernel_size": 2, "use_bias": False}, [[9, 3]], True)],
    "maxpool1d": [({"kernel_size": 3, "stride": 2, "ceil_mode": True}, [[3, 10]], False)],
    "maxpool2d": [({"kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2}, [[2, 9, 9]], False)],
    "maxpool3d": [({"kernel_size": 2}, [[2, 4, 4, 5]], False)],
    "avgpool1d": [({"kernel_size": 3, "padding": 1, "count_include_pad": False}, [[3, 10]], False)],
    "avgpool2d": [({"kernel_size": 3, "stride": 2, "padding": "same"}, [[2, 7, 7]], False),
                  ({"kernel_size": 2, "divisor_override": 3}, [[5, 5, 2]], True)],
    "avgpool3d": [({"kernel_size": 2, "stride": 1}, [[2, 3, 3, 3]], False)],
    "adaptive_avgpool1d": [({"output_size": 3}, [[2, 10]], False)],
    "adaptive_avgpool2d": [({"output_size": [3, None]}, [[2, 7, 5]], False)],
    "adaptive_avgpool3d": [({"output_size": 2}, [[2, 5, 4, 3]], False)],
    "adaptive_maxpool1d": [({"output_size": 4}, [[2, 9]], False)],
    "adaptive_maxpool2d": [({"output_size": 6}, [[2, 4, 4]], False)],                               # up-sampling
    "adaptive_maxpool3d": [({"output_size": 2}, [[1, 3, 3, 3]], False)],
    "global_avgpool": [({}, [[4, 5, 5]], False), ({"keepdims": True}, [[5, 5, 4]], True)],
    "global_maxpool": [({}, [[4, 3, 3]], False)],
    "linear": [({"out_features": 7}, [[12]], False), ({"out_features": 3, "bias": False}, [[4, 5]], False)],
    "flatten": [({}, [[2, 3, 4]], False), ({"start_dim": 2}, [[2, 3, 4]], True)],
    "reshape": [({"shape": [4, -1]}, [[2, 3, 4]], False)],
    "zero_pad": [({"padding": [[1, 2], [0, 1]]}, [[2, 3, 3]], False)],
    "center_crop": [({"size": [3, 2]}, [[6, 5, 2]], True), ({"size": [2, 4]}, [[2, 5, 4]], False)],
    "pad": [({"padding": [[1, 2], [0, 1]], "mode": "reflect"}, [[3, 4, 5]], False),
            ({"padding": 2, "mode": "constant", "value": 1.5}, [[2, 3, 3]], True),
            ({"padding": [[3, 0]], "mode": "replicate"}, [[2, 4]], False), ({"padding": 2, "mode": "circular"},
                                                                            [[2, 3, 3, 2]], False)],
    "batchnorm1d": [({}, [[6]], False), ({"affine": False}, [[4, 5]], False)],
    "batchnorm2d": [({}, [[3, 4, 4]], False), ({"track_running_stats": False}, [[3, 3, 2]], True)],
    "batchnorm3d": [({}, [[2, 2, 2, 2]], False)],
    "batchnorm": [({"axis": -1, "center": False}, [[4, 5, 3]], True), ({}, [[4, 5]], False)],
    "layernorm": [({}, [[5, 8]], False), ({"normalized_shape": [5, 8], "bias": False}, [[5, 8]], False)],
    "groupnorm": [({"num_groups": 2}, [[4, 3, 3]], False), ({"num_groups": 3, "affine": False}, [[3, 3, 6]], True)],
    "dropout": [({"p": 0.3}, [[10]], False)],
    "augmentation": [({"kind": "RandomFlip"}, [[5, 6, 3]], True)],
    "normalization": [({}, [[5, 6, 3]], True), ({"axis": [1, 2], "invert": True}, [[3, 4, 5]], False),
                      ({"axis": [], "mean": 0.5, "variance": 2.0}, [[3, 4]], False)],
    "relu": [({}, [[3, 4]], False)],
    "relu6": [({}, [[3, 4]], False)],
    "leaky_relu": [({"negative_slope": 0.2}, [[3, 4]], False)],
    "prelu": [({}, [[3, 4]], False), ({"num_parameters": 3}, [[3, 4, 5]], False),
              ({"num_parameters": 5}, [[3, 4, 5]], True), ({"shared_axes": [1, 2]}, [[3, 4, 5]], True)],
    "sigmoid": [({}, [[3, 4]], False)],
    "tanh": [({}, [[3, 4]], False)],
    "gelu": [({}, [[3, 4]], False), ({"approximate": "tanh"}, [[3, 4]], False)],
    "silu": [({}, [[3, 4]], False)],
    "hardswish": [({}, [[3, 4]], False)],
    "hardsigmoid": [({}, [[3, 4]], False)],
    "softmax": [({"dim": 1}, [[3, 4]], False)],
    "identity": [({}, [[3, 4]], False)],
    "rescaling": [({"scale": 0.5, "offset": -1.0}, [[3, 4]], False)],
    "activation": [({"activation": "softmax"}, [[4, 5]], False)],
    "attention_mask": [({}, [[2, 4, 5]], False), ({"mode": "fill", "fill": -1e9}, [[5, 3]], False),
                       ({"causal": False}, [[2, 3, 3]], False)],
    "pow": [({"exponent": 2}, [[3, 4]], False), ({"exponent": -1.5}, [[3, 4]], False)],
    "clamp": [({"min": -0.5, "max": 0.5}, [[3, 4]], False), ({"max": 0.0}, [[2, 3]], True)],
    "softcap": [({"cap": 2.0}, [[3, 4]], False)],
    "add": [({}, [[3, 4, 4], [3, 4, 4], [3, 1, 4]], False)],
    "mul": [({}, [[3, 4, 4], [3, 1, 1]], False)],
    "sub": [({}, [[3, 4, 4], [3, 1, 4]], False)],
    "div": [({}, [[3, 4, 4], [1, 4, 1]], False)],
    "concat": [({}, [[3, 4, 4], [5, 4, 4]], False), ({"dim": -1}, [[2, 3], [2, 5]], False)],
    "rmsnorm": [({}, [[5, 8]], False), ({"normalized_shape": [5, 8], "elementwise_affine": False}, [[5, 8]], False),
                ({"eps": 1e-6, "offset": 1.0}, [[5, 8]], False)],
    "embedding": [({"num_embeddings": 11, "embedding_dim": 4}, [[6]], False)],
    "parameter": [({"shape": [3, 4]}, [], False)],
    "extra_input": [({"shape": [3, 4]}, [], False)],
    "position_embedding": [({"num_embeddings": 9, "embedding_dim": 4}, [[6]], False),
                           ({"num_embeddings": 6, "embedding_dim": 2}, [[6, 3]], False),
                           ({"num_embeddings": 9, "embedding_dim": 2, "offset": 2}, [[6]], False)],
    "rotary_embedding": [({}, [[3, 5, 8]], False), ({"rotary_dim": 4, "base": 100.0}, [[6, 10]], False)],
    # ---- attention (layercalc/layers/attention.py)
    "multi_head_attention": [({"num_heads": 2}, [[5, 8]], False),
                             ({"num_heads": 4, "num_kv_heads": 2, "head_dim": 3, "value_dim": 2, "output_dim": 5,
                               "causal": True}, [[6, 7], [4, 3], [4, 5]], False),
                             ({"num_heads": 2, "kdim": 3, "vdim": 3, "add_bias_kv": True, "add_zero_attn": True,
                               "batch_first": False, "bias": False}, [[2, 8], [2, 3]], False),
                             ({"num_heads": 4, "num_kv_heads": 2, "head_dim": 4, "rope": True, "rotary_dim": 2,
                               "qkv_bias": True, "out_bias": False, "causal": True}, [[5, 8]], False),
                             ({"num_heads": 4, "num_kv_heads": 2, "head_dim": 4, "rope": True, "causal": True,
                               "sliding_window": 2, "scale": 0.3, "logit_softcap": 5.0, "qk_norm": True,
                               "qk_norm_offset": 1.0}, [[5, 8]], False),
                             ({"num_heads": 2, "head_dim": 3, "bias": False, "scale": 1.0, "score_bias": True},
                              [[5, 8], [4, 6], [2, 5, 4]], False),
                             ({"num_heads": 4, "num_kv_heads": 2, "score_bias": True, "causal": True},
                              [[5, 8], [4, 5, 5]], False)],
    "relative_position_bias": [({"num_heads": 3, "num_buckets": 8, "max_distance": 5}, [[7, 2]], False),
                               ({"num_heads": 2, "bidirectional": False}, [[4, 2], [6, 1]], False)],
    "scaled_dot_product_attention": [({"is_causal": True}, [[2, 5, 4], [2, 6, 4], [2, 6, 3]], False),
                                     ({"enable_gqa": True, "scale": 0.5}, [[4, 3, 2], [2, 5, 2], [2, 5, 6]],
                                      False)],
    "matmul": [({}, [[3, 4, 5], [1, 5, 2]], False)],
    "shifted_window_attention": [({"num_heads": 2, "window_size": 3, "shift_size": 1}, [[7, 5, 4]], True),
                                 ({"num_heads": 1, "window_size": [2, 4], "qkv_bias": False}, [[4, 4, 3]], True)],
    # ---- recurrent (layercalc/layers/recurrent.py)
    "lstm": [({"hidden_size": 5}, [[6, 3]], False),
             ({"hidden_size": 6, "proj_size": 2, "num_layers": 2, "bidirectional": True, "return_sequences": False},
              [[4, 3]], False),
             ({"units": 4, "convention": "keras", "batch_first": False}, [[3, 5]], False)],
    "gru": [({"hidden_size": 5, "num_layers": 2, "bidirectional": True}, [[6, 3]], False),
            ({"units": 4, "convention": "keras", "reset_after": False, "return_sequences": False}, [[5, 3]], False)],
    "rnn": [({"hidden_size": 5, "nonlinearity": "relu", "num_layers": 2}, [[6, 3]], False),
            ({"units": 4, "convention": "keras", "bidirectional": True, "bias": False}, [[5, 3]], False)],
    # ---- mixture of experts (layercalc/layers/moe.py)
    "moe": [({"num_experts": 4, "top_k": 2, "intermediate_size": 6, "norm_topk_prob": True}, [[5, 8]], False),
            ({"num_experts": 8, "top_k": 3, "intermediate_size": 4, "scoring": "sigmoid", "n_group": 4,
              "topk_group": 2, "score_correction_bias": True, "routed_scaling_factor": 2.5,
              "shared_intermediate_size": 6}, [[3, 8]], False),
            ({"num_experts": 3, "top_k": 1, "intermediate_size": 5, "experts": "mlp", "activation": "gelu",
              "router_bias": True, "shared_intermediate_size": 4, "shared_expert_gate": True}, [[2, 3, 6]], True)],
    "latent_attention": [({"num_heads": 2, "q_lora_rank": 6, "kv_lora_rank": 5, "qk_nope_head_dim": 3,
                           "qk_rope_head_dim": 2, "v_head_dim": 4, "causal": True}, [[4, 8]], False),
                          ({"num_heads": 3, "kv_lora_rank": 4, "qk_nope_head_dim": 2, "qk_rope_head_dim": 4,
                            "v_head_dim": 3, "bias": True, "rope_interleave": False}, [[5, 6]], False)],
    # ---- tensor operations (layercalc/layers/tensor_ops.py)
    "split": [({"sizes": 2, "dim": 1}, [[5, 3]], False), ({"sizes": [1, 3], "dim": -1}, [[2, 4]], False)],
    "chunk": [({"chunks": 4, "dim": 1}, [[6, 2, 2]], False), ({"chunks": 2, "dim": 2}, [[3, 5]], False)],
    "permute": [({"dims": [0, 2, 3, 1]}, [[3, 4, 5]], False), ({"dims": [0, -1, 1]}, [[3, 4]], False)],
    "transpose": [({"dim0": 1, "dim1": -1}, [[3, 4, 5]], False)],
    "slice": [({"dim": 2, "start": 1, "stop": -1, "step": 2}, [[3, 9, 4]], False),
              ({"dim": [1, 2], "start": [None, -3], "end": [2, None]}, [[5, 4, 3]], True)],
    "select": [({"dim": 1, "index": 0}, [[5, 8]], False), ({"axis": -2, "index": -1}, [[3, 4, 2]], True)],
    "roll": [({"shifts": [1, -2], "dims": [2, 3]}, [[2, 4, 5]], False)],
    "pixel_shuffle": [({"upscale_factor": 2}, [[8, 3, 2]], False)],
    "pixel_unshuffle": [({"downscale_factor": 2}, [[2, 4, 6]], False)],
    "channel_shuffle": [({"groups": 3}, [[6, 2, 2]], False), ({"groups": 2}, [[3, 3, 4]], True)],
    "mean": [({"dim": [2, 3]}, [[4, 3, 5]], False), ({"axis": 1, "keepdims": True}, [[4, 3]], False)],
    "sum": [({"dim": -1}, [[4, 3, 5]], False)],
    "opaque": [({"shape": [2, 5], "op": "torch.det"}, [[4, 3], [4]], False), ({"shape": [7]}, [], False)],
    "resizing": [({"size": [5, 3], "mode": "bilinear"}, [[7, 6, 2]], True),
                 ({"size": [9, 8], "mode": "nearest-exact"}, [[2, 4, 5]], False)],
    "upsample": [({"scale_factor": 2}, [[3, 4, 5]], False),
                 ({"size": [7, 3], "mode": "bilinear", "align_corners": True}, [[2, 4, 5]], False),
                 ({"scale_factor": 1.5, "mode": "trilinear"}, [[2, 3, 2, 4]], False),
                 ({"size": 9, "mode": "nearest-exact"}, [[5, 2]], True)],
    "upsampling1d": [({"size": 3}, [[4, 2]], True)],
    "upsampling2d": [({"size": [2, 3], "interpolation": "bilinear"}, [[2, 3, 4]], False)],
    "upsampling3d": [({}, [[2, 2, 3, 2]], False)],
}


#: built-in types without a forward step
ANALYSIS_ONLY = {"opaque"}


def _primary_names() -> list[str]:
    return [cls.model_fields["type"].default for cls in LAYER_CLASSES]


def test_every_registered_type_has_an_example():
    missing = [name for name in _primary_names() if name not in EXAMPLES]
    assert not missing, f"layer types without a conformance example: {missing}"


@pytest.mark.parametrize("type_name, fields, shapes, channels_last",
                         [(name, fields, shapes, last) for name, cases in EXAMPLES.items()
                          for fields, shapes, last in cases])
def test_layer_type_conforms(type_name, fields, shapes, channels_last):
    result = check_layer_type(LAYER_TYPES[type_name], fields, shapes, channels_last=channels_last)
    # every built-in type has a forward step, but opaque (an operation layercalc does not model cannot be run)
    assert result.ran != (type_name in ANALYSIS_ONLY)


def test_the_check_catches_a_rule_that_miscounts(monkeypatch):
    # a linear rule that forgets the bias in its params, and one that halves its MACs: both are caught
    from layercalc.layers import Linear

    original = Linear.infer

    def no_bias_params(self, inputs, ctx):
        facts = original(self, inputs, ctx)
        facts.params -= self.out_features
        return facts

    monkeypatch.setattr(Linear, "infer", no_bias_params)
    with pytest.raises(LayerCalcError, match="check 'parameters counted' failed: linear: allocates 91 parameters, "
                                             "the rule counts 84"):
        check_layer_type(Linear, {"out_features": 7}, [[12]])      # 12·7 + 7 = 91 allocated

    def half_macs(self, inputs, ctx):
        facts = original(self, inputs, ctx)
        facts.macs //= 2
        return facts

    monkeypatch.setattr(Linear, "infer", half_macs)
    with pytest.raises(LayerCalcError, match="check 'MACs counted' failed: .*performed 168 multiply-adds, the rule "
                                             "counts 84"):
        check_layer_type(Linear, {"out_features": 7}, [[12]])      # batch 2 · 12 · 7 = 168


def test_the_check_holds_under_python_O(tmp_path):
    """Under ``python -O`` every ``assert`` is gone: the checks must be real exceptions (before: bare asserts,
    so a miscounting rule passed)."""
    script = tmp_path / "check.py"
    script.write_text(textwrap.dedent('''
        from layercalc.conformance import check_layer_type
        from layercalc.errors import LayerCalcError
        from layercalc.layers import Linear

        original = Linear.infer

        def no_bias_params(self, inputs, ctx):
            facts = original(self, inputs, ctx)
            facts.params -= self.out_features
            return facts

        Linear.infer = no_bias_params
        try:
            check_layer_type(Linear, {"out_features": 7}, [[12]])
        except LayerCalcError as exc:
            print(exc)
        else:
            print("passed")
    '''))
    result = subprocess.run([sys.executable, "-O", str(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("conformance check 'parameters counted' failed: linear: allocates 91 "
                                     "parameters, the rule counts 84")
