"""Write the golden outputs that tests/test_golden.py compares against: every zoo network's and example's full
JSON report and worked explanation, the JSON Schema, and one calculator answer (with --explain) per layer type.

Run only to record behaviour on purpose (``python tests/golden/generate.py``), after checking the differences:
these files are what "every figure unchanged" is checked against when the code is reorganized.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

#: one representative invocation per layer type: the calculator's arguments after the type name
CALCULATORS = {
    "conv1d": "-i 3x50 --out-channels 8 -k 5 -s 2 -p 1",
    "conv2d": "-i 3x32x32 --out-channels 16 -k 3 -s 2 -p same -d 1 -g 1",
    "conv3d": "-i 2x8x9x10 --out-channels 4 -k 3 -s 2",
    "conv_transpose1d": "-i 4x10 --out-channels 2 -k 4 -s 2 -p 1",
    "conv_transpose2d": "-i 8x7x7 --out-channels 4 -k 3 -s 2 -p 1 --output-padding 1",
    "conv_transpose3d": "-i 2x4x4x4 --out-channels 2 -k 3 -s 2",
    "maxpool1d": "-i 3x11 -k 3 -s 2 --ceil-mode",
    "maxpool2d": "-i 3x11x11 -k 2",
    "maxpool3d": "-i 2x5x6x7 -k 2",
    "avgpool1d": "-i 3x10 -k 3 -s 2 -p 1",
    "avgpool2d": "-i 3x10x10 -k 3 -s 2 -p same",
    "avgpool3d": "-i 2x6x6x6 -k 2",
    "adaptive_avgpool1d": "-i 3x10 --output-size 3",
    "adaptive_avgpool2d": "-i 3x10x7 --output-size 3x2",
    "adaptive_avgpool3d": "-i 2x5x5x5 --output-size 2",
    "adaptive_maxpool1d": "-i 3x10 --output-size 4",
    "adaptive_maxpool2d": "-i 3x9x9 --output-size 4",
    "adaptive_maxpool3d": "-i 2x5x5x5 --output-size 3",
    "global_avgpool": "-i 8x7x7",
    "global_maxpool": "-i 8x7x7",
    "linear": "-i 784 --out-features 500",
    "flatten": "-i 64x5x5",
    "reshape": "-i 784 --shape 1x28x28",
    "zero_pad": "-i 3x5x5 --padding 1",
    "batchnorm1d": "-i 16x10",
    "batchnorm2d": "-i 16x8x8",
    "batchnorm3d": "-i 4x3x3x3",
    "layernorm": "-i 10x16 --normalized-shape 16",
    "groupnorm": "-i 16x8x8 --num-groups 4",
    "dropout": "-i 100",
    "relu": "-i 3x4x4",
    "relu6": "-i 3x4x4",
    "leaky_relu": "-i 3x4x4",
    "sigmoid": "-i 3x4x4",
    "tanh": "-i 3x4x4",
    "gelu": "-i 3x4x4",
    "silu": "-i 3x4x4",
    "hardswish": "-i 3x4x4",
    "hardsigmoid": "-i 3x4x4",
    "softmax": "-i 10",
    "identity": "-i 3x4x4",
    "add": "-i 3x4x4 -i 3x4x4",
    "mul": "-i 3x4x4 -i 3x1x1",
    "concat": "-i 3x4x4 -i 5x4x4",
}


def run(args: list[str]) -> str:
    from typer.testing import CliRunner

    from layercalc.cli import get_app
    # --wide: the recorded text is every line in full, whatever the terminal (fitting it is tests/test_widths.py's)
    result = CliRunner().invoke(get_app(), [*args, "--wide"])
    if result.exit_code != 0:
        raise SystemExit(f"{' '.join(args)}: exit {result.exit_code}: {result.stderr}")
    return result.stdout


def specs() -> list[str]:
    from layercalc import zoo
    return [f"zoo:{name}" for name in zoo.list_models()] + [str(p.relative_to(ROOT))
                                                           for p in sorted((ROOT / "examples").glob("*.yaml"))]


def outputs() -> dict[str, str]:
    """file name → content, everything the golden test compares."""
    import os
    os.chdir(ROOT)
    found: dict[str, str] = {}
    for spec in specs():
        stem = spec.replace("zoo:", "zoo_").replace("examples/", "example_").removesuffix(".yaml")
        found[f"{stem}.json"] = run(["summary", spec, "--format", "json"])
        found[f"{stem}.explain.txt"] = run(["summary", spec, "--columns", "all", "--expand", "--notes", "all",
                                            "--conventions", "--wide", "--explain"])
    found["schema.json"] = run(["schema"])
    lines = []
    for type_name, args in CALCULATORS.items():
        lines.append(f"$ layercalc {type_name} {args} --explain")
        lines.append(run([type_name, *args.split(), "--explain"]))
    found["calculators.txt"] = "\n".join(lines)
    return found


if __name__ == "__main__":
    for name, text in outputs().items():
        (HERE / name).write_text(text)
    print(f"wrote {len(outputs())} files to {HERE}", file=sys.stderr)
