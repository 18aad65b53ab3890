"""How long analysis takes: a 10,000-layer chain and a ResNet-50-sized DAG (target: well under 1 s per 10,000 layers);
then zoo and Hugging Face networks, analysis against the forward rules alone and, with ``--baseline``, against
another checkout.

Run: python bench/bench_analyze.py [--layers 10000] [--repeat 5] [--baseline DIR] [--rounds 3]

Prints the median wall time of validation (spec → Network) and analysis (Network → Report), per layer. For
zoo:resnet50, zoo:resnet18, GPT-2 (124M, its published config) and Llama-2-7b (its config; both through
``importers.huggingface.spec_from_config``) it prints the best time of ``resolve()`` (every layer's shape and cost
rule) and of ``analyze()`` (that, the report entries, the totals and the training figures: the backward pass and
the tensors kept for it) and their ratio — what the report costs beyond the rules. ``--baseline DIR`` (a checkout
made with ``git worktree add DIR COMMIT``) times the same ``analyze()`` with DIR's package, in processes that
alternate with this checkout's (``--rounds`` of each), and prints this checkout's time over DIR's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import layercalc


def chain_spec(n_layers: int) -> dict:
    """conv 3×3 (pad 1) / batchnorm / relu repeated: shapes stay 16×32×32 so any depth is valid."""
    pattern = [{"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1, "bias": False},
               {"type": "batchnorm2d"}, {"type": "relu"}]
    return {"input": [16, 32, 32], "layers": [dict(pattern[i % 3]) for i in range(n_layers)]}


def resnet50_spec() -> dict:
    """torchvision's ResNet-50 written out flat: 53 convs, 53 BNs, 16 residual adds, relus — ~175 layers."""
    layers = [{"name": "conv1", "type": "conv2d", "out_channels": 64, "kernel_size": 7, "stride": 2, "padding": 3,
               "bias": False}, {"name": "bn1", "type": "batchnorm2d"}, {"name": "relu", "type": "relu"},
              {"name": "maxpool", "type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1}]
    previous = "maxpool"
    for stage, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            s = stride if b == 0 else 1
            layers += [
                {"name": f"{p}.conv1", "type": "conv2d", "out_channels": width, "kernel_size": 1, "bias": False,
                 "inputs": [previous]},
                {"name": f"{p}.bn1", "type": "batchnorm2d"}, {"name": f"{p}.relu1", "type": "relu"},
                {"name": f"{p}.conv2", "type": "conv2d", "out_channels": width, "kernel_size": 3, "stride": s,
                 "padding": 1, "bias": False},
                {"name": f"{p}.bn2", "type": "batchnorm2d"}, {"name": f"{p}.relu2", "type": "relu"},
                {"name": f"{p}.conv3", "type": "conv2d", "out_channels": 4 * width, "kernel_size": 1, "bias": False},
                {"name": f"{p}.bn3", "type": "batchnorm2d"}]
            skip = previous
            if b == 0:
                layers += [{"name": f"{p}.downsample.0", "type": "conv2d", "out_channels": 4 * width,
                            "kernel_size": 1, "stride": s, "bias": False, "inputs": [previous]},
                           {"name": f"{p}.downsample.1", "type": "batchnorm2d"}]
                skip = f"{p}.downsample.1"
            layers += [{"name": f"{p}.add", "type": "add", "inputs": [f"{p}.bn3", skip]},
                       {"name": f"{p}.relu3", "type": "relu"}]
            previous = f"{p}.relu3"
    layers += [{"name": "avgpool", "type": "adaptive_avgpool2d", "output_size": 1},
               {"name": "flatten", "type": "flatten"},
               {"name": "fc", "type": "linear", "out_features": 1000}]
    return {"name": "resnet50", "input": [3, 224, 224], "layers": layers}


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench(label: str, spec: dict, repeat: int) -> None:
    load_s, network = timed(lambda: layercalc.load(spec), repeat)
    analyze_s, report = timed(network.analyze, repeat)
    n = len(report.layers)
    print(f"{label:<28} {n:>6} layers   load {load_s * 1e3:8.1f} ms   analyze {analyze_s * 1e3:8.1f} ms   "
          f"total {(load_s + analyze_s) * 1e3:8.1f} ms   {(load_s + analyze_s) / n * 1e6:6.1f} µs/layer")
    return report


#: this checkout (the package next to bench/)
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: published Hugging Face configs (the keys that change a figure), as tests/test_import_huggingface.py has them
GPT2_CONFIG = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
               "n_ctx": 1024, "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257,
               "layer_norm_epsilon": 1e-05}
LLAMA2_CONFIG = {"architectures": ["LlamaForCausalLM"], "hidden_act": "silu", "hidden_size": 4096,
                 "intermediate_size": 11008, "max_position_embeddings": 4096, "model_type": "llama",
                 "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32, "rms_norm_eps": 1e-05,
                 "rope_scaling": None, "tie_word_embeddings": False, "vocab_size": 32000}


def named_networks() -> dict[str, layercalc.Network]:
    from layercalc.importers.huggingface import spec_from_config
    return {"zoo:resnet50": layercalc.load("zoo:resnet50"), "zoo:resnet18": layercalc.load("zoo:resnet18"),
            "gpt2 (HF config)": layercalc.load(spec_from_config(GPT2_CONFIG, "config.json")),
            "Llama-2-7b (HF config)": layercalc.load(spec_from_config(LLAMA2_CONFIG, "config.json"))}


def best(fn, repeat: int) -> float:
    """The fastest of ``repeat`` runs, in seconds: on a shared machine the others are this plus interruptions."""
    fastest = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


def analyze_times(repeat: int, with_resolve: bool) -> dict[str, dict[str, float]]:
    """Best analyze() (and resolve()) time of each named network, after one analysis (lazy imports, caches)."""
    times = {}
    for label, network in named_networks().items():
        network.analyze()
        times[label] = {"analyze": best(network.analyze, repeat), "layers": len(network.layers)}
        if with_resolve:
            times[label]["resolve"] = best(network.resolve, repeat)
    return times


def baseline_times(directory: str, repeat: int) -> dict[str, dict[str, float]]:
    """analyze_times of DIR's package, in a process of its own (this file, run with DIR on PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": os.path.abspath(directory)}
    out = subprocess.run([sys.executable, __file__, "--json", "--repeat", str(repeat)], env=env, cwd=directory,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def compare(directory: str, rounds: int, repeat: int) -> None:
    ours: dict[str, list[float]] = {}
    theirs: dict[str, list[float]] = {}
    for _ in range(rounds):          # alternate the two checkouts' processes: a slow spell of the machine hits both
        for times, where in ((ours, HERE), (theirs, directory)):
            for label, figures in baseline_times(where, repeat).items():
                times.setdefault(label, []).append(figures["analyze"])
    print(f"\nanalyze(), best of {rounds} processes × {repeat} runs: this checkout against {directory}")
    for label in ours:
        mine, base = min(ours[label]), min(theirs[label])
        print(f"  {label:<24} {mine * 1e3:8.2f} ms   baseline {base * 1e3:8.2f} ms   ratio {mine / base:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", help="another checkout of layercalc to compare analyze() with")
    parser.add_argument("--rounds", type=int, default=3, help="processes of each checkout with --baseline")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)   # (what --baseline's processes print)
    args = parser.parse_args()
    if args.json:
        print(json.dumps(analyze_times(args.repeat, with_resolve=False)))
        return
    bench(f"chain of {args.layers}", chain_spec(args.layers), args.repeat)
    report = bench("ResNet-50 DAG (flat)", resnet50_spec(), args.repeat)
    print(f"  (ResNet-50 check: params {report.totals.params:,}, macs {report.totals.macs:,})")
    repeat = max(args.repeat, 20)           # milliseconds each: more runs for a steady best
    print(f"\nbest of {repeat}: resolve() (the layers' rules) and analyze() (+ report, totals, training figures)")
    for label, figures in analyze_times(repeat, with_resolve=True).items():
        print(f"  {label:<24} {figures['layers']:>4} layers   resolve {figures['resolve'] * 1e3:7.2f} ms   analyze "
              f"{figures['analyze'] * 1e3:7.2f} ms   analyze / resolve {figures['analyze'] / figures['resolve']:5.2f}")
    if args.baseline:
        compare(args.baseline, args.rounds, repeat)


if __name__ == "__main__":
    main()
