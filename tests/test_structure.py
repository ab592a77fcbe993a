"""The code's shape: no import cycle (function-level imports included), no reference outside the repository."""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("experiments", "analysis")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every project module ``name`` imports, wherever the import statement is (module, function, method)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports pkg.mod when that is a module, else a name of pkg
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:   # a.b.c where only a.b is ours: a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, result, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return result


def test_the_import_graph_sees_function_level_and_relative_imports():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert "experiments.runtime" in graph["experiments.harness.config"]          # inside job_spec()
    assert "experiments.conv.layout" in graph["experiments.conv.lowp"]           # from .layout import ...
    assert "experiments.runtime" in graph["experiments.conv.api"]                # from .. import runtime
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_experiments_or_analysis():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    assert _cycles(graph) == []


def _package(module: str) -> str:
    """The package a module belongs to in docs/design.md's layers: analysis, experiments.<name> or experiments."""
    parts = module.split(".")
    return "analysis" if parts[0] == "analysis" else ".".join(parts[:2])


def _layers() -> dict[str, int]:
    """docs/design.md's "Layers" list: package -> its layer, lowest 0."""
    text = (REPO / "docs" / "design.md").read_text()
    section = text.split("### Layers", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^ {4}(\d)  (.+)$", section, re.MULTILINE)
    assert rows, "docs/design.md has no layer list under ### Layers"
    return {package.strip(): int(layer) for layer, packages in rows for package in packages.split(",")}


def _upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    return sorted(f"{module} ({_package(module)}, layer {layers[_package(module)]}) imports {target} "
                  f"({_package(target)}, layer {layers[_package(target)]})"
                  for module, targets in graph.items() for target in targets
                  if _package(target) != _package(module)
                  and layers[_package(target)] >= layers[_package(module)])


def test_packages_import_only_lower_layers_of_the_design():
    modules = _modules()
    graph = {name: _imports(name, path, set(modules)) for name, path in modules.items()}
    layers = _layers()
    unplaced = {_package(m) for m in modules} - set(layers)
    assert not unplaced, f"packages without a layer in docs/design.md: {sorted(unplaced)}"
    assert _upward_imports(graph, layers) == []


def test_an_upward_import_is_named():
    graph = {"experiments.conv.api": {"experiments.harness.config"}, "experiments.harness.config": set()}
    assert _upward_imports(graph, {"experiments.conv": 1, "experiments.harness": 4}) == [
        "experiments.conv.api (experiments.conv, layer 1) imports experiments.harness.config "
        "(experiments.harness, layer 4)"]
    assert _upward_imports({"experiments.harness.config": {"experiments.conv.api"}},
                           {"experiments.conv": 1, "experiments.harness": 4}) == []


def test_code_cites_no_file_outside_the_repository():
    """Every DESIGN.md-like reference points into the repository (docs/design.md), never a team folder."""
    outside = re.compile(r"\.\./shared|/work/shared|\bDESIGN\.md\b|\bENVIRONMENT\.md\b")
    files = [p for pattern in ("*.py", "*.yaml", "*.hip", "*.h", "*.sh", "*.md", "Makefile")
             for p in REPO.glob(f"**/{pattern}")
             if not {".venv", ".git", "outputs", "multirun", "reports"} & set(p.relative_to(REPO).parts)
             and p != Path(__file__)]
    hits = [f"{p.relative_to(REPO)}:{i}" for p in files
            for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if outside.search(line)]
    assert hits == []
    cited = {m.group(0) for p in files for m in re.finditer(r"docs/[\w./-]+\.md", p.read_text(errors="replace"))}
    assert cited and all((REPO / path).is_file() for path in cited), cited
