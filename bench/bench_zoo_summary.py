"""Whole-process time of a ResNet-50 summary: layercalc vs. a torchinfo-style summary in PyTorch (target: ≥ 10×).

Run: python bench/bench_zoo_summary.py [--runs 5]

Each measurement is a fresh process, timed from launch to exit (median of ``--runs``), as a user at a terminal
experiences it:
- ``layercalc summary zoo:resnet50`` (the CLI; skipped with a note if the command is not available),
- ``python -c "import layercalc; layercalc.load('zoo:resnet50').analyze()"`` (the library, no table printing),
- ``python -c <torch program>``: import torch, build torchvision's ResNet-50 (the builder below, module for module
  the same as tests/test_zoo_torch.py), register forward hooks on every module that collect output shapes and
  parameter counts, run one batch-1 forward pass and print the table — what torchinfo's ``summary`` does.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import time

from common import precompile_layercalc  # noqa: E402

TORCH_SUMMARY = r'''
import torch
from torch import nn

class Bottleneck(nn.Module):
    expansion = 4
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False); self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False); self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False); self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True); self.downsample = downsample
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)

class ResNet(nn.Module):
    def __init__(self, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False); self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True); self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], 2)
        self.layer3 = self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1)); self.fc = nn.Linear(2048, num_classes)
    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)
    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

model = ResNet([3, 4, 6, 3]).eval()
rows = []
def hook(module, inputs, output, name=None):
    params = sum(p.numel() for p in module.parameters(recurse=False))
    rows.append((name, type(module).__name__, list(output.shape), params))
for name, module in model.named_modules():
    if name:
        module.register_forward_hook(lambda m, i, o, name=name: hook(m, i, o, name))
with torch.no_grad():
    model(torch.zeros(1, 3, 224, 224))
for name, kind, shape, params in rows:
    print(f"{name:<28} {kind:<18} {str(shape):<22} {params:>12,}")
total = sum(p.numel() for p in model.parameters())
print(f"Total params: {total:,}")
assert total == 25_557_032
'''

DEPENDENCIES = "import typer, yaml, tabulate; from pydantic import BaseModel"
LIBRARY = "import layercalc; r = layercalc.load('zoo:resnet50').analyze(); assert r.totals.params == 25_557_032"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_process(command: list[str], runs: int) -> tuple[float, float, str]:
    """Median wall time and median CPU time (user + sys) of ``runs`` fresh processes; one untimed warm-up run
    fills the OS file cache. CPU time is the steadier figure when other work shares the machine."""
    first = subprocess.run(command, capture_output=True, text=True)
    if first.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} … failed:\n{first.stderr.strip()[-2000:]}")
    walls, cpus = [], []
    for _ in range(runs):
        cpu, start = children_cpu(), time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        walls.append(time.perf_counter() - start)
        cpus.append(children_cpu() - cpu)
    return statistics.median(walls), statistics.median(cpus), first.stdout


def cli_command() -> list[str] | None:
    """``layercalc summary zoo:resnet50`` if the CLI is installed and works, else None."""
    exe = shutil.which("layercalc")
    if exe is None:
        return None
    probe = subprocess.run([exe, "summary", "zoo:resnet50"], capture_output=True, text=True)
    return [exe, "summary", "zoo:resnet50"] if probe.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(precompile_layercalc())

    torch_wall, torch_cpu, torch_out = time_process([sys.executable, "-c", TORCH_SUMMARY], args.runs)
    rows = [("torch: import, build ResNet-50, hooks, forward, table", torch_wall, torch_cpu)]
    wall, cpu, _ = time_process([sys.executable, "-c", "pass"], args.runs)
    rows.append(("floor: python -c pass", wall, cpu))
    wall, cpu, _ = time_process([sys.executable, "-c", DEPENDENCIES], args.runs)
    rows.append(("floor: import typer, pydantic.BaseModel, yaml, tabulate", wall, cpu))
    command = cli_command()
    if command is None:
        print("note: `layercalc summary zoo:resnet50` is not available (layercalc.cli missing or failing); "
              "only the library process is timed")
    else:
        wall, cpu, _ = time_process(command, args.runs)
        rows.append(("layercalc summary zoo:resnet50", wall, cpu))
    wall, cpu, _ = time_process([sys.executable, "-c", LIBRARY], args.runs)
    rows.append(("python -c: layercalc.load('zoo:resnet50').analyze()", wall, cpu))

    print(f"{'process (median of ' + str(args.runs) + ' runs)':<56} {'wall ms':>9} {'cpu ms':>9} "
          f"{'× wall':>7} {'× cpu':>7}")
    for label, wall, cpu in rows:
        print(f"{label:<56} {wall * 1000:9.0f} {cpu * 1000:9.0f} {torch_wall / wall:7.1f} {torch_cpu / cpu:7.1f}")
    print(f"(torch printed {len(torch_out.splitlines()) - 1} module rows; target: layercalc ≥ 10× faster)")


if __name__ == "__main__":
    main()
