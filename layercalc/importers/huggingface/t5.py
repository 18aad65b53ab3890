"""T5: T5Model, T5ForConditionalGeneration, T5EncoderModel — an encoder–decoder with two inputs.

The network's ``input`` is the encoder's token ids (``input_ids``); an ``extra_input`` layer
``decoder_input_ids`` is the decoder's, each with its own length (``--input 16 --input 8``; ``net.run(x=[ids,
decoder_ids])``). T5EncoderModel has the first only.

Each stack (``encoder``, ``decoder``): the token embedding (the one ``shared`` table: the encoder's lookup is
named ``shared``, the decoder's ``decoder.embed_tokens`` is tied to it), then ``num_layers`` (decoder:
``num_decoder_layers``) blocks of pre-norm sub-layers — T5LayerNorm (``rmsnorm``: no mean, no bias), bias-free
projections — and ``final_layer_norm``:

- ``layer.0``: self-attention (``SelfAttention``: q, k, v, o of ``num_heads·d_kv``; scores not scaled, ``scale``
  1, as T5's initialization holds the scaling; the decoder's causal) with the relative position bias added to its
  scores. The bias table (``relative_attention_bias``, ``relative_attention_num_buckets × num_heads``) belongs to
  the first block of each stack, which computes the bias once and passes it to the others: one
  ``relative_position_bias`` layer per stack, named after that module and read by every self-attention of the
  stack, counts it once (the encoder's buckets are bidirectional, the decoder's not).
- decoder ``layer.1``: cross-attention (``EncDecAttention``) over the encoder's output, keys and values of the
  encoder's length; transformers adds a zero position bias to its scores, not counted.
- the last: the feed-forward (``DenseReluDense``): ``wi`` → activation → ``wo``, or gated (``feed_forward_proj``
  ``gated-gelu``, T5 v1.1 and Flan-T5: ``wi_0`` → activation, times ``wi_1``, → ``wo``).

T5ForConditionalGeneration: ``lm_head`` (no bias) on the decoder's output. transformers 5 ties it to ``shared``
whatever ``tie_word_embeddings`` says (T5Config forces the flag to true; false now only drops the rescale): the
decoder's output is multiplied by ``d_model^-0.5`` first unless ``tie_word_embeddings`` is false. The network's
outputs are the model's: the decoder's (logits or last_hidden_state), then ``encoder_last_hidden_state``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from ...blocks import MAX_LAYERS
from .config import ACTIVATIONS, DEFAULT_MAX_TOKENS, Config, Family, linear, norm

_HEADS = {"T5Model": "model", "T5ForConditionalGeneration": "lm", "T5EncoderModel": "encoder"}

_ALIASES = {"hidden_size": "d_model", "num_attention_heads": "num_heads", "num_hidden_layers": "num_layers",
            "head_dim": "d_kv"}

#: T5 has no position table: relative positions work at any length. The default length of each input is the one
#: T5 was trained at (512; its configs' ``n_positions``)
DEFAULT_T5_TOKENS = 512


def _feed_forward(c: Config) -> tuple[bool, dict[str, Any]]:
    """(gated?, the activation layer) by T5Config's rule: ``feed_forward_proj`` is ``ACT`` or ``gated-ACT``;
    ``gated-gelu`` means gelu_new (the tanh approximation)."""
    value = c.text("feed_forward_proj", "relu")
    parts = value.split("-")
    if len(parts) > 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise c.fail("feed_forward_proj", value, "expected ACT or gated-ACT (T5Config refuses any other form), e.g. "
                                                 "relu or gated-gelu")
    act = "gelu_new" if value == "gated-gelu" else parts[-1]
    if act not in ACTIVATIONS:
        raise c.fail("feed_forward_proj", value, f"the activation {act!r} is not one layercalc models; supported: "
                                                 f"{', '.join(sorted(ACTIVATIONS))}")
    return len(parts) == 2, ACTIVATIONS[act]


def _stack(c: Config, side: str, count: int, key: str, embedded: str, encoder_output: Optional[str],
           dims: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One T5Stack's layers after its embedding (``embedded``), named as its modules, flat (each self-attention
    reads the stack's one bias layer, each decoder cross-attention the encoder's output: layers a repeated block
    could not name)."""
    d, heads, d_kv, d_ff, eps = dims["d"], dims["heads"], dims["d_kv"], dims["d_ff"], dims["eps"]
    gated, act = dims["gated"], dims["act"]
    decoder = encoder_output is not None
    per_block = 10 + (3 if decoder else 0) + (2 if gated else 0)
    if count * per_block > MAX_LAYERS:
        raise c.fail(key, count, f"{count:,} blocks of {per_block} layers are more than the {MAX_LAYERS:,} layers a "
                                 f"network may have")
    bias = f"{side}.block.0.layer.0.SelfAttention.relative_attention_bias"
    layers: list[dict[str, Any]] = [
        {"name": bias, "type": "relative_position_bias", "num_heads": heads, "inputs": embedded,
         "num_buckets": dims["buckets"], "max_distance": dims["max_distance"], "bidirectional": not decoder}]
    attention = {"type": "multi_head_attention", "num_heads": heads, "head_dim": d_kv, "bias": False, "scale": 1.0,
                 "qkv_layout": "separate"}                                 # q, k, v: one nn.Linear each
    hidden = embedded
    for i in range(count):
        b = f"{side}.block.{i}.layer"
        layers += [norm("rmsnorm", f"{b}.0.layer_norm", eps, inputs=hidden),
                   {"name": f"{b}.0.SelfAttention", **attention, "score_bias": True, **({"causal": True} if decoder
                                                                                        else {}),
                    "inputs": [f"{b}.0.layer_norm", bias]},
                   {"name": f"{b}.0.add", "type": "add", "inputs": [f"{b}.0.SelfAttention", hidden]}]
        hidden, ff = f"{b}.0.add", 1
        if decoder:
            layers += [norm("rmsnorm", f"{b}.1.layer_norm", eps),
                       {"name": f"{b}.1.EncDecAttention", **attention, "inputs": [f"{b}.1.layer_norm", encoder_output]},
                       {"name": f"{b}.1.add", "type": "add", "inputs": [f"{b}.1.EncDecAttention", hidden]}]
            hidden, ff = f"{b}.1.add", 2
        f = f"{b}.{ff}.DenseReluDense"
        layers.append(norm("rmsnorm", f"{b}.{ff}.layer_norm", eps))
        if gated:
            layers += [linear(f"{f}.wi_0", d_ff, bias=False), {"name": f"{f}.act", **act},
                       linear(f"{f}.wi_1", d_ff, bias=False, inputs=f"{b}.{ff}.layer_norm"),
                       {"name": f"{f}.gated", "type": "mul", "inputs": [f"{f}.act", f"{f}.wi_1"]}]
        else:
            layers += [linear(f"{f}.wi", d_ff, bias=False), {"name": f"{f}.act", **act}]
        layers += [linear(f"{f}.wo", d, bias=False),
                   {"name": f"{b}.{ff}.add", "type": "add", "inputs": [f"{f}.wo", hidden]}]
        hidden = f"{b}.{ff}.add"
    layers.append(norm("rmsnorm", f"{side}.final_layer_norm", eps, inputs=hidden))
    return layers


def _lengths(c: Config) -> int:
    return min(c.integer("n_positions", DEFAULT_T5_TOKENS), DEFAULT_MAX_TOKENS)


def _t5(c: Config, architecture: str) -> dict[str, Any]:
    # T5Model and T5ForConditionalGeneration set each stack's is_decoder themselves; T5EncoderModel builds its stack
    # from the config as it is: true makes it a decoder stack (causal, with cross-attention layers it never calls)
    if c.flag("is_decoder", False) and architecture == "T5EncoderModel":
        raise c.fail("is_decoder", True, "T5EncoderModel's stack would be a decoder's (causal, unidirectional "
                                         "buckets, cross-attention layers it never calls): not modeled; supported: "
                                         "false")
    d, heads, d_kv = c.integer("d_model", 512), c.integer("num_heads", 8), c.integer("d_kv", 64)
    d_ff, vocab = c.integer("d_ff", 2048), c.integer("vocab_size", 32128)
    encoder_layers = c.integer("num_layers", 6)
    decoder_layers = c.integer("num_decoder_layers", encoder_layers)
    gated, act = _feed_forward(c)
    buckets = c.integer("relative_attention_num_buckets", 32)
    max_distance = c.integer("relative_attention_max_distance", 128)
    if buckets < 4:
        raise c.fail("relative_attention_num_buckets", buckets, "at least 4: the encoder's bidirectional buckets "
                                                                "need one exact distance each way")
    exact = buckets // 2                                  # the decoder's exact distances (the encoder has half)
    if max_distance <= exact:
        raise c.fail("relative_attention_max_distance", max_distance,
                     f"must exceed the decoder's {exact} exact distances (relative_attention_num_buckets {buckets} "
                     f"/ 2): its buckets divide by log(max_distance/{exact}), which is not positive")
    dims = {"d": d, "heads": heads, "d_kv": d_kv, "d_ff": d_ff, "eps": c.number("layer_norm_epsilon", 1e-6),
            "gated": gated, "act": act, "buckets": buckets, "max_distance": max_distance}
    length = _lengths(c)
    head = _HEADS[architecture]
    layers: list[dict[str, Any]] = [
        {"name": "shared", "type": "embedding", "num_embeddings": vocab, "embedding_dim": d, "inputs": "input"},
        *_stack(c, "encoder", encoder_layers, "num_layers", "shared", None, dims)]
    if head == "encoder":
        return {"input": [length], "layers": layers}
    layers += [{"name": "decoder_input_ids", "type": "extra_input", "shape": [length]},
               {"name": "decoder.embed_tokens", "type": "embedding", "num_embeddings": vocab, "embedding_dim": d,
                "tied_to": "shared"},
               *_stack(c, "decoder", decoder_layers, "num_decoder_layers", "decoder.embed_tokens",
                       "encoder.final_layer_norm", dims)]
    if head == "lm":
        if c.flag("tie_word_embeddings", True):          # T5Config.scale_decoder_outputs
            layers.append({"name": "decoder_output_scale", "type": "rescaling", "scale": d ** -0.5})
        layers.append(linear("lm_head", vocab, bias=False, tied_to="shared"))
    layers.append({"name": "encoder_last_hidden_state", "type": "identity", "inputs": "encoder.final_layer_norm"})
    return {"input": [length], "layers": layers}


def _input_note(c: Config, spec: Mapping) -> Optional[str]:
    length = spec["input"][0]
    source = (f"n_positions {c.integer('n_positions')}" if c.raw("n_positions", None) is not None
              else "no position table: the length T5 was trained at")
    if any(layer.get("type") == "extra_input" for layer in spec["layers"]):
        return (f"input: {length} encoder tokens and {length} decoder tokens ({source}); --input N --input M for "
                f"N encoder and M decoder tokens")
    return f"input: {length} tokens ({source}); --input N for N tokens"


def _notes(c: Config) -> list[str]:
    notes = ["relative position bias: one table per stack, held by its first block and read by every "
             "self-attention (params counted once); the bias lookup counts no FLOPs, its add 1 per score"]
    if c.raw("tie_word_embeddings", True) is False:
        notes.append("tie_word_embeddings false: no d_model^-0.5 rescale; lm_head is still tied to shared (as "
                     "transformers 5 builds T5: T5Config forces the tie); a checkpoint with its own lm_head.weight "
                     "(T5 v1.1, Flan-T5) has vocab_size·d_model more parameters")
    return notes


#: the attention's projections under the names the importer's attention loader reads (q_proj, …, o_proj)
_PROJECTIONS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj"}


def _entries(c: Config, key: str, value: Any) -> list[tuple[str, Any]]:
    """T5's state_dict entries as the network's layers take them: the attention's q, k, v, o renamed; the copies of
    ``shared.weight`` under the stacks' ``embed_tokens`` and ``lm_head`` (tied), and a decoder cross-attention
    bias table old checkpoints hold (transformers ignores it), dropped."""
    if key == "encoder.embed_tokens.weight" or key.endswith("EncDecAttention.relative_attention_bias.weight"):
        return []
    for attention in (".SelfAttention.", ".EncDecAttention."):
        head, found, rest = key.partition(attention)
        module, _, param = rest.partition(".")
        if found and module in _PROJECTIONS:
            return [(f"{head}{attention}{_PROJECTIONS[module]}.{param}", value)]
    return [(key, value)]


FAMILIES = {"t5": Family({a: _t5 for a in _HEADS}, "T5Model", _ALIASES, positions_key="n_positions",
                         notes=_notes, input_note=_input_note, state_dict_entries=_entries)}
