"""The documentation keeps up with the code: every hook, its signature and every registered
name is in docs/.

Like datasette's ``test_plugin_hooks_are_documented``: a new hook in
``mtlsearch/hookspecs.py`` fails here until ``docs/`` has a heading for it, a changed hook
signature until the heading ``### hook(args)`` in docs/writing_a_plugin.md shows it, a changed
``register`` callback (its Protocol) until its section shows the new ``register(...)`` call,
and a new strategy, search space or dataset until its name appears somewhere in ``docs/``.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy
import pytest

from mtlsearch import hookspecs
from mtlsearch.plugin_manager import get_plugin_manager
from mtlsearch.registry import list_datasets, list_spaces, list_strategies

DOCS = Path(__file__).resolve().parents[1] / "docs"
PLUGIN_GUIDE = DOCS / "writing_a_plugin.md"


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


def documented_signature(hook: str, text: str) -> str | None:
    """The argument list of the heading ``### hook(...)`` in ``text`` (``None``: no heading)."""
    match = re.search(rf"^#{{1,6}} {re.escape(hook)}\(([^)]*)\)\s*$", text, re.M)
    return match.group(1) if match else None


def section(hook: str, text: str) -> str:
    """The text under the heading of ``hook``, up to the next heading."""
    match = re.search(rf"^#{{1,6}} {re.escape(hook)}\(.*?$(.*?)(?=^#{{1,6}} |\Z)", text, re.M | re.S)
    return match.group(1) if match else ""


def call_text(protocol: type) -> str:
    """``register(a, b=None, *, c=False)``: how a Protocol's ``__call__`` is called."""
    parts, star = [], False
    for p in list(inspect.signature(protocol.__call__).parameters.values())[1:]:
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        parts.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return f"register({', '.join(parts)})"


def _spec_signature(hook: str) -> str:
    return ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)


@pytest.mark.parametrize("hook", HOOKS)
def test_documented_signature_is_the_hookspec(hook: str) -> None:
    documented = documented_signature(hook, PLUGIN_GUIDE.read_text(encoding="utf-8"))
    assert documented == _spec_signature(hook), (
        f"docs/writing_a_plugin.md documents {hook}({documented}); the hookspec is "
        f"{hook}({_spec_signature(hook)})")


@pytest.mark.parametrize("hook", hookspecs.CONTRIBUTION_HOOKS)
def test_documented_register_call_is_the_protocol(hook: str) -> None:
    protocol = getattr(hookspecs, inspect.signature(getattr(hookspecs, hook)).parameters[
        "register"].annotation)
    text = section(hook, PLUGIN_GUIDE.read_text(encoding="utf-8"))
    assert call_text(protocol) in " ".join(text.split()), (
        f"the section of {hook} should show `{call_text(protocol)}` ({protocol.__name__})")


def test_the_signature_checks_see_a_changed_signature() -> None:
    text = "### on_epoch_end(epoch)\n\nCall `register(name, run)`.\n### next(x)\n"
    assert documented_signature("on_epoch_end", text) == "epoch" != _spec_signature("on_epoch_end")
    assert documented_signature("on_trial_end", text) is None
    assert section("on_epoch_end", text).strip() == "Call `register(name, run)`."
    assert call_text(hookspecs.CommandRegistrar) == "register(name, run, *, help, parser=None)"


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
