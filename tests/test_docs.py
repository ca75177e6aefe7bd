"""The documentation keeps up with the code: every hook and every registered name is in docs/.

Like datasette's ``test_plugin_hooks_are_documented``: a new hook in
``mtlsearch/hookspecs.py`` fails here until ``docs/`` has a heading for it, and a new
strategy, search space or dataset fails until its name appears somewhere in ``docs/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pluggy
import pytest

from mtlsearch import hookspecs
from mtlsearch.plugin_manager import get_plugin_manager
from mtlsearch.registry import list_datasets, list_spaces, list_strategies

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _hook_names(pm: pluggy.PluginManager) -> list[str]:
    return sorted(name for name in vars(pm.hook) if not name.startswith("_"))


def _spec_only_names() -> list[str]:
    pm = pluggy.PluginManager("mtlsearch")
    pm.add_hookspecs(hookspecs)
    return _hook_names(pm)


HOOKS = _spec_only_names()


def _docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.rglob("*.md")))


def _headings() -> list[str]:
    return [line for line in _docs_text().splitlines() if re.match(r"#{1,6} ", line)]


def _mentioned(name: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text) is not None


def test_docs_folder_exists() -> None:
    assert DOCS.is_dir(), f"no docs folder at {DOCS}"
    assert HOOKS, "hookspecs declares no hooks"


def test_loaded_plugin_manager_has_the_same_hooks() -> None:
    # Walk the real plugin manager too: what plugins can implement is what is documented.
    assert _hook_names(get_plugin_manager()) == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook: str) -> None:
    headings = [h for h in _headings() if _mentioned(hook, h)]
    assert headings, (
        f"hook {hook!r} (mtlsearch/hookspecs.py) has no heading in docs/; add a section "
        f"'### {hook}(...)' to docs/writing_a_plugin.md"
    )


@pytest.mark.parametrize(
    ("what", "names"),
    [
        ("strategy", list_strategies),
        ("search space", list_spaces),
        ("dataset", list_datasets),
    ],
    ids=["strategies", "spaces", "datasets"],
)
def test_registered_names_are_documented(what: str, names) -> None:
    text = _docs_text()
    registered = names()
    assert registered, f"no {what} is registered"
    missing = [n for n in registered if not _mentioned(n, text)]
    assert not missing, f"registered {what} names not mentioned anywhere in docs/: {missing}"
