"""The import graph of layercalc/ as a layered house (issue 19; docs/architecture.md draws it).

Parsed with ``ast``, nothing imported. An *edge* is every ``import`` of a layercalc module, at module level or inside
a function (``if TYPE_CHECKING:`` blocks excepted: they never run). Three rules:

1. **Upward imports**: :data:`LAYERS` orders the modules from the bottom up; an import from a lower layer to a higher
   one is allowed at most :data:`MAX_UPWARD` times, each with a comment saying ``upward`` and why (on the import's
   lines or the comment lines just above it).
2. **Circles**: an upward import closes a circle by definition (the higher module depends on the lower one); apart
   from those declared ones, no circle is longer than a pair, and a pair's imports carry a comment saying why
   (``pair``).
3. **Deferred imports**: an import inside a function is allowed only with a comment naming what deferring it saves
   (``deferred: …``, on its lines or just above; or one ``# deferred imports (a, b): …`` line at the top of the
   module for every such import of the modules it names). ``errors`` is always loaded: it is never imported inside a
   function.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "layercalc"

#: the layers, bottom first; a module matches the first pattern that names it (``layers.*``: every family module)
LAYERS: list[tuple[str, ...]] = [
    ("errors", "names", "notes", "terminal", "display", "formatting", "shapes", "coverage", "report",
     "kernels"),                                                                  # text, numbers, rendering
    ("layers.base",),                                                             # the layer protocol, the registry
    ("rules", "explain"),                                                         # what the layer rules share
    ("layers.*",),                                                                # the layer families
    ("layers",),                                                                  # the package: the start families
    ("saved",),                                                                   # training: saved for backward
    ("graph", "blocks", "sizing", "solving", "serving", "training"),              # networks, single-layer sizing
    ("weights",),                                                                 # .npz/.npy, keys, shapes, init
    ("executor",),                                                                # the NumPy forward pass
    ("spec",),                                                                    # parse and validate specs
    ("zoo", "importers", "importers.*"),                                          # bundled specs, other tools' files
    ("sources",),                                                                 # load, convert, weights files
    ("verify", "conformance", "drawing", "network_explain"),                      # library jobs over networks
    ("cli", "cli.*"),                                                             # the command line
    ("", "__main__"),                                                             # the package's lazy exports
]

#: the most imports from a lower layer back up to a higher one
MAX_UPWARD = 3


def layer_of(module: str) -> int:
    for index, patterns in enumerate(LAYERS):
        for pattern in patterns:
            if module == pattern or (pattern.endswith(".*") and module.startswith(pattern[:-1])):
                return index
    raise AssertionError(f"layercalc.{module} is in no layer of LAYERS: place it")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


class Import:
    """One import statement of a layercalc module: where, the modules it names, inside a function or not, and the
    comments on its lines and on the comment lines just above it."""

    def __init__(self, module: str, node: ast.stmt, targets: list[str], in_function: bool, lines: list[str],
                 path: str = "") -> None:
        self.module, self.targets, self.in_function, self.line = module, targets, in_function, node.lineno
        self.path = path
        end = node.end_lineno or node.lineno
        comments = [line.split("#", 1)[1] for line in lines[node.lineno - 1:end] if "#" in line]
        above = node.lineno - 2
        while above >= 0 and lines[above].strip().startswith("#"):
            comments.append(lines[above].strip()[1:])
            above -= 1
        self.comment = " ".join(comments)

    def __repr__(self) -> str:
        return f"{self.path}:{self.line} → {', '.join(self.targets)}"


def _targets(module: str, path: Path, node: ast.stmt, known: dict[str, Path]) -> list[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = package.split(".") if package else []
            base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            if not (node.module or "").startswith("layercalc"):
                return []
            target = (node.module or "").removeprefix("layercalc").removeprefix(".")
        names = []
        for alias in node.names:
            child = f"{target}.{alias.name}" if target else alias.name
            names.append(child if child in known else target)
        # (the root package itself, ``from .. import __version__``, is where every module lives: always loaded)
        return [n for n in dict.fromkeys(names) if n in known and n not in (module, "")]
    if isinstance(node, ast.Import):
        names = [a.name.removeprefix("layercalc").removeprefix(".") for a in node.names
                 if a.name == "layercalc" or a.name.startswith("layercalc.")]
        return [n for n in names if n in known and n != module]
    return []


def imports() -> list[Import]:
    known = modules()
    found = []
    for module, path in known.items():
        text = path.read_text()
        lines = text.splitlines()
        tree = ast.parse(text)

        def walk(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    for orelse in child.orelse:
                        walk(orelse, in_function)
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    targets = _targets(module, path, child, known)
                    if targets:
                        found.append(Import(module, child, targets, in_function, lines,
                                            str(path.relative_to(ROOT.parent))))
                    continue
                walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

        walk(tree, False)
    return found


def _upward(found: list[Import]) -> list[tuple[Import, str]]:
    return [(imp, target) for imp in found for target in imp.targets if layer_of(imp.module) < layer_of(target)]


def test_every_module_has_a_layer():
    for module in modules():
        layer_of(module)


def test_at_most_three_upward_imports_each_justified():
    upward = _upward(imports())
    unexplained = [imp for imp, _ in upward if "upward" not in imp.comment]
    assert not unexplained, f"imports back up without an 'upward' comment saying why: {unexplained}"
    pairs = sorted({(imp.module, target) for imp, target in upward})
    assert len(pairs) <= MAX_UPWARD, f"{len(pairs)} imports from a lower module back up (at most {MAX_UPWARD}): {pairs}"


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(sorted(component))
    return result


def test_no_circle_longer_than_a_justified_pair():
    found = imports()
    declared = {(imp.module, target) for imp, target in _upward(found)}
    edges: dict[str, set[str]] = {}
    for imp in found:
        for target in imp.targets:
            if (imp.module, target) not in declared:
                edges.setdefault(imp.module, set()).add(target)
    circles = [c for c in _strongly_connected(edges) if len(c) > 1]
    assert all(len(c) == 2 for c in circles), f"import circles longer than a pair: {[c for c in circles if len(c) > 2]}"
    for first, second in circles:
        between = [imp for imp in found if (imp.module, set(imp.targets)) in ((first, {second}), (second, {first}))
                   or (imp.module == first and second in imp.targets) or (imp.module == second and first in imp.targets)]
        assert any("pair" in imp.comment for imp in between), \
            f"the import circle {first} ↔ {second} has no comment saying why it is a pair: {between}"


def _module_wide_deferrals(path: Path) -> set[str]:
    """The modules a top-level ``# deferred imports (a, b, …): reason`` line of ``path`` names."""
    names: set[str] = set()
    for line in path.read_text().splitlines():
        match = re.match(r"#\s*deferred imports \(([^)]*)\):", line)
        if match:
            names |= {n.strip() for n in match.group(1).split(",")}
    return names


def test_imports_inside_functions_say_what_deferring_saves():
    known = modules()
    wide = {module: _module_wide_deferrals(path) for module, path in known.items()}
    errors_inside = [imp for imp in imports() if imp.in_function and "errors" in imp.targets]
    assert not errors_inside, f"errors is always loaded: import it at the top, not inside a function: {errors_inside}"
    silent = [imp for imp in imports() if imp.in_function
              and not re.search(r"\b(deferred|upward)\b[^:]*:\s*\S", imp.comment)
              and not all(target in wide[imp.module] for target in imp.targets)]
    assert not silent, (f"{len(silent)} imports inside functions without a comment naming what deferring them saves "
                        f"('# deferred: …'): {silent}")


def test_the_rules_catch_what_they_should():
    """The checker itself: a circle of three is found, an upward import is placed, a silent deferral is seen."""
    assert [sorted(c) for c in _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) if len(c) > 1] \
        == [["a", "b", "c"]]
    assert layer_of("layers.conv") > layer_of("layers.base") and layer_of("sources") > layer_of("importers.keras")
    tree = ast.parse("def f():\n    from .errors import SpecError\n")
    node = tree.body[0].body[0]             # type: ignore[attr-defined]
    imp = Import("spec", node, ["errors"], True, ["def f():", "    from .errors import SpecError"])
    assert imp.comment == "" and imp.in_function
