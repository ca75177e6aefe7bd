"""The ``mtlsearch`` command starts without torch: ``--help`` and the listings import neither
torch, torchvision nor Optuna, and list exactly what the loaded entries say; lazy
registrations load on first use and are checked against what they declared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from mtlsearch import MTLSearchError
from mtlsearch import registry as reg
from mtlsearch.plugin_manager import reset_plugins

HEAVY = ("torch", "torchvision", "optuna")

_PROBE = textwrap.dedent("""
    import contextlib, io, json, sys
    from mtlsearch.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            status = main({argv!r})
        except SystemExit as exc:
            status = exc.code
    heavy = sorted(m for m in {heavy!r} if m in sys.modules)
    sys.stderr.write("PROBE=" + json.dumps({{"status": status, "heavy": heavy,
                                             "out": out.getvalue()}}) + "\\n")
""")


_RUNS: dict[tuple[str, ...], dict] = {}


def run_cli(argv: list[str]) -> dict:
    """``main(argv)`` in a fresh interpreter: exit status, output and the heavy modules left
    in ``sys.modules`` (each command line run once per session)."""
    if tuple(argv) in _RUNS:
        return _RUNS[tuple(argv)]
    env = {k: v for k, v in os.environ.items()
           if k not in ("MTLSEARCH_PLUGINS", "MTLSEARCH_DISABLE_PLUGINS")}
    done = subprocess.run([sys.executable, "-c", _PROBE.format(argv=argv, heavy=HEAVY)],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("PROBE=")]
    assert lines, f"the probe did not finish: {done.stderr[-2000:]}"
    _RUNS[tuple(argv)] = json.loads(lines[-1][len("PROBE="):])
    return _RUNS[tuple(argv)]


@pytest.mark.parametrize("argv", [
    ["--help"], ["strategies"], ["strategies", "--json"], ["spaces", "--json"], ["spaces"],
    ["datasets", "--json"], ["weightings", "--json"], ["weightings"], ["plugins", "--json"],
    ["search", "--help"], ["compare", "--help"],
], ids=" ".join)
def test_help_and_listings_import_no_torch(argv):
    result = run_cli(argv)
    assert result["status"] in (0, None), result
    assert result["out"].strip(), "the command printed nothing"
    assert result["heavy"] == [], f"mtlsearch {' '.join(argv)} imported {result['heavy']}"


def test_import_mtlsearch_is_light_and_its_names_load_on_use():
    code = f"import sys, mtlsearch\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split() == ["[]"]
    import mtlsearch

    graph = mtlsearch.SharingGraph.hard_sharing(["a", "b"], 2)  # loaded on first use
    assert graph.tasks == ["a", "b"] and mtlsearch.SharingGraph is type(graph)
    assert mtlsearch.graph.sharing.__name__ == "mtlsearch.graph.sharing"  # subpackages too
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        mtlsearch.nothing_here  # noqa: B018


# ------------------------------------------------------ the listings against the loaded objects
def _first_line(obj) -> str:
    doc = (obj.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def eager_listing(what: str) -> list[dict]:
    """The rows as the listings built them before lazy registration: from each loaded entry."""
    if what == "strategies":
        r = reg.strategies()
        return [{"name": n, "description": getattr(r.get(n), "description", "")
                 or _first_line(r.get(n)), "dynamic": r.get(n).is_dynamic(),
                 "module": r.get(n).__module__} for n in r.names()]
    if what == "weightings":
        r = reg.weightings()
        return [{"name": n, "description": getattr(r.get(n), "description", "")
                 or _first_line(r.get(n)), "kind": "gradient" if r.get(n).gradient else "loss",
                 "one_task": not r.get(n).all_tasks, "ddp": bool(r.get(n).distributed),
                 "missing": ", ".join(r.get(n).missing()), "module": r.get(n).__module__}
                for n in r.names()]
    r = reg.spaces() if what == "spaces" else reg.datasets()
    return [{"name": n, "description": _first_line(r.get(n)), "module": r.get(n).__module__}
            for n in r.names()]


@pytest.mark.parametrize("what", ["strategies", "spaces", "datasets", "weightings"])
def test_the_listing_without_torch_equals_the_eager_one(what):
    lazy = run_cli([what, "--json"])
    assert lazy["heavy"] == []
    assert json.loads(lazy["out"]) == eager_listing(what)


def test_every_builtin_registration_is_lazy_and_matches_its_object():
    reset_plugins()
    for registry in (reg.strategies(), reg.spaces(), reg.datasets(), reg.weightings()):
        for r in registry.registrations():
            assert r.plugin and r.lazy, f"{registry.what} {r.name} is registered eagerly"
            assert r.info == reg.describe(registry.what, r.entry), (registry.what, r.name)


def test_compare_help_shows_the_classes_quick_settings():
    from mtlsearch.cli.parser import quick_text

    names = reg.list_strategies()
    expected = "; ".join(
        f"{n} gets " + ", ".join(f"{k}={v}" for k, v in reg.get_strategy_class(n)
                                .quick_settings.items())
        for n in names if reg.get_strategy_class(n).quick_settings)
    assert quick_text(names) == expected and "estimator=rsa" in expected


# ------------------------------------------------------------------ lazy registration itself
@pytest.fixture
def lazy_module(tmp_path, monkeypatch):
    """A module on the path, not imported yet, with a documented factory and a class."""
    name = f"mtl_lazy_probe_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent('''
        def factory(**kwargs):
            """Makes a tiny space.

            More text.
            """
            return kwargs

        class Weigh:
            """A weighting."""
            description = "weighs"
            gradient = True
            requires = ("a_module_nobody_has",)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def _spaces(plugin: str = "probe"):
    registry = reg.Registry("search space")
    return registry, reg._space_registrar(registry)(plugin)


def test_a_lazy_entry_is_imported_on_first_get_only(lazy_module):
    registry, register = _spaces()
    register("tiny", f"{lazy_module}:factory", description="Makes a tiny space.",
             tiny={"width": 2})
    r = registry.registration("tiny")
    assert r.lazy and not r.loaded and lazy_module not in sys.modules
    assert r.info == {"description": "Makes a tiny space.", "module": lazy_module}
    assert registry.names() == ["tiny"] and lazy_module not in sys.modules
    assert registry.get("tiny")(width=3) == {"width": 3}
    assert r.loaded and registry.get("tiny") is sys.modules[lazy_module].factory


def test_what_a_lazy_entry_declares_is_checked_when_it_loads(lazy_module):
    registry, register = _spaces()
    register("tiny", f"{lazy_module}:factory", description="Makes a big space.")
    with pytest.raises(MTLSearchError, match="description='Makes a big space.' \\(the object has "
                                             "'Makes a tiny space.'\\); make the registration"):
        registry.get("tiny")


def test_lazy_weighting_fields_and_missing_modules(lazy_module):
    registry = reg.Registry("weighting")
    register = reg._weighting_registrar(registry)("probe")
    register("w", f"{lazy_module}:Weigh", description="weighs", gradient=True,
             requires=("a_module_nobody_has",))
    assert registry.registration("w").info == {
        "description": "weighs", "gradient": True, "all_tasks": False, "distributed": False,
        "requires": ["a_module_nobody_has"], "module": lazy_module}
    assert registry.get("w").gradient is True
    register("v", f"{lazy_module}:Weigh", description="weighs")  # says gradient=False
    with pytest.raises(MTLSearchError, match="gradient=False \\(the object has True\\)"):
        registry.get("v")


@pytest.mark.parametrize("call, message", [
    (lambda r: r("x", "no_colon_here", description="d"), "is not 'module:attribute'"),
    (lambda r: r("x", "pkg.mod:attr"), "must say description="),
    (lambda r: r("x", lambda: None, description="d"), "a registered object carries its own"),
])
def test_bad_lazy_registrations_are_explained(call, message):
    _, register = _spaces()
    with pytest.raises(MTLSearchError, match=message):
        call(register)


def test_a_lazy_strategy_needs_a_name_and_its_fields():
    registry = reg.Registry("strategy")
    register = reg._strategy_registrar(registry)("probe")
    with pytest.raises(MTLSearchError, match="needs name="):
        register("pkg.mod:Cls", description="d", dynamic=False)
    with pytest.raises(MTLSearchError, match="must say dynamic="):
        register("pkg.mod:Cls", name="s", description="d")
    with pytest.raises(MTLSearchError, match="unknown field\\(s\\) \\['colour'\\]"):
        registry.register("s", "pkg.mod:Cls", declared={"description": "d", "dynamic": False,
                                                        "colour": 1})
    with pytest.raises(MTLSearchError, match="task kind cannot be registered lazily"):
        reg.Registry("task kind").register("k", "pkg.mod:KIND")


def test_a_lazy_entry_that_cannot_be_imported_names_it():
    registry, register = _spaces()
    register("gone", "mtl_no_such_module_anywhere:factory", description="d")
    assert registry.names() == ["gone"]  # listing it needs no import
    with pytest.raises(MTLSearchError, match="search space 'gone' \\(plugin 'probe'\\) cannot be "
                                             "loaded from 'mtl_no_such_module_anywhere:factory'"):
        registry.get("gone")


def test_the_same_lazy_target_twice_is_harmless_and_a_clash_names_both():
    registry, register = _spaces()
    register("s", "pkg.mod:f", description="d")
    register("s", "pkg.mod:f", description="d")
    with pytest.raises(MTLSearchError, match="registered twice \\('pkg.mod:f' from plugin 'probe'"):
        register("s", "pkg.mod:g", description="d")


def test_lazy_exports_keep_a_function_named_like_its_module():
    import mtlsearch.search_spaces as spaces
    import mtlsearch.search_spaces.resnet  # noqa: F401 (imports .mlp, the module)

    assert callable(spaces.mlp) and not isinstance(spaces.mlp, type(spaces))
    assert spaces.mlp is sys.modules["mtlsearch.search_spaces.mlp"].mlp
    assert spaces.vgg.__name__ == "mtlsearch.search_spaces.vgg"  # a submodule, on first use
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        spaces.nothing_here  # noqa: B018


# --------------------------------------------------------------- the benchmark's renderer
def test_the_start_up_targets_are_computed_from_the_figures():
    from benchmarks.render import cli_start

    def data(help_s: float, listing_s: float, heavy: list[str]) -> dict:
        rows = [{"command": "python -c pass", "median_s": 0.05, "over_python_s": 0.0,
                 "heavy": None},
                {"command": "mtlsearch --help", "median_s": help_s,
                 "over_python_s": help_s - 0.05, "heavy": []},
                {"command": "mtlsearch strategies --json", "median_s": listing_s,
                 "over_python_s": listing_s - 0.05, "heavy": heavy}]
        return {"settings": {"repeats": 5, "script": "mtlsearch"}, "rows": rows,
                "command": "python benchmarks/bench_cli_start.py"}

    met = cli_start.targets(data(0.21, 0.18, []))
    assert [t.met for t in met] == [True, True, True]
    assert [t.figure for t in met] == [0.21, 0.18, "none"]
    missed = cli_start.targets(data(0.6, 1.2, ["torch", "sklearn"]))
    assert [t.met for t in missed] == [False, False, False] and missed[2].figure == "torch"
    assert cli_start.targets({"rows": []})[0].met is None
    text = cli_start.markdown(data(0.21, 0.18, []))
    assert "| `mtlsearch --help` | 0.210 | 0.160 | none |" in text
