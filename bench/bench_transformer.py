"""GPT-2's forward pass in the NumPy executor, next to Hugging Face's GPT2LMHeadModel on PyTorch's CPU with the same
threads (target: layercalc ≤ 1.5 × torch at 1,024 tokens).

Run: python bench/bench_transformer.py [--tokens 1024] [--repeat 3]   (needs torch and transformers: the test extras)

Both sides run the same weights (Hugging Face's random initialization, copied into the executor through its
state_dict), the same token ids, float32, 2 threads; runs alternate (a, b, a, b, …) so a slow spell of the machine
hits both. Prints the median times, their ratio and the largest relative difference of the logits. This is a
benchmark, not a test: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "2"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from layercalc import zoo  # noqa: E402

torch.set_num_threads(2)


def layercalc_weights(model) -> dict[str, dict[str, np.ndarray]]:
    """GPT2LMHeadModel's state_dict as the executor's weights: names mapped onto the zoo's layers (c_attn and
    c_proj of each block are its multi_head_attention's qkv_proj (qkv_layout fused) and out_proj; Conv1D stores
    [in, out], so transposed)."""
    sd = {key: value.detach().numpy() for key, value in model.state_dict().items()}
    weights: dict[str, dict[str, np.ndarray]] = {
        "transformer.wte": {"weight": sd["transformer.wte.weight"]},
        "transformer.wpe": {"weight": sd["transformer.wpe.weight"]},
        "transformer.ln_f": {"weight": sd["transformer.ln_f.weight"], "bias": sd["transformer.ln_f.bias"]}}
    for i in range(model.config.n_layer):
        block = f"transformer.h.{i}"
        for norm in ("ln_1", "ln_2"):
            weights[f"{block}.{norm}"] = {"weight": sd[f"{block}.{norm}.weight"], "bias": sd[f"{block}.{norm}.bias"]}
        weights[f"{block}.attn"] = {
            "qkv_proj_weight": np.ascontiguousarray(sd[f"{block}.attn.c_attn.weight"].T),
            "qkv_proj_bias": sd[f"{block}.attn.c_attn.bias"],
            "out_proj_weight": np.ascontiguousarray(sd[f"{block}.attn.c_proj.weight"].T),
            "out_proj_bias": sd[f"{block}.attn.c_proj.bias"]}
        for name in ("c_fc", "c_proj"):
            weights[f"{block}.mlp.{name}"] = {"weight": np.ascontiguousarray(sd[f"{block}.mlp.{name}.weight"].T),
                                              "bias": sd[f"{block}.mlp.{name}.bias"]}
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from common import torchvision_beside_cpu_torch
    torchvision_beside_cpu_torch()
    import transformers

    # Hugging Face's default attention (scaled_dot_product_attention): the fastest torch path
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    net = zoo.load("gpt2").replace(input=[args.tokens])
    weights = layercalc_weights(model)
    ids = np.random.default_rng(0).integers(0, 50257, size=(1, args.tokens))
    x = ids.astype(np.float32)
    ours_times, torch_times = [], []
    ours = expected = None
    for _ in range(args.repeat):
        start = time.perf_counter()
        ours = net.run(x=x, weights=weights)
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            expected = model(torch.from_numpy(ids)).logits.numpy()
        torch_times.append(time.perf_counter() - start)
    assert ours is not None and expected is not None
    difference = float(np.max(np.abs(ours - expected)) / np.max(np.abs(expected)))
    ours_s, torch_s = statistics.median(ours_times), statistics.median(torch_times)
    print(f"GPT-2, {args.tokens} tokens, 2 threads, float32, median of {args.repeat} (runs alternate)")
    print(f"  layercalc {ours_s * 1000:8.1f} ms   torch {torch_s * 1000:8.1f} ms   ratio {ours_s / torch_s:.2f} "
          f"(target ≤ 1.5)   max |Δ logits| / max |logits| = {difference:.1e}")


if __name__ == "__main__":
    main()
