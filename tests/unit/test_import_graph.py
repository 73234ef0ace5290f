"""The import graph of ``mailwarden``: no cycles, and arrows only point down.

Parses every module's imports with ``ast`` (nothing is executed; imports inside
functions count too: a lazy import is still a dependency; those under
``if TYPE_CHECKING:`` do not, they never run). ``LAYERS`` below is the one
table of who may not import whom; a failure names the module, the import and the rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "src" / "mailwarden"
DAEMONS = frozenset({"policyd", "milter", "lmtpd", "pipe", "serve", "daemon", "fetch"})

# package -> (packages it must not import, why). A package is the first name below
# ``mailwarden`` (``core``, ``store``, ... or a top-level module such as ``config``).
LAYERS: dict[str, tuple[frozenset[str], str]] = {
    "core": (
        frozenset({"store", "admin", "ops", "api", "delivery", *DAEMONS}),
        "core is pure decisions: facts in, Verdict out",
    ),
    "store": (frozenset({"admin", "ops", "api", *DAEMONS}), "the store serves every program"),
    "delivery": (
        frozenset({"lmtpd", "pipe", "admin", "ops", "api", "serve", "policyd", "milter", "fetch"}),
        "the delivery core knows none of its adapters",
    ),
    "daemon": (
        frozenset({"policyd", "milter", "lmtpd", "pipe", "serve", "admin", "ops", "api", "fetch"}),
        "the skeleton is used by the daemons, never the other way",
    ),
    **{
        name: (frozenset({"admin", "api"}), "a daemon does not depend on the admin CLI")
        for name in DAEMONS - {"daemon"}
    },
    # The fetcher is a client of the MTA like any sender: it reaches local delivery only
    # through SMTP, never by importing the delivery core or another daemon.
    "fetch": (
        frozenset({"admin", "api", "ops", "delivery", "policyd", "milter", "lmtpd", "pipe"}),
        "the fetcher hands mail to the MTA over SMTP; it imports no other daemon",
    ),
    # Imports write only through the operations layer, like any admin action.
    "imports": (
        frozenset({"admin", "api", "delivery", *DAEMONS}),
        "an import is an admin action: it goes through ops, never the CLI or a daemon",
    ),
}
# Module cycles inside one package, known and owned elsewhere; remove the entry with the
# cycle. setup.answers imports setup.targets lazily (socket defaults below Postfix's
# queue directory) and targets imports answers; doctor.smarthost imports doctor.checks
# lazily (``Failed``) and checks imports smarthost: both new in this session's work.
KNOWN_MODULE_CYCLES: frozenset[tuple[str, ...]] = frozenset()
# No program reaches into another program's entry point (give it a public function).
MAIN_ALLOWED_FROM = frozenset({"admin"})


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except the bodies of ``if TYPE_CHECKING:`` (no run-time import)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if _type_checking(node):
            assert isinstance(node, ast.If)
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _imports(path: Path, name: str) -> Iterator[tuple[str, int]]:
    """``(imported module, line)`` for every ``mailwarden`` import in ``path``."""
    is_package = path.name == "__init__.py"
    for node in _nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno  # a submodule, or a name in base
            yield base, node.lineno


def graph() -> dict[str, dict[str, int]]:
    """module -> {imported mailwarden module: first line}."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    out: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        deps: dict[str, int] = {}
        for target, line in _imports(path, name):
            if target in modules and target != name:
                deps.setdefault(target, line)
        out[name] = deps
    return out


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                found.append(sorted(scc))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _where(g: dict[str, dict[str, int]], src_pkg: str, dst_pkg: str) -> str:
    for mod, deps in sorted(g.items()):
        for target, line in deps.items():
            if package(mod) == src_pkg and package(target) == dst_pkg:
                return f"{mod} line {line} imports {target}"
    return "?"


def test_no_cycles_between_packages() -> None:
    g = graph()
    edges: dict[str, set[str]] = {}
    for mod, deps in g.items():
        for target in deps:
            if package(mod) != package(target):
                edges.setdefault(package(mod), set()).add(package(target))
    problems = []
    for scc in _cycles(edges):
        arrows = [_where(g, a, b) for a in scc for b in scc if a != b and b in edges.get(a, set())]
        problems.append(f"packages {' <-> '.join(scc)}: " + "; ".join(arrows))
    assert not problems, "import cycles between packages:\n  " + "\n  ".join(problems)


def test_no_cycles_between_modules() -> None:
    g = graph()
    edges = {mod: {t for t in deps if not mod.startswith(t + ".")} for mod, deps in g.items()}
    cycles = [" <-> ".join(scc) for scc in _cycles(edges) if tuple(scc) not in KNOWN_MODULE_CYCLES]
    assert not cycles, "import cycles between modules:\n  " + "\n  ".join(cycles)


def test_layers() -> None:
    problems = []
    for mod, deps in sorted(graph().items()):
        rule = LAYERS.get(package(mod))
        if rule is None:
            continue
        forbidden, why = rule
        for target, line in deps.items():
            if package(target) in forbidden:
                problems.append(f"{mod} line {line} imports {target}: {why}")
    assert not problems, "upward imports:\n  " + "\n  ".join(problems)


def test_no_program_reaches_into_another_programs_main() -> None:
    problems = []
    for mod, deps in sorted(graph().items()):
        for target, line in deps.items():
            if not target.endswith(".__main__") or package(mod) in MAIN_ALLOWED_FROM:
                continue
            if package(target) != package(mod):
                problems.append(f"{mod} line {line} imports {target}")
    assert not problems, (
        "imports of another program's __main__ (give it a public function):\n  "
        + "\n  ".join(problems)
    )


def test_the_graph_sees_lazy_imports_and_the_table_bites() -> None:
    g = graph()
    assert "mailwarden.lmtpd.workers" in g["mailwarden.lmtpd.server"]
    assert "mailwarden.policyd.__main__" in g["mailwarden.admin.policyd"]  # inside a function
    assert "admin" in LAYERS["policyd"][0] and "policyd" in LAYERS["daemon"][0]


def test_type_checking_imports_are_not_dependencies(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mailwarden.admin\n"
        "else:\n    import mailwarden.config\n"
    )
    found = {target for target, _ in _imports(path, "mailwarden.x")}
    assert "mailwarden.admin" not in found and "mailwarden.config" in found


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("from mailwarden.daemon import listen", "mailwarden.x.y", "mailwarden.daemon.listen"),
        ("from . import listen", "mailwarden.daemon.z", "mailwarden.daemon.listen"),
        ("from .listen import parse", "mailwarden.daemon.z", "mailwarden.daemon.listen"),
        ("import mailwarden.config", "mailwarden.x", "mailwarden.config"),
    ],
)
def test_imports_are_resolved(tmp_path: Path, source: str, module: str, expected: str) -> None:
    path = tmp_path / "m.py"
    path.write_text(source + "\n")
    assert expected in {target for target, _ in _imports(path, module)}
