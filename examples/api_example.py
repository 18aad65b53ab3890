"""Using layercalc as a library: build a network in code, analyze it, print the report as JSON.

Run:  python examples/api_example.py            (prints the full report as JSON)
      python examples/api_example.py --totals   (prints only the totals)

The layer classes take the same fields as the spec format (PyTorch's names; Keras' names are accepted too), and
``Network`` takes the same top-level fields as a spec file. Nothing here needs a deep-learning framework.
"""

import json
import sys

import layercalc
from layercalc import BatchNorm2d, Concat, Conv2d, GlobalAvgPool, Linear, Network, ReLU


def build() -> Network:
    """A small two-branch CNN for 3×32×32 images: a 3×3 branch and a 1×1 branch, concatenated."""
    return Network(
        name="two-branch",
        input=[3, 32, 32],                       # one example, batch excluded
        batch=8,
        layers=[
            Conv2d(name="stem", out_channels=16, kernel_size=3, stride=2, padding=1, bias=False),  # 16×16×16
            BatchNorm2d(name="stem_bn"),
            ReLU(name="stem_relu"),
            Conv2d(name="branch3x3", out_channels=24, kernel_size=3, padding=1),                   # 24×16×16
            Conv2d(name="branch1x1", out_channels=8, kernel_size=1, inputs=["stem_relu"]),         # 8×16×16
            Concat(name="merge", inputs=["branch3x3", "branch1x1"]),                               # 32×16×16
            ReLU(name="merge_relu"),
            GlobalAvgPool(name="pool"),                                                            # [N, 32]
            Linear(name="classifier", out_features=10),
        ],
    )


def main(argv: list[str]) -> int:
    report = build().analyze()
    if "--totals" in argv:
        print(report.totals.model_dump_json(indent=2))
    else:
        print(report.model_dump_json(indent=2))
    # The same network loaded from plain data (what a YAML/JSON spec holds) gives the same report.
    data = json.loads(build().model_dump_json(exclude_defaults=True))
    assert layercalc.load(data).analyze().totals == report.totals
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
