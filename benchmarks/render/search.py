"""Sections d (search cost per strategy) and e (the README's main job, end to end) of
docs/benchmarks.md from ``bench_search_cost.py --json``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import plots
from .markup import Target, decimal, table

#: search cost: a strategy's trial / a single_task trial (training every task alone) of the
#: same seed; a search trial should not cost more than the baseline it must beat.
SEARCH_TRIAL_VS_SINGLE = 1.0
#: the README's main job (`mtlsearch compare` with defaults): "about 3 minutes on 2 CPU cores".
MAIN_JOB_SECONDS = 300.0


def targets(data: Mapping[str, Any]) -> list[Target]:
    """Section d: the worst strategy's trial against a ``single_task`` trial of the same
    seed."""
    rows = [r for r in data.get("strategies", [])
            if r["strategy"] != "single_task" and r.get("trial_vs_single_task") is not None]
    if not rows:
        return []
    worst = max(rows, key=lambda r: r["trial_vs_single_task"])
    return [Target("d", f"search cost, a strategy's trial / a single_task trial of the same "
                        f"seed (worst: {worst['strategy']})",
                   f"<= {SEARCH_TRIAL_VS_SINGLE:.1f} for every strategy",
                   float(worst["trial_vs_single_task"]),
                   worst["trial_vs_single_task"] <= SEARCH_TRIAL_VS_SINGLE)]


def markdown(data: Mapping[str, Any], images: Path | None = None,
             rel_dir: str = "images") -> str:
    """Section d's table: each strategy's seconds per trial and per study, and the ratios."""
    st = data.get("settings", {})
    budget = st.get("budget", {})
    rows = data.get("strategies", [])
    refs = data.get("reference_s", {})
    body = [
        f"Each strategy's wall time per trial and per study in one run of "
        f"`{data.get('compare_command')}` (dataset `{st.get('dataset')}`, space "
        f"`{st.get('space')}`, {st.get('trials')} trials, {budget.get('epochs')} epochs, "
        f"seeds {data.get('seeds')}; compare's quick settings for `affinity_tree` and "
        "`gumbel_policy`). A trial is everything the study does for it: the strategy's "
        "proposal (its own training, e.g. the affinity estimate or the policy), training, "
        "scoring and storing. Ratios compare each strategy's median trial with the "
        "`hard_sharing` and `single_task` trials of the same seed (all in the same process). "
        "The single-task reference of each seed is trained once before the studies: "
        + (", ".join(f"seed {k}: {v:.1f} s" for k, v in refs.items()) or "—") + ". "
        f"Command: `{data.get('command')}`.",
        "",
        table(["strategy", "trials per study", "s per trial", "s per study",
               "trial / hard_sharing", "trial / single_task"],
              [[r["strategy"], f"{r['trials_per_study']:g}", decimal(r["trial_s"], 1),
                decimal(r["study_s"], 1), decimal(r.get("trial_vs_hard_sharing")),
                decimal(r.get("trial_vs_single_task"))] for r in rows]),
    ]
    if images is not None and rows:
        body.append(plots.image_link(rel_dir, plot(data, images), "search cost per strategy"))
    return "\n".join(body)


def plot(data: Mapping[str, Any], images: Path) -> str:
    """Seconds per trial of each strategy as bars; returns the picture's file name."""
    rows = sorted(data["strategies"], key=lambda r: r["trial_s"])
    fig, ax = plots.figure(6.5, 0.4 * len(rows) + 1.2)
    ax.barh([r["strategy"] for r in rows], [r["trial_s"] for r in rows], color="tab:blue")
    ax.set_xlabel("seconds per trial (median)")
    return plots.save(fig, images, "search_cost")


def main_job_target(data: Mapping[str, Any]) -> Target:
    """Section e: the main job's wall time against :data:`MAIN_JOB_SECONDS`, estimated for
    all default seeds when fewer ran."""
    seeds, default = list(data.get("seeds", [])), list(data.get("default_seeds", [0, 1, 2]))
    wall = float(data["wall_s"])
    if seeds == default:
        return Target("e", "`mtlsearch compare` with defaults, end-to-end wall time (s)",
                      f"<= {MAIN_JOB_SECONDS:.0f} s (README: about 3 minutes on 2 CPU cores)",
                      wall, wall <= MAIN_JOB_SECONDS)
    estimate = wall * len(default) / max(len(seeds), 1)
    return Target("e", f"`mtlsearch compare` with defaults, wall time (s) estimated from "
                       f"{len(seeds)} of {len(default)} seeds (x{len(default) / len(seeds):g})",
                  f"<= {MAIN_JOB_SECONDS:.0f} s (README: about 3 minutes on 2 CPU cores)",
                  estimate, estimate <= MAIN_JOB_SECONDS)


def main_job_markdown(data: Mapping[str, Any]) -> str:
    """Section e: the main job's wall and CPU time, and how a quick run's figure is scaled."""
    seeds, default = list(data.get("seeds", [])), list(data.get("default_seeds", [0, 1, 2]))
    wall, cpu = data["wall_s"], data.get("cpu_s")
    lb, la = data.get("load_before"), data.get("load_after")
    text = [
        f"`{data.get('compare_command')}` from the command's start to its end (import, data, "
        "single-task references, every study, the report and its pictures), one torch thread, "
        f"in a fresh output folder: **{wall:.0f} s** ({wall / 60:.1f} min) of wall time, "
        f"{decimal(cpu, 0)} s of CPU time"
        + (f"; load average {lb[0]:.1f} before, {la[0]:.1f} after" if lb and la else "") + ".",
    ]
    if seeds != default:
        text += ["", f"**Quick run: {len(seeds)} of the {len(default)} default seeds** "
                     f"(seeds {seeds}); the target is checked against "
                     f"{len(default)}/{len(seeds)} of this time, an estimate. Run the suite "
                     "without `--quick` to measure the main job itself."]
    return "\n".join(text)
