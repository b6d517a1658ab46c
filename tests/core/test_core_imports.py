"""The import structure: every module imports alone, and the pure core imports nothing effectful.

The pure core (ARCHITECTURE.md) takes data and returns data. Its imports are read from the source (every
`import` and `from ... import`, inside functions too; not those under `if TYPE_CHECKING:`, which never
run), followed through controller's own modules, and must never reach a process, a database, git or the
shell half of the package.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "controller"

# Not importable outside its tool: alembic's migration environment runs only under `alembic upgrade`.
NOT_IMPORTABLE_ALONE = {"controller.audit.migrations.env": "alembic's env.py needs alembic's context",
                        "controller.cli.__main__": "runs the command line when imported (python -m)"}

PURE_CORE = [
    "controller.cib.*",
    "controller.corosync.*",
    "controller.plan",
    "controller.decide",
    "controller.disruption",
    "controller.health",
    "controller.observed",
    "controller.impact",
    "controller.gaps",
    "controller.blame",
    "controller.preview",
    "controller.limits",
    "controller.desired.state",
    "controller.desired.crm_syntax",
    "controller.desired.policy",
    "controller.desired.policy_sections",
    "controller.desired.substitute",
    "controller.desired.findings",
    "controller.desired.checks",
    "controller.desired.agents",
    "controller.desired.secret_refs",
    "controller.desired.secret_gate",
    "controller.secrets.model",
    "controller.snapshot",
]

# Effects: processes, databases, git, and the shell half of controller/.
FORBIDDEN = ("subprocess", "sqlalchemy", "alembic", "psycopg", "git", "controller.cluster",
             "controller.audit", "controller.source", "controller.sandbox", "controller.command",
             "controller.agent", "controller.reconcile", "controller.cli")

# Core modules that reach an effect today, each with the chain that does it. The test fails when one of
# them no longer does (take it off) or when any other core module starts to.
# lead: remove as each is fixed
KNOWN_IMPURE: dict[str, str] = {
}


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def all_modules() -> list[str]:
    return sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


@cache
def module_file(name: str) -> Path | None:
    """The source file of a controller module (a package's __init__.py), None for anything else."""
    if name != "controller" and not name.startswith("controller."):
        return None
    base = REPO.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def direct_imports(name: str) -> tuple[str, ...]:
    """Every module `name` imports, at any depth of its code, plus the packages that importing it runs."""
    path = module_file(name)
    assert path is not None, name
    is_package = path.name == "__init__.py"
    found: list[str] = []
    parts = name.split(".")
    found += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b first
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.append(base)
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            found += [f"{base}.{alias.name}" for alias in node.names
                      if module_file(f"{base}.{alias.name}") is not None]
    return tuple(dict.fromkeys(m for m in found if m and m != name))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of the tree except the bodies of `if TYPE_CHECKING:` (their `else:` runs)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo += node.orelse
        else:
            todo += ast.iter_child_nodes(node)
    return out


def is_forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


def effect_chain(start: str) -> list[str] | None:
    """The import chain from `start` to the first forbidden module (breadth first: a shortest one)."""
    parent: dict[str, str | None] = {start: None}
    queue = [start]
    while queue:
        current = queue.pop(0)
        for imported in direct_imports(current):
            if imported in parent:
                continue
            parent[imported] = current
            if is_forbidden(imported):
                chain = [imported]
                at: str | None = current
                while at is not None:
                    chain.append(at)
                    at = parent[at]
                return chain[::-1]
            if module_file(imported) is not None:
                queue.append(imported)
    return None


def core_modules() -> list[str]:
    out = []
    for pattern in PURE_CORE:
        if pattern.endswith(".*"):
            package = pattern[:-2]
            out += [m for m in all_modules() if m == package or m.startswith(package + ".")]
        elif module_file(pattern) is not None:  # modules still to come (decide) are skipped until then
            out.append(pattern)
    return out


def test_the_import_walk_sees_imports_inside_functions_and_relative_ones() -> None:
    assert "controller.command" in direct_imports("controller.desired.crm")
    assert "controller.cib.xml" in direct_imports("controller.cib.document")
    assert "controller" in direct_imports("controller.cib.document")
    # type-only imports never run: the package facade loads its names on first use
    assert "controller.desired.state" not in direct_imports("controller.desired")
    # audit/store imports controller.command inside a function only
    assert "controller.command" in direct_imports("controller.audit.store")
    chain = effect_chain("controller.audit.store")
    assert chain is not None and chain[0] == "controller.audit.store" and is_forbidden(chain[-1])
    assert {"controller.cib.patchset", "controller.plan", "controller.desired.state"} <= set(core_modules())


def test_the_pure_core_imports_nothing_effectful() -> None:
    impure = {m: effect_chain(m) for m in core_modules()}
    new = {m: " -> ".join(c) for m, c in impure.items() if c is not None and m not in KNOWN_IMPURE}
    assert not new, "the pure core reaches an effect:\n" + "\n".join(new.values())
    fixed = sorted(m for m in KNOWN_IMPURE if impure.get(m) is None)
    assert not fixed, f"no longer impure, take them off KNOWN_IMPURE: {fixed}"


_IMPORT_EACH = r"""
import importlib, json, sys, traceback
failures = []
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "controller" or m.startswith("controller.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException:
        failures.append([name, traceback.format_exc(limit=-3)])
print(json.dumps(failures))
"""


def test_every_controller_module_imports_alone() -> None:
    """Each module imported first, with no other controller module loaded (one interpreter, its
    sys.modules emptied of controller before each): an import circle or an import that only works after
    another module shows here, named."""
    names = [m for m in all_modules() if m not in NOT_IMPORTABLE_ALONE]
    assert len(names) > 50
    r = subprocess.run([sys.executable, "-c", _IMPORT_EACH, json.dumps(names)], capture_output=True,
                       text=True, timeout=240, cwd=REPO)
    assert r.returncode == 0, r.stderr
    failures = json.loads(r.stdout.splitlines()[-1])
    assert not failures, f"{failures[0][0]} cannot be imported alone:\n{failures[0][1]}" + (
        f"\n(and {len(failures) - 1} more: {', '.join(f[0] for f in failures[1:])})" if failures[1:] else "")
