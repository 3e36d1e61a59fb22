"""The shape of the code, checked from its source: the core never names a place; nothing imports in a circle.

Every ``import`` of every module under ``ambient/`` and ``integrations/`` is read
with ``ast`` (those inside functions too, since they run just the same; only
``if TYPE_CHECKING:`` blocks, which never run, are left out).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ambient", "integrations")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _runs(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run: ``if TYPE_CHECKING:`` bodies are skipped."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in (child, *_runs(child)))
            continue
        yield node
        yield from _runs(node)


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules (of any package) that the module ``name`` at ``path`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runs(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                whole = f"{base}.{alias.name}"
                found.add(whole if whole in known else base)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(path, name, known) & known for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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
            if len(component) > 1 or v in edges.get(v, ()):
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_core_never_imports_a_place_or_the_tests() -> None:
    modules = project_modules()
    known = set(modules)
    offenders = {
        f"{name} imports {target}"
        for name, path in modules.items()
        if name.startswith("ambient")
        for target in imports_of(path, name, known | {"integrations", "tests"})
        if target.split(".")[0] in ("integrations", "tests")
    }
    assert not offenders, sorted(offenders)


def test_no_module_imports_in_a_circle() -> None:
    assert cycles(graph()) == []


def test_the_checks_can_fail(tmp_path: Path) -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from ambient import daemon\nfrom . import hub\ndef f():\n    import integrations.notes.source\n"
        "if TYPE_CHECKING:\n    import integrations.speech\n"
    )
    known = {"ambient.daemon", "ambient.hub", "integrations.notes.source", "integrations.speech"}
    seen = imports_of(probe, "ambient.probe", known)
    # relative and in-function imports count; the TYPE_CHECKING one never runs, so it does not
    assert seen == {"ambient.daemon", "ambient.hub", "integrations.notes.source"}
