"""The package layout keeps its promises: the product path needs no torch, the torch side
lives in crdr_codec/nn (and train, eval, metrics), and no two modules import each other,
directly or through others (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "crdr_codec"
#: folders whose modules may import torch; everything else is the torch-free product path
TORCH_SIDE = {"nn", "train", "eval", "metrics"}
#: product-path modules that reach the torch side only in a function, for a feature that
#: needs torch (refinement, exporting a .pt on first use, LPIPS in crdr view, tensor
#: conversions for training, the
#: training/eval/bench commands), after checking that torch is installed
LAZY_TORCH_OK = {"codec", "weights_search", "view.session", "view.command", "cli.evaluate",
                 "cli.bench", "cli.train", "cli.export", "image_io"}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        rel = p.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package (and 'torch') that ``name`` imports, anywhere in the file."""
    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if name == "":
        pkg = []
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" if mod else a.name for a in node.names]
        for t in targets:
            if t.split(".")[0] == "torch":
                found.add("torch")
            t = t[len("crdr_codec."):] if t.startswith("crdr_codec.") else t
            if t in modules and t != name:
                found.add(t)
    return found


def test_no_import_cycles():
    modules = _modules()
    graph = {m: _imports(m, p, modules) - {"torch", ""} for m, p in modules.items() if m}
    # a package's __init__ importing its own submodules is not a cycle of concern
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + ".") and t}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_product_path_does_not_import_torch():
    """Outside the torch side, torch is imported only lazily, by the modules listed."""
    modules = _modules()
    for name, path in modules.items():
        if not name or name.split(".")[0] in TORCH_SIDE:
            continue
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        for n in top:  # module level: never torch, never the torch side
            names = [a.name for a in n.names] if isinstance(n, ast.Import) else [n.module or ""]
            for t in names:
                assert t.split(".")[0] != "torch", (name, t)
                if isinstance(n, ast.ImportFrom) and n.level:
                    assert t.split(".")[0] not in TORCH_SIDE or name.startswith("cli."), (name, t)
        reaches = _imports(name, path, modules)
        if "torch" in reaches or any(t.split(".")[0] in TORCH_SIDE for t in reaches):
            assert name in LAZY_TORCH_OK, f"{name} reaches torch; keep it lazy and list it"
