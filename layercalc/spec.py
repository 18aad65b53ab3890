"""Reading network specs: YAML or JSON files (same schema), or mappings built in Python.

YAML is read with ``yaml.safe_load``: plain data only, nothing in a spec is ever executed. Block definitions and
``repeat`` are expanded into a flat layer list by :mod:`layercalc.blocks` before validation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

from pydantic import ValidationError

from .errors import SpecError, describe_validation_error
from .graph import Network

Source = Union[str, os.PathLike, Mapping, Network]


def parse_text(text: str, origin: str = "<spec>", fmt: str | None = None) -> Any:
    """Parse YAML or JSON text (JSON is YAML, but JSON's own parser gives better messages for .json files)."""
    if fmt == "json" or (fmt is None and origin.endswith(".json")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"{origin}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    import yaml
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{origin}: invalid YAML{where}: {problem}") from None


def read_spec_file(path: Union[str, os.PathLike]) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: is a directory, expected a YAML or JSON spec file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{path}: cannot read: {e}") from None
    return parse_text(text, str(path))


def from_data(data: Any, origin: str = "spec") -> Network:
    """Validate parsed spec data (a mapping) into a ``Network``."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{origin}: a spec must be a mapping with 'input' and 'layers', got {type(data).__name__}")
    from .blocks import expand
    data = expand(dict(data))
    try:
        return Network.model_validate(data)
    except ValidationError as exc:
        known = list(Network.model_fields)
        helps = {"input": "a list of positive sizes, one example without the batch dim, e.g. [1, 28, 28]",
                 "layers": "a list of layer mappings"}
        raise SpecError(f"{origin}: {describe_validation_error(exc, data, known, helps)}") from None


def load(source: Source) -> Network:
    """A ``Network`` from a spec file path (YAML or JSON), a mapping, or a ``Network`` (returned as is).

    ``zoo:NAME`` loads a network from the bundled model zoo.
    """
    if isinstance(source, Network):
        return source
    if isinstance(source, Mapping):
        return from_data(source)
    text = os.fspath(source)
    if text.startswith("zoo:"):
        from . import zoo
        return zoo.load(text[4:])
    return from_data(read_spec_file(text), text)


def schema() -> dict:
    """JSON Schema of the spec format (what design tools validate against)."""
    return Network.model_json_schema()
