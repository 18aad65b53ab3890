"""The network report as a person reads it: repeated blocks folded, notes said once, the table fitted to a width.

What is folded (the default view of ``layercalc summary``; ``--expand`` lists every layer):

- A layer's *instance* is its name up to the first all-digit component: ``model.layers.7.mlp.up_proj`` belongs to
  ``model.layers.7``, ``layer3.2.conv1`` to ``layer3.2`` (the names ``repeat:`` gives, torchvision's and Hugging
  Face's module paths). Consecutive instances of the same parent, numbered one after the other, whose layers show
  the same figures (type, shapes, params, buffers, MACs, FLOPs, bytes and every other shown column) are *copies*:
  they are shown as one row ``model.layers.0–31`` marked ``×32`` with the figures of ONE copy, followed by that
  copy's layers drawn as a tree (``├─``). A ``%`` column gives each row's share of the network's FLOPs (all
  copies of a folded row together), so the large parts stand out.
- Nothing is folded that differs in any shown figure, so every number printed is the number of each copy.

How notes are said (``--notes all`` prints each note of each layer, as ``--expand`` prints each layer):

- routine notes (:class:`layercalc.notes.Routine`) are counted, not printed;
- a note repeated word for word by several layers is printed once, with the count and the range of layer names
  (``model.layers.0–31.self_attn (32 layers): causal mask …``); notes that differ only in their numbers (the same
  rule at another size: ``H: input positions 1, 3, …`` at 56 and at 28) are printed once for the first layer, with
  the others named as "alike";
- each printed note takes at most two lines, cut at the width with ``…`` (the full text: ``--notes all``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Optional

from .errors import safe_text
from .notes import is_routine
from .terminal import UNLIMITED, wrap

# ------------------------------------------------------------------------------------------------------- folding


def instance_of(name: str) -> Optional[tuple[str, int]]:
    """``(parent, number)`` of the instance a layer name belongs to, or None when no component is a number.

    >>> instance_of('model.layers.7.mlp.up_proj'), instance_of('layer3.2.conv1'), instance_of('fc')
    (('model.layers', 7), ('layer3', 2), None)
    >>> instance_of('features.3')
    ('features', 3)
    """
    parts = name.split(".")
    for i, part in enumerate(parts):
        if i and part.isdigit() and (len(part) == 1 or part[0] != "0"):
            return ".".join(parts[:i]), int(part)
    return None


@dataclass
class Segment:
    """Consecutive rows of one instance (or one row that belongs to none)."""
    key: Optional[tuple[str, int]]
    rows: list


def segments(rows: list) -> list[Segment]:
    out: list[Segment] = []
    for row in rows:
        key = instance_of(row.name)
        if out and key is not None and out[-1].key == key:
            out[-1].rows.append(row)
        else:
            out.append(Segment(key, [row]))
    return out


def _relative(name: str, key: tuple[str, int]) -> str:
    prefix = f"{key[0]}.{key[1]}"
    return name[len(prefix) + 1:] if name.startswith(prefix + ".") else name


def _signature(segment: Segment, cells) -> tuple:
    """What must be equal for two instances to be copies: each layer's relative name and every shown cell but
    the name, index and inputs (``cells(row)`` gives those)."""
    assert segment.key is not None
    return tuple((_relative(row.name, segment.key), row.type, cells(row)) for row in segment.rows)


def fold_rows(rows: list, cells, total_flops: int) -> list:
    """The display rows of the default view: copies folded (see the module docstring). ``cells(row)`` is the tuple
    of the row's shown values that copies must share; ``total_flops`` the network's, for the ``%`` column."""
    out: list = []
    parts = segments(rows)
    i = 0
    while i < len(parts):
        part = parts[i]
        j = i + 1
        if part.key is not None:
            parent, number = part.key
            signature = _signature(part, cells)
            while (j < len(parts) and parts[j].key == (parent, number + j - i)
                   and _signature(parts[j], cells) == signature):
                j += 1
        copies = j - i
        if copies == 1:
            out += [_with_share(row, row.flops, total_flops) for row in part.rows]
        else:
            assert part.key is not None
            parent, first = part.key
            members = part.rows
            subtotal = _subtotal(members)
            name = f"{parent}.{first}–{first + copies - 1}"
            if len(members) == 1:          # a repeated single layer: the row is the layer itself, ×N
                out.append(replace(_with_share(members[0], members[0].flops * copies, total_flops), name=name,
                                   copies=copies))
            else:
                head = replace(subtotal, name=name, type=f"{len(members)} layers", copies=copies,
                               share=_share(subtotal.flops * copies, total_flops))
                out.append(head)
                for k, row in enumerate(members):
                    glyph = "└─ " if k == len(members) - 1 else "├─ "
                    out.append(replace(_with_share(row, None, total_flops), name=glyph + _relative(row.name, part.key),
                                       tree=True))
        i = j
    return out


@dataclass
class _Node:
    """A dotted-name prefix of the ``--depth`` tree: the layers under it and its child prefixes, in order."""
    prefix: str
    members: list = field(default_factory=list)
    children: dict = field(default_factory=dict)


def depth_tree(rows: list, depth: int, cells, total_flops: int) -> list:
    """The ``--depth`` view as a tree, torchinfo's way: every dotted-name prefix down to ``depth`` components is a
    row with its subtotal, drawn under its parent (``├─``); a prefix that is one layer is that layer's row.
    Consecutive numbered siblings that are copies (equal figures, see :func:`fold_rows`) are one row ``0–31 (×32)``
    with one copy's figures and subtree. The ``%`` column is each row's share of the network's FLOPs (all copies).
    """
    root = _Node("")
    for row in rows:
        parts = row.name.split(".")[:depth]
        node = root
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            node = node.children.setdefault(prefix, _Node(prefix))
            node.members.append(row)
    out: list = []
    _emit(root, "", cells, total_flops, out)
    return out


def _emit(parent: _Node, indent: str, cells, total_flops: int, out: list) -> None:
    children = list(parent.children.values())
    runs = []                                       # (first child, copies)
    i = 0
    while i < len(children):
        child = children[i]
        j = i + 1
        key = instance_of(child.prefix) if child.prefix.rsplit(".", 1)[-1].isdigit() else None
        if key is not None and len(child.prefix.split(".")) == len(key[0].split(".")) + 1:
            signature = _subtree_signature(child, cells)
            while (j < len(children) and instance_of(children[j].prefix) == (key[0], key[1] + j - i)
                   and _subtree_signature(children[j], cells) == signature):
                j += 1
        runs.append((child, j - i))
        i = j
    for n, (child, copies) in enumerate(runs):
        last = n == len(runs) - 1
        glyph = "" if not parent.prefix else indent + ("└─ " if last else "├─ ")
        label = child.prefix[len(parent.prefix) + 1:] if parent.prefix else child.prefix
        if copies > 1:
            start = int(label.rsplit(".", 1)[-1])
            label = f"{label.rsplit('.', 1)[0] + '.' if '.' in label else ''}{start}–{start + copies - 1}"
        leaf = len(child.members) == 1 and child.members[0].name == child.prefix and not child.children
        if leaf:
            row = replace(child.members[0], name=glyph + label)
        else:
            row = replace(_subtotal(child.members), name=glyph + label, type=f"{len(child.members)} layers")
        out.append(replace(row, copies=copies, share=_share(row.flops * copies, total_flops)))
        if child.children and not leaf:
            _emit(child, indent + ("" if not parent.prefix else ("   " if last else "│  ")), cells, total_flops, out)


def _subtree_signature(node: _Node, cells) -> tuple:
    return tuple((row.name[len(node.prefix):], row.type, cells(row)) for row in node.members)


#: the backward figures of a row (the report's per-layer fields of the same names): None when unknown
BACKWARD_KEYS = ("backward_input_macs", "backward_weight_macs", "backward_flops")


def backward_sums(members: list) -> dict[str, Optional[int]]:
    """The backward figures of a group of rows: sums, or None (unknown) when a member's is."""
    return {key: None if any(getattr(m, key) is None for m in members) else sum(getattr(m, key) for m in members)
            for key in BACKWARD_KEYS}


def _subtotal(members: list):
    """One row with the members' sums (a formatting.Row: the first member's, its figures replaced)."""
    last = members[-1]
    return replace(members[0], output_shape=last.output_shape, params=sum(m.params for m in members),
                   buffers=sum(m.buffers for m in members), macs=sum(m.macs for m in members),
                   flops=sum(m.flops for m in members), param_bytes=sum(m.param_bytes for m in members),
                   activation_bytes=sum(m.activation_bytes for m in members), receptive_field=last.receptive_field,
                   jump=last.jump, notes=[], members=len(members), **backward_sums(members),
                   saved_bytes=None if any(m.saved_bytes is None for m in members)
                   else sum(m.saved_bytes for m in members))


def _share(flops: Optional[int], total: int) -> Optional[float]:
    if flops is None or total <= 0:
        return None
    return flops / total


def _with_share(row, flops: Optional[int], total: int):
    return replace(row, share=_share(flops, total))


def share_text(share: Optional[float]) -> str:
    """A share of the total as a person reads it.

    >>> share_text(0.5), share_text(0.0004), share_text(0.0), share_text(None), share_text(0.99996)
    ('50.0', '<0.1', '0', '', '100.0')
    """
    if share is None:
        return ""
    if share == 0:
        return "0"
    if share < 0.0005:
        return "<0.1"
    return f"{share * 100:.1f}"


# ------------------------------------------------------------------------------------------------------- notes

_NUMBER = re.compile(r"\d[\d,.·×]*")
_AXIS = re.compile(r"^[A-Z]: ")


def note_kind(note: str) -> str:
    """The note with its numbers (and a leading axis letter) taken out: notes of one kind at other sizes.

    >>> note_kind("H: input row 55 (of 0..55) is never read") == note_kind("W: input row 27 (of 0..27) is never read")
    True
    """
    return _NUMBER.sub("#", _AXIS.sub("", note)).replace(" column", " row")


def name_range(names: list[str]) -> str:
    """Layer names as a range where they differ only in one number counting up: ``layers.0–31.self_attn``.

    >>> name_range(['m.layers.0.attn', 'm.layers.1.attn', 'm.layers.2.attn'])
    'm.layers.0–2.attn'
    >>> name_range(['a', 'b']), name_range(['conv1'])
    ('a, b', 'conv1')
    >>> name_range(['l.0.x', 'l.2.x', 'l.3.x', 'l.4.x'])
    'l.0.x, l.2.x, l.3.x, l.4.x'
    """
    if len(names) == 1:
        return names[0]
    split = [name.split(".") for name in names]
    if len({len(parts) for parts in split}) == 1:
        differing = [k for k in range(len(split[0])) if len({parts[k] for parts in split}) > 1]
        if len(differing) == 1:
            k = differing[0]
            values = [parts[k] for parts in split]
            if all(v.isdigit() for v in values) and [int(v) for v in values] == list(
                    range(int(values[0]), int(values[0]) + len(values))):
                return ".".join([*split[0][:k], f"{values[0]}–{values[-1]}", *split[0][k + 1:]])
    if len(names) <= 4:
        return ", ".join(names)
    return f"{names[0]}, {names[1]}, …, {names[-1]}"


@dataclass
class NoteGroup:
    text: str                     # the first layer's note, as written
    layers: list[tuple[str, str]]  # (name, type) of each layer with this note word for word
    alike: list[str]              # layers with a note of the same kind, other numbers (once per such note)


def group_notes(layers) -> tuple[list[NoteGroup], int, int]:
    """``(groups, routine count, every note's count)`` of a report's layers (see the module docstring)."""
    exact: dict[str, NoteGroup] = {}
    kinds: dict[tuple[str, str], NoteGroup] = {}
    routine = total = 0
    order: list[NoteGroup] = []
    for entry in layers:
        for note in entry.notes:
            total += 1
            if is_routine(note):
                routine += 1
                continue
            group = exact.get(note)
            if group is not None:
                if group.text != note:                       # word for word the note of an "alike" layer
                    group.alike.append(entry.name)
                elif group.layers[-1][0] != entry.name:
                    group.layers.append((entry.name, entry.type))
                continue
            kind = (entry.type, note_kind(note))
            similar = kinds.get(kind)
            if similar is not None:                          # (the same layer's other axis counts too)
                similar.alike.append(entry.name)
                exact[note] = similar
                continue
            group = NoteGroup(note, [(entry.name, entry.type)], [])
            exact[note] = kinds[kind] = group
            order.append(group)
    return order, routine, total


#: at most this many notes are printed in the default view; the rest are counted
MAX_NOTE_LINES = 4


def default_note_lines(layers, width: int, markdown: bool = False) -> list[str]:
    """The notes of the default view: one line per group of notes, routine ones counted (``--notes all``: each)."""
    groups, routine, total = group_notes(layers)
    if not total:
        return []
    shown = groups[:MAX_NOTE_LINES]
    hidden = len(groups) - len(shown)
    counted = [f"{routine} routine" if routine else "", f"{hidden} more kind{'s' if hidden > 1 else ''}"
               if hidden else ""]
    counted = [c for c in counted if c]
    title = f"Notes ({total}{': ' + ', '.join(counted) + ' not shown' if counted else ''}; each: --notes all):"
    lines = ["- " + title if markdown else title]
    for group in shown:
        names = [name for name, _ in group.layers]
        who = (f"{name_range(names)} ({len(names)} layers)" if len(names) > 1
               else f"{names[0]} ({group.layers[0][1]})")
        if group.alike:                     # the same note at other sizes: named in full by --notes all
            who += f" and {len(group.alike)} more alike"
        line = safe_text(f"{who}: {group.text}")
        if markdown:
            lines.append(f"  - {line}")
            continue
        wrapped = wrap(line, width, "  ").split("\n")           # at most two lines, the second cut
        lines += wrapped[:1] + ([cut(" ".join(wrapped[1:]).rstrip(), width)] if len(wrapped) > 1 else [])
    return lines


def cut(line: str, width: int) -> str:
    """A line cut to ``width`` characters at a word boundary, ending in ``…`` when cut.

    >>> cut("one two three four", 12), cut("short", 12)
    ('one two …', 'short')
    """
    if width >= UNLIMITED or len(line) <= width:
        return line
    head = line[: width - 1]
    space = head.rfind(" ")
    if space > width // 2:
        head = head[:space + 1]
    return head + "…"


# ------------------------------------------------------------------------------------------------------- header

@dataclass
class Assumptions:
    """What a source left open and was assumed, for the summary's header line."""
    built: Optional[str] = None              # the class built: "LlamaForCausalLM"
    input: Optional[str] = None              # the default input and where it came from
    declared_dtype: Optional[str] = None     # the source's own dtype (a config's torch_dtype), if it says one
    dtype_key: Optional[str] = None          # where the source says it (a config's "torch_dtype" or "dtype")
    more: list[str] = field(default_factory=list)   # conventions applied to the source's keys
