"""Weights as LLM checkpoints are stored: bfloat16 tensors (NumPy has no bfloat16) read exactly — every bf16 value
is a float32 value — by Hugging Face's state_dict reader and by the executor (issue 19).

Oracle: the transformers model itself, its weights rounded to bf16 and run in float32.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import layercalc  # noqa: E402
from layercalc.importers.huggingface import spec_from_config, weights_from_state_dict  # noqa: E402

CONFIG = dict(model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=32, num_attention_heads=4,
              num_key_value_heads=2, num_hidden_layers=2, intermediate_size=48, max_position_embeddings=32,
              vocab_size=64)


def model_of(config: dict):
    arguments = {k: v for k, v in config.items() if k not in ("model_type", "architectures")}
    hf_config = transformers.AutoConfig.for_model(config["model_type"], attn_implementation="eager", **arguments)
    return transformers.LlamaForCausalLM(hf_config).eval()


def test_a_bfloat16_llama_state_dict_reads_exactly_and_runs():
    torch.manual_seed(0)
    model = model_of(CONFIG).to(torch.bfloat16)
    state = model.state_dict()
    assert state["model.embed_tokens.weight"].dtype == torch.bfloat16
    weights = weights_from_state_dict(CONFIG, state)
    widened = weights_from_state_dict(CONFIG, {k: v.float() for k, v in state.items()})
    assert weights.keys() == widened.keys()
    for layer, arrays in weights.items():
        for param, array in arrays.items():
            assert array.dtype == np.float32
            np.testing.assert_array_equal(array, widened[layer][param])       # exact: bf16 ⊂ float32
    model = model.float()                                                   # the bf16 values, in float32
    x = torch.randint(0, 64, (1, 8))
    with torch.no_grad():
        expected = model(x).logits.numpy()
    net = layercalc.load(spec_from_config(CONFIG, "config.json")).replace(input=[8])
    got = net.run(x=x.numpy().astype(np.float32), weights=weights)
    assert np.max(np.abs(got - expected)) <= 1e-4 * np.max(np.abs(expected))
