"""Loss weighting and gradient aggregation, from ``bench_weighting.py --json``: the step-time
section of docs/benchmarks.md (part ``steps``) and the results section of docs/results.md
(parts ``results``, ``tree`` and ``joint``).

The sentences under each table are written from the figures (which methods stay near equal
weighting, what the aggregators cost, which differences are beyond the seed noise), so a new
run rewrites them too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .markup import names, table

#: A method whose step stays within this factor of equal weighting "costs nothing measurable".
NEAR_EQUAL = 1.10


def _kind(data: Mapping[str, Any], method: str) -> str:
    return (data.get("kinds") or {}).get(method, "loss" if method == "equal" else "?")


def _span(values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.1f}x" if abs(hi - lo) < 0.05 else f"{lo:.1f}–{hi:.1f}x"


# ------------------------------------------------------------------------------ step time
def steps_markdown(steps: Mapping[str, Any], kinds: Mapping[str, str] | None = None) -> str:
    """One table per space: each method's step over equal's, its growth with the tasks."""
    counts = [str(t) for t in steps["tasks"]]
    lines: list[str] = []
    for space, r in steps["spaces"].items():
        equal = ", ".join(f"{r['by_tasks'][c]['equal_ms']:.1f} ms at {c} tasks" for c in counts)
        header = (["method", "kind"] + [f"× equal, {c} tasks" for c in counts]
                  + [f"step {counts[-1]} / {counts[0]} tasks", "log-log slope"])
        rows = []
        for m in steps["methods"]:
            slope = r["slope"][m]
            rows.append([m, (kinds or {}).get(m, "")]
                        + [f"{r['by_tasks'][c]['ratio'][m]:.2f}" for c in counts]
                        + [f"{r['growth'][m]:.1f}", "-" if slope is None else f"{slope:.2f}"])
        lines += [f"**{space}** (equal: {equal})", "",
                  table(header, rows, "ll" + "r" * (len(counts) + 2)), ""]
    if kinds:
        lines.append(_steps_summary(steps, kinds))
    return "\n".join(lines).rstrip() + "\n"


def _steps_summary(steps: Mapping[str, Any], kinds: Mapping[str, str]) -> str:
    """What the step-time tables say, from their figures."""
    counts = [str(t) for t in steps["tasks"]]
    loss = [m for m in steps["methods"] if kinds.get(m) == "loss" and m != "equal"]
    grad = [m for m in steps["methods"] if kinds.get(m) == "gradient"]
    out = []
    for space, r in steps["spaces"].items():
        ratio = {c: r["by_tasks"][c]["ratio"] for c in counts}
        near = [m for m in loss if all(ratio[c][m] <= NEAR_EQUAL for c in counts)]
        far = [m for m in loss if m not in near]
        text = (f"* **{space}**: the loss weightings {names(near) or '(none)'} stay within "
                f"{(NEAR_EQUAL - 1) * 100:.0f}% of equal at every task count")
        if far:
            text += "; " + ", ".join(
                f"{m} costs {_span([ratio[c][m] for c in counts])}" for m in far)
        if grad:
            text += (f". The gradient aggregators cost {_span([ratio[counts[0]][m] for m in grad])}"
                     f" equal at {counts[0]} tasks and "
                     f"{_span([ratio[counts[-1]][m] for m in grad])} at {counts[-1]}")
            slopes = [r["slope"][m] for m in grad if r["slope"][m] is not None]
            if slopes:
                text += (f" (their step grows with the number of tasks with a log-log slope of "
                         f"{min(slopes):.2f}–{max(slopes):.2f}, against "
                         f"{r['slope']['equal']:.2f} for equal)")
            worst = max(grad, key=lambda m: ratio[counts[-1]][m])
            text += f"; the most expensive at {counts[-1]} tasks is {worst} " \
                    f"({ratio[counts[-1]][worst]:.1f}x)"
        out.append(text + ".")
    out.append("* The compute meter charges a gradient aggregator's extra backward passes "
               "([weighting.md](weighting.md#rules)), so `compare --compute 6x` gives it "
               "fewer steps than equal weighting, as it costs.")
    return "\n".join(out) + "\n"


def benchmarks_markdown(data: Mapping[str, Any]) -> str:
    """The step-time section of docs/benchmarks.md."""
    steps = data["steps"]
    counts = ", ".join(str(t) for t in steps["tasks"])
    intro = (
        "The training step of hard sharing with every registered weighting against equal "
        f"weighting, side by side in one run: {counts} random binary tasks, `mlp` and "
        f"`small_cnn`, batches of {steps['batch_size']}, the real `Trainer`. After an untimed "
        f"pass over every method, each of {steps['rounds']} rounds trains every method in turn "
        "(each round starting one method later) for "
        + " / ".join(f"{n} ({s})" for s, n in steps["steps"].items())
        + " timed steps after a warm-up step; a figure is the method's median step over "
        "equal's median step of the same round, median over the rounds. The growth column is "
        "the method's own step at the most tasks over its step at the fewest, and the log-log "
        "slope how it grows with the number of tasks (1: linearly).")
    return intro + "\n\n" + steps_markdown(steps, data.get("kinds"))


# -------------------------------------------------------------------------------- results
def results_markdown(report: Mapping[str, Any], where: str = "hard sharing") -> str:
    """One table per dataset: Δ_MTL mean ± std, test paired per seed against equal."""
    lines: list[str] = []
    for key, d in report["datasets"].items():
        rows = []
        for m, r in sorted(d["rows"].items(), key=lambda kv: -kv[1]["val"][0]):
            pair = r["vs_equal"]
            diff = "-" if m == "equal" else (
                f"{pair['mean']:+.2f} ± {pair['std']:.2f} ({pair['wins']}/{pair['n']})"
                + (" *" if pair["beyond_noise"] else ""))
            rows.append([m, f"{r['val'][0]:+.2f} ± {r['val'][1]:.2f}",
                         f"{r['test'][0]:+.2f} ± {r['test'][1]:.2f}", diff, f"{r['seconds']:.1f}"])
        lines += [f"**{key}** (`{d['dataset']}` {d['kwargs']}, {d['tasks']} tasks, "
                  f"`{d['space']}`, {where})", "",
                  table(["method", "Δ_MTL val %", "Δ_MTL test %",
                         "test − equal (paired, wins)", "train s"], rows, "lrrrr"), ""]
    return "\n".join(lines)


def _verdicts(report: Mapping[str, Any]) -> str:
    """Per dataset: the methods ahead of / behind equal beyond the seed noise."""
    out = []
    for key, d in report["datasets"].items():
        pairs = {m: r["vs_equal"] for m, r in d["rows"].items() if m != "equal"}
        ahead = sorted((m for m, p in pairs.items() if p["beyond_noise"] and p["mean"] > 0),
                       key=lambda m: -pairs[m]["mean"])
        behind = sorted((m for m, p in pairs.items() if p["beyond_noise"] and p["mean"] < 0),
                        key=lambda m: pairs[m]["mean"])
        best = max(pairs, key=lambda m: pairs[m]["mean"])
        text = f"* {key}: "
        text += (f"ahead of equal by more than one standard error: {names(ahead)}" if ahead
                 else "no method ahead of equal by more than one standard error")
        text += (f"; behind: {names(behind)}" if behind else "; none behind")
        p = pairs[best]
        text += (f". Largest mean gain: {best}, {p['mean']:+.2f} ± {p['std']:.2f} points "
                 f"({p['wins']}/{p['n']} seeds).")
        out.append(text)
    return "\n".join(out)


def _trees(tree: Mapping[str, Any]) -> str:
    lines = []
    for key, d in tree["datasets"].items():
        found = "; ".join(f"seed {s}: {t['strategy']} trial {t['trial']}, branches per depth "
                          f"{t['branches_per_depth']}, Δ_MTL val {t['val']:+.2f}"
                          for s, t in d["trees"].items())
        lines.append(f"* {key}: {found}")
        for method, seeds in (d.get("refused") or {}).items():
            why = next(iter(seeds.values()))
            lines.append(f"  * `{method}` cannot train the tree of seed"
                         f"{'s' if len(seeds) > 1 else ''} {', '.join(seeds)} ({why}): left "
                         "out of the table")
    return "\n".join(lines)


def _joint(joint: Mapping[str, Any]) -> str:
    rows = []
    for key, d in joint["datasets"].items():
        p = d["joint_vs_architecture"]
        rows.append([key, f"{d['joint'][0]:+.2f} ± {d['joint'][1]:.2f}",
                     f"{d['architecture'][0]:+.2f} ± {d['architecture'][1]:.2f}",
                     f"{p['mean']:+.2f} ± {p['std']:.2f} ({p['wins']}/{p['n']})"
                     + (" *" if p["beyond_noise"] else "")])
    verdict = ("beyond the seed noise on " + names([r[0] for r in rows if r[3].endswith("*")])
               if any(r[3].endswith("*") for r in rows) else "not beyond the seed noise anywhere")
    return (table(["dataset", "joint (weighting='auto')", "architecture only",
                   "joint − architecture (paired, wins)"], rows, "lrrr")
            + f"\n\nThe difference is {verdict}.\n")


def results_page_markdown(data: Mapping[str, Any]) -> str:
    """The loss-weighting section of docs/results.md."""
    parts = []
    res = data.get("results")
    if res:
        budget = res["budget"]
        parts += [
            f"Hard sharing trained with every registered weighting ([weighting.md](weighting.md)) "
            f"at `mtlsearch compare`'s default training ({budget['epochs']} epochs, batch "
            f"{budget['batch_size']}, lr {budget['lr']}), seeds {', '.join(str(s) for s in res['seeds'])}. "
            "Δ_MTL is against the single-task networks of the same seed and budget, mean ± std "
            "over the seeds; \"test − equal\" is the test Δ_MTL paired per seed with equal "
            "weighting (wins out of seeds; `*`: the mean is more than one standard error from "
            "zero, a weak test with 3 seeds). Rows by validation Δ_MTL; every method with its "
            "default hyper-parameters; \"train s\": mean wall time of one training.", "",
            "### On hard sharing", "", results_markdown(res), "What these say:", "",
            _verdicts(res), ""]
    tree = data.get("tree")
    if tree:
        parts += [
            "### On the best tree found", "",
            f"Per seed, the default strategy searched with equal weighting at {tree['compute']} "
            f"compute (at most {tree['trials']} trials); its validation-best tree was then "
            "trained from scratch with every method (same seed: `equal` reproduces the "
            "search's own figure exactly). The trees:", "", _trees(tree), "",
            results_markdown(tree, "the best tree found"), "What these say:", "",
            _verdicts(tree), ""]
    joint = data.get("joint")
    if joint:
        parts += [
            "### Joint search against architecture-only, at equal compute", "",
            f"The default strategy at {joint['compute']} compute per search, seeds "
            f"{', '.join(str(s) for s in joint['seeds'])}: sampling the weighting with the "
            "architecture (`weighting=\"auto\"`) against equal weighting; test Δ_MTL of the "
            "validation-best trial, paired per seed.", "", _joint(joint)]
    return "\n".join(parts).rstrip() + "\n"
