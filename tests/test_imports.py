"""The import graph of app/: no module imports itself back through others (a cycle), function-level imports
included, and the core imports no domain."""

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in APP.rglob("*.py"):
        parts = path.relative_to(APP.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The app modules `name` imports anywhere in its file; a package's __init__ counts as imported with any of its
    modules, except by a module inside that package (which it runs within)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importer's package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in modules else base)
    found = set()
    for target in targets:
        while target in modules or target.startswith("app."):
            if target in modules and not (name == target or name.startswith(target + ".")):
                found.add(target)
            target = target.rpartition(".")[0]
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycle_in_app():
    assert _cycles(_graph()) == []


def test_the_core_imports_no_domain():
    outside = {
        (name, target)
        for name, targets in _graph().items()
        if name.startswith("app.core")
        for target in targets
        if not target.startswith("app.core")
    }
    assert outside == set()


def test_a_cycle_is_found_even_through_a_function_level_import(tmp_path):
    graph = _graph()
    graph["app.rules.attributes"] = graph["app.rules.attributes"] | {"app.customers.service"}  # as it once was
    assert any({"app.rules.attributes", "app.customers.service"} <= set(c) for c in _cycles(graph))
    source = tmp_path / "app" / "a.py"
    source.parent.mkdir()
    source.write_text("def f():\n    from app.b import g\n")
    assert _imports("app.a", source, {"app.a": source, "app.b": source}) == {"app.b"}
