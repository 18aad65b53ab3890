"""``layercalc types``: every layer type a spec, a calculator or an importer can name, by family, with its aliases,
its Python class (``from layercalc import Conv2d``), the Keras classes read as it, and the PyTorch modules where a
type declares them (``torch_classes``) — read from the registry, so a plugin's types are listed too."""

from typing import Annotated, Any

import typer

from .options import _check_choice


def layer_catalog() -> list[dict[str, Any]]:
    """One entry per registered layer class, in registration order (the schema's and ``--help``'s)."""
    from ..layers import LAYER_CLASSES, load_plugins
    from ..layers.base import _type_names

    load_plugins()                                  # every family, then installed packages' types
    entries = []
    for cls in LAYER_CLASSES:
        names = _type_names(cls)
        module = cls.__module__
        family = module.rsplit(".", 1)[-1] if module.startswith("layercalc.layers.") else module
        entries.append({"type": names[0], "aliases": list(names[1:]), "family": family, "class": cls.__name__,
                        "keras": list(getattr(cls, "keras_classes", {}) or {}),
                        "pytorch": list(getattr(cls, "torch_classes", ()) or ())})
    return entries


def render_catalog(entries: list[dict[str, Any]], width: int) -> str:
    """Grouped by family; each type on one row, its names after it (wrapped under them when long)."""
    from ..terminal import wrap, wrap_labelled

    def label(entry) -> str:
        return entry["type"] + (f" ({', '.join(entry['aliases'])})" if entry["aliases"] else "")

    column = min(max(len(label(e)) for e in entries), 20) + 4
    lines: list[str] = [wrap_labelled("type (aliases)".ljust(column), "Python class · PyTorch modules · Keras classes",
                                      width), ""]
    family = None
    for entry in entries:
        if entry["family"] != family:
            family = entry["family"]
            lines += ([""] if len(lines) > 2 else []) + [f"{family}:"]
        names = [entry["class"]]
        if entry["pytorch"]:
            names.append("PyTorch " + ", ".join(entry["pytorch"]))
        if entry["keras"]:
            names.append("Keras " + ", ".join(entry["keras"]))
        head = f"  {label(entry)}"
        if len(head) + 2 > column:                 # a long name: its names on the next line
            lines.append(head)
            head = ""
        lines.append(wrap_labelled(head.ljust(column), " · ".join(names), width))
    count = len(entries)
    aliases = sum(len(e["aliases"]) for e in entries)
    lines += ["", wrap(f"{count} layer types ({aliases} aliases). A type's fields: layercalc TYPE --help, or "
                       f"layercalc schema; the rules: docs/layer-types.md and docs/conventions.md.", width)]
    return "\n".join(lines)


def types_command(
    fmt: Annotated[str, typer.Option("--format", "-f", metavar="text|json",
                                     help="text (grouped by family) or json (one object per type)")] = "text",
) -> None:
    """Every layer type: its family, aliases, Python class, Keras classes (and PyTorch modules where declared)."""
    from ..terminal import terminal_width

    fmt = _check_choice(fmt, ("text", "json"), "--format")
    entries = layer_catalog()
    if fmt == "json":
        import json
        print(json.dumps(entries, indent=2, ensure_ascii=False))
    else:
        print(render_catalog(entries, terminal_width()))
