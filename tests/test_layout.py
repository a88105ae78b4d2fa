"""The import graph: no module-level cycles, the torch-free places never import torch, and the
layout table of DEVELOPERS.md says what each place really imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "taugate"
TORCH_FREE = ("taugate", "taugate.errors", "taugate.io", "taugate.layers", "taugate.activations", "taugate.spec", "taugate.artifact",
              "taugate.backends", "taugate.inputs", "taugate.kernels", "taugate.runtime",
              "taugate.export", "taugate.export_check", "taugate.agreement", "taugate.data", "taugate.stats",
              "taugate.tables", "taugate.predictor", "taugate.mlp_predictor")  # fmt: skip


def _name(p: Path) -> str:
    parts = list(p.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path, *, module_level: bool) -> set[str]:
    """Modules imported by ``path``: only top-level statements, or every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in tree.body if module_level else ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:  # ``from taugate import backends``: the submodule itself
                full = f"{node.module}.{a.name}"
                out.add(full if full in MODULES else node.module)
    return out


def _place(module: str) -> str:
    """``taugate.<package>`` for a module inside a package, else the module itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (PKG / parts[-1]).is_dir() else module


def test_no_module_level_import_cycles():
    graph = {
        m: {i for i in _imports(p, module_level=True) if i in MODULES} for m, p in MODULES.items()
    }
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n) :] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n, [*stack, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_torch_free_places_never_import_torch():
    for m, p in MODULES.items():
        if _place(m) in TORCH_FREE or m in TORCH_FREE:
            bad = {i for i in _imports(p, module_level=False) if i.split(".")[0] == "torch"}
            assert not bad, f"{m} imports {sorted(bad)}"
            deps = {i for i in _imports(p, module_level=False) if i in MODULES}
            leaks = {d for d in deps if _place(d) not in TORCH_FREE and d not in TORCH_FREE}
            assert not leaks, f"{m} (torch-free) imports {sorted(leaks)}, which may import torch"


def _table() -> dict[str, tuple[set[str], set[str]]]:
    """place -> (module-level imports, imports inside functions) from DEVELOPERS.md."""
    rows = {}
    text = (ROOT / "DEVELOPERS.md").read_text(encoding="utf-8")
    for line in text.splitlines():
        m = re.match(r"^\| `taugate/([\w/]+?)(?:\.py)?/?` \|[^|]*\|([^|]*)\|([^|]*)\|$", line)
        if m:
            name = "taugate" if m.group(1) == "__init__" else "taugate." + m.group(1).strip("/")

            def places(cell: str) -> set[str]:
                return {f"taugate.{w}" for w in re.findall(r"[a-z_]+", cell)}

            rows[name] = (places(m.group(2)), places(m.group(3)))
    return rows


def test_developers_md_layout_table_matches_the_imports():
    table = _table()
    assert len(table) > 20, "the layout table of DEVELOPERS.md was not found"
    for m, p in MODULES.items():
        place = _place(m)
        assert place in table, f"{place} (holding {m}) is missing from the DEVELOPERS.md table"
        top, lazy = table[place]

        used = {
            level: {_place(i) for i in _imports(p, module_level=level) if i in MODULES}
            - {place, "taugate"}
            for level in (True, False)
        }
        assert used[True] <= top, f"{m} imports {sorted(used[True] - top)} at module level"
        assert used[False] <= top | lazy, f"{m} imports {sorted(used[False] - top - lazy)}"
    for place in table:
        assert place in MODULES or any(_place(m) == place for m in MODULES), (
            f"{place}: no such place"
        )
