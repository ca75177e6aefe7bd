"""The loss-weighting renderer (benchmarks/render/weighting.py): tables and sentences are
written from the figures, and run_all puts them in both documents."""

from __future__ import annotations

import json

from benchmarks import run_all
from benchmarks.render import weighting


def _pair(mean: float, std: float, wins: int, beyond: bool) -> dict:
    return {"mean": mean, "std": std, "wins": wins, "n": 3, "beyond_noise": beyond}


def steps_json() -> dict:
    def by(equal_ms: float, ratio: dict) -> dict:
        return {"equal_ms": equal_ms, "ms": {m: equal_ms * r for m, r in ratio.items()},
                "ratio": ratio}
    six = {"equal": 1.0, "uw": 1.04, "gradnorm": 1.5, "upgrad": 3.0, "pcgrad": 2.0}
    forty = {"equal": 1.0, "uw": 1.02, "gradnorm": 2.0, "upgrad": 20.0, "pcgrad": 25.0}
    return {"tasks": [6, 40], "rounds": 3, "steps": {"mlp": 12}, "batch_size": 64,
            "methods": list(six), "spaces": {"mlp": {
                "by_tasks": {"6": by(2.0, six), "40": by(4.0, forty)},
                "growth": {m: 2.0 * forty[m] / six[m] for m in six},
                "slope": {"equal": 0.3, "uw": 0.31, "gradnorm": 0.5, "upgrad": 1.2,
                          "pcgrad": 1.4}}}}


def results_json() -> dict:
    rows = {"equal": {"val": [-5.0, 1.0], "test": [-6.0, 1.0], "seconds": 1.0,
                      "vs_equal": _pair(0.0, 0.0, 0, False)},
            "upgrad": {"val": [-4.0, 1.0], "test": [-5.0, 1.0], "seconds": 3.0,
                       "vs_equal": _pair(1.0, 0.5, 3, True)},
            "uw": {"val": [-5.5, 1.0], "test": [-6.5, 1.0], "seconds": 1.0,
                   "vs_equal": _pair(-0.5, 2.0, 1, False)}}
    return {"budget": {"epochs": 3, "batch_size": 64, "lr": 1e-3}, "seeds": [0, 1, 2],
            "methods": list(rows), "datasets": {"toy": {
                "dataset": "synthetic", "space": "mlp", "kwargs": {}, "tasks": 4, "rows": rows,
                "trees": {"0": {"strategy": "random_tree", "trial": 2, "val": -4.0,
                                "branches_per_depth": [1, 2, 4]}}}}}


KINDS = {"equal": "loss", "uw": "loss", "gradnorm": "loss", "upgrad": "gradient",
         "pcgrad": "gradient"}


def test_step_summary_is_computed_from_the_figures():
    text = weighting.benchmarks_markdown({"steps": steps_json(), "kinds": KINDS})
    assert "| upgrad | gradient | 3.00 | 20.00 | 13.3 | 1.20 |" in text
    assert "the loss weightings `uw` stay within 10% of equal at every task count" in text
    assert "gradnorm costs 1.5–2.0x" in text
    assert "cost 2.0–3.0x equal at 6 tasks and 20.0–25.0x at 40" in text
    assert "slope of 1.20–1.40, against 0.30 for equal" in text
    assert "the most expensive at 40 tasks is pcgrad (25.0x)" in text


def test_results_tables_rank_by_validation_and_say_what_beats_equal():
    tree = {**results_json(), "compute": "6x", "trials": 12}
    tree["datasets"]["toy"]["refused"] = {"gradnorm": {"0": "no block common to all tasks"}}
    data = {"results": results_json(), "tree": tree,
            "joint": {"compute": "6x", "seeds": [0, 1, 2], "datasets": {"toy": {
                "joint": [1.0, 0.5], "architecture": [0.5, 0.5],
                "joint_vs_architecture": _pair(0.5, 0.4, 2, True)}}}}
    text = weighting.results_page_markdown(data)
    table = text[text.index("| method |"):]
    assert table.index("| upgrad |") < table.index("| equal |") < table.index("| uw |")
    assert "| upgrad | -4.00 ± 1.00 | -5.00 ± 1.00 | +1.00 ± 0.50 (3/3) * | 3.0 |" in text
    assert ("toy: ahead of equal by more than one standard error: `upgrad`; none behind. "
            "Largest mean gain: upgrad, +1.00 ± 0.50 points (3/3 seeds).") in text
    assert "### On the best tree found" in text and "branches per depth [1, 2, 4]" in text
    assert "`mlp`, the best tree found)" in text
    assert ("`gradnorm` cannot train the tree of seed 0 (no block common to all tasks): left "
            "out of the table") in text
    assert "| toy | +1.00 ± 0.50 | +0.50 ± 0.50 | +0.50 ± 0.40 (2/3) * |" in text
    assert "The difference is beyond the seed noise on `toy`." in text


def test_run_all_renders_section_g_and_the_results_section(tmp_path):
    out, docs = tmp_path / "out", tmp_path / "docs"
    out.mkdir()
    recorded = tmp_path / "weighting.json"
    recorded.write_text(json.dumps({"kinds": KINDS, "steps": {**steps_json(), "command": "s"},
                                    "results": {**results_json(), "command": "python r"}}))
    bench, results = run_all.assemble(out, docs, command="c", device="cpu", total_seconds=None,
                                      draw=False, recorded_dense=None, recorded_quality=None,
                                      recorded_weighting=recorded)
    assert "## g. Loss weighting step time" in bench.read_text()
    res = results.read_text()
    assert "## Loss weighting\n\nHard sharing trained with every registered weighting" in res
    assert "*Recorded runs (one torch thread, every Δ_MTL deterministic on the CPU): `python r`" in res
    # no recorded file and no run: the section says why
    _, results = run_all.assemble(out, docs, command="c", device="cpu", total_seconds=None,
                                  draw=False, recorded_dense=None, recorded_quality=None,
                                  recorded_weighting=tmp_path / "absent.json")
    assert "no recorded run" in results.read_text()
