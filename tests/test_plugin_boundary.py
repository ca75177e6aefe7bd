"""The core knows no plugin: it imports none, names no built-in strategy, and reaches hooks only
through the facade (``mtlsearch.plugin_manager.Hooks``).

Checked on the source of every module under ``mtlsearch/`` (the entry points ``cli`` and
``testing`` included), with the AST: imports anywhere in a module (function-local too), string
constants outside docstrings, and attribute reads named ``hook``. Each checker is also run on
small planted sources, so a checker that finds nothing fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mtlsearch
from mtlsearch.graph.sharing import SharingGraph
from mtlsearch.registry import get_strategy_class, list_strategies

PACKAGE = Path(mtlsearch.__file__).parent
PLUGINS = "mtlsearch.plugins"
FACADE = ("mtlsearch/plugin_manager.py", "Hooks")  # the one class that may touch pm.hook


def core_sources() -> dict[str, str]:
    """``{path relative to the repository: source}`` of every core module."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "plugins") or path.is_relative_to(PACKAGE / "search_spaces"):
            continue  # where a wheel installs the plugins: not core
        out[str(path.relative_to(PACKAGE.parent))] = path.read_text(encoding="utf-8")
    return out


def builtin_strategy_names() -> set[str]:
    """Strategies registered by ``mtlsearch.plugins``, less the graph shapes the core builds
    itself (``SharingGraph.hard_sharing``, ``.single_task``): those words are the core's too."""
    names = {n for n in list_strategies() if get_strategy_class(n).__module__.startswith(PLUGINS)}
    return {n for n in names if not hasattr(SharingGraph, n)}


def _line(hit: str) -> int:
    return int(hit.split(":")[0])  # ast.walk goes breadth first: report in line order


def plugin_imports(source: str) -> list[str]:
    """``line: module`` for each import of ``mtlsearch.plugins`` (any scope)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            module = node.module or ""
            modules = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        hits = [m for m in modules if m == PLUGINS or m.startswith(PLUGINS + ".")]
        if hits:
            found.append(f"{node.lineno}: {hits[0]}")
    return sorted(found, key=_line)


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def named_strategies(source: str, names: set[str]) -> list[str]:
    """``line: name`` for each string constant (not a docstring) naming one of ``names``."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    words = re.compile(r"(?<![\w])(" + "|".join(map(re.escape, sorted(names))) + r")(?![\w])")
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            found += [f"{node.lineno}: {m}" for m in words.findall(node.value)]
    return sorted(found, key=_line)


def raw_hook_calls(source: str, path: str) -> list[str]:
    """``line`` of each ``x.hook`` (or ``getattr(x, "hook")``) outside the facade class."""
    tree = ast.parse(source)
    allowed: set[int] = set()
    if path == FACADE[0]:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == FACADE[1]:
                allowed |= {id(n) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if id(node) in allowed:
            continue
        if isinstance(node, ast.Attribute) and node.attr == "hook":
            found.append(f"{node.lineno}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id == "getattr" and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and node.args[1].value == "hook"):
            found.append(f"{node.lineno}")
    return sorted(found, key=_line)


# ------------------------------------------------------------------------------ the rules
def test_no_core_module_imports_a_plugin():
    bad = {p: hits for p, src in core_sources().items() if (hits := plugin_imports(src))}
    assert not bad, f"core modules import plugins (use a hook or the registry): {bad}"


def test_no_core_module_names_a_builtin_strategy():
    names = builtin_strategy_names()
    assert {"random_tree", "affinity_tree", "gumbel_policy", "task_routing"} <= names
    bad = {p: hits for p, src in core_sources().items() if (hits := named_strategies(src, names))}
    assert not bad, (f"core modules name built-in strategies (ask the registry: default_strategy, "
                     f"paired_baseline, Strategy.quick_settings): {bad}")


def test_only_the_facade_touches_pm_hook():
    bad = {p: hits for p, src in core_sources().items() if (hits := raw_hook_calls(src, p))}
    assert not bad, f"hooks called around mtlsearch.plugin_manager.Hooks: {bad}"


# ---------------------------------------------------------------- the checkers on planted code
PLANTED = '''"""Docstrings may say random_tree."""
import mtlsearch.plugins.task_routing.sweep
from mtlsearch.plugins import random_tree
from mtlsearch import plugins
from mtlsearch.plugins_extra import x

DEFAULT = "random_tree"
HELP = "e.g. affinity_tree.estimator=full"
SHAPE = "hard_sharing"
OTHER = "random_trees"


def f(pm):
    """So may this one: gumbel_policy."""
    from mtlsearch.plugins.gumbel_policy import GumbelPolicy

    pm.hook.on_trial_end(trial=None)
    return getattr(pm, "hook")
'''


def test_the_import_checker_finds_planted_imports():
    assert plugin_imports(PLANTED) == [
        "2: mtlsearch.plugins.task_routing.sweep",
        "3: mtlsearch.plugins",
        "4: mtlsearch.plugins",
        "15: mtlsearch.plugins.gumbel_policy",
    ]


def test_the_name_checker_finds_planted_names_outside_docstrings():
    names = {"random_tree", "affinity_tree", "gumbel_policy"}
    assert named_strategies(PLANTED, names) == ["7: random_tree", "8: affinity_tree"]


def test_graph_shapes_are_core_words():
    assert "hard_sharing" in list_strategies() and "hard_sharing" not in builtin_strategy_names()


def test_the_hook_checker_finds_raw_calls_and_spares_the_facade():
    assert raw_hook_calls(PLANTED, "mtlsearch/elsewhere.py") == ["17", "18"]
    facade = "class Hooks:\n    def f(self):\n        return self._pm.hook.x()\n"
    assert raw_hook_calls(facade, FACADE[0]) == []
    assert raw_hook_calls(facade.replace("Hooks", "Other"), FACADE[0]) == ["3"]
