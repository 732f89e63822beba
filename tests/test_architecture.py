"""The folder tree is the architecture: each layer imports only the layers below it,
no module imports itself back through others, and the names of tasks in queued
messages stay what they were."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import get_args

import pytest

from backend.jobs import extensions, states
from devtools.processes import PROJECT_ROOT

BACKEND = PROJECT_ROOT / "backend"
# What each layer may import at module level (type-only imports and imports inside
# functions, such as the factory's, are not edges: they run after every module loaded).
ALLOWED = {
    "backend.jobs": {"backend.jobs"},
    "backend.taskqueue": {"backend.taskqueue", "backend.jobs"},
    "backend.ops": {"backend.ops", "backend.jobs", "backend.taskqueue"},
    "backend.api": {"backend.api", "backend.jobs", "backend.ops", "backend.tasks"},
}
SUBPACKAGES = sorted(ALLOWED)


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(path: Path) -> set[str]:
    """The backend modules `path` imports when it is imported (not under TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    # `from backend import x` also names the package itself, which every import of a submodule loads.
    return {name for name in found if name.startswith("backend.")}


def backend_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in BACKEND.rglob("*.py")}
    return {
        name: {m for m in module_level_imports(path) if m in modules and m != name} for name, path in modules.items()
    }


def test_no_backend_module_imports_itself_back():
    graph = backend_graph()
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            pytest.fail("import cycle: " + " -> ".join([*trail[trail.index(name):], name]))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


@pytest.mark.parametrize("layer", SUBPACKAGES)
def test_each_layer_imports_only_the_layers_below_it(layer):
    for name, imported in backend_graph().items():
        if name == layer or name.startswith(layer + "."):
            outside = {m for m in imported if not any(m == a or m.startswith(a + ".") for a in ALLOWED[layer])}
            assert not outside, f"{name} imports {sorted(outside)}"


@pytest.mark.parametrize("layer", SUBPACKAGES)
def test_each_subpackage_says_what_it_holds_and_who_imports_it(layer):
    doc = importlib.import_module(layer).__doc__ or ""
    assert "Imported by:" in doc, f"{layer}'s docstring must say which processes import it"


def test_task_names_in_messages_are_those_of_earlier_releases(app):
    """A message queued before an upgrade names its task; the upgraded worker must know it."""
    names = {name for name in extensions.celery_app(app).tasks if not name.startswith("celery.")}
    assert names >= {"long_task", "add", "periodic.heartbeat"}


def test_the_job_states_are_defined_once():
    assert set(get_args(states.JobState)) == set(states.ALL_STATES)
    assert states.FINAL_STATES <= set(states.ALL_STATES)
