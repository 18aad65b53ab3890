"""Expansion of reusable blocks and ``repeat`` in a spec into a flat layer list (placeholder: passes specs through)."""

from __future__ import annotations

from typing import Any


def expand(data: dict[str, Any]) -> dict[str, Any]:
    return data
