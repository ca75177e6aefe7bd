"""The import rules between mtlsearch's subpackages (docs/architecture.md, "Import rules").

The core is layered in the order of the flow: ``tasks`` < ``data`` < ``graph`` < ``engine`` <
``strategy`` < ``viz`` < ``export`` < ``study``. A module may import its own subpackage, the
subpackages below it and the base modules; never one above it, never the package root or the
top-level entry points (``cli``, ``testing``), never a plugin. Base modules import only base
modules. Imports under ``if TYPE_CHECKING:`` are annotations only and are not counted. No two
modules import each other, directly or around a loop, even inside functions.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx
import pytest

import mtlsearch

PACKAGE = Path(mtlsearch.__file__).parent
LAYERS = ["tasks", "data", "graph", "engine", "strategy", "viz", "export", "study"]
BASE = {"_compat", "_version", "errors", "safety", "stats", "hookspecs", "plugin_manager", "registry",
        "console", "defaults"}
# entry points: may import anything (builtins: the core's own plugin entry points)
TOP = {"__init__", "__main__", "cli", "testing", "builtins"}
OUTSIDE = ("mtlsearch.plugins", "mtlsearch.search_spaces")  # installed into the package


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["mtlsearch", *parts])


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(source: str, name: str, is_package: bool, known: set[str] | None = None) -> set[str]:
    """Every mtlsearch module ``source`` imports (function-local included, TYPE_CHECKING not).

    ``from pkg import x`` counts as importing ``pkg.x`` when that is one of the ``known``
    modules (it names a submodule), else as importing ``pkg``.
    """
    tree = ast.parse(source)
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "mtlsearch")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "mtlsearch":
                continue
            submodules = {f"{target}.{a.name}" for a in node.names} & (known or set())
            found.update(submodules or {target})
    return found


def unit_of(module: str) -> str:
    """The layer or base module a dotted name belongs to ('' for the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(modules: dict[str, str], packages: set[str]) -> list[str]:
    """The broken rules among ``{dotted name: source}`` (``packages``: names that are packages)."""
    known = set(modules)
    problems = []
    for name, source in sorted(modules.items()):
        unit = unit_of(name)
        if unit in TOP or name == "mtlsearch":
            continue
        for target in sorted(imports_of(source, name, name in packages, known)):
            if target.startswith(OUTSIDE):
                problems.append(f"{name} imports the plugin {target}")
                continue
            if target not in known:
                continue  # not a module of the core (a third-party name)
            other = unit_of(target)
            if other == unit:
                continue
            if target == "mtlsearch" or other in TOP:
                problems.append(f"{name} imports the entry point {target}")
            elif unit in BASE and other not in BASE:
                problems.append(f"base module {name} imports {target} (layer {other})")
            elif unit in LAYERS and other in LAYERS and LAYERS.index(other) > LAYERS.index(unit):
                problems.append(f"{name} (layer {unit}) imports {target} from the layer above")
    return problems


def import_cycles(modules: dict[str, str], packages: set[str]) -> list[list[str]]:
    graph = nx.DiGraph()
    for name, source in modules.items():
        graph.add_node(name)
        for target in imports_of(source, name, name in packages, set(modules)):
            if target in modules and target != name and not name.startswith(target + "."):
                # a subpackage's __init__ importing its own modules is how it re-exports
                if not (name in packages and target.startswith(name + ".")):
                    graph.add_edge(name, target)
    return sorted(sorted(c) for c in nx.simple_cycles(graph))


def _core() -> tuple[dict[str, str], set[str]]:
    modules, packages = {}, set()
    for path in PACKAGE.rglob("*.py"):
        if path.is_relative_to(PACKAGE / "plugins") or path.is_relative_to(PACKAGE / "search_spaces"):
            continue  # editable installs map these folders elsewhere; wheels put them here
        name = module_name(path)
        modules[name] = path.read_text()
        if path.name == "__init__.py":
            packages.add(name)
    return modules, packages


def test_every_core_module_belongs_to_a_layer_or_the_base():
    modules, _ = _core()
    stray = sorted(n for n in modules if n != "mtlsearch" and unit_of(n) not in
                   {*LAYERS, *BASE, *TOP})
    assert not stray, f"modules outside every layer: {stray}; add them to a subpackage"


def test_no_import_goes_up_a_layer_or_into_a_plugin():
    modules, packages = _core()
    assert violations(modules, packages) == []


def test_no_import_circles():
    modules, packages = _core()
    assert import_cycles(modules, packages) == []


def test_each_subpackage_states_its_job_and_what_it_may_import():
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert doc and len(doc.split()) > 25, f"mtlsearch/{layer}/__init__.py needs its paragraph"
        assert "import" in doc, f"mtlsearch/{layer}/__init__.py should say what it may import"


# ------------------------------------------------------------------- the checker on planted cases
PLANTED = {
    "mtlsearch.graph.sharing": "from mtlsearch.engine.model import materialize\n",
    "mtlsearch.engine.model": "from mtlsearch.graph.sharing import SharingGraph\n",
    "mtlsearch.engine.train": (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from mtlsearch.study.runner import search\n"
        "def f():\n    from .model import materialize\n"),
    "mtlsearch.errors": "import mtlsearch.engine.model\n",
    "mtlsearch.study.runner": "from mtlsearch.plugins.random_tree import RandomTree\n"
                              "from mtlsearch import cli\n",
    "mtlsearch.cli": "from mtlsearch.study.runner import search\n",
    "mtlsearch.study": "from mtlsearch.study.runner import search\n",
}


def test_the_checker_finds_planted_violations():
    found = violations(PLANTED, {"mtlsearch.study"})
    assert found == [
        "base module mtlsearch.errors imports mtlsearch.engine.model (layer engine)",
        "mtlsearch.graph.sharing (layer graph) imports mtlsearch.engine.model from the layer above",
        "mtlsearch.study.runner imports the entry point mtlsearch.cli",
        "mtlsearch.study.runner imports the plugin mtlsearch.plugins.random_tree",
    ]


def test_the_checker_finds_planted_circles():
    cycles = import_cycles(PLANTED, {"mtlsearch.study"})
    assert cycles == [["mtlsearch.cli", "mtlsearch.study.runner"],
                      ["mtlsearch.engine.model", "mtlsearch.graph.sharing"]]


def test_relative_imports_are_resolved():
    found = imports_of("from .model import x\nfrom ..graph import sharing, SharingGraph\n",
                       "mtlsearch.engine.train", False, {"mtlsearch.graph.sharing"})
    assert found == {"mtlsearch.engine.model", "mtlsearch.graph.sharing"}


# ------------------------------------------------------------ docs/architecture.md is the tree
def _documented_tree() -> set[str]:
    text = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    block = re.search(r"<!-- tree -->\n```\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md needs the folder tree between <!-- tree --> and ```"
    names = set()
    for line in block.group(1).splitlines():
        match = re.match(r"\s*(?:[│├└─ ]*)([\w/]+(?:\.py)?)\s", line + " ")
        if match and (match.group(1).endswith(".py") or match.group(1).endswith("/")):
            names.add(match.group(1))
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_architecture_md_shows_every_module(layer):
    documented = _documented_tree()
    folder = PACKAGE / layer
    for path in sorted(folder.rglob("*.py")):
        if path.name == "__init__.py" and path.parent != folder:
            continue
        rel = path.relative_to(folder)
        if len(rel.parts) > 1:  # a nested package is shown as its folder
            assert f"{rel.parts[0]}/" in documented, f"{layer}/{rel.parts[0]}/ is not in the tree"
        elif path.name != "__init__.py":
            assert path.name in documented, f"mtlsearch/{layer}/{path.name} is not in the tree"


# ------------------------------------------------------ every package is in pyproject's list
def test_pyproject_lists_every_package():
    """setuptools installs only the listed packages: a new folder left out is missing from a
    wheel although an editable install imports it."""
    import tomllib

    root = Path(__file__).parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    for name, folder in config["package-dir"].items():
        for init in sorted((root / folder).rglob("__init__.py")):
            rel = init.parent.relative_to(root / folder).parts
            if "__pycache__" in rel:
                continue
            package = ".".join([name, *rel])
            assert package in listed, f"{package} ({init.parent}) is not in pyproject's packages"
