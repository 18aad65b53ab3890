"""How tensors are named in a network: a layer's name for its one output, ``NAME:i`` for output ``i`` of a layer
with several (``split``/``chunk``: ``qkv:0``, ``qkv:1``, ``qkv:2``), ``input`` for the network's input.
"""

from __future__ import annotations

from typing import Optional

#: the name of the network's input, as a layer's ``inputs`` names it (reserved: no layer may take it)
INPUT = "input"


def split_output(name: str) -> tuple[str, Optional[int]]:
    """``"qkv:1"`` → ``("qkv", 1)``; a name without an output index → ``(name, None)``.

    >>> split_output("qkv:1"), split_output("layer1.0.conv1"), split_output("a:b")
    (('qkv', 1), ('layer1.0.conv1', None), ('a:b', None))
    """
    base, sep, index = name.rpartition(":")
    if sep and base and index.isdigit() and index.isascii():
        return base, int(index)
    return name, None
