"""Plain text tables fitted to a width: columns two spaces apart under a rule of dashes (tabulate's "simple"
look), and, when the table is wider than the terminal, the named columns cut in the middle with ``…`` until it
fits — a name keeps its end, where a module path is most specific (``…layers.3.self_attn.q_proj``).

Only the command line's own tables (verify, zoo, types) use it; the summary's table is the report renderer's.
Imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..terminal import widest_line

#: a cut column keeps at least this many characters (or its header's width, if wider)
MIN_CUT = 6


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str, width: int,
          shrink: Sequence[int] = ()) -> str:
    """The table as text: ``align`` has one letter per column (``l``, ``r`` or ``c``); when wider than
    ``width``, the columns ``shrink`` names (indices, the first cut first) are cut in the middle until it fits.

    >>> print(table(["name", "MACs"], [["layer3.2.conv1", "1,024"], ["fc", "10"]], "lr", 80))
    name             MACs
    --------------  -----
    layer3.2.conv1  1,024
    fc                 10
    >>> print(table(["name", "MACs"], [["transformer.h.11.attn.c_attn", "1"]], "lr", 20, shrink=[0]))
    name            MACs
    --------------  ----
    tran…tn.c_attn     1
    """
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    total = sum(widths) + 2 * (len(widths) - 1)
    for column in shrink:
        if total <= width:
            break
        floor = max(MIN_CUT, len(headers[column]))
        cut = max(floor, widths[column] - (total - width))
        if cut < widths[column]:
            total -= widths[column] - cut
            widths[column] = cut
            for row in cells:
                row[column] = cut_middle(row[column], cut)
    lines = [_line(headers, widths, align), "  ".join("-" * w for w in widths)]
    lines += [_line(row, widths, align) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def _line(cells: Sequence[str], widths: Sequence[int], align: str) -> str:
    out = []
    for cell, w, a in zip(cells, widths, align):
        out.append(cell.rjust(w) if a == "r" else cell.center(w) if a == "c" else cell.ljust(w))
    return "  ".join(out)


def cut_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: a third of the room for its start, the rest for its end, ``…``
    between them.

    >>> cut_middle("model.layers.31.self_attn.q_proj", 20)
    'model.…f_attn.q_proj'
    """
    if len(text) <= width:
        return text
    head = (width - 1) // 3
    tail = width - 1 - head
    return text[:head] + "…" + text[len(text) - tail:]


def fits(text: str, width: int) -> bool:
    return widest_line(text) <= width
