"""The house rules of saessak/ (docs/ARCHITECTURE.md), checked on the code's own imports.

- The root holds only the shared contract, at most ten modules, and imports nothing above it.
- Each pipeline stage is a package; a stage imports only the shared floor, itself and stages
  earlier in the pipeline, never a later one.
- No import loops between modules, counting imports made inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "saessak"

# The pipeline, in dependency order: a stage may import the ones before it.
STAGE_ORDER = ["pii", "data", "tokenizer", "model", "training", "pretrain", "tasks", "distill", "sft", "rl",
               "evals", "serve", "export", "report"]
# Stages a user runs as a command: each has its own cli.py.
COMMAND_STAGES = ["pii", "data", "tokenizer", "pretrain", "tasks", "distill", "sft", "rl", "evals", "serve", "export", "report"]
SHARED = {"__init__", "__main__", "cli", "errors", "io", "runfolder", "ledger", "recipes", "speedrun", "hangul"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """saessak modules `path` imports anywhere in its code (`from a import b` counts as a.b when b is a module)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("saessak"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("saessak"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in modules else node.module)
    out.discard(_module_name(path))
    return {m for m in out if m in modules}


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in STAGE_ORDER) else None


def test_the_root_holds_only_the_shared_contract():
    root_modules = {p.stem for p in ROOT.glob("*.py")}
    assert root_modules <= SHARED, f"modules at the root that belong to a stage: {root_modules - SHARED}"
    assert len(root_modules) <= 10 and not any(m.endswith("_cli") for m in root_modules)
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(STAGE_ORDER), packages ^ set(STAGE_ORDER)
    for stage in COMMAND_STAGES:
        assert (ROOT / stage / "cli.py").exists(), f"{stage}/ has no cli.py"


def test_no_stage_imports_a_later_stage_and_the_floor_imports_no_stage():
    modules = _modules()
    bad = []
    for name, path in modules.items():
        here = _stage_of(name)
        for dep in _imports(path, modules):
            there = _stage_of(dep)
            if there is None or there == here:
                continue
            if here is None and name != "saessak.cli":  # the CLI lists the stages' cli modules by name only
                bad.append(f"{name} (shared floor) imports stage {dep}")
            elif here is not None and STAGE_ORDER.index(there) > STAGE_ORDER.index(here):
                bad.append(f"{name} ({here}) imports {dep}, a later stage ({there})")
    assert not bad, "\n".join(bad)


def test_no_import_loops():
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    # A package's __init__ that hands names on is imported by its own submodules' absolute imports
    # only through Python's package machinery, not as a loop of code: leave the edge module -> its
    # own package out.
    for name, deps in graph.items():
        deps.difference_update({d for d in deps if name.startswith(d + ".")})
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                loop = stack[stack.index(dep):] + [dep]
                pytest.fail("import loop: " + " -> ".join(loop))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
