"""The model zoo: well-known networks as spec files in layercalc's own format, shipped inside the package.

Each ``<name>.yaml`` here is an ordinary spec (blocks included), readable as documentation of the format. The
torchvision models follow torchvision's definitions exactly and use its module names as layer names
(``layer1.0.conv1``, ``features.0``, ``classifier.1``), so a torchvision ``state_dict`` key ``K.weight`` belongs to
layer ``K``.

>>> 'resnet50' in list_models()
True
>>> load('resnet50').analyze().totals.params
25557032
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import SpecError, did_you_mean
from ..graph import Network
from ..spec import from_data, read_text_file

_HERE = Path(__file__).resolve().parent


def list_models() -> list[str]:
    """Names of the bundled models, sorted."""
    return sorted(path.stem for path in _HERE.glob("*.yaml"))


def spec_path(name: str) -> Path:
    """The spec file of a bundled model; an unknown name is a ``SpecError`` with a suggestion."""
    models = list_models()
    if name not in models:
        hint = did_you_mean(name, models) or f" (available: {', '.join(models)})"
        raise SpecError(f"zoo:{name}: no such model in the zoo{hint}")
    return _HERE / f"{name}.yaml"


def read(name: str) -> Any:
    """The spec data of the bundled model ``name``."""
    return read_text_file(spec_path(name))


def load(name: str) -> Network:
    """The bundled model ``name`` as a :class:`~layercalc.graph.Network`."""
    return from_data(read(name), f"zoo:{name}")
