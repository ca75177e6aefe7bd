"""Rough edges a new user hits: ``export`` without a choice exports the best trial, tables off a
terminal are as wide as their content, and the plugin guide's allow-list keeps every built-in."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
import tomllib
from rich.table import Table

from mtlsearch.cli import main
from mtlsearch.cli.options import make_console
from mtlsearch.console import ContentWidthConsole
from mtlsearch.study import best_trial

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "synthetic", "--space", "mlp", "--dataset-arg", "n_tasks=3",
        "--dataset-arg", "n_samples=240", "--space-arg", "widths=[8,8]", "--epochs", "1"]


def test_export_without_a_choice_exports_the_best_trial(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["search", *TINY, "--trials", "2", "--out", str(out), "--quiet"]) == 0
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.load_study(study_name=None, storage=storage)
    best = best_trial(study)
    capsys.readouterr()
    assert main(["export", "--storage", storage, "--out", str(tmp_path / "default")]) == 0
    said = capsys.readouterr().out
    assert f"exported trial {best.number} (the best) of {study.study_name}" in said
    assert main(["export", "--storage", storage, "--best", "--out", str(tmp_path / "best")]) == 0
    exported = json.loads((tmp_path / "default" / "architecture.json").read_text())
    assert exported == json.loads((tmp_path / "best" / "architecture.json").read_text())
    other = next(t.number for t in study.trials if t.number != best.number)
    assert main(["export", "--storage", storage, "--trial", str(other), "--out",
                 str(tmp_path / "other")]) == 0
    assert f"exported trial {other} of" in capsys.readouterr().out
    # --trial, --best and --pareto still exclude each other
    with pytest.raises(SystemExit):
        main(["export", "--storage", storage, "--best", "--trial", "0", "--out", "x"])


def test_export_help_says_the_default(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the best trial unless --trial or --pareto says otherwise" in text
    assert "the default when neither --trial nor --pareto is given" in text


def _wide_table() -> Table:
    table = Table(title="leaderboard")
    for i in range(12):
        table.add_column(f"column number {i}")
    table.add_row(*[f"value-{i}-{'x' * 6}" for i in range(12)])
    return table


def test_tables_off_a_terminal_are_as_wide_as_their_content(capsys):
    console = make_console()  # pytest's captured stdout is no terminal
    assert isinstance(console, ContentWidthConsole)
    console.print(_wide_table())
    lines = capsys.readouterr().out.splitlines()
    body = [line for line in lines if line.startswith(("┃", "│"))]
    widths = {len(line) for line in lines if line.startswith(("┏", "┃", "│", "└"))}
    assert len(widths) == 1 and widths.pop() > 200  # one unbroken width, past 100 and 200
    assert len(body) == 2  # header and row on one line each: nothing wrapped
    assert "column number 11" in body[0] and "value-11-xxxxxx" in body[1]
    assert "…" not in "".join(lines)
    # a small table is not padded out to a fixed width, and plain text prints as it is
    small = Table("a", "b")
    small.add_row("1", "2")
    console.print(small)
    console.print("a line")
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) < 20


def test_the_leaderboard_off_a_terminal_is_printed_whole(capsys):
    from mtlsearch.study.comparison import Leaderboard

    name = "a_strategy_with_a_very_long_registered_name_" * 4  # 176 characters
    row = {"strategy": name, "delta_mtl": (1.5, 0.25), "delta_mtl_test": (1.0, 0.5),
           "params": 1234.0, "macs": 5678.0, "n_trials": 3.0, "compute_macs": None,
           "search_seconds": 2.5, "n_runs": 2}
    Leaderboard(rows=[row], runs=[], points=[], settings={"seeds": [0, 1]}).print()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    assert len(lines) == 1 and name in lines[0] and "2/2" in lines[0]  # one line, not cut


def test_the_plugin_guides_allow_list_keeps_every_builtin():
    points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "entry-points"]["mtlsearch"]
    builtins = {name for name in points if name.startswith("builtin_")}
    assert len(builtins) >= 5
    guide = (ROOT / "docs" / "writing_a_plugin.md").read_text(encoding="utf-8")
    examples = re.findall(r"MTLSEARCH_PLUGINS=([\w,]+)", guide)
    assert examples, "docs/writing_a_plugin.md shows no MTLSEARCH_PLUGINS allow-list"
    for example in examples:
        missing = builtins - set(example.split(","))
        assert not missing, f"the allow-list example MTLSEARCH_PLUGINS={example} drops {missing}"
