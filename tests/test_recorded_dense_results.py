"""The recorded dense results at the meaningful size (benchmarks/recorded/), which
docs/results.md includes: the page must be what ``bench_dense.py --merge`` renders (through
benchmarks/render/dense.py) from the per-seed JSON kept beside it, over at least three seeds of
every strategy.

Nothing here trains: the recorded run took about an hour on 2 CPU cores.
"""

from __future__ import annotations

import json
import shlex
import statistics
from pathlib import Path

from benchmarks import bench_dense
from benchmarks.render import dense

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "benchmarks" / "recorded" / "dense_meaningful.md"
SEEDS = sorted((ROOT / "benchmarks" / "recorded" / "dense_meaningful").glob("seed*.json"))


def _merged() -> dict:
    rel = [str(p.relative_to(ROOT)) for p in SEEDS]
    command = "python benchmarks/bench_dense.py " + shlex.join(
        ["--merge", *rel, "--markdown", str(RECORDED.relative_to(ROOT))])
    return bench_dense.merge(SEEDS, command)


def test_recorded_page_is_the_rendering_of_the_recorded_runs():
    assert RECORDED.exists() and len(SEEDS) >= 3
    report = _merged()
    assert RECORDED.read_text(encoding="utf-8") == dense.markdown(report)


def test_recorded_runs_cover_every_strategy_over_three_seeds_at_the_meaningful_size():
    report = _merged()
    settings = report["settings"]
    for key, value in bench_dense.PRESETS["meaningful"].items():
        if key != "seeds":
            assert settings[key] == value, key
    assert len(settings["seeds"]) >= 3
    assert set(report["rows"]) == set(bench_dense.STRATEGIES)
    for name, rows in report["rows"].items():
        assert sorted(r["seed"] for r in rows) == settings["seeds"], name


def test_recorded_table_is_the_mean_and_std_of_the_seeds():
    report = _merged()
    text = RECORDED.read_text(encoding="utf-8")
    for name in report["rows"]:
        # by hand from the per-seed files, not through bench_dense's helpers
        raw = [json.loads(p.read_text())["rows"][name][0] for p in SEEDS]
        deltas = [r["delta_test"] for r in raw]
        miou = [r["test"]["segment"]["miou"] for r in raw]
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| `{name}` |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2] == f"{statistics.fmean(deltas):.2f} ± {statistics.stdev(deltas):.2f}"
        assert cells[5] == f"{statistics.fmean(miou):.3f} ± {statistics.stdev(miou):.3f}"


def test_results_page_includes_the_recorded_dense_results():
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    first_rows = [ln for ln in RECORDED.read_text(encoding="utf-8").splitlines()
                  if ln.startswith("| `")]
    assert first_rows and all(row in results for row in first_rows)
