"""The ``mtlsearch`` command: end to end on a tiny budget, listings, help and errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import mtlsearch
from mtlsearch.cli import build_parser, main

TINY = ["--dataset", "synthetic", "--space", "mlp", "--dataset-arg", "n_tasks=3",
        "--dataset-arg", "n_samples=240", "--space-arg", "widths=[8,8]", "--epochs", "1"]
COMMANDS = ["search", "compare", "strategies", "spaces", "datasets", "plugins", "show",
            "export", "predict", "fail-stale", "weightings"]


def _json(capsys) -> object:
    return json.loads(capsys.readouterr().out)


def test_search_show_export_predict(tmp_path, capsys):
    out = tmp_path / "out"
    storage = f"sqlite:///{out / 'study.db'}"
    assert main(["search", *TINY, "--trials", "2", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "random_tree-synthetic-mlp" in text and "Pareto front" in text
    assert (out / "study.db").is_file() and (out / "artifacts").is_dir()  # the kept weights

    assert main(["show", "--storage", storage]) == 0  # the storage's only study
    assert "Pareto front" in capsys.readouterr().out
    assert main(["show", "--storage", storage, "--json"]) == 0
    shown = _json(capsys)
    assert [t["number"] for t in shown["trials"]] == [0, 1]
    assert shown["settings"]["dataset"] == "synthetic"
    picture = tmp_path / "trial0.png"
    assert main(["show", "--storage", storage, "--trial", "0", "--picture", str(picture)]) == 0
    assert "branches per depth" in capsys.readouterr().out
    assert picture.is_file() and picture.with_suffix(".svg").is_file()

    model = tmp_path / "model"
    assert main(["export", "--storage", storage, "--best", "--out", str(model)]) == 0
    assert "exported trial" in capsys.readouterr().out
    assert (model / "architecture.json").is_file()
    assert main(["export", "--storage", storage, "--pareto", "0", "--out",
                 str(tmp_path / "front0")]) == 0

    inputs = tmp_path / "x.npz"
    np.savez(inputs, X=np.random.default_rng(0).random((6, 32), dtype=np.float32))
    preds = tmp_path / "preds.npz"
    assert main(["predict", str(model), "--input", str(inputs), "--output", str(preds)]) == 0
    with np.load(preds) as data:
        assert sorted(data.files) == ["t000", "t001", "t002"] and data["t000"].shape == (6,)

    # Bad input after the fact: one line, exit 2.
    capsys.readouterr()
    assert main(["export", "--storage", storage, "--pareto", "9", "--out",
                 str(tmp_path / "x")]) == 2
    assert main(["show", "--storage", storage, "--study", "nope"]) == 2
    assert main(["search", *TINY, "--trials", "2", "--out", str(out), "--quiet",
                 "--epochs", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("mtlsearch: error:") for line in err)
    assert "random_tree-synthetic-mlp" in err[1]  # the known studies are listed
    assert "budget.epochs" in err[2] and "another --study" in err[2]
    assert main(["predict", str(model), "--input", str(tmp_path / "missing.npz"),
                 "--output", str(preds)]) == 2


def test_compare_writes_a_report(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", *TINY, "--strategies", "hard_sharing,random_tree", "--seeds", "0,1",
                 "--trials", "2", "--out", str(out), "--json"])
    assert code == 0
    board = _json(capsys)
    assert [r["strategy"] for r in board["leaderboard"]] != []
    assert {r["strategy"] for r in board["runs"]} == {"hard_sharing", "random_tree"}
    runs = {(r["strategy"], r["seed"]): r for r in board["runs"]}
    assert runs[("hard_sharing", 0)]["n_trials"] == 1  # samples nothing: one trial is enough
    assert runs[("random_tree", 0)]["n_trials"] == 2
    for name in ("report.md", "leaderboard.json", "pareto.png", "pareto.svg",
                 "task_metrics.png", "task_metrics.svg", "arch_random_tree.png"):
        assert (out / name).is_file(), name
    assert "![" in (out / "report.md").read_text()
    assert len(list((out / "cache").glob("single_task_reference-*.json"))) == 2  # one per seed


def test_compare_at_equal_compute_reports_each_strategys_compute(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", *TINY, "--strategies", "hard_sharing,random_tree", "--seeds", "0",
                 "--trials", "20", "--compute", "2x", "--epochs", "1", "--out", str(out),
                 "--json"])
    assert code == 0
    board = _json(capsys)
    unit = board["settings"]["compute_unit_macs"]
    assert board["settings"]["compute_macs"] == pytest.approx(2 * unit)
    runs = {r["strategy"]: r for r in board["runs"]}
    assert runs["hard_sharing"]["compute_macs"] == pytest.approx(unit)  # one training
    tree = runs["random_tree"]
    # trials went on until 2 units were spent, and stopped there: the last one crossed it
    study = mtlsearch.open_study(board["settings"].get("storage") or
                                 f"sqlite:///{(out / 'compare.db').resolve()}", tree["study"])
    spent = [t.user_attrs["compute"]["macs"] for t in study.get_trials()]
    assert tree["n_trials"] == len(spent) < 20
    assert sum(spent[:-1]) < 2 * unit <= sum(spent) == pytest.approx(tree["compute_macs"])
    report = (out / "report.md").read_text()
    assert "Equal compute" in report and "| compute |" in report
    assert "1.0x" in report  # hard sharing's compute in hard-sharing units


@pytest.mark.parametrize("command", ["strategies", "spaces", "datasets"])
def test_listings_as_json(command, capsys):
    assert main([command, "--json"]) == 0
    rows = _json(capsys)
    names = [r["name"] for r in rows]
    assert {"strategies": "random_tree", "spaces": "small_cnn", "datasets": "multi_digits"}[
        command] in names
    assert main([command]) == 0
    assert names[0] in capsys.readouterr().out


def test_plugins_listing(capsys):
    assert main(["plugins", "--json"]) == 0
    data = _json(capsys)
    plugin = next(p for p in data["plugins"] if p["name"] == "random_tree")
    assert plugin["distribution"] == "mtlsearch" and "register_strategies" in plugin["hooks"]
    assert isinstance(data["failures"], dict)
    assert main(["plugins"]) == 0
    assert "random_tree" in capsys.readouterr().out


@pytest.mark.parametrize("flag,value", [("--strategy", "nope"), ("--dataset", "nope"),
                                        ("--space", "nope")])
def test_unknown_names_exit_2_and_list_known(flag, value, tmp_path, capsys):
    code = main(["search", flag, value, "--out", str(tmp_path), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    known = {"--strategy": "random_tree", "--dataset": "multi_digits", "--space": "small_cnn"}
    assert "'nope'" in err and known[flag] in err


def test_every_command_has_help_with_an_example(capsys):
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "example" in capsys.readouterr().out, command
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(COMMANDS) <= set(choices)


def test_python_dash_m_and_version(capsys):
    done = subprocess.run([sys.executable, "-m", "mtlsearch", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "search" in done.stdout and "compare" in done.stdout
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("mtlsearch ")


def test_sweep_subcommand_runs_the_task_routing_sweep(tmp_path, capsys):
    from mtlsearch.cli import main

    stem = tmp_path / "sweep"
    code = main(["sweep", "--dataset", "synthetic", "--dataset-option", "n_tasks=3",
                 "--dataset-option", "n_samples=200", "--space", "mlp", "--sigmas", "0", "1",
                 "--seeds", "0", "--epochs", "1", "--plot", str(stem), "--json", str(tmp_path / "s.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "| σ |" in out and "t002" in out
    assert (tmp_path / "sweep.png").stat().st_size > 0 and (tmp_path / "s.json").is_file()
    assert main(["sweep", "--dataset", "nope"]) == 2


def test_compare_strategy_args_are_per_strategy():
    import pytest

    from mtlsearch import MTLSearchError
    from mtlsearch.cli.search_commands import per_strategy as _per_strategy

    assert _per_strategy([("affinity_tree.estimator", "full"), ("affinity_tree.search", "beam")]) == {
        "affinity_tree": {"estimator": "full", "search": "beam"}
    }
    with pytest.raises(MTLSearchError, match="STRATEGY.KEY=VALUE"):
        _per_strategy([("estimator", "full")])


def test_gpu_training_flags_reach_the_training_settings():
    from mtlsearch.cli import build_parser
    from mtlsearch.cli.options import train_config as _budget

    args = build_parser().parse_args(["search", "--compile", "--no-amp", "--no-channels-last"])
    cfg = _budget(args, 1)
    assert (cfg.compile, cfg.amp, cfg.channels_last) == (True, False, False)
    # Left out, they stay automatic (None): bf16 and channels-last wherever a GPU supports them.
    cfg = _budget(build_parser().parse_args(["search"]), 1)
    assert (cfg.compile, cfg.amp, cfg.channels_last) == (False, None, None)


def test_compare_with_two_workers_gives_the_serial_leaderboard(tmp_path, capsys):
    args = ["compare", *TINY, "--strategies", "hard_sharing,random_tree", "--seeds", "0,1",
            "--trials", "2", "--epochs", "1", "--json"]
    assert main([*args, "--workers", "1", "--out", str(tmp_path / "serial")]) == 0
    serial = _json(capsys)
    assert main([*args, "--workers", "2", "--out", str(tmp_path / "parallel")]) == 0
    parallel = _json(capsys)
    assert parallel["settings"]["workers"] == 2
    keys = ("strategy", "seed", "trial", "delta_mtl", "delta_mtl_test", "params", "graph",
            "compute_macs", "n_trials")
    assert [{k: r.get(k) for k in keys} for r in parallel["runs"]] == \
        [{k: r.get(k) for k in keys} for r in serial["runs"]]
    # one single-task reference per seed in the cache both workers share
    refs = list((tmp_path / "parallel" / "cache").glob("single_task_reference-*.json"))
    assert len(refs) == 2


def test_compare_with_workers_prints_a_line_per_finished_search(tmp_path, capsys):
    code = main(["compare", *TINY, "--strategies", "hard_sharing", "--seeds", "0,1",
                 "--epochs", "1", "--workers", "2", "--out", str(tmp_path / "c")])
    assert code == 0
    out = capsys.readouterr().out
    assert "[1/2] hard_sharing seed" in out and "[2/2] hard_sharing seed" in out
    assert "Leaderboard" in out


def test_plugin_commands_come_from_register_commands(capsys):
    import argparse
    import types

    from mtlsearch import MTLSearchError, hookimpl
    from mtlsearch.plugin_manager import register_plugin, unregister_plugin
    from mtlsearch.registry import commands

    seen: list[list[str]] = []

    def parser() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(description="Greets.")
        p.add_argument("--who", default="world")
        return p

    def run(argv):
        seen.append(list(argv))
        if argv == ["--fail"]:
            raise MTLSearchError("no greeting today")
        return 0

    plugin = types.SimpleNamespace(register_commands=hookimpl(
        lambda register: register("hello", run, help="Say hello.", parser=parser)))
    register_plugin(plugin, name="hello-plugin")
    try:
        assert commands().registration("hello").plugin == "hello-plugin"
        assert main(["hello", "--who", "you", "-q"]) == 0 and seen == [["--who", "you", "-q"]]
        assert main(["hello", "--help"]) == 0
        assert "usage: mtlsearch hello" in capsys.readouterr().out and len(seen) == 1
        assert main(["hello", "--fail"]) == 2
        assert capsys.readouterr().err == "mtlsearch: error: no greeting today\n"
        choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
        assert "hello" in choices and "sweep" in choices
    finally:
        unregister_plugin("hello-plugin")
    assert "hello" not in commands()


def test_a_plugin_command_may_not_take_a_builtin_name():
    import types

    from mtlsearch import MTLSearchError, hookimpl
    from mtlsearch.plugin_manager import register_plugin, unregister_plugin
    from mtlsearch.registry import BUILTIN_COMMANDS, commands

    assert set(COMMANDS) == BUILTIN_COMMANDS  # the registry's list is the parser's
    plugin = types.SimpleNamespace(register_commands=hookimpl(
        lambda register: register("search", lambda argv: 0, help="mine")))
    register_plugin(plugin, name="greedy")
    try:
        with pytest.raises(MTLSearchError, match="plugin 'greedy' registers the command 'search'"):
            commands()
    finally:
        unregister_plugin("greedy")


def test_sweep_help_is_the_plugins_parser(capsys):
    assert main(["sweep", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mtlsearch sweep") and "--sigmas" in out


def test_search_help_names_the_registered_default(capsys):
    from mtlsearch.registry import default_strategy

    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert f"(default: the registered default, {default_strategy()})" in out
    assert build_parser(plugins=False).parse_args(["search"]).strategy is None


def test_exit_codes_are_documented_and_fail_stale_has_help(capsys):
    from pathlib import Path

    from mtlsearch.cli import EXIT_CODES

    assert EXIT_CODES == {"ok": 0, "error": 2, "no_space": 75, "interrupted": 130,
                          "terminated": 143}
    docs = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    for code in EXIT_CODES.values():
        assert f"| {code} |" in docs, code
    with pytest.raises(SystemExit):
        main(["fail-stale", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--older-than SECONDS" in text and "--dry-run" in text
    assert "same parameters and seed" in text
