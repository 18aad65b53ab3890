"""``python -m layercalc``: the same command as ``layercalc``."""

from .cli import main

main()
