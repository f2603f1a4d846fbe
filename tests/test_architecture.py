"""The package's rules (ARCHITECTURE.md), read from the source: imports point down, no module
uses another's private name, each third-party boundary has one owner."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxppo"
BENCH = PACKAGE.parent / "bench"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text())


def _imports(name: str, top_level_only: bool = False) -> set[str]:
    """The jaxppo modules ``name`` imports (at module level only, when asked)."""
    tree = _tree(name)
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in MODULES and m != name}


def _third_party(name: str) -> set[str]:
    found = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_config_imports_no_other_jaxppo_module():
    assert _imports("jaxppo.config") == set()


def test_module_level_imports_have_no_cycle():
    graph = {name: _imports(name, top_level_only=True) - {"jaxppo"} for name in MODULES}
    done, path = set(), []

    def visit(name):
        if name in path:
            pytest.fail(f"import cycle: {' -> '.join(path[path.index(name):] + [name])}")
        if name in done:
            return
        path.append(name)
        for dep in graph[name]:
            visit(dep)
        path.pop()
        done.add(name)

    for name in graph:
        visit(name)


def _private_uses(path: pathlib.Path, own: str | None) -> list[str]:
    """Private names of jaxppo modules other than ``own`` that ``path`` uses: as
    ``from module import _name`` or as ``alias._name`` of an imported module."""
    tree = ast.parse(path.read_text())
    aliases, found = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxppo"):
            for a in node.names:
                if f"{node.module}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                elif a.name.startswith("_") and node.module != own:
                    found.append(f"from {node.module} import {a.name}")
        elif isinstance(node, ast.Import):
            aliases.update({a.asname or a.name: a.name for a in node.names if a.name in MODULES})
        elif (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
              and ast.unparse(node.value.func) == "importlib.import_module"
              and isinstance(node.targets[0], ast.Name)):
            # sweep_lib = importlib.import_module("jaxppo.sweep")
            aliases[node.targets[0].id] = ast.literal_eval(node.value.args[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
                and aliases.get(node.value.id, own) != own):
            found.append(f"{node.value.id}.{node.attr} (line {node.lineno})")
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_uses_another_modules_private_name(name):
    assert _private_uses(MODULES[name], own=name) == []


def test_no_bench_script_uses_a_private_name():
    for path in sorted(BENCH.glob("*.py")):
        assert _private_uses(path, own=None) == [], path.name


ENVS = {name for name in MODULES if name == "jaxppo.envs" or name.startswith("jaxppo.envs.")}


@pytest.mark.parametrize(("library", "owners"), [
    ("flax.linen", {"jaxppo.networks"}),
    # gymnax is jaxppo's own env format: the envs package reads it, nothing outside it.
    ("gymnax", ENVS - {"jaxppo.envs." + suite for suite in ("brax", "craftax", "jumanji",
                                                             "navix", "playground",
                                                             "xminigrid")}),
    ("orbax", {"jaxppo.rundir"}),
    # Each suite beyond gymnax is imported by its own adapter only.
    ("navix", {"jaxppo.envs.navix"}),
    ("xminigrid", {"jaxppo.envs.xminigrid"}),
    ("jumanji", {"jaxppo.envs.jumanji"}),
    ("craftax", {"jaxppo.envs.craftax"}),
    ("brax", {"jaxppo.envs.brax", "jaxppo.envs.playground"}),
    ("mujoco_playground", {"jaxppo.envs.playground"}),
])
def test_each_library_boundary_has_one_owner(library, owners):
    users = {name for name in MODULES
             if any(m == library or m.startswith(library + ".") for m in _third_party(name))}
    assert users <= owners, users - owners
